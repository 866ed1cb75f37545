// Joining a c10d job for data-parallel training and sharded reconstruction (distributed.hpp): placement from the
// environment, the rendezvous store, and the Gloo backend of a Group (group.hpp).
#include "ambient/diffusion/distributed.hpp"

#include <chrono>
#include <cstdlib>

#include <torch/csrc/distributed/c10d/FileStore.hpp>
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include "ambient/core/error.hpp"
#include "ambient/core/log.hpp"

namespace ambient::diffusion {
namespace {

const char* env(const char* name) {
  const char* v = std::getenv(name);
  return v && *v ? v : nullptr;
}

int64_t env_int(const char* name, int64_t fallback) {
  const char* v = env(name);
  if (!v) return fallback;
  char* end = nullptr;
  const long long x = std::strtoll(v, &end, 10);
  AMBIENT_CHECK(end != v && *end == '\0', "distributed: environment variable ", name, "='", v, "' is not an integer");
  return x;
}

bool is_loopback(const std::string& host) {
  return host == "localhost" || host.rfind("127.", 0) == 0 || host == "::1";
}

// c10d reports a dead peer as a closed connection and a hung one as a timeout; say what that means for the user.
[[noreturn]] void lost_contact(int64_t rank, int64_t world, const std::exception& e) {
  fail("distributed: rank ", rank, " of ", world, " lost contact with the other ranks (", e.what(),
       "). Another rank has died or hung: see its output. Checkpoints are written atomically, so the last one is "
       "intact; start all ranks again with --resume.");
}

}  // namespace

Placement placement_from_environment() {
  Placement p;
  if (env("WORLD_SIZE") || env("RANK")) {
    p.source = "torchrun";
    p.world = env_int("WORLD_SIZE", 1);
    p.rank = env_int("RANK", 0);
    p.local_rank = env_int("LOCAL_RANK", p.rank);
    p.local_world = env_int("LOCAL_WORLD_SIZE", p.world);
  } else if (env("SLURM_PROCID") && env_int("SLURM_NTASKS", 1) > 1) {
    p.source = "slurm";
    p.world = env_int("SLURM_NTASKS", 1);
    p.rank = env_int("SLURM_PROCID", 0);
    p.local_rank = env_int("SLURM_LOCALID", 0);
    // SLURM_NTASKS_PER_NODE may read "4" or "4(x2)"; its leading number is what this node runs.
    const char* per_node = env("SLURM_NTASKS_PER_NODE");
    p.local_world = per_node ? std::max(1, std::atoi(per_node)) : 1;
  }
  AMBIENT_CHECK(p.world >= 1, "distributed: world size must be at least 1, got ", p.world);
  AMBIENT_CHECK(p.rank >= 0 && p.rank < p.world, "distributed: rank ", p.rank, " is outside a world of size ",
                p.world, " (check RANK/WORLD_SIZE or SLURM_PROCID/SLURM_NTASKS)");
  return p;
}

namespace {

class GlooPending final : public Group::Pending {
 public:
  GlooPending(c10::intrusive_ptr<c10d::Work> work, int64_t rank, int64_t world)
      : work_(std::move(work)), rank_(rank), world_(world) {}
  void wait() override {
    try {
      work_->wait();
    } catch (const std::exception& e) {
      lost_contact(rank_, world_, e);
    }
  }

 private:
  c10::intrusive_ptr<c10d::Work> work_;
  int64_t rank_, world_;
};

// c10d's Gloo process group: CPU tensors.
class GlooBackend final : public Group::Backend {
 public:
  GlooBackend(int64_t rank, int64_t world) : rank_(rank), world_(world) {}
  void broadcast(torch::Tensor& flat) override {
    std::vector<torch::Tensor> list{flat};
    wait(pg->broadcast(list));
  }
  std::unique_ptr<Group::Pending> allreduce_sum_async(torch::Tensor& t) override {
    std::vector<torch::Tensor> list{t};
    try {
      return std::make_unique<GlooPending>(pg->allreduce(list), rank_, world_);
    } catch (const std::exception& e) {
      lost_contact(rank_, world_, e);
    }
  }
  void allreduce_max(torch::Tensor& t) override {
    std::vector<torch::Tensor> list{t};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::MAX;
    wait(pg->allreduce(list, o));
  }
  void barrier() override { wait(pg->barrier()); }

  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;

 private:
  void wait(const c10::intrusive_ptr<c10d::Work>& work) {
    try {
      work->wait();
    } catch (const std::exception& e) {
      lost_contact(rank_, world_, e);
    }
  }
  int64_t rank_, world_;
};

}  // namespace

std::shared_ptr<Group> join_group(const DistConfig& config) {
  const Placement p = placement_from_environment();
  if (p.world == 1) return std::make_shared<Group>();
  AMBIENT_CHECK(config.timeout_s > 0, "distributed: expected a positive timeout, got ", config.timeout_s);
  AMBIENT_CHECK(config.backend == "auto" || config.backend == "gloo" || config.backend == "nccl",
                "distributed: expected backend auto|gloo|nccl, got '", config.backend, "'");
  AMBIENT_CHECK(config.backend != "nccl",
                "distributed: NCCL needs a CUDA build of LibTorch and GPU tensors; this build trains on CPU tensors "
                "(Debian's LibTorch is CPU-only), so use --dist-backend gloo (what auto picks)");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.timeout_s * 1000));
  auto gloo = std::make_unique<GlooBackend>(p.rank, p.world);
  std::string where, host = "127.0.0.1";
  try {
    if (config.init.rfind("file://", 0) == 0) {
      const std::string path = config.init.substr(7);
      AMBIENT_CHECK(!path.empty(), "distributed: --dist-init file:// needs a path on a shared file system");
      where = "file " + path;
      gloo->store = c10::make_intrusive<c10d::FileStore>(path, static_cast<int>(p.world));
      gloo->store->setTimeout(timeout);
      host.clear();
    } else {
      AMBIENT_CHECK(config.init == "env", "distributed: expected --dist-init env or file:///path, got '", config.init,
                    "'");
      const char* addr = env("MASTER_ADDR");
      AMBIENT_CHECK(addr != nullptr, "distributed: ", p.world, " ranks (from ", p.source,
                    ") but MASTER_ADDR is not set. torchrun sets it; under Slurm export MASTER_ADDR (the first "
                    "node's address) and MASTER_PORT, or use --dist-init file:///shared/path");
      const int64_t port = env_int("MASTER_PORT", 29500);
      AMBIENT_CHECK(port > 0 && port < 65536, "distributed: MASTER_PORT ", port, " is not a TCP port");
      where = std::string(addr) + ":" + std::to_string(port);
      c10d::TCPStoreOptions o;
      o.port = static_cast<uint16_t>(port);
      // Under torchrun the agent already serves the store on MASTER_PORT and says so; rank 0 then joins as a client.
      const char* agent_store = env("TORCHELASTIC_USE_AGENT_STORE");
      o.isServer = p.rank == 0 && !(agent_store && std::string(agent_store) == "True");
      o.numWorkers = static_cast<size_t>(p.world);
      o.waitWorkers = true;
      o.timeout = timeout;
      gloo->store = c10::make_intrusive<c10d::TCPStore>(addr, o);
      if (!is_loopback(addr)) host.clear();
    }
    // Our keys apart from a launcher's, and apart from those of an earlier attempt after a torchrun restart.
    gloo->store = c10::make_intrusive<c10d::PrefixStore>(
        "ambient/" + std::to_string(env_int("TORCHELASTIC_RESTART_COUNT", 0)) + "/", gloo->store);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = env("GLOO_SOCKET_IFNAME"))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (!host.empty())
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    gloo->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(gloo->store, static_cast<int>(p.rank),
                                                               static_cast<int>(p.world), opts);
  } catch (const ambient::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("distributed: rank ", p.rank, " of ", p.world, " could not join the job at ", where, " within ",
         config.timeout_s, " s (", e.what(), "). Start all ", p.world,
         " ranks with the same MASTER_ADDR/MASTER_PORT (or the same --dist-init file), make sure the port is free "
         "and reachable, and raise --dist-timeout if ranks start far apart.");
  }
  auto g = std::make_shared<Group>(p.rank, p.world, "gloo", std::move(gloo));
  log::info("distributed: rank " + std::to_string(p.rank) + " of " + std::to_string(p.world) + " joined via " + where +
            " (gloo, " + p.source + ")");
  return g;
}

}  // namespace ambient::diffusion
