// Training data from disk: the sources that read scans and volumes (ISMRMRD, fastMRI, cfl, NIfTI) one example at a
// time. What they load is batched by batch.hpp.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

#include "ambient/diffusion/batch.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/scan.hpp"

namespace ambient::diffusion {

/// Clean complex slices from NIfTI volumes (pretraining): magnitude resampled to `matrix`, a smooth random phase
/// seeded per slice, scaled so the 99th percentile of |x| is 1.
/// A volume may carry its own orientation as "path@coronal"; others use `orientation`.
std::unique_ptr<Source> clean_volume_source(const std::vector<std::string>& volumes, int64_t matrix,
                                            const std::string& orientation, uint64_t seed);
/// The magnitudes of those slices, [N, H, W] float, each scaled as above, in file then slice order (what
/// `ambient pretrain --dump-slices` writes for apps/gpu_pretrain, which draws the phase itself).
torch::Tensor clean_volume_magnitudes(const std::vector<std::string>& volumes, int64_t matrix,
                                      const std::string& orientation);

/// What a scan source gives the objective: fourier, the measured k-space lines with coil maps (A = M F S); block,
/// the coil-combined image with seeded boxes erased (an image-domain A); none, the fully sampled image as clean.
enum class Corruption { fourier, block, none };
Corruption parse_corruption(const std::string& name);  ///< "fourier" | "block" | "none"
std::string corruption_name(Corruption c);
/// The objective that fine-tunes on data of this corruption: the ambient one of its domain, or the naive baseline.
Objective finetune_objective(Corruption c, bool naive);

struct ScanSourceConfig {
  Corruption corruption = Corruption::fourier;
  int64_t block_count = 6;             ///< block corruption: boxes per slice (fixed per slice, seeded)
  int64_t block_min = 8, block_max = 32;
  mri::EspiritConfig espirit;
  uint64_t seed = 0;
};
/// Slices of scans on disk (ISMRMRD, fastMRI, cfl). Fourier: the measured k-space, ESPIRiT maps and the line mask;
/// every slice scaled so the coil-combined zero-filled image has its 99th percentile at 1. Block: the coil-combined
/// zero-filled image of the scan with seeded boxes erased (A), for the image-domain ambient objective.
/// Keeps only the most recently used file in memory.
std::unique_ptr<Source> scan_source(const std::vector<std::string>& scans, const ScanSourceConfig& config);

/// Expands folders to the scan or volume files inside them (sorted), keeps files as they are.
std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs, const std::vector<std::string>& exts);

}  // namespace ambient::diffusion
