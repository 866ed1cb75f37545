// Samplers against priors whose answer is known: Heun (deterministic and stochastic) with the exact denoisers of a
// Gaussian and of a Gaussian mixture must reproduce their means, variances and mixture weights.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/diffusion/samplers.hpp"
#include "ambient/mri/error.hpp"

using namespace ambient;
using namespace ambient::diffusion;

TEST(Schedule, RunsFromSigmaMaxToSigmaMinThenZero) {
  Schedule s;
  s.steps = 18;
  auto sig = edm_sigmas(s);
  ASSERT_EQ(sig.numel(), 19);
  EXPECT_NEAR(sig[0].item<double>(), 80.0, 1e-9);
  EXPECT_NEAR(sig[17].item<double>(), 0.002, 1e-12);
  EXPECT_EQ(sig[18].item<double>(), 0.0);
  EXPECT_TRUE((sig.narrow(0, 0, 18) > sig.narrow(0, 1, 18)).all().item<bool>());
  s.steps = 0;
  EXPECT_THROW(edm_sigmas(s), ambient::Error);
}

namespace {

// Statistical tolerance: 4.5 standard errors of the sample mean (sqrt(v / n)) and of the sample variance
// (v sqrt(2 / n)), plus a small allowance for the ODE discretisation (measured well below it at 32 steps).
void expect_gaussian(const torch::Tensor& x, const torch::Tensor& mean, const torch::Tensor& var, const char* what) {
  const double n = x.size(0);
  auto m = x.mean(0), v = x.var(0);
  auto mean_err = ((m - mean).abs() / (var / n).sqrt()).max().item<double>();
  auto var_err = ((v - var).abs() / (var * std::sqrt(2.0 / n))).max().item<double>();
  EXPECT_LT(mean_err, 4.5) << what << ": sample mean off by " << mean_err << " standard errors";
  EXPECT_LT(var_err, 4.5) << what << ": sample variance off by " << var_err << " standard errors";
}

}  // namespace

TEST(Heun, DeterministicSamplesMatchAGaussianPrior) {
  auto gen = at::detail::createCPUGenerator(1);
  auto mean = torch::randn({2, 2, 3}, gen);
  auto var = torch::rand({2, 2, 3}, gen) * 0.9 + 0.1;
  HeunConfig c;
  c.schedule.steps = 32;
  auto x = sample_heun(gaussian_denoiser(mean, var), {8000, 2, 2, 3}, c, gen);
  expect_gaussian(x, mean, var, "deterministic Heun");
}

TEST(Heun, StochasticSamplesMatchAGaussianPrior) {
  auto gen = at::detail::createCPUGenerator(2);
  auto mean = torch::randn({2, 2, 2}, gen);
  auto var = torch::rand({2, 2, 2}, gen) * 0.9 + 0.1;
  // Churn adds discretisation error: at 32 steps with maximal churn (γ = √2 − 1 every step) the variance is ~8
  // standard errors off; at 128 steps the sampler has converged to the prior within statistical tolerance.
  HeunConfig c;
  c.schedule.steps = 128;
  c.s_churn = 40;
  c.s_tmin = 0.05;
  c.s_tmax = 50;
  auto x = sample_heun(gaussian_denoiser(mean, var), {8000, 2, 2, 2}, c, gen);
  expect_gaussian(x, mean, var, "stochastic Heun");
}

TEST(Heun, MixtureSamplesLandInTheModesWithTheRightWeights) {
  auto gen = at::detail::createCPUGenerator(3);
  auto means = torch::tensor({2.0f, 2.0f, -2.0f, -1.0f}).reshape({2, 2, 1, 1});
  auto weights = torch::tensor({0.3f, 0.7f});
  auto stds = torch::tensor({0.3f, 0.5f});
  HeunConfig c;
  c.schedule.steps = 32;
  const int64_t n = 6000;
  auto x = sample_heun(gaussian_mixture_denoiser(weights, means, stds), {n, 2, 1, 1}, c, gen).reshape({n, 2});
  auto first = (x - means[0].reshape({1, 2})).norm(2, 1) < (x - means[1].reshape({1, 2})).norm(2, 1);
  const double frac = first.to(torch::kDouble).mean().item<double>();
  EXPECT_NEAR(frac, 0.3, 4.5 * std::sqrt(0.21 / n));
  // Within a mode, the spread is that component's std.
  auto in_first = x.index({first});
  EXPECT_NEAR(in_first.std(0).mean().item<double>(), 0.3, 0.03);
}

TEST(Heun, DeterministicForAFixedSeed) {
  auto mean = torch::zeros({2, 4, 4}), var = torch::ones({2, 4, 4});
  HeunConfig c;
  c.schedule.steps = 8;
  auto g1 = at::detail::createCPUGenerator(5), g2 = at::detail::createCPUGenerator(5);
  EXPECT_TRUE(torch::equal(sample_heun(gaussian_denoiser(mean, var), {3, 2, 4, 4}, c, g1),
                           sample_heun(gaussian_denoiser(mean, var), {3, 2, 4, 4}, c, g2)));
}
