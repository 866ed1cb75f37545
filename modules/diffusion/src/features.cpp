#include "ambient/diffusion/features.hpp"

#include <cmath>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/network.hpp"
#include "ambient/mri/prepare.hpp"

namespace ambient::diffusion {

torch::Tensor image_features(const ModelPtr& model, const torch::Tensor& magnitudes, const FeatureConfig& config) {
  auto* edm = dynamic_cast<EdmDenoiserImpl*>(model.get());
  AMBIENT_CHECK(edm != nullptr, "features: the feature network must be an EDM UNet checkpoint, got a ", model->kind(),
                " model (a TorchScript foundation exposes no encoder)");
  AMBIENT_CHECK(config.sigma > 0 && config.batch >= 1 && config.grid >= 1,
                "features: expected σ > 0, a batch >= 1 and a grid >= 1, got σ ", config.sigma, ", batch ",
                config.batch, ", grid ", config.grid);
  auto images = magnitudes.dim() == 2 ? magnitudes.unsqueeze(0) : magnitudes;
  AMBIENT_CHECK(images.dim() == 3 && !images.is_complex() && images.size(0) >= 1,
                "features: expected real magnitude images [n, h, w], got ", shape_string(magnitudes.sizes().vec()));
  images = images.to(torch::kFloat);
  AMBIENT_CHECK(torch::isfinite(images).all().item<bool>(), "features: the images hold NaN or infinite values");
  images = images / mri::intensity_scale(images, 1e-12).reshape({-1, 1, 1});
  const double sd = edm->edm.sigma_data, c_in = 1 / std::sqrt(config.sigma * config.sigma + sd * sd);
  const int64_t n = images.size(0), cond = edm->cond_channels();
  torch::NoGradGuard no_grad;
  edm->eval();
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < n; b += config.batch) {
    const int64_t k = std::min(config.batch, n - b);
    auto x = images.narrow(0, b, k).unsqueeze(1);
    auto input = torch::cat({c_in * x, torch::zeros_like(x)}, 1);  // zero phase: real, imaginary
    if (cond > 0) input = torch::cat({input, torch::ones({k, cond, x.size(2), x.size(3)})}, 1);
    parts.push_back(edm->net->features(input, torch::full({k}, std::log(config.sigma) / 4), config.grid));
  }
  return torch::cat(parts);
}

}  // namespace ambient::diffusion
