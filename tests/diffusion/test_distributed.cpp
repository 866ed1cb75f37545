// Data-parallel training on c10d/Gloo: real processes on loopback. Two ranks end with identical weights equal to
// one process trained with the doubled batch; a rank that dies makes the other stop with an error instead of
// hanging; the environment (torchrun, Slurm) is read correctly. This binary is also the worker it launches: with
// AMBIENT_DIST_WORKER set it trains and saves its weights instead of running the tests.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <iostream>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/distributed.hpp"
#include "ambient/diffusion/trainer.hpp"

extern char** environ;

using namespace ambient;
using namespace ambient::diffusion;

namespace {

std::string scratch(const std::string& name) {
  std::filesystem::create_directories(AMBIENT_TEST_TMP);
  return std::string(AMBIENT_TEST_TMP) + "/" + name;
}

// Smooth random complex images with a random observation mask A: the ambient image objective draws σ, noise and Ã
// per example, which is what must come out the same however the batch is split.
class SmoothImages final : public Source {
 public:
  explicit SmoothImages(int64_t die_after = -1) : die_after_(die_after) {}
  int64_t files() const override { return 2; }
  int64_t slices(int64_t) const override { return 8; }
  Example load(int64_t f, int64_t s) override {
    if (die_after_ >= 0 && loads_++ >= die_after_) std::_Exit(3);  // a rank that crashes mid-run
    auto gen = at::detail::createCPUGenerator(100 * f + s);
    auto low = torch::randn({1, 2, 4, 4}, gen);
    Example e;
    e.image = torch::upsample_bilinear2d(low, std::vector<int64_t>{16, 16}, false)[0] * 0.5;
    e.mask = (torch::rand({1, 16, 16}, gen) > 0.3).to(torch::kFloat);
    e.image = e.image * e.mask;
    return e;
  }

 private:
  int64_t die_after_;
  int64_t loads_ = 0;
};

UNetConfig tiny() {
  UNetConfig c;
  c.base_channels = 8;
  c.channel_mult = {1, 2};
  c.blocks_per_level = 1;
  c.attention_levels = {1};
  c.cond_channels = 1;
  return c;
}

TrainConfig config(int64_t batch, int64_t steps) {
  TrainConfig t;
  t.objective = Objective::ambient_image;
  t.steps = steps;
  t.batch = batch;
  t.lr = 2e-3;
  t.warmup = 2;
  t.checkpoint_every = 2;
  t.val_every = 0;
  t.seed = 11;
  return t;
}

std::vector<torch::Tensor> weights(const TrainState& s) {
  std::vector<torch::Tensor> out;
  for (const auto& p : s.model->parameters()) out.push_back(p.detach().clone());
  for (const auto& p : s.ema->parameters()) out.push_back(p.detach().clone());
  return out;
}

// The worker: trains per the environment and saves its weights to AMBIENT_DIST_WORKER.<rank>.
int worker() {
  const std::string out = std::getenv("AMBIENT_DIST_WORKER");
  const int64_t steps = std::atoll(std::getenv("AMBIENT_DIST_STEPS"));
  const double bucket_mb = std::atof(std::getenv("AMBIENT_DIST_BUCKET_MB"));
  const char* die = std::getenv("AMBIENT_DIST_DIE_AFTER");
  torch::set_num_threads(1);
  DistConfig dc;
  dc.timeout_s = std::getenv("AMBIENT_DIST_TIMEOUT") ? std::atof(std::getenv("AMBIENT_DIST_TIMEOUT")) : 20;
  auto group = join_group(dc);
  auto cfg = config(2, steps);
  cfg.bucket_mb = bucket_mb;
  auto state = new_state(tiny(), EdmConfig{}, cfg);
  if (group->rank() == 1) {  // a different initialisation on rank 1: the broadcast must replace it
    torch::NoGradGuard g;
    for (auto& p : state.model->parameters()) p.add_(0.5);
  }
  const int64_t die_after = die && group->rank() == 1 ? std::atoll(die) : -1;
  std::vector<double> losses;
  train(state, cfg, std::make_shared<SmoothImages>(die_after), nullptr, out + ".ckpt.pt",
        [&](const StepReport& r) { losses.push_back(r.loss); }, group);
  torch::save(weights(state), out + "." + std::to_string(group->rank()));
  if (group->is_main()) torch::save(torch::tensor(losses, torch::kDouble), out + ".loss");
  return 0;
}

int free_port() {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  socklen_t len = sizeof(addr);
  getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  close(fd);
  return ntohs(addr.sin_port);
}

pid_t launch(const std::vector<std::string>& extra_env) {
  std::vector<std::string> env_strings = extra_env;
  for (char** e = environ; *e; ++e) {
    const std::string kv = *e;
    const bool ours = kv.rfind("RANK=", 0) == 0 || kv.rfind("WORLD_SIZE=", 0) == 0 || kv.rfind("MASTER_", 0) == 0 ||
                      kv.rfind("LOCAL_", 0) == 0 || kv.rfind("SLURM_", 0) == 0 || kv.rfind("AMBIENT_DIST", 0) == 0;
    if (!ours) env_strings.push_back(kv);
  }
  std::vector<char*> envp;
  for (auto& s : env_strings) envp.push_back(s.data());
  envp.push_back(nullptr);
  std::string self = std::filesystem::read_symlink("/proc/self/exe").string();
  char* argv[] = {self.data(), nullptr};
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, self.c_str(), nullptr, nullptr, argv, envp.data()), 0);
  return pid;
}

// Waits for a child; -1 if it is still running after `limit` (then it is killed).
int wait_for(pid_t pid, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -1;
}

struct Run {
  std::vector<int> codes;
  double seconds = 0;
};

// `freeze`: stop rank 1 (SIGSTOP) once rank 0 has written its first checkpoint: a hung rank rather than a dead one.
Run run_two_ranks(const std::string& out, int64_t steps, double bucket_mb, const std::string& die_after = "",
                  bool freeze = false) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string port = std::to_string(free_port());
  std::vector<pid_t> pids;
  for (int r = 0; r < 2; ++r) {
    std::vector<std::string> env = {"AMBIENT_DIST_WORKER=" + out, "AMBIENT_DIST_STEPS=" + std::to_string(steps),
                                    "AMBIENT_DIST_BUCKET_MB=" + std::to_string(bucket_mb), "MASTER_ADDR=127.0.0.1",
                                    "MASTER_PORT=" + port, "WORLD_SIZE=2", "RANK=" + std::to_string(r)};
    if (!die_after.empty()) env.push_back("AMBIENT_DIST_DIE_AFTER=" + die_after);
    if (freeze) env.push_back("AMBIENT_DIST_TIMEOUT=3");
    pids.push_back(launch(env));
  }
  Run run;
  if (freeze) {
    for (int i = 0; i < 1200 && !std::filesystem::exists(out + ".ckpt.pt"); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    EXPECT_TRUE(std::filesystem::exists(out + ".ckpt.pt")) << "training did not start";
    kill(pids[1], SIGSTOP);
    run.codes.push_back(wait_for(pids[0], std::chrono::seconds(60)));
    kill(pids[1], SIGKILL);
    run.codes.push_back(wait_for(pids[1], std::chrono::seconds(10)));
    run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return run;
  }
  for (auto pid : pids) run.codes.push_back(wait_for(pid, std::chrono::seconds(120)));
  run.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return run;
}

std::vector<torch::Tensor> load_weights(const std::string& path) {
  std::vector<torch::Tensor> w;
  torch::load(w, path);
  return w;
}

class TwoRanks : public ::testing::TestWithParam<double> {};

}  // namespace

TEST_P(TwoRanks, StayIdenticalAndMatchOneProcessWithTheDoubledBatch) {
  const double bucket_mb = GetParam();
  const std::string out = scratch("dist_" + std::to_string(static_cast<int>(bucket_mb * 1000)));
  const int64_t steps = 5;
  const auto run = run_two_ranks(out, steps, bucket_mb);
  ASSERT_EQ(run.codes, (std::vector<int>{0, 0})) << "a worker failed";
  const auto w0 = load_weights(out + ".0"), w1 = load_weights(out + ".1");
  ASSERT_EQ(w0.size(), w1.size());
  for (size_t i = 0; i < w0.size(); ++i) EXPECT_TRUE(torch::equal(w0[i], w1[i])) << "tensor " << i << " differs";

  // One process, batch 4 = 2 ranks x 2.
  torch::set_num_threads(1);  // as the workers: the same rounding run to run
  auto cfg = config(4, steps);
  auto state = new_state(tiny(), EdmConfig{}, cfg);
  std::vector<double> losses;
  train(state, cfg, std::make_shared<SmoothImages>(), nullptr, "", [&](const StepReport& r) { losses.push_back(r.loss); });
  const auto single = weights(state);
  // Step 1 starts from the same weights, so its mean loss checks the split of data and draws; later steps check
  // the averaged gradients too.
  torch::Tensor dist_losses;
  torch::load(dist_losses, out + ".loss");
  ASSERT_EQ(dist_losses.numel(), steps);
  for (int64_t t = 0; t < steps; ++t)
    EXPECT_NEAR(dist_losses[t].item<double>(), losses[t], 1e-5 * losses[t]) << "step " << t + 1;
  ASSERT_EQ(single.size(), w0.size());
  // Adam divides by the root of the second moment, so gradients that are zero up to rounding (the sums run in a
  // different order) can move a weight by up to lr either way; compare the whole update, not single elements.
  auto init = new_state(tiny(), EdmConfig{}, cfg);
  const auto start = weights(init);
  double diff = 0, moved = 0;
  for (size_t i = 0; i < single.size(); ++i) {
    diff += (single[i] - w0[i]).square().sum().item<double>();
    moved += (single[i] - start[i]).square().sum().item<double>();
  }
  const double relative = std::sqrt(diff / moved);
  std::cout << "two ranks vs one process: relative difference of the updates " << relative << "\n";
  EXPECT_LT(relative, 1.5e-2) << "two ranks differ from one process with the doubled batch";
  EXPECT_GT(moved, 1e-4) << "training did not move the weights (the comparison would be vacuous)";
  // The checkpoint rank 0 wrote holds the same weights.
  EXPECT_TRUE(describe_checkpoint(out + ".ckpt.pt").step == steps);
}

INSTANTIATE_TEST_SUITE_P(Buckets, TwoRanks, ::testing::Values(0.0, 0.01));

TEST(Distributed, ADeadRankMakesTheOtherStopWithAnErrorAndKeepsTheCheckpoint) {
  const std::string out = scratch("dist_dead");
  std::filesystem::remove(out + ".ckpt.pt");
  // Rank 1 crashes after loading 10 examples (the loader runs ahead; steps 1-3 or so are done).
  const auto run = run_two_ranks(out, 40, 0.01, "10");
  EXPECT_EQ(run.codes[1], 3);
  EXPECT_NE(run.codes[0], 0) << "rank 0 should fail when its peer dies";
  EXPECT_NE(run.codes[0], -1) << "rank 0 hung";
  EXPECT_LT(run.seconds, 60);
  if (std::filesystem::exists(out + ".ckpt.pt")) {  // whatever was written is a complete checkpoint
    const auto info = describe_checkpoint(out + ".ckpt.pt");
    EXPECT_EQ(info.step % 2, 0);
  }
}

TEST(Distributed, AHungRankMakesTheOtherStopAfterTheTimeout) {
  const std::string out = scratch("dist_hung");
  std::filesystem::remove(out + ".ckpt.pt");
  const auto run = run_two_ranks(out, 100000, 0.01, "", true);  // timeout 3 s
  EXPECT_NE(run.codes[0], 0) << "rank 0 should fail when its peer stops answering";
  EXPECT_NE(run.codes[0], -1) << "rank 0 hung";
  EXPECT_LT(run.seconds, 30);
}

TEST(Distributed, PlacementComesFromTorchrunOrSlurm) {
  for (const char* v : {"RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS",
                        "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"})
    unsetenv(v);
  EXPECT_EQ(placement_from_environment().world, 1);
  setenv("SLURM_PROCID", "3", 1);
  setenv("SLURM_NTASKS", "8", 1);
  setenv("SLURM_LOCALID", "1", 1);
  setenv("SLURM_NTASKS_PER_NODE", "2(x4)", 1);
  auto p = placement_from_environment();
  EXPECT_EQ(p.source, "slurm");
  EXPECT_EQ(p.rank, 3);
  EXPECT_EQ(p.world, 8);
  EXPECT_EQ(p.local_rank, 1);
  EXPECT_EQ(p.local_world, 2);
  setenv("RANK", "1", 1);  // torchrun's variables win
  setenv("WORLD_SIZE", "2", 1);
  p = placement_from_environment();
  EXPECT_EQ(p.source, "torchrun");
  EXPECT_EQ(p.rank, 1);
  EXPECT_EQ(p.world, 2);
  setenv("RANK", "2", 1);
  EXPECT_THROW(placement_from_environment(), ambient::Error);
  setenv("RANK", "one", 1);
  EXPECT_THROW(placement_from_environment(), ambient::Error);
  for (const char* v : {"RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID", "SLURM_NTASKS_PER_NODE"})
    unsetenv(v);
}

TEST(Distributed, MissingRendezvousSaysWhatToSet) {
  setenv("RANK", "0", 1);
  setenv("WORLD_SIZE", "2", 1);
  unsetenv("MASTER_ADDR");
  try {
    join_group(DistConfig{});
    FAIL() << "expected an error";
  } catch (const ambient::Error& e) {
    EXPECT_NE(std::string(e.what()).find("MASTER_ADDR"), std::string::npos) << e.what();
  }
  DistConfig nccl;
  nccl.backend = "nccl";
  EXPECT_THROW(join_group(nccl), ambient::Error);
  unsetenv("RANK");
  unsetenv("WORLD_SIZE");
}

TEST(Distributed, ALoneProcessIsItsOwnGroup) {
  auto g = join_group(DistConfig{});
  EXPECT_FALSE(g->distributed());
  auto t = torch::ones({3});
  g->allreduce_sum(t);
  EXPECT_TRUE(torch::equal(t, torch::ones({3})));
  EXPECT_TRUE(g->agree(1.5));
  EXPECT_EQ(shard(7, 1, 3), (std::vector<int64_t>{1, 4}));
  EXPECT_EQ(shard(2, 0, 1), (std::vector<int64_t>{0, 1}));
  EXPECT_THROW(shard(2, 3, 2), ambient::Error);
}

int main(int argc, char** argv) {
  if (std::getenv("AMBIENT_DIST_WORKER")) {
    try {
      return worker();
    } catch (const std::exception& e) {
      std::cerr << "worker: " << e.what() << "\n";
      return 1;
    }
  }
  ::testing::InitGoogleTest(&argc, argv);
  return RUN_ALL_TESTS();
}
