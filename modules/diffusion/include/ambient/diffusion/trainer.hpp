// Training: Adam with warm-up, gradient clipping, EMA of weights, deterministic data and noise from (seed, step),
// checkpoints (checkpoint.hpp) and exact resume; the one training loop, over any objective, any batch source
// (batch.hpp: a loader of examples from disk, or clean slices on a device) and any device. LibTorch only.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/batch.hpp"
#include "ambient/diffusion/checkpoint.hpp"
#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/group.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/train_config.hpp"

namespace ambient::diffusion {

/// What the monitor sees after each step.
struct StepReport {
  int64_t step = 0;     ///< steps done
  int64_t steps = 0;    ///< total steps of the run
  double loss = 0;
  double lr = 0;
  double images_per_s = 0;  ///< over all ranks
  double comm_s = 0;        ///< data-parallel: seconds waiting for the gradient all-reduce after backward
  double elapsed_s = 0;     ///< since the loop started
  double val_loss = std::numeric_limits<double>::quiet_NaN();  ///< set on validation steps
  bool checkpointed = false;
};
using TrainMonitor = std::function<void(const StepReport&)>;

/// Writes a checkpoint of the state (called on rank 0 only).
using CheckpointWriter = std::function<void(const TrainState&, const TrainConfig&)>;

/// What a run reads and writes besides its state and settings.
struct TrainIO {
  std::shared_ptr<BatchSource> batches;  ///< step state.step's batch first, then the next steps' (this rank's part)
  std::shared_ptr<Source> validation;    ///< held-out examples for the validation loss (may be null)
  CheckpointWriter save;                 ///< every cfg.checkpoint_every steps, at the end, on time-out (may be empty)
  TrainMonitor monitor;                  ///< after every step, on rank 0 (may be empty)
  std::shared_ptr<Group> group;          ///< null: one process
};

/// The training loop: trains state (model, EMA and optimiser, on the device its model is on) from state.step to
/// cfg.steps, or until cfg.time_limit_s has passed. Returns the step reached.
/// With a distributed `group` (group.hpp) every rank runs this with the same arguments: rank 0's weights are
/// broadcast first, each rank takes its part of a global batch of cfg.batch × world examples, gradients are averaged
/// over ranks, and only rank 0 saves and reports. The result equals one process training with a batch of
/// cfg.batch × world (up to float rounding in the sums).
int64_t train(TrainState& state, const TrainConfig& cfg, const TrainIO& io);

/// The usual run on the CPU: batches from a Loader (batch.hpp) over `data` for this rank, checkpoints written with
/// save_checkpoint to `checkpoint` (none when empty).
void train(TrainState& state, const TrainConfig& cfg, std::shared_ptr<Source> data, std::shared_ptr<Source> validation,
           const std::string& checkpoint, const TrainMonitor& monitor, std::shared_ptr<Group> group = nullptr);

/// The loss of one batch under the configured objective (used by train and by validation). Example j draws its σ,
/// noise and further corruption from (draw_seed, first_index + j), so the draws do not depend on how a global
/// batch is split between processes, nor on the device: they are drawn on the CPU and moved to the batch's device.
torch::Tensor batch_loss(const ModelPtr& model, const Batch& batch, const TrainConfig& cfg, uint64_t draw_seed,
                         bool holdout, int64_t first_index = 0);

}  // namespace ambient::diffusion
