// Objective 2: ambient diffusion with image-domain masks (Daras et al. 2023): A erases pixels or boxes, Ã erases
// more, the network sees Ã x_t and is scored where A observed (docs/objectives.md).
#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/mri/masks.hpp"
#include "objective_common.hpp"

namespace ambient::diffusion {

using detail::check_draw;
using detail::check_image;
using detail::per_example;

torch::Tensor further_corrupt_pixels(const torch::Tensor& a, double delta, at::Generator& gen) {
  AMBIENT_CHECK(delta >= 0 && delta < 1, "further corruption: expected δ in [0, 1), got ", delta);
  auto keep = torch::rand(a.sizes(), gen, a.options().dtype(torch::kFloat)) >= delta;
  return a * keep.to(a.dtype());
}

torch::Tensor further_corrupt_blocks(const torch::Tensor& a, int64_t count, int64_t min_size, int64_t max_size,
                                     std::mt19937_64& rng) {
  check_image(a, "further corruption");
  auto out = a.clone();
  for (int64_t b = 0; b < a.size(0); ++b) {
    auto extra = mri::random_blocks(a.size(2), a.size(3), count, min_size, max_size, static_cast<uint32_t>(rng()));
    out[b] = out[b] * extra.to(a.dtype()).unsqueeze(0);
  }
  return out;
}

torch::Tensor ambient_image_loss(const DenoiserFn& d, const torch::Tensor& y, const torch::Tensor& a,
                                 const torch::Tensor& a_tilde, const NoiseDraw& draw, const EdmConfig& edm,
                                 const torch::Tensor& score_in) {
  check_image(y, "ambient objective");
  check_image(a, "ambient objective mask A");
  AMBIENT_CHECK(a_tilde.sizes() == a.sizes(), "ambient objective: Ã and A differ in shape");
  check_draw(draw, y.size(0));
  auto y_obs = a * y;  // only what A observed
  auto s = draw.sigma.reshape({-1, 1, 1, 1});
  // Ã^H Ã x_t = Ã (y + σ n): computable from y alone since Ã ⊆ A.
  auto denoised = seen_through(d, image_corruption(a_tilde))(y_obs + s * draw.noise, draw.sigma, {});
  const auto score = score_in.defined() ? score_in * a : a;  // never score where A did not observe
  auto observed = (per_example(score) * y.size(1)).clamp_min(1);
  if (edm.precond == Precond::masked) {
    // λ(σ) where Ã showed the pixel, 1/σ_d² (λ at σ = ∞) where it did not: unit weight on the network's output.
    const double sd = edm.sigma_data;
    auto w = a_tilde * loss_weight(draw.sigma, edm).reshape({-1, 1, 1, 1}) + (1 - a_tilde) / (sd * sd);
    return (per_example(w * (score * (denoised - y_obs)).square()) / observed).mean();
  }
  auto err = per_example((score * (denoised - y_obs)).square()) / observed;
  return (loss_weight(draw.sigma, edm) * err).mean();
}

namespace detail {
namespace {

class AmbientImageObjective final : public AmbientObjective {
 public:
  using AmbientObjective::AmbientObjective;
  Objective kind() const override { return Objective::ambient_image; }
  torch::Tensor draw_corruption(const Batch& b, int64_t j, at::Generator& gen, std::mt19937_64& rng) const override {
    AMBIENT_CHECK(b.mask.defined(), "ambient-image objective: the data carry no corruption mask (use block data)");
    return further_.extra_blocks > 0
               ? further_corrupt_blocks(b.mask.narrow(0, j, 1), further_.extra_blocks, further_.extra_block_min,
                                        further_.extra_block_max, rng)
               : further_corrupt_pixels(b.mask.narrow(0, j, 1), further_.delta, gen);
  }
  torch::Tensor draw_noise(const Batch& b, at::Generator& gen) const override {
    return noise_like(torch::empty({1, b.image.size(1), b.image.size(2), b.image.size(3)}), 1.0, gen);
  }
  torch::Tensor loss(const DenoiserFn& d, const Batch& b, const torch::Tensor& a_tilde, const NoiseDraw& draw,
                     const EdmConfig& edm, bool holdout) const override {
    return ambient_image_loss(d, b.image, b.mask, a_tilde, draw, edm, holdout ? b.mask - a_tilde : torch::Tensor());
  }
};

}  // namespace

std::unique_ptr<TrainingObjective> make_ambient_image_objective(const FurtherCorruptionConfig& further) {
  return std::make_unique<AmbientImageObjective>(further);
}

}  // namespace detail
}  // namespace ambient::diffusion
