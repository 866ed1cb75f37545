// Every linear operator: adjointness <A x, y> = <x, A^H y>, normal = A^H A, shape checks, and autograd = adjoint.
#include <gtest/gtest.h>

#include <torch/torch.h>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/masks.hpp"
#include "helpers.hpp"

using namespace ambient;
using mri::OperatorPtr;

namespace {

// Tolerance: both sides are float32 sums of ~1e5 products accumulated in double after float32 products and FFTs
// (relative error per FFT ~ log2(N) eps ≈ 1e-6). Measured against ||A x|| ||y||, 1e-5 leaves a 10x margin over
// the observed ~1e-6 while a wrong adjoint (conjugate, flip, missing scale) gives O(1).
constexpr double kAdjointTol = 1e-5;

void expect_adjoint(const OperatorPtr& a, uint64_t seed) {
  auto x = test::random_complex(a->domain_shape(), seed);
  auto y = test::random_complex(a->range_shape(), seed + 1);
  auto ax = a->forward(x);
  auto ahy = a->adjoint(y);
  const double lhs = mri::inner_product_real(ax, y);
  const double rhs = mri::inner_product_real(x, ahy);
  // The imaginary parts must agree too: check with i*y.
  const double lhs_i = mri::inner_product_real(ax, y * c10::complex<float>(0, 1));
  const double rhs_i = mri::inner_product_real(x, a->adjoint(y * c10::complex<float>(0, 1)));
  const double scale = ax.norm().item<double>() * y.norm().item<double>();
  EXPECT_LT(std::abs(lhs - rhs) / scale, kAdjointTol) << a->name();
  EXPECT_LT(std::abs(lhs_i - rhs_i) / scale, kAdjointTol) << a->name();
}

void expect_normal(const OperatorPtr& a, uint64_t seed) {
  auto x = test::random_complex(a->domain_shape(), seed);
  EXPECT_LT(test::rel_max_error(a->normal(x), a->adjoint(a->forward(x))), 1e-5) << a->name();
}

torch::Tensor random_maps(int64_t s, int64_t c, int64_t ny, int64_t nx, uint64_t seed) {
  return test::random_complex({s, c, ny, nx}, seed);
}

}  // namespace

TEST(Operators, KspaceMaskIsSelfAdjoint) {
  auto mask = mri::random_mask_1d(32, 0.08, 4, 3).to(torch::kFloat).reshape({1, 1, 32, 1});
  auto a = mri::make_mask(mask, {2, 4, 32, 20});
  expect_adjoint(a, 1);
  expect_normal(a, 2);
}

TEST(Operators, ImageBlockMaskIsSelfAdjoint) {
  auto a = mri::make_mask(mri::random_blocks(24, 20, 3, 3, 8, 7), {3, 24, 20}, "block mask");
  expect_adjoint(a, 3);
  expect_normal(a, 4);
}

TEST(Operators, FourierIsAdjointAndUnitary) {
  auto a = mri::make_fourier({2, 3, 18, 16});
  expect_adjoint(a, 5);
  auto x = test::random_complex(a->domain_shape(), 6);
  EXPECT_LT(test::rel_max_error(a->adjoint(a->forward(x)), x), 1e-5);
  expect_normal(a, 7);
}

TEST(Operators, CoilMapsAreAdjoint) {
  auto a = mri::make_coil_maps(random_maps(2, 5, 12, 10, 8));
  EXPECT_EQ(a->domain_shape(), (mri::Shape{2, 12, 10}));
  EXPECT_EQ(a->range_shape(), (mri::Shape{2, 5, 12, 10}));
  expect_adjoint(a, 9);
  expect_normal(a, 10);
}

TEST(Operators, SenseIsAdjointAndNormalMatchesComposition) {
  auto mask = mri::random_mask_1d(24, 0.1, 3, 1).to(torch::kFloat).reshape({1, 1, 24, 1});
  auto a = mri::make_sense(random_maps(3, 4, 24, 16, 11), mask);
  EXPECT_EQ(a->range_shape(), (mri::Shape{3, 4, 24, 16}));
  expect_adjoint(a, 12);
  expect_normal(a, 13);
}

TEST(Operators, SenseEqualsExplicitMaskFftMaps) {
  auto maps = random_maps(2, 3, 16, 16, 14);
  auto mask = mri::random_mask_1d(16, 0.125, 2, 2).to(torch::kFloat);
  auto a = mri::make_sense(maps, mask.reshape({1, 1, 16, 1}));
  auto x = test::random_complex({2, 16, 16}, 15);
  auto expected = mri::fft2c_torch(maps * x.unsqueeze(1)) * mask.reshape({1, 1, 16, 1});
  EXPECT_LT(test::rel_max_error(a->forward(x), expected), 1e-5);
}

TEST(Operators, CompositionDerivesTheAdjoint) {
  auto inner = mri::make_coil_maps(random_maps(1, 2, 8, 8, 16));
  auto outer = mri::make_fourier({1, 2, 8, 8});
  auto a = mri::compose(outer, inner);
  expect_adjoint(a, 17);
  auto y = test::random_complex({1, 2, 8, 8}, 18);
  EXPECT_LT(test::rel_max_error(a->adjoint(y), inner->adjoint(outer->adjoint(y))), 1e-6);
}

TEST(Operators, RejectMismatchedShapes) {
  auto a = mri::make_fourier({2, 8, 8});
  EXPECT_THROW(a->forward(test::random_complex({2, 8, 9}, 1)), ambient::Error);
  EXPECT_THROW(a->forward(torch::zeros({2, 8, 8})), ambient::Error);  // real input
  EXPECT_THROW(mri::compose(mri::make_fourier({2, 8, 8}), mri::make_fourier({3, 8, 8})), ambient::Error);
  EXPECT_THROW(mri::make_mask(torch::ones({5}), {2, 8, 8}), ambient::Error);   // not broadcastable
  EXPECT_THROW(mri::make_mask(-torch::ones({8}), {2, 8, 8}), ambient::Error);  // negative weight
}

TEST(Operators, AutogradBackwardIsTheAdjoint) {
  auto maps = random_maps(2, 3, 12, 12, 19);
  auto mask = mri::random_mask_1d(12, 0.17, 2, 4).to(torch::kFloat).reshape({1, 1, 12, 1});
  auto a = mri::make_sense(maps, mask);
  auto y = test::random_complex({2, 3, 12, 12}, 20) * mask;
  auto x = test::random_complex({2, 12, 12}, 21).requires_grad_(true);
  // Loss ||A x - y||²: PyTorch's complex gradient convention gives 2 A^H (A x - y).
  auto loss = (mri::apply(a, x) - y).abs().square().sum();
  loss.backward();
  auto expected = 2 * a->adjoint(a->forward(x.detach()) - y);
  EXPECT_LT(test::rel_max_error(x.grad(), expected), 1e-5);

  // And the same gradient as autograd through a pure-torch SENSE (torch::fft).
  auto x2 = x.detach().clone().requires_grad_(true);
  auto loss2 = (mri::fft2c_torch(maps * x2.unsqueeze(1)) * mask - y).abs().square().sum();
  loss2.backward();
  EXPECT_LT(test::rel_max_error(x.grad(), x2.grad()), 1e-5);
}

TEST(Operators, AutogradThroughAdjoint) {
  auto a = mri::make_coil_maps(random_maps(1, 4, 6, 6, 22));
  auto y = test::random_complex({1, 4, 6, 6}, 23).requires_grad_(true);
  auto g = test::random_complex({1, 6, 6}, 24);
  // d/dy Re<g, A^H y> = A g
  auto out = torch::real((g.conj() * mri::apply_adjoint(a, y)).sum());
  out.backward();
  EXPECT_LT(test::rel_max_error(y.grad(), a->forward(g)), 1e-5);
}

TEST(Operators, NoGraphWhenInputNeedsNoGrad) {
  auto a = mri::make_fourier({1, 4, 4});
  auto x = test::random_complex({1, 4, 4}, 25);
  EXPECT_FALSE(mri::apply(a, x).requires_grad());
}

TEST(Operators, TorchFftBackendGivesTheSameSense) {
  auto maps = random_maps(2, 4, 20, 18, 26);
  auto mask = mri::random_mask_1d(20, 0.2, 2, 1).to(torch::kFloat).reshape({1, 1, 20, 1});
  auto fftw = mri::make_sense(maps, mask);
  auto torch_fft = mri::make_sense(maps, mask, mri::FftBackend::torch);
  auto x = test::random_complex({2, 20, 18}, 27);
  EXPECT_LT(test::rel_max_error(fftw->normal(x), torch_fft->normal(x)), 1e-5);
  expect_adjoint(torch_fft, 28);
}

TEST(Operators, NormalOperatorIsSelfAdjointAndEqualsAdjointAfterForward) {
  auto mask = mri::random_mask_1d(20, 0.2, 3, 2).to(torch::kFloat).reshape({1, 1, 20, 1});
  auto a = mri::make_sense(random_maps(2, 3, 20, 14, 29), mask);
  auto n = mri::make_normal(a);
  EXPECT_EQ(n->domain_shape(), a->domain_shape());
  EXPECT_EQ(n->range_shape(), a->domain_shape());
  expect_adjoint(n, 30);
  expect_normal(n, 31);
  auto x = test::random_complex(a->domain_shape(), 32);
  EXPECT_LT(test::rel_max_error(n->forward(x), a->adjoint(a->forward(x))), 1e-5);
  // Through autograd: d/dx Re<g, N x> = N g, N being self-adjoint.
  auto g = test::random_complex(a->domain_shape(), 33);
  auto xg = x.clone().requires_grad_(true);
  torch::real((g.conj() * mri::apply(n, xg)).sum()).backward();
  EXPECT_LT(test::rel_max_error(xg.grad(), n->forward(g)), 1e-5);
  EXPECT_THROW(mri::make_normal(nullptr), ambient::Error);
}
