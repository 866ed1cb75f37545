// The settings of a training run (finetune, pretrain), shared by the trainer and the checkpoints that record them.
#pragma once

#include <cstdint>

#include "ambient/diffusion/objectives.hpp"

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
  double time_limit_s = 0;          ///< stop after this much wall time, checkpointed (0: no limit; one process only)
};

/// The further-corruption settings of `cfg`, as the objectives take them.
inline FurtherCorruptionConfig further_corruption(const TrainConfig& cfg) {
  return {cfg.delta, cfg.extra_blocks, cfg.extra_block_min, cfg.extra_block_max};
}

}  // namespace ambient::diffusion
