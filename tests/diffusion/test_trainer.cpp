// Training end to end on tiny networks: the loss falls, checkpoints load back identically, resume is exact, and
// a foundation widened for the ambient objective fine-tunes from corrupted scans only.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include <filesystem>
#include <fstream>

#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/error.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/simulate.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

std::string scratch(const std::string& name) {
  std::filesystem::create_directories(AMBIENT_TEST_TMP);
  return std::string(AMBIENT_TEST_TMP) + "/" + name;
}

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
  EXPECT_EQ(d->net->config().serialize(), tiny(1).serialize());
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

TEST(Trainer, BadCheckpointsGiveClearErrors) {
  EXPECT_THROW(load_denoiser(scratch("missing.pt")), ambient::Error);
  const auto junk = scratch("junk.pt");
  { std::ofstream(junk) << "not a checkpoint"; }
  EXPECT_THROW(load_denoiser(junk), ambient::Error);
}

TEST(Trainer, AmbientObjectiveRefusesANetworkWithoutMaskInput) {
  auto cfg = quick(1);
  cfg.objective = Objective::ambient_image;
  auto state = new_state(tiny(0), EdmConfig{}, cfg);
  EXPECT_THROW(train(state, cfg, std::make_shared<SmoothImages>(), nullptr, "", nullptr), ambient::Error);
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
  auto state = load_state(found_path, ft, false, 1);
  EXPECT_EQ(state.model->net->config().cond_channels, 1);
  // The widened network computes the foundation's function at step 0, whatever the mask channel holds.
  {
    torch::NoGradGuard g;
    auto f = load_denoiser(found_path);
    state.model->eval();
    auto x = torch::randn({1, 2, 32, 32});
    auto sigma = torch::tensor({0.7f});
    EXPECT_TRUE(torch::allclose(f->forward(x, sigma), state.model->forward(x, sigma, torch::ones({1, 1, 32, 32})),
                                1e-5, 1e-5));
    state.model->train();
  }
  std::vector<StepReport> reports;
  train(state, ft, data, data, scratch("finetuned.pt"), [&](const StepReport& r) { reports.push_back(r); });
  ASSERT_EQ(reports.size(), 6u);
  for (const auto& r : reports) EXPECT_TRUE(std::isfinite(r.loss));
  EXPECT_TRUE(std::isfinite(reports[2].val_loss));  // loss on lines Ã dropped but A kept
  EXPECT_EQ(load_state(scratch("finetuned.pt"), ft, true).objective, "ambient-fourier");
}
