// Checkpoints (checkpoint.hpp): one versioned LibTorch archive with the network's description, the weights, EMA,
// optimiser state, step and the settings that trained them; checked before LibTorch parses it (tensor_file.hpp).
#include "ambient/diffusion/checkpoint.hpp"

#include <cmath>
#include <cstring>
#include <filesystem>
#include <iomanip>
#include <sstream>

#include "ambient/core/atomic_write.hpp"
#include "ambient/core/error.hpp"
#include "ambient/core/tensor_file.hpp"

namespace ambient::diffusion {
namespace {

constexpr const char* kFormat = "ambient-checkpoint";
constexpr int64_t kVersion = 1;

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
  torch::serialize::InputArchive ar;
  load_archive(ar, path);
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
  for (const auto& p : m.named_parameters())
    AMBIENT_CHECK(torch::isfinite(p.value()).all().item<bool>(), "checkpoint ", path, ": '", key, "' weight ",
                  p.key(), " holds NaN or infinite values (a diverged run, or a damaged file)");
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
  c10::IValue precond;  // recorded since the masked preconditioning (2026-12-03); standard before
  if (ar.try_read("precond", precond)) {
    AMBIENT_CHECK(precond.isString(), "checkpoint ", path, ": 'precond' is not a string");
    edm.precond = parse_precond(precond.toStringRef());
  }
  return EdmDenoiser(net, edm).ptr();
}

// The noise convention of a checkpoint: recorded since convention 2; before it, only the ambient-Fourier objective
// drew differently (trainer.hpp, kNoiseConvention).
int64_t read_noise_convention(torch::serialize::InputArchive& ar, const std::string& objective,
                              const std::string& path) {
  c10::IValue v;
  if (!ar.try_read("noise_convention", v)) return objective == "ambient-fourier" ? 1 : kNoiseConvention;
  AMBIENT_CHECK(v.isInt() && v.toInt() >= 1 && v.toInt() <= kNoiseConvention, "checkpoint ", path,
                ": expected a noise convention 1 to ", kNoiseConvention, ", got ", v.tagKind(),
                v.isInt() ? " " + std::to_string(v.toInt()) : std::string(), " (written by a newer ambient?)");
  return v.toInt();
}

// A convention-1 network learnt E[x0 | x0 + (σ/√2) n] when told σ, so for noise σ it is told √2 σ.
struct SigmaRescaledImpl : DenoiserModule {
  SigmaRescaledImpl(ModelPtr inner_model, double factor) : inner(std::move(inner_model)), factor(factor) {
    register_module("inner", inner);
  }
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cond) override {
    return inner->forward(x, sigma * factor, cond);
  }
  int64_t cond_channels() const override { return inner->cond_channels(); }
  std::string kind() const override { return inner->kind(); }
  std::string config_string() const override { return inner->config_string(); }
  std::shared_ptr<DenoiserModule> fresh_copy() const override {
    return std::make_shared<SigmaRescaledImpl>(inner->fresh_copy(), factor);
  }
  EdmConfig training_edm() const override { return inner->training_edm(); }
  ModelPtr inner;
  double factor;
};

}  // namespace

bool is_ambient_checkpoint(const std::string& path) {
  if (!std::filesystem::exists(path)) return false;
  try {
    torch::serialize::InputArchive ar;
    load_archive(ar, path);
    c10::IValue v;
    return ar.try_read("format", v) && v.isString() && v.toStringRef() == kFormat;
  } catch (const std::exception&) {  // c10::Error, ambient::Error, TorchScript's parse errors
    return false;
  }
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
    s.noise_convention = read_noise_convention(ar, s.objective, path);
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

TrainState foundation_state(const std::string& path, const TrainConfig& cfg) {
  const int64_t needed = cfg.objective == Objective::naive || cfg.objective == Objective::clean ? 0 : 1;
  const auto probe = load_denoiser(path);
  const int64_t have = probe->cond_channels();
  AMBIENT_CHECK(have <= needed, "fine-tune: the foundation ", path, " has ", have, " mask channels, the ",
                objective_name(cfg.objective), " objective uses ", needed);
  const int64_t extra = probe->kind() == "torchscript" ? 0 : needed - have;
  return load_state(path, cfg, false, extra);
}

void set_precond(TrainState& s, Precond precond) {
  for (const auto& m : {s.model, s.ema}) {
    auto edm = std::dynamic_pointer_cast<EdmDenoiserImpl>(m);
    if (precond == Precond::standard && !edm) continue;  // TorchScript foundations have their own
    AMBIENT_CHECK(edm != nullptr, "preconditioning ", precond_name(precond), ": needs an EDM UNet, not a ", m->kind(),
                  " model");
    AMBIENT_CHECK(precond == Precond::standard || edm->cond_channels() >= 1,
                  "preconditioning ", precond_name(precond), ": the model has no mask channel to read Ã from");
    edm->edm.precond = precond;
  }
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
  ar.write("precond", c10::IValue(precond_name(edm.precond)));
  ar.write("objective", c10::IValue(s.objective));
  ar.write("noise_convention", c10::IValue(s.noise_convention));
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
  ambient::write_atomically(path, [&](const std::string& tmp) { ar.save_to(tmp); });
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
  info.noise_convention = read_noise_convention(ar, info.objective, path);
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
  info.cond_channels = model->cond_channels();
  info.sigma_data = model->training_edm().sigma_data;
  info.precond = precond_name(model->training_edm().precond);
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
  ModelPtr d = build_model(ar, path);
  load_module(ar, "ema", *d, path);
  if (read_noise_convention(ar, read_value<std::string>(ar, "objective", path), path) == 1)
    d = std::make_shared<SigmaRescaledImpl>(d, std::sqrt(2.0));
  d->eval();
  return d;
}

}  // namespace ambient::diffusion
