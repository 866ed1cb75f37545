// EDM preconditioning (Karras et al. 2022, Table 1): D(x; σ) = c_skip x + c_out F(c_in x; c_noise), log-normal σ
// for training and the loss weight λ(σ) = (σ² + σ_d²) / (σ σ_d)².
#pragma once

#include <functional>

#include <torch/torch.h>

#include "ambient/diffusion/network.hpp"

namespace ambient::diffusion {

struct EdmConfig {
  double sigma_data = 0.5;  ///< std of the (scaled) clean images per channel
  double p_mean = -1.2;     ///< ln σ ~ N(p_mean, p_std²) during training
  double p_std = 1.2;
};

/// A denoiser: (noisy image [B, 2, H, W], σ [B], corruption channels [B, k, H, W] or undefined) -> x0 estimate.
/// The network-backed EdmDenoiser is one; the tests and (later) samplers use analytic ones too.
using DenoiserFn = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;

/// The preconditioned network. Corruption channels are passed to the network unscaled (they are not noisy).
struct EdmDenoiserImpl : torch::nn::Module {
  EdmDenoiserImpl(UNetConfig net_config, EdmConfig edm);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond = {});
  UNet net{nullptr};
  EdmConfig edm;
};
TORCH_MODULE(EdmDenoiser);

/// Draws σ [batch] from the training distribution.
torch::Tensor sample_sigma(int64_t batch, const EdmConfig& edm, at::Generator& gen);
/// λ(σ) [B] for σ [B].
torch::Tensor loss_weight(const torch::Tensor& sigma, const EdmConfig& edm);

/// Wraps a module as a DenoiserFn (keeps it alive).
DenoiserFn as_denoiser(EdmDenoiser model);

}  // namespace ambient::diffusion
