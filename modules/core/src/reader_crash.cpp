// The reader-crash handler (reader_crash.hpp).
#include "ambient/core/reader_crash.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>

namespace ambient {
namespace {

// The two halves of the line, around the signal's name: "ambient: error: the READER crashed (" and
// ") while reading FILE: ADVICE\n".
struct Message {
  char text[2048];
  size_t length = 0;
  void set(const std::string& s) {
    length = std::min(s.size(), sizeof text);
    std::memcpy(text, s.data(), length);
  }
  std::string get() const { return std::string(text, length); }
};
Message g_head, g_tail;
std::atomic<int> g_open_scopes{0};
std::atomic<bool> g_installed{false};

void on_reader_crash(int sig) {
  if (g_open_scopes.load() == 0) {  // not ours to explain: die of the signal as before
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  const char* name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE"
                   : sig == SIGILL ? "SIGILL" : "SIGABRT";
  ssize_t ignored = write(STDERR_FILENO, g_head.text, g_head.length);
  ignored = write(STDERR_FILENO, name, std::strlen(name));
  ignored = write(STDERR_FILENO, g_tail.text, g_tail.length);
  (void)ignored;
  _exit(1);
}

}  // namespace

void exit_cleanly_on_reader_crash() {
  if (g_installed.exchange(true)) return;
  static char stack[1 << 16];
  stack_t ss{};
  ss.ss_sp = stack;
  ss.ss_size = sizeof stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_reader_crash;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
}

ReaderCrashScope::ReaderCrashScope(const std::string& reader, const std::string& path, const std::string& advice) {
  if (!g_installed.load()) return;
  previous_head_ = g_head.get();
  previous_tail_ = g_tail.get();
  g_head.set("ambient: error: the " + reader + " crashed (");
  g_tail.set(") while reading " + path + ": " + advice + "\n");
  active_ = true;
  ++g_open_scopes;
}

ReaderCrashScope::~ReaderCrashScope() {
  if (!active_) return;
  --g_open_scopes;
  g_head.set(previous_head_);
  g_tail.set(previous_tail_);
}

}  // namespace ambient
