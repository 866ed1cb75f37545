// The one noise convention (docs/conventions.md, "Noise"): whenever a network is told σ, what it sees carries
// noise of variance σ² in each real channel, in every training objective and in every sampler.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <vector>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/samplers.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/linear_operator.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

// What a denoiser was given at one call: the input, the σ it was told, the corruption channels.
struct Seen {
  torch::Tensor x, sigma, cond;
};

// A model that records its inputs and returns them (the loss value does not matter here).
struct SpyModel : DenoiserModule {
  explicit SpyModel(int64_t cond) : cond(cond) {}
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& c) override {
    calls.push_back({x.detach().clone(), sigma.detach().clone(), c.defined() ? c.detach().clone() : c});
    return x;
  }
  int64_t cond_channels() const override { return cond; }
  std::string kind() const override { return "spy"; }
  std::string config_string() const override { return "spy"; }
  std::shared_ptr<DenoiserModule> fresh_copy() const override { return std::make_shared<SpyModel>(cond); }
  int64_t cond;
  std::vector<Seen> calls;
};

// Per-channel variance of the input divided by the told σ² (pixels where `keep` is 1), over the whole batch:
// 1 when the convention holds. Data are zero, so the input is noise alone.
double variance_per_sigma2(const Seen& s, const torch::Tensor& keep = {}) {
  auto scaled = s.x / s.sigma.reshape({-1, 1, 1, 1});
  auto w = keep.defined() ? keep.expand_as(scaled) : torch::ones_like(scaled);
  return ((scaled.square() * w).sum() / w.sum()).item<double>();
}

// 16 examples of 32 x 32 with zero data: 32 k values per example and channel; the mean over the batch of the
// normalised variance has a relative standard error of sqrt(2 / 32768) < 1%, so 5% is > 6 standard errors.
constexpr int64_t kBatch = 16, kN = 32;
constexpr double kTol = 0.05;

Batch zero_image_batch(bool with_mask) {
  Batch b;
  b.image = torch::zeros({kBatch, 2, kN, kN});
  if (with_mask) b.mask = torch::ones({kBatch, 1, kN, kN});
  return b;
}

Batch zero_kspace_batch() {
  Batch b;
  const int64_t coils = 2;
  b.ksp = torch::zeros({kBatch, coils, kN, kN}, torch::kComplexFloat);
  b.maps = torch::full({kBatch, coils, kN, kN}, c10::complex<float>(1 / std::sqrt(2.0f), 0));  // S^H S = I
  b.lines = torch::ones({kBatch, kN}, torch::kBool);
  b.calib = torch::ones({kBatch, kN}, torch::kBool);  // Ã keeps every line, so Ã^H Ã = I
  return b;
}

double objective_variance(Objective o, const Batch& b) {
  auto spy = std::make_shared<SpyModel>(o == Objective::ambient_image || o == Objective::ambient_fourier ? 1 : 0);
  TrainConfig cfg;
  cfg.objective = o;
  cfg.delta = 0.3;
  batch_loss(spy, b, cfg, 17, false);
  EXPECT_EQ(spy->calls.size(), 1u);
  const auto& seen = spy->calls.at(0);
  // Image-domain Ã erases pixels: measure only where it kept them.
  return variance_per_sigma2(seen, o == Objective::ambient_image ? seen.cond : torch::Tensor());
}

}  // namespace

TEST(NoiseLike, HasVarianceSigmaSquaredPerRealValueForRealAndComplexTensors) {
  auto gen = at::detail::createCPUGenerator(1);
  auto real = noise_like(torch::empty({4, 2, 64, 64}), 0.7, gen);
  EXPECT_NEAR(real.var().item<double>(), 0.49, 0.49 * kTol);
  auto cplx = noise_like(torch::empty({4, 64, 64}, torch::kComplexFloat), 0.7, gen);
  EXPECT_EQ(cplx.scalar_type(), torch::kComplexFloat);
  EXPECT_NEAR(torch::real(cplx).var().item<double>(), 0.49, 0.49 * kTol);
  EXPECT_NEAR(torch::imag(cplx).var().item<double>(), 0.49, 0.49 * kTol);
  // One σ per batch item.
  auto per_item = noise_like(torch::empty({2, 64, 64}, torch::kComplexFloat), torch::tensor({0.1, 2.0}), gen);
  EXPECT_NEAR(torch::view_as_real(per_item[0]).var().item<double>(), 0.01, 0.01 * kTol);
  EXPECT_NEAR(torch::view_as_real(per_item[1]).var().item<double>(), 4.0, 4.0 * kTol);
  EXPECT_THROW(noise_like(torch::empty({3, 4}), torch::ones({2}), gen), ambient::Error);
  EXPECT_THROW(noise_like(torch::empty({3, 4}), -1.0, gen), ambient::Error);
}

TEST(NoiseConvention, EveryTrainingObjectiveShowsTheNetworkSigmaSquaredPerChannel) {
  EXPECT_NEAR(objective_variance(Objective::clean, zero_image_batch(false)), 1.0, kTol) << "clean";
  EXPECT_NEAR(objective_variance(Objective::ambient_image, zero_image_batch(true)), 1.0, kTol) << "ambient-image";
  EXPECT_NEAR(objective_variance(Objective::naive, zero_kspace_batch()), 1.0, kTol) << "naive";
  // Before 2026-12-03 this was 0.5: a complex draw with variance 1/2 per part (trainer.hpp, kNoiseConvention).
  EXPECT_NEAR(objective_variance(Objective::ambient_fourier, zero_kspace_batch()), 1.0, kTol) << "ambient-fourier";
}

namespace {

// A zero-mean Gaussian prior with variance v per channel: x_t ~ N(0, v + σ²) at every σ of an exact sampler, so a
// denoiser told σ must be given inputs of variance v + σ² per channel.
constexpr double kPriorVar = 0.25;

struct Recorder {
  std::vector<std::pair<double, double>> calls;  // (told σ, input variance per channel)
  DenoiserFn wrap(DenoiserFn d) {
    return [this, d](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& c) {
      calls.emplace_back(sigma[0].item<double>(), x.detach().var().item<double>());
      return d(x, sigma, c);
    };
  }
  // The worst relative deviation of the input variance from v + σ² over the calls.
  double worst() const {
    double w = 0;
    for (const auto& [s, v] : calls) w = std::max(w, std::abs(v / (kPriorVar + s * s) - 1));
    return w;
  }
};

DenoiserFn zero_mean_prior() { return gaussian_denoiser(torch::zeros({2, kN, kN}), torch::full({2, kN, kN}, kPriorVar)); }

// No measured line: the posterior is the prior, so the posterior samplers must keep its marginals.
mri::OperatorPtr no_lines(int64_t batch) {
  const mri::Shape shape = {batch, kN, kN};
  return mri::compose(mri::make_mask(torch::zeros({1, kN, 1}), shape), mri::make_fourier(shape));
}

}  // namespace

TEST(NoiseConvention, EverySamplerFeedsTheDenoiserVariancePriorPlusSigmaSquared) {
  const int64_t batch = 32;
  auto gen = at::detail::createCPUGenerator(3);
  HeunConfig heun;
  heun.schedule.steps = 32;
  Recorder ode;
  sample_heun(ode.wrap(zero_mean_prior()), {batch, 2, kN, kN}, heun, gen);
  EXPECT_LT(ode.worst(), kTol) << "Heun (deterministic)";

  // Churn and DPS's Euler steps are first-order: 32 steps leave ~10% bias in the variance (the discretisation, not
  // the convention: a σ/√2 slip would be 50% off at every σ above the prior's), 128 / 256 steps converge.
  heun.schedule.steps = 128;
  heun.s_churn = 40;
  Recorder churn;
  sample_heun(churn.wrap(zero_mean_prior()), {batch, 2, kN, kN}, heun, gen);
  EXPECT_LT(churn.worst(), kTol) << "Heun (stochastic)";

  PosteriorConfig pc;
  pc.schedule.steps = 16;
  pc.prior_var = kPriorVar;
  pc.noise_var = 0.01;
  auto y = torch::zeros({batch, kN, kN}, torch::kComplexFloat);
  Recorder fast;
  sample_posterior(fast.wrap(zero_mean_prior()), no_lines(batch), y, pc, gen);
  EXPECT_LT(fast.worst(), kTol) << "posterior (fast)";

  Recorder dps;
  pc.schedule.steps = 256;
  sample_dps(dps.wrap(zero_mean_prior()), no_lines(batch), y, pc, gen);
  EXPECT_LT(dps.worst(), kTol) << "DPS";
}
