// Examples, batches, the deterministic order and the background loader (batch.hpp).
#include "ambient/diffusion/batch.hpp"

#include <algorithm>
#include <numeric>
#include <random>
#include <tuple>

#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"

namespace ambient::diffusion {
namespace {

torch::Tensor stack_field(const std::vector<Example>& ex, torch::Tensor Example::*field) {
  if (!(ex[0].*field).defined()) return {};
  std::vector<torch::Tensor> parts;
  for (const auto& e : ex) parts.push_back(e.*field);
  return torch::stack(parts);
}

}  // namespace

torch::Tensor centred_flip(const torch::Tensor& t, int64_t dim) {
  auto f = torch::flip(t, {dim});
  return t.size(dim) % 2 == 0 ? torch::roll(f, {1}, {dim}) : f;
}

int64_t Batch::size() const {
  for (const auto* t : {&image, &ksp})
    if (t->defined()) return t->size(0);
  return 0;
}

torch::Device Batch::device() const {
  for (const auto* t : {&image, &ksp})
    if (t->defined()) return t->device();
  return torch::kCPU;
}

Batch Batch::to(torch::Device device) const {
  Batch b;
  auto move = [&](const torch::Tensor& t) { return t.defined() ? t.to(device) : t; };
  b.image = move(image);
  b.mask = move(mask);
  b.ksp = move(ksp);
  b.maps = move(maps);
  b.lines = move(lines);
  b.calib = move(calib);
  return b;
}

Batch collate(const std::vector<Example>& ex) {
  AMBIENT_CHECK(!ex.empty(), "collate: empty batch");
  Batch b;
  b.image = stack_field(ex, &Example::image);
  b.mask = stack_field(ex, &Example::mask);
  b.ksp = stack_field(ex, &Example::ksp);
  b.maps = stack_field(ex, &Example::maps);
  b.lines = stack_field(ex, &Example::lines);
  b.calib = stack_field(ex, &Example::calib);
  return b;
}

int64_t Source::total() const {
  int64_t n = 0;
  for (int64_t f = 0; f < files(); ++f) n += slices(f);
  return n;
}

Order::Order(const Source& source, uint64_t seed) : source_(source), seed_(seed), total_(source.total()) {
  AMBIENT_CHECK(total_ > 0, "data: no slices to train on");
}

std::vector<std::pair<int64_t, int64_t>> Order::epoch(int64_t e) const {
  std::mt19937_64 rng(derive_seed(seed_, SeedStream::epoch_order, static_cast<uint64_t>(e)));
  std::vector<int64_t> files(source_.files());
  std::iota(files.begin(), files.end(), 0);
  std::shuffle(files.begin(), files.end(), rng);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t f : files) {
    std::vector<int64_t> s(source_.slices(f));
    std::iota(s.begin(), s.end(), 0);
    std::shuffle(s.begin(), s.end(), rng);
    for (int64_t i : s) out.emplace_back(f, i);
  }
  return out;
}

std::pair<int64_t, int64_t> Order::at(int64_t k) {
  const int64_t e = k / total_;
  if (e != cached_epoch_) {
    cache_ = epoch(e);
    cached_epoch_ = e;
  }
  return cache_[k % total_];
}

Pick pick(Order& order, uint64_t seed, int64_t k, bool flips) {
  Pick p;
  std::tie(p.file, p.slice) = order.at(k);
  if (flips) {
    const uint64_t r = derive_seed(seed, SeedStream::flips, static_cast<uint64_t>(k));
    p.horizontal = r & 1;
    p.vertical = (r >> 1) & 1;
  }
  return p;
}

Example flip(const Example& e, bool horizontal, bool vertical) {
  Example o = e;
  auto apply = [&](torch::Tensor& t, int64_t dim_from_end) {
    if (t.defined()) t = centred_flip(t, t.dim() - dim_from_end);
  };
  if (horizontal) {
    for (auto* t : {&o.image, &o.mask, &o.ksp, &o.maps}) apply(*t, 1);
  }
  if (vertical) {
    for (auto* t : {&o.image, &o.mask, &o.ksp, &o.maps}) apply(*t, 2);
    for (auto* t : {&o.lines, &o.calib}) apply(*t, 1);
  }
  return o;
}

Loader::Loader(std::shared_ptr<Source> source, int64_t batch, uint64_t seed, int64_t first_step, bool flips,
               int64_t depth, int64_t rank, int64_t world)
    : source_(std::move(source)), batch_(batch), seed_(seed), flips_(flips), depth_(depth), rank_(rank),
      world_(world), next_step_(first_step) {
  AMBIENT_CHECK(batch_ >= 1, "training: expected a batch size >= 1, got ", batch_);
  AMBIENT_CHECK(world_ >= 1 && rank_ >= 0 && rank_ < world_, "training: rank ", rank_, " outside a world of ", world_);
  thread_ = std::thread([this] { work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Loader::work() {
  try {
    Order order(*source_, seed_);
    int64_t step = next_step_;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(ready_.size()) < depth_; });
        if (stop_) return;
      }
      std::vector<Example> examples;
      for (int64_t i = 0; i < batch_; ++i) {
        const auto p = pick(order, seed_, first_index(step, batch_, rank_, world_) + i, flips_);
        Example e = source_->load(p.file, p.slice);
        if (flips_) e = flip(e, p.horizontal, p.vertical);
        examples.push_back(std::move(e));
      }
      Batch b = collate(examples);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(b));
      }
      cv_.notify_all();
      ++step;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch Loader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty() && error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  cv_.notify_all();
  return b;
}

}  // namespace ambient::diffusion
