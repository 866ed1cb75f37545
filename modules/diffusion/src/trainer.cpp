// The training loop, checkpoints and resume. All randomness of step t (batch order, flips, σ, noise, Ã, dropout)
// is derived from (seed, t), so a checkpoint needs only weights, EMA, optimiser state and the step.
#include "ambient/diffusion/trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <chrono>
#include <cstring>
#include <cmath>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/error.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/linear_operator.hpp"

namespace ambient::diffusion {
namespace {

constexpr const char* kFormat = "ambient-checkpoint";
constexpr int64_t kVersion = 1;

uint64_t step_seed(uint64_t seed, int64_t step, uint64_t salt) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(step) * 0xBF58476D1CE4E5B9ull + salt;
  z = (z ^ (z >> 31)) * 0x94D049BB133111EBull;
  return z ^ (z >> 29);
}

void copy_parameters(const torch::nn::Module& from, torch::nn::Module& to) {
  torch::NoGradGuard g;
  auto src = from.named_parameters(true);
  for (auto& p : to.named_parameters(true)) p.value().copy_(src[p.key()]);
  auto bsrc = from.named_buffers(true);
  for (auto& b : to.named_buffers(true)) b.value().copy_(bsrc[b.key()]);
}

ModelPtr clone_model(const ModelPtr& m) {
  auto c = m->fresh_copy();
  copy_parameters(*m, *c);
  return c;
}

std::unique_ptr<torch::optim::Adam> make_optimizer(const ModelPtr& model, const TrainConfig& cfg) {
  return std::make_unique<torch::optim::Adam>(model->parameters(), torch::optim::AdamOptions(cfg.lr));
}

template <typename T>
T read_value(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path);

template <>
std::string read_value(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  AMBIENT_CHECK(ar.try_read(key, v) && v.isString(), "checkpoint ", path, ": missing '", key,
                "' (not an ambient checkpoint, or a damaged one)");
  return v.toStringRef();
}

template <>
double read_value(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  AMBIENT_CHECK(ar.try_read(key, v) && v.isDouble(), "checkpoint ", path, ": missing number '", key, "'");
  return v.toDouble();
}

template <>
int64_t read_value(torch::serialize::InputArchive& ar, const std::string& key, const std::string& path) {
  c10::IValue v;
  AMBIENT_CHECK(ar.try_read(key, v) && v.isInt(), "checkpoint ", path, ": missing integer '", key, "'");
  return v.toInt();
}

torch::serialize::InputArchive open_archive(const std::string& path) {
  AMBIENT_CHECK(std::filesystem::exists(path), "checkpoint: file not found: ", path);
  torch::serialize::InputArchive ar;
  try {
    ar.load_from(path);
  } catch (const c10::Error& e) {
    fail("checkpoint: cannot read ", path, " (truncated or not an ambient checkpoint): ", e.what_without_backtrace());
  }
  const auto format = read_value<std::string>(ar, "format", path);
  AMBIENT_CHECK(format == kFormat, "checkpoint ", path, ": expected format '", kFormat, "', got '", format, "'");
  const auto version = read_value<int64_t>(ar, "version", path);
  AMBIENT_CHECK(version == kVersion, "checkpoint ", path, ": version ", version, " is not supported (expected ",
                kVersion, ")");
  return ar;
}

void load_module(torch::serialize::InputArchive& ar, const std::string& key, torch::nn::Module& m,
                 const std::string& path) {
  torch::serialize::InputArchive sub;
  AMBIENT_CHECK(ar.try_read(key, sub), "checkpoint ", path, ": missing '", key, "'");
  try {
    m.load(sub);
  } catch (const c10::Error& e) {
    fail("checkpoint ", path, ": '", key, "' does not fit the network it describes: ", e.what_without_backtrace());
  }
}

// The architecture a checkpoint describes, with freshly initialised weights.
ModelPtr build_model(torch::serialize::InputArchive& ar, const std::string& path) {
  c10::IValue kind_value;
  const std::string kind = ar.try_read("model_kind", kind_value) ? kind_value.toStringRef() : "edm-unet";
  if (kind == "torchscript") {
    torch::Tensor bytes;
    AMBIENT_CHECK(ar.try_read("torchscript", bytes), "checkpoint ", path, ": TorchScript model without its archive");
    bytes = bytes.contiguous();
    return std::make_shared<ScriptedDenoiserImpl>(
        std::string(static_cast<const char*>(bytes.data_ptr()), static_cast<size_t>(bytes.numel())));
  }
  AMBIENT_CHECK(kind == "edm-unet", "checkpoint ", path, ": unknown model kind '", kind, "'");
  const auto net = UNetConfig::deserialize(read_value<std::string>(ar, "net_config", path));
  EdmConfig edm;
  edm.sigma_data = read_value<double>(ar, "sigma_data", path);
  edm.p_mean = read_value<double>(ar, "p_mean", path);
  edm.p_std = read_value<double>(ar, "p_std", path);
  return EdmDenoiser(net, edm).ptr();
}

torch::Tensor zero_filled_channels(const Batch& b) {
  auto m = b.lines.to(torch::kFloat).reshape({b.lines.size(0), 1, b.lines.size(1), 1});
  return to_channels(mri::make_sense(b.maps, m)->adjoint(b.ksp * m));
}

}  // namespace

bool is_ambient_checkpoint(const std::string& path) {
  if (!std::filesystem::exists(path)) return false;
  try {
    torch::serialize::InputArchive ar;
    ar.load_from(path);
    c10::IValue v;
    return ar.try_read("format", v) && v.isString() && v.toStringRef() == kFormat;
  } catch (const c10::Error&) {
    return false;
  }
}

Objective parse_objective(const std::string& name) {
  if (name == "clean") return Objective::clean;
  if (name == "ambient-image" || name == "block") return Objective::ambient_image;
  if (name == "ambient-fourier" || name == "fourier") return Objective::ambient_fourier;
  if (name == "naive") return Objective::naive;
  fail("objective: expected clean|ambient-image|ambient-fourier|naive, got '", name, "'");
}

std::string objective_name(Objective o) {
  switch (o) {
    case Objective::clean: return "clean";
    case Objective::ambient_image: return "ambient-image";
    case Objective::ambient_fourier: return "ambient-fourier";
    case Objective::naive: return "naive";
  }
  return "?";
}

TrainState new_state(const UNetConfig& net, const EdmConfig& edm, const TrainConfig& cfg) {
  torch::manual_seed(cfg.seed);
  TrainState s;
  s.model = EdmDenoiser(net, edm).ptr();
  s.ema = clone_model(s.model);
  s.optimizer = make_optimizer(s.model, cfg);
  s.objective = objective_name(cfg.objective);
  return s;
}

TrainState load_state(const std::string& path, const TrainConfig& cfg, bool for_resume, int64_t extra_cond) {
  TrainState s;
  if (!for_resume && std::filesystem::exists(path) && !is_ambient_checkpoint(path)) {
    // A TorchScript foundation: fine-tuned as it is (it takes no mask channel).
    s.model = load_torchscript(path);
    s.ema = clone_model(s.model);
    s.optimizer = make_optimizer(s.model, cfg);
    s.objective = objective_name(cfg.objective);
    return s;
  }
  auto ar = open_archive(path);
  s.objective = read_value<std::string>(ar, "objective", path);
  s.model = build_model(ar, path);
  s.ema = s.model->fresh_copy();
  load_module(ar, "ema", *s.ema, path);
  torch::serialize::InputArchive model_archive;
  const bool slim = !ar.try_read("model", model_archive);
  if (slim) copy_parameters(*s.ema, *s.model);  // exported checkpoints keep only the EMA weights
  else load_module(ar, "model", *s.model, path);
  if (for_resume) {
    AMBIENT_CHECK(!slim, "resume: ", path, " is an exported (EMA-only) checkpoint; continue from it with --init");
    AMBIENT_CHECK(extra_cond == 0, "resume: cannot change the network's inputs when resuming");
    s.step = read_value<int64_t>(ar, "step", path);
    s.optimizer = make_optimizer(s.model, cfg);
    torch::serialize::InputArchive opt;
    AMBIENT_CHECK(ar.try_read("optimizer", opt), "checkpoint ", path, ": no optimiser state to resume from");
    s.optimizer->load(opt);
  } else {
    // A foundation: its EMA weights are the model to start from; the fine-tune gets a fresh optimiser.
    copy_parameters(*s.ema, *s.model);
    if (extra_cond > 0) {
      auto edm = std::dynamic_pointer_cast<EdmDenoiserImpl>(s.model);
      AMBIENT_CHECK(edm != nullptr, "fine-tune: only EDM UNet foundations can be widened for mask channels");
      edm->net->widen_input(extra_cond);
    }
    s.ema = clone_model(s.model);
    s.optimizer = make_optimizer(s.model, cfg);
    s.objective = objective_name(cfg.objective);
  }
  return s;
}

void save_checkpoint(const std::string& path, const TrainState& s, const TrainConfig& cfg, bool slim) {
  torch::serialize::OutputArchive ar;
  ar.write("format", c10::IValue(std::string(kFormat)));
  ar.write("version", c10::IValue(kVersion));
  ar.write("model_kind", c10::IValue(s.model->kind()));
  if (auto scripted = std::dynamic_pointer_cast<ScriptedDenoiserImpl>(s.model)) {
    const auto& bytes = scripted->archive();
    auto t = torch::empty({static_cast<int64_t>(bytes.size())}, torch::kUInt8);
    std::memcpy(t.data_ptr(), bytes.data(), bytes.size());
    ar.write("torchscript", t);
  } else {
    ar.write("net_config", c10::IValue(s.model->config_string()));
  }
  const EdmConfig edm = s.model->training_edm();
  ar.write("sigma_data", c10::IValue(edm.sigma_data));
  ar.write("p_mean", c10::IValue(edm.p_mean));
  ar.write("p_std", c10::IValue(edm.p_std));
  ar.write("objective", c10::IValue(s.objective));
  ar.write("step", c10::IValue(s.step));
  ar.write("seed", c10::IValue(static_cast<int64_t>(cfg.seed)));
  ar.write("batch", c10::IValue(cfg.batch));
  ar.write("lr", c10::IValue(cfg.lr));
  ar.write("delta", c10::IValue(cfg.delta));
  torch::serialize::OutputArchive model, ema, opt;
  s.ema->save(ema);
  ar.write("ema", ema);
  if (!slim) {
    s.model->save(model);
    ar.write("model", model);
  }
  if (s.optimizer && !slim) {
    s.optimizer->save(opt);
    ar.write("optimizer", opt);
  }
  mri::write_atomically(path, [&](const std::string& tmp) { ar.save_to(tmp); });
}

namespace {

std::string weight_hash(torch::nn::Module& m) {
  uint64_t h = 1469598103934665603ull;
  for (const auto& p : m.named_parameters(true)) {
    auto t = p.value().contiguous();
    const auto* bytes = static_cast<const unsigned char*>(t.data_ptr());
    const size_t n = static_cast<size_t>(t.numel()) * t.element_size();
    for (size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 1099511628211ull;
  }
  std::ostringstream os;
  os << std::hex << std::setw(16) << std::setfill('0') << h;
  return os.str();
}

}  // namespace

CheckpointInfo describe_checkpoint(const std::string& path) {
  auto ar = open_archive(path);
  CheckpointInfo info;
  info.objective = read_value<std::string>(ar, "objective", path);
  info.step = read_value<int64_t>(ar, "step", path);
  torch::serialize::InputArchive opt;
  info.has_optimizer = ar.try_read("optimizer", opt);
  auto model = build_model(ar, path);
  auto ema = model->fresh_copy();
  load_module(ar, "ema", *ema, path);
  torch::serialize::InputArchive model_archive;
  if (ar.try_read("model", model_archive)) load_module(ar, "model", *model, path);
  else copy_parameters(*ema, *model);  // exported: the EMA weights are the model
  info.net_config = model->config_string();
  info.sigma_data = model->training_edm().sigma_data;
  for (const auto& p : model->parameters()) info.parameters += p.numel();
  info.model_hash = weight_hash(*model);
  info.ema_hash = weight_hash(*ema);
  return info;
}

ModelPtr load_denoiser(const std::string& path) {
  if (std::filesystem::exists(path) && !is_ambient_checkpoint(path)) {
    auto m = load_torchscript(path);
    m->eval();
    return m;
  }
  auto ar = open_archive(path);
  auto d = build_model(ar, path);
  load_module(ar, "ema", *d, path);
  d->eval();
  return d;
}

torch::Tensor batch_loss(const ModelPtr& model, const Batch& b, const TrainConfig& cfg, uint64_t draw_seed,
                         bool holdout) {
  auto gen = at::detail::createCPUGenerator(draw_seed);
  std::mt19937_64 rng(draw_seed);
  const EdmConfig edm = model->training_edm();
  auto d = as_denoiser(model);
  const int64_t n = b.size();
  switch (cfg.objective) {
    case Objective::clean:
    case Objective::naive: {
      // naive: the corrupted image (zero-filled, or with holes) taken as if it were clean
      auto x0 = b.image.defined() ? b.image : zero_filled_channels(b);
      NoiseDraw draw{sample_sigma(n, edm, gen), torch::randn(x0.sizes(), gen, torch::kFloat)};
      return cfg.objective == Objective::clean ? clean_loss(d, x0, draw, edm) : naive_loss(d, x0, draw, edm);
    }
    case Objective::ambient_image: {
      AMBIENT_CHECK(b.mask.defined(), "ambient-image objective: the data carry no corruption mask (use block data)");
      auto a_tilde = cfg.extra_blocks > 0 ? further_corrupt_blocks(b.mask, cfg.extra_blocks, 4, 16, rng)
                                          : further_corrupt_pixels(b.mask, cfg.delta, gen);
      NoiseDraw draw{sample_sigma(n, edm, gen), torch::randn(b.image.sizes(), gen, torch::kFloat)};
      return ambient_image_loss(d, b.image, b.mask, a_tilde, draw, edm, holdout ? b.mask - a_tilde : torch::Tensor());
    }
    case Objective::ambient_fourier: {
      AMBIENT_CHECK(b.ksp.defined(), "ambient-fourier objective: the data carry no k-space (use Fourier data)");
      FourierBatch fb{b.ksp, b.maps, b.lines, b.calib};
      auto mt = further_subsample_lines(b.lines, b.calib, cfg.delta, rng);
      NoiseDraw draw{sample_sigma(n, edm, gen),
                     torch::randn({n, b.ksp.size(2), b.ksp.size(3)}, gen, torch::kComplexFloat)};
      return ambient_fourier_loss(d, fb, mt, draw, edm, holdout ? (b.lines & ~mt) : torch::Tensor());
    }
  }
  fail("objective: unknown");
}

void train(TrainState& s, const TrainConfig& cfg, std::shared_ptr<Source> data, std::shared_ptr<Source> validation,
           const std::string& checkpoint, const TrainMonitor& monitor) {
  AMBIENT_CHECK(cfg.steps >= 0 && cfg.batch >= 1, "training: expected steps >= 0 and batch >= 1");
  AMBIENT_CHECK(cfg.lr > 0 && std::isfinite(cfg.lr), "training: expected a positive learning rate, got ", cfg.lr);
  AMBIENT_CHECK(cfg.delta >= 0 && cfg.delta < 1, "training: expected δ in [0, 1), got ", cfg.delta);
  AMBIENT_CHECK(s.step <= cfg.steps, "training: the checkpoint is at step ", s.step, ", beyond --steps ", cfg.steps);
  if (cfg.threads > 0) torch::set_num_threads(cfg.threads);
  s.objective = objective_name(cfg.objective);
  const double beta = std::pow(0.5, 1.0 / std::max(1e-9, cfg.ema_halflife));
  Loader loader(std::move(data), cfg.batch, cfg.seed, s.step, cfg.flips);
  s.model->train();
  auto params = s.model->parameters();
  auto ema_params = s.ema->parameters();
  auto last = std::chrono::steady_clock::now();
  while (s.step < cfg.steps) {
    Batch b = loader.next();
    const double lr = cfg.lr * std::min(1.0, static_cast<double>(s.step + 1) / std::max<int64_t>(1, cfg.warmup));
    for (auto& group : s.optimizer->param_groups())
      static_cast<torch::optim::AdamOptions&>(group.options()).lr(lr);
    torch::manual_seed(step_seed(cfg.seed, s.step, 3));  // dropout
    torch::Tensor loss;
    {
      Bf16Autocast autocast(cfg.bf16);
      loss = batch_loss(s.model, b, cfg, step_seed(cfg.seed, s.step, 1), false);
    }
    AMBIENT_CHECK(std::isfinite(loss.item<double>()), "training: the loss became ", loss.item<double>(), " at step ",
                  s.step, "; lower --lr or check the data for NaNs");
    s.optimizer->zero_grad();
    loss.backward();
    if (cfg.grad_clip > 0) torch::nn::utils::clip_grad_norm_(params, cfg.grad_clip);
    s.optimizer->step();
    {
      torch::NoGradGuard g;
      for (size_t i = 0; i < params.size(); ++i) ema_params[i].mul_(beta).add_(params[i], 1 - beta);
    }
    ++s.step;
    StepReport r;
    r.step = s.step;
    r.steps = cfg.steps;
    r.loss = loss.item<double>();
    r.lr = lr;
    const auto now = std::chrono::steady_clock::now();
    r.images_per_s = cfg.batch / std::max(1e-9, std::chrono::duration<double>(now - last).count());
    last = now;
    if (validation && cfg.val_every > 0 && (s.step % cfg.val_every == 0 || s.step == cfg.steps)) {
      torch::NoGradGuard g;
      s.ema->eval();
      Loader val(validation, cfg.batch, cfg.seed + 7, 0, false, 1);
      double total = 0;
      for (int64_t i = 0; i < cfg.val_batches; ++i)
        total += batch_loss(s.ema, val.next(), cfg, step_seed(cfg.seed + 7, i, 2), true).item<double>();
      r.val_loss = total / std::max<int64_t>(1, cfg.val_batches);
      last = std::chrono::steady_clock::now();  // validation time is not training throughput
    }
    if (!checkpoint.empty() && (s.step % std::max<int64_t>(1, cfg.checkpoint_every) == 0 || s.step == cfg.steps)) {
      save_checkpoint(checkpoint, s, cfg);
      r.checkpointed = true;
      last = std::chrono::steady_clock::now();
    }
    if (monitor) monitor(r);
  }
}

}  // namespace ambient::diffusion
