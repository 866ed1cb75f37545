// Process groups (group.hpp): the collectives over a backend, identities for a lone process, and the bucketed
// gradient averaging of data-parallel training.
#include "ambient/diffusion/group.hpp"

#include <chrono>
#include <limits>
#include <map>
#include <mutex>

#include "ambient/core/error.hpp"

namespace ambient::diffusion {

Group::Group() = default;
Group::Group(int64_t rank, int64_t world, std::string backend_name, std::unique_ptr<Backend> backend)
    : rank_(rank), world_(world), backend_(std::move(backend_name)), impl_(std::move(backend)) {
  AMBIENT_CHECK(world_ >= 1 && rank_ >= 0 && rank_ < world_, "distributed: rank ", rank_, " outside a world of ",
                world_);
  AMBIENT_CHECK(world_ == 1 || impl_ != nullptr, "distributed: a group of ", world_, " ranks needs a backend");
}
Group::~Group() = default;

void Group::broadcast(const std::vector<torch::Tensor>& tensors) {
  if (!distributed() || tensors.empty()) return;
  // One flat message per dtype: a few large messages beat hundreds of small ones.
  std::map<c10::ScalarType, std::vector<torch::Tensor>> by_type;
  for (const auto& t : tensors) by_type[t.scalar_type()].push_back(t);
  for (auto& [type, list] : by_type) {
    std::vector<torch::Tensor> flat_parts;
    for (const auto& t : list) flat_parts.push_back(t.detach().reshape(-1));
    auto flat = torch::cat(flat_parts);
    impl_->broadcast(flat);
    torch::NoGradGuard g;
    int64_t offset = 0;
    for (auto& t : list) {
      t.copy_(flat.narrow(0, offset, t.numel()).view(t.sizes()));
      offset += t.numel();
    }
  }
}

namespace {

class DonePending final : public Group::Pending {
 public:
  void wait() override {}
};

}  // namespace

std::unique_ptr<Group::Pending> Group::allreduce_sum_async(torch::Tensor& t) {
  if (!distributed()) return std::make_unique<DonePending>();
  AMBIENT_CHECK(t.is_contiguous(), "distributed: all-reduce needs a contiguous tensor");
  return impl_->allreduce_sum_async(t);
}

void Group::allreduce_sum(torch::Tensor& t) { allreduce_sum_async(t)->wait(); }

bool Group::agree(double value) {
  if (!distributed()) return true;
  // max over ranks of (v, -v) gives (max, -min) in one message.
  auto t = torch::tensor({value, -value}, torch::kDouble);
  impl_->allreduce_max(t);
  return t[0].item<double>() == -t[1].item<double>();
}

void Group::barrier() {
  if (!distributed()) return;
  impl_->barrier();
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
  if (!st.group->distributed()) return;  // nothing to average
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
