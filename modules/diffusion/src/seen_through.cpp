// The network's view of an image through a fixed further corruption Ã, for every caller.
#include "ambient/diffusion/seen_through.hpp"

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"

namespace ambient::diffusion {

FurtherCorruption image_corruption(const torch::Tensor& mask) {
  AMBIENT_CHECK(mask.defined() && mask.dim() == 4 && mask.size(1) == 1,
                "further corruption: expected an image mask [B, 1, H, W], got ",
                mask.defined() ? shape_string(mask.sizes().vec()) : std::string("none"));
  const auto channel = mask.to(torch::kFloat);
  return {mri::make_mask(channel.select(1, 0), {mask.size(0), mask.size(2), mask.size(3)}, "Ã (image mask)"), channel};
}

FurtherCorruption line_corruption(const torch::Tensor& maps, const torch::Tensor& lines, mri::FftBackend backend) {
  AMBIENT_CHECK(maps.defined() && maps.dim() == 4, "further corruption: expected coil maps [B, C, ky, kx]");
  AMBIENT_CHECK(lines.defined() && lines.sizes() == torch::IntArrayRef({maps.size(0), maps.size(2)}),
                "further corruption: expected line masks [", maps.size(0), ", ", maps.size(2), "], got ",
                lines.defined() ? shape_string(lines.sizes().vec()) : std::string("none"));
  const auto weight = lines.to(torch::kFloat).reshape({maps.size(0), 1, maps.size(2), 1});
  return {mri::make_sense(maps, weight, backend), line_mask_channel(lines, maps.size(3))};
}

torch::Tensor denoise_measured(const DenoiserFn& d, const FurtherCorruption& a_tilde, const torch::Tensor& y_tilde,
                               const torch::Tensor& sigma) {
  return d(to_channels(mri::apply_adjoint(a_tilde.op, y_tilde)), sigma, a_tilde.channel);
}

DenoiserFn seen_through(DenoiserFn d, FurtherCorruption a_tilde) {
  AMBIENT_CHECK(d && a_tilde.op, "seen_through: expected a denoiser and an operator");
  auto normal = mri::make_normal(a_tilde.op);
  return [d = std::move(d), normal, channel = a_tilde.channel](const torch::Tensor& x, const torch::Tensor& sigma,
                                                               const torch::Tensor&) {
    return d(to_channels(mri::apply(normal, from_channels(x))), sigma, channel);
  };
}

DenoiserFn seen_through_views(DenoiserFn d, std::vector<torch::Tensor> masks) {
  AMBIENT_CHECK(d && !masks.empty(), "seen_through_views: expected a denoiser and at least one mask");
  for (auto& m : masks) {
    AMBIENT_CHECK(m.defined() && m.dim() == 4 && m.size(1) == 1,
                  "seen_through_views: expected masks [B, 1, H, W], got ",
                  m.defined() ? shape_string(m.sizes().vec()) : std::string("none"));
    AMBIENT_CHECK(m.sizes() == masks[0].sizes(), "seen_through_views: masks of different shapes, ",
                  shape_string(m.sizes().vec()), " and ", shape_string(masks[0].sizes().vec()));
    m = m.to(torch::kFloat);
  }
  const auto coverage = torch::stack(masks).sum(0);  // how many views show each pixel
  return [d = std::move(d), masks = std::move(masks), coverage](const torch::Tensor& x, const torch::Tensor& sigma,
                                                                const torch::Tensor&) {
    torch::Tensor shown, all;  // Σ_k m_k D_k and Σ_k D_k
    for (const auto& m : masks) {
      auto dk = d(x * m, sigma, m);
      shown = shown.defined() ? shown + m * dk : m * dk;
      all = all.defined() ? all + dk : dk;
    }
    const auto k = static_cast<double>(masks.size());
    return torch::where(coverage > 0, shown / coverage.clamp_min(1), all / k);
  };
}

}  // namespace ambient::diffusion
