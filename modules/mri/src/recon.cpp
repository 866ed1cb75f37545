// Batched conjugate gradient and the classical reconstructions built on it.
#include "ambient/mri/recon.hpp"

#include "ambient/core/error.hpp"

namespace ambient::mri {
namespace {

// Per-batch-item real inner products <a, b> over all but dim 0, shaped [B, 1, ..., 1] for broadcasting.
torch::Tensor batched_dot(const torch::Tensor& a, const torch::Tensor& b) {
  auto p = torch::real(a.conj() * b).to(torch::kDouble).flatten(1).sum(1);
  std::vector<int64_t> shape(a.dim(), 1);
  shape[0] = a.size(0);
  return p.reshape(shape);
}

}  // namespace

torch::Tensor conjugate_gradient(const std::function<torch::Tensor(const torch::Tensor&)>& normal,
                                 const torch::Tensor& b, const CgConfig& cfg, torch::Tensor x,
                                 const CgMonitor& monitor) {
  AMBIENT_CHECK(b.dim() >= 1, "CG: expected a batched right-hand side, got a scalar");
  AMBIENT_CHECK(cfg.iterations >= 0, "CG: expected iterations >= 0, got ", cfg.iterations);
  AMBIENT_CHECK(cfg.lambda >= 0, "CG: expected a non-negative Tikhonov weight, got ", cfg.lambda);
  const auto real_type = c10::toRealValueType(b.scalar_type());
  auto op = [&](const torch::Tensor& v) { return cfg.lambda > 0 ? normal(v) + cfg.lambda * v : normal(v); };
  if (!x.defined()) x = torch::zeros_like(b);
  auto r = b - op(x);
  auto p = r.clone();
  auto rr = batched_dot(r, r);
  const auto bb = batched_dot(b, b).clamp_min(1e-300);
  for (int it = 0; it < cfg.iterations; ++it) {
    const double rel = (rr / bb).sqrt().max().item<double>();
    if (rel < cfg.tolerance) break;
    auto ap = op(p);
    auto pap = batched_dot(p, ap);
    // A batch item that has converged exactly (p = 0) keeps alpha = 0 rather than dividing by zero.
    auto alpha = torch::where(pap > 0, rr / pap.clamp_min(1e-300), torch::zeros_like(pap)).to(real_type);
    x = x + alpha * p;
    r = r - alpha * ap;
    auto rr_new = batched_dot(r, r);
    auto beta = torch::where(rr > 0, rr_new / rr.clamp_min(1e-300), torch::zeros_like(rr)).to(real_type);
    p = r + beta * p;
    rr = rr_new;
    if (monitor && !monitor(it + 1, (rr / bb).sqrt().max().item<double>())) break;
  }
  return x;
}

torch::Tensor zero_filled(const OperatorPtr& a, const torch::Tensor& y) { return a->adjoint(y); }

torch::Tensor cg_sense(const OperatorPtr& a, const torch::Tensor& y, const CgConfig& cfg, const torch::Tensor& x_ref,
                       const CgMonitor& monitor) {
  auto rhs = a->adjoint(y);
  if (x_ref.defined() && cfg.lambda > 0) rhs = rhs + cfg.lambda * x_ref;
  return conjugate_gradient([&](const torch::Tensor& v) { return a->normal(v); }, rhs, cfg, {}, monitor);
}

}  // namespace ambient::mri
