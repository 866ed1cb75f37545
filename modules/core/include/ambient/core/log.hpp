// A small logging facade with levels; the level comes from set_level() or the AMBIENT_LOG environment variable.
#pragma once

#include <functional>
#include <string>

namespace ambient::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3, off = 4 };

/// Current level: AMBIENT_LOG=debug|info|warn|error|off at first use, "warn" when unset.
Level level();
void set_level(Level level);
/// Parses "debug", "info", ... ; throws ambient::Error on anything else.
Level parse_level(const std::string& name);

/// Where messages go (stderr by default); apps may redirect, e.g. to keep a progress bar intact.
void set_sink(std::function<void(Level, const std::string&)> sink);

void write(Level level, const std::string& message);
inline void debug(const std::string& m) { write(Level::debug, m); }
inline void info(const std::string& m) { write(Level::info, m); }
inline void warn(const std::string& m) { write(Level::warn, m); }

}  // namespace ambient::log
