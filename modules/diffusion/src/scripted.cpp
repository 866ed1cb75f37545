// TorchScript denoisers as trainable modules.
#include "ambient/diffusion/scripted.hpp"

#include <torch/script.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/core/reader_crash.hpp"
#include "ambient/core/tensor_file.hpp"

namespace ambient::diffusion {

ScriptedDenoiserImpl::ScriptedDenoiserImpl(std::string archive) : archive_(std::move(archive)) {
  check_zip_integrity(archive_, "TorchScript archive");
  std::istringstream in(archive_);
  const ambient::ReaderCrashScope scope("TorchScript parser (LibTorch 1.13)", "a TorchScript archive",
                                    "the archive is damaged, or its code is not TorchScript that LibTorch 1.13 reads; "
                                    "export the model again with torch.jit.script(...).save(...)");
  try {
    module_ = std::make_unique<torch::jit::Module>(torch::jit::load(in));
  } catch (const c10::Error& e) {
    fail("TorchScript: cannot load the module: ", e.what_without_backtrace());
  } catch (const std::exception& e) {
    fail("TorchScript: cannot load the module: ", e.what());
  }
  AMBIENT_CHECK(module_->find_method("forward").has_value(), "TorchScript: the module has no forward method");
  int index = 0;
  for (const auto& p : module_->named_parameters(true)) {
    std::string name = p.name;
    for (auto& ch : name)
      if (ch == '.') ch = '_';
    auto t = p.value;
    t.set_requires_grad(true);
    register_parameter("p" + std::to_string(index++) + "_" + name, t);
  }
  // Probe the contract: forward(x [B, 2, H, W], sigma [B]) -> [B, 2, H, W].
  torch::NoGradGuard g;
  torch::Tensor out;
  try {
    out = module_->forward({torch::zeros({1, 2, 16, 16}), torch::ones({1})}).toTensor();
  } catch (const std::exception& e) {
    fail("TorchScript: expected forward(x [B, 2, H, W], sigma [B]) -> denoised; calling it failed: ", e.what());
  }
  AMBIENT_CHECK(out.sizes() == torch::IntArrayRef({1, 2, 16, 16}), "TorchScript: expected forward to return [B, 2, H, "
                "W], got ", shape_string(out.sizes().vec()));
}

ScriptedDenoiserImpl::~ScriptedDenoiserImpl() = default;

torch::Tensor ScriptedDenoiserImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) {
  return module_->forward({x, sigma.to(x.dtype())}).toTensor().to(x.dtype());
}

std::string ScriptedDenoiserImpl::config_string() const {
  int64_t n = 0;
  for (const auto& p : module_->parameters(true)) n += p.numel();
  std::ostringstream os;
  os << "torchscript;parameters=" << n;
  return os.str();
}

std::shared_ptr<DenoiserModule> ScriptedDenoiserImpl::fresh_copy() const {
  return std::make_shared<ScriptedDenoiserImpl>(archive_);
}

void ScriptedDenoiserImpl::train(bool on) {
  torch::nn::Module::train(on);
  module_->train(on);
}

std::shared_ptr<ScriptedDenoiserImpl> load_torchscript(const std::string& path) {
  AMBIENT_CHECK(std::filesystem::exists(path), "TorchScript: file not found: ", path);
  std::ifstream in(path, std::ios::binary);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  try {
    return std::make_shared<ScriptedDenoiserImpl>(bytes.str());
  } catch (const Error& e) {
    fail(path, " is neither an ambient checkpoint nor a usable TorchScript denoiser: ", e.what());
  }
}

}  // namespace ambient::diffusion
