// Shared by the libFuzzer harnesses (tests/fuzz, scripts/fuzz.sh): the readers take paths, so each input is written
// to a file in a private temporary folder first. An ambient::Error (or any std::exception) is the expected answer to
// a bad file; a crash, a hang, or a sanitizer report is a finding.
#pragma once

#include <torch/torch.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <string>

namespace ambient::fuzz {

inline const std::string& scratch() {
  static const std::string dir = [] {
    char tmpl[] = "/tmp/ambient-fuzz-XXXXXX";
    const char* made = mkdtemp(tmpl);
    if (made == nullptr) std::abort();
    torch::set_num_threads(1);
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
