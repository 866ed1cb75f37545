// Samplers: the EDM noise schedule and Heun sampler (Karras et al. 2022, Algorithms 1-2), and analytic denoisers
// (Gaussian, Gaussian mixture) whose samples and posteriors are known, for testing samplers.
#pragma once

#include <limits>
#include <vector>

#include <torch/torch.h>

#include "ambient/diffusion/edm.hpp"
#include "ambient/mri/linear_operator.hpp"

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

/// Posterior sampling for y = A z + n, z = from_channels(x) complex [B, H, W], n complex Gaussian with
/// E|n|² = noise_var per sample, A any mri::LinearOperator with domain [B, H, W].
struct PosteriorConfig {
  Schedule schedule;
  double noise_var = 1e-4;    ///< measurement noise variance per complex sample (network units)
  torch::Tensor noise_var_per_item;  ///< optional [B]: per batch item (slices scaled differently); overrides it
  double prior_var = 0.25;    ///< per real component; sets γ(σ) = v σ² / (v + σ²), EDM's c_out² for v = σ_data²
  double gamma_scale = 1;     ///< fast sampler: multiplies γ(σ); < 1 trusts the denoiser more than a Gaussian prior
                              ///< would (a trained network's error is below v σ² / (v + σ²))
  double gamma_floor = 0;     ///< fast sampler: added to γ(σ): the error a model keeps at σ → 0 (an ambient model
                              ///< sees x only through Ã, so its E[x0 | Ã x] never becomes exact)
  int cg_iterations = 8;      ///< CG steps of each data-consistency solve (fast sampler)
  double dps_step = 1.0;      ///< DPS: ζ, the step is ζ / ||y − A D(x)|| (Chung et al. 2023)
};

/// The fast sampler (no back-propagation; DDS/DiffPIR family): at each σ_i it draws x0 from the Gaussian
/// p(x0 | x_i, y) ∝ N(x0; D(x_i), γ_i I) p(y | x0) by perturb-then-optimise (a CG solve of
/// (A^H A + λ I) z = A^H (y + √η n1) + λ (D(x_i) + √(2γ_i) n2), λ = η / (2 γ_i)), then moves to σ_{i+1} with the
/// exact ancestral bridge x_{i+1} = x0 + (σ_{i+1}/σ_i)² (x_i − x0) + σ_{i+1} sqrt(1 − (σ_{i+1}/σ_i)²) ε.
/// Exact when D is the exact denoiser of a Gaussian prior with variance prior_var.
torch::Tensor sample_posterior(const DenoiserFn& d, const mri::OperatorPtr& a, const torch::Tensor& y,
                               const PosteriorConfig& config, at::Generator& gen, const torch::Tensor& cond = {},
                               const SamplerMonitor& monitor = nullptr);

/// One chain of the fast sampler: its sample, and the mean of its last Gaussian p(x0 | x(σ_min), y) (the same solve
/// without the perturbations). Averaged over chains, those means estimate the posterior mean with less variance
/// than the samples do (Rao-Blackwellisation: the last draw's noise, of variance γ(σ_min) per component in every
/// direction the data do not fix, is averaged out exactly instead of over K chains); the samples keep the spread.
struct PosteriorDraw {
  torch::Tensor sample;  ///< [B, 2, H, W]
  torch::Tensor mean;    ///< [B, 2, H, W]: E[x0 | x(σ_min), y] under the last step's Gaussian model
};
PosteriorDraw posterior_chain(const DenoiserFn& d, const mri::OperatorPtr& a, const torch::Tensor& y,
                              const PosteriorConfig& config, at::Generator& gen, const torch::Tensor& cond = {},
                              const SamplerMonitor& monitor = nullptr);

/// DPS (Chung et al. 2023), as A-DPS uses it: Euler steps of the probability-flow ODE, each followed by a gradient
/// step along ∇_x ||y − A D(x_i)||² taken through the denoiser, of size dps_step / ||y − A D(x_i)||. Approximate.
torch::Tensor sample_dps(const DenoiserFn& d, const mri::OperatorPtr& a, const torch::Tensor& y,
                         const PosteriorConfig& config, at::Generator& gen, const torch::Tensor& cond = {},
                         const SamplerMonitor& monitor = nullptr);

/// The exact denoiser E[x0 | x0 + σ n] of a Gaussian prior N(mean, diag(var)) over images [C, H, W].
DenoiserFn gaussian_denoiser(torch::Tensor mean, torch::Tensor var);

/// The exact denoiser of a Gaussian mixture sum_k w_k N(mean_k, s_k² I) over images [C, H, W]:
/// weights [K], means [K, C, H, W], stds [K].
DenoiserFn gaussian_mixture_denoiser(torch::Tensor weights, torch::Tensor means, torch::Tensor stds);

}  // namespace ambient::diffusion
