// Training-step benchmark: images/s of one full step (EDM clean loss, backward, Adam, EMA) of the default network
// in C++, fp32 and bf16 autocast. bench/train_step.py runs the same network and step in Python for the ratio.
// Usage: bench_train [--batch N] [--size N] [--steps N] [--threads N] [--precision fp32|bf16|both]
#include <malloc.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/objectives.hpp"

using namespace ambient::diffusion;
using Clock = std::chrono::steady_clock;

int main(int argc, char** argv) {
  int64_t batch = 4, size = 128, steps = 6;
  int threads = static_cast<int>(std::thread::hardware_concurrency());
  std::string precision = "both";
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--batch")) batch = std::atoll(argv[++i]);
    if (!std::strcmp(argv[i], "--size")) size = std::atoll(argv[++i]);
    if (!std::strcmp(argv[i], "--steps")) steps = std::atoll(argv[++i]);
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--precision")) precision = argv[++i];
  }
  if (precision != "fp32" && precision != "bf16" && precision != "both") {
    std::fprintf(stderr, "bench_train: --precision expects fp32, bf16 or both, got '%s'\n", precision.c_str());
    return 2;
  }
  std::vector<bool> modes;
  if (precision != "bf16") modes.push_back(false);
  if (precision != "fp32") modes.push_back(true);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  torch::set_num_threads(threads);
  UNetConfig net;  // the default network: base 32, mult 1,2,2, 2 blocks/level, attention at level 2
  for (bool bf16 : modes) {
    torch::manual_seed(0);
    EdmDenoiser model(net, EdmConfig{});
    int64_t params = 0;
    for (auto& p : model->parameters()) params += p.numel();
    auto ema = model->parameters();
    std::vector<torch::Tensor> shadow;
    for (auto& p : ema) shadow.push_back(p.detach().clone());
    torch::optim::Adam opt(model->parameters(), torch::optim::AdamOptions(2e-4));
    auto x0 = torch::randn({batch, 2, size, size}) * 0.5;
    auto step = [&] {
      NoiseDraw draw{(torch::randn({batch}) * 1.2 - 1.2).exp(), torch::randn({batch, 2, size, size})};
      torch::Tensor loss;
      {
        Bf16Autocast autocast(bf16);
        loss = clean_loss(as_denoiser(model), x0, draw, EdmConfig{});
      }
      opt.zero_grad();
      loss.backward();
      torch::nn::utils::clip_grad_norm_(model->parameters(), 1.0);
      opt.step();
      torch::NoGradGuard g;
      auto ps = model->parameters();
      for (size_t i = 0; i < ps.size(); ++i) shadow[i].mul_(0.999).add_(ps[i], 0.001);
    };
    step();  // warm-up
    const auto t0 = Clock::now();
    for (int64_t i = 0; i < steps; ++i) step();
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    std::printf("C++ %s: %lld parameters, batch %lld at %lldx%lld, %d threads: %.3f s/step, %.2f images/s\n",
                bf16 ? "bf16" : "fp32", static_cast<long long>(params), static_cast<long long>(batch),
                static_cast<long long>(size), static_cast<long long>(size), threads, s / steps, batch * steps / s);
    std::fflush(stdout);
  }
  return 0;
}
