// Sampling patterns: fastMRI semantics (against numpy.random.RandomState draws), Poisson disc, blocks, and the
// further subsampling the ambient objective relies on.
#include <gtest/gtest.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/masks.hpp"

using namespace ambient;

namespace {

std::vector<int64_t> indices(const torch::Tensor& m) {
  auto nz = torch::nonzero(m).flatten();
  return std::vector<int64_t>(nz.data_ptr<int64_t>(), nz.data_ptr<int64_t>() + nz.numel());
}

}  // namespace

// Expected indices were produced by numpy 1.24 (Debian's python3-numpy) with RandomState(seed), following
// fastMRI's subsample.py step by step (randint(1) for the single (cf, R) choice, then the mask's own draws).
TEST(Masks, RandomMaskMatchesFastmriWithNumpySeed) {
  const std::vector<int64_t> expected = {4,  5,  6,  10, 14, 15, 21, 29, 31, 32, 37, 40, 42, 49, 56, 58, 59, 60, 61,
                                         62, 63, 64, 65, 66, 67, 68, 72, 77, 79, 83, 90, 98, 99, 100, 109, 111, 123};
  EXPECT_EQ(indices(mri::random_mask_1d(128, 0.08, 4, 42)), expected);
}

TEST(Masks, EquispacedMaskMatchesFastmriWithNumpySeed) {
  const std::vector<int64_t> expected = {3,  7,  11, 15, 19, 23, 27, 31, 35, 39, 43, 45, 46, 47, 48, 49, 50,
                                         51, 52, 53, 54, 55, 59, 63, 67, 71, 75, 79, 83, 87, 91, 95, 99};
  EXPECT_EQ(indices(mri::equispaced_mask_1d(100, 0.1, 4, 7)), expected);
}

TEST(Masks, EquispacedFractionMaskMatchesFastmriWithNumpySeed) {
  const std::vector<int64_t> expected = {2,  8,  13, 18, 24, 30, 35, 40, 44, 45, 46, 47,
                                         48, 49, 50, 51, 52, 57, 62, 68, 74, 79, 84, 90};
  EXPECT_EQ(indices(mri::equispaced_fraction_mask_1d(96, 0.08, 4, 3)), expected);
}

TEST(Masks, CentreIsFullySampledWithFastmriRounding) {
  // round-half-even: 128 * 0.08 = 10.24 -> 10; 50 * 0.09 = 4.5 -> 4 (Python's round, not 5)
  EXPECT_EQ(mri::num_low_frequencies(128, 0.08), 10);
  EXPECT_EQ(mri::num_low_frequencies(50, 0.09), 4);
  auto m = mri::random_mask_1d(128, 0.08, 8, 5);
  const int64_t pad = (128 - 10 + 1) / 2;
  EXPECT_TRUE(m.slice(0, pad, pad + 10).all().item<bool>());
}

TEST(Masks, RandomMaskReachesTheAccelerationOnAverage) {
  double sampled = 0;
  for (uint32_t seed = 0; seed < 200; ++seed) sampled += mri::random_mask_1d(256, 0.08, 4, seed).sum().item<double>();
  EXPECT_NEAR(256.0 * 200 / sampled, 4.0, 0.1);
  EXPECT_FALSE(mri::random_mask_1d(256, 0.08, 4, 1).equal(mri::random_mask_1d(256, 0.08, 4, 2)));
  EXPECT_TRUE(mri::random_mask_1d(256, 0.08, 4, 1).equal(mri::random_mask_1d(256, 0.08, 4, 1)));
}

TEST(Masks, FurtherLineMaskKeepsACentreThatFitsItsAcceleration) {
  // R = 2: 8% of 128 lines -> 10 central lines; R = 8 keeps 16 lines, so the centre shrinks to half: 8.
  for (const auto& [accel, centre] : {std::pair<double, int64_t>{2, 10}, {8, 8}}) {
    double sampled = 0;
    for (uint32_t seed = 0; seed < 200; ++seed) {
      auto m = mri::further_line_mask(128, accel, seed);
      const int64_t pad = (128 - centre + 1) / 2;
      ASSERT_TRUE(m.slice(0, pad, pad + centre).all().item<bool>()) << "R = " << accel << " seed " << seed;
      sampled += m.sum().item<double>();
    }
    EXPECT_NEAR(128.0 * 200 / sampled, accel, 0.05 * accel) << "R = " << accel;
  }
}

TEST(Masks, EquispacedFractionSamplesOneOverR) {
  EXPECT_NEAR(mri::acceleration_of(mri::equispaced_fraction_mask_1d(320, 0.08, 4, 0)), 4.0, 0.15);
  EXPECT_NEAR(mri::acceleration_of(mri::equispaced_fraction_mask_1d(320, 0.04, 8, 0)), 8.0, 0.4);
}

TEST(Masks, RejectImpossibleOptions) {
  EXPECT_THROW(mri::random_mask_1d(128, 0.5, 4, 0), ambient::Error);  // centre alone exceeds 1/R
  EXPECT_THROW(mri::random_mask_1d(128, 0.08, 0.5, 0), ambient::Error);
  EXPECT_THROW(mri::random_mask_1d(0, 0.08, 4, 0), ambient::Error);
}

TEST(Masks, PoissonDiscReachesTargetWithCalibrationAndVariableDensity) {
  mri::PoissonDiscConfig c;
  c.acceleration = 6;
  c.calib = 12;
  auto m = mri::poisson_disc_2d(96, 80, c, 3);
  EXPECT_NEAR(mri::acceleration_of(m), 6.0, 0.6);
  EXPECT_TRUE(m.slice(0, 48 - 6, 48 + 6).slice(1, 40 - 6, 40 + 6).all().item<bool>());
  // Variable density: the central third is sampled more densely than the outer ring.
  auto centre = m.slice(0, 32, 64).slice(1, 27, 53).to(torch::kFloat).mean().item<double>();
  auto corner = m.slice(0, 0, 20).slice(1, 0, 20).to(torch::kFloat).mean().item<double>();
  EXPECT_GT(centre, 1.5 * corner);
  EXPECT_TRUE(m.equal(mri::poisson_disc_2d(96, 80, c, 3)));
}

TEST(Masks, PoissonDiscKeepsPointsApart) {
  mri::PoissonDiscConfig c;
  c.acceleration = 8;
  c.calib = 0;
  c.density_power = 0;  // uniform radius: no two points closer than 1 pixel (neighbours only diagonal or farther)
  auto m = mri::poisson_disc_2d(40, 40, c, 1);
  auto a = m.accessor<bool, 2>();
  int adjacent = 0;
  for (int y = 0; y < 39; ++y)
    for (int x = 0; x < 39; ++x) adjacent += (a[y][x] && a[y][x + 1]) + (a[y][x] && a[y + 1][x]);
  EXPECT_EQ(adjacent, 0);
}

TEST(Masks, BlocksEraseBoxesOfTheRequestedSizes) {
  for (uint32_t seed = 0; seed < 20; ++seed) {  // one box: a rectangle of at most 10 x 10, clipped by the edge
    auto e = ~mri::random_blocks(64, 64, 1, 10, 10, seed);
    const auto rows = e.any(1).sum().item<int64_t>(), cols = e.any(0).sum().item<int64_t>();
    EXPECT_LE(rows, 10);
    EXPECT_LE(cols, 10);
    EXPECT_EQ(e.sum().item<int64_t>(), rows * cols);
  }
  auto many = mri::random_blocks(64, 64, 5, 4, 12, 2);
  const auto erased = (~many).sum().item<int64_t>();
  EXPECT_GE(erased, 16);
  EXPECT_LE(erased, 5 * 144);
  EXPECT_TRUE(many.equal(mri::random_blocks(64, 64, 5, 4, 12, 2)));
  EXPECT_THROW(mri::random_blocks(64, 64, 1, 10, 80, 0), ambient::Error);
}

TEST(Masks, BlocksEraseEveryPixelEquallyOften) {
  // The ambient objective can only learn E[x0 | ...] where A observes with some probability: a box mask that
  // always hides the centre (where the anatomy is) teaches nothing there. 2000 masks of 12 boxes of 4-12 at 48 x 48.
  auto freq = torch::zeros({48, 48});
  for (uint32_t seed = 0; seed < 2000; ++seed) freq += (~mri::random_blocks(48, 48, 12, 4, 12, seed)).to(torch::kFloat);
  freq /= 2000;
  // Each box covers a pixel with probability E[h / (n + h - 1)]² (sides uniform in 4..12).
  double p = 0;
  for (int h = 4; h <= 12; ++h) p += h / (48.0 + h - 1) / 9;
  const double expected = 1 - std::pow(1 - p * p, 12);
  EXPECT_NEAR(freq.mean().item<double>(), expected, 0.01);
  EXPECT_NEAR(freq.slice(0, 20, 28).slice(1, 20, 28).mean().item<double>(), expected, 0.03);  // centre
  EXPECT_NEAR(freq.slice(0, 0, 4).slice(1, 0, 4).mean().item<double>(), expected, 0.03);      // corner
}

TEST(Masks, RandomPixelsEraseTheRequestedFraction) {
  auto m = mri::random_pixels(100, 100, 0.9, 4);
  EXPECT_NEAR(m.to(torch::kFloat).mean().item<double>(), 0.1, 0.01);
}

TEST(Masks, FurtherSubsampleIsASubsetThatKeepsCalibration) {
  auto m = mri::random_mask_1d(256, 0.08, 4, 11);
  auto calib = mri::central_run(m);
  EXPECT_EQ(calib.sum().item<int64_t>(), mri::num_low_frequencies(256, 0.08));
  std::mt19937_64 rng(1);
  double dropped = 0, outside = (m & ~calib).sum().item<double>() * 100;
  for (int i = 0; i < 100; ++i) {
    auto sub = mri::further_subsample(m, calib, 0.2, rng);
    ASSERT_TRUE((sub & ~m).sum().item<int64_t>() == 0) << "Ã must be a subset of A";
    ASSERT_TRUE((calib & ~sub).sum().item<int64_t>() == 0) << "calibration lines must stay";
    dropped += (m & ~sub).sum().item<double>();
  }
  EXPECT_NEAR(dropped / outside, 0.2, 0.03);
}

TEST(Masks, FurtherSubsampleNeverDropsEveryHighFrequencyLine) {
  auto m = torch::zeros({32}, torch::kBool);
  m.slice(0, 14, 18).fill_(true);
  m[3] = true;
  auto calib = mri::central_run(m);
  std::mt19937_64 rng(2);
  for (int i = 0; i < 20; ++i) EXPECT_TRUE(mri::further_subsample(m, calib, 0.99, rng)[3].item<bool>());
}

TEST(Masks, CentralRunFindsTheAcsBlock) {
  auto m = torch::zeros({20}, torch::kBool);
  m.slice(0, 8, 13).fill_(true);
  m[2] = true;
  m[17] = true;
  EXPECT_EQ(indices(mri::central_run(m)), (std::vector<int64_t>{8, 9, 10, 11, 12}));
}

TEST(Masks, FurtherDropFractionGivesTheRequestedAcceleration) {
  auto m = mri::random_mask_1d(256, 0.08, 4, 11);
  auto calib = mri::central_run(m);
  const double sampled = m.sum().item<double>(), c = calib.sum().item<double>();
  const double delta = mri::further_drop_fraction(m, calib, 5.0);
  // Dropping δ of the non-calibration lines leaves 256 / 5 lines on average.
  EXPECT_NEAR(sampled - delta * (sampled - c), 256.0 / 5.0, 1e-9);
  std::mt19937_64 rng(3);
  double kept = 0;
  for (int i = 0; i < 200; ++i) kept += mri::further_subsample(m, calib, delta, rng).sum().item<double>();
  EXPECT_NEAR(256.0 / (kept / 200), 5.0, 0.15);
  EXPECT_DOUBLE_EQ(mri::further_drop_fraction(m, calib, 1000.0), 0.95);  // never every line
  EXPECT_THROW(mri::further_drop_fraction(m, calib, 256.0 / sampled), ambient::Error);  // not beyond A's own R
}
