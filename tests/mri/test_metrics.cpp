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
  EXPECT_NEAR(nn.similarity[0].item<double>(), 1.0, 1e-9);  // a copy, up to brightness and offset
  EXPECT_EQ(nn.index[0].item<int64_t>(), 7);
  EXPECT_LT(nn.similarity[1].item<double>(), 0.5);          // independent noise
  EXPECT_THROW(mri::nearest_neighbours(samples, torch::rand({3, 8, 8})), ambient::Error);
}

TEST(FeatureDistances, FrechetMatchesTheClosedFormOfGaussians) {
  // Independent Gaussian features: the distance is ||μa − μb||² + Σ (σa − σb)².
  auto gen = at::detail::createCPUGenerator(4);
  const auto mu_a = torch::tensor({0.0, 1.0, -1.0}, torch::kDouble);
  const auto mu_b = torch::tensor({0.5, 1.0, 0.0}, torch::kDouble);
  const auto sd_a = torch::tensor({1.0, 2.0, 0.5}, torch::kDouble);
  const auto sd_b = torch::tensor({1.0, 1.0, 1.5}, torch::kDouble);
  auto a = torch::randn({40000, 3}, gen, torch::kDouble) * sd_a + mu_a;
  auto b = torch::randn({40000, 3}, gen, torch::kDouble) * sd_b + mu_b;
  const double expected = (mu_a - mu_b).square().sum().item<double>() + (sd_a - sd_b).square().sum().item<double>();
  EXPECT_NEAR(mri::frechet_distance(a, b), expected, 0.03 * expected);
  EXPECT_NEAR(mri::frechet_distance(a, a), 0.0, 1e-8);
  // Correlated features: the same covariances in a rotated basis (commuting, so the trace term is still
  // Σ (√λa − √λb)²); the means are not rotated.
  auto q = torch::tensor({{0.6, -0.8, 0.0}, {0.48, 0.36, -0.8}, {0.64, 0.48, 0.6}}, torch::kDouble);
  EXPECT_NEAR(mri::frechet_distance((a - mu_a).matmul(q.t()) + mu_a, (b - mu_b).matmul(q.t()) + mu_b), expected,
              0.03 * expected);
  EXPECT_THROW(mri::frechet_distance(a, torch::rand({5, 4})), ambient::Error);
  EXPECT_THROW(mri::frechet_distance(a, torch::rand({1, 3})), ambient::Error);
  auto nan = b.clone();
  nan[0][0] = std::nan("");
  EXPECT_THROW(mri::frechet_distance(a, nan), ambient::Error);
}

TEST(FeatureDistances, KernelDistanceIsNearZeroForOneDistributionAtSmallSizes) {
  // Unbiased: averaged over repeats of 32 against 48 features from one distribution it is ~0; a shifted
  // distribution scores clearly above the spread of those repeats.
  auto gen = at::detail::createCPUGenerator(5);
  torch::Tensor same = torch::zeros({200}, torch::kDouble), shifted = torch::zeros({200}, torch::kDouble);
  for (int64_t r = 0; r < 200; ++r) {
    auto b = torch::randn({48, 8}, gen, torch::kDouble);
    same[r] = mri::kernel_distance(torch::randn({32, 8}, gen, torch::kDouble), b);
    shifted[r] = mri::kernel_distance(torch::randn({32, 8}, gen, torch::kDouble) * 1.5 + 0.5, b);
  }
  EXPECT_LT(std::abs(same.mean().item<double>()), 3 * same.std().item<double>() / std::sqrt(200.0));
  EXPECT_GT(shifted.mean().item<double>(), same.mean().item<double>() + 5 * same.std().item<double>());
  EXPECT_THROW(mri::kernel_distance(torch::rand({1, 8}), torch::rand({4, 8})), ambient::Error);
}

TEST(FeatureDistances, NearestCosineMeasuresFromTheOrigin) {
  auto a = torch::tensor({{2.0, 0.0}, {1.0, 1.0}}, torch::kDouble);
  auto b = torch::tensor({{1.0, 0.1}, {0.0, 3.0}}, torch::kDouble);
  auto nn = mri::nearest_cosine(a, b);
  EXPECT_EQ(nn.index[0].item<int64_t>(), 0);
  EXPECT_NEAR(nn.similarity[1].item<double>(), std::max(1.1 / std::sqrt(2 * 1.01), 3 / std::sqrt(2 * 9.0)), 1e-12);
  // From origin (1, 0): a0 = (1, 0), a1 = (0, 1), b0 = (0, 0.1), b1 = (−1, 3).
  auto from = mri::nearest_cosine(a, b, torch::tensor({1.0, 0.0}, torch::kDouble));
  EXPECT_EQ(from.index[1].item<int64_t>(), 0);
  EXPECT_NEAR(from.similarity[1].item<double>(), 1.0, 1e-12);
  EXPECT_THROW(mri::nearest_cosine(a, b, torch::zeros({3})), ambient::Error);
  // Leaving each row out: b's first rows are a; row i may not match b's rows i, i + 2, ...
  auto both = torch::cat({a, a * 3});
  auto out = mri::nearest_cosine(a, both, {}, 2);
  EXPECT_EQ(out.index[0].item<int64_t>() % 2, 1);
  EXPECT_EQ(out.index[1].item<int64_t>() % 2, 0);
  EXPECT_NEAR(out.similarity[0].item<double>(), 1 / std::sqrt(2.0), 1e-12);
  EXPECT_THROW(mri::nearest_cosine(a, b, {}, 3), ambient::Error);
  auto d = mri::nearest_euclidean(a, both, 2);  // a0 = (2, 0): nearest other row (1, 1), at √2
  EXPECT_EQ(d.index[0].item<int64_t>(), 1);
  EXPECT_NEAR(d.distance[0].item<double>(), std::sqrt(2.0), 1e-12);
  EXPECT_NEAR(mri::nearest_euclidean(a, b).distance[0].item<double>(), std::sqrt(1.01), 1e-12);
  EXPECT_THROW(mri::nearest_euclidean(a, b, 3), ambient::Error);
}

TEST(FeatureDistances, ManifoldMeasuresOfASmallCaseByHand) {
  // k = 1. Real 0, 1, 3 (ball radii 1, 1, 2); generated 0.5, 5, 10 (radii 4.5, 4.5, 5).
  auto real = torch::tensor({{0.0}, {1.0}, {3.0}}, torch::kDouble);
  auto gen = torch::tensor({{0.5}, {5.0}, {10.0}}, torch::kDouble);
  const auto m = mri::manifold_measures(real, gen, 1);
  EXPECT_NEAR(m.precision, 2.0 / 3, 1e-12);  // 0.5 (in 0's and 1's balls), 5 (on 3's ball's edge); not 10
  EXPECT_NEAR(m.recall, 1.0, 1e-12);         // every real point lies within 4.5 of 0.5
  EXPECT_NEAR(m.density, 1.0, 1e-12);        // (2 + 1 + 0) balls / (3 samples × k)
  EXPECT_NEAR(m.coverage, 1.0, 1e-12);       // 0's and 1's balls hold 0.5, 3's holds 5
  EXPECT_THROW(mri::manifold_measures(real, gen, 3), ambient::Error);   // k must be below both sizes
  EXPECT_THROW(mri::manifold_measures(real, gen, 0), ambient::Error);
  EXPECT_THROW(mri::manifold_measures(real, torch::zeros({3, 2}), 1), ambient::Error);
}

TEST(FeatureDistances, ManifoldMeasuresOfOneDistributionMatchTheirExpectations) {
  // Generated and real rows from one distribution: density's expectation is 1 and coverage's is
  // 1 − C(M − 1, k) / C(M − 1 + N, k) (Naeem et al. 2020), at any dimension; averaged over repeats.
  auto gen = at::detail::createCPUGenerator(11);
  const int64_t m = 120, n = 80, k = 3, repeats = 40;
  torch::Tensor density = torch::zeros({repeats}, torch::kDouble), coverage = torch::zeros({repeats}, torch::kDouble);
  double precision = 0, recall = 0;
  for (int64_t r = 0; r < repeats; ++r) {
    const auto f = mri::manifold_measures(torch::randn({m, 5}, gen, torch::kDouble),
                                          torch::randn({n, 5}, gen, torch::kDouble), k);
    density[r] = f.density;
    coverage[r] = f.coverage;
    precision += f.precision / repeats;
    recall += f.recall / repeats;
  }
  double uncovered = 1;
  for (int64_t i = 0; i < k; ++i) uncovered *= static_cast<double>(m - 1 - i) / static_cast<double>(m - 1 + n - i);
  const double se = std::sqrt(static_cast<double>(repeats));
  EXPECT_NEAR(density.mean().item<double>(), 1.0, 4 * density.std().item<double>() / se);
  EXPECT_NEAR(coverage.mean().item<double>(), 1 - uncovered, 4 * coverage.std().item<double>() / se);
  EXPECT_GT(precision, 0.7);
  EXPECT_GT(recall, 0.7);
  // Samples from one of two real modes: real-looking (precision) but half the variety (recall, coverage); samples
  // off the real manifold: none of it, though each is as typical of its own set.
  auto modes = torch::randn({m, 5}, gen, torch::kDouble);
  modes.narrow(0, 0, m / 2).add_(20);
  const auto one_mode = mri::manifold_measures(modes, torch::randn({n, 5}, gen, torch::kDouble) + 20, k);
  EXPECT_GT(one_mode.precision, 0.7);
  EXPECT_LT(one_mode.recall, 0.55);
  EXPECT_LT(one_mode.coverage, 0.55);
  const auto off = mri::manifold_measures(modes, torch::randn({n, 5}, gen, torch::kDouble) + 10, k);
  EXPECT_EQ(off.precision, 0);
  EXPECT_EQ(off.coverage, 0);
  EXPECT_EQ(off.density, 0);
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

TEST(RegionErrors, SplitTheErrorBetweenObjectAndBackgroundByHand) {
  // A 2 x 4 x 4 volume, maximum 2: the object is the 2 x 4 x 2 right half (reference 1 or 2), the background the
  // left half (reference 0, under 0.1 of the maximum).
  auto gt = torch::zeros({2, 4, 4}, torch::kDouble);
  gt.narrow(2, 2, 2).fill_(1.0);
  gt[0][0][3] = 2.0;
  auto x = gt.clone();
  x.narrow(2, 2, 2) += 0.1;   // object error 0.1 on 16 pixels: squared sum 0.16
  x.narrow(2, 0, 2) += 0.05;  // background error 0.05 on 16 pixels: squared sum 0.04
  const auto r = mri::region_errors(gt, x);
  EXPECT_EQ(r.object_pixels, 16);
  EXPECT_EQ(r.background_pixels, 16);
  EXPECT_NEAR(r.background_share, 0.04 / 0.20, 1e-12);
  EXPECT_NEAR(r.object_psnr, 10 * std::log10(4.0 / 0.01), 1e-9);  // range² / object MSE
  EXPECT_NEAR(r.object_nmse, 0.16 / (15 * 1.0 + 4.0), 1e-12);
  EXPECT_NEAR(r.background_rms, 0.05 / 2.0, 1e-12);
  // The volume's PSNR lies between: its MSE mixes both regions.
  EXPECT_NEAR(mri::psnr(gt, x), 10 * std::log10(4.0 / (0.20 / 32)), 1e-9);
  // A perfect background: all the error is the object's; a higher threshold moves the 1s out of the object.
  auto y = gt.clone();
  y.narrow(2, 2, 2) += 0.1;
  EXPECT_EQ(mri::region_errors(gt, y).background_share, 0.0);
  EXPECT_EQ(mri::region_errors(gt, y, 0.6).object_pixels, 1);
  EXPECT_THROW(mri::region_errors(torch::zeros_like(gt), x), ambient::Error);
  EXPECT_THROW(mri::region_errors(gt, x, 1.0), ambient::Error);
  EXPECT_THROW(mri::region_errors(gt, x.narrow(0, 0, 1)), ambient::Error);
}
