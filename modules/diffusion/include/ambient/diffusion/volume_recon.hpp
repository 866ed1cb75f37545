// Reconstructing a whole scan, shared out over the ranks of a job: `ambient recon`'s work without its options and
// files. Each rank takes its slices round-robin (group.hpp, shard), estimates their coil maps and reconstructs them
// with the method asked for; a sum over ranks completes the maps and the volume on every rank. A lone process does
// every slice.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <torch/torch.h>

#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/group.hpp"
#include "ambient/diffusion/reconstruct.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/recon.hpp"
#include "ambient/mri/scan.hpp"

namespace ambient::diffusion {

/// What a long stage reports: `done` of `total` units, with a note ("sigma 0.25", "residual 1e-3"). A stage's name
/// says what it is ("coil maps (ESPIRiT)", "CG-SENSE", "posterior sampling (4 samples/slice)").
using StageMonitor =
    std::function<void(const std::string& stage, int64_t done, int64_t total, const std::string& note)>;

/// ESPIRiT maps [slice, coil, ky, kx] of every slice of `scan`: this rank estimates its own slices, the sum over
/// ranks completes them on every rank.
torch::Tensor shared_espirit_maps(const mri::Scan& scan, const mri::EspiritConfig& config, Group& group,
                                  const StageMonitor& monitor = {});

struct VolumeReconConfig {
  ReconMethod method = ReconMethod::cg_sense;
  mri::CgConfig cg;          ///< cg-sense (the Tikhonov weight λ is the caller's choice)
  ReconstructConfig model;   ///< posterior | dps; its seed is rank 0's (rank r > 0 from derive_seed, SeedStream::recon_ranks)
};

struct VolumeRecon {
  torch::Tensor zero_filled;  ///< [slice, ky, kx] complex64, every slice
  torch::Tensor image;        ///< [slice, ky, kx] complex64, every slice on every rank
  torch::Tensor std;          ///< [slice, ky, kx] float, sampling methods only: standard deviation over samples
  int64_t batches = 0;        ///< sampling methods: this rank's slice batches (slices_per_batch)
};

/// Reconstructs `scan` with coil maps `maps` [slice, coil, ky, kx] by `config.method`; `model` is needed by the
/// sampling methods only. Results are deterministic for a seed and a number of ranks.
VolumeRecon reconstruct_volume(const mri::Scan& scan, const torch::Tensor& maps, const VolumeReconConfig& config,
                               const ModelPtr& model, Group& group, const StageMonitor& monitor = {});

}  // namespace ambient::diffusion
