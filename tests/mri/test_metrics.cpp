// NMSE, PSNR, SSIM with fastMRI's definitions, checked on cases with known answers and against a direct
// per-window SSIM written independently here.
#include <gtest/gtest.h>

#include <cmath>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/metrics.hpp"

using namespace ambient;

namespace {

// skimage.structural_similarity(gt, x, data_range, win_size=7) written as plain loops over interior windows.
double ssim_by_loops(const torch::Tensor& gt, const torch::Tensor& x, double range) {
  auto g = gt.to(torch::kDouble).contiguous(), p = x.to(torch::kDouble).contiguous();
  auto ga = g.accessor<double, 2>(), pa = p.accessor<double, 2>();
  const int64_t h = g.size(0), w = g.size(1), r = 3;
  const double c1 = std::pow(0.01 * range, 2), c2 = std::pow(0.03 * range, 2), n = 49;
  double total = 0;
  int64_t count = 0;
  for (int64_t i = r; i < h - r; ++i)
    for (int64_t j = r; j < w - r; ++j) {
      double sx = 0, sy = 0, sxx = 0, syy = 0, sxy = 0;
      for (int64_t a = -r; a <= r; ++a)
        for (int64_t b = -r; b <= r; ++b) {
          const double u = ga[i + a][j + b], v = pa[i + a][j + b];
          sx += u, sy += v, sxx += u * u, syy += v * v, sxy += u * v;
        }
      const double mx = sx / n, my = sy / n;
      const double vx = (sxx - n * mx * mx) / (n - 1), vy = (syy - n * my * my) / (n - 1);
      const double vxy = (sxy - n * mx * my) / (n - 1);
      total += ((2 * mx * my + c1) * (2 * vxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2));
      ++count;
    }
  return total / count;
}

}  // namespace

TEST(Metrics, IdenticalImagesArePerfect) {
  auto gt = torch::rand({2, 20, 24});
  EXPECT_DOUBLE_EQ(mri::nmse(gt, gt), 0.0);
  EXPECT_TRUE(std::isinf(mri::psnr(gt, gt)));
  EXPECT_NEAR(mri::ssim(gt, gt), 1.0, 1e-12);
}

TEST(Metrics, PsnrAndNmseOfAConstantOffset) {
  auto gt = torch::rand({3, 16, 16}, torch::kDouble) * 2;
  const double c = 0.1, peak = gt.max().item<double>();
  EXPECT_NEAR(mri::psnr(gt, gt + c), 10 * std::log10(peak * peak / (c * c)), 1e-9);
  EXPECT_NEAR(mri::nmse(gt, gt + c), c * c * gt.numel() / gt.square().sum().item<double>(), 1e-12);
}

TEST(Metrics, SsimMatchesDirectWindowComputationPerSliceMean) {
  auto gen = at::detail::createCPUGenerator(3);
  auto gt = torch::rand({2, 20, 17}, gen, torch::kDouble);
  auto x = gt + 0.2 * torch::randn({2, 20, 17}, gen, torch::kDouble);
  const double range = gt.max().item<double>();  // data range = volume max (fastMRI)
  const double expected = 0.5 * (ssim_by_loops(gt[0], x[0], range) + ssim_by_loops(gt[1], x[1], range));
  EXPECT_NEAR(mri::ssim(gt, x), expected, 1e-10);
  EXPECT_LT(mri::ssim(gt, x), 0.95);
}

TEST(Metrics, ComplexInputsUseMagnitude) {
  auto gt = torch::rand({8, 8});
  auto phase = torch::polar(gt, torch::rand({8, 8}) * 3);
  EXPECT_NEAR(mri::nmse(gt, phase), 0.0, 1e-12);
}

TEST(Metrics, RejectMismatchedShapes) {
  EXPECT_THROW(mri::psnr(torch::rand({4, 8, 8}), torch::rand({4, 8, 9})), ambient::Error);
  EXPECT_THROW(mri::nmse(torch::zeros({8, 8}), torch::rand({8, 8})), ambient::Error);
  EXPECT_THROW(mri::ssim(torch::rand({5, 5}), torch::rand({5, 5})), ambient::Error);
}

TEST(Memorisation, FindsTheCopiedTrainingImageAndScoresNoiseLow) {
  auto gen = at::detail::createCPUGenerator(9);
  auto training = torch::rand({10, 16, 16}, gen, torch::kDouble);
  auto samples = torch::stack({training[7] * 3 + 1, torch::rand({16, 16}, gen, torch::kDouble)});
  auto nn = mri::nearest_neighbours(samples, training);
  EXPECT_NEAR(nn.ncc[0].item<double>(), 1.0, 1e-9);  // a copy, up to brightness and offset
  EXPECT_EQ(nn.index[0].item<int64_t>(), 7);
  EXPECT_LT(nn.ncc[1].item<double>(), 0.5);          // independent noise
  EXPECT_THROW(mri::nearest_neighbours(samples, torch::rand({3, 8, 8})), ambient::Error);
}

TEST(Calibration, GaussianErrorsWithTheirTrueStdCoverAsAGaussianDoes) {
  auto gen = at::detail::createCPUGenerator(9);
  auto gt = torch::ones({2, 64, 64}, torch::kDouble);
  gt.narrow(2, 0, 8).zero_();  // background, left out of the object
  auto sd = 0.01 + 0.09 * torch::rand({2, 64, 64}, gen, torch::kDouble);  // varying uncertainty
  auto x = gt + sd * torch::randn({2, 64, 64}, gen, torch::kDouble);
  const auto c = mri::calibration(gt, x, sd);
  EXPECT_EQ(c.pixels, 2 * 64 * 56);
  // 7168 pixels: binomial standard errors below 0.006, 0.003, 0.0007.
  EXPECT_NEAR(c.within[0], 0.683, 0.025);
  EXPECT_NEAR(c.within[1], 0.954, 0.012);
  EXPECT_NEAR(c.within[2], 0.997, 0.003);
  EXPECT_NEAR(c.scale_for_95, 0.98, 0.04);
  EXPECT_GT(c.correlation, 0.4);  // |error| grows with std
  // The reliability bins follow the diagonal: RMS error equals the bin's std.
  ASSERT_EQ(c.reliability.sizes(), torch::IntArrayRef({10, 2}));
  for (int64_t b = 0; b < 10; ++b)
    EXPECT_NEAR(c.reliability[b][1].item<double>() / c.reliability[b][0].item<double>(), 1.0, 0.12) << "bin " << b;
  // A map twice too large covers too much, and says by how much.
  const auto wide = mri::calibration(gt, x, 2 * sd);
  EXPECT_GT(wide.within[1], 0.999);
  EXPECT_NEAR(wide.scale_for_95, 0.49, 0.02);
  EXPECT_THROW(mri::calibration(gt, x, -sd), ambient::Error);
  EXPECT_THROW(mri::calibration(gt, x, sd.narrow(0, 0, 1)), ambient::Error);
  EXPECT_THROW(mri::calibration(torch::zeros_like(gt), x, sd), ambient::Error);  // no object
}
