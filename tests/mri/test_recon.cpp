// CG and CG-SENSE: exact on well-posed problems, equal to a dense solve, independent per slice.
#include <gtest/gtest.h>

#include <torch/types.h>
#include <torch/linalg.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/prepare.hpp"
#include "ambient/mri/recon.hpp"
#include "ambient/mri/scan.hpp"
#include "ambient/mri/simulate.hpp"
#include "helpers.hpp"

using namespace ambient;

TEST(ConjugateGradient, SolvesAHermitianSystemLikeADenseSolver) {
  auto m = test::random_complex({12, 12}, 1).to(torch::kComplexDouble);
  auto h = m.matmul(m.conj().transpose(0, 1)) + 0.5 * torch::eye(12, torch::kComplexDouble);
  auto b = test::random_complex({2, 12}, 2).to(torch::kComplexDouble);
  mri::CgConfig cfg;
  cfg.iterations = 60;
  cfg.tolerance = 1e-12;
  auto x = mri::conjugate_gradient([&](const torch::Tensor& v) { return v.matmul(h.transpose(0, 1)); }, b, cfg);
  auto expected = torch::linalg::solve(h, b.transpose(0, 1), true).transpose(0, 1);
  EXPECT_LT(test::rel_max_error(x, expected), 1e-8);
}

TEST(ConjugateGradient, BatchItemsConvergeIndependently) {
  // Slice 0's system is the identity (one step), slice 1's is not: per-slice step sizes must not mix them.
  auto scale = torch::tensor({1.0, 3.0}, torch::kDouble).reshape({2, 1});
  auto b = test::random_complex({2, 16}, 3).to(torch::kComplexDouble);
  mri::CgConfig cfg;
  cfg.iterations = 5;
  auto x = mri::conjugate_gradient([&](const torch::Tensor& v) { return v * scale; }, b, cfg);
  EXPECT_LT(test::rel_max_error(x, b / scale), 1e-10);
}

TEST(ConjugateGradient, TikhonovShiftsTheSystem) {
  auto b = test::random_complex({1, 8}, 4).to(torch::kComplexDouble);
  mri::CgConfig cfg;
  cfg.lambda = 0.5;
  auto x = mri::conjugate_gradient([](const torch::Tensor& v) { return v; }, b, cfg);
  EXPECT_LT(test::rel_max_error(x, b / 1.5), 1e-10);
}

TEST(CgSense, RecoversTheImageFromFullySampledNoiselessData) {
  auto maps = mri::biot_savart_maps(4, 32, 0).unsqueeze(0);
  auto x = test::random_complex({1, 32, 32}, 5);
  auto a = mri::make_sense(maps, torch::ones({1, 1, 32, 1}));
  mri::CgConfig cfg;
  cfg.iterations = 200;
  cfg.tolerance = 1e-7;
  auto rec = mri::cg_sense(a, a->forward(x), cfg);
  // Where the coils see nothing (rss ~ 0) the image is not identifiable; compare where they do.
  auto seen = (maps.abs().square().sum(1) > 0.05);
  EXPECT_LT(((rec - x).abs() * seen).max().item<double>() / x.abs().max().item<double>(), 1e-3);
}

TEST(CgSense, UndersampledResidualDecreasesMonotonically) {
  auto maps = mri::biot_savart_maps(8, 48, 1).unsqueeze(0);
  auto mask = mri::random_mask_1d(48, 0.16, 3, 2).to(torch::kFloat).reshape({1, 1, 48, 1});
  auto a = mri::make_sense(maps, mask);
  auto y = a->forward(test::random_complex({1, 48, 48}, 6));
  std::vector<double> residuals;
  mri::CgConfig cfg;
  cfg.iterations = 15;
  cfg.lambda = 1e-3;
  mri::cg_sense(a, y, cfg, {}, [&](int, double r) {
    residuals.push_back(r);
    return true;
  });
  ASSERT_FALSE(residuals.empty());
  EXPECT_LT(residuals.back(), 0.05 * residuals.front());
}

TEST(CgSense, MonitorCanStopEarly) {
  auto a = mri::make_sense(mri::biot_savart_maps(2, 16, 0).unsqueeze(0), torch::ones({1, 1, 16, 1}));
  int calls = 0;
  mri::CgConfig cfg;
  cfg.iterations = 50;
  mri::cg_sense(a, a->forward(test::random_complex({1, 16, 16}, 7)), cfg, {}, [&](int, double) {
    return ++calls < 3;
  });
  EXPECT_EQ(calls, 3);
}

TEST(Prepare, ScalesEachSliceToItsPercentileAndNoiseWithIt) {
  // Two slices whose images differ by a factor of 10 in intensity give the same network-side data up to noise.
  auto maps = test::random_complex({1, 3, 16, 16}, 7);
  maps = maps / maps.abs().square().sum(1, true).sqrt();
  auto x = test::random_complex({1, 16, 16}, 8);
  auto mask = (torch::arange(16) % 2 == 0).to(torch::kFloat).reshape({1, 1, 16, 1});
  auto ksp = mri::make_sense(maps, mask)->forward(x);
  auto both_ksp = torch::cat({ksp, 10 * ksp});
  auto both_maps = torch::cat({maps, maps});
  auto both_mask = torch::cat({mask, mask});
  const auto p = mri::prepare(both_ksp, both_mask, both_maps, 0.5);
  ASSERT_EQ(p.scale.sizes(), (std::vector<int64_t>{2}));
  const auto zf = mri::make_sense(both_maps, both_mask)->adjoint(both_ksp * both_mask).abs();
  EXPECT_NEAR(p.scale[0].item<double>(), zf[0].flatten().quantile(0.99).item<double>(), 1e-6);
  EXPECT_NEAR(p.scale[1].item<double>() / p.scale[0].item<double>(), 10.0, 1e-4);
  EXPECT_TRUE(torch::allclose(p.y[0], p.y[1], 1e-5, 1e-6));
  EXPECT_TRUE(torch::allclose(p.y * p.scale.reshape({-1, 1, 1, 1}), both_ksp * both_mask, 1e-5, 1e-6));
  EXPECT_NEAR(p.noise_var[1].item<double>() * 100, p.noise_var[0].item<double>(), 1e-4 * p.noise_var[0].item<double>());
  EXPECT_NEAR(p.noise_var[0].item<double>(), 0.5 / std::pow(p.scale[0].item<double>(), 2), 1e-6);
  // An empty slice is scaled by the floor, not by 0.
  EXPECT_GT(mri::intensity_scale(torch::zeros({1, 8, 8})).item<double>(), 0.0);
  EXPECT_THROW(mri::prepare(both_ksp, both_mask, maps, 0.5), ambient::Error);
  EXPECT_THROW(mri::prepare(both_ksp, both_mask, both_maps, 0), ambient::Error);
}

TEST(Prepare, NoiseVarianceIsGivenOneWhenWhitenedOrEstimated) {
  mri::Scan scan;
  scan.ksp = torch::zeros({1, 2, 16, 40}, torch::kComplexFloat);
  scan.ksp.narrow(3, 0, 2).fill_(c10::complex<float>(3, 0));  // the outer 5% of kx: |3|² per sample
  scan.ksp.narrow(3, 38, 2).fill_(c10::complex<float>(3, 0));
  scan.mask = torch::ones({1, 16}, torch::kBool);
  scan.calib = scan.mask.clone();
  EXPECT_NEAR(mri::noise_variance(scan), 9.0, 1e-6);
  EXPECT_EQ(mri::noise_variance(scan, 2.5), 2.5);
  scan.prewhitened = true;
  EXPECT_EQ(mri::noise_variance(scan), 1.0);
}
