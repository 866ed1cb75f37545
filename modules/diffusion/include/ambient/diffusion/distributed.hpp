// Joining a data-parallel job on PyTorch's distributed engine (c10d, which LibTorch ships; Gloo for CPU tensors),
// from the environment that torchrun or Slurm set up (or a shared file). The group it gives (group.hpp) broadcasts
// rank 0's weights and averages gradients with bucketed all-reduces. docs/scaling.md explains how to launch it.
#pragma once

#include <memory>
#include <string>

#include "ambient/diffusion/group.hpp"

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

/// Joins the job the environment describes (a lone group when world is 1). Blocks until every rank has joined or
/// `config.timeout_s` passes.
std::shared_ptr<Group> join_group(const DistConfig& config);

}  // namespace ambient::diffusion
