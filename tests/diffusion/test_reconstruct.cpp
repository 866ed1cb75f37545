// reconstruct() end to end on a simulated scan: with an oracle prior (a Gaussian centred on the true image) the
// posterior reconstruction must beat CG-SENSE by far, which checks scaling, coil maps, noise handling and batching.
#include <gtest/gtest.h>

#include <algorithm>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/reconstruct.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/diffusion/volume_recon.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/metrics.hpp"
#include "ambient/mri/recon.hpp"
#include "ambient/mri/simulate.hpp"
#include "../mri/helpers.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

// E[x0 | x] for the prior N(target, v I), target [B, 2, H, W] per batch item (network units).
struct OracleDenoiser : DenoiserModule {
  torch::Tensor target;
  double v = 1e-5;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) override {
    auto s2 = sigma.square().reshape({-1, 1, 1, 1});
    return target + v / (v + s2) * (x - target);
  }
  int64_t cond_channels() const override { return 0; }
  std::string kind() const override { return "oracle"; }
  std::string config_string() const override { return "oracle"; }
  std::shared_ptr<DenoiserModule> fresh_copy() const override { return std::make_shared<OracleDenoiser>(*this); }
};

}  // namespace

namespace {

// A small simulated scan of ch2: `slices` slices of 32², `coils` coils, R = 4 with a quarter of the lines as ACS.
mri::Scan small_scan(int64_t slices, int64_t coils) {
  mri::SimulateConfig sc;
  sc.matrix = 32;
  sc.count = slices;
  sc.coils = coils;
  sc.center_fraction = 0.25;
  return mri::simulate(mri::read_nifti("/usr/share/mricron/templates/ch2.nii.gz"), sc).scan;
}

}  // namespace

TEST(ReconstructIntegration, OraclePriorBeatsCgSenseAndKeepsScale) {
  mri::SimulateConfig sc;
  sc.matrix = 48;
  sc.count = 2;
  sc.coils = 6;
  sc.acceleration = 4;
  sc.center_fraction = 0.2;
  sc.noise_samples = 2048;
  auto sim = mri::simulate(mri::read_nifti("/usr/share/mricron/templates/ch2.nii.gz"), sc);
  const std::string path = std::string(AMBIENT_TEST_TMP) + "/recon_oracle.h5";
  mri::write_ismrmrd(path, sim.scan);
  auto scan = mri::read_scan(path);  // prewhitened
  mri::EspiritConfig ec;
  ec.calib_size = 12;
  auto maps = mri::espirit_maps_batch(scan.calibration_kspace(), scan.calib, ec);

  // The true coil-combined image in the scan's units: S^H of the noise-free whitened coil images.
  auto w = mri::whitening_matrix(scan.noise);
  auto truth = (maps.conj() * mri::apply_coil_matrix(w, sim.maps * sim.image.unsqueeze(1))).sum(1);

  ReconstructConfig rc;
  rc.samples = 2;
  rc.posterior.schedule.steps = 12;
  rc.posterior.prior_var = 1e-5;  // the oracle's variance: γ(σ) is then its exact conditional variance
  auto oracle = std::make_shared<OracleDenoiser>();
  oracle->target = torch::zeros({4, 2, 48, 48});
  auto probe = reconstruct(oracle, scan, maps, rc);  // learns the per-slice scales
  ASSERT_EQ(probe.scale.numel(), 2);
  oracle->target = to_channels(truth / probe.scale.reshape({-1, 1, 1})).repeat({2, 1, 1, 1});
  auto r = reconstruct(oracle, scan, maps, rc);
  EXPECT_EQ(r.mean.sizes(), torch::IntArrayRef({2, 48, 48}));
  EXPECT_EQ(r.std.sizes(), torch::IntArrayRef({2, 48, 48}));

  mri::CgConfig cg;
  cg.lambda = 0.01;
  auto cgs = mri::cg_sense(mri::make_sense(maps, scan.kspace_mask()), scan.ksp, cg);
  const double p_oracle = mri::psnr(sim.reference, r.mean.abs()), p_cg = mri::psnr(sim.reference, cgs.abs());
  std::cout << "[ measured ] oracle-prior posterior " << p_oracle << " dB, CG-SENSE " << p_cg << " dB, truth "
            << mri::psnr(sim.reference, truth.abs()) << " dB\n";
  EXPECT_GT(p_oracle, p_cg + 5) << "oracle " << p_oracle << " dB vs CG-SENSE " << p_cg << " dB";
  // With a nearly certain prior the samples barely differ.
  EXPECT_LT(r.std.mean().item<double>(), 0.05 * r.mean.abs().mean().item<double>());
}

TEST(Reconstruct, RejectsMismatchedMapsAndBadOptions) {
  mri::Scan scan;
  scan.ksp = torch::zeros({1, 2, 8, 8}, torch::kComplexFloat);
  scan.mask = torch::ones({1, 8}, torch::kBool);
  scan.calib = scan.mask.clone();
  auto oracle = std::make_shared<OracleDenoiser>();
  ReconstructConfig rc;
  EXPECT_THROW(reconstruct(oracle, scan, torch::zeros({1, 3, 8, 8}, torch::kComplexFloat), rc), ambient::Error);
  rc.method = ReconMethod::cg_sense;  // not a sampling method
  EXPECT_THROW(reconstruct(oracle, scan, torch::zeros({1, 2, 8, 8}, torch::kComplexFloat), rc), ambient::Error);
}

namespace {

// Records what the sampler feeds the network; answers with its input (an identity "denoiser").
struct RecordingDenoiser : DenoiserModule {
  std::vector<torch::Tensor> inputs, conds;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor&, const torch::Tensor& cond) override {
    inputs.push_back(x.clone());
    conds.push_back(cond.clone());
    return x;
  }
  int64_t cond_channels() const override { return 1; }
  std::string kind() const override { return "recording"; }
  std::string config_string() const override { return "recording"; }
  std::shared_ptr<DenoiserModule> fresh_copy() const override { return std::make_shared<RecordingDenoiser>(*this); }
};

// Two samples of `steps` steps, the network seeing x through further line masks at `further_accel`.
ReconstructConfig through_further_masks(int64_t steps, double further_accel) {
  ReconstructConfig rc;
  rc.samples = 2;
  rc.posterior.schedule.steps = steps;
  rc.further_accel = further_accel;
  return rc;
}

}  // namespace

TEST(Reconstruct, AmbientFourierModelsSeeTheirInputThroughAFixedFurtherMask) {
  const auto scan = small_scan(1, 1);
  // Unit maps make Ã^H Ã = F^H M F an orthogonal projection, so "the input is Ã^H Ã x" is checkable exactly.
  auto maps = torch::ones({1, 1, 32, 32}, torch::kComplexFloat);
  auto rc = through_further_masks(4, 5);
  auto rec = std::make_shared<RecordingDenoiser>();
  reconstruct(rec, scan, maps, rc);
  ASSERT_FALSE(rec->conds.empty());
  // One line mask per sample, the same at every step: constant along x, about 1/5 of the lines kept.
  auto first = rec->conds.front();
  ASSERT_EQ(first.sizes(), torch::IntArrayRef({2, 1, 32, 32}));
  for (const auto& c : rec->conds) EXPECT_TRUE(torch::equal(c, first));
  EXPECT_TRUE(torch::equal(first, first.select(3, 0).unsqueeze(3).expand_as(first)));
  const double kept = first.mean().item<double>();
  EXPECT_GT(kept, 0.1);
  EXPECT_LT(kept, 0.45);
  EXPECT_FALSE(torch::equal(first[0], first[1])) << "each sample should draw its own further mask";
  // Every input is Ã^H Ã x: projecting it again changes nothing.
  auto lines = first.select(3, 0).select(1, 0);  // [2, 32]
  auto a_tilde = mri::make_sense(maps.repeat({2, 1, 1, 1}), lines.reshape({2, 1, 32, 1}));
  auto off_range = [&](const torch::Tensor& x) {
    auto in = from_channels(x);
    return ((a_tilde->normal(in) - in).abs().square().sum() / in.abs().square().sum()).sqrt().item<double>();
  };
  for (const auto& in : rec->inputs) EXPECT_LT(off_range(in), 1e-4) << "input is not Ã^H Ã x";
  // DPS back-propagates through the network's input: Ã^H Ã must stay in the autograd graph.
  rc.method = ReconMethod::dps;
  auto through = std::make_shared<RecordingDenoiser>();
  EXPECT_NO_THROW(reconstruct(through, scan, maps, rc));
  ASSERT_FALSE(through->inputs.empty());
  EXPECT_LT(off_range(through->inputs.back().detach()), 1e-4);
  rc.method = ReconMethod::posterior;

  // Without a further acceleration (or for models without a mask channel) the network gets x and an all-ones mask.
  rc.further_accel = 0;
  auto plain = std::make_shared<RecordingDenoiser>();
  reconstruct(plain, scan, maps, rc);
  EXPECT_TRUE(torch::equal(plain->conds.front(), torch::ones_like(plain->conds.front())));
  EXPECT_GT(off_range(plain->inputs.front()), 0.3) << "the unprojected x should have energy outside Ã's lines";
  rc.further_accel = 0.5;
  EXPECT_THROW(reconstruct(plain, scan, maps, rc), ambient::Error);
}

TEST(Reconstruct, DefaultsComeFromWhatTheCheckpointSays) {
  UNetConfig net;
  net.base_channels = 8;
  net.channel_mult = {1};
  net.attention_levels = {};
  auto save = [&](Objective o, int64_t cond, const std::string& name) {
    TrainConfig cfg;
    cfg.objective = o;
    net.cond_channels = cond;
    auto state = new_state(net, EdmConfig{}, cfg);
    const auto path = test::scratch(name);
    save_checkpoint(path, state, cfg, true);
    return path;
  };
  const ReconstructConfig plain;
  const auto fourier = defaults_for(save(Objective::ambient_fourier, 1, "fourier.pt"));
  EXPECT_GT(fourier.further_accel, 1) << "an ambient-Fourier model should see x_t through a further mask";
  EXPECT_GT(fourier.posterior.gamma_floor, 0);
  EXPECT_GT(fourier.samples, plain.samples);
  EXPECT_LT(fourier.posterior.schedule.steps, plain.posterior.schedule.steps);
  for (auto [o, cond, name] : {std::tuple{Objective::clean, 0, "clean.pt"}, {Objective::naive, 0, "naive.pt"},
                               {Objective::ambient_image, 1, "block.pt"}, {Objective::ambient_fourier, 0, "nomask.pt"}}) {
    const auto d = defaults_for(save(o, cond, name));
    EXPECT_EQ(d.further_accel, 0) << name;
    EXPECT_EQ(d.samples, plain.samples) << name;
    EXPECT_EQ(d.posterior.schedule.steps, plain.posterior.schedule.steps) << name;
    EXPECT_EQ(d.posterior.gamma_scale, plain.posterior.gamma_scale) << name;
    EXPECT_EQ(d.posterior.gamma_floor, plain.posterior.gamma_floor) << name;
  }
  EXPECT_THROW(defaults_for(test::scratch("missing.pt")), ambient::Error);

  // Unset fields (-1) take the model's defaults; fields given keep their value.
  ReconstructConfig given;
  given.samples = -1, given.posterior.schedule.steps = -1, given.further_accel = -1;
  given.posterior.gamma_floor = -1, given.posterior.gamma_scale = 0.25;
  const auto r = with_defaults_for(given, test::scratch("fourier.pt"));
  EXPECT_EQ(r.samples, fourier.samples);
  EXPECT_EQ(r.posterior.schedule.steps, fourier.posterior.schedule.steps);
  EXPECT_EQ(r.further_accel, fourier.further_accel);
  EXPECT_EQ(r.posterior.gamma_floor, fourier.posterior.gamma_floor);
  EXPECT_EQ(r.posterior.gamma_scale, 0.25);
}

namespace {

// E[x0 | x] for the prior N(μ, v I), μ a constant in the real channel (0 unless set): batch-size agnostic, so any
// grouping of slices can be compared.
struct GaussianDenoiser : DenoiserModule {
  double v = 0.05, mu = 0;
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor&) override {
    const auto shrink = v / (v + sigma.square().reshape({-1, 1, 1, 1}));
    if (mu == 0) return x * shrink;
    auto m = torch::zeros_like(x);
    m.select(1, 0).fill_(mu);
    return m + (x - m) * shrink;
  }
  int64_t cond_channels() const override { return 0; }
  std::string kind() const override { return "gaussian"; }
  std::string config_string() const override { return "gaussian"; }
  std::shared_ptr<DenoiserModule> fresh_copy() const override { return std::make_shared<GaussianDenoiser>(*this); }
};

}  // namespace

// Memory must not grow with the volume: slices go through slice_batch at a time. A scan that fits one batch gives
// exactly the one-batch result; smaller batches give other draws of the same posterior, deterministically.
TEST(Reconstruct, SlicesGoThroughInMemoryBoundedBatches) {
  const auto scan = small_scan(3, 2);
  auto maps = mri::espirit_maps_batch(scan.calibration_kspace(), scan.calib, mri::EspiritConfig{});
  auto prior = std::make_shared<GaussianDenoiser>();
  ReconstructConfig rc;
  rc.samples = 2;
  rc.posterior.schedule.steps = 3;
  EXPECT_EQ(slices_per_batch(rc, scan), 3) << "a small scan should fit one batch";
  const auto whole = reconstruct(prior, scan, maps, rc);
  rc.slice_batch = 3;
  EXPECT_TRUE(torch::equal(reconstruct(prior, scan, maps, rc).mean, whole.mean));
  rc.slice_batch = 1;
  std::vector<int64_t> steps;
  const auto one = reconstruct(prior, scan, maps, rc, [&](int64_t step, double) { steps.push_back(step); });
  EXPECT_EQ(one.mean.sizes(), whole.mean.sizes());
  EXPECT_EQ(one.std.sizes(), whole.std.sizes());
  EXPECT_TRUE(torch::allclose(one.scale, whole.scale)) << "the per-slice scale must not depend on the batch";
  EXPECT_TRUE(torch::equal(reconstruct(prior, scan, maps, rc).mean, one.mean)) << "batches must be deterministic";
  // The monitor counts steps over all batches, in order, to steps × batches.
  ASSERT_FALSE(steps.empty());
  EXPECT_EQ(steps.back(), 3 * rc.posterior.schedule.steps);
  EXPECT_TRUE(std::is_sorted(steps.begin(), steps.end()));
  // Other noise, the same posterior: the means agree to within the sampling spread.
  const double diff = (one.mean - whole.mean).abs().mean().item<double>();
  const double spread = whole.std.mean().item<double>() + one.std.mean().item<double>();
  EXPECT_GT(diff, 0.0) << "each batch should draw its own noise";
  EXPECT_LT(diff, 2 * spread + 1e-6 * whole.mean.abs().mean().item<double>());

  // The automatic rule: one K × C × ny × nx tensor of a batch stays under 128 MB (16 slices at 128², 8 coils, K = 8).
  mri::Scan big;
  big.ksp = torch::zeros({40, 8, 128, 128}, torch::kComplexFloat);
  ReconstructConfig d;
  d.samples = 8;
  EXPECT_EQ(slices_per_batch(d, big), 16);
  d.slice_batch = 100;
  EXPECT_EQ(slices_per_batch(d, big), 40);
}

TEST(VolumeRecon, OneProcessGivesWhatEachMethodGivesAlone) {
  const auto scan = small_scan(3, 2);
  Group lone;
  std::vector<std::string> stages;
  int64_t last_done = -1, last_total = -2;
  const StageMonitor monitor = [&](const std::string& stage, int64_t done, int64_t total, const std::string&) {
    if (stages.empty() || stages.back() != stage) stages.push_back(stage);
    last_done = done, last_total = total;
  };
  // Coil maps: each slice's own ESPIRiT, as espirit_maps gives it.
  const auto maps = shared_espirit_maps(scan, mri::EspiritConfig{}, lone, monitor);
  const auto lines = scan.calibration_lines();
  for (int64_t s = 0; s < scan.slices(); ++s)
    EXPECT_TRUE(torch::equal(maps[s], mri::espirit_maps(scan.calibration_kspace()[s], lines[s], {}))) << s;
  EXPECT_EQ(stages, std::vector<std::string>{"coil maps (ESPIRiT)"});
  EXPECT_EQ(last_done, scan.slices());

  const auto a = mri::make_sense(maps, scan.kspace_mask());
  VolumeReconConfig vc;
  vc.method = ReconMethod::zero_filled;
  auto zf = reconstruct_volume(scan, maps, vc, nullptr, lone);
  EXPECT_TRUE(torch::equal(zf.image, mri::zero_filled(a, scan.ksp)));
  EXPECT_FALSE(zf.std.defined());

  vc.method = ReconMethod::cg_sense;
  vc.cg.lambda = 0.01;
  const auto cg = reconstruct_volume(scan, maps, vc, nullptr, lone, monitor);
  EXPECT_TRUE(torch::equal(cg.image, mri::cg_sense(a, scan.ksp, vc.cg)));
  EXPECT_EQ(stages.back(), "CG-SENSE");

  vc.method = ReconMethod::posterior;
  vc.model.samples = 2;
  vc.model.posterior.schedule.steps = 3;
  vc.model.seed = 4;
  auto prior = std::make_shared<GaussianDenoiser>();
  const auto post = reconstruct_volume(scan, maps, vc, prior, lone, monitor);
  auto rc = vc.model;
  rc.method = ReconMethod::posterior;
  const auto alone = reconstruct(prior, scan, maps, rc);
  EXPECT_TRUE(torch::equal(post.image, alone.mean));
  EXPECT_TRUE(torch::equal(post.std, alone.std));
  EXPECT_EQ(post.batches, 1);
  EXPECT_EQ(stages.back(), "posterior sampling (2 samples/slice)");
  EXPECT_EQ(last_done, last_total);

  EXPECT_THROW(reconstruct_volume(scan, maps, vc, nullptr, lone), ambient::Error);  // sampling needs a model
  EXPECT_THROW(reconstruct_volume(scan, maps.narrow(1, 0, 1), vc, prior, lone), ambient::Error);
  EXPECT_EQ(parse_recon_method("cg-sense"), ReconMethod::cg_sense);
  EXPECT_EQ(recon_method_name(parse_recon_method("zero-filled")), "zero-filled");
  EXPECT_THROW(parse_recon_method("magic"), ambient::Error);
}

// Where every coil map is 0 the data say nothing and the posterior is the prior's fill; by default the image is 0
// there, as CG-SENSE gives, and nothing else changes.
TEST(Reconstruct, TheImageIsZeroWhereNoCoilMapSeesIt) {
  const auto scan = small_scan(2, 2);
  auto maps = mri::espirit_maps_batch(scan.calibration_kspace(), scan.calib, mri::EspiritConfig{});
  maps.narrow(3, 0, 5).zero_();  // no coil sees the first 5 columns
  auto prior = std::make_shared<GaussianDenoiser>();
  prior->mu = 0.3;  // a prior that fills what the data leave open with something other than 0
  ReconstructConfig rc;
  rc.samples = 2;
  rc.posterior.schedule.steps = 4;
  ASSERT_TRUE(rc.zero_outside_maps) << "the default";
  const auto zeroed = reconstruct(prior, scan, maps, rc);
  rc.zero_outside_maps = false;
  const auto kept = reconstruct(prior, scan, maps, rc);
  const auto seen = (maps.abs().sum(1) > 0);
  const auto unseen = seen.logical_not();
  ASSERT_GT(unseen.sum().item<int64_t>(), 0);
  // Kept: the prior's mean μ (in scan units: μ times each slice's scale) fills the unseen columns.
  // (each pixel a mean of 2 draws of N(μ, v): their average over the unseen pixels is near μ).
  const auto fill = torch::real(kept.mean).masked_select(unseen);
  EXPECT_GT(fill.mean().item<double>(), 0.5 * 0.3 * kept.scale.min().item<double>());
  EXPECT_GT(kept.std.masked_select(unseen).max().item<double>(), 0.0);
  // Zeroed: exactly 0 there, mean and std; the same chains everywhere else.
  EXPECT_EQ(zeroed.mean.abs().masked_select(unseen).max().item<double>(), 0.0);
  EXPECT_EQ(zeroed.std.masked_select(unseen).max().item<double>(), 0.0);
  EXPECT_TRUE(torch::equal(zeroed.mean.masked_select(seen), kept.mean.masked_select(seen)));
  EXPECT_TRUE(torch::equal(zeroed.std.masked_select(seen), kept.std.masked_select(seen)));
}

// Several further views: at each step the network sees x through each of V fixed masks per sample, the first of
// them the mask a one-view reconstruction draws, and the estimate is the mean of the V answers.
TEST(Reconstruct, FurtherViewsAverageTheEstimatesThroughSeveralFixedMasks) {
  const auto scan = small_scan(1, 1);
  auto maps = torch::ones({1, 1, 32, 32}, torch::kComplexFloat);
  auto rc = through_further_masks(3, 4);
  auto one = std::make_shared<RecordingDenoiser>();
  const auto r1 = reconstruct(one, scan, maps, rc);
  rc.further_views = 3;
  auto three = std::make_shared<RecordingDenoiser>();
  const auto r3 = reconstruct(three, scan, maps, rc);
  ASSERT_EQ(three->conds.size(), 3 * one->conds.size()) << "V network calls per step";
  // Calls come in groups of V per step; within a group the masks differ, across steps each view's mask is fixed.
  for (size_t c = 0; c < three->conds.size(); ++c) EXPECT_TRUE(torch::equal(three->conds[c], three->conds[c % 3]));
  EXPECT_TRUE(torch::equal(three->conds[0], one->conds[0])) << "view 0 is the one-view mask";
  EXPECT_FALSE(torch::equal(three->conds[0], three->conds[1]));
  EXPECT_FALSE(torch::equal(three->conds[1], three->conds[2]));
  // With the identity "denoiser" the estimate is the mean of the projections Ã_v^H Ã_v x: its k-space keeps, on
  // each line, the fraction of views that keep that line. So it differs from any one view's estimate.
  EXPECT_FALSE(torch::equal(r1.mean, r3.mean));
  rc.further_views = 0;
  EXPECT_THROW(reconstruct(three, scan, maps, rc), ambient::Error);
}
