// The cost of averaging gradients over ranks: times c10d/Gloo all-reduces of the default network's gradient size
// (one flat buffer, and the same bytes in 4 MB buckets), against a local copy of the same bytes as the baseline.
// Launch it as the ranks of a job, e.g. with bench/run_dist_bench.sh (MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK).
#include <algorithm>
#include <chrono>
#include <iomanip>
#include <iostream>
#include <vector>

#include "ambient/diffusion/distributed.hpp"
#include "ambient/diffusion/network.hpp"

using namespace ambient::diffusion;

namespace {

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <typename F>
double time_ms(F&& f, int repeats) {
  std::vector<double> t;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(t);
}

}  // namespace

int main() {
  torch::set_num_threads(1);
  auto group = join_group(DistConfig{});
  int64_t numel = 0;
  for (const auto& p : UNet(UNetConfig{})->parameters()) numel += p.numel();
  auto flat = torch::randn({numel});
  auto copy = torch::empty_like(flat);
  const int repeats = 20;
  group->barrier();
  const double copy_ms = time_ms([&] { copy.copy_(flat); }, repeats);
  const double flat_ms = time_ms([&] { group->allreduce_sum(flat); }, repeats);
  const int64_t bucket = 4 * (1 << 20) / 4;
  std::vector<torch::Tensor> buckets;
  for (int64_t off = 0; off < numel; off += bucket) buckets.push_back(flat.narrow(0, off, std::min(bucket, numel - off)).clone());
  const double bucket_ms = time_ms([&] {
    std::vector<std::unique_ptr<Group::Pending>> pending;
    for (auto& b : buckets) pending.push_back(group->allreduce_sum_async(b));
    for (auto& p : pending) p->wait();
  }, repeats);
  if (group->is_main()) {
    const double mb = numel * 4.0 / (1 << 20);
    std::cout << std::fixed << std::setprecision(2) << "all-reduce of the default network's gradients (" << numel
              << " floats, " << mb << " MB) over " << group->world() << " rank(s), gloo on loopback, median of "
              << repeats << ":\n"
              << "  local copy (baseline)      " << copy_ms << " ms\n"
              << "  one flat all-reduce        " << flat_ms << " ms  (" << flat_ms / copy_ms << "x the copy, "
              << mb / (flat_ms / 1000) << " MB/s)\n"
              << "  " << buckets.size() << " buckets of 4 MB, async  " << bucket_ms << " ms  (" << bucket_ms / flat_ms
              << "x the flat one)\n";
  }
  return 0;
}
