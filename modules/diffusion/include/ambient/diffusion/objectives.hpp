// Training objectives, each a small tested unit (docs/objectives.md):
// clean denoising score matching; ambient with image-domain masks (Daras et al. 2023); ambient with Fourier
// subsampling and coil maps (Aali et al. 2024); and the naive baseline that treats corrupted images as clean.
// Each is a TrainingObjective, one file each (objective_clean.cpp for clean and naive, objective_ambient_image.cpp,
// objective_ambient_fourier.cpp); the trainer knows only the interface.
// Network-side images are [B, 2, H, W] float (real, imag); masks [B, 1, H, W] float 0/1.
#pragma once

#include <memory>
#include <random>
#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/batch.hpp"
#include "ambient/diffusion/edm.hpp"

namespace ambient::diffusion {

/// complex [B, H, W] <-> [B, 2, H, W]
torch::Tensor to_channels(const torch::Tensor& complex_images);
torch::Tensor from_channels(const torch::Tensor& channels);

/// What one step's randomness is: σ [B] and standard normal noise shaped like the image.
struct NoiseDraw {
  torch::Tensor sigma;
  torch::Tensor noise;
};

/// 1. Clean DSM: λ(σ) ||D(x0 + σ n; σ) − x0||², averaged over pixels and batch.
torch::Tensor clean_loss(const DenoiserFn& d, const torch::Tensor& x0, const NoiseDraw& draw, const EdmConfig& edm);

/// Ã = B A for image-domain masks: each kept pixel of A [B, 1, H, W] is dropped with probability delta.
torch::Tensor further_corrupt_pixels(const torch::Tensor& a, double delta, at::Generator& gen);
/// Ã = B A with B erasing `count` extra random boxes (sides in [min_size, max_size]) per example.
torch::Tensor further_corrupt_blocks(const torch::Tensor& a, int64_t count, int64_t min_size, int64_t max_size,
                                     std::mt19937_64& rng);

/// 2. Ambient, image domain. y [B, 2, H, W] (only values where A observed are used), a = A, a_tilde = Ã ⊆ A.
/// Input Ã (y + σ n) with Ã as a channel; loss λ(σ) ||A (D − y)||² / (observed values), mean over the batch.
/// `score` (default A) chooses where the loss is measured: validation passes A − Ã, the pixels Ã hid but A saw,
/// a quantity that needs no clean data. With edm.precond masked, pixels Ã hid are weighed 1/σ_d² instead of λ(σ).
torch::Tensor ambient_image_loss(const DenoiserFn& d, const torch::Tensor& y, const torch::Tensor& a,
                                 const torch::Tensor& a_tilde, const NoiseDraw& draw, const EdmConfig& edm,
                                 const torch::Tensor& score = {});

/// One batch of Fourier-subsampled multi-coil training data (every tensor batched over slices).
struct FourierBatch {
  torch::Tensor ksp;    ///< [B, C, ky, kx] complex64 measured k-space (zero where not sampled)
  torch::Tensor maps;   ///< [B, C, ky, kx] complex64 coil maps
  torch::Tensor mask;   ///< [B, ky] bool: A's lines
  torch::Tensor calib;  ///< [B, ky] bool: calibration lines (never dropped by Ã)
};

/// Ã's lines: each non-calibration line of `mask` [B, ky] dropped with probability delta (mri::further_subsample).
torch::Tensor further_subsample_lines(const torch::Tensor& mask, const torch::Tensor& calib, double delta,
                                      std::mt19937_64& rng);

/// 3. Ambient, Fourier (A-DPS). A = M F S, Ã = M̃ F S with M̃ ⊆ M. Input: the coil-combined adjoint image
/// Ã^H Ã (x0 + σ n) = S^H F^H M̃ (y + σ F S n) with M̃ as a channel; loss λ(σ) ||A D − y||² in k-space over the
/// observed samples. draw.noise is complex [B, H, W] image-domain noise.
/// `score_lines` (default A's lines) chooses the k-space lines the loss is measured on (validation: A − Ã).
/// With edm.precond masked-lines, lines Ã dropped are weighed 1/σ_d² instead of λ(σ).
torch::Tensor ambient_fourier_loss(const DenoiserFn& d, const FourierBatch& batch, const torch::Tensor& mask_tilde,
                                   const NoiseDraw& draw, const EdmConfig& edm, const torch::Tensor& score_lines = {});

/// The mask channel the Fourier objective (and sampler) feeds the network: [B, ky] lines -> [B, 1, ky, kx].
torch::Tensor line_mask_channel(const torch::Tensor& lines, int64_t nx);

/// 4. Naive baseline: the clean objective on corrupted images taken as clean (zero-filled A^H y, or y with holes).
torch::Tensor naive_loss(const DenoiserFn& d, const torch::Tensor& corrupted, const NoiseDraw& draw,
                         const EdmConfig& edm);

enum class Objective { clean, ambient_image, ambient_fourier, naive };
Objective parse_objective(const std::string& name);  ///< also "block" and "fourier", finetune's --corruption
std::string objective_name(Objective o);

/// The preconditioning an objective trains with unless told otherwise: masked for the ambient image objective (what
/// Ã hid is predicted directly; docs/objectives.md), standard for every other.
Precond default_precond(Objective o);
/// "masked" in the objective's own domain: pixels for the ambient image objective, k-space lines for the Fourier one.
/// Other objectives have no Ã to read and throw.
Precond masked_precond(Objective o);

/// How the ambient objectives draw Ã from A (TrainConfig holds the same fields).
struct FurtherCorruptionConfig {
  double delta = 0.2;        ///< pixels: extra erasure probability; Fourier: fraction of A's lines dropped
  int64_t extra_blocks = 0;  ///< image masks: erase this many extra boxes instead of pixels (0: pixels)
  int64_t extra_block_min = 8, extra_block_max = 32;  ///< their side range
};

/// One training objective. The trainer draws, for example j of a batch and from that example's own generators,
/// its further corruption, then σ, then its noise (that order: checkpoints of earlier versions resume exactly),
/// and asks for the batch's loss.
class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  virtual Objective kind() const = 0;
  /// Example j's further corruption Ã [1, ...] (undefined for objectives without one). Throws when the batch lacks
  /// what the objective needs, naming the data to use.
  virtual torch::Tensor draw_corruption(const Batch& batch, int64_t j, at::Generator& gen,
                                        std::mt19937_64& rng) const {
    return {};
  }
  /// Example j's unit noise (noise_like's convention, σ = 1), shaped as the image the objective noises.
  virtual torch::Tensor draw_noise(const Batch& batch, at::Generator& gen) const = 0;
  /// The batch's loss for the draws. `corruption` holds the examples' Ã along dim 0; `holdout` scores only what Ã
  /// hid but A saw, the validation loss that needs no clean data.
  virtual torch::Tensor loss(const DenoiserFn& d, const Batch& batch, const torch::Tensor& corruption,
                             const NoiseDraw& draw, const EdmConfig& edm, bool holdout) const = 0;
};

std::unique_ptr<TrainingObjective> make_objective(Objective kind, const FurtherCorruptionConfig& further = {});

}  // namespace ambient::diffusion
