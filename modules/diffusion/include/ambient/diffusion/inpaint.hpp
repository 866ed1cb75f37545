// Inpainting of images measured through a pixel mask (a block-corrupted scan; issue 16 item 2): posterior sampling
// with data consistency on the observed pixels, the network seeing each iterate as training showed it data.
#pragma once

#include <vector>

#include <torch/types.h>

#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/samplers.hpp"

namespace ambient::diffusion {

/// How an ambient image model's further corruption Ã is drawn: `blocks` boxes of sides min_size..max_size
/// (finetune's --blocks plus --extra-blocks, of its --block-size), or, with blocks 0, each pixel erased with
/// probability `delta`. Inference shows the network its input through masks drawn the same way.
struct ViewDraw {
  int64_t blocks = 0;
  int64_t min_size = 8, max_size = 32;
  double delta = 0;
};

/// `count` masks ("views"), each [n, 1, h, w] float 0/1 (1: shown). Boxes: view k of image i comes from
/// derive_seed(seed, further_masks, i) for k = 0 and derive_seed(seed, further_masks, i, k) after, so view 0 is
/// the one fixed Ã that a single-view run draws. Pixels: one generator seeded from (seed, sample_corruption, 0)
/// draws the views in order.
std::vector<torch::Tensor> draw_views(int64_t n, int64_t h, int64_t w, int64_t count, const ViewDraw& draw,
                                      uint64_t seed);

struct InpaintConfig {
  PosteriorConfig posterior;  ///< schedule, measurement noise (network units), γ(σ)
  int64_t samples = 4;        ///< chains per image; their final Gaussian means average to the posterior mean
  /// How the network sees the iterate x (for a model with a mask channel):
  ///  0: through the image's own mask (Ã = A: Daras et al.'s fixed mask; A's holes end at their conditional mean;
  ///  measured best on held-out slices, docs/objectives.md);
  ///  K >= 1: through K masks of `draw` per chain, each pixel predicted by the views that show it
  ///  (seen_through_views), so pixels in A's holes are denoised from views in which they are seen.
  int64_t views = 0;
  ViewDraw draw;
  uint64_t seed = 0;
};

struct Inpainting {
  torch::Tensor mean;     ///< [S, H, W] complex: the average of the chains' last Gaussian means (posterior_chain)
  torch::Tensor std;      ///< [S, H, W] float: the standard deviation of the chains' samples, per pixel (complex)
  torch::Tensor samples;  ///< [samples, S, H, W] complex
};

/// Posterior sampling for y = A x + n with A a pixel mask: `y` [S, H, W] complex in network units (zero where not
/// observed), `mask` [S, H, W] 0/1 (1: observed). `cond_channels` is the model's number of mask channels: 0 (a
/// model trained on clean images: it sees x itself; views must be 0 then) or 1 (an ambient image model).
/// All chains of all images run as one batch. Exact for the exact denoiser of a Gaussian prior of variance
/// posterior.prior_var whose pixels are independent, with or without views (tests).
Inpainting inpaint(const DenoiserFn& d, const torch::Tensor& y, const torch::Tensor& mask, int64_t cond_channels,
                   const InpaintConfig& config, const SamplerMonitor& monitor = nullptr);

}  // namespace ambient::diffusion
