// Process groups as the training loop sees them: a rank's handle on the collectives (broadcast, all-reduce, agree),
// the bucketed gradient averaging of data-parallel training, and round-robin sharding. LibTorch only: a lone
// process needs no backend; distributed.hpp joins a real job through c10d.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace ambient::diffusion {

/// A process group: this rank's handle on the collectives. A lone process (world 1) has no c10d group and every
/// collective is the identity. c10d's errors (a peer that died, a timeout) come out as ambient::Error saying so.
class Group {
 public:
  /// The collectives of a joined job, as a backend provides them (distributed.cpp: c10d's Gloo).
  class Backend;

  Group();  ///< a lone process
  Group(int64_t rank, int64_t world, std::string backend_name, std::unique_ptr<Backend> backend);
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  int64_t rank() const { return rank_; }
  int64_t world() const { return world_; }
  bool is_main() const { return rank_ == 0; }
  bool distributed() const { return world_ > 1; }
  std::string backend() const { return backend_; }

  /// Rank 0's values into every rank's tensors, in place (any dtype; one flat message per dtype).
  void broadcast(const std::vector<torch::Tensor>& tensors);
  /// In-place sum over ranks of a float tensor.
  void allreduce_sum(torch::Tensor& t);
  /// True when every rank passed the same value (used to check that ranks hold the same weights and settings).
  bool agree(double value);
  void barrier();

  /// An all-reduce (sum) started now, finished by wait(); for overlapping communication with computation.
  class Pending {
   public:
    virtual ~Pending() = default;
    virtual void wait() = 0;
  };
  std::unique_ptr<Pending> allreduce_sum_async(torch::Tensor& t);

 private:
  int64_t rank_ = 0, world_ = 1;
  std::string backend_ = "none";
  std::unique_ptr<Backend> impl_;
};

/// What a backend implements; Group adds the flattening, the checks and the lone-process identities.
class Group::Backend {
 public:
  virtual ~Backend() = default;
  /// Rank 0's `flat` into every rank's, in place.
  virtual void broadcast(torch::Tensor& flat) = 0;
  virtual std::unique_ptr<Pending> allreduce_sum_async(torch::Tensor& t) = 0;
  /// In-place maximum over ranks.
  virtual void allreduce_max(torch::Tensor& t) = 0;
  virtual void barrier() = 0;
};

/// Averages the gradients of `params` over the ranks of `group` after each backward pass. Parameters are packed into
/// buckets of about `bucket_mb` MB in reverse order (roughly the order backward produces them); a bucket's all-reduce
/// starts from a gradient hook as soon as its last gradient arrives (buckets start in a fixed order, so every rank
/// issues the same sequence of collectives), overlapping the rest of the backward pass. `bucket_mb` <= 0: one flat
/// all-reduce after backward.
class GradientSync {
 public:
  GradientSync(std::shared_ptr<Group> group, std::vector<torch::Tensor> params, double bucket_mb);
  ~GradientSync();
  GradientSync(const GradientSync&) = delete;
  GradientSync& operator=(const GradientSync&) = delete;

  /// Before backward.
  void begin();
  /// After backward: every parameter's gradient is the mean over ranks, and so is `scalar` (e.g. the loss).
  /// Returns the seconds spent waiting for communication after backward finished.
  double finish(double& scalar);
  int64_t buckets() const;

  struct State;

 private:
  std::shared_ptr<State> state_;
};

/// The slices [0, n) that rank r of W takes when work is shared out round-robin: r, r + W, r + 2W, ...
std::vector<int64_t> shard(int64_t n, int64_t rank, int64_t world);

}  // namespace ambient::diffusion
