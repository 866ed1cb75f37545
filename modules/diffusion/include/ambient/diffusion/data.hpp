// Training data: sources that load one example at a time from disk, a deterministic order derived from
// (seed, step), and a loader that prepares the next batches on a background thread.
#pragma once

#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <torch/torch.h>

#include "ambient/mri/coils.hpp"
#include "ambient/mri/scan.hpp"

namespace ambient::diffusion {

/// One training example (a slice). Which fields are set depends on the source:
/// clean: image; block: image (what A observed, zero elsewhere) and mask; Fourier: ksp, maps, lines, calib.
struct Example {
  torch::Tensor image;  ///< [2, H, W] float: network-side image, scaled (docs/conventions.md)
  torch::Tensor mask;   ///< [1, H, W] float 0/1: A for image-domain corruption
  torch::Tensor ksp;    ///< [C, ky, kx] complex64, scaled
  torch::Tensor maps;   ///< [C, ky, kx] complex64
  torch::Tensor lines;  ///< [ky] bool: A's sampled lines
  torch::Tensor calib;  ///< [ky] bool
};

/// A batch: the same fields stacked over dim 0.
struct Batch {
  torch::Tensor image, mask, ksp, maps, lines, calib;
  int64_t size() const;
};
Batch collate(const std::vector<Example>& examples);

/// Where examples come from. Examples are grouped in files; load(file, slice) may be slow (disk, ESPIRiT).
class Source {
 public:
  virtual ~Source() = default;
  virtual int64_t files() const = 0;
  virtual int64_t slices(int64_t file) const = 0;
  virtual Example load(int64_t file, int64_t slice) = 0;
  int64_t total() const;
};

/// Clean complex slices from NIfTI volumes (pretraining): magnitude resampled to `matrix`, a smooth random phase
/// seeded per slice, scaled so the 99th percentile of |x| is 1.
/// A volume may carry its own orientation as "path@coronal"; others use `orientation`.
std::unique_ptr<Source> clean_volume_source(const std::vector<std::string>& volumes, int64_t matrix,
                                            const std::string& orientation, uint64_t seed);
/// The magnitudes of those slices, [N, H, W] float, each scaled as above, in file then slice order (what
/// `ambient pretrain --dump-slices` writes for apps/gpu_pretrain, which draws the phase itself).
torch::Tensor clean_volume_magnitudes(const std::vector<std::string>& volumes, int64_t matrix,
                                      const std::string& orientation);

struct ScanSourceConfig {
  std::string corruption = "fourier";  ///< fourier: k-space + maps; block: image-domain boxes erased; none: clean
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

/// The deterministic order: the (file, slice) pairs of epoch e are a permutation drawn from (seed, e), file by file
/// (files shuffled, slices shuffled within each file) so a one-file cache suffices. Example k of the run is
/// order(k / total)[k % total].
class Order {
 public:
  Order(const Source& source, uint64_t seed);
  std::pair<int64_t, int64_t> at(int64_t k);

 private:
  std::vector<std::pair<int64_t, int64_t>> epoch(int64_t e) const;
  const Source& source_;
  uint64_t seed_;
  int64_t total_;
  int64_t cached_epoch_ = -1;
  std::vector<std::pair<int64_t, int64_t>> cache_;
};

/// Prepares batch t on a background thread, `depth` batches ahead: examples k = (t·W + r)·B ... (t·W + r)·B + B-1
/// of the order (with seeded flips) for rank r of W processes; one process (W = 1) takes t·B ... t·B+B-1. The W
/// ranks together take exactly the global batch of size W·B that one process would, and each reads only its part.
class Loader {
 public:
  Loader(std::shared_ptr<Source> source, int64_t batch, uint64_t seed, int64_t first_step, bool flips,
         int64_t depth = 2, int64_t rank = 0, int64_t world = 1);
  /// The order index of the first example of step t's batch on this rank.
  static int64_t first_index(int64_t step, int64_t batch, int64_t rank, int64_t world) {
    return (step * world + rank) * batch;
  }
  ~Loader();
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  /// The batch for the next step (blocks until ready); rethrows the worker's errors.
  Batch next();

 private:
  void work();
  std::shared_ptr<Source> source_;
  int64_t batch_;
  uint64_t seed_;
  bool flips_;
  int64_t depth_;
  int64_t rank_, world_;
  int64_t next_step_;
  std::deque<Batch> ready_;
  std::exception_ptr error_;
  bool stop_ = false;
  std::mutex mutex_;
  std::condition_variable cv_;
  std::thread thread_;
};

/// Augmentation: flips an example left-right and/or up-down (image, mask, k-space, maps and lines consistently).
Example flip(const Example& e, bool horizontal, bool vertical);

}  // namespace ambient::diffusion
