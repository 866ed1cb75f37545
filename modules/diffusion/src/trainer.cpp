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

#include "ambient/core/atomic_write.hpp"
#include "ambient/core/error.hpp"
#include "ambient/core/tensor_file.hpp"
#include "ambient/diffusion/objectives.hpp"

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

torch::Tensor batch_loss(const ModelPtr& model, const Batch& b, const TrainConfig& cfg, uint64_t draw_seed,
                         bool holdout, int64_t first_index) {
  const EdmConfig edm = model->training_edm();
  const auto objective =
      make_objective(cfg.objective, {cfg.delta, cfg.extra_blocks, cfg.extra_block_min, cfg.extra_block_max});
  const int64_t n = b.size();
  // Every example draws Ã, σ and its noise from its own generator, seeded by (draw_seed, global index): a batch
  // split over ranks (distributed.hpp) draws exactly what the whole batch draws in one process.
  std::vector<torch::Tensor> sigma, noise, corruption;
  for (int64_t j = 0; j < n; ++j) {
    const uint64_t example_seed = step_seed(draw_seed, first_index + j, 5);
    auto gen = at::detail::createCPUGenerator(example_seed);
    std::mt19937_64 rng(example_seed);
    auto a_tilde = objective->draw_corruption(b, j, gen, rng);
    if (a_tilde.defined()) corruption.push_back(a_tilde);
    sigma.push_back(sample_sigma(1, edm, gen));
    noise.push_back(objective->draw_noise(b, gen));
  }
  NoiseDraw draw{torch::cat(sigma), torch::cat(noise)};
  return objective->loss(as_denoiser(model), b, corruption.empty() ? torch::Tensor() : torch::cat(corruption), draw,
                         edm, holdout);
}

namespace {

// A float64 checksum of the weights: ranks that hold the same weights give bit-identical sums.
double weight_checksum(torch::nn::Module& m) {
  torch::NoGradGuard g;
  double total = 0;
  for (const auto& p : m.parameters()) total += p.to(torch::kDouble).sum().item<double>();
  return total;
}

double string_checksum(const std::string& text) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : text) h = (h ^ c) * 1099511628211ull;
  return static_cast<double>(h >> 11);  // exact in a double
}

void join_job(TrainState& s, const TrainConfig& cfg, Group& group) {
  AMBIENT_CHECK(group.agree(string_checksum(s.model->config_string())) && group.agree(static_cast<double>(s.step)) &&
                    group.agree(static_cast<double>(cfg.batch)) && group.agree(static_cast<double>(cfg.seed)) &&
                    group.agree(static_cast<double>(cfg.steps)) && group.agree(string_checksum(s.objective)),
                "distributed: the ranks disagree on the network, step, batch, seed, steps or objective; start every "
                "rank with the same command line (and --resume on all or none)");
  std::vector<torch::Tensor> state;
  for (auto* m : {s.model.get(), s.ema.get()}) {
    for (auto& p : m->parameters()) state.push_back(p);
    for (auto& b : m->buffers()) state.push_back(b);
  }
  group.broadcast(state);  // every rank starts from rank 0's weights
}

}  // namespace

void train(TrainState& s, const TrainConfig& cfg, std::shared_ptr<Source> data, std::shared_ptr<Source> validation,
           const std::string& checkpoint, const TrainMonitor& monitor, std::shared_ptr<Group> group) {
  AMBIENT_CHECK(cfg.steps >= 0 && cfg.batch >= 1, "training: expected steps >= 0 and batch >= 1");
  AMBIENT_CHECK(cfg.lr > 0 && std::isfinite(cfg.lr), "training: expected a positive learning rate, got ", cfg.lr);
  AMBIENT_CHECK(cfg.delta >= 0 && cfg.delta < 1, "training: expected δ in [0, 1), got ", cfg.delta);
  AMBIENT_CHECK(s.step <= cfg.steps, "training: the checkpoint is at step ", s.step, ", beyond --steps ", cfg.steps);
  if (!group) group = std::make_shared<Group>();
  const int64_t rank = group->rank(), world = group->world();
  if (cfg.threads > 0) torch::set_num_threads(cfg.threads);
  AMBIENT_CHECK(s.noise_convention == kNoiseConvention || cfg.objective != Objective::ambient_fourier,
                "training: this checkpoint was trained with the ambient-Fourier objective's old noise draw (σ/√2 per "
                "channel, noise convention ", s.noise_convention, "); resuming would mix two conventions. Fine-tune "
                "from it with --init instead of --resume (docs/conventions.md, \"Noise\")");
  s.objective = objective_name(cfg.objective);
  s.noise_convention = kNoiseConvention;
  if (group->distributed()) join_job(s, cfg, *group);
  const double beta = std::pow(0.5, 1.0 / std::max(1e-9, cfg.ema_halflife));
  Loader loader(std::move(data), cfg.batch, cfg.seed, s.step, cfg.flips, 2, rank, world);
  s.model->train();
  auto params = s.model->parameters();
  auto ema_params = s.ema->parameters();
  GradientSync sync(group, params, cfg.bucket_mb);
  auto last = std::chrono::steady_clock::now();
  while (s.step < cfg.steps) {
    Batch b = loader.next();
    const double lr = cfg.lr * std::min(1.0, static_cast<double>(s.step + 1) / std::max<int64_t>(1, cfg.warmup));
    for (auto& group_options : s.optimizer->param_groups())
      static_cast<torch::optim::AdamOptions&>(group_options.options()).lr(lr);
    torch::manual_seed(step_seed(cfg.seed, s.step, 3 + 1000 * static_cast<uint64_t>(rank)));  // dropout
    torch::Tensor loss;
    {
      Bf16Autocast autocast(cfg.bf16);
      loss = batch_loss(s.model, b, cfg, step_seed(cfg.seed, s.step, 1), false,
                        Loader::first_index(s.step, cfg.batch, rank, world));
    }
    s.optimizer->zero_grad();
    sync.begin();
    loss.backward();
    double loss_value = loss.item<double>();
    const double comm_s = sync.finish(loss_value);  // gradients and loss: means over ranks
    // Every rank sees the same mean loss, so all stop together.
    AMBIENT_CHECK(std::isfinite(loss_value), "training: the loss became ", loss_value, " at step ", s.step,
                  "; lower --lr or check the data for NaNs");
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
    r.loss = loss_value;
    r.lr = lr;
    r.comm_s = comm_s;
    const auto now = std::chrono::steady_clock::now();
    r.images_per_s = cfg.batch * world / std::max(1e-9, std::chrono::duration<double>(now - last).count());
    last = now;
    if (validation && cfg.val_every > 0 && (s.step % cfg.val_every == 0 || s.step == cfg.steps)) {
      // Validation batch i runs on rank i mod W; the same batches and draws as in one process.
      torch::NoGradGuard g;
      s.ema->eval();
      Loader val(validation, cfg.batch, cfg.seed + 7, 0, false, 1, rank, world);
      auto total = torch::zeros({1}, torch::kFloat);
      for (int64_t i = rank; i < cfg.val_batches; i += world)
        total += batch_loss(s.ema, val.next(), cfg, step_seed(cfg.seed + 7, i, 2), true).to(torch::kFloat);
      group->allreduce_sum(total);
      r.val_loss = total.item<double>() / std::max<int64_t>(1, cfg.val_batches);
      last = std::chrono::steady_clock::now();  // validation time is not training throughput
    }
    if (!checkpoint.empty() && (s.step % std::max<int64_t>(1, cfg.checkpoint_every) == 0 || s.step == cfg.steps)) {
      // Ranks must hold identical weights; a checksum compare costs one tiny all-reduce.
      AMBIENT_CHECK(group->agree(weight_checksum(*s.model)),
                    "distributed: the ranks' weights diverged at step ", s.step, " (a bug, or ranks built with "
                    "different LibTorch versions); the last checkpoint is kept");
      if (group->is_main()) save_checkpoint(checkpoint, s, cfg);
      r.checkpointed = true;
      last = std::chrono::steady_clock::now();
    }
    if (monitor && group->is_main()) monitor(r);
  }
}

}  // namespace ambient::diffusion
