// The network's view through a fixed Ã: it gets Ã^H Ã x and Ã's channel, it cannot tell apart images that Ã maps to
// the same measurement, the training entry point (from a measurement) agrees with the sampling one (from x), and
// gradients flow through Ã^H Ã.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/samplers.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/masks.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

// A denoiser that remembers its input and corruption channel and returns its input (a linear map, so gradients
// through it are those of Ã^H Ã alone).
struct Spy {
  torch::Tensor input, channel;
  DenoiserFn fn() {
    return [this](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor& c) {
      input = x.detach().clone();
      channel = c;
      return x;
    };
  }
};

torch::Tensor random_lines(int64_t batch, int64_t ny, uint32_t seed) {
  std::vector<torch::Tensor> rows;
  for (int64_t b = 0; b < batch; ++b) rows.push_back(mri::further_line_mask(ny, 3.0, seed + static_cast<uint32_t>(b)));
  return torch::stack(rows);
}

double max_abs(const torch::Tensor& t) { return t.abs().max().item<double>(); }

}  // namespace

TEST(SeenThrough, ImageMaskShowsOnlyKeptPixelsAndItsOwnChannel) {
  auto gen = at::detail::createCPUGenerator(1);
  auto mask = (torch::rand({2, 1, 12, 10}, gen) > 0.5).to(torch::kFloat);
  auto x = torch::randn({2, 2, 12, 10}, gen);
  Spy spy;
  auto d = seen_through(spy.fn(), image_corruption(mask));
  auto other_channel = torch::ones({2, 1, 12, 10});
  d(x, torch::ones({2}), other_channel);
  EXPECT_TRUE(torch::equal(spy.input, x * mask));
  EXPECT_TRUE(torch::equal(spy.channel, mask));  // Ã's channel, not the caller's
}

TEST(SeenThrough, LinesHideWhatTheyDropAndBothEntryPointsAgree) {
  const int64_t b = 3, c = 4, ny = 24, nx = 16;
  auto gen = at::detail::createCPUGenerator(2);
  // Coil sensitivities constant over the image, so that F S h is supported on the lines that F h is supported on,
  // and an image with k-space only on the lines Ã dropped lies in Ã's null space.
  auto maps = torch::randn({b, c, 1, 1}, gen, torch::kComplexFloat).expand({b, c, ny, nx}).contiguous();
  maps = maps / maps.abs().square().sum(1, true).sqrt();
  auto lines = random_lines(b, ny, 3);
  auto a_tilde = line_corruption(maps, lines);
  auto x = torch::randn({b, 2, ny, nx}, gen);

  Spy spy;
  auto d = seen_through(spy.fn(), a_tilde);
  d(x, torch::ones({b}), {});
  auto seen = spy.input;
  EXPECT_TRUE(torch::equal(spy.channel, line_mask_channel(lines, nx)));

  // An image whose k-space lies on the lines Ã dropped changes nothing...
  auto dropped = (1 - lines.to(torch::kFloat)).reshape({b, ny, 1});
  auto hidden = mri::ifft2c(torch::randn({b, ny, nx}, gen, torch::kComplexFloat) * dropped);
  d(x + to_channels(hidden), torch::ones({b}), {});
  EXPECT_LT(max_abs(spy.input - seen) / max_abs(seen), 1e-5);
  // ...while one on the lines it kept does.
  auto shown = mri::ifft2c(torch::randn({b, ny, nx}, gen, torch::kComplexFloat) * (1 - dropped));
  d(x + to_channels(shown), torch::ones({b}), {});
  EXPECT_GT(max_abs(spy.input - seen) / max_abs(seen), 1e-2);

  // Training's entry point, from the measurement Ã x, gives the same input.
  denoise_measured(spy.fn(), a_tilde, a_tilde.op->forward(from_channels(x)), torch::ones({b}));
  EXPECT_LT(max_abs(spy.input - seen) / max_abs(seen), 1e-5);
  EXPECT_TRUE(torch::equal(spy.channel, line_mask_channel(lines, nx)));
}

TEST(SeenThrough, GradientFlowsThroughTheNormalOperator) {
  const int64_t b = 2, c = 3, ny = 16, nx = 12;
  auto gen = at::detail::createCPUGenerator(4);
  auto maps = torch::randn({b, c, ny, nx}, gen, torch::kComplexFloat);
  auto a_tilde = line_corruption(maps, random_lines(b, ny, 5));
  Spy spy;
  auto d = seen_through(spy.fn(), a_tilde);
  auto x = torch::randn({b, 2, ny, nx}, gen).requires_grad_(true);
  auto g = torch::randn({b, 2, ny, nx}, gen);
  (d(x, torch::ones({b}), {}) * g).sum().backward();
  // d/dx <g, Ã^H Ã x> = Ã^H Ã g (self-adjoint), in the real channel representation.
  auto expected = to_channels(a_tilde.op->normal(from_channels(g)));
  EXPECT_LT(max_abs(x.grad() - expected) / max_abs(expected), 1e-5);
}

TEST(SeenThrough, RefusesMasksOfTheWrongShape) {
  EXPECT_THROW(image_corruption(torch::ones({2, 12, 10})), ambient::Error);
  EXPECT_THROW(line_corruption(torch::ones({2, 3, 8, 8}, torch::kComplexFloat), torch::ones({2, 7})), ambient::Error);
  Spy spy;
  EXPECT_THROW(seen_through_views(spy.fn(), {}), ambient::Error);
  EXPECT_THROW(seen_through_views(spy.fn(), {torch::ones({2, 1, 8, 8}), torch::ones({2, 1, 8, 7})}), ambient::Error);
  EXPECT_THROW(seen_through_views(spy.fn(), {torch::ones({2, 8, 8})}), ambient::Error);
  EXPECT_THROW(seen_through_views(spy.fn(), {torch::Tensor(), torch::ones({2, 1, 8, 8})}), ambient::Error);
}

namespace {

// The exact E[x0 | Ã x_t, Ã] of a prior whose pixels are independent Gaussians N(mean, var): a pixel Ã shows is
// denoised by its own value, a hidden one is its prior mean.
DenoiserFn masked_gaussian_denoiser(const torch::Tensor& mean, const torch::Tensor& var) {
  auto full = gaussian_denoiser(mean, var);
  return [full, mean](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& m) {
    return m * full(x, sigma, {}) + (1 - m) * mean.unsqueeze(0);
  };
}

}  // namespace

TEST(SeenThroughViews, OneViewIsTheFixedMaskDenoiser) {
  auto gen = at::detail::createCPUGenerator(6);
  auto mask = (torch::rand({3, 1, 10, 8}, gen) > 0.6).to(torch::kFloat);
  // A nonlinear denoiser that uses its channel, so that any difference in input or channel shows.
  DenoiserFn d = [](const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& c) {
    return torch::tanh(x) * s.reshape({-1, 1, 1, 1}) + c;
  };
  auto x = torch::randn({3, 2, 10, 8}, gen), sigma = torch::rand({3}, gen) + 0.1;
  EXPECT_TRUE(torch::allclose(seen_through_views(d, {mask})(x, sigma, {}),
                              seen_through(d, image_corruption(mask))(x, sigma, {})));
}

TEST(SeenThroughViews, EachPixelIsPredictedByTheViewsThatShowIt) {
  // Three views of a 1 x 3 image: pixel 0 shown by views 0 and 1, pixel 1 by view 2 only, pixel 2 by none.
  auto mask = [](std::vector<float> v) { return torch::tensor(v).reshape({1, 1, 1, 3}); };
  std::vector<torch::Tensor> views = {mask({1, 0, 0}), mask({1, 0, 0}), mask({0, 1, 0})};
  int call = 0;
  DenoiserFn d = [&call](const torch::Tensor& x, const torch::Tensor&, const torch::Tensor&) {
    return torch::full_like(x, static_cast<float>(++call));  // view k predicts k everywhere
  };
  auto out = seen_through_views(d, views)(torch::zeros({1, 2, 1, 3}), torch::ones({1}), {});
  EXPECT_FLOAT_EQ(out[0][0][0][0].item<float>(), 1.5f);  // mean of views 1 and 2
  EXPECT_FLOAT_EQ(out[0][1][0][1].item<float>(), 3.0f);  // view 3 alone
  EXPECT_FLOAT_EQ(out[0][0][0][2].item<float>(), 2.0f);  // no view: the mean of all three
}

TEST(SeenThroughViews, CoveringViewsSampleThePriorWhereOneFixedMaskCollapsesTheHiddenPixels) {
  // Independent Gaussian pixels, so each view's exact denoiser is known (above). With views whose union covers
  // the image, the sampler's D̄ is the exact full denoiser and Heun draws the prior; with one fixed view, as in
  // Daras et al.'s sampler, every pixel that view hides ends at its conditional mean, with no spread.
  auto gen = at::detail::createCPUGenerator(7);
  auto mean = torch::randn({2, 2, 3}, gen);
  auto var = torch::rand({2, 2, 3}, gen) * 0.9 + 0.1;
  const int64_t n = 6000;
  auto m1 = (torch::rand({n, 1, 2, 3}, gen) < 0.3).to(torch::kFloat);
  auto m2 = (torch::rand({n, 1, 2, 3}, gen) < 0.3).to(torch::kFloat);
  auto m3 = 1 - torch::maximum(m1, m2);
  HeunConfig c;
  c.schedule.steps = 32;
  auto d = masked_gaussian_denoiser(mean, var);
  auto x = sample_heun(seen_through_views(d, {m1, m2, m3}), {n, 2, 2, 3}, c, gen);
  auto mean_err = ((x.mean(0) - mean).abs() / (var / n).sqrt()).max().item<double>();
  auto var_err = ((x.var(0) - var).abs() / (var * std::sqrt(2.0 / n))).max().item<double>();
  EXPECT_LT(mean_err, 4.5) << "covering views: sample mean off by " << mean_err << " standard errors";
  EXPECT_LT(var_err, 4.5) << "covering views: sample variance off by " << var_err << " standard errors";

  auto one = sample_heun(seen_through_views(d, {m1}), {n, 2, 2, 3}, c, gen);
  auto hidden = (m1 == 0).expand({n, 2, 2, 3});
  auto off_mean = (one - mean.unsqueeze(0)).abs().masked_select(hidden);
  EXPECT_LT(off_mean.max().item<double>(), 1e-3) << "one view: a hidden pixel should end at its prior mean";
  auto shown = (one - mean.unsqueeze(0)).masked_select(m1.expand({n, 2, 2, 3}) > 0);
  EXPECT_NEAR(shown.var().item<double>() / var.mean().item<double>(), 1.0, 0.2);  // shown pixels keep their spread
}
