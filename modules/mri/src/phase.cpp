#include "ambient/mri/phase.hpp"

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"

namespace ambient::mri {

torch::Tensor smooth_phase_from(const torch::Tensor& low, int64_t ny, int64_t nx, double strength,
                                FftBackend backend) {
  AMBIENT_CHECK(low.dim() == 3 && low.size(1) == 5 && low.size(2) == 5 && low.is_complex(),
                "smooth phase: expected complex low frequencies [B, 5, 5], got ", shape_string(low.sizes().vec()));
  AMBIENT_CHECK(ny >= 5 && nx >= 5, "smooth phase: expected images of at least 5x5, got ", ny, "x", nx);
  auto spectrum = torch::zeros({low.size(0), ny, nx}, low.options().dtype(torch::kComplexDouble));
  spectrum.narrow(1, ny / 2 - 2, 5).narrow(2, nx / 2 - 2, 5).copy_(low);
  spectrum = spectrum.to(torch::kComplexFloat);
  auto image = backend == FftBackend::torch ? ifft2c_torch(spectrum) : ifft2c(spectrum);
  auto phase = torch::real(image).to(torch::kDouble);
  return phase / phase.abs().amax({1, 2}, true).clamp_min(1e-12) * strength;
}

}  // namespace ambient::mri
