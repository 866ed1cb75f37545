// Training batches without readers (LibTorch only): examples (y, A) and their batches, the sources that load them,
// the deterministic (seed, step) order, and the batch sources the training loop draws from: a loader that prepares
// the next batches on a background thread, or clean slices in memory on a device (slices.hpp).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <exception>
#include <memory>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <torch/torch.h>

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
  torch::Device device() const;  ///< where its tensors are (image's, or k-space's)
  Batch to(torch::Device device) const;  ///< every tensor on `device` (no copy of those already there)
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

/// Where the training loop takes its batches from: the batch of each step in turn, starting from the step the source
/// was made for. Step t's batch on rank r of W holds examples first_index(t, B, r, W) ... + B − 1 of the run.
class BatchSource {
 public:
  virtual ~BatchSource() = default;
  /// The batch for the next step (may block); rethrows the errors of whatever prepares it.
  virtual Batch next() = 0;
  /// The run index of the first example of step t's batch on rank r of W: each example's draws (σ, noise, Ã) are
  /// seeded by it, so a global batch split over ranks draws what one process draws.
  static int64_t first_index(int64_t step, int64_t batch, int64_t rank, int64_t world) {
    return (step * world + rank) * batch;
  }
};

/// Example k of a run: which (file, slice) of the order, and its flips (from the seed and k alone).
struct Pick {
  int64_t file = 0, slice = 0;
  bool horizontal = false, vertical = false;
};
Pick pick(Order& order, uint64_t seed, int64_t k, bool flips);

/// Prepares batch t on a background thread, `depth` batches ahead: examples k = (t·W + r)·B ... (t·W + r)·B + B-1
/// of the order (with seeded flips) for rank r of W processes; one process (W = 1) takes t·B ... t·B+B-1. The W
/// ranks together take exactly the global batch of size W·B that one process would, and each reads only its part.
class Loader final : public BatchSource {
 public:
  Loader(std::shared_ptr<Source> source, int64_t batch, uint64_t seed, int64_t first_step, bool flips,
         int64_t depth = 2, int64_t rank = 0, int64_t world = 1);
  ~Loader() override;
  Loader(const Loader&) = delete;
  Loader& operator=(const Loader&) = delete;
  /// The batch for the next step (blocks until ready); rethrows the worker's errors.
  Batch next() override;

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

/// Reflection about the centred-FFT origin (index n/2) along `dim`: i -> (2 (n/2) - i) mod n. It commutes with fft2c,
/// so flipping image, maps, k-space and line mask this way keeps y = M F S x true.
torch::Tensor centred_flip(const torch::Tensor& t, int64_t dim);

/// Augmentation: flips an example left-right and/or up-down (image, mask, k-space, maps and lines consistently).
Example flip(const Example& e, bool horizontal, bool vertical);

}  // namespace ambient::diffusion
