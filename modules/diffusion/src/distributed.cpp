// c10d process groups for data-parallel training and sharded reconstruction (distributed.hpp).
#include "ambient/diffusion/distributed.hpp"

#include <chrono>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>

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

struct Group::Impl {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
};

Group::Group() = default;
Group::~Group() = default;

std::shared_ptr<Group> Group::join(const DistConfig& config) {
  const Placement p = placement_from_environment();
  auto g = std::make_shared<Group>();
  if (p.world == 1) return g;
  AMBIENT_CHECK(config.timeout_s > 0, "distributed: expected a positive timeout, got ", config.timeout_s);
  AMBIENT_CHECK(config.backend == "auto" || config.backend == "gloo" || config.backend == "nccl",
                "distributed: expected backend auto|gloo|nccl, got '", config.backend, "'");
  AMBIENT_CHECK(config.backend != "nccl",
                "distributed: NCCL needs a CUDA build of LibTorch and GPU tensors; this build trains on CPU tensors "
                "(Debian's LibTorch is CPU-only), so use --dist-backend gloo (what auto picks)");
  const auto timeout = std::chrono::milliseconds(static_cast<int64_t>(config.timeout_s * 1000));
  g->rank_ = p.rank;
  g->world_ = p.world;
  g->backend_ = "gloo";
  g->impl_ = std::make_unique<Impl>();
  std::string where, host = "127.0.0.1";
  try {
    if (config.init.rfind("file://", 0) == 0) {
      const std::string path = config.init.substr(7);
      AMBIENT_CHECK(!path.empty(), "distributed: --dist-init file:// needs a path on a shared file system");
      where = "file " + path;
      g->impl_->store = c10::make_intrusive<c10d::FileStore>(path, static_cast<int>(p.world));
      g->impl_->store->setTimeout(timeout);
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
      g->impl_->store = c10::make_intrusive<c10d::TCPStore>(addr, o);
      if (!is_loopback(addr)) host.clear();
    }
    // Our keys apart from a launcher's, and apart from those of an earlier attempt after a torchrun restart.
    g->impl_->store = c10::make_intrusive<c10d::PrefixStore>(
        "ambient/" + std::to_string(env_int("TORCHELASTIC_RESTART_COUNT", 0)) + "/", g->impl_->store);
    auto opts = c10d::ProcessGroupGloo::Options::create(timeout);
    if (const char* ifname = env("GLOO_SOCKET_IFNAME"))
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
    else if (!host.empty())
      opts->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname(host));
    else
      opts->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
    g->impl_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(g->impl_->store, static_cast<int>(p.rank),
                                                               static_cast<int>(p.world), opts);
  } catch (const ambient::Error&) {
    throw;
  } catch (const std::exception& e) {
    fail("distributed: rank ", p.rank, " of ", p.world, " could not join the job at ", where, " within ",
         config.timeout_s, " s (", e.what(), "). Start all ", p.world,
         " ranks with the same MASTER_ADDR/MASTER_PORT (or the same --dist-init file), make sure the port is free "
         "and reachable, and raise --dist-timeout if ranks start far apart.");
  }
  log::info("distributed: rank " + std::to_string(p.rank) + " of " + std::to_string(p.world) + " joined via " + where +
            " (gloo, " + p.source + ")");
  return g;
}

void Group::broadcast(const std::vector<torch::Tensor>& tensors) {
  if (!distributed() || tensors.empty()) return;
  // One flat message per dtype: a few large messages beat hundreds of small ones.
  std::map<c10::ScalarType, std::vector<torch::Tensor>> by_type;
  for (const auto& t : tensors) by_type[t.scalar_type()].push_back(t);
  for (auto& [type, list] : by_type) {
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : list) flat_parts.push_back(t.detach().reshape(-1));
    std::vector<torch::Tensor> flat{torch::cat(flat_parts)};
    try {
      impl_->pg->broadcast(flat)->wait();
    } catch (const std::exception& e) {
      lost_contact(rank_, world_, e);
    }
    torch::NoGradGuard g;
    int64_t offset = 0;
    for (auto& t : list) {
      t.copy_(flat[0].narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
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

class DonePending final : public Group::Pending {
 public:
  void wait() override {}
};

}  // namespace

std::unique_ptr<Group::Pending> Group::allreduce_sum_async(torch::Tensor& t) {
  if (!distributed()) return std::make_unique<DonePending>();
  AMBIENT_CHECK(t.is_contiguous(), "distributed: all-reduce needs a contiguous tensor");
  std::vector<torch::Tensor> list{t};
  try {
    return std::make_unique<GlooPending>(impl_->pg->allreduce(list), rank_, world_);
  } catch (const std::exception& e) {
    lost_contact(rank_, world_, e);
  }
}

void Group::allreduce_sum(torch::Tensor& t) { allreduce_sum_async(t)->wait(); }

bool Group::agree(double value) {
  if (!distributed()) return true;
  // max over ranks of (v, -v) gives (max, -min) in one message.
  std::vector<torch::Tensor> t{torch::tensor({value, -value}, torch::kDouble)};
  c10d::AllreduceOptions o;
  o.reduceOp = c10d::ReduceOp::MAX;
  try {
    impl_->pg->allreduce(t, o)->wait();
  } catch (const std::exception& e) {
    lost_contact(rank_, world_, e);
  }
  return t[0][0].item<double>() == -t[0][1].item<double>();
}

void Group::barrier() {
  if (!distributed()) return;
  try {
    impl_->pg->barrier()->wait();
  } catch (const std::exception& e) {
    lost_contact(rank_, world_, e);
  }
}

// ---------------------------------------------------------------------------------------------------------------

struct GradientSync::State {
  struct Slot {
    int64_t bucket, offset;
  };
  struct Bucket {
    std::vector<int64_t> params;
    torch::Tensor buffer;  // flat float32 gradients of its parameters
    int64_t arrived = 0;
    std::unique_ptr<Group::Pending> pending;
  };
  std::shared_ptr<Group> group;
  std::vector<torch::Tensor> params;
  std::vector<Slot> slots;
  std::vector<Bucket> buckets;
  std::vector<bool> got;       // parameter i received a gradient in this backward pass
  int64_t next_launch = 0;     // buckets start in index order
  bool overlap = false, active = false;
  std::mutex mutex;
  std::vector<unsigned> hooks;

  void launch_ready() {  // under mutex
    while (next_launch < static_cast<int64_t>(buckets.size())) {
      auto& b = buckets[next_launch];
      if (b.arrived < static_cast<int64_t>(b.params.size())) return;
      b.pending = group->allreduce_sum_async(b.buffer);
      ++next_launch;
    }
  }

  void arrive(int64_t i, const torch::Tensor& grad) {
    std::lock_guard<std::mutex> lock(mutex);
    if (!active) return;
    const auto& s = slots[i];
    auto& b = buckets[s.bucket];
    AMBIENT_CHECK(!got[i], "distributed: a parameter received two gradients in one backward pass");
    b.buffer.narrow(0, s.offset, params[i].numel()).copy_(grad.detach().reshape(-1));
    got[i] = true;
    ++b.arrived;
    launch_ready();
  }
};

GradientSync::GradientSync(std::shared_ptr<Group> group, std::vector<torch::Tensor> params, double bucket_mb)
    : state_(std::make_shared<State>()) {
  auto& st = *state_;
  st.group = std::move(group);
  st.params = std::move(params);
  st.overlap = bucket_mb > 0;
  st.slots.resize(st.params.size());
  st.got.assign(st.params.size(), false);
  const int64_t cap = bucket_mb > 0 ? std::max<int64_t>(1, static_cast<int64_t>(bucket_mb * (1 << 20) / 4))
                                    : std::numeric_limits<int64_t>::max();
  int64_t filled = 0;
  for (int64_t i = static_cast<int64_t>(st.params.size()) - 1; i >= 0; --i) {
    AMBIENT_CHECK(st.params[i].scalar_type() == torch::kFloat, "distributed: expected float32 parameters");
    const int64_t n = st.params[i].numel();
    if (st.buckets.empty() || (filled > 0 && filled + n > cap)) {
      st.buckets.emplace_back();
      filled = 0;
    }
    st.slots[i] = {static_cast<int64_t>(st.buckets.size()) - 1, filled};
    st.buckets.back().params.push_back(i);
    filled += n;
  }
  for (size_t b = 0; b < st.buckets.size(); ++b) {
    int64_t n = 0;
    for (auto i : st.buckets[b].params) n += st.params[i].numel();
    st.buckets[b].buffer = torch::zeros({n}, torch::kFloat);
  }
  if (st.overlap && st.group->distributed()) {
    std::weak_ptr<State> weak = state_;
    for (size_t i = 0; i < st.params.size(); ++i)
      st.hooks.push_back(st.params[i].register_hook([weak, i](const torch::Tensor& grad) {
        if (auto s = weak.lock()) s->arrive(static_cast<int64_t>(i), grad);
      }));
  }
}

GradientSync::~GradientSync() {
  for (size_t i = 0; i < state_->hooks.size(); ++i) state_->params[i].remove_hook(state_->hooks[i]);
}

int64_t GradientSync::buckets() const { return static_cast<int64_t>(state_->buckets.size()); }

void GradientSync::begin() {
  auto& st = *state_;
  std::lock_guard<std::mutex> lock(st.mutex);
  for (auto& b : st.buckets) {
    b.buffer.zero_();
    b.arrived = 0;
    b.pending.reset();
  }
  std::fill(st.got.begin(), st.got.end(), false);
  st.next_launch = 0;
  st.active = true;
}

double GradientSync::finish(double& scalar) {
  auto& st = *state_;
  if (!st.group->distributed()) return 0;
  const auto t0 = std::chrono::steady_clock::now();
  {
    std::lock_guard<std::mutex> lock(st.mutex);
    st.active = false;
    if (!st.overlap) {  // one flat all-reduce: gather the gradients now
      for (size_t i = 0; i < st.params.size(); ++i) {
        const auto& g = st.params[i].grad();
        if (!g.defined()) continue;
        st.buckets[st.slots[i].bucket].buffer.narrow(0, st.slots[i].offset, g.numel()).copy_(g.reshape(-1));
        st.got[i] = true;
      }
    }
    // Buckets with parameters that received no gradient start now (zeros there), still in index order.
    for (auto& b : st.buckets) b.arrived = static_cast<int64_t>(b.params.size());
    st.launch_ready();
  }
  torch::Tensor s = torch::tensor({scalar}, torch::kFloat);
  auto scalar_pending = st.group->allreduce_sum_async(s);
  const double inv = 1.0 / static_cast<double>(st.group->world());
  torch::NoGradGuard no_grad;
  for (auto& b : st.buckets) {
    b.pending->wait();
    b.buffer.mul_(inv);
    for (auto i : b.params) {
      if (!st.got[i]) continue;  // as in one process: a parameter without a gradient keeps none
      auto mean = b.buffer.narrow(0, st.slots[i].offset, st.params[i].numel()).view(st.params[i].sizes());
      auto& g = st.params[i].mutable_grad();
      if (g.defined()) g.copy_(mean);
      else g = mean.clone();
    }
  }
  scalar_pending->wait();
  scalar = s.item<double>() * inv;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<int64_t> shard(int64_t n, int64_t rank, int64_t world) {
  AMBIENT_CHECK(world >= 1 && rank >= 0 && rank < world, "shard: rank ", rank, " outside a world of ", world);
  std::vector<int64_t> out;
  for (int64_t i = rank; i < n; i += world) out.push_back(i);
  return out;
}

}  // namespace ambient::diffusion
