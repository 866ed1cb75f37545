// EDM preconditioning and σ sampling.
#include "ambient/diffusion/edm.hpp"

#include <ATen/autocast_mode.h>
#include <torch/version.h>

#include <cmath>

#include "ambient/core/error.hpp"
#include "ambient/core/names.hpp"
#include "ambient/mri/fft.hpp"

namespace ambient::diffusion {
namespace {

// Precond::masked_lines: D = F_y^H [ m̃ (c_skip F_y x + c_out F_y N) + (1 - m̃) σ_d F_y N ], m̃ the kept ky lines.
torch::Tensor mix_by_lines(const torch::Tensor& x, const torch::Tensor& out, const torch::Tensor& cond,
                           const torch::Tensor& c_skip, const torch::Tensor& c_out, double sd) {
  AMBIENT_CHECK(x.size(1) == 2, "masked-lines preconditioning: expected a complex image as 2 channels, got ",
                x.size(1));
  auto to_complex = [](const torch::Tensor& t) { return torch::view_as_complex(t.permute({0, 2, 3, 1}).contiguous()); };
  auto seen = cond.select(1, 0).select(2, 0).to(torch::kFloat).unsqueeze(2);  // [B, ny, 1]
  auto skip = c_skip.to(torch::kFloat).reshape({-1, 1, 1}), gain = c_out.to(torch::kFloat).reshape({-1, 1, 1});
  auto xk = mri::fft1c(to_complex(x.to(torch::kFloat)), 1), nk = mri::fft1c(to_complex(out.to(torch::kFloat)), 1);
  auto mixed = seen * (skip * xk + gain * nk) + (1 - seen) * sd * nk;
  auto image = mri::ifft1c(mixed, 1);
  return torch::view_as_real(image).permute({0, 3, 1, 2}).contiguous().to(x.dtype());
}

}  // namespace

EdmDenoiserImpl::EdmDenoiserImpl(UNetConfig net_config, EdmConfig e) : edm(e) {
  AMBIENT_CHECK(edm.sigma_data > 0, "EDM: expected sigma_data > 0, got ", edm.sigma_data);
  net = register_module("net", UNet(std::move(net_config)));
}

torch::Tensor EdmDenoiserImpl::forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond) {
  const double sd = edm.sigma_data;
  auto s = sigma.to(x.dtype()).reshape({-1, 1, 1, 1});
  auto c_skip = sd * sd / (s * s + sd * sd);
  auto c_out = s * sd / (s * s + sd * sd).sqrt();
  if (edm.precond == Precond::masked && cond.defined()) {  // where Ã saw nothing: σ = ∞
    auto seen = cond.narrow(1, 0, 1).to(x.dtype());
    c_skip = seen * c_skip;
    c_out = seen * c_out + (1 - seen) * sd;
  }
  auto c_in = 1 / (s * s + sd * sd).sqrt();
  auto c_noise = sigma.to(x.dtype()).log() / 4;
  auto input = c_in * x;
  if (cond.defined()) input = torch::cat({input, cond.to(x.dtype())}, 1);
  // .to(x.dtype()): under bf16 autocast the network returns bfloat16; the output stays in the input precision.
  auto out = net->forward(input, c_noise).to(x.dtype());
  if (edm.precond == Precond::masked_lines && cond.defined()) return mix_by_lines(x, out, cond, c_skip, c_out, sd);
  return c_skip * x + c_out * out;
}

constexpr Named<Precond> kPreconds[] = {
    {Precond::standard, "standard"}, {Precond::masked, "masked"}, {Precond::masked_lines, "masked-lines"}};

Precond parse_precond(const std::string& name) { return parse_named(kPreconds, name, "preconditioning"); }
std::string precond_name(Precond p) { return name_of(kPreconds, p); }

namespace {

// The autocast switches were per device before LibTorch 2.4 and take the device since (apps/gpu_pretrain builds
// against a newer LibTorch than Debian's 1.13).
#if TORCH_VERSION_MAJOR > 2 || (TORCH_VERSION_MAJOR == 2 && TORCH_VERSION_MINOR >= 4)
bool autocast_enabled(torch::DeviceType d) { return at::autocast::is_autocast_enabled(d); }
void set_autocast(torch::DeviceType d, bool on) {
  at::autocast::set_autocast_enabled(d, on);
  if (on) at::autocast::set_autocast_dtype(d, at::kBFloat16);
}
#else
bool autocast_enabled(torch::DeviceType d) {
  return d == torch::kCPU ? at::autocast::is_cpu_enabled() : at::autocast::is_enabled();
}
void set_autocast(torch::DeviceType d, bool on) {
  if (d == torch::kCPU) {
    at::autocast::set_cpu_enabled(on);
    if (on) at::autocast::set_autocast_cpu_dtype(at::kBFloat16);
  } else {
    at::autocast::set_enabled(on);
    if (on) at::autocast::set_autocast_gpu_dtype(at::kBFloat16);
  }
}
#endif

}  // namespace

Bf16Autocast::Bf16Autocast(bool on, torch::DeviceType device)
    : previous_(autocast_enabled(device)), device_(device) {
  AMBIENT_CHECK(device == torch::kCPU || device == torch::kCUDA, "bf16 autocast: CPU or CUDA only, got ", device);
  set_autocast(device, on);
}

Bf16Autocast::~Bf16Autocast() {
  set_autocast(device_, previous_);
  at::autocast::clear_cache();
}

namespace {

// torch::randn draws complex values with variance 1/2 per part; the convention wants 1.
torch::Tensor unit_noise(const torch::Tensor& like, c10::optional<at::Generator> gen) {
  AMBIENT_CHECK(like.defined() && (like.is_floating_point() || like.is_complex()),
                "noise: expected a floating-point or complex tensor to shape the noise like");
  return torch::randn(like.sizes(), std::move(gen), like.options());
}

}  // namespace

torch::Tensor noise_like(const torch::Tensor& like, double sigma, c10::optional<at::Generator> gen) {
  AMBIENT_CHECK(sigma >= 0 && std::isfinite(sigma), "noise: expected a finite σ >= 0, got ", sigma);
  return unit_noise(like, std::move(gen)) * (like.is_complex() ? sigma * std::sqrt(2.0) : sigma);
}

torch::Tensor noise_like(const torch::Tensor& like, const torch::Tensor& sigma, c10::optional<at::Generator> gen) {
  AMBIENT_CHECK(sigma.numel() == 1 || (like.dim() >= 1 && sigma.numel() == like.size(0)),
                "noise: expected one σ or one per batch item (", like.dim() >= 1 ? like.size(0) : 0, "), got ",
                sigma.numel());
  std::vector<int64_t> view(std::max<int64_t>(like.dim(), 1), 1);
  view[0] = sigma.numel();
  auto s = sigma.to(like.device(), c10::toRealValueType(like.scalar_type())).reshape(view);
  if (like.is_complex()) s = s * std::sqrt(2.0);
  return unit_noise(like, std::move(gen)) * s;
}

torch::Tensor sample_sigma(int64_t batch, const EdmConfig& edm, at::Generator& gen) {
  return (torch::randn({batch}, gen, torch::kFloat) * edm.p_std + edm.p_mean).exp();
}

torch::Tensor loss_weight(const torch::Tensor& sigma, const EdmConfig& edm) {
  const double sd = edm.sigma_data;
  return (sigma * sigma + sd * sd) / (sigma * sd).square();
}

std::shared_ptr<DenoiserModule> EdmDenoiserImpl::fresh_copy() const {
  return std::make_shared<EdmDenoiserImpl>(net->config(), edm);
}

DenoiserFn as_denoiser(ModelPtr model) {
  return [model](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond) {
    return model->forward(x, sigma, model->cond_channels() > 0 ? cond : torch::Tensor());
  };
}

torch::Tensor in_chunks(int64_t batch, int64_t chunk, const std::function<torch::Tensor(int64_t, int64_t)>& f) {
  if (chunk <= 0 || chunk >= batch) return f(0, batch);
  std::vector<torch::Tensor> parts;
  for (int64_t b = 0; b < batch; b += chunk) parts.push_back(f(b, std::min(chunk, batch - b)));
  return torch::cat(parts);
}

DenoiserFn chunked(DenoiserFn d, int64_t chunk) {
  return [d = std::move(d), chunk](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond) {
    auto part = [](const torch::Tensor& t, int64_t b, int64_t n) { return t.defined() ? t.narrow(0, b, n) : t; };
    return in_chunks(x.size(0), chunk, [&](int64_t b, int64_t n) {
      return d(x.narrow(0, b, n), part(sigma, b, n), part(cond, b, n));
    });
  };
}

}  // namespace ambient::diffusion
