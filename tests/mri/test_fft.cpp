// The centred unitary FFT: unitary, equal to the torch::fft path, centred as documented, and thread-safe.
#include <gtest/gtest.h>

#include <thread>

#include <torch/cuda.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"
#include "helpers.hpp"

using namespace ambient;

TEST(Fft, MatchesTorchPathForEvenAndOddSizes) {
  for (auto shape : std::vector<std::vector<int64_t>>{{3, 2, 16, 12}, {1, 7, 9}, {5, 33, 64}, {4, 4}}) {
    auto x = test::random_complex(shape, 1);
    EXPECT_LT(test::rel_max_error(mri::fft2c(x), mri::fft2c_torch(x)), 1e-5) << "shape " << shape.size();
    EXPECT_LT(test::rel_max_error(mri::ifft2c(x), mri::ifft2c_torch(x)), 1e-5);
  }
}

TEST(Fft, IsUnitaryAndInvertible) {
  auto x = test::random_complex({4, 8, 32, 24}, 2);
  auto k = mri::fft2c(x);
  // Parseval: ||F x|| = ||x||; float32 sums over 24k samples keep ~1e-6 relative accuracy.
  EXPECT_NEAR(k.abs().square().sum().item<double>() / x.abs().square().sum().item<double>(), 1.0, 1e-5);
  EXPECT_LT(test::rel_max_error(mri::ifft2c(k), x), 1e-5);
}

TEST(Fft, CentredImpulseGivesFlatSpectrumWithZeroPhase) {
  // A point at the image centre (ny/2, nx/2) has a constant, real spectrum 1/sqrt(N): the "centred" convention.
  auto x = torch::zeros({8, 6}, torch::kComplexFloat);
  x[4][3] = 1;
  auto k = mri::fft2c(x);
  auto expected = torch::full({8, 6}, 1.0 / std::sqrt(48.0), torch::kComplexFloat);
  EXPECT_LT(test::rel_max_error(k, expected), 1e-6);
}

TEST(Fft, DcSampleSitsAtTheCentreOfKspace) {
  auto x = torch::ones({16, 10}, torch::kComplexFloat);
  auto k = mri::fft2c(x);
  EXPECT_NEAR(torch::real(k[8][5]).item<double>(), std::sqrt(160.0), 1e-4);
  EXPECT_NEAR(k.abs().sum().item<double>(), std::sqrt(160.0), 1e-4);
}

TEST(Fft, ConcurrentCallsOnNewShapesAgree) {
  // Planning is serialised by a mutex; many threads asking for new plans at once must not corrupt each other.
  std::vector<std::thread> threads;
  std::vector<double> errors(8, 1.0);
  for (int t = 0; t < 8; ++t)
    threads.emplace_back([t, &errors] {
      auto x = test::random_complex({2, 20 + t, 18 + t}, 10 + t);
      errors[t] = test::rel_max_error(mri::fft2c(x), mri::fft2c_torch(x));
    });
  for (auto& th : threads) th.join();
  for (double e : errors) EXPECT_LT(e, 1e-5);
}

TEST(Fft, RejectsWrongDtype) {
  EXPECT_THROW(mri::fft2c(torch::zeros({4, 4})), ambient::Error);
}

TEST(Fft, OneDimensionalTransformsAreUnitaryInverses) {
  auto x = test::random_complex({3, 10, 12}, 5);
  EXPECT_LT(test::rel_max_error(mri::ifft1c(mri::fft1c(x, -1), -1), x), 1e-5);
  EXPECT_NEAR(mri::fft1c(x, 1).abs().square().sum().item<double>() / x.abs().square().sum().item<double>(), 1, 1e-5);
}

// On a CUDA build (the GPU machine's LibTorch), fft2c dispatches CUDA tensors to torch::fft (cuFFT); it must equal
// the FFTW result for the same data. Debian's LibTorch is CPU-only, so this skips there (label "gpu").
TEST(FftGpu, CudaPathEqualsFftw) {
  if (!torch::cuda::is_available()) GTEST_SKIP() << "no CUDA device in this build";
  auto x = test::random_complex({2, 8, 64, 48}, 9);
  auto gpu = mri::fft2c(x.to(torch::kCUDA)).cpu();
  EXPECT_LT(test::rel_max_error(gpu, mri::fft2c(x)), 1e-5);
  EXPECT_LT(test::rel_max_error(mri::ifft2c(x.to(torch::kCUDA)).cpu(), mri::ifft2c(x)), 1e-5);
}
