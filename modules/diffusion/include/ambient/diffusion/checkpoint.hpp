// Checkpoints: a model and its training state in one versioned LibTorch archive, written atomically; loading for
// resume, for fine-tuning (a foundation, widened for mask channels) and for inference; what `ambient info` shows.
#pragma once

#include <memory>
#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/scripted.hpp"
#include "ambient/diffusion/train_config.hpp"

namespace ambient::diffusion {

/// The noise convention checkpoints are trained under (docs/conventions.md, "Noise"): 2 = σ per real network
/// channel, noise_like's. 1: ambient-Fourier checkpoints written before 2026-12-03, whose complex noise draw gave
/// σ/√2 per channel while the network was told σ (every other objective was always 2). Checkpoints record it.
constexpr int64_t kNoiseConvention = 2;

/// A model and its training state.
struct TrainState {
  ModelPtr model;
  ModelPtr ema;
  std::unique_ptr<torch::optim::Adam> optimizer;
  int64_t step = 0;
  std::string objective;  ///< what the checkpoint was trained with
  int64_t noise_convention = kNoiseConvention;  ///< what its noise draws were (kNoiseConvention)
};

/// A fresh model (and its EMA copy) for a network/EDM configuration, initialised from `seed`.
TrainState new_state(const UNetConfig& net, const EdmConfig& edm, const TrainConfig& cfg);

/// Loads a checkpoint: with `for_resume`, the optimiser state and step too; otherwise the EMA weights become the
/// model (a foundation to fine-tune) and training starts at step 0. `extra_cond` widens the input first (EDM UNet
/// foundations; a TorchScript foundation (scripted.hpp) is accepted here too and takes no mask channel).
TrainState load_state(const std::string& path, const TrainConfig& cfg, bool for_resume, int64_t extra_cond = 0);

/// A foundation to fine-tune from `path` with cfg.objective: the ambient objectives feed the network one mask channel,
/// so an EDM UNet foundation without one is widened (its new input weights zero, so it starts as it was); a
/// TorchScript foundation is fine-tuned as it is, without a mask channel. A foundation with more mask channels than
/// the objective feeds is refused.
TrainState foundation_state(const std::string& path, const TrainConfig& cfg);

/// Sets the EDM preconditioning of the state's model and EMA (edm.hpp, Precond). `masked` needs an EDM UNet whose
/// first corruption channel is a pixel mask: the ambient image-domain objective.
void set_precond(TrainState& state, Precond precond);

/// Writes model, EMA, optimiser, step, objective and every hyper-parameter to rebuild the network, atomically.
/// `slim` keeps only the EMA weights (a third of the size): enough to sample, reconstruct or fine-tune, not to resume.
void save_checkpoint(const std::string& path, const TrainState& state, const TrainConfig& cfg, bool slim = false);

/// What `ambient info model.pt` prints: configuration, progress, size and a hash of the exact weights.
struct CheckpointInfo {
  std::string net_config, objective;
  int64_t step = 0, parameters = 0;
  int64_t cond_channels = 0;  ///< corruption (mask) channels the network takes
  double sigma_data = 0;
  std::string precond = "standard";  ///< EDM preconditioning (edm.hpp, Precond)
  std::string model_hash, ema_hash;  ///< FNV-1a of the raw weight bytes: equal iff the weights are bit-identical
  bool has_optimizer = false;
  int64_t noise_convention = kNoiseConvention;  ///< 1 for pre-2026-12-03 ambient-Fourier checkpoints
};
CheckpointInfo describe_checkpoint(const std::string& path);

/// True when `path` is an ambient checkpoint (LibTorch archives of both kinds look alike; ours carry a format key).
/// Anything else given as a model is tried as TorchScript.
bool is_ambient_checkpoint(const std::string& path);

/// The denoiser of a checkpoint (EMA weights) for inference, in eval mode, in the current noise convention: a
/// convention-1 network is told √2 σ for noise σ per channel, which is what it learnt (kNoiseConvention).
ModelPtr load_denoiser(const std::string& path);

}  // namespace ambient::diffusion
