// Slices made ready for a network (prepare.hpp).
#include "ambient/mri/prepare.hpp"

#include <cmath>

#include "ambient/core/error.hpp"

namespace ambient::mri {

torch::Tensor intensity_scale(const torch::Tensor& images, double floor) {
  AMBIENT_CHECK(images.dim() >= 2 && images.size(0) > 0 && images[0].numel() > 0,
                "intensity scale: expected slices [S, ...], got ", shape_string(images.sizes().vec()));
  return images.abs().to(torch::kFloat).flatten(1).quantile(0.99, 1).clamp_min(floor);
}

Prepared prepare(const torch::Tensor& ksp, const torch::Tensor& mask, const torch::Tensor& maps, double noise_var) {
  AMBIENT_CHECK(ksp.dim() == 4 && maps.sizes() == ksp.sizes(), "prepare: expected k-space and coil maps [S, C, ky, kx] "
                "of one shape, got ", shape_string(ksp.sizes().vec()), " and ", shape_string(maps.sizes().vec()));
  AMBIENT_CHECK(noise_var > 0 && std::isfinite(noise_var), "prepare: expected a positive noise variance, got ",
                noise_var);
  Prepared p;
  p.a = make_sense(maps, mask);
  auto y = ksp * mask;
  p.scale = intensity_scale(p.a->adjoint(y));
  p.y = y.div_(p.scale.reshape({-1, 1, 1, 1}));
  p.noise_var = noise_var / p.scale.square();
  return p;
}

}  // namespace ambient::mri
