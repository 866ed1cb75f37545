// Training: Adam with warm-up, gradient clipping, EMA of weights, deterministic data and noise from (seed, step),
// atomic versioned checkpoints, and exact resume.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/data.hpp"
#include "ambient/diffusion/distributed.hpp"
#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/scripted.hpp"

namespace ambient::diffusion {

struct TrainConfig {
  Objective objective = Objective::clean;
  int64_t steps = 1000;
  int64_t batch = 4;
  double lr = 2e-4;
  int64_t warmup = 100;             ///< linear learning-rate warm-up over this many steps
  double grad_clip = 1.0;           ///< max global gradient norm (0: off)
  double ema_halflife = 100;        ///< EMA half-life in steps
  double delta = 0.2;               ///< ambient: extra erasure probability (pixels) or line-drop fraction (Fourier)
  int64_t extra_blocks = 0;         ///< ambient image: erase this many extra boxes instead of pixels (0: pixels)
  /// Side range of those boxes: A's own (finetune --block-size), so that a region Ã erased looks like one A
  /// erased and the loss on A \ Ã teaches inpainting of the holes the sampler's Ã will have.
  int64_t extra_block_min = 8, extra_block_max = 32;
  uint64_t seed = 0;
  int64_t checkpoint_every = 100;
  int64_t val_every = 50;
  int64_t val_batches = 2;
  bool flips = true;
  bool bf16 = false;                ///< CPU autocast to bfloat16 for the forward pass
  int threads = 0;                  ///< data loading shares the cores; 0 leaves LibTorch's setting
  double bucket_mb = 4;             ///< data-parallel: gradient bucket size (MB); <= 0: one all-reduce after backward
};

/// What the monitor sees after each step.
struct StepReport {
  int64_t step = 0;     ///< steps done
  int64_t steps = 0;    ///< total steps of the run
  double loss = 0;
  double lr = 0;
  double images_per_s = 0;  ///< over all ranks
  double comm_s = 0;        ///< data-parallel: seconds waiting for the gradient all-reduce after backward
  double val_loss = std::numeric_limits<double>::quiet_NaN();  ///< set on validation steps
  bool checkpointed = false;
};
using TrainMonitor = std::function<void(const StepReport&)>;

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

/// Trains from state.step to cfg.steps, checkpointing to `checkpoint` every cfg.checkpoint_every steps and at the
/// end. `validation` (may be null) gives held-out data for the validation loss.
/// With a distributed `group` (distributed.hpp) every rank runs this with the same arguments: rank 0's weights are
/// broadcast first, each rank takes its part of a global batch of cfg.batch × world examples, gradients are averaged
/// over ranks, and only rank 0 writes checkpoints and calls `monitor`. The result equals one process training with
/// a batch of cfg.batch × world (up to float rounding in the sums).
void train(TrainState& state, const TrainConfig& cfg, std::shared_ptr<Source> data, std::shared_ptr<Source> validation,
           const std::string& checkpoint, const TrainMonitor& monitor, std::shared_ptr<Group> group = nullptr);

/// The loss of one batch under the configured objective (used by train and by validation). Example j draws its σ,
/// noise and further corruption from (draw_seed, first_index + j), so the draws do not depend on how a global
/// batch is split between processes.
torch::Tensor batch_loss(const ModelPtr& model, const Batch& batch, const TrainConfig& cfg, uint64_t draw_seed,
                         bool holdout, int64_t first_index = 0);

}  // namespace ambient::diffusion
