// Shared by the libFuzzer harnesses (tests/fuzz, scripts/fuzz.sh): the readers take paths, so each input is written
// to a file in a private temporary folder first. An ambient::Error (or any std::exception) is the expected answer to
// a bad file; a crash, a hang, or a sanitizer report is a finding.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

namespace ambient::fuzz {

// AMBIENT_FUZZ_DIR names the folder (scripts/fuzz.sh sets it for repeatable runs: the path reaches comparisons
// that libFuzzer traces, so a random name would change the inputs it tries); otherwise a fresh one under /tmp.
inline const std::string& scratch() {
  static const std::string dir = [] {
    torch::set_num_threads(1);
    if (const char* fixed = std::getenv("AMBIENT_FUZZ_DIR"); fixed != nullptr && *fixed != 0) {
      std::filesystem::create_directories(fixed);
      return std::string(fixed);
    }
    char tmpl[] = "/tmp/ambient-fuzz-XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (made == nullptr) std::abort();
    return std::string(made);
  }();
  return dir;
}

inline std::string write_input(const std::string& name, const uint8_t* data, size_t size) {
  const std::string path = scratch() + "/" + name;
  std::ofstream(path, std::ios::binary | std::ios::trunc).write(reinterpret_cast<const char*>(data),
                                                                 static_cast<std::streamsize>(size));
  return path;
}

}  // namespace ambient::fuzz
