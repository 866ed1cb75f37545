// EDM sampling and the analytic denoisers used to test it.
#include "ambient/diffusion/samplers.hpp"

#include <cmath>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/recon.hpp"

namespace ambient::diffusion {

torch::Tensor edm_sigmas(const Schedule& s) {
  AMBIENT_CHECK(s.steps >= 1, "sampler: expected at least one step, got ", s.steps);
  AMBIENT_CHECK(s.sigma_min > 0 && s.sigma_max > s.sigma_min && s.rho > 0,
                "sampler: expected 0 < sigma_min < sigma_max and rho > 0");
  auto i = torch::arange(s.steps, torch::kDouble);
  const double a = std::pow(s.sigma_max, 1 / s.rho), b = std::pow(s.sigma_min, 1 / s.rho);
  auto sig = (s.steps == 1) ? torch::full({1}, s.sigma_max, torch::kDouble)
                            : torch::pow(a + i / (s.steps - 1) * (b - a), s.rho);
  return torch::cat({sig, torch::zeros({1}, torch::kDouble)});
}

torch::Tensor sample_heun(const DenoiserFn& d, std::vector<int64_t> shape, const HeunConfig& c, at::Generator& gen,
                          const torch::Tensor& cond, const SamplerMonitor& monitor) {
  torch::NoGradGuard no_grad;
  auto sigmas = edm_sigmas(c.schedule);
  auto acc = sigmas.accessor<double, 1>();
  const int64_t n = c.schedule.steps;
  const int64_t batch = shape[0];
  auto x = noise_like(torch::empty(shape), acc[0], gen);
  auto denoise = [&](const torch::Tensor& v, double s) {
    return d(v, torch::full({batch}, static_cast<float>(s)), cond);
  };
  const double gamma_max = std::sqrt(2.0) - 1;
  for (int64_t i = 0; i < n; ++i) {
    double s_cur = acc[i];
    const double s_next = acc[i + 1];
    // Stochastic churn: raise the noise level to s_hat by adding fresh noise (Algorithm 2).
    const double gamma = (c.s_churn > 0 && s_cur >= c.s_tmin && s_cur <= c.s_tmax)
                             ? std::min(c.s_churn / n, gamma_max)
                             : 0.0;
    const double s_hat = s_cur * (1 + gamma);
    if (gamma > 0)
      x = x + noise_like(x, std::sqrt(s_hat * s_hat - s_cur * s_cur) * c.s_noise, gen);
    auto dx = (x - denoise(x, s_hat)) / s_hat;
    auto x_next = x + (s_next - s_hat) * dx;
    if (s_next > 0) {  // Heun's second-order correction, except on the last step to σ = 0
      auto dx2 = (x_next - denoise(x_next, s_next)) / s_next;
      x_next = x + (s_next - s_hat) * 0.5 * (dx + dx2);
    }
    x = x_next;
    if (monitor) monitor(i + 1, s_next);
  }
  return x;
}

namespace {

// Checks y against A and returns the image-side sample shape [B, 2, H, W] of A's domain [B, H, W].
std::vector<int64_t> posterior_shape(const mri::OperatorPtr& a, const torch::Tensor& y, const char* who) {
  AMBIENT_CHECK(a != nullptr, who, ": expected a measurement operator");
  AMBIENT_CHECK(y.sizes().vec() == a->range_shape(), who, ": measurement ", shape_string(y.sizes().vec()),
                " does not match the operator's range ", shape_string(a->range_shape()));
  const auto dom = a->domain_shape();
  AMBIENT_CHECK(dom.size() == 3, who, ": expected an operator on images [B, H, W], got domain ", shape_string(dom));
  return {dom[0], 2, dom[1], dom[2]};
}

}  // namespace

torch::Tensor sample_posterior(const DenoiserFn& d, const mri::OperatorPtr& a, const torch::Tensor& y,
                               const PosteriorConfig& c, at::Generator& gen, const torch::Tensor& cond,
                               const SamplerMonitor& monitor) {
  return posterior_chain(d, a, y, c, gen, cond, monitor).sample;
}

PosteriorDraw posterior_chain(const DenoiserFn& d, const mri::OperatorPtr& a, const torch::Tensor& y,
                              const PosteriorConfig& c, at::Generator& gen, const torch::Tensor& cond,
                              const SamplerMonitor& monitor) {
  AMBIENT_CHECK(c.prior_var > 0, "posterior sampler: expected a positive prior variance");
  AMBIENT_CHECK(c.gamma_scale > 0 && c.gamma_floor >= 0, "posterior sampler: expected a positive γ scale and a "
                "non-negative γ floor, got ", c.gamma_scale, " and ", c.gamma_floor);
  const auto shape = posterior_shape(a, y, "posterior sampler");
  const auto dom = a->domain_shape();  // [B, H, W]
  torch::NoGradGuard no_grad;
  auto sigmas = edm_sigmas(c.schedule);
  auto acc = sigmas.accessor<double, 1>();
  auto x = noise_like(torch::empty(shape), acc[0], gen);
  // η per batch item; eta_img broadcasts it over the image [B, 1, 1].
  auto eta = (c.noise_var_per_item.defined() ? c.noise_var_per_item.to(torch::kFloat)
                                             : torch::full({dom[0]}, static_cast<float>(c.noise_var)));
  AMBIENT_CHECK(eta.numel() == dom[0] && (eta > 0).all().item<bool>(),
                "posterior sampler: expected one positive noise variance per batch item");
  auto eta_img = eta.reshape({-1, 1, 1});
  const double v = c.prior_var;
  PosteriorDraw out;
  for (int64_t i = 0; i < c.schedule.steps; ++i) {
    const double s = acc[i], s_next = acc[i + 1];
    auto z_hat = from_channels(d(x, torch::full({dom[0]}, static_cast<float>(s)), cond));
    // Var[x0 | x_i] per real component under the Gaussian prior, optionally scaled
    const double gamma = c.gamma_scale * v * s * s / (v + s * s) + c.gamma_floor;
    auto lambda = eta_img / (2 * gamma);
    // Perturb-then-optimise: the solution is an exact sample of the Gaussian p(x0 | x_i, y).
    // η is per complex sample (η / 2 per part), γ per real component (noise_like's convention).
    auto y_pert = y + noise_like(y, (eta / 2).sqrt(), gen);
    auto z_pert = z_hat + noise_like(z_hat, std::sqrt(gamma), gen);
    mri::CgConfig cg;
    cg.iterations = c.cg_iterations;
    cg.tolerance = 1e-7;
    auto normal = [&](const torch::Tensor& t) { return a->normal(t) + lambda * t; };
    auto x0 = to_channels(mri::conjugate_gradient(normal, a->adjoint(y_pert) + lambda * z_pert, cg, z_pert));
    if (s_next > 0) {
      const double r = (s_next / s) * (s_next / s);
      x = x0 + r * (x - x0) + noise_like(x, s_next * std::sqrt(1 - r), gen);
    } else {
      x = x0;
      // The same solve without the perturbations: the mean of this last Gaussian.
      out.mean = to_channels(mri::conjugate_gradient(normal, a->adjoint(y) + lambda * z_hat, cg, z_hat));
    }
    if (monitor) monitor(i + 1, s_next);
  }
  out.sample = x;
  return out;
}

torch::Tensor sample_dps(const DenoiserFn& d, const mri::OperatorPtr& a, const torch::Tensor& y,
                         const PosteriorConfig& c, at::Generator& gen, const torch::Tensor& cond,
                         const SamplerMonitor& monitor) {
  const auto shape = posterior_shape(a, y, "DPS");
  const auto dom = a->domain_shape();
  auto sigmas = edm_sigmas(c.schedule);
  auto acc = sigmas.accessor<double, 1>();
  auto x = noise_like(torch::empty(shape), acc[0], gen);
  for (int64_t i = 0; i < c.schedule.steps; ++i) {
    const double s = acc[i], s_next = acc[i + 1];
    auto xi = x.detach().requires_grad_(true);
    auto x0 = d(xi, torch::full({dom[0]}, static_cast<float>(s)), cond);
    // Per-slice squared residuals; the gradient of their sum is each slice's own gradient (Chung et al. 2023,
    // Algorithm 1: a step along ∇||y − A x̂0||² of size ζ / ||y − A x̂0||).
    auto res2 = (y - mri::apply(a, from_channels(x0))).abs().square().flatten(1).sum(1);
    auto grad = torch::autograd::grad({res2.sum()}, {xi})[0];
    torch::NoGradGuard no_grad;
    auto step = (c.dps_step / res2.detach().sqrt().clamp_min(1e-12)).reshape({-1, 1, 1, 1});
    x = xi.detach() + (s_next - s) * (xi.detach() - x0.detach()) / s - step * grad;
    if (monitor) monitor(i + 1, s_next);
  }
  return x.detach();
}

DenoiserFn gaussian_denoiser(torch::Tensor mean, torch::Tensor var) {
  AMBIENT_CHECK(mean.sizes() == var.sizes(), "Gaussian denoiser: mean and variance shapes differ");
  AMBIENT_CHECK((var >= 0).all().item<bool>(), "Gaussian denoiser: expected non-negative variances");
  return [mean, var](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) {
    auto s2 = sigma.to(x.dtype()).square().reshape({-1, 1, 1, 1});
    return mean + var / (var + s2) * (x - mean);
  };
}

DenoiserFn gaussian_mixture_denoiser(torch::Tensor weights, torch::Tensor means, torch::Tensor stds) {
  AMBIENT_CHECK(weights.dim() == 1 && means.size(0) == weights.size(0) && stds.sizes() == weights.sizes(),
                "mixture denoiser: expected weights [K], means [K, ...], stds [K]");
  auto logw = (weights / weights.sum()).log().to(torch::kDouble);
  return [logw, means, stds](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) {
    const int64_t b = x.size(0), k = means.size(0), dim = x[0].numel();
    auto xf = x.reshape({b, 1, dim}).to(torch::kDouble);
    auto mf = means.reshape({1, k, dim}).to(torch::kDouble);
    auto s2 = stds.to(torch::kDouble).square().reshape({1, k});
    auto sig2 = sigma.to(torch::kDouble).square().reshape({b, 1});
    auto tot = s2 + sig2;  // [b, k]: each component's variance after noising
    auto logp = logw.reshape({1, k}) - 0.5 * (xf - mf).square().sum(2) / tot - 0.5 * dim * tot.log();
    auto r = torch::softmax(logp, 1);  // responsibilities
    auto post = mf + (s2 / tot).unsqueeze(2) * (xf - mf);  // each component's E[x0 | x, k]
    return (r.unsqueeze(2) * post).sum(1).reshape(x.sizes()).to(x.dtype());
  };
}

}  // namespace ambient::diffusion
