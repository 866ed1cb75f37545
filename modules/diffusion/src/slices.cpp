// Clean slices in memory on any device (slices.hpp): their batch source, the portable run files, and pretraining
// on them through the one training loop.
#include "ambient/diffusion/slices.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>

#include "ambient/core/atomic_write.hpp"
#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/mri/phase.hpp"

namespace ambient::diffusion {
namespace {

constexpr const char* kWeightsFormat = "ambient-weights";

void save_archive(const std::string& path, const std::function<void(torch::serialize::OutputArchive&)>& fill) {
  torch::serialize::OutputArchive ar;
  fill(ar);
  write_atomically(path, [&](const std::string& tmp) { ar.save_to(tmp); });
}

// The run files: resume state first, the EMA tensor file (which names the step) last.
void save_run(const std::string& out, const TrainState& s, const TrainConfig& cfg, int64_t slices) {
  save_archive(out + ".model.pt", [&](auto& ar) {
    ar.write("step", c10::IValue(s.step));
    s.model->save(ar);
  });
  save_archive(out + ".adam.pt", [&](auto& ar) {
    ar.write("step", c10::IValue(s.step));
    s.optimizer->save(ar);
  });
  const EdmConfig edm = s.model->training_edm();
  auto file = module_tensors(*s.ema);
  file.meta = {{"format", kWeightsFormat},
               {"net_config", s.model->config_string()},
               {"sigma_data", std::to_string(edm.sigma_data)},
               {"p_mean", std::to_string(edm.p_mean)},
               {"p_std", std::to_string(edm.p_std)},
               {"objective", "clean"},
               {"step", std::to_string(s.step)},
               {"batch", std::to_string(cfg.batch)},
               {"lr", std::to_string(cfg.lr)},
               {"seed", std::to_string(cfg.seed)},
               {"slices", std::to_string(slices)},
               {"torch", TORCH_VERSION}};
  write_tensor_file(out, file);
}

int64_t read_step(torch::serialize::InputArchive& ar, const std::string& path) {
  c10::IValue v;
  AMBIENT_CHECK(ar.try_read("step", v) && v.isInt(), "resume: ", path, " holds no step");
  return v.toInt();
}

// The run saved at `out`, on `device`, as new_state would have made it and training left it.
TrainState load_run(const std::string& out, const UNetConfig& net, const EdmConfig& edm, const TrainConfig& cfg,
                    torch::Device device) {
  int64_t ema_step = 0;
  auto saved = load_weights_file(out, &ema_step);
  AMBIENT_CHECK(saved->net->config().serialize() == net.serialize(), "resume: ", out,
                " was trained with another network configuration: ", saved->net->config().serialize());
  TrainState s = new_state(net, edm, cfg);
  {
    torch::NoGradGuard g;
    auto src = saved->parameters();
    auto dst = s.ema->parameters();
    for (size_t i = 0; i < dst.size(); ++i) dst[i].copy_(src[i]);
  }
  s.model->to(device);
  s.ema->to(device);
  torch::serialize::InputArchive m, a;
  load_archive(m, out + ".model.pt", device);
  load_archive(a, out + ".adam.pt", device);
  AMBIENT_CHECK(read_step(m, out + ".model.pt") == ema_step && read_step(a, out + ".adam.pt") == ema_step, "resume: ",
                out, ", its .model.pt and .adam.pt are from different steps (interrupted while saving?)");
  s.model->load(m);
  s.optimizer->load(a);
  s.step = ema_step;
  return s;
}

}  // namespace

TrainConfig slice_pretrain_defaults() {
  TrainConfig c;
  c.objective = Objective::clean;
  c.steps = 40000;
  c.batch = 128;
  c.lr = 6e-4;
  c.warmup = 1000;
  c.ema_halflife = 2000;
  c.grad_clip = 1.0;
  c.seed = 1;
  c.bf16 = true;
  c.checkpoint_every = 1000;
  c.val_every = 0;
  return c;
}

// The order's view of the slices: one file of N slices (nothing is loaded through it).
class SliceBatches::Count final : public Source {
 public:
  explicit Count(int64_t n) : n_(n) {}
  int64_t files() const override { return 1; }
  int64_t slices(int64_t) const override { return n_; }
  Example load(int64_t, int64_t) override { fail("SliceBatches: slices are indexed, not loaded"); }

 private:
  int64_t n_;
};

SliceBatches::SliceBatches(const torch::Tensor& magnitudes, int64_t batch, uint64_t seed, int64_t first_step,
                           const SliceAugment& augment, torch::Device device)
    : batch_(batch), seed_(seed), step_(first_step), augment_(augment) {
  AMBIENT_CHECK(magnitudes.dim() == 3 && magnitudes.size(0) > 0, "slice training: expected slices [N, H, W], got ",
                shape_string(magnitudes.sizes().vec()));
  AMBIENT_CHECK(magnitudes.size(1) >= 5 && magnitudes.size(2) >= 5,
                "slice training: expected slices of at least 5x5 (the smooth phase's band), got ", magnitudes.size(1),
                "x", magnitudes.size(2));
  AMBIENT_CHECK(torch::isfinite(magnitudes).all().item<bool>(), "slice training: the slices hold NaN or Inf");
  AMBIENT_CHECK(batch >= 1 && first_step >= 0, "slice training: expected batch >= 1 and a step >= 0");
  slices_ = magnitudes.to(device, torch::kFloat).contiguous();
  count_ = std::make_unique<Count>(magnitudes.size(0));
  order_ = std::make_unique<Order>(*count_, seed);
}

SliceBatches::~SliceBatches() = default;

Batch SliceBatches::next() {
  std::vector<int64_t> index(batch_);
  std::vector<float> flip_h(batch_), flip_v(batch_);
  auto low = torch::empty({batch_, 5, 5}, torch::kComplexFloat);
  for (int64_t i = 0; i < batch_; ++i) {
    const int64_t k = first_index(step_, batch_, 0, 1) + i;
    const Pick p = pick(*order_, seed_, k, augment_.flips);
    index[i] = p.slice;
    flip_h[i] = p.horizontal;
    flip_v[i] = p.vertical;
    auto gen = at::detail::createCPUGenerator(derive_seed(seed_, SeedStream::slice_phase, static_cast<uint64_t>(k)));
    low[i].copy_(torch::randn({5, 5}, gen, torch::kComplexFloat));
  }
  ++step_;
  const auto device = slices_.device();
  auto coin = [&](const std::vector<float>& v) {
    return torch::tensor(v).to(device).reshape({batch_, 1, 1}) > 0.5;
  };
  auto mag = slices_.index_select(0, torch::tensor(index, torch::kLong).to(device));  // [B, H, W]
  mag = torch::where(coin(flip_h), centred_flip(mag, 2), mag);
  mag = torch::where(coin(flip_v), centred_flip(mag, 1), mag);
  // torch's FFT on every device, so that the LibTorch-only build trains byte for byte as the in-tree (FFTW) one.
  auto phase = mri::smooth_phase_from(low.to(device), mag.size(1), mag.size(2), augment_.phase_strength,
                                      mri::FftBackend::torch).to(torch::kFloat);
  Batch b;
  b.image = torch::stack({mag * torch::cos(phase), mag * torch::sin(phase)}, 1);  // [B, 2, H, W]
  return b;
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
                        const TrainConfig& cfg, const SliceAugment& augment, torch::Device device,
                        const std::string& out, bool resume, const TrainMonitor& monitor) {
  AMBIENT_CHECK(cfg.objective == Objective::clean, "slice training: clean slices train the clean objective, not ",
                objective_name(cfg.objective));
  net.validate();
  TrainState s;
  if (resume) {
    s = load_run(out, net, edm, cfg, device);
  } else {
    s = new_state(net, edm, cfg);
    s.model->to(device);
    s.ema->to(device);
  }
  AMBIENT_CHECK(s.step <= cfg.steps, "resume: ", out, " is at step ", s.step, ", beyond --steps ", cfg.steps);
  const int64_t n = magnitudes.size(0);
  TrainIO io;
  io.batches = std::make_shared<SliceBatches>(magnitudes, cfg.batch, cfg.seed, s.step, augment, device);
  io.save = [&](const TrainState& state, const TrainConfig& c) { save_run(out, state, c, n); };
  io.monitor = monitor;
  train(s, cfg, io);
  if (s.step == cfg.steps && !std::filesystem::exists(out)) save_run(out, s, cfg, n);
  return s.step;
}

}  // namespace ambient::diffusion
