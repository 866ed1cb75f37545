// Classical reconstructions: zero-filled (the adjoint) and CG-SENSE with Tikhonov regularisation.
#pragma once

#include <functional>

#include <torch/types.h>

#include "ambient/mri/linear_operator.hpp"

namespace ambient::mri {

/// Called after each CG iteration with (iteration, relative residual); return false to stop early.
using CgMonitor = std::function<bool(int, double)>;

struct CgConfig {
  int iterations = 30;
  double tolerance = 1e-6;   ///< stop when every batch item's ||r|| / ||b|| falls below this
  double lambda = 0.0;       ///< Tikhonov weight: solves (A^H A + λ I) x = A^H y + λ x_ref
};

/// CG-SENSE as `ambient recon` runs it unless told otherwise: 30 iterations, λ = 0.01 (A^H A has norm 1), the
/// weight the classical baselines of docs/results.md use.
inline CgConfig cg_sense_defaults() {
  CgConfig c;
  c.lambda = 0.01;
  return c;
}

/// Conjugate gradient on (N + λ I) x = b for a Hermitian positive semi-definite N, batched over dim 0: every batch
/// item (slice) has its own step sizes, so slices converge independently. x0 defaults to zero.
torch::Tensor conjugate_gradient(const std::function<torch::Tensor(const torch::Tensor&)>& normal,
                                 const torch::Tensor& b, const CgConfig& config, torch::Tensor x0 = {},
                                 const CgMonitor& monitor = nullptr);

/// A^H y: the zero-filled, coil-combined image [slice, ky, kx].
torch::Tensor zero_filled(const OperatorPtr& a, const torch::Tensor& y);

/// CG-SENSE: argmin ||A x - y||² + λ ||x - x_ref||², x_ref zero unless given.
torch::Tensor cg_sense(const OperatorPtr& a, const torch::Tensor& y, const CgConfig& config,
                       const torch::Tensor& x_ref = {}, const CgMonitor& monitor = nullptr);

}  // namespace ambient::mri
