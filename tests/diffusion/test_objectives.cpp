// The objectives' maths: no dependence on unobserved data, Ã ⊆ A, and the ambient optimum of a linear denoiser on
// Gaussian data equals the analytic E[x0 | Ã x_t] (Daras et al. 2023, Theorem 4.2), where an unmasked loss is biased.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/simulate.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

UNetConfig tiny(int64_t cond) {
  UNetConfig c;
  c.base_channels = 8;
  c.channel_mult = {1, 2};
  c.blocks_per_level = 1;
  c.attention_levels = {};
  c.cond_channels = cond;
  return c;
}

EdmDenoiser tiny_model(int64_t cond, uint64_t seed) {
  torch::manual_seed(seed);
  EdmDenoiser m(tiny(cond), EdmConfig{});
  torch::NoGradGuard g;
  for (auto& p : m->parameters()) p.add_(0.05 * torch::randn_like(p));
  return m;
}

std::vector<torch::Tensor> grads_of(torch::nn::Module& m) {
  std::vector<torch::Tensor> g;
  for (auto& p : m.parameters()) g.push_back(p.grad().defined() ? p.grad().clone() : torch::zeros_like(p));
  return g;
}

bool same(const std::vector<torch::Tensor>& a, const std::vector<torch::Tensor>& b) {
  for (size_t i = 0; i < a.size(); ++i)
    if (!torch::equal(a[i], b[i])) return false;
  return true;
}

}  // namespace

TEST(AmbientImage, LossAndGradientIgnoreUnobservedPixels) {
  auto model = tiny_model(1, 1);
  auto gen = at::detail::createCPUGenerator(2);
  auto y = torch::randn({3, 2, 16, 16}, gen);
  auto a = (torch::rand({3, 1, 16, 16}, gen) > 0.4).to(torch::kFloat);
  auto a_tilde = further_corrupt_pixels(a, 0.2, gen);
  NoiseDraw draw{sample_sigma(3, EdmConfig{}, gen), torch::randn({3, 2, 16, 16}, gen)};
  auto garbage = y + 100 * (1 - a) * torch::randn({3, 2, 16, 16}, gen);  // differs only where A did not observe

  auto l1 = ambient_image_loss(as_denoiser(model), y, a, a_tilde, draw, EdmConfig{});
  l1.backward();
  auto g1 = grads_of(*model);
  model->zero_grad();
  auto l2 = ambient_image_loss(as_denoiser(model), garbage, a, a_tilde, draw, EdmConfig{});
  l2.backward();
  EXPECT_EQ(l1.item<double>(), l2.item<double>());
  EXPECT_TRUE(same(g1, grads_of(*model)));
  EXPECT_GT(l1.item<double>(), 0);
}

TEST(AmbientImage, FurtherCorruptionKeepsASubsetOfA) {
  auto gen = at::detail::createCPUGenerator(3);
  auto a = (torch::rand({8, 1, 32, 32}, gen) > 0.5).to(torch::kFloat);
  auto at = further_corrupt_pixels(a, 0.3, gen);
  EXPECT_EQ((at * (1 - a)).sum().item<double>(), 0.0);
  EXPECT_NEAR(1 - at.sum().item<double>() / a.sum().item<double>(), 0.3, 0.03);
  std::mt19937_64 rng(1);
  auto ab = further_corrupt_blocks(a, 3, 4, 8, rng);
  EXPECT_EQ((ab * (1 - a)).sum().item<double>(), 0.0);
  EXPECT_LT(ab.sum().item<double>(), a.sum().item<double>());
}

TEST(AmbientFourier, LossAndGradientIgnoreUnsampledLines) {
  const int64_t b = 2, c = 4, n = 16;
  auto maps = mri::biot_savart_maps(c, n, 1).unsqueeze(0).expand({b, c, n, n}).contiguous();
  auto gen = at::detail::createCPUGenerator(4);
  FourierBatch batch;
  batch.mask = torch::stack({mri::random_mask_1d(n, 0.25, 2, 1), mri::random_mask_1d(n, 0.25, 2, 2)});
  batch.calib = torch::stack({mri::central_run(batch.mask[0]), mri::central_run(batch.mask[1])});
  batch.maps = maps;
  batch.ksp = torch::randn({b, c, n, n}, gen, torch::kComplexFloat) *
              batch.mask.to(torch::kFloat).reshape({b, 1, n, 1});
  std::mt19937_64 rng(5);
  auto mt = further_subsample_lines(batch.mask, batch.calib, 0.3, rng);
  EXPECT_EQ((mt & ~batch.mask).sum().item<int64_t>(), 0);
  NoiseDraw draw{sample_sigma(b, EdmConfig{}, gen), torch::randn({b, n, n}, gen, torch::kComplexFloat)};
  auto model = tiny_model(1, 6);
  auto l1 = ambient_fourier_loss(as_denoiser(model), batch, mt, draw, EdmConfig{});
  l1.backward();
  auto g1 = grads_of(*model);
  model->zero_grad();
  auto corrupted = batch;
  auto unsampled = 1 - batch.mask.to(torch::kFloat).reshape({b, 1, n, 1});
  corrupted.ksp = batch.ksp + 50 * unsampled * torch::randn({b, c, n, n}, gen, torch::kComplexFloat);
  auto l2 = ambient_fourier_loss(as_denoiser(model), corrupted, mt, draw, EdmConfig{});
  l2.backward();
  EXPECT_EQ(l1.item<double>(), l2.item<double>());
  EXPECT_TRUE(same(g1, grads_of(*model)));
  // Ã must be a subset of A.
  auto not_subset = mt.clone();
  not_subset.index_put_({0}, ~batch.mask[0]);
  EXPECT_THROW(ambient_fourier_loss(as_denoiser(model), batch, not_subset, draw, EdmConfig{}), ambient::Error);
}

TEST(AmbientFourier, MaskedLinesWeighDroppedLinesLikeSigmaInfinity) {
  // One slice, a fixed denoiser: the masked-lines loss is λ(σ) times the error on Ã's lines plus 1/σ_d² times the
  // error on the lines A kept and Ã dropped, each taken from the standard loss scored on that set of lines alone.
  const int64_t c = 4, n = 16;
  auto gen = at::detail::createCPUGenerator(9);
  FourierBatch batch;
  batch.mask = mri::random_mask_1d(n, 0.25, 2, 3).unsqueeze(0);
  batch.calib = mri::central_run(batch.mask[0]).unsqueeze(0);
  batch.maps = mri::biot_savart_maps(c, n, 1).unsqueeze(0);
  batch.ksp = torch::randn({1, c, n, n}, gen, torch::kComplexFloat);
  auto mt = batch.mask.clone();  // Ã drops every other line of A outside the calibration region
  const auto outer = (batch.mask & ~batch.calib).nonzero().select(1, 1);
  for (int64_t i = 0; i < outer.size(0); i += 2) mt.index_put_({0, outer[i].item<int64_t>()}, false);
  const auto dropped = batch.mask & ~mt;
  ASSERT_GT(dropped.sum().item<int64_t>(), 0);
  NoiseDraw draw{torch::tensor({0.05f}), torch::randn({1, n, n}, gen, torch::kComplexFloat)};
  auto fixed = torch::randn({1, 2, n, n}, gen);
  DenoiserFn d = [&](const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) { return fixed; };
  EdmConfig standard, masked;
  masked.precond = Precond::masked_lines;
  auto lines = [](const torch::Tensor& m) { return m.sum().item<double>(); };
  const double lambda = loss_weight(draw.sigma, standard).item<double>(), sd = standard.sigma_data;
  const double on_kept = ambient_fourier_loss(d, batch, mt, draw, standard, mt).item<double>() * lines(mt) / lambda;
  const double on_dropped =
      ambient_fourier_loss(d, batch, mt, draw, standard, dropped).item<double>() * lines(dropped) / lambda;
  const double expected = (lambda * on_kept + on_dropped / (sd * sd)) / lines(batch.mask);
  EXPECT_NEAR(ambient_fourier_loss(d, batch, mt, draw, masked).item<double>(), expected, 1e-4 * expected);
  // Ã = A: nothing dropped, the standard loss.
  EXPECT_NEAR(ambient_fourier_loss(d, batch, batch.mask, draw, masked).item<double>(),
              ambient_fourier_loss(d, batch, batch.mask, draw, standard).item<double>(), 1e-6 * expected);
}

TEST(AmbientImage, LinearOptimumOnGaussianDataIsTheConditionalMean) {
  // x0 ~ N(0, Σ) with 4 coordinates laid out as an image [N, 2, 1, 2] (2 channels x 2 pixels).
  // Ã observes pixel 0 only; A = Ã plus pixel 1 with probability q, independent of x0. A linear denoiser
  // D(v) = W v fitted by minimising the ambient loss must converge to W[:, obs] = Σ[:, o] (Σ_oo + σ² I)^-1,
  // i.e. E[x0 | Ã x_t], including the rows of pixel 1 that Ã never shows.
  const int64_t n = 20000;
  const double sigma = 0.5, q = 0.5;
  auto gen = at::detail::createCPUGenerator(7);
  auto l = torch::tensor({1.0, 0.0, 0.0, 0.0, 0.6, 0.8, 0.0, 0.0, 0.5, -0.3, 0.7, 0.0, -0.4, 0.2, 0.3, 0.6}, torch::kDouble)
               .reshape({4, 4});
  auto cov = l.matmul(l.t());
  auto x0 = torch::randn({n, 4}, gen, torch::kDouble).matmul(l.t());
  auto y = x0.to(torch::kFloat).reshape({n, 2, 1, 2});  // coordinate order: (ch0,px0), (ch0,px1), (ch1,px0), (ch1,px1)
  auto a_tilde = torch::zeros({n, 1, 1, 2});
  a_tilde.select(3, 0).fill_(1);
  auto a = a_tilde.clone();
  a.select(3, 1).copy_((torch::rand({n, 1, 1}, gen) < q).to(torch::kFloat));
  NoiseDraw draw{torch::full({n}, static_cast<float>(sigma)), torch::randn({n, 2, 1, 2}, gen)};

  const std::vector<int64_t> obs = {0, 2};  // pixel 0 of both channels
  auto idx = torch::tensor(obs);
  auto s_oo = cov.index_select(0, idx).index_select(1, idx);
  auto analytic = cov.index_select(1, idx).matmul(torch::inverse(s_oo + sigma * sigma * torch::eye(2, torch::kDouble)));
  // The masked preconditioning's loss weighs the hidden pixel 1/σ_d² instead of λ(σ): the same minimiser.
  for (const auto precond : {Precond::standard, Precond::masked}) {
    EdmConfig edm;
    edm.precond = precond;
    auto w = torch::zeros({4, 4}, torch::requires_grad());
    DenoiserFn linear = [&](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) {
      return x.flatten(1).matmul(w.t()).reshape(x.sizes());
    };
    torch::optim::Adam opt({w}, torch::optim::AdamOptions(0.08));
    for (int it = 0; it < 800; ++it) {
      opt.zero_grad();
      ambient_image_loss(linear, y, a, a_tilde, draw, edm).backward();
      opt.step();
    }
    auto fitted = w.detach().to(torch::kDouble).index_select(1, idx);
    EXPECT_LT((fitted - analytic).abs().max().item<double>(), 0.03)
        << precond_name(precond) << ": fitted\n" << fitted << "\nanalytic\n" << analytic;
  }

  // Without A in the loss (unobserved pixels scored as zeros), pixel 1's rows shrink towards q E[x0 | Ã x_t].
  auto w2 = torch::zeros({4, 4}, torch::requires_grad());
  torch::optim::Adam opt2({w2}, torch::optim::AdamOptions(0.08));
  auto x_in = (a_tilde * (a * y + sigma * draw.noise)).flatten(1);
  auto target = (a * y).flatten(1);
  for (int it = 0; it < 800; ++it) {
    opt2.zero_grad();
    (x_in.matmul(w2.t()) - target).square().mean().backward();
    opt2.step();
  }
  auto biased = w2.detach().to(torch::kDouble).index_select(1, idx);
  const std::vector<int64_t> px1 = {1, 3};
  auto rows = torch::tensor(px1);
  EXPECT_LT((biased.index_select(0, rows) - q * analytic.index_select(0, rows)).abs().max().item<double>(), 0.03);
  EXPECT_GT((biased.index_select(0, rows) - analytic.index_select(0, rows)).abs().max().item<double>(), 0.1);
}

TEST(CleanObjective, PerfectDenoiserHasZeroLossAndNaiveEqualsCleanOnItsInput) {
  auto gen = at::detail::createCPUGenerator(8);
  auto x0 = torch::randn({2, 2, 8, 8}, gen);
  NoiseDraw draw{torch::tensor({0.3f, 2.0f}), torch::randn({2, 2, 8, 8}, gen)};
  DenoiserFn oracle = [&](const torch::Tensor&, const torch::Tensor&, const torch::Tensor&) { return x0; };
  EXPECT_EQ(clean_loss(oracle, x0, draw, EdmConfig{}).item<double>(), 0.0);
  DenoiserFn zero = [](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) { return 0 * x; };
  // λ(σ) ||x0||² per pixel, averaged: checks the weighting.
  auto expected = (loss_weight(draw.sigma, EdmConfig{}) * x0.square().flatten(1).mean(1)).mean();
  EXPECT_NEAR(clean_loss(zero, x0, draw, EdmConfig{}).item<double>(), expected.item<double>(), 1e-5);
  EXPECT_EQ(naive_loss(zero, x0, draw, EdmConfig{}).item<double>(), clean_loss(zero, x0, draw, EdmConfig{}).item<double>());
}

TEST(Channels, ComplexRoundTrip) {
  auto z = torch::randn({2, 5, 7}, torch::kComplexFloat);
  auto c = to_channels(z);
  EXPECT_EQ(c.sizes(), torch::IntArrayRef({2, 2, 5, 7}));
  EXPECT_TRUE(torch::equal(from_channels(c), z));
  EXPECT_TRUE(torch::equal(c.select(1, 0), torch::real(z)));
}
