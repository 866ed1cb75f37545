// EDM preconditioning (Karras et al. 2022, Table 1): D(x; σ) = c_skip x + c_out F(c_in x; c_noise), log-normal σ
// for training and the loss weight λ(σ) = (σ² + σ_d²) / (σ σ_d)².
#pragma once

#include <functional>

#include <torch/torch.h>

#include "ambient/diffusion/network.hpp"

namespace ambient::diffusion {

/// How the network's output is mixed with its input (docs/objectives.md, "Preconditioning where Ã saw nothing").
enum class Precond {
  standard,  ///< Karras et al.: every pixel is the clean value plus noise σ
  /// Image-domain masks: a pixel the first corruption channel marks unobserved (0) holds no value at all, so it is
  /// treated as noise σ = ∞ there: c_skip 0 and c_out σ_d, and the ambient loss weighs it 1/σ_d² (the network's
  /// target stays O(1) at every σ instead of x0 / σ).
  masked,
  /// The same for k-space line masks (ambient-Fourier models): the first corruption channel is the line mask
  /// broadcast along kx, and the mixing happens per ky line of the image's 1-D FFT along y: a line Ã kept gets
  /// c_skip and c_out, a line it dropped gets c_skip 0 and c_out σ_d.
  masked_lines,
};
Precond parse_precond(const std::string& name);  ///< "standard" | "masked" | "masked-lines"
std::string precond_name(Precond p);

struct EdmConfig {
  double sigma_data = 0.5;  ///< std of the (scaled) clean images per channel
  double p_mean = -1.2;     ///< ln σ ~ N(p_mean, p_std²) during training
  double p_std = 1.2;
  Precond precond = Precond::standard;
};

/// A denoiser: (noisy image [B, 2, H, W], σ [B], corruption channels [B, k, H, W] or undefined) -> x0 estimate.
/// The network-backed EdmDenoiser is one; the tests and (later) samplers use analytic ones too.
using DenoiserFn = std::function<torch::Tensor(const torch::Tensor&, const torch::Tensor&, const torch::Tensor&)>;

/// A trainable denoiser: our EDM UNet, or a TorchScript foundation (scripted.hpp).
struct DenoiserModule : torch::nn::Module {
  virtual torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond) = 0;
  /// Corruption channels the model takes (0: it sees only the corrupted image, the mask implicit in its zeros).
  virtual int64_t cond_channels() const = 0;
  /// "edm-unet" or "torchscript".
  virtual std::string kind() const = 0;
  /// The network configuration (UNet key=value list), or a description for TorchScript models.
  virtual std::string config_string() const = 0;
  /// A new model of the same architecture (weights to be copied in), e.g. for the EMA.
  virtual std::shared_ptr<DenoiserModule> fresh_copy() const = 0;
  /// The σ distribution and loss weighting to train it with.
  virtual EdmConfig training_edm() const { return {}; }
};
using ModelPtr = std::shared_ptr<DenoiserModule>;

/// The preconditioned network. Corruption channels are passed to the network unscaled (they are not noisy).
struct EdmDenoiserImpl : DenoiserModule {
  EdmDenoiserImpl(UNetConfig net_config, EdmConfig edm);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond = {}) override;
  int64_t cond_channels() const override { return net->config().cond_channels; }
  std::string kind() const override { return "edm-unet"; }
  std::string config_string() const override { return net->config().serialize(); }
  std::shared_ptr<DenoiserModule> fresh_copy() const override;
  EdmConfig training_edm() const override { return edm; }
  UNet net{nullptr};
  EdmConfig edm;
};
TORCH_MODULE(EdmDenoiser);

/// bfloat16 autocast on `device` (CPU or CUDA) for the scope when `on` (the network's convolutions and matmuls run
/// in bf16; GroupNorm stays float32, network.cpp); restores the previous state and clears the cast cache on exit.
class Bf16Autocast {
 public:
  explicit Bf16Autocast(bool on, torch::DeviceType device = torch::kCPU);
  ~Bf16Autocast();
  Bf16Autocast(const Bf16Autocast&) = delete;
  Bf16Autocast& operator=(const Bf16Autocast&) = delete;

 private:
  bool previous_;
  torch::DeviceType device_;
};

/// Noise of standard deviation σ shaped like `like` (its shape, dtype and device), in the one noise convention of
/// every objective and sampler (docs/conventions.md, "Noise"): N(0, σ²) per *real* value. A complex tensor gets
/// N(0, σ²) in its real and in its imaginary part (E|n|² = 2σ²), so that a complex image and its two network
/// channels (to_channels) carry the same noise, the σ the network is told. `sigma` is a scalar or one value per
/// batch item ([B], broadcast over the other dimensions). No generator: LibTorch's default one for the device.
torch::Tensor noise_like(const torch::Tensor& like, double sigma, c10::optional<at::Generator> gen = c10::nullopt);
torch::Tensor noise_like(const torch::Tensor& like, const torch::Tensor& sigma,
                         c10::optional<at::Generator> gen = c10::nullopt);

/// Draws σ [batch] from the training distribution.
torch::Tensor sample_sigma(int64_t batch, const EdmConfig& edm, at::Generator& gen);
/// λ(σ) [B] for σ [B].
torch::Tensor loss_weight(const torch::Tensor& sigma, const EdmConfig& edm);

/// Wraps a model as a DenoiserFn (keeps it alive). Corruption channels are dropped for models that take none.
DenoiserFn as_denoiser(ModelPtr model);
inline DenoiserFn as_denoiser(const EdmDenoiser& model) { return as_denoiser(ModelPtr(model.ptr())); }

/// f(begin, n) over [begin, begin + n) for consecutive chunks of at most `chunk` of `batch` items, concatenated
/// along dim 0. Large CPU batches run slower per item than small ones: their activations (hundreds of MB) are
/// mapped fresh from the kernel on every call (docs/performance.md). chunk <= 0: one call.
torch::Tensor in_chunks(int64_t batch, int64_t chunk, const std::function<torch::Tensor(int64_t, int64_t)>& f);
/// `d` applied to at most `chunk` batch items at a time (x, σ and the corruption channels split alike).
DenoiserFn chunked(DenoiserFn d, int64_t chunk);

}  // namespace ambient::diffusion
