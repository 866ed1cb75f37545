// Training end to end on tiny networks: the loss falls, checkpoints load back identically, resume is exact, and
// a foundation widened for the ambient objective fine-tunes from corrupted scans only.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/data.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/simulate.hpp"
#include "../mri/helpers.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

using test::scratch;  // a folder per test process: ctest runs several at once

// Smooth random complex images (a few low-frequency components): learnable structure for a tiny network.
class SmoothImages final : public Source {
 public:
  int64_t files() const override { return 2; }
  int64_t slices(int64_t) const override { return 6; }
  Example load(int64_t f, int64_t s) override {
    auto gen = at::detail::createCPUGenerator(100 * f + s);
    auto low = torch::randn({1, 2, 4, 4}, gen);
    Example e;
    e.image = torch::upsample_bilinear2d(low, std::vector<int64_t>{16, 16}, false)[0] * 0.5;
    e.mask = (torch::rand({1, 16, 16}, gen) > 0.3).to(torch::kFloat);  // A, for the ambient tests
    return e;
  }
};

UNetConfig tiny(int64_t cond = 0) {
  UNetConfig c;
  c.base_channels = 8;
  c.channel_mult = {1, 2};
  c.blocks_per_level = 1;
  c.attention_levels = {1};
  c.cond_channels = cond;
  return c;
}

TrainConfig quick(int64_t steps) {
  TrainConfig t;
  t.steps = steps;
  t.batch = 4;
  t.lr = 2e-3;
  t.warmup = 5;
  t.checkpoint_every = 1000;
  t.val_every = 0;
  return t;
}

bool same_parameters(torch::nn::Module& a, torch::nn::Module& b) {
  auto pb = b.named_parameters();
  for (auto& p : a.named_parameters())
    if (!torch::equal(p.value(), pb[p.key()])) return false;
  return true;
}

}  // namespace

TEST(Trainer, CleanLossFallsOnATinyNetwork) {
  auto cfg = quick(150);
  auto state = new_state(tiny(), EdmConfig{}, cfg);
  // A fixed batch and a fixed draw of σ and noise: the loss before and after training is then deterministic.
  SmoothImages images;
  const Batch fixed = collate({images.load(0, 0), images.load(0, 1), images.load(1, 2), images.load(1, 3),
                               images.load(0, 4), images.load(1, 5), images.load(0, 2), images.load(1, 0)});
  auto fixed_loss = [&] {
    torch::NoGradGuard g;
    return batch_loss(state.model, fixed, cfg, 12345, false).item<double>();
  };
  const double before = fixed_loss();
  int64_t reports = 0;
  train(state, cfg, std::make_shared<SmoothImages>(), nullptr, "", [&](const StepReport& r) {
    ++reports;
    EXPECT_TRUE(std::isfinite(r.loss));
  });
  EXPECT_EQ(reports, 150);
  const double after = fixed_loss();
  std::cout << "[ measured ] fixed-batch clean loss " << before << " -> " << after << " after 150 steps\n";
  EXPECT_LT(after, 0.6 * before) << "fixed-batch loss before " << before << ", after " << after;
}

TEST(Trainer, CheckpointsLoadBackIdentically) {
  auto cfg = quick(3);
  auto state = new_state(tiny(1), EdmConfig{}, cfg);
  cfg.objective = Objective::ambient_image;
  const auto path = scratch("ckpt.pt");
  train(state, cfg, std::make_shared<SmoothImages>(), nullptr, path, nullptr);
  ASSERT_TRUE(std::filesystem::exists(path));
  auto loaded = load_state(path, cfg, true);
  EXPECT_EQ(loaded.step, 3);
  EXPECT_EQ(loaded.objective, "ambient-image");
  EXPECT_TRUE(same_parameters(*state.model, *loaded.model));
  EXPECT_TRUE(same_parameters(*state.ema, *loaded.ema));
  auto d = load_denoiser(path);
  EXPECT_TRUE(same_parameters(*state.ema, *d));
  EXPECT_EQ(d->config_string(), tiny(1).serialize());
  EXPECT_EQ(d->kind(), "edm-unet");
  EXPECT_EQ(d->training_edm().precond, Precond::standard);
  // The preconditioning is part of the model: it round-trips and resumes with it.
  set_precond(loaded, Precond::masked);
  save_checkpoint(path, loaded, cfg);
  EXPECT_EQ(load_denoiser(path)->training_edm().precond, Precond::masked);
  EXPECT_EQ(load_state(path, cfg, true).model->training_edm().precond, Precond::masked);
  EXPECT_EQ(describe_checkpoint(path).precond, "masked");
  auto plain = new_state(tiny(), EdmConfig{}, cfg);
  EXPECT_THROW(set_precond(plain, Precond::masked), ambient::Error);  // no mask channel to read Ã from
}

TEST(Trainer, SlimCheckpointsKeepTheEmaAndRefuseToResume) {
  auto cfg = quick(2);
  auto state = new_state(tiny(), EdmConfig{}, cfg);
  train(state, cfg, std::make_shared<SmoothImages>(), nullptr, "", nullptr);
  const auto full = scratch("full.pt"), slim = scratch("slim.pt");
  save_checkpoint(full, state, cfg);
  save_checkpoint(slim, state, cfg, true);
  EXPECT_LT(std::filesystem::file_size(slim), std::filesystem::file_size(full) / 2);
  EXPECT_TRUE(same_parameters(*load_denoiser(slim), *state.ema));
  EXPECT_EQ(describe_checkpoint(slim).step, 2);
  EXPECT_EQ(describe_checkpoint(slim).ema_hash, describe_checkpoint(full).ema_hash);
  EXPECT_THROW(load_state(slim, cfg, true), ambient::Error);
  auto foundation = load_state(slim, cfg, false);  // fine-tuning starts from the EMA weights
  EXPECT_TRUE(same_parameters(*foundation.model, *state.ema));
}

TEST(Trainer, ResumeContinuesBitForBit) {
  auto cfg = quick(8);
  cfg.objective = Objective::ambient_image;
  auto straight = new_state(tiny(1), EdmConfig{}, cfg);
  train(straight, cfg, std::make_shared<SmoothImages>(), nullptr, "", nullptr);

  auto half = cfg;
  half.steps = 5;
  auto first = new_state(tiny(1), EdmConfig{}, cfg);
  const auto path = scratch("half.pt");
  train(first, half, std::make_shared<SmoothImages>(), nullptr, path, nullptr);
  auto resumed = load_state(path, cfg, true);
  train(resumed, cfg, std::make_shared<SmoothImages>(), nullptr, "", nullptr);
  EXPECT_EQ(resumed.step, 8);
  EXPECT_TRUE(same_parameters(*straight.model, *resumed.model));
  EXPECT_TRUE(same_parameters(*straight.ema, *resumed.ema));
}

TEST(Trainer, OldAmbientFourierCheckpointsAreToldRootTwoSigmaAndRefuseToResume) {
  // Convention 1 (trainer.hpp): the network was told σ for noise σ/√2 per channel. Loaded for inference, it must
  // be told √2 σ for noise σ; resumed, it would mix conventions; exported, it keeps its label.
  auto cfg = quick(1);
  cfg.objective = Objective::ambient_fourier;
  auto state = new_state(tiny(1), EdmConfig{}, cfg);
  state.objective = "ambient-fourier";
  state.noise_convention = 1;
  const auto old_path = scratch("old_fourier.pt"), new_path = scratch("new_fourier.pt");
  save_checkpoint(old_path, state, cfg);
  EXPECT_EQ(describe_checkpoint(old_path).noise_convention, 1);
  auto x = torch::randn({2, 2, 16, 16});
  auto sigma = torch::tensor({0.3f, 2.0f});
  auto cond = torch::ones({2, 1, 16, 16});
  torch::NoGradGuard g;
  state.ema->eval();
  auto d = load_denoiser(old_path);
  EXPECT_EQ(d->cond_channels(), 1);
  EXPECT_TRUE(torch::allclose(d->forward(x, sigma, cond), state.ema->forward(x, sigma * std::sqrt(2.0f), cond),
                              1e-5, 1e-6));
  auto resumed = load_state(old_path, cfg, true);
  EXPECT_EQ(resumed.noise_convention, 1);
  EXPECT_THROW(train(resumed, cfg, std::make_shared<SmoothImages>(), nullptr, "", nullptr), ambient::Error);
  // Today's checkpoints record convention 2 and are told σ as they are.
  state.noise_convention = kNoiseConvention;
  save_checkpoint(new_path, state, cfg);
  EXPECT_EQ(describe_checkpoint(new_path).noise_convention, kNoiseConvention);
  EXPECT_TRUE(torch::allclose(load_denoiser(new_path)->forward(x, sigma, cond), state.ema->forward(x, sigma, cond)));
}

TEST(Trainer, BadCheckpointsGiveClearErrors) {
  EXPECT_THROW(load_denoiser(scratch("missing.pt")), ambient::Error);
  const auto junk = scratch("junk.pt");
  { std::ofstream(junk) << "not a checkpoint"; }
  EXPECT_THROW(load_denoiser(junk), ambient::Error);
}

// Every fixed fuzz finding of the checkpoint reader (tests/fuzz/regressions/checkpoint/) is refused with an
// ambient::Error by the normal build, each by the check that caught it, before LibTorch parses the archive (all
// three crashed LibTorch's TorchScript parser: SIGSEGV).
TEST(Trainer, FuzzFindingsAreRefusedWithTheirCheck) {
  const std::map<std::string, std::string> findings = {
      {"stored_entry_crc_torchscript_segv.pt", "fails its CRC-32 check"},
      {"zip64_records_disagree_asan_segv.pt", "records disagree: 0 vs 753 entries"},
      {"zip64_records_disagree_segv.pt", "records disagree: 0 vs 753 entries"},
  };
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(AMBIENT_SOURCE_DIR "/tests/fuzz/regressions/checkpoint")) {
    const auto name = entry.path().filename().string();
    const auto expected = findings.find(name);
    ASSERT_NE(expected, findings.end()) << name << ": a new finding needs its line here";
    ++seen;
    try {
      (void)describe_checkpoint(entry.path().string());
      ADD_FAILURE() << name << " was read";
    } catch (const ambient::Error& e) {
      EXPECT_NE(std::string(e.what()).find(expected->second), std::string::npos) << name << ": " << e.what();
    }
    EXPECT_THROW((void)load_denoiser(entry.path().string()), ambient::Error) << name;
  }
  EXPECT_EQ(seen, static_cast<int>(findings.size()));
}

TEST(Trainer, AmbientObjectiveTrainsANetworkWithoutMaskInput) {
  // A model with no mask channel sees only the further-corrupted image (the mask implicit in its zeros).
  auto cfg = quick(2);
  cfg.objective = Objective::ambient_image;
  auto state = new_state(tiny(0), EdmConfig{}, cfg);
  std::vector<double> losses;
  train(state, cfg, std::make_shared<SmoothImages>(), nullptr, "", [&](const StepReport& r) { losses.push_back(r.loss); });
  ASSERT_EQ(losses.size(), 2u);
  EXPECT_TRUE(std::isfinite(losses[1]));
}

TEST(TrainerIntegration, TorchScriptFoundationFineTunesSavesAndResumes) {
  // A TorchScript denoiser with forward(x, sigma), scripted by Debian's python3-torch (same LibTorch 1.13).
  const auto ts = scratch("foundation.ts");
  const std::string py =
      "import torch\n"
      "class D(torch.nn.Module):\n"
      "    def __init__(self):\n"
      "        super().__init__()\n"
      "        self.a = torch.nn.Conv2d(2, 8, 3, padding=1)\n"
      "        self.b = torch.nn.Conv2d(8, 2, 3, padding=1)\n"
      "    def forward(self, x, sigma):\n"
      "        s = sigma.reshape(-1, 1, 1, 1)\n"
      "        return x / (1 + s * s) + self.b(torch.relu(self.a(x)))\n"
      "torch.manual_seed(0)\n"
      "torch.jit.script(D()).save('" + ts + "')\n";
  const auto script = scratch("make_ts.py");
  { std::ofstream(script) << py; }
  ASSERT_EQ(std::system(("/usr/bin/python3 " + script).c_str()), 0) << "needs python3-torch (scripts/setup.sh)";
  EXPECT_FALSE(is_ambient_checkpoint(ts));

  auto cfg = quick(3);
  cfg.objective = Objective::ambient_image;
  auto state = load_state(ts, cfg, false);
  EXPECT_EQ(state.model->kind(), "torchscript");
  EXPECT_EQ(state.model->cond_channels(), 0);
  const auto path = scratch("ts_finetuned.pt");
  train(state, cfg, std::make_shared<SmoothImages>(), nullptr, path, nullptr);
  EXPECT_TRUE(is_ambient_checkpoint(path));
  // The weights moved (the optimiser reaches the scripted parameters) and the checkpoint restores them exactly.
  auto original = load_torchscript(ts);
  EXPECT_FALSE(same_parameters(*original, *state.model));
  auto resumed = load_state(path, cfg, true);
  EXPECT_EQ(resumed.step, 3);
  EXPECT_EQ(resumed.model->kind(), "torchscript");
  EXPECT_TRUE(same_parameters(*state.model, *resumed.model));
  auto d = load_denoiser(path);
  torch::NoGradGuard g;
  state.ema->eval();
  auto x = torch::randn({1, 2, 16, 16});
  EXPECT_TRUE(torch::allclose(d->forward(x, torch::ones({1}), {}), state.ema->forward(x, torch::ones({1}), {})));
}

TEST(Trainer, TorchScriptRejectsFilesThatAreNotModules) {
  const auto junk = scratch("junk.ts");
  { std::ofstream(junk) << "PK not really"; }
  EXPECT_THROW(load_torchscript(junk), ambient::Error);
  EXPECT_THROW(load_torchscript(scratch("absent.ts")), ambient::Error);
}

TEST(TrainerIntegration, FineTunesAWidenedFoundationOnSimulatedScansOnly) {
  // Foundation: clean pretraining, no mask input.
  auto pre = quick(4);
  auto foundation = new_state(tiny(0), EdmConfig{}, pre);
  const auto found_path = scratch("foundation.pt");
  train(foundation, pre, std::make_shared<SmoothImages>(), nullptr, found_path, nullptr);

  // Corrupted scans: simulated R=4 from ch2, 32x32 to stay fast. No clean image reaches the trainer.
  mri::SimulateConfig sc;
  sc.matrix = 32;
  sc.count = 3;
  sc.coils = 4;
  sc.center_fraction = 0.25;
  sc.noise_samples = 1024;
  const auto scan_path = scratch("train_scan.h5");
  mri::write_ismrmrd(scan_path, mri::simulate(mri::read_nifti("/usr/share/mricron/templates/ch2.nii.gz"), sc).scan);
  ScanSourceConfig src;
  src.espirit.calib_size = 8;
  src.espirit.kernel = 4;
  auto data = std::shared_ptr<Source>(scan_source({scan_path}, src));

  auto ft = quick(6);
  ft.objective = Objective::ambient_fourier;
  ft.val_every = 3;
  ft.val_batches = 1;
  auto state = foundation_state(found_path, ft);  // widened: the Fourier objective feeds one mask channel
  EXPECT_EQ(state.model->cond_channels(), 1);
  auto naive = ft;
  naive.objective = Objective::naive;
  EXPECT_EQ(foundation_state(found_path, naive).model->cond_channels(), 0);
  // The widened network computes the foundation's function at step 0, whatever the mask channel holds.
  {
    torch::NoGradGuard g;
    auto f = load_denoiser(found_path);
    state.model->eval();
    auto x = torch::randn({1, 2, 32, 32});
    auto sigma = torch::tensor({0.7f});
    EXPECT_TRUE(torch::allclose(f->forward(x, sigma, {}), state.model->forward(x, sigma, torch::ones({1, 1, 32, 32})),
                                1e-5, 1e-5));
    state.model->train();
  }
  std::vector<StepReport> reports;
  train(state, ft, data, data, scratch("finetuned.pt"), [&](const StepReport& r) { reports.push_back(r); });
  ASSERT_EQ(reports.size(), 6u);
  for (const auto& r : reports) EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_TRUE(std::isfinite(reports[2].val_loss));  // loss on lines Ã dropped but A kept
  EXPECT_EQ(load_state(scratch("finetuned.pt"), ft, true).objective, "ambient-fourier");
  // A model with a mask channel is no foundation for an objective that feeds none.
  EXPECT_THROW(foundation_state(scratch("finetuned.pt"), naive), ambient::Error);
}

TEST(Trainer, FineTuningPolicyFollowsTheData) {
  EXPECT_EQ(finetune_objective(parse_corruption("fourier"), false), Objective::ambient_fourier);
  EXPECT_EQ(finetune_objective(parse_corruption("block"), false), Objective::ambient_image);
  EXPECT_EQ(finetune_objective(Corruption::block, true), Objective::naive);
  EXPECT_THROW(finetune_objective(Corruption::none, false), ambient::Error);
  EXPECT_THROW(parse_corruption("magic"), ambient::Error);
  EXPECT_EQ(corruption_name(parse_corruption("none")), "none");
  // Names come from one table per enumeration: aliases parse but are not given back, errors list the choices.
  EXPECT_EQ(parse_objective("block"), Objective::ambient_image);
  EXPECT_EQ(objective_name(parse_objective("fourier")), "ambient-fourier");
  try {
    parse_objective("magic");
    ADD_FAILURE() << "an unknown objective was accepted";
  } catch (const ambient::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected clean|ambient-image|ambient-fourier|naive, got 'magic'"),
              std::string::npos) << e.what();
  }
  // masked preconditioning in the corruption's own domain; the default is masked for image-domain ambient only.
  EXPECT_EQ(default_precond(Objective::ambient_image), Precond::masked);
  EXPECT_EQ(default_precond(Objective::ambient_fourier), Precond::standard);
  EXPECT_EQ(default_precond(Objective::naive), Precond::standard);
  EXPECT_EQ(masked_precond(Objective::ambient_image), Precond::masked);
  EXPECT_EQ(masked_precond(Objective::ambient_fourier), Precond::masked_lines);
  EXPECT_THROW(masked_precond(Objective::naive), ambient::Error);
  EXPECT_THROW(masked_precond(Objective::clean), ambient::Error);
}
