// ESPIRiT maps against known sensitivities: simulated Biot-Savart maps here, the ISMRMRD phantom's csm and
// BART's ecalib in the integration suites.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>
#include <torch/linalg.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/simulate.hpp"
#include "espirit_check.hpp"
#include "helpers.hpp"

using namespace ambient;

namespace {

// A smooth elliptical object with a smooth phase: [n, n] complex.
torch::Tensor phantom(int64_t n) {
  auto r = torch::linspace(-1, 1, n, torch::kDouble);
  auto yy = r.view({n, 1}).expand({n, n}), xx = r.view({1, n}).expand({n, n});
  auto inside = (xx.square() / 0.7 + yy.square() / 0.5) < 0.8;
  auto mag = inside.to(torch::kDouble) * (1.0 + 0.3 * torch::cos(4 * xx) * torch::sin(3 * yy));
  return torch::polar(mag, 0.8 * xx + 0.5 * yy * yy).to(torch::kComplexFloat);
}

}  // namespace

TEST(Espirit, RecoversSimulatedCoilMapsInsideTheObject) {
  const int64_t n = 64, c = 8;
  auto maps = mri::biot_savart_maps(c, n, 3);
  auto img = phantom(n);
  auto ksp = mri::fft2c(maps * img.unsqueeze(0));
  auto calib = torch::zeros({n}, torch::kBool);
  calib.slice(0, n / 2 - 12, n / 2 + 12).fill_(true);
  auto est = mri::espirit_maps(ksp, calib);
  auto object = img.abs() > 0.05;
  const auto agreement = test::compare_maps(est, maps, object);
  EXPECT_GT(agreement.mean_abs_correlation, 0.995);
  EXPECT_LT(agreement.rel_error_phase_normalised, 0.05);  // conjugated or flipped maps give O(1)
  // Coverage: maps are non-zero inside the object, and of unit norm over coils there.
  auto norm = mri::rss(est, 0);
  EXPECT_GT(norm.masked_select(object).min().item<double>(), 0.99);
}

TEST(Espirit, SenseCombinationRecoversTheObjectUpToCoilNorm) {
  const int64_t n = 48, c = 6;
  auto maps = mri::biot_savart_maps(c, n, 4);
  auto img = phantom(n);
  auto ksp = mri::fft2c(maps * img.unsqueeze(0));
  auto calib = torch::zeros({n}, torch::kBool);
  calib.slice(0, n / 2 - 10, n / 2 + 10).fill_(true);
  auto est = mri::espirit_maps(ksp, calib);
  auto a = mri::make_sense(est.unsqueeze(0), torch::ones({1, 1, n, 1}));
  auto combined = a->adjoint(ksp.unsqueeze(0))[0];
  // |S_est^H S m| = ||S|| |m| inside the object.
  auto expected = mri::rss(maps, 0) * img.abs();
  auto object = img.abs() > 0.05;
  auto err = (combined.abs() - expected).masked_select(object).abs().max().item<double>();
  EXPECT_LT(err / expected.max().item<double>(), 0.02);
}

TEST(Espirit, ZeroOutsideTheObjectWithCrop) {
  const int64_t n = 48;
  auto maps = mri::biot_savart_maps(4, n, 1);
  auto img = phantom(n);
  auto ksp = mri::fft2c(maps * img.unsqueeze(0));
  auto calib = torch::zeros({n}, torch::kBool);
  calib.slice(0, n / 2 - 10, n / 2 + 10).fill_(true);
  auto est = mri::espirit_maps(ksp, calib);
  // Far outside the object (the image corners) there is no signal, so the eigenvalue is small and the map cropped.
  EXPECT_LT(mri::rss(est, 0)[0][0].item<double>(), 1e-6);
  EXPECT_LT(mri::rss(est, 0)[n - 1][n - 1].item<double>(), 1e-6);
}

TEST(Espirit, RejectsTooFewCalibrationLines) {
  auto ksp = test::random_complex({4, 32, 32}, 1);
  auto calib = torch::zeros({32}, torch::kBool);
  calib.slice(0, 14, 18).fill_(true);
  EXPECT_THROW(mri::espirit_maps(ksp, calib), ambient::Error);
}

TEST(Espirit, FullySampledScanCalibratesOnItsCentralLines) {
  // Every line may calibrate a fully sampled scan; ESPIRiT then uses the calib_size lines nearest the centre,
  // exactly as if only those had been acquired (before, the whole of k-space entered the calibration matrix and a
  // slice took minutes).
  auto ksp = mri::fft2c(phantom(64).unsqueeze(0) * test::random_complex({4, 1, 1}, 2));
  mri::EspiritConfig cfg;
  cfg.calib_size = 16;
  auto all = torch::ones({64}, torch::kBool), centre = torch::zeros({64}, torch::kBool);
  centre.slice(0, 24, 40).fill_(true);
  EXPECT_TRUE(torch::equal(mri::espirit_maps(ksp, all, cfg), mri::espirit_maps(ksp, centre, cfg)));
}

TEST(Espirit, TopEigenpairsMatchEigh) {
  // Random Hermitian PSD matrices with ESPIRiT-like spectra (one eigenvalue near 1, the rest well below).
  auto gen = at::detail::createCPUGenerator(7);
  const int64_t p = 500, c = 8;
  auto q = std::get<0>(torch::linalg::qr(torch::randn({p, c, c}, gen, torch::kComplexDouble)));
  auto lam = torch::rand({p, c}, gen, torch::kDouble) * 0.6;
  lam.select(1, 0).fill_(1.0);
  auto w = q.matmul(torch::diag_embed(lam.to(torch::kComplexDouble))).matmul(q.conj().transpose(1, 2));
  auto [v, l] = mri::detail::top_eigenpairs(w.to(torch::kComplexFloat));
  auto reference = q.select(2, 0);  // eigenvector of eigenvalue 1
  auto overlap = (reference.conj() * v.to(torch::kComplexDouble)).sum(1).abs();
  EXPECT_GT(overlap.min().item<double>(), 0.9999);
  EXPECT_LT((l.to(torch::kDouble) - 1.0).abs().max().item<double>(), 1e-4);
  // And the same as LAPACK's eigh on these matrices.
  auto eig = torch::linalg::eigh(w, "L");
  EXPECT_LT((std::get<0>(eig).select(1, c - 1) - l.to(torch::kDouble)).abs().max().item<double>(), 1e-4);
}
