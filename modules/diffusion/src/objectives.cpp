// The four training objectives. Each loss uses the data only where A observed it: y is masked by A here, so no
// caller can leak unobserved values into the loss or its gradient (tests/diffusion/test_objectives.cpp).
#include "ambient/diffusion/objectives.hpp"

#include "ambient/diffusion/seen_through.hpp"
#include "ambient/mri/error.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/masks.hpp"

namespace ambient::diffusion {
namespace {

void check_image(const torch::Tensor& t, const char* what) {
  AMBIENT_CHECK(t.defined() && t.dim() == 4, what, ": expected [B, C, H, W], got ",
                t.defined() ? ambient::shape_string(t.sizes().vec()) : std::string("none"));
}

void check_draw(const NoiseDraw& draw, int64_t batch) {
  AMBIENT_CHECK(draw.sigma.defined() && draw.sigma.dim() == 1 && draw.sigma.size(0) == batch,
                "objective: expected one σ per example (", batch, ")");
  AMBIENT_CHECK((draw.sigma > 0).all().item<bool>(), "objective: expected σ > 0");
}

torch::Tensor per_example(const torch::Tensor& t) { return t.flatten(1).sum(1); }

}  // namespace

torch::Tensor to_channels(const torch::Tensor& z) {
  AMBIENT_CHECK(z.is_complex() && z.dim() == 3, "to_channels: expected complex [B, H, W], got ",
                ambient::shape_string(z.sizes().vec()));
  return torch::view_as_real(z).permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor from_channels(const torch::Tensor& c) {
  AMBIENT_CHECK(c.dim() == 4 && c.size(1) == 2, "from_channels: expected [B, 2, H, W], got ",
                ambient::shape_string(c.sizes().vec()));
  return torch::view_as_complex(c.permute({0, 2, 3, 1}).contiguous());
}

torch::Tensor clean_loss(const DenoiserFn& d, const torch::Tensor& x0, const NoiseDraw& draw, const EdmConfig& edm) {
  check_image(x0, "clean objective");
  check_draw(draw, x0.size(0));
  auto s = draw.sigma.reshape({-1, 1, 1, 1});
  auto denoised = d(x0 + s * draw.noise, draw.sigma, {});
  auto err = per_example((denoised - x0).square()) / static_cast<double>(x0[0].numel());
  return (loss_weight(draw.sigma, edm) * err).mean();
}

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

torch::Tensor naive_loss(const DenoiserFn& d, const torch::Tensor& corrupted, const NoiseDraw& draw,
                         const EdmConfig& edm) {
  return clean_loss(d, corrupted, draw, edm);
}

}  // namespace ambient::diffusion
