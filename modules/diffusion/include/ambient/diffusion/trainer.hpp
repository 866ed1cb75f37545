// Training: Adam with warm-up, gradient clipping, EMA of weights, deterministic data and noise from (seed, step),
// checkpoints (checkpoint.hpp) and exact resume; the one training loop over any objective.
#pragma once

#include <functional>
#include <limits>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/checkpoint.hpp"
#include "ambient/diffusion/data.hpp"
#include "ambient/diffusion/distributed.hpp"
#include "ambient/diffusion/edm.hpp"
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
  double val_loss = std::numeric_limits<double>::quiet_NaN();  ///< set on validation steps
  bool checkpointed = false;
};
using TrainMonitor = std::function<void(const StepReport&)>;

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
