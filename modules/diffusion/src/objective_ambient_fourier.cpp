// Objective 3: ambient diffusion with Fourier subsampling and coil maps (Aali et al. 2024, A-DPS): Ã drops more of
// A's k-space lines, the network sees the adjoint image of the further-subsampled noisy measurement, and the loss
// lives in k-space on A's lines (docs/objectives.md).
#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/masks.hpp"
#include "objective_common.hpp"

namespace ambient::diffusion {

using detail::check_draw;
using detail::per_example;

torch::Tensor further_subsample_lines(const torch::Tensor& mask, const torch::Tensor& calib, double delta,
                                      std::mt19937_64& rng) {
  AMBIENT_CHECK(mask.dim() == 2 && calib.sizes() == mask.sizes(), "further subsample: expected masks [B, ky]");
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < mask.size(0); ++b) rows.push_back(mri::further_subsample(mask[b], calib[b], delta, rng));
  return torch::stack(rows);
}

torch::Tensor line_mask_channel(const torch::Tensor& lines, int64_t nx) {
  return lines.to(torch::kFloat).reshape({lines.size(0), 1, lines.size(1), 1}).expand({-1, 1, -1, nx}).contiguous();
}

torch::Tensor ambient_fourier_loss(const DenoiserFn& d, const FourierBatch& batch, const torch::Tensor& mask_tilde,
                                   const NoiseDraw& draw, const EdmConfig& edm, const torch::Tensor& score_lines) {
  AMBIENT_CHECK(batch.ksp.dim() == 4 && batch.maps.sizes() == batch.ksp.sizes(),
                "Fourier objective: expected k-space and maps [B, C, ky, kx] of equal shape");
  const int64_t bsz = batch.ksp.size(0), ny = batch.ksp.size(2), nx = batch.ksp.size(3);
  AMBIENT_CHECK(batch.mask.sizes() == torch::IntArrayRef({bsz, ny}) && mask_tilde.sizes() == batch.mask.sizes(),
                "Fourier objective: expected line masks [", bsz, ", ", ny, "]");
  AMBIENT_CHECK((mask_tilde.to(torch::kBool) & ~batch.mask.to(torch::kBool)).sum().item<int64_t>() == 0,
                "Fourier objective: Ã must keep a subset of A's lines");
  check_draw(draw, bsz);
  auto m = batch.mask.to(torch::kFloat).reshape({bsz, 1, ny, 1});
  auto mt = mask_tilde.to(torch::kFloat).reshape({bsz, 1, ny, 1});
  auto scored = score_lines.defined()
                    ? (score_lines.to(torch::kBool) & batch.mask.to(torch::kBool)).to(torch::kFloat).reshape({bsz, 1, ny, 1})
                    : m;
  auto a = mri::make_sense(batch.maps, scored);
  const auto a_tilde = line_corruption(batch.maps, mask_tilde);
  auto y = batch.ksp * m;  // only what A observed
  auto s = draw.sigma.reshape({-1, 1, 1});
  // Ã x_t = M̃ y + σ M̃ F S n, from the data alone; the network sees its adjoint image.
  auto y_tilde = mt * y + a_tilde.op->forward(s * draw.noise);
  auto denoised = from_channels(denoise_measured(d, a_tilde, y_tilde, draw.sigma));
  auto residual = mri::apply(a, denoised) - scored * y;
  auto observed = (per_example(scored.expand({bsz, 1, ny, nx})) * batch.ksp.size(1)).clamp_min(1);
  if (edm.precond == Precond::masked_lines) {  // λ(σ) on the lines Ã kept, 1/σ_d² on those it dropped
    const double sd = edm.sigma_data;
    auto w = mt * loss_weight(draw.sigma, edm).reshape({-1, 1, 1, 1}) + (1 - mt) / (sd * sd);
    return (per_example(w * residual.abs().square()) / observed).mean();
  }
  auto err = per_example(residual.abs().square()) / observed;
  return (loss_weight(draw.sigma, edm) * err).mean();
}

namespace detail {
namespace {

class AmbientFourierObjective final : public AmbientObjective {
 public:
  using AmbientObjective::AmbientObjective;
  Objective kind() const override { return Objective::ambient_fourier; }
  torch::Tensor draw_corruption(const Batch& b, int64_t j, at::Generator&, std::mt19937_64& rng) const override {
    AMBIENT_CHECK(b.ksp.defined(), "ambient-fourier objective: the data carry no k-space (use Fourier data)");
    return further_subsample_lines(b.lines.narrow(0, j, 1), b.calib.narrow(0, j, 1), further_.delta, rng);
  }
  torch::Tensor draw_noise(const Batch& b, at::Generator& gen) const override {
    // complex image-domain noise, seen through Ã
    return noise_like(torch::empty({1, b.ksp.size(2), b.ksp.size(3)}, torch::kComplexFloat), 1.0, gen);
  }
  torch::Tensor loss(const DenoiserFn& d, const Batch& b, const torch::Tensor& mask_tilde, const NoiseDraw& draw,
                     const EdmConfig& edm, bool holdout) const override {
    FourierBatch fb{b.ksp, b.maps, b.lines, b.calib};
    return ambient_fourier_loss(d, fb, mask_tilde, draw, edm, holdout ? (b.lines & ~mask_tilde) : torch::Tensor());
  }
};

}  // namespace

std::unique_ptr<TrainingObjective> make_ambient_fourier_objective(const FurtherCorruptionConfig& further) {
  return std::make_unique<AmbientFourierObjective>(further);
}

}  // namespace detail
}  // namespace ambient::diffusion
