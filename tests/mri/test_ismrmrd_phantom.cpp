// Integration with ismrmrd-tools: the phantom generator stores the true phantom, coil maps (csm) and coil images
// next to interleaved R=2 acquisitions with calibration lines and a noise scan; our reader and ESPIRiT must match.
#include <gtest/gtest.h>

#include <ismrmrd/dataset.h>

#include <cstdlib>
#include <filesystem>

#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/recon.hpp"
#include "espirit_check.hpp"
#include "helpers.hpp"

using namespace ambient;

namespace {

// ISMRMRD NDArrays are column-major (x fastest): dims (x, y, c) read row-major as [c, y, x].
torch::Tensor read_ndarray(const std::string& path, const std::string& name) {
  ISMRMRD::Dataset d(path.c_str(), "dataset", false);
  ISMRMRD::NDArray<std::complex<float>> arr;
  d.readNDArray(name, 0, arr);
  std::vector<int64_t> shape;
  for (int64_t i = static_cast<int64_t>(arr.getNDim()) - 1; i >= 0; --i) shape.push_back(arr.getDims()[i]);
  return torch::from_blob(arr.getDataPtr(), shape, torch::kComplexFloat).clone();
}

class IsmrmrdPhantomIntegration : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    path_ = test::scratch("shepp_logan.h5");
    std::filesystem::remove(path_);
    // 64 x 64, 4 coils, readout oversampling 2, R = 2 interleaved over 2 repetitions, 16 calibration lines, noise.
    const std::string cmd = "ismrmrd_generate_cartesian_shepp_logan -m 64 -c 4 -a 2 -w 16 -C -n 0.002 -o " + path_ +
                            " > /dev/null";
    ASSERT_EQ(std::system(cmd.c_str()), 0) << "needs ismrmrd-tools (scripts/setup.sh installs it)";
  }
  static std::string path_;
};
std::string IsmrmrdPhantomIntegration::path_;

}  // namespace

TEST_F(IsmrmrdPhantomIntegration, AveragedRepetitionsGiveTheStoredCoilImages) {
  mri::ReadOptions ro;
  ro.prewhiten = false;
  auto scan = mri::read_ismrmrd(path_, ro);
  ASSERT_EQ(scan.ksp.sizes(), torch::IntArrayRef({1, 4, 64, 64}));  // oversampling removed: 128 -> 64
  EXPECT_TRUE(scan.mask.all().item<bool>());                          // the two interleaves fill k-space
  auto coil_images = read_ndarray(path_, "coil_images").reshape({4, 64, 128});  // [c, y, x oversampled]
  auto expected = coil_images.narrow(2, 32, 64);
  auto ours = mri::ifft2c(scan.ksp[0]);
  // k-space noise std 0.002 per sample stays 0.002 per pixel (unitary transforms); allow 5 sigma.
  EXPECT_LT((ours - expected).abs().max().item<double>(), 5 * 0.002 * std::sqrt(2.0));
  EXPECT_GT(expected.abs().max().item<double>(), 0.1);
}

TEST_F(IsmrmrdPhantomIntegration, OneRepetitionIsRateTwoWithCalibrationOnlyLines) {
  mri::ReadOptions ro;
  ro.repetition = 0;
  auto scan = mri::read_ismrmrd(path_, ro);
  EXPECT_EQ(scan.mask.sum().item<int64_t>(), 32);
  EXPECT_EQ(scan.calib.sum().item<int64_t>(), 16);
  ASSERT_TRUE(scan.calib_ksp.defined());  // odd lines in the ACS block are calibration-only
  EXPECT_NEAR(scan.acceleration(), 2.0, 1e-9);
  ASSERT_TRUE(scan.noise.defined());
  EXPECT_TRUE(scan.prewhitened);
}

TEST_F(IsmrmrdPhantomIntegration, EspiritMapsAgreeWithTheStoredCsm) {
  mri::ReadOptions ro;
  ro.repetition = 0;
  ro.prewhiten = false;
  auto scan = mri::read_ismrmrd(path_, ro);
  auto csm = read_ndarray(path_, "csm").reshape({4, 64, 64});
  auto phantom = read_ndarray(path_, "phantom").reshape({64, 64});
  mri::EspiritConfig cfg;
  cfg.calib_size = 16;
  auto maps = mri::espirit_maps(scan.calibration_kspace()[0], scan.calib[0], cfg);
  auto object = phantom.abs() > 0.05 * phantom.abs().max();
  const auto agreement = test::compare_maps(maps, csm, object);
  EXPECT_GT(agreement.mean_abs_correlation, 0.99);
  EXPECT_LT(agreement.rel_error_phase_normalised, 0.1);
}

TEST_F(IsmrmrdPhantomIntegration, SenseReconstructionMatchesThePhantom) {
  mri::ReadOptions ro;
  ro.repetition = 0;
  auto scan = mri::read_ismrmrd(path_, ro);
  mri::EspiritConfig cfg;
  cfg.calib_size = 16;
  auto maps = mri::espirit_maps_batch(scan.calibration_kspace(), scan.calib, cfg);
  auto a = mri::make_sense(maps, scan.kspace_mask());
  mri::CgConfig cg;
  cg.iterations = 50;
  cg.lambda = 1e-4;
  auto rec = mri::cg_sense(a, scan.ksp, cg)[0].abs();
  // Expected magnitude: |phantom| times the whitened coil sensitivity norm; compare shapes after a scale fit.
  auto phantom = read_ndarray(path_, "phantom").reshape({64, 64}).abs();
  auto csm = read_ndarray(path_, "csm").reshape({4, 64, 64});
  auto expected = phantom * mri::rss(csm, 0);
  const double alpha = (rec * expected).sum().item<double>() / (rec * rec).sum().item<double>();
  const double nrmse = ((alpha * rec - expected).norm() / expected.norm()).item<double>();
  EXPECT_LT(nrmse, 0.05);
}
