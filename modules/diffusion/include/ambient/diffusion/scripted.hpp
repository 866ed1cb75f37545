// TorchScript foundations: any scripted module with forward(x [B, 2, H, W], sigma [B]) -> denoised, trainable.
#pragma once

#include <memory>
#include <string>

#include "ambient/diffusion/edm.hpp"

namespace torch::jit {
struct Module;
}

namespace ambient::diffusion {

/// Wraps a TorchScript denoiser. Its parameters are registered here (same storage), so optimisers, EMA and
/// checkpoints treat it like any module. It takes no corruption channels: an opaque scripted network cannot be
/// widened, so under the ambient objectives it sees the further-corrupted image (zeros where Ã dropped data).
struct ScriptedDenoiserImpl : DenoiserModule {
  /// `archive`: the bytes of a TorchScript file (torch.jit.save). Checks the forward signature on a probe input.
  explicit ScriptedDenoiserImpl(std::string archive);
  ~ScriptedDenoiserImpl() override;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond = {}) override;
  int64_t cond_channels() const override { return 0; }
  std::string kind() const override { return "torchscript"; }
  std::string config_string() const override;
  std::shared_ptr<DenoiserModule> fresh_copy() const override;
  void train(bool on = true) override;
  const std::string& archive() const { return archive_; }

 private:
  std::string archive_;
  std::unique_ptr<torch::jit::Module> module_;
};

/// Reads a TorchScript file; throws ambient::Error with the reason when it is not one or has the wrong forward.
std::shared_ptr<ScriptedDenoiserImpl> load_torchscript(const std::string& path);

}  // namespace ambient::diffusion
