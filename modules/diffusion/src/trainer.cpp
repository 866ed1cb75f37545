// The training loop and resume. All randomness of step t (batch order, flips, σ, noise, Ã, dropout) is derived from
// (seed, t), so a checkpoint (checkpoint.cpp) needs only weights, EMA, optimiser state and the step.
#include "ambient/diffusion/trainer.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <chrono>
#include <cmath>

#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/diffusion/objectives.hpp"

namespace ambient::diffusion {
torch::Tensor batch_loss(const ModelPtr& model, const Batch& b, const TrainConfig& cfg, uint64_t draw_seed,
                         bool holdout, int64_t first_index) {
  const EdmConfig edm = model->training_edm();
  const auto objective = make_objective(cfg.objective, further_corruption(cfg));
  const int64_t n = b.size();
  // Every example draws Ã, σ and its noise from its own generator, seeded by (draw_seed, global index): a batch
  // split over ranks (group.hpp) draws exactly what the whole batch draws in one process. Examples draw in
  // parallel; each writes only its own slots, so the draws do not depend on the threads.
  std::vector<torch::Tensor> sigma(n), noise(n), corruption(n);
  at::parallel_for(0, n, 1, [&](int64_t begin, int64_t end) {
    for (int64_t j = begin; j < end; ++j) {
      const uint64_t example_seed = derive_seed(draw_seed, SeedStream::example_draws, static_cast<uint64_t>(first_index + j));
      auto gen = at::detail::createCPUGenerator(example_seed);
      std::mt19937_64 rng(example_seed);
      corruption[j] = objective->draw_corruption(b, j, gen, rng);
      sigma[j] = sample_sigma(1, edm, gen);
      noise[j] = objective->draw_noise(b, gen);
    }
  });
  AMBIENT_CHECK(std::all_of(corruption.begin(), corruption.end(), [&](const auto& t) {
    return t.defined() == corruption.front().defined();
  }), "training: internal: the objective drew Ã for some examples of a batch only");
  if (!corruption.empty() && !corruption.front().defined()) corruption.clear();
  const auto device = b.device();  // drawn on the CPU whatever the device: the same draws everywhere
  NoiseDraw draw{torch::cat(sigma).to(device), torch::cat(noise).to(device)};
  return objective->loss(as_denoiser(model), b,
                         corruption.empty() ? torch::Tensor() : torch::cat(corruption).to(device), draw, edm, holdout);
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

int64_t train(TrainState& s, const TrainConfig& cfg, const TrainIO& io) {
  AMBIENT_CHECK(cfg.steps >= 0 && cfg.batch >= 1, "training: expected steps >= 0 and batch >= 1");
  AMBIENT_CHECK(cfg.lr > 0 && std::isfinite(cfg.lr), "training: expected a positive learning rate, got ", cfg.lr);
  AMBIENT_CHECK(cfg.delta >= 0 && cfg.delta < 1, "training: expected δ in [0, 1), got ", cfg.delta);
  AMBIENT_CHECK(cfg.time_limit_s >= 0, "training: expected a time limit >= 0 s, got ", cfg.time_limit_s);
  AMBIENT_CHECK(s.step <= cfg.steps, "training: the checkpoint is at step ", s.step, ", beyond --steps ", cfg.steps);
  AMBIENT_CHECK(io.batches != nullptr, "training: no batch source");
  const auto group = io.group ? io.group : std::make_shared<Group>();
  AMBIENT_CHECK(cfg.time_limit_s == 0 || !group->distributed(),
                "training: a time limit needs one process (ranks could stop at different steps)");
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
  s.model->train();
  auto params = s.model->parameters();
  auto ema_params = s.ema->parameters();
  AMBIENT_CHECK(!params.empty(), "training: the model has no parameters");
  const torch::Device device = params.front().device();
  GradientSync sync(group, params, cfg.bucket_mb);
  const auto start = std::chrono::steady_clock::now();
  auto last = start;
  while (s.step < cfg.steps) {
    Batch b = io.batches->next().to(device);
    const double lr = cfg.lr * std::min(1.0, static_cast<double>(s.step + 1) / std::max<int64_t>(1, cfg.warmup));
    for (auto& group_options : s.optimizer->param_groups())
      static_cast<torch::optim::AdamOptions&>(group_options.options()).lr(lr);
    torch::manual_seed(derive_seed(cfg.seed, SeedStream::dropout, static_cast<uint64_t>(s.step), static_cast<uint64_t>(rank)));
    torch::Tensor loss;
    {
      Bf16Autocast autocast(cfg.bf16, device.type());
      loss = batch_loss(s.model, b, cfg, derive_seed(cfg.seed, SeedStream::step_draws, static_cast<uint64_t>(s.step)), false,
                        BatchSource::first_index(s.step, cfg.batch, rank, world));
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
    r.elapsed_s = std::chrono::duration<double>(now - start).count();
    const bool out_of_time = cfg.time_limit_s > 0 && r.elapsed_s >= cfg.time_limit_s;
    last = now;
    if (io.validation && cfg.val_every > 0 && (s.step % cfg.val_every == 0 || s.step == cfg.steps)) {
      // Validation batch i runs on rank i mod W; the same batches and draws as in one process.
      torch::NoGradGuard g;
      s.ema->eval();
      Loader val(io.validation, cfg.batch, derive_seed(cfg.seed, SeedStream::validation_order, 0), 0, false, 1, rank, world);
      auto total = torch::zeros({1}, torch::kFloat);
      for (int64_t i = rank; i < cfg.val_batches; i += world)
        total += batch_loss(s.ema, val.next().to(device), cfg,
                           derive_seed(cfg.seed, SeedStream::validation_draws, static_cast<uint64_t>(i)), true)
                     .to(torch::kCPU, torch::kFloat);
      group->allreduce_sum(total);
      r.val_loss = total.item<double>() / std::max<int64_t>(1, cfg.val_batches);
      last = std::chrono::steady_clock::now();  // validation time is not training throughput
    }
    if (io.save && (s.step % std::max<int64_t>(1, cfg.checkpoint_every) == 0 || s.step == cfg.steps || out_of_time)) {
      // Ranks must hold identical weights; a checksum compare costs one tiny all-reduce.
      AMBIENT_CHECK(group->agree(weight_checksum(*s.model)),
                    "distributed: the ranks' weights diverged at step ", s.step, " (a bug, or ranks built with "
                    "different LibTorch versions); the last checkpoint is kept");
      if (group->is_main()) io.save(s, cfg);
      r.checkpointed = true;
      last = std::chrono::steady_clock::now();
    }
    if (io.monitor && group->is_main()) io.monitor(r);
    if (out_of_time) break;
  }
  return s.step;
}

void train(TrainState& s, const TrainConfig& cfg, std::shared_ptr<Source> data, std::shared_ptr<Source> validation,
           const std::string& checkpoint, const TrainMonitor& monitor, std::shared_ptr<Group> group) {
  AMBIENT_CHECK(cfg.batch >= 1, "training: expected batch >= 1");
  if (!group) group = std::make_shared<Group>();
  if (cfg.threads > 0) torch::set_num_threads(cfg.threads);  // before the loader's thread starts
  TrainIO io;
  io.batches = std::make_shared<Loader>(std::move(data), cfg.batch, cfg.seed, s.step, cfg.flips, 2, group->rank(),
                                        group->world());
  io.validation = std::move(validation);
  if (!checkpoint.empty())
    io.save = [checkpoint](const TrainState& state, const TrainConfig& c) { save_checkpoint(checkpoint, state, c); };
  io.monitor = monitor;
  io.group = std::move(group);
  train(s, cfg, io);
}

}  // namespace ambient::diffusion
