// Readers and writers: round trips through ISMRMRD, fastMRI, cfl and NIfTI, geometry, and clear errors on bad files.
#include <gtest/gtest.h>

#include <hdf5.h>
#include <ismrmrd/dataset.h>
#include <ismrmrd/xml.h>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/scan.hpp"
#include "helpers.hpp"

using namespace ambient;
namespace fs = std::filesystem;

namespace {

mri::Scan small_scan(int64_t slices = 2, int64_t coils = 3, int64_t ny = 24, int64_t nx = 20) {
  mri::Scan s;
  s.ksp = test::random_complex({slices, coils, ny, nx}, 1);
  s.mask = torch::zeros({slices, ny}, torch::kBool);
  for (int64_t i = 0; i < slices; ++i) s.mask[i] = mri::random_mask_1d(ny, 0.25, 2, i);
  s.calib = torch::zeros_like(s.mask);
  for (int64_t i = 0; i < slices; ++i) s.calib[i] = mri::central_run(s.mask[i]);
  s.ksp = s.ksp * s.kspace_mask();
  s.noise = test::random_complex({coils, 512}, 2);
  s.geometry.fov_mm = {200, 240, 4};
  for (int64_t i = 0; i < slices; ++i) {
    mri::SliceGeometry g;
    g.position = {10.0, -20.0, 5.0 + 6.0 * i};
    g.read_dir = {0, 1, 0};
    g.phase_dir = {-1, 0, 0};
    g.slice_dir = {0, 0, 1};
    s.geometry.slices.push_back(g);
  }
  return s;
}

}  // namespace

TEST(Io, IsmrmrdRoundTripKeepsDataMaskCalibrationNoiseAndGeometry) {
  auto s = small_scan();
  const auto path = test::scratch("roundtrip.h5");
  mri::write_ismrmrd(path, s);
  mri::ReadOptions ro;
  ro.prewhiten = false;
  auto r = mri::read_ismrmrd(path, ro);
  EXPECT_EQ(r.format, "ismrmrd");
  EXPECT_TRUE(r.mask.equal(s.mask));
  EXPECT_TRUE(r.calib.equal(s.calib));
  EXPECT_LT(test::rel_max_error(r.ksp, s.ksp), 1e-7);
  EXPECT_LT(test::rel_max_error(r.noise, s.noise), 1e-7);
  ASSERT_EQ(r.geometry.slices.size(), 2u);
  EXPECT_NEAR(r.geometry.slices[1].position[2], 11.0, 1e-5);
  EXPECT_NEAR(r.geometry.slices[0].phase_dir[0], -1.0, 1e-6);
  EXPECT_NEAR(r.geometry.fov_mm[1], 240.0, 1e-4);
  EXPECT_FALSE(r.prewhitened);
}

TEST(Io, IsmrmrdPrewhiteningGivesUnitUncorrelatedNoise) {
  auto s = small_scan(1, 4, 16, 16);
  // Correlated noise: n = L w with a non-trivial L.
  auto l = torch::tensor({1.0, 0.0, 0.0, 0.0, 0.5, 1.2, 0.0, 0.0, 0.1, 0.3, 0.8, 0.0, 0.2, 0.0, 0.4, 2.0},
                         torch::kFloat).reshape({4, 4}).to(torch::kComplexFloat);
  s.noise = l.matmul(test::random_complex({4, 20000}, 3));
  auto w = mri::whitening_matrix(s.noise);
  auto white = w.matmul(s.noise);
  auto cov = white.matmul(white.conj().transpose(0, 1)) / 20000.0;
  EXPECT_LT((cov - torch::eye(4, torch::kComplexFloat)).abs().max().item<double>(), 0.03);
  const auto path = test::scratch("whiten.h5");
  mri::write_ismrmrd(path, s);
  auto r = mri::read_ismrmrd(path);  // prewhitens by default
  EXPECT_TRUE(r.prewhitened);
  EXPECT_LT(test::rel_max_error(r.ksp, mri::apply_coil_matrix(mri::whitening_matrix(s.noise), s.ksp)), 1e-5);
}

TEST(Io, FastmriRoundTripTransposesToPhaseEncodeRows) {
  auto s = small_scan(2, 3, 24, 20);
  s.mask[1] = s.mask[0];  // fastMRI keeps one mask for the volume
  s.ksp = s.ksp * s.kspace_mask();
  s.calib[1] = s.calib[0];
  const auto path = test::scratch("fastmri.h5");
  mri::write_fastmri(path, s);
  EXPECT_EQ(mri::detect_format(path), "fastmri");
  auto r = mri::read_fastmri(path);
  EXPECT_TRUE(r.mask.equal(s.mask));
  EXPECT_LT(test::rel_max_error(r.ksp, s.ksp), 1e-7);
  EXPECT_EQ(r.meta.at("acquisition"), "AXT1");
  // The file itself holds (slices, coils, H = kx, W = ky), as fastMRI does.
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "kspace", H5P_DEFAULT);
  hid_t sp = H5Dget_space(d);
  hsize_t dims[4];
  H5Sget_simple_extent_dims(sp, dims, nullptr);
  EXPECT_EQ(dims[2], 20u);
  EXPECT_EQ(dims[3], 24u);
  H5Sclose(sp), H5Dclose(d), H5Fclose(f);
}

TEST(Io, FastmriReaderRemovesReadoutOversamplingFromTheHeader) {
  // An image occupying the central half of an oversampled readout comes back intact on the recon grid.
  auto img = torch::zeros({1, 1, 16, 32}, torch::kComplexFloat);
  img.narrow(3, 8, 16).copy_(test::random_complex({1, 1, 16, 16}, 4));
  mri::Scan s;
  s.ksp = mri::fft2c(img);
  s.mask = torch::ones({1, 16}, torch::kBool);
  s.calib = torch::ones({1, 16}, torch::kBool);
  s.geometry = mri::default_geometry(1, {200, 200, 5});
  const auto path = test::scratch("fastmri_os.h5");
  mri::write_fastmri(path, s);
  // Rewrite the header so the recon matrix is half the encoded readout.
  {
    hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    H5Ldelete(f, "ismrmrd_header", H5P_DEFAULT);
    const std::string xml =
        "<?xml version=\"1.0\"?><ismrmrdHeader xmlns=\"http://www.ismrm.org/ISMRMRD\"><experimentalConditions>"
        "<H1resonanceFrequency_Hz>1</H1resonanceFrequency_Hz></experimentalConditions><encoding><encodedSpace>"
        "<matrixSize><x>32</x><y>16</y><z>1</z></matrixSize><fieldOfView_mm><x>400</x><y>200</y><z>5</z>"
        "</fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize>"
        "<fieldOfView_mm><x>200</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace><encodingLimits/>"
        "<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>";
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, xml.size());
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t d = H5Dcreate2(f, "ismrmrd_header", t, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, xml.c_str());
    H5Dclose(d), H5Sclose(sp), H5Tclose(t), H5Fclose(f);
  }
  auto r = mri::read_fastmri(path);
  ASSERT_EQ(r.nx(), 16);
  EXPECT_LT(test::rel_max_error(mri::ifft2c(r.ksp), img.narrow(3, 8, 16)), 1e-5);
}

TEST(Io, CflRoundTripUsesBartDimensionOrder) {
  auto s = small_scan(3, 2, 12, 10);
  const auto base = test::scratch("ksp");
  mri::write_cfl_kspace(base, s.ksp);
  std::ifstream hdr(base + ".hdr");
  std::string line, dims;
  std::getline(hdr, line);
  std::getline(hdr, dims);
  EXPECT_EQ(dims, "10 12 1 2 1 1 1 1 1 1 1 1 1 3 1 1 ");  // READ PHS1 PHS2 COIL ... SLICE(13)
  auto r = mri::read_cfl_scan(base);
  EXPECT_LT(test::rel_max_error(r.ksp, s.ksp), 1e-7);
  EXPECT_TRUE(r.mask.equal(s.mask));
  auto t = mri::read_cfl(base + ".cfl");
  EXPECT_EQ(t.dim(), 14);
}

TEST(Io, CflRejectsTruncatedData) {
  const auto base = test::scratch("trunc");
  mri::write_cfl(base, test::random_complex({4, 4}, 1));
  fs::resize_file(base + ".cfl", 40);
  EXPECT_THROW(mri::read_cfl(base), ambient::Error);
  // Dimensions whose product overflows 64 bits: 2^32 x 2^32 x 8 bytes wraps to 0, the size of an empty data file.
  std::ofstream(base + ".hdr") << "# Dimensions\n4294967296 4294967296 1 1 1 1 1 1 1 1 1 1 1 1 1 1\n";
  fs::resize_file(base + ".cfl", 0);
  try {
    mri::read_cfl(base);
    FAIL() << "expected an error";
  } catch (const ambient::Error& e) {
    EXPECT_NE(std::string(e.what()).find("expected over 2^62 bytes"), std::string::npos) << e.what();
  }
}

TEST(Io, NiftiRoundTripKeepsSpacingOriginAndDirection) {
  auto s = small_scan(3, 1, 24, 20);
  auto images = torch::rand({3, 24, 20});
  auto v = mri::volume_from_geometry(images, s.geometry);
  EXPECT_NEAR(v.spacing[0], 10.0, 1e-9);  // 200 mm / 20
  EXPECT_NEAR(v.spacing[1], 10.0, 1e-9);  // 240 mm / 24
  EXPECT_NEAR(v.spacing[2], 6.0, 1e-9);   // slice positions 6 mm apart
  const auto path = test::scratch("vol.nii.gz");
  mri::write_nifti(path, v);
  auto r = mri::read_nifti(path);
  EXPECT_TRUE(torch::allclose(r.data, images));
  for (int i = 0; i < 3; ++i) {
    EXPECT_NEAR(r.spacing[i], v.spacing[i], 1e-4);
    EXPECT_NEAR(r.origin[i], v.origin[i], 1e-3);
    for (int j = 0; j < 3; ++j) EXPECT_NEAR(r.direction[i][j], v.direction[i][j], 1e-5);
  }
  // Pixel (ny/2, nx/2) of slice 0 lands on the slice position: origin + D (spacing ⊙ index).
  for (int i = 0; i < 3; ++i) {
    const double world = r.origin[i] + r.direction[0][i] * r.spacing[0] * 10 + r.direction[1][i] * r.spacing[1] * 12;
    EXPECT_NEAR(world, s.geometry.slices[0].position[i], 1e-3);
  }
}

TEST(Io, WritersLeaveNoPartialFileOnFailure) {
  const auto dir = test::scratch("atomic");
  fs::create_directories(dir);
  const auto target = dir + "/out.nii.gz";
  EXPECT_THROW(ambient::write_atomically(target, [](const std::string& tmp) {
                 std::ofstream(tmp) << "partial";
                 ambient::fail("simulated failure");
               }),
               ambient::Error);
  EXPECT_FALSE(fs::exists(target));
  EXPECT_TRUE(fs::is_empty(dir));
  auto nan_volume = mri::Volume{torch::full({1, 4, 4}, NAN)};
  EXPECT_THROW(mri::write_nifti(target, nan_volume), ambient::Error);
  EXPECT_FALSE(fs::exists(target));
}

TEST(Io, BadFilesGiveClearErrors) {
  EXPECT_THROW(mri::read_scan(test::scratch("does_not_exist.h5")), ambient::Error);
  const auto junk = test::scratch("junk.h5");
  std::ofstream(junk) << "not an hdf5 file";
  try {
    mri::read_scan(junk);
    FAIL() << "expected an error";
  } catch (const ambient::Error& e) {
    EXPECT_NE(std::string(e.what()).find("neither HDF5"), std::string::npos) << e.what();
  }
  // Truncated ISMRMRD: cut a valid file in half.
  auto s = small_scan();
  const auto good = test::scratch("good.h5"), cut = test::scratch("cut.h5");
  mri::write_ismrmrd(good, s);
  fs::copy_file(good, cut, fs::copy_options::overwrite_existing);
  fs::resize_file(cut, fs::file_size(good) / 2);
  EXPECT_THROW(mri::read_scan(cut), ambient::Error);
  // HDF5 with neither layout.
  const auto empty = test::scratch("empty.h5");
  H5Fclose(H5Fcreate(empty.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT));
  EXPECT_THROW(mri::read_scan(empty), ambient::Error);
}

TEST(Io, ValidateRejectsNaNsAndShapeMismatches) {
  auto s = small_scan();
  EXPECT_NO_THROW(mri::validate(s, "test"));
  auto bad = s;
  bad.ksp = s.ksp.clone();
  bad.ksp[0][0][0][0] = c10::complex<float>(NAN, 0);
  EXPECT_THROW(mri::validate(bad, "test"), ambient::Error);
  bad = s;
  bad.mask = torch::ones({2, 5}, torch::kBool);
  EXPECT_THROW(mri::validate(bad, "test"), ambient::Error);
}

// A hand-made ISMRMRD file whose sampled grid is smaller than the matrix and offset (partial Fourier in ky), with
// an asymmetric echo (readout of 24 samples, centre at sample 8, in a 32-sample matrix).
TEST(Io, IsmrmrdHonoursEncodingLimitCentresAndAsymmetricEcho) {
  const auto path = test::scratch("partial_fourier.h5");
  std::filesystem::remove(path);
  {
    ISMRMRD::Dataset d(path.c_str(), "dataset", true);
    ISMRMRD::IsmrmrdHeader h;
    ISMRMRD::Encoding e;
    e.trajectory = ISMRMRD::TrajectoryType::CARTESIAN;
    e.encodedSpace.matrixSize = ISMRMRD::MatrixSize(32, 32, 1);
    e.encodedSpace.fieldOfView_mm = {256, 256, 5};
    e.reconSpace = e.encodedSpace;
    e.encodingLimits.kspace_encoding_step_1 = ISMRMRD::Limit(0, 23, 12);  // 24 of 32 lines, centre at step 12
    h.encoding.push_back(e);
    std::ostringstream xml;
    ISMRMRD::serialize(h, xml);
    d.writeHeader(xml.str());
    for (uint16_t step = 0; step < 24; ++step) {
      ISMRMRD::Acquisition acq(24, 2);
      acq.center_sample() = 8;
      acq.idx().kspace_encode_step_1 = step;
      acq.read_dir()[0] = 1, acq.phase_dir()[1] = 1, acq.slice_dir()[2] = 1;
      for (uint16_t c = 0; c < 2; ++c)
        for (uint16_t s = 0; s < 24; ++s) acq.data(s, c) = std::complex<float>(step + 1, 100 * c + s);
      d.appendAcquisition(acq);
    }
  }
  auto scan = mri::read_ismrmrd(path);
  ASSERT_EQ(scan.ksp.sizes(), torch::IntArrayRef({1, 2, 32, 32}));
  // step e lands on ky = e - 12 + 16: lines 4..27 sampled, the rest zero-filled.
  EXPECT_EQ(scan.mask[0].sum().item<int64_t>(), 24);
  EXPECT_TRUE(scan.mask[0].slice(0, 4, 28).all().item<bool>());
  EXPECT_FALSE(scan.mask[0][3].item<bool>());
  EXPECT_EQ(c10::complex<float>(scan.ksp[0][0][4][8].item<c10::complex<float>>()), c10::complex<float>(1, 0));
  // sample s lands on kx = s - 8 + 16: samples 0..23 -> kx 8..31; kx < 8 stays zero.
  EXPECT_EQ(c10::complex<float>(scan.ksp[0][1][27][31].item<c10::complex<float>>()), c10::complex<float>(24, 123));
  EXPECT_EQ(scan.ksp[0].narrow(2, 0, 8).abs().max().item<float>(), 0.0f);
  EXPECT_FALSE(scan.prewhitened);  // no noise scan in this file
}

namespace {

// fastMRI's complex64 on disk: a compound of two floats, r and i. The caller closes it.
hid_t complex_type() {
  hid_t ct = H5Tcreate(H5T_COMPOUND, 8);
  H5Tinsert(ct, "r", 0, H5T_NATIVE_FLOAT);
  H5Tinsert(ct, "i", 4, H5T_NATIVE_FLOAT);
  return ct;
}

// A fastMRI 'kspace' dataset in file f holding ksp, [slices, coils, H, W] complex64, contiguous.
void write_kspace(hid_t f, const torch::Tensor& ksp) {
  hid_t ct = complex_type();
  std::vector<hsize_t> dims(ksp.sizes().begin(), ksp.sizes().end());
  hid_t sp = H5Screate_simple(static_cast<int>(dims.size()), dims.data(), nullptr);
  hid_t d = H5Dcreate2(f, "kspace", ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  H5Dwrite(d, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, ksp.contiguous().data_ptr());
  H5Dclose(d), H5Sclose(sp), H5Tclose(ct);
}

}  // namespace

TEST(Io, FastmriSingleCoilWithH5pyBoolMask) {
  const auto path = test::scratch("singlecoil.h5");
  auto ksp = test::random_complex({2, 20, 16}, 9);  // (slices, H = kx, W = ky)
  {
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ct = complex_type();
    hsize_t dims[3] = {2, 20, 16};
    hid_t sp = H5Screate_simple(3, dims, nullptr);
    hid_t d = H5Dcreate2(f, "kspace", ct, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(d, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, ksp.data_ptr());
    H5Dclose(d), H5Sclose(sp), H5Tclose(ct);
    // h5py stores numpy bool as an int8 enum {FALSE = 0, TRUE = 1}.
    hid_t et = H5Tenum_create(H5T_NATIVE_INT8);
    int8_t v0 = 0, v1 = 1;
    H5Tenum_insert(et, "FALSE", &v0);
    H5Tenum_insert(et, "TRUE", &v1);
    hsize_t w = 16;
    hid_t ms = H5Screate_simple(1, &w, nullptr);
    std::vector<int8_t> mask(16, 0);
    for (int i : {0, 3, 6, 7, 8, 9, 12}) mask[i] = 1;
    hid_t md = H5Dcreate2(f, "mask", et, ms, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(md, et, H5S_ALL, H5S_ALL, H5P_DEFAULT, mask.data());
    H5Dclose(md), H5Sclose(ms), H5Tclose(et), H5Fclose(f);
  }
  auto scan = mri::read_scan(path);
  EXPECT_EQ(scan.format, "fastmri");
  ASSERT_EQ(scan.ksp.sizes(), torch::IntArrayRef({2, 1, 16, 20}));
  EXPECT_EQ(scan.mask[1].sum().item<int64_t>(), 7);
  EXPECT_TRUE(scan.calib[0].slice(0, 6, 10).all().item<bool>());  // central run 6..9
  // Sampled line ky = 3 equals kspace[:, :, 3] of the file; an unsampled line is zeroed.
  EXPECT_LT(test::rel_max_error(scan.ksp[0][0][3], ksp[0].select(1, 3)), 1e-7);
  EXPECT_EQ(scan.ksp[0][0][1].abs().max().item<float>(), 0.0f);
}

namespace {

std::vector<char> file_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

void put_bytes(const std::string& path, const std::vector<char>& bytes) {
  std::ofstream(path, std::ios::binary).write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

uint64_t get_le(const std::vector<char>& b, size_t at, size_t n) {
  uint64_t v = 0;
  for (size_t i = n; i-- > 0;) v = (v << 8) | static_cast<unsigned char>(b[at + i]);
  return v;
}

void set_le(std::vector<char>& b, size_t at, size_t n, uint64_t v) {
  for (size_t i = 0; i < n; ++i, v >>= 8) b[at + i] = static_cast<char>(v & 0xff);
}

// Byte offsets of every object header in the first global heap collection of a file (8-byte lengths).
std::vector<size_t> heap_objects(const std::vector<char>& b, size_t& collection) {
  const std::string bytes(b.begin(), b.end());
  collection = bytes.find("GCOL");
  EXPECT_NE(collection, std::string::npos);
  std::vector<size_t> objects;
  if (collection == std::string::npos) return objects;
  const uint64_t size = get_le(b, collection + 8, 8);
  for (uint64_t p = 16; p + 16 <= size;) {
    objects.push_back(collection + p);
    const uint64_t index = get_le(b, collection + p, 2), n = get_le(b, collection + p + 8, 8);
    const uint64_t need = index > 0 ? 16 + (n + 7) / 8 * 8 : n;
    if (need == 0) break;
    p += need;
  }
  return objects;
}

std::string read_error(const std::string& path) {
  try {
    mri::read_scan(path);
  } catch (const ambient::Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Damage HDF5 followed blindly (fuzz findings): a free-space object of size 0 made it loop for ever, a damaged
// length made it allocate gigabytes. Each damage below is refused with a message naming the file, quickly.
TEST(Io, DamagedHdf5HeapsAreRefusedBeforeHdf5FollowsThem) {
  const auto good = test::scratch("heap_good.h5");
  mri::write_ismrmrd(good, small_scan());
  ASSERT_NO_THROW(mri::read_scan(good));
  const auto clean = file_bytes(good);
  size_t collection = 0;
  const auto objects = heap_objects(clean, collection);
  ASSERT_GE(objects.size(), 3u);
  const auto bad = test::scratch("heap_bad.h5");
  auto expect_refused = [&](std::vector<char> bytes, const std::string& what) {
    put_bytes(bad, bytes);
    const std::string e = read_error(bad);
    EXPECT_NE(e.find(what), std::string::npos) << e;
    EXPECT_NE(e.find("heap_bad"), std::string::npos) << e;
  };
  // Free space of size 0 (the object after the last used one is free space in a collection that is not full).
  auto b = clean;
  const size_t last = objects.back();
  ASSERT_EQ(get_le(b, last, 2), 0u) << "expected the last object to be free space";
  set_le(b, last + 8, 8, 0);
  expect_refused(b, "impossible size");
  // A used object claims more than its collection holds.
  b = clean;
  set_le(b, objects[1] + 8, 8, uint64_t{1} << 40);
  expect_refused(b, "impossible size");
  // A used object one float longer or shorter than its descriptor says, within its padding (a longer one would
  // overrun HDF5's buffer).
  b = clean;
  const uint64_t n = get_le(b, objects[1] + 8, 8);
  set_le(b, objects[1] + 8, 8, n % 8 == 4 ? n + 4 : n - 4);
  expect_refused(b, "heap object holds");
  // The collection claims to be larger than the file.
  b = clean;
  set_le(b, collection + 8, 8, uint64_t{6} << 30);
  expect_refused(b, "more than the file holds");
  // Not a collection where the descriptors point.
  b = clean;
  b[collection] = 'X';
  expect_refused(b, "expected a global heap collection");
  // A sound heap, but a header whose sample count disagrees with its data's stored length.
  put_bytes(bad, clean);
  {
    hid_t f = H5Fopen(bad.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    hid_t d = H5Dopen2(f, "/dataset/data", H5P_DEFAULT);
    hid_t head = H5Tcreate(H5T_COMPOUND, sizeof(uint16_t));
    H5Tinsert(head, "number_of_samples", 0, H5T_NATIVE_UINT16);
    hid_t row = H5Tcreate(H5T_COMPOUND, sizeof(uint16_t));
    H5Tinsert(row, "head", 0, head);
    hid_t space = H5Dget_space(d);
    const hsize_t first = 3, one = 1;
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &first, nullptr, &one, nullptr);
    hid_t mem = H5Screate_simple(1, &one, nullptr);
    const uint16_t samples = 7;
    EXPECT_GE(H5Dwrite(d, row, mem, space, H5P_DEFAULT, &samples), 0);
    H5Sclose(mem), H5Sclose(space), H5Tclose(row), H5Tclose(head), H5Dclose(d), H5Fclose(f);
  }
  const std::string e = read_error(bad);
  EXPECT_NE(e.find("acquisition 3 of"), std::string::npos) << e;
}

// The raw checks must read HDF5's own layout right: a user block shifts every address by its size, and the
// header string is read from contiguous storage (h5py's default for ismrmrd_header) and from a chunk.
TEST(Io, FastmriHeaderStringIsCheckedThroughAUserBlock) {
  auto ksp = test::random_complex({1, 2, 16, 16}, 11);
  const std::string xml =
      "<?xml version=\"1.0\"?><ismrmrdHeader xmlns=\"http://www.ismrm.org/ISMRMRD\"><experimentalConditions>"
      "<H1resonanceFrequency_Hz>1</H1resonanceFrequency_Hz></experimentalConditions><encoding><encodedSpace>"
      "<matrixSize><x>16</x><y>16</y><z>1</z></matrixSize><fieldOfView_mm><x>321</x><y>200</y><z>5</z>"
      "</fieldOfView_mm></encodedSpace><reconSpace><matrixSize><x>16</x><y>16</y><z>1</z></matrixSize>"
      "<fieldOfView_mm><x>321</x><y>200</y><z>5</z></fieldOfView_mm></reconSpace><encodingLimits/>"
      "<trajectory>cartesian</trajectory></encoding></ismrmrdHeader>";
  for (const bool chunked : {false, true}) {
    SCOPED_TRACE(chunked ? "chunked" : "contiguous");
    const auto path = test::scratch(chunked ? "userblock_chunked.h5" : "userblock.h5");
    {
      hid_t fcpl = H5Pcreate(H5P_FILE_CREATE);
      H5Pset_userblock(fcpl, 512);
      hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, fcpl, H5P_DEFAULT);
      write_kspace(f, ksp);
      hid_t st = H5Tcopy(H5T_C_S1);
      H5Tset_size(st, H5T_VARIABLE);
      const hsize_t one = 1;
      hid_t ss = chunked ? H5Screate_simple(1, &one, nullptr) : H5Screate(H5S_SCALAR);
      hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
      if (chunked) H5Pset_chunk(dcpl, 1, &one);
      hid_t hd = H5Dcreate2(f, "ismrmrd_header", st, ss, H5P_DEFAULT, dcpl, H5P_DEFAULT);
      const char* value = xml.c_str();
      H5Dwrite(hd, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
      H5Dclose(hd), H5Pclose(dcpl), H5Sclose(ss), H5Tclose(st), H5Fclose(f), H5Pclose(fcpl);
    }
    const auto scan = mri::read_scan(path);
    EXPECT_NEAR(scan.geometry.fov_mm[0], 321.0, 1e-3);  // the header reached the reader
    // The string's heap object, one byte longer than its descriptor says, is refused.
    auto b = file_bytes(path);
    size_t collection = 0;
    const auto objects = heap_objects(b, collection);
    ASSERT_GE(objects.size(), 1u);
    ASSERT_EQ(get_le(b, objects[0] + 8, 8), xml.size());
    set_le(b, objects[0] + 8, 8, xml.size() + 1);
    const auto bad = test::scratch("userblock_bad.h5");
    put_bytes(bad, b);
    const std::string e = read_error(bad);
    EXPECT_NE(e.find("heap object holds"), std::string::npos) << e;
  }
}

// An extent the file cannot hold (found by fuzzing: 8 million rows of which 7 were stored) is refused before HDF5
// produces fill values for it or the reader allocates it.
TEST(Io, Hdf5ExtentsMustFitTheFile) {
  const auto path = test::scratch("huge_extent.h5");
  {
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hid_t ct = complex_type();
    hsize_t dims[4] = {1000000, 2, 16, 16}, chunk[4] = {1, 2, 16, 16};
    hid_t sp = H5Screate_simple(4, dims, nullptr);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 4, chunk);
    hid_t d = H5Dcreate2(f, "kspace", ct, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    auto one = test::random_complex({1, 2, 16, 16}, 12);
    hid_t ms = H5Screate_simple(4, chunk, nullptr);
    const hsize_t start[4] = {0, 0, 0, 0};
    H5Sselect_hyperslab(sp, H5S_SELECT_SET, start, nullptr, chunk, nullptr);
    H5Dwrite(d, ct, ms, sp, H5P_DEFAULT, one.data_ptr());  // one slice of a million stored
    H5Sclose(ms), H5Dclose(d), H5Pclose(dcpl), H5Sclose(sp), H5Tclose(ct), H5Fclose(f);
  }
  EXPECT_LT(fs::file_size(path), 1u << 20);
  const std::string e = read_error(path);
  EXPECT_NE(e.find("more than the file can hold"), std::string::npos) << e;
  EXPECT_NE(e.find("huge_extent"), std::string::npos) << e;
}

// Variable-length values in compact storage (inside the object header) cannot be checked on disk before HDF5
// follows them, so they are refused with a way out; libismrmrd and h5py never write them. (A fuzzed compact
// dataset whose stored size was 0 made HDF5 read from a null buffer: tests/fuzz/regressions/scan/.)
TEST(Io, CompactVariableLengthStorageIsRefused) {
  const auto path = test::scratch("compact_header.h5");
  {
    hid_t f = H5Fcreate(path.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    write_kspace(f, test::random_complex({1, 2, 16, 16}, 13));
    hid_t st = H5Tcopy(H5T_C_S1);
    H5Tset_size(st, H5T_VARIABLE);
    hid_t ss = H5Screate(H5S_SCALAR);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_layout(dcpl, H5D_COMPACT);
    hid_t hd = H5Dcreate2(f, "ismrmrd_header", st, ss, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    const char* value = "<ismrmrdHeader/>";
    H5Dwrite(hd, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
    H5Dclose(hd), H5Pclose(dcpl), H5Sclose(ss), H5Tclose(st), H5Fclose(f);
  }
  const std::string e = read_error(path);
  EXPECT_NE(e.find("compact storage"), std::string::npos) << e;
  EXPECT_NE(e.find("ismrmrd_header"), std::string::npos) << e;
}

// A damaged datatype message makes HDF5 1.10.8 divide by zero inside H5Dopen2 (a fuzz finding, SIGFPE in the
// normal build): no check through HDF5's API comes before that. With the handler that `ambient` installs, the crash
// is one error line naming the file and exit status 1 (tests/fuzz/third_party/).
TEST(IoDeathTest, CrashInsideHdf5IsOneErrorLine) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";  // the child re-runs the test alone: no torch threads
  const std::string path = AMBIENT_SOURCE_DIR "/tests/fuzz/third_party/hdf5_datatype_copy_sigfpe.h5";
  ASSERT_TRUE(fs::exists(path)) << path;
  EXPECT_EXIT(
      {
        ambient::exit_cleanly_on_reader_crash();
        (void)mri::read_scan(path);
      },
      ::testing::ExitedWithCode(1), "ambient: error: the HDF5 reader crashed \\(SIGFPE\\) while reading .*"
      "hdf5_datatype_copy_sigfpe.h5: the file is damaged");
}

// libismrmrd's global error stack holds pointers to messages that HDF5 frees; a read that left errors on it made
// the next failed read's message a use-after-free (the two ismrmrd_stale_errors_* findings, read in that order by
// one process). Every read, refused or not, must leave the stack empty.
TEST(Io, IsmrmrdReadsLeaveTheLibrarysErrorStackEmpty) {
  const std::string dir = AMBIENT_SOURCE_DIR "/tests/fuzz/regressions/scan/";
  auto scan = small_scan();
  const std::string good = test::scratch("stack_good.h5");
  mri::write_ismrmrd(good, scan);
  for (const std::string& path : std::vector<std::string>{dir + "ismrmrd_stale_errors_1_xml_refused.h5", good,
                                                          dir + "ismrmrd_stale_errors_2_use_after_free.h5"}) {
    try {
      (void)mri::read_scan(path);
    } catch (const Error&) {
    }
    EXPECT_FALSE(ISMRMRD::ismrmrd_pop_error(nullptr, nullptr, nullptr, nullptr, nullptr))
        << path << " left errors on libismrmrd's stack";
  }
}

// The scope names the innermost reader; outside every scope a crash is the signal it always was.
TEST(IoDeathTest, ReaderCrashScopesNestAndEndWithTheirReader) {
  ::testing::FLAGS_gtest_death_test_style = "threadsafe";
  EXPECT_EXIT(
      {
        ambient::exit_cleanly_on_reader_crash();
        const ambient::ReaderCrashScope outer("outer reader", "a.bin", "outer advice");
        { const ambient::ReaderCrashScope inner("inner reader", "b.bin", "inner advice"); }
        raise(SIGSEGV);
      },
      ::testing::ExitedWithCode(1), "^ambient: error: the outer reader crashed \\(SIGSEGV\\) while reading a.bin: "
      "outer advice\n$");
  EXPECT_EXIT(
      {
        ambient::exit_cleanly_on_reader_crash();
        { const ambient::ReaderCrashScope scope("a reader", "a.bin", "advice"); }
        raise(SIGSEGV);
      },
      ::testing::KilledBySignal(SIGSEGV), "");
}

// Every fixed fuzz finding (tests/fuzz/regressions/scan/) is refused with an ambient::Error by the normal build as
// well, each with the check that caught it named in its message.
TEST(Io, FuzzFindingsAreRefusedWithTheirCheck) {
  const std::vector<std::pair<std::string, std::string>> findings = {
      {"hdf5_chunk_larger_than_type.h5", "a compound member of 2 bytes"},
      {"hdf5_compact_storage_size_0.h5", "in 0 bytes of storage"},
      {"hdf5_compact_xml_4gb.h5", "in 16 bytes of storage"},
      {"hdf5_compound_member_beyond_size.h5", "a compound member of 128 bytes"},
      {"hdf5_damaged_float_in_head.h5", "floating-point type"},
      {"hdf5_extent_8m_fill_rows.h5", "more than the file can hold"},
      {"hdf5_heap_free_space_loop.h5", "has an impossible size, 0"},
      {"hdf5_local_heap_free_list_loop.h5", "loops back to offset 24"},
      {"hdf5_member_beyond_element.h5", "a compound member of 16 bytes"},
      {"hdf5_root_header_4gb_malloc.h5", "cannot open HDF5 file"},
      {"hdf5_vlen_length_6gb.h5", "outside the file"},
      {"ismrmrd_bad_free.h5", "outside the file"},
      {"ismrmrd_exception_use_after_free.h5", "of every ISMRMRD acquisition header member"},
      {"ismrmrd_head_member_renamed.h5", "of every ISMRMRD acquisition header member"},
      {"ismrmrd_stale_errors_1_xml_refused.h5", "expected the XML header /dataset/xml to be one string"},
      {"ismrmrd_stale_errors_2_use_after_free.h5", "expected the XML header /dataset/xml to be one string"},
      {"ismrmrd_xml_header_use_after_free.h5", "expected an XML header at /dataset/xml"},
  };
  const std::string dir = AMBIENT_SOURCE_DIR "/tests/fuzz/regressions/scan/";
  size_t on_disk = 0;
  for (const auto& entry : fs::directory_iterator(dir)) on_disk += entry.is_regular_file();
  EXPECT_EQ(on_disk, findings.size()) << "a finding was added to " << dir << " without a line here";
  for (const auto& [file, why] : findings) {
    const std::string e = read_error(dir + file);
    EXPECT_FALSE(e.empty()) << file << " was read without an error";
    EXPECT_NE(e.find(why), std::string::npos) << file << ": " << e;
  }
}

TEST(Io, CflMapsKeepTheFirstSetOfBartMaps) {
  // ecalib -m 2 layout, row-major: [slice, 1 x 8, maps, coil, 1, ky, kx] (BART dims reversed; MAPS is dim 4).
  const int64_t slices = 2, maps_sets = 2, coils = 3, ny = 6, nx = 5;
  auto gen = at::detail::createCPUGenerator(7);
  auto t = torch::randn({slices, 1, 1, 1, 1, 1, 1, 1, 1, maps_sets, coils, 1, ny, nx}, gen, torch::kComplexFloat);
  const auto path = test::scratch("maps");
  mri::write_cfl(path, t);
  auto maps = mri::read_cfl_maps(path);
  ASSERT_EQ(maps.sizes(), torch::IntArrayRef({slices, coils, ny, nx}));
  EXPECT_TRUE(torch::equal(maps, t.select(9, 0).reshape({slices, coils, ny, nx})));
  // What write_cfl_kspace writes (one set of maps) reads back as it was.
  mri::write_cfl_kspace(path, maps);
  EXPECT_TRUE(torch::equal(mri::read_cfl_maps(path), maps));
  // A third dimension (PHS2) is not a set of 2-D maps.
  mri::write_cfl(path, torch::ones({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, coils, 2, ny, nx}, torch::kComplexFloat));
  EXPECT_THROW(mri::read_cfl_maps(path), ambient::Error);
}

TEST(Io, CflImagesAreSlicesOfKyKx) {
  // bart pics of a multi-slice scan: [slice, 1 x 12, 1, ky, kx] row-major (SLICE is BART dim 13).
  const int64_t slices = 3, ny = 6, nx = 5;
  auto gen = at::detail::createCPUGenerator(9);
  auto t = torch::randn({slices, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, ny, nx}, gen, torch::kComplexFloat);
  const auto path = test::scratch("images");
  mri::write_cfl(path, t);
  auto images = mri::read_cfl_images(path);
  ASSERT_EQ(images.sizes(), torch::IntArrayRef({slices, ny, nx}));
  EXPECT_TRUE(torch::equal(images, t.reshape({slices, ny, nx})));
  mri::write_cfl(path, torch::ones({7}, torch::kComplexFloat));  // a 1-D cfl is no image
  EXPECT_THROW(mri::read_cfl_images(path), ambient::Error);
}
