// libFuzzer harness: the checkpoint reader (describe_checkpoint and load_denoiser on arbitrary bytes).
#include "ambient/core/error.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "fuzz_common.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = ambient::fuzz::write_input("model.pt", data, size);
  try {
    (void)ambient::diffusion::describe_checkpoint(path);
    (void)ambient::diffusion::load_denoiser(path);
  } catch (const std::exception&) {
  }
  return 0;
}
