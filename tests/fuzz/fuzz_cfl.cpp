// libFuzzer harness: the BART cfl scan reader. The input up to its first NUL byte is the .hdr text, the rest the
// .cfl data.
#include <algorithm>

#include "ambient/core/error.hpp"
#include "ambient/mri/io.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const size_t split = static_cast<size_t>(std::find(data, data + size, 0) - data);
  ambient::fuzz::write_input("scan.hdr", data, split);
  const std::string path = split < size ? ambient::fuzz::write_input("scan.cfl", data + split + 1, size - split - 1)
                                        : ambient::fuzz::write_input("scan.cfl", data, 0);
  try {
    (void)ambient::mri::read_cfl_scan(path);
  } catch (const std::exception&) {
  }
  return 0;
}
