// The network's view through a fixed Ã: it gets Ã^H Ã x and Ã's channel, it cannot tell apart images that Ã maps to
// the same measurement, the training entry point (from a measurement) agrees with the sampling one (from x), and
// gradients flow through Ã^H Ã.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
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
}
