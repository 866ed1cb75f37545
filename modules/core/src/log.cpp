// Logging facade: one global level and sink, guarded by a mutex so worker threads can log.
#include "ambient/core/log.hpp"

#include <cstdlib>
#include <iostream>
#include <mutex>

#include "ambient/core/error.hpp"

namespace ambient::log {
namespace {

std::mutex& mutex() {
  static std::mutex m;
  return m;
}

Level& current() {
  static Level l = [] {
    const char* env = std::getenv("AMBIENT_LOG");
    if (!env || !*env) return Level::warn;
    try {
      return parse_level(env);
    } catch (const Error&) {
      std::cerr << "ambient: ignoring AMBIENT_LOG=" << env << " (expected debug|info|warn|error|off)\n";
      return Level::warn;
    }
  }();
  return l;
}

std::function<void(Level, const std::string&)>& sink() {
  static std::function<void(Level, const std::string&)> s = [](Level lv, const std::string& m) {
    static const char* names[] = {"debug", "info", "warning", "error", ""};
    std::cerr << "ambient " << names[static_cast<int>(lv)] << ": " << m << "\n";
  };
  return s;
}

}  // namespace

Level level() { return current(); }

void set_level(Level l) {
  std::lock_guard<std::mutex> lock(mutex());
  current() = l;
}

Level parse_level(const std::string& name) {
  if (name == "debug") return Level::debug;
  if (name == "info") return Level::info;
  if (name == "warn" || name == "warning") return Level::warn;
  if (name == "error") return Level::error;
  if (name == "off") return Level::off;
  fail("log level: expected debug|info|warn|error|off, got '", name, "'");
}

void set_sink(std::function<void(Level, const std::string&)> s) {
  std::lock_guard<std::mutex> lock(mutex());
  sink() = std::move(s);
}

void write(Level l, const std::string& message) {
  if (l < current() || l == Level::off) return;
  std::lock_guard<std::mutex> lock(mutex());
  sink()(l, message);
}

}  // namespace ambient::log
