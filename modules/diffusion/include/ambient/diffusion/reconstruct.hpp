// Model-based reconstruction of a scan: intensity scaling, batched posterior sampling of K samples per slice,
// mean and per-pixel standard deviation, scale undone. The physics comes in as an mri::LinearOperator.
#pragma once

#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/samplers.hpp"
#include "ambient/mri/scan.hpp"

namespace ambient::diffusion {

/// How `ambient recon` reconstructs: without a model (zero-filled, CG-SENSE) or by sampling with one (posterior:
/// fast, data consistency by CG; dps: gradient guidance).
enum class ReconMethod { zero_filled, cg_sense, posterior, dps };
/// "zero-filled" | "cg-sense" | "posterior" | "dps"; anything else throws, naming the choices and `what` was given.
ReconMethod parse_recon_method(const std::string& name, const char* what = "recon method");
std::string recon_method_name(ReconMethod method);
/// posterior and dps sample with a trained model.
inline bool samples_with_model(ReconMethod method) {
  return method == ReconMethod::posterior || method == ReconMethod::dps;
}

struct ReconstructConfig {
  ReconMethod method = ReconMethod::posterior;  ///< posterior | dps
  int64_t samples = 4;               ///< posterior samples per slice
  PosteriorConfig posterior;         ///< schedule, CG iterations, DPS step; noise_var is set per slice here
  double noise_var = -1;             ///< per complex k-space sample before scaling; < 0: 1 if prewhitened, else
                                     ///< estimated from the outer k-space columns
  bool bf16 = false;                 ///< bfloat16 autocast for the network
  uint64_t seed = 0;
  /// Models with a mask channel trained with the ambient Fourier objective learnt E[x0 | Ã^H Ã x_t, Ã]: they are
  /// fed Ã^H Ã x_t through one fixed line mask Ã of this acceleration per sample (drawn like the training masks,
  /// with the scan's coil maps), as A-DPS does (Aali et al. 2024). 0: give the network x_t with an all-ones mask.
  double further_accel = 0;
  /// With further_accel: the network's estimate at each step is the mean over this many fixed further masks Ã_v per
  /// sample (Daras et al.'s sampler averages over several masks too), at this many network calls per step. 1: one.
  int64_t further_views = 1;
  /// The network sees at most this many of the samples × slices at a time (<= 0: all at once). Results do not
  /// depend on it; on CPU small batches are faster per item (docs/performance.md).
  int64_t network_batch = 4;
  /// Slices sampled together (their K samples each in one batch); memory grows with it, not with the volume.
  /// <= 0: as many as keep one K × C × ny × nx tensor of the batch under 128 MB (slices_per_batch). A scan that fits
  /// one batch gives the same result for any value; beyond that, each batch draws its noise from its own seed.
  int64_t slice_batch = 0;
  /// posterior: the reconstruction is the mean over samples of each chain's last conditional mean E[x0 | x(σ_min), y]
  /// (samplers.hpp, PosteriorDraw) rather than of the samples themselves; the --std map comes from the samples
  /// either way. The same chains, a lower-variance estimate of the posterior mean: with the shipped ambient model
  /// +0.13-0.18 dB and SSIM 0.76 / 0.71 → 0.84 / 0.80 at R = 4 / 8 on held-out slices (docs/sampling.md).
  bool conditional_mean = true;
  /// Where every coil map is 0 (outside ESPIRiT's crop: no coil sees signal there) y says nothing about the image,
  /// and the posterior there is the prior's own fill. true: the reconstruction and its std are 0 there, as the
  /// coil-combined image is defined and as CG-SENSE and zero-filling give. A network that sees the whole image fills
  /// that region with what its training images had outside the head; on skull-stripped held-out subjects that cost
  /// the foundation 2.7 dB and the naive network 9.1 dB at R = 4 (docs/results.md, "Where the error lies").
  bool zero_outside_maps = true;
};

/// How to reconstruct with the model in `checkpoint`, chosen from what the checkpoint says it is (objective, mask
/// channels); the measurements behind each choice are in docs/sampling.md. Models trained with the ambient Fourier
/// objective and a mask channel see x_t through a fixed further mask (A-DPS) and average many short chains; every
/// other model (clean, naive, block, TorchScript) runs fewer, longer chains with the plain Gaussian γ(σ).
/// Callers override single fields; `ambient recon` does so only for the options given on its command line.
ReconstructConfig defaults_for(const std::string& checkpoint);
/// `given` with every field it leaves unset (-1: samples, steps, further_accel, gamma_floor, gamma_scale) taken from
/// defaults_for(checkpoint): what `ambient recon` runs when only some options are given.
ReconstructConfig with_defaults_for(ReconstructConfig given, const std::string& checkpoint);

struct Reconstruction {
  torch::Tensor mean;  ///< [slice, ky, kx] complex64: the reconstruction (the posterior-mean estimate), scan units
  torch::Tensor std;   ///< [slice, ky, kx] float: per-pixel standard deviation of the magnitude over samples
  torch::Tensor scale; ///< [slice]: the intensity scale each slice was divided by
};

/// The slices that `reconstruct` samples together for this scan (config.slice_batch, or the memory rule).
int64_t slices_per_batch(const ReconstructConfig& config, const mri::Scan& scan);

/// Reconstructs every slice of `scan` with coil maps `maps` [slice, coil, ky, kx], slices_per_batch at a time;
/// `monitor` sees each step, counted over the batches (steps × number of batches in all).
Reconstruction reconstruct(const ModelPtr& model, const mri::Scan& scan, const torch::Tensor& maps,
                           const ReconstructConfig& config, const SamplerMonitor& monitor = nullptr);

}  // namespace ambient::diffusion
