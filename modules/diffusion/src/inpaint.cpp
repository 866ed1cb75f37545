// Posterior inpainting through a pixel mask, with the network seeing the iterate through views (inpaint.hpp).
#include "ambient/diffusion/inpaint.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/mri/masks.hpp"

namespace ambient::diffusion {

std::vector<torch::Tensor> draw_views(int64_t n, int64_t h, int64_t w, int64_t count, const ViewDraw& draw,
                                      uint64_t seed) {
  AMBIENT_CHECK(n >= 1 && h >= 1 && w >= 1 && count >= 1, "views: expected at least one image and one view, got ", n,
                " images of ", h, " x ", w, " and ", count, " views");
  AMBIENT_CHECK(draw.blocks >= 0, "views: expected a box count >= 0, got ", draw.blocks);
  std::vector<torch::Tensor> views;
  if (draw.blocks == 0) {
    AMBIENT_CHECK(draw.delta > 0 && draw.delta < 1, "views: expected boxes, or a pixel erasure δ in (0, 1), got ",
                  draw.delta);
    auto gen = at::detail::createCPUGenerator(derive_seed(seed, SeedStream::sample_corruption, 0));
    for (int64_t k = 0; k < count; ++k)
      views.push_back((torch::rand({n, 1, h, w}, gen) >= draw.delta).to(torch::kFloat));
    return views;
  }
  AMBIENT_CHECK(draw.min_size >= 1 && draw.min_size <= draw.max_size && draw.max_size <= std::max(h, w),
                "views: expected box sides 1 <= min <= max <= the image size, got ", draw.min_size, ",", draw.max_size,
                " for ", h, " x ", w);
  for (int64_t k = 0; k < count; ++k) {
    std::vector<torch::Tensor> per_image;
    for (int64_t i = 0; i < n; ++i) {
      const auto ui = static_cast<uint64_t>(i), uk = static_cast<uint64_t>(k);
      const auto s = k == 0 ? derive_seed(seed, SeedStream::further_masks, ui)
                            : derive_seed(seed, SeedStream::further_masks, ui, uk);
      per_image.push_back(mri::random_blocks(h, w, draw.blocks, draw.min_size, draw.max_size, static_cast<uint32_t>(s)));
    }
    views.push_back(torch::stack(per_image).unsqueeze(1).to(torch::kFloat));
  }
  return views;
}

Inpainting inpaint(const DenoiserFn& d, const torch::Tensor& y, const torch::Tensor& mask, int64_t cond_channels,
                   const InpaintConfig& c, const SamplerMonitor& monitor) {
  AMBIENT_CHECK(d, "inpaint: expected a denoiser");
  AMBIENT_CHECK(y.defined() && y.dim() == 3 && y.is_complex(), "inpaint: expected complex images [S, H, W], got ",
                y.defined() ? shape_string(y.sizes().vec()) : std::string("none"));
  AMBIENT_CHECK(mask.defined() && mask.sizes() == y.sizes(), "inpaint: the mask ",
                mask.defined() ? shape_string(mask.sizes().vec()) : std::string("(none)"),
                " does not match the images ", shape_string(y.sizes().vec()));
  const auto m = mask.to(torch::kFloat);
  AMBIENT_CHECK(((m == 0) | (m == 1)).all().item<bool>(), "inpaint: the mask must hold only 0 and 1");
  AMBIENT_CHECK(torch::isfinite(torch::view_as_real(y)).all().item<bool>(), "inpaint: the images hold NaN or "
                "infinite values");
  AMBIENT_CHECK(c.samples >= 1 && c.samples <= 4096, "inpaint: expected 1 to 4096 samples, got ", c.samples);
  AMBIENT_CHECK(c.views >= 0 && c.views <= 64, "inpaint: expected 0 to 64 views, got ", c.views);
  AMBIENT_CHECK(cond_channels == 0 || cond_channels == 1, "inpaint: expected a model with 0 or 1 mask channels, got ",
                cond_channels);
  AMBIENT_CHECK(cond_channels == 1 || c.views == 0, "inpaint: views are for ambient image models (one mask channel); "
                "a model trained on clean images sees the iterate itself: use 0 views");
  const int64_t s = y.size(0), h = y.size(1), w = y.size(2), k = c.samples, b = k * s;
  // Chain j of image i is batch item j S + i.
  const auto mask_b = m.repeat({k, 1, 1});
  const auto y_b = (y * m).repeat({k, 1, 1});
  auto a = mri::make_mask(mask_b, {b, h, w}, "A (image mask)");
  DenoiserFn prior = d;
  if (cond_channels == 1)
    prior = c.views == 0 ? seen_through(d, image_corruption(mask_b.unsqueeze(1)))
                         : seen_through_views(d, draw_views(b, h, w, c.views, c.draw, c.seed));
  auto gen = at::detail::createCPUGenerator(derive_seed(c.seed, SeedStream::recon_slices, 0));
  auto draw = posterior_chain(prior, a, y_b, c.posterior, gen, {}, monitor);
  const auto samples = from_channels(draw.sample).reshape({k, s, h, w});
  const auto means = from_channels(draw.mean).reshape({k, s, h, w});
  Inpainting out;
  out.mean = means.mean(0);
  out.samples = samples;
  out.std = k > 1 ? ((samples - samples.mean(0, true)).abs().square().sum(0) / static_cast<double>(k - 1)).sqrt()
                  : torch::zeros({s, h, w});
  return out;
}

}  // namespace ambient::diffusion
