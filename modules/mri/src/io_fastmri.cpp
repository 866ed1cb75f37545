// fastMRI HDF5 reader and writer. fastMRI stores kspace (slices, coils, H, W) with W the phase-encode axis and
// H the (oversampled) readout; ambient's [slice, coil, ky, kx] puts ky = W, kx = H, so the last two axes swap here.
#include <hdf5.h>
#include <ismrmrd/xml.h>

#include <complex>
#include <cstring>
#include <filesystem>
#include <sstream>

#include "ambient/core/error.hpp"
#include "hdf5_locking.hpp"
#include "hdf5_vlen.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"

namespace ambient::mri {
namespace {

using detail::H5Handle;

hid_t complex_type() {
  hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(std::complex<float>));
  H5Tinsert(t, "r", 0, H5T_NATIVE_FLOAT);
  H5Tinsert(t, "i", sizeof(float), H5T_NATIVE_FLOAT);
  return t;
}

std::vector<hsize_t> dims_of(hid_t ds) {
  H5Handle space(H5Dget_space(ds), H5Sclose);
  const int rank = H5Sget_simple_extent_ndims(space.get());
  std::vector<hsize_t> d(std::max(rank, 0));
  if (rank > 0) H5Sget_simple_extent_dims(space.get(), d.data(), nullptr);
  return d;
}

bool has_link(hid_t file, const char* name) { return H5Lexists(file, name, H5P_DEFAULT) > 0; }

std::string read_string_attribute(hid_t obj, const char* name) {
  if (H5Aexists(obj, name) <= 0) return {};
  H5Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  H5Handle type(H5Aget_type(attr.get()), H5Tclose);
  if (H5Tget_class(type.get()) == H5T_STRING) {
    if (H5Tis_variable_str(type.get()) > 0) {
      char* value = nullptr;
      H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      if (H5Aread(attr.get(), mem.get(), &value) < 0 || !value) return {};
      std::string s(value);
      H5free_memory(value);
      return s;
    }
    std::string s(H5Tget_size(type.get()), '\0');
    if (H5Aread(attr.get(), type.get(), s.data()) < 0) return {};
    return s.substr(0, s.find('\0'));
  }
  double v = 0;
  if (H5Aread(attr.get(), H5T_NATIVE_DOUBLE, &v) < 0) return {};
  std::ostringstream os;
  os << v;
  return os.str();
}

void write_string_attribute(hid_t obj, const char* name, const std::string& value) {
  H5Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, value.size()));
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(attr.get(), type.get(), value.c_str());
}

void write_double_attribute(hid_t obj, const char* name, double value) {
  H5Handle space(H5Screate(H5S_SCALAR), H5Sclose);
  H5Handle attr(H5Acreate2(obj, name, H5T_NATIVE_DOUBLE, space.get(), H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(attr.get(), H5T_NATIVE_DOUBLE, &value);
}

}  // namespace

Scan read_fastmri(const std::string& path, const ReadOptions& opt) {
  AMBIENT_CHECK(std::filesystem::exists(path), "fastMRI reader: file not found: ", path);
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  detail::disable_hdf5_file_locking();
  H5Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT), H5Fclose);
  AMBIENT_CHECK(file.valid(), "fastMRI reader: cannot open as HDF5 (truncated or not HDF5): ", path);
  AMBIENT_CHECK(has_link(file.get(), "kspace"), "fastMRI reader: expected a dataset 'kspace', got none in ", path);
  H5Handle ds(H5Dopen2(file.get(), "kspace", H5P_DEFAULT), H5Dclose);
  H5Handle ftype(H5Dget_type(ds.get()), H5Tclose);
  AMBIENT_CHECK(H5Tget_class(ftype.get()) == H5T_COMPOUND && H5Tget_nmembers(ftype.get()) == 2,
                "fastMRI reader: expected 'kspace' of complex64 (compound r, i), got another type in ", path);
  auto dims = dims_of(ds.get());
  AMBIENT_CHECK(dims.size() == 3 || dims.size() == 4,
                "fastMRI reader: expected 'kspace' (slices, coils, H, W) or (slices, H, W), got ", dims.size(),
                " dimensions in ", path);
  detail::require_plausible_extent(ds.get(), path, "kspace");  // before allocating what its extent claims
  const int64_t S = dims[0], C = dims.size() == 4 ? dims[1] : 1, H = dims[dims.size() - 2], W = dims.back();
  auto raw = torch::empty({S, C, H, W}, torch::kComplexFloat);
  H5Handle mtype(complex_type(), H5Tclose);
  AMBIENT_CHECK(H5Dread(ds.get(), mtype.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, raw.data_ptr()) >= 0,
                "fastMRI reader: reading 'kspace' failed (truncated file?): ", path);

  Scan scan;
  scan.format = "fastmri";
  scan.source = path;
  scan.ksp = raw.transpose(2, 3).contiguous();  // [slice, coil, W=ky, H=kx]

  // Mask: the 'mask' dataset (length W) when present, otherwise the lines that hold data.
  torch::Tensor lines;
  if (has_link(file.get(), "mask")) {
    H5Handle md(H5Dopen2(file.get(), "mask", H5P_DEFAULT), H5Dclose);
    detail::require_plausible_extent(md.get(), path, "mask");
    auto mdims = dims_of(md.get());
    hsize_t elements = 1;
    for (auto d : mdims) elements *= d;
    AMBIENT_CHECK(mdims.size() >= 1 && static_cast<int64_t>(mdims.back()) == W && static_cast<int64_t>(elements) == W,
                  "fastMRI reader: expected 'mask' of W = ", W, " values (one per line), got shape ",
                  shape_string(std::vector<int64_t>(mdims.begin(), mdims.end())), " in ", path);
    std::vector<double> m(mdims.back());
    H5Handle mt(H5Dget_type(md.get()), H5Tclose);
    if (H5Tget_class(mt.get()) == H5T_ENUM || H5Tget_size(mt.get()) == 1) {  // h5py bool is an int8 enum
      std::vector<uint8_t> b(m.size());
      H5Handle native(H5Tget_native_type(mt.get(), H5T_DIR_ASCEND), H5Tclose);
      AMBIENT_CHECK(H5Dread(md.get(), native.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, b.data()) >= 0,
                    "fastMRI reader: reading 'mask' failed: ", path);
      for (size_t i = 0; i < b.size(); ++i) m[i] = b[i];
    } else {
      AMBIENT_CHECK(H5Dread(md.get(), H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data()) >= 0,
                    "fastMRI reader: reading 'mask' failed: ", path);
    }
    lines = torch::from_blob(m.data(), {W}, torch::kDouble).ne(0).clone().unsqueeze(0).expand({S, W}).clone();
  } else {
    lines = scan.ksp.abs().amax({1, 3}).gt(0);
  }
  scan.mask = lines;
  scan.ksp = scan.ksp * scan.kspace_mask();

  const std::string nlow = read_string_attribute(file.get(), "num_low_frequency");
  scan.calib = torch::zeros_like(scan.mask);
  for (int64_t s = 0; s < S; ++s) {
    if (!nlow.empty()) {
      int64_t n = -1;
      try {
        n = std::stoll(nlow);
      } catch (const std::exception&) {
      }
      AMBIENT_CHECK(n >= 0 && n <= W, "fastMRI reader: expected attribute num_low_frequency in [0, ", W, "], got '",
                    nlow, "' in ", path);
      const int64_t pad = (W - n + 1) / 2;
      scan.calib[s].slice(0, pad, pad + n).fill_(true);
      scan.calib[s] &= scan.mask[s];
    } else {
      scan.calib[s] = central_run(scan.mask[s]);
    }
  }

  Vec3 fov{static_cast<double>(W), static_cast<double>(H), 5.0};
  int64_t recon_x = H;
  if (has_link(file.get(), "ismrmrd_header")) {
    H5Handle hd(H5Dopen2(file.get(), "ismrmrd_header", H5P_DEFAULT), H5Dclose);
    H5Handle ht(H5Dget_type(hd.get()), H5Tclose);
    H5Handle hs(H5Dget_space(hd.get()), H5Sclose);
    AMBIENT_CHECK(H5Tget_class(ht.get()) == H5T_STRING && H5Sget_simple_extent_npoints(hs.get()) == 1,
                  "fastMRI reader: expected 'ismrmrd_header' to hold one string, got another type or shape (", path,
                  ")");
    detail::check_vlen_storage(file.get(), path, "ismrmrd_header");
    std::string xml;
    if (H5Tis_variable_str(ht.get()) > 0) {
      char* value = nullptr;
      H5Handle mem(H5Tcopy(H5T_C_S1), H5Tclose);
      H5Tset_size(mem.get(), H5T_VARIABLE);
      if (H5Dread(hd.get(), mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, &value) >= 0 && value) {
        xml = value;
        H5free_memory(value);
      }
    } else {
      xml.resize(H5Tget_size(ht.get()));
      if (H5Dread(hd.get(), ht.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, xml.data()) < 0) xml.clear();
      xml = xml.substr(0, xml.find('\0'));
    }
    if (!xml.empty()) {
      ISMRMRD::IsmrmrdHeader h;
      try {
        ISMRMRD::deserialize(xml.c_str(), h);
      } catch (const std::exception& e) {
        fail("fastMRI reader: 'ismrmrd_header' does not parse (", e.what(), ") in ", path);
      }
      if (!h.encoding.empty()) {
        const auto& e = h.encoding[0];
        AMBIENT_CHECK(e.encodedSpace.matrixSize.x == H, "fastMRI reader: header says ",
                      e.encodedSpace.matrixSize.x, " readout samples, 'kspace' has H = ", H, " (", path, ")");
        recon_x = e.reconSpace.matrixSize.x;
        fov = {e.reconSpace.fieldOfView_mm.x, e.reconSpace.fieldOfView_mm.y, e.reconSpace.fieldOfView_mm.z};
      }
    }
  }
  if (opt.remove_oversampling && recon_x < H) {
    scan.ksp = crop_readout(scan.ksp, recon_x).contiguous();
  }
  // Geometry: fastMRI strips positions; image columns follow the readout, rows the phase encode.
  scan.geometry = default_geometry(S, {fov[0], fov[1], fov[2]});
  for (const char* key : {"acquisition", "max", "norm", "patient_id", "acceleration", "num_low_frequency"}) {
    const std::string v = read_string_attribute(file.get(), key);
    if (!v.empty()) scan.meta[key] = v;
  }
  validate(scan, "fastMRI reader (" + path + ")");
  return scan;
}

void write_fastmri(const std::string& path, const Scan& scan) {
  validate(scan, "fastMRI writer");
  AMBIENT_CHECK((scan.mask == scan.mask[0]).all().item<bool>(),
                "fastMRI writer: fastMRI holds one mask for all slices; this scan's masks differ per slice");
  write_atomically(path, [&](const std::string& tmp) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    H5Handle file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
    AMBIENT_CHECK(file.valid(), "fastMRI writer: cannot create ", tmp);
    auto k = scan.ksp.transpose(2, 3).contiguous();  // back to (slices, coils, H=kx, W=ky)
    std::vector<hsize_t> d(k.sizes().begin(), k.sizes().end());
    H5Handle space(H5Screate_simple(4, d.data(), nullptr), H5Sclose);
    H5Handle type(complex_type(), H5Tclose);
    H5Handle ds(H5Dcreate2(file.get(), "kspace", type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
    AMBIENT_CHECK(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, k.data_ptr()) >= 0,
                  "fastMRI writer: writing kspace failed: ", tmp);
    auto m = scan.mask[0].to(torch::kFloat).contiguous();
    hsize_t w = m.numel();
    H5Handle ms(H5Screate_simple(1, &w, nullptr), H5Sclose);
    H5Handle md(H5Dcreate2(file.get(), "mask", H5T_NATIVE_FLOAT, ms.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
    H5Dwrite(md.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, m.data_ptr());
    // A minimal ISMRMRD header so readers know matrix and FOV.
    ISMRMRD::IsmrmrdHeader h;
    ISMRMRD::Encoding e;
    e.trajectory = ISMRMRD::TrajectoryType::CARTESIAN;
    const auto& fov = scan.geometry.fov_mm;
    e.encodedSpace.matrixSize = ISMRMRD::MatrixSize(scan.nx(), scan.ny(), 1);
    e.encodedSpace.fieldOfView_mm = {static_cast<float>(fov[0]), static_cast<float>(fov[1]), static_cast<float>(fov[2])};
    e.reconSpace = e.encodedSpace;
    e.encodingLimits.kspace_encoding_step_1 = ISMRMRD::Limit(0, scan.ny() - 1, scan.ny() / 2);
    h.encoding.push_back(e);
    std::ostringstream xml;
    ISMRMRD::serialize(h, xml);
    const std::string x = xml.str();
    H5Handle st(H5Tcopy(H5T_C_S1), H5Tclose);
    H5Tset_size(st.get(), x.size());
    H5Handle ss(H5Screate(H5S_SCALAR), H5Sclose);
    H5Handle hd(H5Dcreate2(file.get(), "ismrmrd_header", st.get(), ss.get(), H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT),
                H5Dclose);
    H5Dwrite(hd.get(), st.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, x.c_str());
    const int64_t nlow = scan.calib[0].sum().item<int64_t>();
    write_double_attribute(file.get(), "num_low_frequency", static_cast<double>(nlow));
    write_double_attribute(file.get(), "acceleration", scan.acceleration());
    write_string_attribute(file.get(), "acquisition", scan.meta.count("acquisition") ? scan.meta.at("acquisition")
                                                                                       : std::string("AXT1"));
    if (scan.meta.count("patient_id")) write_string_attribute(file.get(), "patient_id", scan.meta.at("patient_id"));
  });
}

}  // namespace ambient::mri
