// Samplers: the EDM noise schedule and Heun sampler (Karras et al. 2022, Algorithms 1-2), and analytic denoisers
// (Gaussian, Gaussian mixture) whose samples and posteriors are known, for testing samplers.
#pragma once

#include <limits>
#include <vector>

#include <torch/torch.h>

#include "ambient/diffusion/edm.hpp"

namespace ambient::diffusion {

struct Schedule {
  int64_t steps = 32;
  double sigma_min = 0.002, sigma_max = 80, rho = 7;
};
/// σ_0 > σ_1 > ... > σ_{N-1} = σ_min, followed by 0: [steps + 1] double.
torch::Tensor edm_sigmas(const Schedule& schedule);

struct HeunConfig {
  Schedule schedule;
  double s_churn = 0;  ///< 0: deterministic (probability-flow ODE); > 0: stochastic (Algorithm 2)
  double s_tmin = 0, s_tmax = std::numeric_limits<double>::infinity();
  double s_noise = 1;
};

/// Called after each step with (step, σ).
using SamplerMonitor = std::function<void(int64_t, double)>;

/// Draws samples of shape `shape` ([B, 2, H, W]) from the model: x_N ~ N(0, σ_max² I), Heun steps to σ = 0.
/// `cond` (corruption channels, or undefined) is passed to every denoiser call.
torch::Tensor sample_heun(const DenoiserFn& d, std::vector<int64_t> shape, const HeunConfig& config,
                          at::Generator& gen, const torch::Tensor& cond = {}, const SamplerMonitor& monitor = nullptr);

/// The exact denoiser E[x0 | x0 + σ n] of a Gaussian prior N(mean, diag(var)) over images [C, H, W].
DenoiserFn gaussian_denoiser(torch::Tensor mean, torch::Tensor var);

/// The exact denoiser of a Gaussian mixture sum_k w_k N(mean_k, s_k² I) over images [C, H, W]:
/// weights [K], means [K, C, H, W], stds [K].
DenoiserFn gaussian_mixture_denoiser(torch::Tensor weights, torch::Tensor means, torch::Tensor stds);

}  // namespace ambient::diffusion
