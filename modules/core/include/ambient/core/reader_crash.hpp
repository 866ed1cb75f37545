// Crashes inside a third-party reader (HDF5, LibTorch's archive and TorchScript parsers) reported as a damaged
// input: one error line and exit status 1 instead of the signal (docs/reliability.md, "Contained, not fixed").
#pragma once

#include <string>

namespace ambient {

/// For command-line programs, once at start-up: from then on a crash (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT)
/// while a ReaderCrashScope is open ends the process with one line, "ambient: error: the READER crashed (SIGNAL)
/// while reading FILE: ADVICE", and exit status 1. A crash anywhere else still kills the process as before. The
/// handler runs on its own stack (the calling thread's), so a stack overflow in a reader is reported too.
void exit_cleanly_on_reader_crash();

/// Marks a call into a reader that trusts what the file says (HDF5 1.10.8 decodes damaged object headers before
/// any of its API calls return; LibTorch 1.13 parses an archive's code entries with a TorchScript parser that
/// crashes on some malformed ones). Without exit_cleanly_on_reader_crash() it does nothing. Scopes nest; the
/// innermost names the crash. The message is prepared here, because a signal handler may only write() and _exit().
class ReaderCrashScope {
 public:
  ReaderCrashScope(const std::string& reader, const std::string& path, const std::string& advice);
  ~ReaderCrashScope();
  ReaderCrashScope(const ReaderCrashScope&) = delete;
  ReaderCrashScope& operator=(const ReaderCrashScope&) = delete;

 private:
  bool active_ = false;
  std::string previous_head_, previous_tail_;
};

}  // namespace ambient
