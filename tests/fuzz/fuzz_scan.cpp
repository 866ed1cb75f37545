// libFuzzer harness: the HDF5 scan readers (ISMRMRD and fastMRI, by read_scan's detection) on arbitrary bytes.
#include "ambient/core/error.hpp"
#include "ambient/mri/io.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ambient::fuzz::write_input("scan.h5", data, size);
  try {
    (void)ambient::mri::read_scan(path);
  } catch (const std::exception&) {  // ambient::Error, c10::Error: the file was refused, as it should be
  }
  return 0;
}
