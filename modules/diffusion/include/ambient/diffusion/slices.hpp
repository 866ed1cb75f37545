// Pretraining on clean slices held in memory, on any device: the batches `apps/gpu_pretrain` trains on and the
// portable files it writes. LibTorch only (no FFTW, ITK or HDF5), so it builds against another LibTorch than
// Debian's, e.g. a CUDA one. The loop is the one training loop (trainer.hpp) with the clean objective; what is
// particular here is the batch source, which draws the augmentation afresh at every step (random flips and a random
// smooth phase per image) and builds the batch on the device, and the run files (EMA weights as a tensor file that
// any LibTorch reads, weights and optimiser as this LibTorch's archives for --resume).
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include <torch/torch.h>

#include "ambient/core/tensor_file.hpp"
#include "ambient/diffusion/batch.hpp"
#include "ambient/diffusion/checkpoint.hpp"
#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/trainer.hpp"

namespace ambient::diffusion {

/// The augmentation of clean slices: flips (centred, as the loader's) and a smooth phase of at most this many radians
/// (the recipe of mri::smooth_phase, which `ambient pretrain` uses).
struct SliceAugment {
  bool flips = true;
  double phase_strength = 1.5;
};

/// The recipe of GPU pretraining (ambient-gpu-pretrain's defaults): the clean objective, 40 000 steps of 128 slices,
/// Adam at 6e-4 after 1000 warm-up steps, EMA half-life 2000 steps, bf16 autocast, a checkpoint every 1000 steps.
TrainConfig slice_pretrain_defaults();

/// Clean slices [N, H, W] (magnitudes, each scaled so its 99th percentile is 1) on `device`, batched for one process.
/// Example k of the run is the slice of the loader's order (batch.hpp: Order over one file of N slices, seeded by
/// `seed`) with the loader's flips, times a smooth phase drawn from (seed, k): a fresh phase at every visit. The
/// random numbers are drawn on the CPU (a few per example), the images built on the device.
class SliceBatches final : public BatchSource {
 public:
  SliceBatches(const torch::Tensor& magnitudes, int64_t batch, uint64_t seed, int64_t first_step,
               const SliceAugment& augment, torch::Device device);
  ~SliceBatches() override;
  Batch next() override;

 private:
  class Count;
  std::unique_ptr<Count> count_;
  std::unique_ptr<Order> order_;
  torch::Tensor slices_;
  int64_t batch_;
  uint64_t seed_;
  int64_t step_;
  SliceAugment augment_;
};

/// Trains the network `net` with the clean objective on `magnitudes` [N, H, W] on `device`, from scratch or, with
/// `resume`, from the run saved at `out`: the one training loop over SliceBatches. Writes `out` (the EMA weights as a
/// tensor file, which `ambient export` turns into a checkpoint) and beside it `out.model.pt` and `out.adam.pt`
/// (weights and optimiser for --resume) every cfg.checkpoint_every steps, at the end and when cfg.time_limit_s runs
/// out. Returns the step reached.
int64_t train_on_slices(const torch::Tensor& magnitudes, const UNetConfig& net, const EdmConfig& edm,
                        const TrainConfig& cfg, const SliceAugment& augment, torch::Device device,
                        const std::string& out, bool resume, const TrainMonitor& monitor = {});

/// Builds the EDM network described by an EMA tensor file's metadata and loads its weights.
EdmDenoiser load_weights_file(const std::string& path, int64_t* step = nullptr);

}  // namespace ambient::diffusion
