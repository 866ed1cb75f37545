// The clean-slice pretraining loop on any device (slice_trainer.hpp).
#include "ambient/diffusion/slice_trainer.hpp"

#include <chrono>
#include <cmath>
#include <filesystem>

#include "ambient/core/atomic_write.hpp"
#include "ambient/core/error.hpp"

namespace ambient::diffusion {
namespace {

constexpr const char* kWeightsFormat = "ambient-weights";

// Reflection about the centred-FFT origin (index n/2), as the CPU loader's flips (data.cpp).
torch::Tensor centred_flip(const torch::Tensor& t, int64_t dim) {
  auto f = torch::flip(t, {dim});
  return t.size(dim) % 2 == 0 ? torch::roll(f, {1}, {dim}) : f;
}

// Per-step seeds, so a resumed run draws what an uninterrupted one draws.
uint64_t step_seed(uint64_t seed, int64_t step) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return (z ^ (z >> 31)) >> 1;
}

void save_archive(const std::string& path, const std::function<void(torch::serialize::OutputArchive&)>& fill) {
  torch::serialize::OutputArchive ar;
  fill(ar);
  write_atomically(path, [&](const std::string& tmp) { ar.save_to(tmp); });
}

void save_run(const std::string& out, torch::nn::Module& model, torch::nn::Module& ema, torch::optim::Adam& opt,
              const UNetConfig& net, const EdmConfig& edm, const SliceTrainConfig& cfg, int64_t step, int64_t n) {
  // Resume state first, the EMA file (which names the step) last.
  save_archive(out + ".model.pt", [&](auto& ar) {
    ar.write("step", c10::IValue(step));
    model.save(ar);
  });
  save_archive(out + ".adam.pt", [&](auto& ar) {
    ar.write("step", c10::IValue(step));
    opt.save(ar);
  });
  auto file = module_tensors(ema);
  file.meta = {{"format", kWeightsFormat},
               {"net_config", net.serialize()},
               {"sigma_data", std::to_string(edm.sigma_data)},
               {"p_mean", std::to_string(edm.p_mean)},
               {"p_std", std::to_string(edm.p_std)},
               {"objective", "clean"},
               {"step", std::to_string(step)},
               {"batch", std::to_string(cfg.batch)},
               {"lr", std::to_string(cfg.lr)},
               {"seed", std::to_string(cfg.seed)},
               {"slices", std::to_string(n)},
               {"torch", TORCH_VERSION}};
  write_tensor_file(out, file);
}

int64_t read_step(torch::serialize::InputArchive& ar, const std::string& path) {
  c10::IValue v;
  AMBIENT_CHECK(ar.try_read("step", v) && v.isInt(), "resume: ", path, " holds no step");
  return v.toInt();
}

}  // namespace

torch::Tensor random_smooth_phase(int64_t batch, int64_t h, int64_t w, double strength,
                                  const torch::TensorOptions& o) {
  AMBIENT_CHECK(h >= 5 && w >= 5, "smooth phase: expected images of at least 5x5, got ", h, "x", w);
  auto low = torch::zeros({batch, h, w}, o.dtype(torch::kComplexFloat));
  low.narrow(1, h / 2 - 2, 5).narrow(2, w / 2 - 2, 5).copy_(torch::randn({batch, 5, 5}, o.dtype(torch::kComplexFloat)));
  // Centred inverse FFT (docs/conventions.md): shifts around an ordinary one.
  auto phase = torch::real(torch::fft::fftshift(torch::fft::ifft2(torch::fft::ifftshift(low, {-2, -1})), {-2, -1}));
  return phase / phase.abs().amax({1, 2}, true).clamp_min(1e-12) * strength;
}

EdmDenoiser load_weights_file(const std::string& path, int64_t* step) {
  auto file = read_tensor_file(path);
  AMBIENT_CHECK(file.meta.count("format") && file.meta.at("format") == kWeightsFormat, "weights: ", path,
                " is a tensor file but not network weights (no 'format ", kWeightsFormat, "')");
  EdmConfig edm;
  edm.sigma_data = std::stod(file.value("sigma_data"));
  edm.p_mean = std::stod(file.value("p_mean"));
  edm.p_std = std::stod(file.value("p_std"));
  EdmDenoiser model(UNetConfig::deserialize(file.value("net_config")), edm);
  load_module_tensors(*model, file, path);
  if (step) *step = std::stoll(file.value("step"));
  return model;
}

int64_t train_on_slices(const torch::Tensor& magnitudes, const UNetConfig& net, const EdmConfig& edm,
                        const SliceTrainConfig& cfg, torch::Device device, const std::string& out, bool resume,
                        const SliceMonitor& monitor) {
  AMBIENT_CHECK(magnitudes.dim() == 3 && magnitudes.size(0) > 0, "slice training: expected slices [N, H, W], got ",
                shape_string(magnitudes.sizes().vec()));
  AMBIENT_CHECK(torch::isfinite(magnitudes).all().item<bool>(), "slice training: the slices hold NaN or Inf");
  AMBIENT_CHECK(cfg.steps >= 0 && cfg.batch >= 1 && cfg.lr > 0 && cfg.report_every >= 1,
                "slice training: expected steps >= 0, batch >= 1, lr > 0 and report_every >= 1");
  net.validate();
  const int64_t n = magnitudes.size(0), h = magnitudes.size(1), w = magnitudes.size(2);
  auto slices = magnitudes.to(device, torch::kFloat).contiguous();

  torch::manual_seed(cfg.seed);
  EdmDenoiser model(net, edm);
  auto ema = std::dynamic_pointer_cast<EdmDenoiserImpl>(model->fresh_copy());
  model->to(device);
  ema->to(device);
  auto params = model->parameters();
  auto ema_params = ema->parameters();
  {
    torch::NoGradGuard g;
    for (size_t i = 0; i < params.size(); ++i) ema_params[i].copy_(params[i]);
  }
  torch::optim::Adam opt(params, torch::optim::AdamOptions(cfg.lr));
  int64_t step = 0;
  if (resume) {
    int64_t ema_step = 0;
    auto saved = load_weights_file(out, &ema_step);
    AMBIENT_CHECK(saved->net->config().serialize() == net.serialize(), "resume: ", out,
                  " was trained with another network configuration: ", saved->net->config().serialize());
    {
      torch::NoGradGuard g;
      auto src = saved->parameters();
      for (size_t i = 0; i < ema_params.size(); ++i) ema_params[i].copy_(src[i]);
    }
    torch::serialize::InputArchive m, a;
    load_archive(m, out + ".model.pt", device);
    load_archive(a, out + ".adam.pt", device);
    AMBIENT_CHECK(read_step(m, out + ".model.pt") == ema_step && read_step(a, out + ".adam.pt") == ema_step,
                  "resume: ", out, ", its .model.pt and .adam.pt are from different steps (interrupted while saving?)");
    model->load(m);
    opt.load(a);
    step = ema_step;
    AMBIENT_CHECK(step <= cfg.steps, "resume: ", out, " is at step ", step, ", beyond --steps ", cfg.steps);
  }

  const double beta = std::pow(0.5, 1.0 / std::max(1e-9, cfg.ema_halflife));
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  auto opts = torch::TensorOptions().device(device);
  auto loss_sum = torch::zeros({}, opts.dtype(torch::kFloat));
  int64_t since_report = 0;
  model->train();
  while (step < cfg.steps) {
    torch::manual_seed(step_seed(cfg.seed, step));  // the CPU and every CUDA generator
    const double lr = cfg.lr * std::min(1.0, static_cast<double>(step + 1) / std::max<int64_t>(1, cfg.warmup));
    for (auto& group : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);

    torch::Tensor x0;
    {
      torch::NoGradGuard g;
      auto idx = torch::randint(n, {cfg.batch}, opts.dtype(torch::kLong));
      auto mag = slices.index_select(0, idx);  // [B, H, W]
      if (cfg.flips) {
        auto coin = torch::rand({2, cfg.batch, 1, 1}, opts.dtype(torch::kFloat)) < 0.5;
        mag = torch::where(coin[0], centred_flip(mag, 2), mag);
        mag = torch::where(coin[1], centred_flip(mag, 1), mag);
      }
      auto phase = random_smooth_phase(cfg.batch, h, w, cfg.phase_strength, opts);
      x0 = torch::stack({mag * torch::cos(phase), mag * torch::sin(phase)}, 1);  // [B, 2, H, W]
    }
    auto sigma = (torch::randn({cfg.batch}, opts.dtype(torch::kFloat)) * edm.p_std + edm.p_mean).exp();
    auto noise = noise_like(x0, 1.0);
    torch::Tensor loss;
    {
      Bf16Autocast autocast(cfg.bf16, device.type());
      auto denoised = model->forward(x0 + sigma.reshape({-1, 1, 1, 1}) * noise, sigma, {});
      auto err = (denoised.to(torch::kFloat) - x0).square().mean({1, 2, 3});
      loss = (loss_weight(sigma, edm) * err).mean();
    }
    opt.zero_grad();
    loss.backward();
    if (cfg.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params, cfg.grad_clip);
    opt.step();
    {
      torch::NoGradGuard g;
      for (size_t i = 0; i < params.size(); ++i) ema_params[i].mul_(beta).add_(params[i], 1 - beta);
      loss_sum += loss.detach();
    }
    ++step;
    ++since_report;
    const auto now = std::chrono::steady_clock::now();
    const double elapsed = std::chrono::duration<double>(now - start).count();
    const bool out_of_time = cfg.time_limit_s > 0 && elapsed >= cfg.time_limit_s;
    const bool checkpoint = step % std::max<int64_t>(1, cfg.checkpoint_every) == 0 || step == cfg.steps || out_of_time;
    if (step % cfg.report_every == 0 || checkpoint) {
      SliceTrainReport r;
      r.step = step;
      r.steps = cfg.steps;
      r.loss = loss_sum.item<double>() / static_cast<double>(since_report);  // synchronises the device
      AMBIENT_CHECK(std::isfinite(r.loss), "slice training: the loss became ", r.loss, " before step ", step,
                    "; lower --lr");
      const auto synced = std::chrono::steady_clock::now();
      r.lr = lr;
      r.images_per_s = static_cast<double>(since_report * cfg.batch) /
                       std::max(1e-9, std::chrono::duration<double>(synced - last).count());
      r.elapsed_s = std::chrono::duration<double>(synced - start).count();
      if (checkpoint) {
        save_run(out, *model, *ema, opt, net, edm, cfg, step, n);
        r.checkpointed = true;
      }
      if (monitor) monitor(r);
      loss_sum.zero_();
      since_report = 0;
      last = std::chrono::steady_clock::now();
    }
    if (out_of_time) break;
  }
  if (step == cfg.steps && !std::filesystem::exists(out)) save_run(out, *model, *ema, opt, net, edm, cfg, step, n);
  return step;
}

}  // namespace ambient::diffusion
