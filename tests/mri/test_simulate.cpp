// Simulation from real MRI (mricron-data's ch2) and the comparison with BART's ecalib + pics.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/torch.h>

#include <cstdlib>
#include <filesystem>

#include "ambient/core/error.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/metrics.hpp"
#include "ambient/mri/phase.hpp"
#include "ambient/mri/recon.hpp"
#include "ambient/mri/simulate.hpp"
#include "helpers.hpp"

using namespace ambient;

namespace {

const mri::Volume& ch2() {
  static const mri::Volume v = mri::read_nifti(AMBIENT_MRICRON_CH2);
  return v;
}

mri::SimulateConfig small_config() {
  mri::SimulateConfig c;
  c.count = 2;
  c.matrix = 64;
  c.coils = 6;
  c.center_fraction = 0.25;
  c.acceleration = 2;
  c.noise_samples = 4096;
  c.seed = 5;
  return c;
}

// 8 coils, R = 4, SNR 40, at a matrix and centre fraction.
mri::SimulateConfig rate_four_config(int64_t matrix, double center_fraction) {
  auto c = small_config();
  c.matrix = matrix;
  c.coils = 8;
  c.acceleration = 4;
  c.center_fraction = center_fraction;
  c.snr = 40;
  return c;
}

// PSNR of zero-filled and of CG-SENSE (ESPIRiT maps, λ 0.01) for a simulated scan written to ISMRMRD and read back.
struct ZeroFilledAndCg {
  double zero_filled, cg_sense;
  int64_t ny, nx;
};
ZeroFilledAndCg reconstruct_written(const mri::Simulation& sim, const std::string& name) {
  const auto path = test::scratch(name);
  mri::write_ismrmrd(path, sim.scan);
  auto scan = mri::read_scan(path);
  auto maps = mri::espirit_maps_batch(scan.calibration_kspace(), scan.calibration_lines(), {});
  auto a = mri::make_sense(maps, scan.kspace_mask());
  mri::CgConfig cg;
  cg.lambda = 0.01;
  return {mri::psnr(sim.reference, mri::zero_filled(a, scan.ksp).abs()),
          mri::psnr(sim.reference, mri::cg_sense(a, scan.ksp, cg).abs()), scan.ny(), scan.nx()};
}

}  // namespace

TEST(SmoothPhase, IsSmoothBoundedOneMapPerImageAndTheSameThroughEitherFft) {
  torch::manual_seed(3);
  const auto low = torch::randn({6, 5, 5}, torch::kComplexFloat);
  auto phase = mri::smooth_phase_from(low, 32, 32, 1.5, mri::FftBackend::torch);
  ASSERT_EQ(phase.sizes(), (std::vector<int64_t>{6, 32, 32}));
  EXPECT_NEAR(phase.abs().amax({1, 2}).min().item<double>(), 1.5, 1e-9);
  EXPECT_NEAR(phase.abs().amax({1, 2}).max().item<double>(), 1.5, 1e-9);
  // Its spectrum lives in the central 5x5 block (real part: the block and its mirror, the same block here).
  auto spectrum = torch::fft::fftshift(torch::fft::fft2(phase.to(torch::kComplexDouble)), {-2, -1}).abs().square();
  const double inside = spectrum.narrow(1, 14, 5).narrow(2, 14, 5).sum().item<double>();
  EXPECT_GT(inside, 0.999 * spectrum.sum().item<double>());
  EXPECT_FALSE(torch::allclose(phase[0], phase[1]));  // one map per image
  EXPECT_TRUE(torch::allclose(mri::smooth_phase_from(low, 32, 32, 1.5), phase, 0, 1e-5));  // FFTW where built
  EXPECT_THROW(mri::smooth_phase_from(torch::randn({2, 4, 4}, torch::kComplexFloat), 32, 32, 1.5), Error);
  EXPECT_THROW(mri::smooth_phase_from(low, 4, 32, 1.5), Error);
  // simulate's phase is this map of standard complex normal draws.
  auto gen = at::detail::createCPUGenerator(11), again = at::detail::createCPUGenerator(11);
  EXPECT_TRUE(torch::equal(mri::smooth_phase(2, 24, 40, 1.0, gen),
                           mri::smooth_phase_from(torch::randn({2, 5, 5}, again, torch::kComplexDouble), 24, 40, 1.0)));
}

TEST(BiotSavart, MapsAreSmoothLocalisedAndNormalised) {
  auto maps = mri::biot_savart_maps(8, 64, 0);
  EXPECT_NEAR(mri::rss(maps, 0).max().item<double>(), 1.0, 1e-5);
  // Each coil is strongest near its own loop: the peaks of different coils are far apart.
  auto peaks = maps.abs().flatten(1).argmax(1);
  EXPECT_EQ(std::get<0>(at::_unique(peaks)).numel(), 8);
  // Smooth: neighbouring pixels differ little relative to the map's range.
  auto d = (maps.narrow(2, 1, 63) - maps.narrow(2, 0, 63)).abs().max().item<double>();
  EXPECT_LT(d, 0.25 * maps.abs().max().item<double>());
}

TEST(SimulateIntegration, IsReproducibleFromTheSeed) {
  auto a = mri::simulate(ch2(), small_config());
  auto b = mri::simulate(ch2(), small_config());
  EXPECT_TRUE(a.scan.ksp.equal(b.scan.ksp));
  EXPECT_TRUE(a.scan.mask.equal(b.scan.mask));
  auto c = small_config();
  c.seed = 6;
  EXPECT_FALSE(mri::simulate(ch2(), c).scan.ksp.equal(a.scan.ksp));
}

TEST(SimulateIntegration, WritesARealIsmrmrdScanThatReadsBackConsistently) {
  auto sim = mri::simulate(ch2(), small_config());
  EXPECT_EQ(sim.scan.ksp.sizes(), torch::IntArrayRef({2, 6, 64, 64}));
  EXPECT_TRUE((sim.scan.calib & ~sim.scan.mask).sum().item<int64_t>() == 0);
  const auto path = test::scratch("sim.h5");
  mri::write_ismrmrd(path, sim.scan);
  auto r = mri::read_scan(path);
  EXPECT_TRUE(r.mask.equal(sim.scan.mask));
  EXPECT_TRUE(r.calib.equal(sim.scan.calib));
  EXPECT_TRUE(r.prewhitened);
  // The reader's whitening matrix turns the noise scan into unit-variance noise.
  auto w = mri::whitening_matrix(r.noise);
  auto white = w.matmul(r.noise);
  EXPECT_NEAR((white.abs().square().mean()).item<double>(), 1.0, 0.05);
  // Geometry: slices 1 mm template -> positions differ along the slice axis.
  ASSERT_EQ(r.geometry.slices.size(), 2u);
  EXPECT_GT(std::abs(r.geometry.slices[1].position[2] - r.geometry.slices[0].position[2]), 1.0);
}

TEST(SimulateIntegration, FullySampledReconstructionMatchesTheReference) {
  auto c = small_config();
  c.mask = "full";
  c.snr = 200;
  auto sim = mri::simulate(ch2(), c);
  const auto path = test::scratch("sim_full.h5");
  mri::write_ismrmrd(path, sim.scan);
  auto scan = mri::read_scan(path);
  auto maps = mri::espirit_maps_batch(scan.ksp, scan.calib, {});
  auto a = mri::make_sense(maps, scan.kspace_mask());
  auto rec = mri::zero_filled(a, scan.ksp).abs();
  // The reference is the RSS of the whitened noise-free coil images, what a perfect pipeline returns.
  EXPECT_GT(mri::psnr(sim.reference, rec), 35.0);
  EXPECT_GT(mri::ssim(sim.reference, rec), 0.9);
}

// A fully sampled scan that flags few ACS lines (make_dataset.sh's clean 64² slices: 8 of 64) is calibration data
// over its whole centre. ESPIRiT on the 8 flagged lines alone had a 6 x 6 kernel and 3 x 19 patches; its top
// eigenvalue fell below the crop in dim brain, which zeroed the maps and the image there (20.7 dB here: the holes of
// every clean 64² training image). With the kernel rule the 8 lines give 45 dB; the whole centre gives 62.
TEST(SimulateIntegration, FullySampledScanCalibratesOnItsWholeCentre) {
  auto c = small_config();
  c.acceleration = 1;  // every line, with the ACS flags of a random mask (simulate --accel 1, as make_dataset.sh)
  c.coils = 8;
  c.center_fraction = 0.125;
  c.snr = 200;
  auto sim = mri::simulate(ch2(), c);
  const auto path = test::scratch("sim_full_acs8.h5");
  mri::write_ismrmrd(path, sim.scan);
  auto scan = mri::read_scan(path);
  ASSERT_EQ(scan.calib[0].sum().item<int64_t>(), 8);
  EXPECT_TRUE(scan.calibration_lines().all().item<bool>()) << "every line of a fully sampled scan is calibration";
  auto psnr_with = [&](const torch::Tensor& lines) {
    auto maps = mri::espirit_maps_batch(scan.calibration_kspace(), lines, {});
    auto rec = mri::zero_filled(mri::make_sense(maps, scan.kspace_mask()), scan.ksp).abs();
    return mri::psnr(sim.reference, rec);
  };
  const double flagged = psnr_with(scan.calib), centre = psnr_with(scan.calibration_lines());
  std::cout << "[ measured ] fully sampled 64², ESPIRiT on 8 ACS lines " << flagged << " dB, on the centre " << centre
            << " dB\n";
  EXPECT_GT(centre, 35.0);
  EXPECT_GT(centre, flagged + 5.0);
}

// 64² at R = 4 with make_dataset.sh's 8 ACS lines: a 6 x 6 kernel has 3 rows of patches there and its maps lost
// most of the brain to the crop (CG-SENSE 16.3 dB on a Colin27 slice, below zero-filled's 20.7); ESPIRiT now
// shrinks the kernel to 5 x 5 (24.4 dB).
TEST(SimulateIntegration, FewAcsLinesAtSmallMatricesStillGiveMapsThatCoverTheBrain) {
  auto sim = mri::simulate(ch2(), rate_four_config(64, 0.125));
  ASSERT_EQ(sim.scan.calib[0].sum().item<int64_t>(), 8);
  const auto r = reconstruct_written(sim, "sim_r4_acs8.h5");
  EXPECT_GT(r.cg_sense, r.zero_filled + 2.0) << "zero-filled " << r.zero_filled << " dB, CG-SENSE " << r.cg_sense
                                             << " dB";
}

TEST(Scan, CalibrationLinesWidenTheAcsOverTheSampledLinesNextToThem) {
  mri::Scan s;
  s.source = "test";
  auto lines = [](std::initializer_list<int> on) {
    auto m = torch::zeros({12}, torch::kBool);
    for (int k : on) m[k] = true;
    return m;
  };
  // slice 0: ACS 5-6 inside the sampled run 3-8; slice 1: no ACS; slice 2: ACS with a gap (left as flagged);
  // slice 3: an ACS line at the edge of k-space, with the run 0-2.
  s.mask = torch::stack({lines({0, 3, 4, 5, 6, 7, 8, 11}), lines({5, 6, 7}), lines({4, 5, 7, 8}), lines({0, 1, 2, 9})});
  s.calib = torch::stack({lines({5, 6}), lines({}), lines({4, 5, 7, 8}), lines({0})});
  const auto c = s.calibration_lines();
  EXPECT_TRUE(c[0].equal(lines({3, 4, 5, 6, 7, 8})));
  EXPECT_TRUE(c[1].equal(lines({})));
  EXPECT_TRUE(c[2].equal(lines({4, 5, 7, 8})));
  EXPECT_TRUE(c[3].equal(lines({0, 1, 2})));
  EXPECT_TRUE(s.calib[0].equal(lines({5, 6}))) << "the scan's own ACS flags are left alone";
  s.calib = torch::zeros({4, 11}, torch::kBool);
  EXPECT_THROW(s.calibration_lines(), ambient::Error);
}

TEST(SimulateIntegration, CgSenseBeatsZeroFilledAtRateFour) {
  const auto r = reconstruct_written(mri::simulate(ch2(), rate_four_config(96, 0.12)), "sim_r4.h5");
  EXPECT_GT(r.cg_sense, r.zero_filled + 3.0) << "zero-filled " << r.zero_filled << " dB, CG-SENSE " << r.cg_sense
                                             << " dB";
}

// A non-square matrix (fewer phase-encode lines than readout samples, as most protocols): square pixels, the
// object's extent fitting the tighter side, masks over ky, and a CG-SENSE of the written scan beating zero-filled.
TEST(SimulateIntegration, NonSquareMatrixKeepsSquarePixelsAndReconstructs) {
  auto c = small_config();
  c.matrix = 64;
  c.readout = 80;
  c.coils = 8;
  c.acceleration = 3;
  c.center_fraction = 0.16;
  c.snr = 40;
  auto sim = mri::simulate(ch2(), c);
  EXPECT_EQ(sim.scan.ksp.sizes(), (std::vector<int64_t>{2, 8, 64, 80}));
  EXPECT_EQ(sim.reference.sizes(), (std::vector<int64_t>{2, 64, 80}));
  EXPECT_EQ(sim.scan.mask.sizes(), (std::vector<int64_t>{2, 64}));
  EXPECT_NEAR(sim.scan.geometry.fov_mm[0] / 80, sim.scan.geometry.fov_mm[1] / 64, 1e-9) << "pixels are square";
  // ch2's axial plane is 217 mm tall (rows) and 181 mm wide: 64 rows set the pixel, so the rows are what fits.
  EXPECT_NEAR(sim.scan.geometry.fov_mm[1], 217.0, 1.0);
  // readout = matrix is the square case, bit for bit.
  auto sq = small_config();
  auto sq_explicit = sq;
  sq_explicit.readout = sq.matrix;
  EXPECT_TRUE(mri::simulate(ch2(), sq).scan.ksp.equal(mri::simulate(ch2(), sq_explicit).scan.ksp));
  EXPECT_EQ(mri::biot_savart_maps(4, 32, 32, 1).sizes(), (std::vector<int64_t>{4, 32, 32}));
  EXPECT_TRUE(mri::biot_savart_maps(4, 32, 32, 1).equal(mri::biot_savart_maps(4, 32, 1)));
  const auto r = reconstruct_written(sim, "sim_nonsquare.h5");
  EXPECT_EQ(r.ny, 64);
  EXPECT_EQ(r.nx, 80);
  EXPECT_GT(r.cg_sense, r.zero_filled + 2.0) << "zero-filled " << r.zero_filled << " dB, CG-SENSE " << r.cg_sense
                                             << " dB";
  c.readout = 8;
  EXPECT_THROW(mri::simulate(ch2(), c), ambient::Error);
}

TEST(SimulateIntegration, RejectsImpossibleOptions) {
  auto c = small_config();
  c.orientation = "oblique";
  EXPECT_THROW(mri::simulate(ch2(), c), ambient::Error);
  c = small_config();
  c.slices = {1000};
  EXPECT_THROW(mri::simulate(ch2(), c), ambient::Error);
  c = small_config();
  c.mask = "poisson";
  EXPECT_THROW(mri::simulate(ch2(), c), ambient::Error);
}

// BART: the same scan through `bart ecalib -m1` + `bart pics -l2` and through our ESPIRiT + CG-SENSE.
TEST(BartIntegration, SenseReconstructionMatchesBartEcalibAndPics) {
  if (std::system("command -v bart > /dev/null") != 0) GTEST_FAIL() << "bart not installed (scripts/setup.sh)";
  auto c = small_config();
  c.count = 1;
  c.matrix = 96;
  c.coils = 8;
  c.acceleration = 3;
  c.center_fraction = 0.25;
  c.snr = 60;
  auto sim = mri::simulate(ch2(), c);
  auto scan = sim.scan;
  const auto dir = test::scratch("bart");
  std::filesystem::create_directories(dir);
  mri::write_cfl_kspace(dir + "/ksp", scan.ksp);
  const std::string cmd = "cd " + dir + " && bart ecalib -m1 -r 24 ksp maps > /dev/null 2>&1 && " +
                          "bart pics -S -l2 -r 0.001 -i 100 ksp maps img > /dev/null 2>&1";
  ASSERT_EQ(std::system(cmd.c_str()), 0) << cmd;
  auto bart = mri::read_cfl(dir + "/img").abs().reshape({96, 96});
  mri::EspiritConfig ec;
  ec.calib_size = 24;
  auto maps = mri::espirit_maps_batch(scan.ksp, scan.calib, ec);
  auto a = mri::make_sense(maps, scan.kspace_mask());
  mri::CgConfig cg;
  cg.lambda = 0.001;
  cg.iterations = 100;
  auto ours = mri::cg_sense(a, scan.ksp, cg)[0].abs();
  // Compare inside the object. BART's pics rescales the data internally (-S undoes most of it), so fit one scale
  // factor; ESPIRiT thresholds and crops differ slightly between implementations, so the tolerance is 5% NRMSE.
  auto object = (sim.reference[0] > 0.1 * sim.reference.max()).to(torch::kFloat);
  auto o = ours * object, b = bart * object;
  const double alpha = (o * b).sum().item<double>() / (o * o).sum().item<double>();
  const double nrmse = ((alpha * o - b).norm() / b.norm()).item<double>();
  std::cout << "[ measured ] ambient vs bart pics -l2: NRMSE " << nrmse << ", scale " << alpha << "\n";
  EXPECT_LT(nrmse, 0.05) << "scale " << alpha;
  EXPECT_NEAR(alpha, 1.0, 0.2);  // same noise units once -S undoes pics' internal scaling
}
