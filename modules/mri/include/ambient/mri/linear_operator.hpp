// Linear operators (forward, adjoint, normal) on complex torch tensors, their composition, and autograd use.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include <torch/types.h>

namespace ambient::mri {

using Shape = std::vector<int64_t>;

/// A linear map between complex64 tensors of fixed shapes (batch dimensions included, e.g. slices).
/// forward() is A, adjoint() is A^H, normal() is A^H A (adjoint after forward unless an operator knows better).
/// Inputs are checked against domain_shape()/range_shape() at every call.
class LinearOperator {
 public:
  virtual ~LinearOperator() = default;
  virtual Shape domain_shape() const = 0;
  virtual Shape range_shape() const = 0;
  virtual std::string name() const = 0;

  torch::Tensor forward(const torch::Tensor& x) const;
  torch::Tensor adjoint(const torch::Tensor& y) const;
  torch::Tensor normal(const torch::Tensor& x) const;

 protected:
  virtual torch::Tensor forward_impl(const torch::Tensor& x) const = 0;
  virtual torch::Tensor adjoint_impl(const torch::Tensor& y) const = 0;
  virtual torch::Tensor normal_impl(const torch::Tensor& x) const { return adjoint_impl(forward_impl(x)); }
};

using OperatorPtr = std::shared_ptr<const LinearOperator>;

/// outer ∘ inner: forward = outer(inner(x)), adjoint = inner^H(outer^H(y)) (derived, as in BART's chain).
OperatorPtr compose(OperatorPtr outer, OperatorPtr inner);

/// The normal operator A^H A of `op` as an operator of its own: domain and range are op's domain, forward and adjoint
/// are both op->normal() (self-adjoint), so that apply() differentiates through it. The view of an ambient model,
/// Ã^H Ã x, is one (diffusion/seen_through.hpp).
OperatorPtr make_normal(OperatorPtr op);

/// Element-wise multiplication by a real, non-negative weight (a 0/1 sampling mask in k-space, or an image-domain
/// pixel/block mask). The weight broadcasts against `shape` (e.g. [ky] or [ky, kx] against [slice, coil, ky, kx]).
/// Self-adjoint; normal = weight^2.
OperatorPtr make_mask(torch::Tensor weight, Shape shape, std::string name = "mask");

/// Which FFT a Fourier operator runs: FFTW on CPU and torch::fft (cuFFT) on CUDA, or torch::fft everywhere.
enum class FftBackend { automatic, torch };

/// Centred unitary 2-D FFT over the last two dimensions of `shape`; adjoint is the inverse, normal the identity.
OperatorPtr make_fourier(Shape shape, FftBackend backend = FftBackend::automatic);

/// Coil sensitivities S: image [slice, ky, kx] -> coil images [slice, coil, ky, kx]; maps [slice, coil, ky, kx].
OperatorPtr make_coil_maps(torch::Tensor maps);

/// SENSE, A = M F S: maps [slice, coil, ky, kx], mask broadcastable to [slice, coil, ky, kx] (e.g. [ky] 1-D
/// Cartesian, [ky, kx], or [slice, 1, ky, kx]).
OperatorPtr make_sense(torch::Tensor maps, torch::Tensor mask, FftBackend backend = FftBackend::automatic);

/// Applies A (or A^H) so that autograd flows through it: the backward of the forward is the adjoint and vice
/// versa. Use inside losses; plain forward()/adjoint() do not record a graph.
torch::Tensor apply(const OperatorPtr& op, const torch::Tensor& x);
torch::Tensor apply_adjoint(const OperatorPtr& op, const torch::Tensor& y);

/// Real part of <a, b> = sum conj(a) b, in double precision.
double inner_product_real(const torch::Tensor& a, const torch::Tensor& b);

}  // namespace ambient::mri
