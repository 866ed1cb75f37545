// Pretraining on clean slices held in memory, on any device: the loop `apps/gpu_pretrain` runs on a GPU. It needs
// nothing but LibTorch (no FFTW, ITK or HDF5), so it builds against another LibTorch than Debian's, e.g. a CUDA
// one. It trains what `ambient pretrain` trains on NIfTI volumes (the clean EDM objective, objectives.hpp), with
// the augmentation drawn afresh on the device at every step: random flips and a random smooth phase per image.
#pragma once

#include <functional>
#include <string>

#include <torch/torch.h>

#include "ambient/core/tensor_file.hpp"
#include "ambient/diffusion/edm.hpp"

namespace ambient::diffusion {

struct SliceTrainConfig {
  int64_t steps = 40000;
  int64_t batch = 128;
  double lr = 6e-4;             ///< Adam, after a linear warm-up
  int64_t warmup = 1000;        ///< steps
  double ema_halflife = 2000;   ///< steps
  double grad_clip = 1.0;       ///< max global gradient norm (0: off)
  uint64_t seed = 1;
  bool bf16 = true;             ///< bfloat16 autocast for the network (GroupNorm stays float32)
  bool flips = true;
  double phase_strength = 1.5;  ///< max |phase| in radians of the smooth phase (as mri::smooth_phase in pretrain)
  int64_t checkpoint_every = 1000;
  double time_limit_s = 0;      ///< stop after this much wall time, checkpointed (0: no limit)
  int64_t report_every = 50;    ///< steps between reports (each costs one device synchronisation)
};

struct SliceTrainReport {
  int64_t step = 0, steps = 0;
  double loss = 0;              ///< mean over the steps since the last report
  double lr = 0;
  double images_per_s = 0;
  double elapsed_s = 0;
  bool checkpointed = false;
};
using SliceMonitor = std::function<void(const SliceTrainReport&)>;

/// Trains a fresh network (or, with `resume`, the run saved at `out`) on `magnitudes` [N, H, W] (float, each slice
/// scaled so its 99th percentile is 1) on `device`. Writes `out`: the EMA weights as a tensor file
/// (tensor_file.hpp; `ambient export` turns it into a checkpoint), and beside it `out.model.pt` and `out.adam.pt`
/// (weights and optimiser, this LibTorch's archives) for --resume. Returns the step reached.
int64_t train_on_slices(const torch::Tensor& magnitudes, const UNetConfig& net, const EdmConfig& edm,
                        const SliceTrainConfig& cfg, torch::Device device, const std::string& out, bool resume,
                        const SliceMonitor& monitor = {});

/// Random smooth phase maps [B, H, W] (float, on gen's device): the real part of the centred inverse FFT of 5x5
/// random complex low frequencies, scaled to max |phase| = strength (the recipe of mri::smooth_phase).
torch::Tensor random_smooth_phase(int64_t batch, int64_t h, int64_t w, double strength, const torch::TensorOptions& o);

/// Builds the EDM network described by an EMA tensor file's metadata and loads its weights.
EdmDenoiser load_weights_file(const std::string& path, int64_t* step = nullptr);

}  // namespace ambient::diffusion
