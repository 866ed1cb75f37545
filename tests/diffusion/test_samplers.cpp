// Samplers against priors whose answer is known: Heun (deterministic and stochastic) with the exact denoisers of a
// Gaussian and of a Gaussian mixture must reproduce their means, variances and mixture weights.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/samplers.hpp"
#include "ambient/mri/fft.hpp"

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

namespace {

// What the problems below share: [2, n, n] images measured on 6 of 8 phase-encode lines through A = M F.
struct LinesProblem {
  int64_t n = 8;
  torch::Tensor mask, y1;  // [n] line mask, [n, n] measured k-space (zero off the lines)

  LinesProblem() : mask(torch::zeros({n}, torch::kFloat)) {
    for (int64_t i : {0, 2, 3, 4, 5, 7}) mask[i] = 1;
  }
  mri::OperatorPtr op(int64_t batch) const {
    const mri::Shape shape = {batch, n, n};
    return mri::compose(mri::make_mask(mask.reshape({1, n, 1}), shape), mri::make_fourier(shape));
  }
  torch::Tensor y(int64_t batch) const { return y1.unsqueeze(0).expand({batch, n, n}).contiguous(); }
  // Per real component, averaged over pixels: F is unitary, so a k-space posterior that is diagonal with complex
  // variance c_measured on the lines and c_unmeasured off them gives every pixel (1/N) sum_k c_k, half per part.
  double pixel_var_real(double c_measured, double c_unmeasured) const {
    const double measured = mask.sum().item<double>() * n, total = n * n;
    return 0.5 * (measured * c_measured + (total - measured) * c_unmeasured) / total;
  }
  static torch::Tensor to_image(const torch::Tensor& k) {
    return torch::view_as_real(mri::ifft2c_torch(k)).permute({2, 0, 1}).contiguous();
  }
};

// A Gaussian prior x ~ N(mu, v I) on [2, 8, 8] images (z = x_re + i x_im), measured through A = M F (lines of a
// 2-D FFT) with complex noise of variance eta: the posterior is Gaussian and diagonal in k-space. Per sample k:
// measured -> mean (Fμ/(2v) + y/η) / (1/(2v) + 1/η), variance c = 1/(1/(2v) + 1/η); unmeasured -> prior (Fμ, 2v).
// Pixel-domain mean F^H m; every pixel's complex variance (1/N) sum_k c_k, half of it per real component.
struct GaussianPosteriorProblem : LinesProblem {
  double v = 0.25, eta = 0.05;
  torch::Tensor mu;
  torch::Tensor post_mean;  // [2, n, n]
  double post_var_real = 0;

  explicit GaussianPosteriorProblem(uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    mu = torch::randn({2, n, n}, gen) * 0.5;
    auto mu_c = torch::view_as_complex(mu.permute({1, 2, 0}).contiguous());
    auto k_prior = mri::fft2c_torch(mu_c);
    auto truth = mu_c + std::sqrt(2 * v) * torch::randn({n, n}, gen, torch::kComplexFloat);
    auto m2 = mask.reshape({n, 1});
    y1 = (mri::fft2c_torch(truth) + std::sqrt(eta) * torch::randn({n, n}, gen, torch::kComplexFloat)) * m2;
    const double c_meas = 1 / (1 / (2 * v) + 1 / eta);
    auto m_meas = (k_prior / (2 * v) + y1 / eta) * c_meas;
    auto m_k = torch::where(m2 > 0, m_meas, k_prior);
    post_mean = to_image(m_k);
    post_var_real = pixel_var_real(c_meas, 2 * v);
  }
};

}  // namespace

TEST(PosteriorSampler, MatchesTheClosedFormGaussianPosterior) {
  GaussianPosteriorProblem p(11);
  const int64_t batch = 3000;
  PosteriorConfig c;
  c.schedule.steps = 24;
  c.noise_var = p.eta;
  c.prior_var = p.v;
  auto gen = at::detail::createCPUGenerator(12);
  auto x = sample_posterior(gaussian_denoiser(p.mu, torch::full({2, p.n, p.n}, p.v)), p.op(batch), p.y(batch), c, gen);
  // 4.5 standard errors on every pixel's mean and variance.
  auto mean_err = ((x.mean(0) - p.post_mean).abs() / std::sqrt(p.post_var_real / batch)).max().item<double>();
  auto var_err = ((x.var(0) - p.post_var_real).abs() / (p.post_var_real * std::sqrt(2.0 / batch))).max().item<double>();
  EXPECT_LT(mean_err, 4.5) << "posterior mean off by " << mean_err << " standard errors";
  EXPECT_LT(var_err, 4.5) << "posterior variance off by " << var_err << " standard errors (expected "
                          << p.post_var_real << ", got " << x.var(0).mean().item<double>() << ")";
}

TEST(PosteriorSampler, RejectsMismatchedMeasurements) {
  GaussianPosteriorProblem p(13);
  auto gen = at::detail::createCPUGenerator(1);
  EXPECT_THROW(sample_posterior(gaussian_denoiser(p.mu, torch::full({2, 8, 8}, 0.25)), p.op(4), p.y(3),
                                PosteriorConfig{}, gen),
               ambient::Error);
  PosteriorConfig bad;
  bad.gamma_floor = -0.1;
  EXPECT_THROW(sample_posterior(gaussian_denoiser(p.mu, torch::full({2, 8, 8}, 0.25)), p.op(4), p.y(4), bad, gen),
               ambient::Error);
  bad.gamma_floor = 0;
  bad.gamma_scale = 0;
  EXPECT_THROW(sample_posterior(gaussian_denoiser(p.mu, torch::full({2, 8, 8}, 0.25)), p.op(4), p.y(4), bad, gen),
               ambient::Error);
}

TEST(Dps, PullsSamplesToTheDataAndTowardsThePosteriorMean) {
  // DPS is approximate (no exact posterior even for Gaussians): check what it promises. Samples fit the
  // measurements to the noise level, and their mean is far closer to the posterior mean than the prior mean is.
  GaussianPosteriorProblem p(14);
  const int64_t batch = 400;
  PosteriorConfig c;
  c.schedule.steps = 64;
  c.dps_step = 1.0;
  auto gen = at::detail::createCPUGenerator(15);
  auto x = sample_dps(gaussian_denoiser(p.mu, torch::full({2, p.n, p.n}, p.v)), p.op(batch), p.y(batch), c, gen);
  auto z = torch::view_as_complex(x.permute({0, 2, 3, 1}).contiguous());
  auto residual = (p.op(batch)->forward(z) - p.y(batch)).abs().square().sum({1, 2}).mean().item<double>();
  const double noise_energy = p.eta * p.mask.sum().item<double>() * p.n;  // E||n||² on the sampled entries
  EXPECT_LT(residual, 3 * noise_energy) << "residual " << residual << " vs noise energy " << noise_energy;
  const double dps_err = (x.mean(0) - p.post_mean).norm().item<double>();
  const double prior_err = (p.mu - p.post_mean).norm().item<double>();
  std::cout << "[ measured ] DPS: residual " << residual << " (noise energy " << noise_energy << "), mean error "
            << dps_err << " vs prior " << prior_err << "\n";
  EXPECT_LT(dps_err, 0.35 * prior_err) << "DPS mean error " << dps_err << ", prior mean error " << prior_err;
}

namespace {

// A two-component Gaussian-mixture prior sum_k w_k N(μ_k, s² I) on [2, 8, 8] images, measured through the same
// A = M F as above. The posterior is again a mixture (as in BART's tests/sample.mk): F is unitary and s² I
// isotropic, so in k-space each component is diagonal. Component k's posterior: measured samples have mean
// (Fμ_k/(2s²) + y/η) c, c = 1/(1/(2s²) + 1/η), the rest keep Fμ_k; its weight is w_k times its evidence
// prod_measured CN(y_j; (Fμ_k)_j, 2s² + η). The means differ mostly on the two unmeasured lines, so the data say
// little about which mode the image is in and both posterior weights stay far from 0 and 1.
struct MixturePosteriorProblem : LinesProblem {
  double s2 = 0.04, eta = 0.05;
  torch::Tensor weights = torch::tensor({0.35f, 0.65f});
  torch::Tensor means;         // [2, 2, n, n] image-domain component means
  torch::Tensor post_means;    // [2, 2, n, n]: each component's posterior mean
  torch::Tensor post_weights;  // [2]
  double post_var_real = 0;    // per real component, the same for both components

  explicit MixturePosteriorProblem(uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    auto m2 = mask.reshape({n, 1});
    auto base = mri::fft2c_torch(torch::randn({n, n}, gen, torch::kComplexFloat) * 0.5);
    // k-space difference between the modes: large on the unmeasured lines, small on the measured ones.
    auto diff = torch::randn({n, n}, gen, torch::kComplexFloat);
    diff = diff * (1 - m2) * 1.5 + diff * m2 * 0.02;
    std::vector<torch::Tensor> k_means = {base + diff, base - diff};
    auto truth_k = k_means[1] + std::sqrt(2 * s2) * torch::randn({n, n}, gen, torch::kComplexFloat);
    y1 = (truth_k + std::sqrt(eta) * torch::randn({n, n}, gen, torch::kComplexFloat)) * m2;
    const double c = 1 / (1 / (2 * s2) + 1 / eta);
    std::vector<torch::Tensor> imgs, posts;
    std::vector<double> logw;
    for (int k = 0; k < 2; ++k) {
      imgs.push_back(to_image(k_means[k]));
      posts.push_back(to_image(torch::where(m2 > 0, (k_means[k] / (2 * s2) + y1 / eta) * c, k_means[k])));
      const double misfit = ((y1 - k_means[k]).abs().square() * m2).sum().item<double>();
      logw.push_back(std::log(weights[k].item<double>()) - misfit / (2 * s2 + eta));  // shared terms dropped
    }
    means = torch::stack(imgs);
    post_means = torch::stack(posts);
    auto lw = torch::tensor(logw, torch::kDouble);
    post_weights = torch::softmax(lw, 0);
    post_var_real = pixel_var_real(c, 2 * s2);
  }
};

}  // namespace

TEST(PosteriorSampler, MatchesAGaussianMixturePosteriorWithinEachModeAndNearlyInItsWeights) {
  MixturePosteriorProblem p(21);
  const double w0 = p.post_weights[0].item<double>();
  ASSERT_GT(w0, 0.15);  // the problem is built so that both modes matter
  ASSERT_LT(w0, 0.85);
  const int64_t batch = 4000;
  PosteriorConfig c;
  c.schedule.steps = 64;
  c.noise_var = p.eta;
  c.prior_var = p.s2;  // γ(σ) of one component: exact once a chain has chosen its mode
  auto gen = at::detail::createCPUGenerator(22);
  auto prior = gaussian_mixture_denoiser(p.weights, p.means, torch::full({2}, std::sqrt(p.s2)));
  auto x = sample_posterior(prior, p.op(batch), p.y(batch), c, gen);
  // Each sample belongs to the nearer component posterior mean (they are ~14 posterior std apart).
  auto d0 = (x - p.post_means[0]).flatten(1).norm(2, 1), d1 = (x - p.post_means[1]).flatten(1).norm(2, 1);
  auto first = d0 < d1;
  const double frac = first.to(torch::kDouble).mean().item<double>();
  std::cout << "[ measured ] mixture posterior: weight of mode 0 " << frac << " (exact " << w0 << ", prior "
            << p.weights[0].item<double>() << ")\n";
  // Which mode: the sampler's Gaussian model of p(x0 | x_i) (one mean, one γ) cannot weigh the modes by their
  // evidence p(y | mode), so where the modes differ only in directions the data barely see it keeps nearly the
  // prior's weights (measured: 0.334 at 64 steps, 0.342 at 256, exact 0.268, prior 0.35; DDS/DiffPIR-type samplers
  // share this). Held to within 0.1 of the exact weight so a regression shows; docs/sampling.md says so.
  EXPECT_NEAR(frac, w0, 0.1) << "posterior mode weights";
  for (int k = 0; k < 2; ++k) {
    auto in_mode = x.index({k == 0 ? first : first.logical_not()});
    const double m = in_mode.size(0);
    ASSERT_GT(m, 100);
    auto mean_err = ((in_mode.mean(0) - p.post_means[k]).abs() / std::sqrt(p.post_var_real / m)).max().item<double>();
    const double var_ratio = in_mode.var(0).mean().item<double>() / p.post_var_real;
    EXPECT_LT(mean_err, 4.5) << "mode " << k << ": mean off by " << mean_err << " standard errors";
    EXPECT_NEAR(var_ratio, 1.0, 0.1) << "mode " << k << ": spread";
  }
}
