// Data-parallel work on PyTorch's distributed engine (c10d, which LibTorch ships; Gloo for CPU tensors): joining a
// job from the environment that torchrun or Slurm set up (or a shared file), broadcasting rank 0's weights, and
// averaging gradients with bucketed all-reduces that start while the backward pass is still running.
// docs/scaling.md explains how to launch it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <torch/torch.h>

namespace ambient::diffusion {

struct DistConfig {
  std::string backend = "auto";  ///< auto | gloo | nccl (auto: Gloo, since ambient trains on CPU tensors)
  std::string init = "env";      ///< env: TCP store at MASTER_ADDR:MASTER_PORT | file:///shared/path
  double timeout_s = 300;        ///< a rendezvous or collective that waits longer fails (a dead or hung rank)
};

/// Where this process sits in the job, from the environment: RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE
/// (torchrun), else SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, SLURM_NTASKS_PER_NODE (srun); one process when
/// neither is set.
struct Placement {
  int64_t rank = 0, world = 1, local_rank = 0, local_world = 1;
  std::string source = "none";  ///< torchrun | slurm | none
};
Placement placement_from_environment();

/// A process group: this rank's handle on the collectives. A lone process (world 1) has no c10d group and every
/// collective is the identity. c10d's errors (a peer that died, a timeout) come out as ambient::Error saying so.
class Group {
 public:
  Group();  ///< a lone process
  ~Group();
  Group(const Group&) = delete;
  Group& operator=(const Group&) = delete;

  /// Joins the job the environment describes (a lone group when world is 1). Blocks until every rank has joined or
  /// `config.timeout_s` passes.
  static std::shared_ptr<Group> join(const DistConfig& config);

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

  struct Impl;

 private:
  int64_t rank_ = 0, world_ = 1;
  std::string backend_ = "none";
  std::unique_ptr<Impl> impl_;
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
