// The denoising network: a UNet in the EDM/DDPM++ style (Karras et al. 2022; Song et al. 2021) for complex
// images stored as 2 real channels, with optional extra input channels for the corruption (mask).
#pragma once

#include <string>
#include <vector>

#include <torch/torch.h>

namespace ambient::diffusion {

struct UNetConfig {
  int64_t image_channels = 2;            ///< complex image as (real, imag)
  int64_t cond_channels = 0;             ///< extra inputs (e.g. the corruption mask); not part of the output
  int64_t base_channels = 32;
  std::vector<int64_t> channel_mult = {1, 2, 2};  ///< one entry per resolution level
  int64_t blocks_per_level = 2;
  std::vector<int64_t> attention_levels = {2};     ///< levels (0 = full resolution) with self-attention
  double dropout = 0.0;
  int64_t groups = 8;                    ///< GroupNorm groups (clamped to divide the channel count)

  int64_t levels() const { return static_cast<int64_t>(channel_mult.size()); }
  int64_t emb_channels() const { return 4 * base_channels; }
  /// H and W are padded to a multiple of this and cropped back.
  int64_t size_multiple() const { return int64_t{1} << (levels() - 1); }
  /// "key=value;..." so a checkpoint can rebuild the network.
  std::string serialize() const;
  static UNetConfig deserialize(const std::string& text);
  void validate() const;
};

struct ResBlockImpl : torch::nn::Module {
  ResBlockImpl(int64_t in, int64_t out, int64_t emb, int64_t groups, double dropout);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& emb);
  torch::nn::GroupNorm norm0{nullptr}, norm1{nullptr};
  torch::nn::Conv2d conv0{nullptr}, conv1{nullptr}, skip{nullptr};
  torch::nn::Linear affine{nullptr};
  torch::nn::Dropout drop{nullptr};
};
TORCH_MODULE(ResBlock);

struct AttentionImpl : torch::nn::Module {
  AttentionImpl(int64_t channels, int64_t groups);
  torch::Tensor forward(const torch::Tensor& x);
  torch::nn::GroupNorm norm{nullptr};
  torch::nn::Conv2d qkv{nullptr}, proj{nullptr};
  int64_t heads = 1;
};
TORCH_MODULE(Attention);

/// F(x_in; c_noise): [B, image + cond, H, W], [B] -> [B, image, H, W]. Any H, W.
struct UNetImpl : torch::nn::Module {
  explicit UNetImpl(UNetConfig config);
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& c_noise);
  /// Adds `extra` zero-initialised input channels to the first convolution, so the network computes the same
  /// function as before whatever those channels hold (used to give a foundation model a mask input).
  void widen_input(int64_t extra);
  const UNetConfig& config() const { return config_; }
  /// What the encoder makes of x: the channel means of each level's last activation and of the middle block, [B, D]
  /// float (D = base channels × (sum of the multipliers + the last one)). A fixed description of an image for the
  /// sample measures of features.hpp; x and c_noise as for forward.
  /// grid > 1: each activation averaged over a grid × grid partition of the image instead of the whole of it, so
  /// the features say where things are as well as what they are (D × grid² values).
  torch::Tensor features(const torch::Tensor& x, const torch::Tensor& c_noise, int64_t grid = 1);

 private:
  /// The encoder and the middle block on x (padded to the stride): returns the middle output; fills the time
  /// embedding, the skips for the decoder and, when given, each level's last activation.
  torch::Tensor encode(const torch::Tensor& x, const torch::Tensor& c_noise, torch::Tensor& emb,
                       std::vector<torch::Tensor>& skips, std::vector<torch::Tensor>* levels);
  UNetConfig config_;
  torch::nn::Linear map0{nullptr}, map1{nullptr};
  torch::nn::Conv2d conv_in{nullptr}, conv_out{nullptr};
  torch::nn::GroupNorm norm_out{nullptr};
  torch::nn::ModuleList enc_blocks, dec_blocks, downs, ups;
  std::vector<Attention> enc_attn_, dec_attn_;  ///< one per block; empty holders where a level has none
  ResBlock mid0{nullptr}, mid1{nullptr};
  Attention mid_attn{nullptr};
};
TORCH_MODULE(UNet);

/// Sinusoidal embedding of a noise level: [B] -> [B, channels].
torch::Tensor positional_embedding(const torch::Tensor& c_noise, int64_t channels);

}  // namespace ambient::diffusion
