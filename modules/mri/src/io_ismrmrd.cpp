// ISMRMRD reader and writer: Cartesian 2-D, multi-slice, multi-coil; the one place ISMRMRD layouts meet tensors.
#include <ismrmrd/dataset.h>
#include <ismrmrd/ismrmrd.h>
#include <ismrmrd/version.h>
#include <ismrmrd/xml.h>

#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <complex>
#include <cstring>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include "ambient/core/error.hpp"
#include "hdf5_locking.hpp"
#include "hdf5_vlen.hpp"
#include "ambient/core/log.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"

namespace ambient::mri {
namespace {

constexpr uint64_t kSkippedFlags[] = {
    ISMRMRD::ISMRMRD_ACQ_IS_NAVIGATION_DATA, ISMRMRD::ISMRMRD_ACQ_IS_PHASECORR_DATA,
    ISMRMRD::ISMRMRD_ACQ_IS_DUMMYSCAN_DATA,  ISMRMRD::ISMRMRD_ACQ_IS_RTFEEDBACK_DATA,
    ISMRMRD::ISMRMRD_ACQ_IS_HPFEEDBACK_DATA, ISMRMRD::ISMRMRD_ACQ_IS_SURFACECOILCORRECTIONSCAN_DATA,
    ISMRMRD::ISMRMRD_ACQ_IS_PHASE_STABILIZATION_REFERENCE, ISMRMRD::ISMRMRD_ACQ_IS_PHASE_STABILIZATION};

bool flag(ISMRMRD::Acquisition& acq, uint64_t f) { return acq.isFlagSet(static_cast<ISMRMRD::ISMRMRD_AcquisitionFlags>(f)); }

Vec3 to_vec3(const float (&v)[3]) { return {v[0], v[1], v[2]}; }
double norm(const Vec3& v) { return std::sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2]); }
Vec3 cross(const Vec3& a, const Vec3& b) {
  return {a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]};
}

void require_file(const std::string& path, const char* what) {
  AMBIENT_CHECK(std::filesystem::exists(path), what, ": file not found: ", path);
  AMBIENT_CHECK(H5Fis_hdf5(path.c_str()) > 0, what, ": expected an HDF5 file, got something else (truncated or "
                "not HDF5): ", path);
}

// The ISMRMRD library prints every error it raises to stderr; ours carry its message already (e.what()).
void quiet_ismrmrd_errors(const char*, int, const char*, int, const char*) {}

// libismrmrd leaves HDF5 objects open when one of its reads fails, and HDF5 then closes the file at exit, from its
// atexit handler, where the damaged metadata it caches crashes it: `ambient info` printed its error and died of
// SIGSEGV (found by fuzzing: tests/fuzz/regressions/scan/ismrmrd_xml_header_use_after_free.h5, a damaged 'xml'
// dataset, which read_xml_header below now refuses before libismrmrd sees it). Whatever is still open on the file
// when a read ends is closed here, inside the read and so inside its ReaderCrashScope.
class Hdf5LeftoversClosed {
 public:
  explicit Hdf5LeftoversClosed(std::string path) : path_(std::move(path)) {}
  ~Hdf5LeftoversClosed() {
    const ssize_t n = H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL);
    if (n <= 0) return;
    std::vector<hid_t> ids(static_cast<size_t>(n));
    const ssize_t got = H5Fget_obj_ids(H5F_OBJ_ALL, H5F_OBJ_ALL, ids.size(), ids.data());
    ids.resize(static_cast<size_t>(std::max<ssize_t>(got, 0)));
    std::vector<hid_t> files;
    for (const hid_t id : ids) {
      std::string name(4096, '\0');
      const ssize_t len = H5Fget_name(id, name.data(), name.size());
      if (len <= 0 || name.compare(0, static_cast<size_t>(len), path_) != 0 || static_cast<size_t>(len) != path_.size())
        continue;
      switch (H5Iget_type(id)) {
        case H5I_FILE: files.push_back(id); break;
        case H5I_GROUP: H5Gclose(id); break;
        case H5I_DATASET: H5Dclose(id); break;
        case H5I_DATATYPE: H5Tclose(id); break;
        case H5I_ATTR: H5Aclose(id); break;
        default: break;
      }
    }
    for (const hid_t f : files) H5Fclose(f);
  }
  Hdf5LeftoversClosed(const Hdf5LeftoversClosed&) = delete;
  Hdf5LeftoversClosed& operator=(const Hdf5LeftoversClosed&) = delete;

 private:
  std::string path_;
};

// libismrmrd keeps one global stack of errors, holding *pointers* to their messages, some of them HDF5's, which
// HDF5 frees soon after. Errors that nobody pops (pushed while a dataset closes after a read that we refused, say)
// stay there, and the next failure's exception message (build_exception_string) reads them: a use-after-free once
// one process reads several damaged files, as finetune does over a folder (found by fuzzing,
// tests/fuzz/regressions/scan/ismrmrd_stale_errors_*.h5). Popping copies the pointers without reading them, so
// each read starts and ends with an empty stack.
class IsmrmrdErrorsDrained {
 public:
  IsmrmrdErrorsDrained() { drain(); }
  ~IsmrmrdErrorsDrained() { drain(); }
  IsmrmrdErrorsDrained(const IsmrmrdErrorsDrained&) = delete;
  IsmrmrdErrorsDrained& operator=(const IsmrmrdErrorsDrained&) = delete;

 private:
  static void drain() {
    while (ISMRMRD::ismrmrd_pop_error(nullptr, nullptr, nullptr, nullptr, nullptr)) {
    }
  }
};

// The library also trusts each acquisition's header: data and trajectory lengths that disagree with
// number_of_samples, active_channels and trajectory_dimensions make it free memory it does not own (found by
// fuzzing, tests/fuzz). Checked here row by row before the library reads anything: the stored lengths come from
// check_vlen_storage, which also checks the heap they point into, and only the headers are read with HDF5.
bool acquisition_sizes_agree(hid_t file, const std::string& path, const std::string& name, int64_t& bad_row) {
  struct Head {
    uint16_t samples, channels, traj_dims;
  };
  struct Row {
    Head head;
    hvl_t traj, data;
  };
  const detail::VlenLengths stored = detail::check_vlen_storage(file, path, name);
  size_t traj_at = stored.members, data_at = stored.members;
  for (size_t m = 0; m < stored.names.size(); ++m) {
    if (stored.names[m] == "traj") traj_at = m;
    if (stored.names[m] == "data") data_at = m;
  }
  const bool raw = stored.checked && data_at < stored.members;  // else HDF5 reads the lengths (filtered storage)
  const hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  if (ds < 0) return false;
  const hid_t head = H5Tcreate(H5T_COMPOUND, sizeof(Head));
  H5Tinsert(head, "number_of_samples", HOFFSET(Head, samples), H5T_NATIVE_UINT16);
  H5Tinsert(head, "active_channels", HOFFSET(Head, channels), H5T_NATIVE_UINT16);
  H5Tinsert(head, "trajectory_dimensions", HOFFSET(Head, traj_dims), H5T_NATIVE_UINT16);
  const hid_t floats = H5Tvlen_create(H5T_NATIVE_FLOAT);
  const hid_t row = H5Tcreate(H5T_COMPOUND, sizeof(Row));
  H5Tinsert(row, "head", HOFFSET(Row, head), head);
  if (!raw) {
    H5Tinsert(row, "traj", HOFFSET(Row, traj), floats);
    H5Tinsert(row, "data", HOFFSET(Row, data), floats);
  }
  const hid_t space = H5Dget_space(ds);
  hsize_t rows = 0;
  bool ok = space >= 0 && H5Sget_simple_extent_ndims(space) == 1 && H5Sget_simple_extent_dims(space, &rows, nullptr) == 1;
  std::vector<Row> buf(256);
  bad_row = -1;
  for (hsize_t start = 0; ok && start < rows && bad_row < 0; start += buf.size()) {
    hsize_t n = std::min<hsize_t>(buf.size(), rows - start);
    const hid_t mem = H5Screate_simple(1, &n, nullptr);
    H5Sselect_hyperslab(space, H5S_SELECT_SET, &start, nullptr, &n, nullptr);
    ok = H5Dread(ds, row, mem, space, H5P_DEFAULT, buf.data()) >= 0;
    for (hsize_t i = 0; ok && i < n && bad_row < 0; ++i) {
      const Head& h = buf[i].head;
      const size_t at = (start + i) * stored.members;
      const uint64_t data = raw ? stored.lengths[at + data_at] : buf[i].data.len;
      const uint64_t traj = !raw ? buf[i].traj.len : traj_at < stored.members ? stored.lengths[at + traj_at] : 0;
      if (data != 2ull * h.samples * h.channels || traj != static_cast<uint64_t>(h.traj_dims) * h.samples)
        bad_row = static_cast<int64_t>(start + i);
    }
    if (ok && !raw) H5Dvlen_reclaim(row, mem, H5P_DEFAULT, buf.data());
    H5Sclose(mem);
  }
  if (space >= 0) H5Sclose(space);
  H5Tclose(row);
  H5Tclose(floats);
  H5Tclose(head);
  H5Dclose(ds);
  return ok;
}

// The XML header, read with HDF5 itself instead of libismrmrd's readHeader: when that fails on a damaged 'xml'
// dataset, libismrmrd builds its exception message from HDF5 error texts that HDF5 has already freed (a
// use-after-free, found by fuzzing) and leaves the dataset open. libismrmrd writes one variable-length string; a
// fixed-length string is read too.
std::string read_xml_header(const std::string& path, const std::string& group) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  AMBIENT_CHECK(file >= 0, "ISMRMRD reader: cannot open as HDF5 (truncated or damaged?): ", path);
  const std::unique_ptr<const hid_t, void (*)(const hid_t*)> close_file(&file, [](const hid_t* f) { H5Fclose(*f); });
  const std::string name = "/" + group + "/xml";
  AMBIENT_CHECK(H5Lexists(file, group.c_str(), H5P_DEFAULT) > 0 && H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0,
                "ISMRMRD reader: expected an XML header at ", name, " in ", path, ", found none (is '", group,
                "' the ISMRMRD group? see --group)");
  (void)detail::check_vlen_storage(file, path, name);
  const hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
  AMBIENT_CHECK(ds >= 0, "ISMRMRD reader: cannot open the XML header ", name, " in ", path, " (damaged?)");
  const std::unique_ptr<const hid_t, void (*)(const hid_t*)> close_ds(&ds, [](const hid_t* d) { H5Dclose(*d); });
  detail::require_plausible_extent(ds, path, name);
  const hid_t type = H5Dget_type(ds), space = H5Dget_space(ds);
  const bool is_string = type >= 0 && H5Tget_class(type) == H5T_STRING;
  const bool variable = is_string && H5Tis_variable_str(type) > 0;
  const size_t fixed = is_string && !variable ? H5Tget_size(type) : 0;
  const hssize_t points = space >= 0 ? H5Sget_simple_extent_npoints(space) : -1;
  if (type >= 0) H5Tclose(type);
  if (space >= 0) H5Sclose(space);
  AMBIENT_CHECK(is_string && points == 1, "ISMRMRD reader: expected the XML header ", name,
                " to be one string, got ", is_string ? std::to_string(points) + " strings" : std::string("no string"),
                " in ", path);
  const hid_t mem = H5Tcopy(H5T_C_S1);
  std::string xml;
  herr_t read = -1;
  if (variable) {
    H5Tset_size(mem, H5T_VARIABLE);
    char* value = nullptr;
    read = H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, &value);
    if (read >= 0 && value != nullptr) xml = value;
    if (read >= 0 && value != nullptr) H5free_memory(value);
  } else {
    H5Tset_size(mem, fixed);
    std::string buf(fixed, '\0');
    read = H5Dread(ds, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
    xml = buf.substr(0, buf.find('\0'));
  }
  H5Tclose(mem);
  AMBIENT_CHECK(read >= 0, "ISMRMRD reader: cannot read the XML header ", name, " in ", path, " (damaged?)");
  return xml;
}

// The members of ISMRMRD 1.x's AcquisitionHeader, as libismrmrd writes and reads them.
constexpr const char* kAcquisitionHeaderFields[] = {
    "version", "flags", "measurement_uid", "scan_counter", "acquisition_time_stamp", "physiology_time_stamp",
    "number_of_samples", "available_channels", "active_channels", "channel_mask", "discard_pre", "discard_post",
    "center_sample", "encoding_space_ref", "trajectory_dimensions", "sample_time_us", "position", "read_dir",
    "phase_dir", "slice_dir", "patient_table_position", "idx", "user_int", "user_float"};

// ISMRMRD's reader trusts /GROUP/data to hold its acquisition type and reads out of bounds (a crash) when it holds
// anything else, so the layout is checked first with HDF5 itself: a compound with a 'head' that holds every
// header member and a variable-length 'data' member.
void require_acquisition_layout(const std::string& path, const std::string& group) {
  const hid_t file = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  AMBIENT_CHECK(file >= 0, "ISMRMRD reader: cannot open as HDF5 (truncated or damaged?): ", path);
  const std::unique_ptr<const hid_t, void (*)(const hid_t*)> close(&file, [](const hid_t* f) { H5Fclose(*f); });
  const std::string name = "/" + group + "/data";
  bool ok = false, present = H5Lexists(file, group.c_str(), H5P_DEFAULT) > 0;
  if (present) present = H5Lexists(file, name.c_str(), H5P_DEFAULT) > 0;
  if (present) {
    const hid_t ds = H5Dopen2(file, name.c_str(), H5P_DEFAULT);
    const hid_t type = ds >= 0 ? H5Dget_type(ds) : -1;
    if (type >= 0 && H5Tget_class(type) == H5T_COMPOUND) {
      const int head = H5Tget_member_index(type, "head"), data = H5Tget_member_index(type, "data");
      if (head >= 0 && data >= 0) {
        const hid_t member = H5Tget_member_type(type, static_cast<unsigned>(data));
        ok = member >= 0 && H5Tget_class(member) == H5T_VLEN;
        if (member >= 0) H5Tclose(member);
        // libismrmrd converts the header by member name and leaves a member the file lacks unset: a fuzzed file
        // whose 'number_of_samples' was renamed made it copy an uninitialised count from a null pointer.
        const hid_t h = H5Tget_member_type(type, static_cast<unsigned>(head));
        ok = ok && h >= 0 && H5Tget_class(h) == H5T_COMPOUND;
        for (const char* field : kAcquisitionHeaderFields) ok = ok && H5Tget_member_index(h, field) >= 0;
        if (h >= 0) H5Tclose(h);
      }
    }
    if (type >= 0) H5Tclose(type);
    if (ds >= 0) H5Dclose(ds);
  }
  int64_t bad_row = -1;
  if (ok) ok = acquisition_sizes_agree(file, path, name, bad_row);
  const std::string xml = "/" + group + "/xml";
  if (H5Lexists(file, group.c_str(), H5P_DEFAULT) > 0 && H5Lexists(file, xml.c_str(), H5P_DEFAULT) > 0)
    detail::check_vlen_storage(file, path, xml);  // the header is a variable-length string too
  AMBIENT_CHECK(bad_row < 0, "ISMRMRD reader: acquisition ", bad_row, " of ", path, " is damaged: its data or "
                "trajectory length disagrees with its header's samples, channels and trajectory dimensions");
  if (!present) return;  // no acquisitions: reported below, with the header's context
  AMBIENT_CHECK(ok, "ISMRMRD reader: ", name, " in ", path, " is not a table of ISMRMRD acquisitions (expected a "
                "compound with a 'head' of every ISMRMRD acquisition header member and variable-length 'data')");
}

}  // namespace

Scan read_ismrmrd(const std::string& path, const ReadOptions& opt) {
  require_file(path, "ISMRMRD reader");
  detail::disable_hdf5_file_locking();
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  ISMRMRD::ismrmrd_set_error_handler(quiet_ismrmrd_errors);
  require_acquisition_layout(path, opt.ismrmrd_group);
  const IsmrmrdErrorsDrained errors;  // these two outlive the dataset, whose closing may push errors
  const Hdf5LeftoversClosed leftovers(path);
  std::unique_ptr<ISMRMRD::Dataset> d;
  const std::string xml = read_xml_header(path, opt.ismrmrd_group);
  try {
    d = std::make_unique<ISMRMRD::Dataset>(path.c_str(), opt.ismrmrd_group.c_str(), false);
  } catch (const std::exception& e) {
    fail("ISMRMRD reader: could not open group '", opt.ismrmrd_group, "' with an XML header in ", path, " (",
         e.what(), ")");
  }
  ISMRMRD::IsmrmrdHeader h;
  try {
    ISMRMRD::deserialize(xml.c_str(), h);
  } catch (const std::exception& e) {
    fail("ISMRMRD reader: the XML header does not parse (", e.what(), ") in ", path);
  }
  AMBIENT_CHECK(!h.encoding.empty(), "ISMRMRD reader: expected at least one <encoding>, got none in ", path);
  const ISMRMRD::Encoding& enc = h.encoding[0];
  AMBIENT_CHECK(enc.trajectory == ISMRMRD::TrajectoryType::CARTESIAN,
                "ISMRMRD reader: expected a Cartesian trajectory, got another (", path, ")");
  AMBIENT_CHECK(enc.encodedSpace.matrixSize.z <= 1, "ISMRMRD reader: expected a 2-D encoding (matrix z = 1), got z = ",
                enc.encodedSpace.matrixSize.z, " (", path, ")");
  const int64_t nx_enc = enc.encodedSpace.matrixSize.x, ny = enc.encodedSpace.matrixSize.y;
  const int64_t nx_recon = enc.reconSpace.matrixSize.x;
  AMBIENT_CHECK(nx_enc > 0 && ny > 0 && nx_recon > 0 && nx_recon <= nx_enc,
                "ISMRMRD reader: expected matrix sizes with 0 < recon x <= encoded x, got encoded ", nx_enc, " x ", ny,
                ", recon x ", nx_recon, " (", path, ")");
  const auto& lim = enc.encodingLimits;
  const int64_t e1_centre = lim.kspace_encoding_step_1 ? lim.kspace_encoding_step_1->center : ny / 2;

  uint32_t count = 0;
  try {
    count = d->getNumberOfAcquisitions();
  } catch (const std::exception& e) {
    fail("ISMRMRD reader: no acquisition data in ", path, " (", e.what(), ")");
  }
  AMBIENT_CHECK(count > 0, "ISMRMRD reader: expected acquisitions, got none (", path, ")");

  // First pass: read everything once (one HDF5 read per acquisition), find coils, slices and noise.
  std::vector<ISMRMRD::Acquisition> acqs(count);
  for (uint32_t i = 0; i < count; ++i) {
    try {
      d->readAcquisition(i, acqs[i]);
    } catch (const std::exception& e) {
      fail("ISMRMRD reader: acquisition ", i, " of ", count, " is unreadable (", e.what(), "); truncated file? (",
           path, ")");
    }
  }
  int64_t coils = -1, n_slices = lim.slice ? lim.slice->maximum + 1 : 0;
  float noise_dwell = 0, data_dwell = 0;
  for (auto& a : acqs) {
    if (flag(a, ISMRMRD::ISMRMRD_ACQ_IS_NOISE_MEASUREMENT)) continue;
    if (coils < 0) coils = a.active_channels();
    AMBIENT_CHECK(a.active_channels() == coils, "ISMRMRD reader: expected ", coils,
                  " channels in every acquisition, got ", a.active_channels(), " (", path, ")");
    n_slices = std::max<int64_t>(n_slices, a.idx().slice + 1);
  }
  AMBIENT_CHECK(coils > 0, "ISMRMRD reader: expected imaging acquisitions, got only noise (", path, ")");
  int64_t noise_samples = 0;
  for (auto& a : acqs) {
    if (!flag(a, ISMRMRD::ISMRMRD_ACQ_IS_NOISE_MEASUREMENT)) continue;
    AMBIENT_CHECK(a.active_channels() == coils, "ISMRMRD reader: noise scan has ", a.active_channels(),
                  " channels, the data ", coils, " (", path, ")");
    noise_samples += a.number_of_samples();  // data: [coil][sample]
    noise_dwell = a.sample_time_us();
  }

  // Second pass: place lines. Sums and counts let repeated lines (repetitions, averages) be averaged.
  // Calibration k-space of its own is needed only where calibration-only lines exist (separate or interleaved
  // reference); embedded calibration lines are imaging lines, and a second volume for them would double the memory.
  bool calib_only_lines = false;
  for (auto& a : acqs) calib_only_lines = calib_only_lines || flag(a, ISMRMRD::ISMRMRD_ACQ_IS_PARALLEL_CALIBRATION);
  auto sum = torch::zeros({n_slices, coils, ny, nx_enc}, torch::kComplexFloat);
  auto cal = calib_only_lines ? torch::zeros_like(sum) : torch::Tensor();
  auto n_img = torch::zeros({n_slices, ny}, torch::kInt);
  auto n_cal = torch::zeros({n_slices, ny}, torch::kInt);
  auto ps = reinterpret_cast<std::complex<float>*>(sum.data_ptr());
  auto pc = calib_only_lines ? reinterpret_cast<std::complex<float>*>(cal.data_ptr()) : nullptr;
  auto ai = n_img.accessor<int, 2>();
  auto ac = n_cal.accessor<int, 2>();
  Geometry geo;
  geo.fov_mm = {enc.reconSpace.fieldOfView_mm.x, enc.reconSpace.fieldOfView_mm.y, enc.reconSpace.fieldOfView_mm.z};
  geo.slices.resize(n_slices);
  std::vector<bool> have_geometry(n_slices, false);
  int64_t skipped = 0, other_index = 0;
  for (auto& a : acqs) {
    if (flag(a, ISMRMRD::ISMRMRD_ACQ_IS_NOISE_MEASUREMENT)) continue;
    bool skip = false;
    for (uint64_t f : kSkippedFlags) skip = skip || flag(a, f);
    if (skip) {
      ++skipped;
      continue;
    }
    const auto& idx = a.idx();
    if (idx.contrast != opt.contrast || idx.phase != 0 || idx.set != 0 ||
        (opt.repetition >= 0 && idx.repetition != opt.repetition) ||
        (opt.average >= 0 && idx.average != opt.average)) {
      ++other_index;
      continue;
    }
    const int64_t s = idx.slice;
    const int64_t ky = static_cast<int64_t>(idx.kspace_encode_step_1) - e1_centre + ny / 2;
    AMBIENT_CHECK(ky >= 0 && ky < ny, "ISMRMRD reader: phase-encode step ", idx.kspace_encode_step_1,
                  " with centre ", e1_centre, " falls outside the ", ny, "-line matrix (", path, ")");
    const int64_t ns = a.number_of_samples();
    const int64_t x0 = nx_enc / 2 - static_cast<int64_t>(a.center_sample());
    const int64_t first = std::max<int64_t>(a.discard_pre(), -x0);
    const int64_t last = std::min<int64_t>(ns - a.discard_post(), nx_enc - x0);  // exclusive
    AMBIENT_CHECK(last > first, "ISMRMRD reader: readout of ", ns, " samples centred at ", a.center_sample(),
                  " does not overlap the ", nx_enc, "-sample matrix (", path, ")");
    const bool calib_only = flag(a, ISMRMRD::ISMRMRD_ACQ_IS_PARALLEL_CALIBRATION);
    const bool calib_too = flag(a, ISMRMRD::ISMRMRD_ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING);
    const auto* p = a.getDataPtr();
    for (int64_t c = 0; c < coils; ++c) {
      const size_t base = ((s * coils + c) * ny + ky) * nx_enc + x0;
      for (int64_t k = first; k < last; ++k) {
        if (!calib_only) ps[base + k] += p[c * ns + k];
        if (pc && (calib_only || calib_too)) pc[base + k] += p[c * ns + k];
      }
    }
    if (!calib_only) ai[s][ky] += 1;
    if (calib_only || calib_too) ac[s][ky] += 1;
    if (!calib_only) data_dwell = a.sample_time_us();
    if (!have_geometry[s] && !calib_only) {
      auto& g = geo.slices[s];
      g.position = to_vec3(a.position());
      // Some writers (e.g. the ISMRMRD phantom generator) leave direction cosines at zero: keep the identity.
      if (norm(to_vec3(a.read_dir())) > 0.5 && norm(to_vec3(a.phase_dir())) > 0.5) {
        g.read_dir = to_vec3(a.read_dir());
        g.phase_dir = to_vec3(a.phase_dir());
        g.slice_dir = norm(to_vec3(a.slice_dir())) > 0.5 ? to_vec3(a.slice_dir()) : cross(g.read_dir, g.phase_dir);
      } else {
        g.position[2] += s * geo.fov_mm[2];  // no geometry at all: stack slices by their thickness
      }
      have_geometry[s] = true;
    }
  }
  if (skipped) log::info("ISMRMRD reader: skipped " + std::to_string(skipped) + " navigator/phase-correction lines");
  if (other_index)
    log::info("ISMRMRD reader: skipped " + std::to_string(other_index) +
              " lines of other contrasts, phases, sets, repetitions or averages");
  AMBIENT_CHECK(n_img.sum().item<int64_t>() > 0, "ISMRMRD reader: no imaging lines match the selection (contrast ",
                opt.contrast, ", repetition ", opt.repetition, ", average ", opt.average, ") in ", path);
  for (int64_t s = 0; s < n_slices; ++s)
    AMBIENT_CHECK(have_geometry[s], "ISMRMRD reader: slice ", s, " has no imaging lines (", path, ")");

  Scan scan;
  scan.format = "ismrmrd";
  scan.source = path;
  auto denom = [](const torch::Tensor& n) { return n.clamp_min(1).to(torch::kFloat).reshape({n.size(0), 1, n.size(1), 1}); };
  scan.ksp = sum.div_(denom(n_img));  // in place: the volume is the largest thing here
  sum = torch::Tensor();
  scan.mask = n_img > 0;
  const bool has_calib = n_cal.sum().item<int64_t>() > 0;
  if (has_calib) {
    // Calibration-only lines (separate or interleaved reference) live in calib_ksp; imaging lines stay in ksp.
    scan.calib = n_cal > 0;
    if (calib_only_lines && (scan.calib & ~scan.mask).any().item<bool>()) {
      auto cal_lines = (n_cal > 0).reshape({n_slices, 1, ny, 1});
      scan.calib_ksp = torch::where(cal_lines, cal.div_(denom(n_cal)), scan.ksp);
    }
    cal = torch::Tensor();
  } else {
    scan.calib = torch::zeros_like(scan.mask);
    for (int64_t s = 0; s < n_slices; ++s) scan.calib[s] = central_run(scan.mask[s]);
  }

  if (noise_samples > 0) {
    // noise: [coil, samples], gathered acquisition by acquisition
    auto t = torch::empty({coils, noise_samples}, torch::kComplexFloat);
    auto* pt = reinterpret_cast<std::complex<float>*>(t.data_ptr());
    int64_t offset = 0;
    for (auto& a : acqs) {
      if (!flag(a, ISMRMRD::ISMRMRD_ACQ_IS_NOISE_MEASUREMENT)) continue;
      const int64_t ns = a.number_of_samples();
      const auto* p = a.getDataPtr();
      for (int64_t c = 0; c < coils; ++c)
        std::memcpy(pt + c * noise_samples + offset, p + c * ns, sizeof(std::complex<float>) * ns);
      offset += ns;
    }
    scan.noise = t;
    std::vector<ISMRMRD::Acquisition>().swap(acqs);  // every line is placed: free the raw data before whitening
    if (opt.prewhiten) {
      // White noise variance scales with 1 / dwell time: rescale the noise covariance to the data's bandwidth.
      const double scale = (noise_dwell > 0 && data_dwell > 0) ? static_cast<double>(noise_dwell) / data_dwell : 1.0;
      auto w = whitening_matrix(t, scale);
      scan.ksp = apply_coil_matrix(w, scan.ksp);
      if (scan.calib_ksp.defined()) scan.calib_ksp = apply_coil_matrix(w, scan.calib_ksp);
      scan.prewhitened = true;
    }
  }
  if (opt.remove_oversampling && nx_recon < nx_enc) {
    scan.ksp = crop_readout(scan.ksp, nx_recon);
    if (scan.calib_ksp.defined()) scan.calib_ksp = crop_readout(scan.calib_ksp, nx_recon);
  } else if (nx_recon < nx_enc) {
    geo.fov_mm[0] = enc.encodedSpace.fieldOfView_mm.x;
  }
  scan.ksp = scan.ksp.contiguous();
  scan.geometry = geo;
  if (h.subjectInformation && h.subjectInformation->patientID) scan.meta["patient_id"] = *h.subjectInformation->patientID;
  if (h.measurementInformation) scan.meta["patient_position"] = h.measurementInformation->patientPosition;
  validate(scan, "ISMRMRD reader (" + path + ")");
  return scan;
}

void write_ismrmrd(const std::string& path, const Scan& scan, const std::string& group) {
  validate(scan, "ISMRMRD writer");
  const IsmrmrdErrorsDrained errors;
  const int64_t S = scan.slices(), C = scan.coils(), ny = scan.ny(), nx = scan.nx();
  AMBIENT_CHECK(C <= 65535 && nx <= 65535 && ny <= 65535, "ISMRMRD writer: sizes exceed 16-bit header fields");
  ISMRMRD::IsmrmrdHeader h;
  h.version = ISMRMRD_XMLHDR_VERSION;
  h.experimentalConditions.H1resonanceFrequency_Hz = 127740000;  // 3 T
  ISMRMRD::AcquisitionSystemInformation sys;
  sys.receiverChannels = static_cast<unsigned short>(C);
  sys.systemVendor = std::string("ambient simulate");
  h.acquisitionSystemInformation = sys;
  ISMRMRD::MeasurementInformation meas;
  meas.patientPosition = scan.meta.count("patient_position") ? scan.meta.at("patient_position") : "HFS";
  h.measurementInformation = meas;
  if (scan.meta.count("patient_id")) {
    ISMRMRD::SubjectInformation subj;
    subj.patientID = scan.meta.at("patient_id");
    h.subjectInformation = subj;
  }
  ISMRMRD::Encoding e;
  e.trajectory = ISMRMRD::TrajectoryType::CARTESIAN;
  const auto& fov = scan.geometry.fov_mm;
  e.encodedSpace.matrixSize = ISMRMRD::MatrixSize(nx, ny, 1);
  e.encodedSpace.fieldOfView_mm = {static_cast<float>(fov[0]), static_cast<float>(fov[1]), static_cast<float>(fov[2])};
  e.reconSpace = e.encodedSpace;
  e.encodingLimits.kspace_encoding_step_1 = ISMRMRD::Limit(0, ny - 1, ny / 2);
  e.encodingLimits.slice = ISMRMRD::Limit(0, S - 1, 0);
  e.encodingLimits.repetition = ISMRMRD::Limit(0, 0, 0);
  ISMRMRD::ParallelImaging pi;
  pi.accelerationFactor.kspace_encoding_step_1 = static_cast<unsigned short>(std::lround(scan.acceleration()));
  pi.accelerationFactor.kspace_encoding_step_2 = 1;
  pi.calibrationMode = std::string("embedded");
  e.parallelImaging = pi;
  h.encoding.push_back(e);
  std::ostringstream xml;
  ISMRMRD::serialize(h, xml);

  const float dwell_us = 5.0f;
  write_atomically(path, [&](const std::string& tmp) {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    ISMRMRD::Dataset d(tmp.c_str(), group.c_str(), true);
    d.writeHeader(xml.str());
    uint32_t counter = 0;
    if (scan.noise.defined()) {
      auto noise = scan.noise.contiguous();
      const int64_t ns_total = noise.size(1);
      const auto* pn = reinterpret_cast<const std::complex<float>*>(noise.data_ptr());
      for (int64_t off = 0; off < ns_total; off += nx) {
        const int64_t ns = std::min<int64_t>(nx, ns_total - off);
        ISMRMRD::Acquisition acq(static_cast<uint16_t>(ns), static_cast<uint16_t>(C));
        acq.setFlag(ISMRMRD::ISMRMRD_ACQ_IS_NOISE_MEASUREMENT);
        acq.sample_time_us() = dwell_us;
        acq.scan_counter() = counter++;
        for (int64_t c = 0; c < C; ++c)
          std::memcpy(acq.getDataPtr() + c * ns, pn + c * ns_total + off, sizeof(std::complex<float>) * ns);
        d.appendAcquisition(acq);
      }
    }
    auto ksp = scan.ksp.contiguous();
    const auto* pk = reinterpret_cast<const std::complex<float>*>(ksp.data_ptr());
    auto mask = scan.mask.contiguous();
    auto calib = scan.calib.contiguous();
    auto am = mask.accessor<bool, 2>();
    auto ak = calib.accessor<bool, 2>();
    for (int64_t s = 0; s < S; ++s) {
      const auto& g = scan.geometry.slices[s];
      int64_t first = -1, last = -1;
      for (int64_t y = 0; y < ny; ++y)
        if (am[s][y]) last = y, first = first < 0 ? y : first;
      for (int64_t y = 0; y < ny; ++y) {
        if (!am[s][y]) continue;
        ISMRMRD::Acquisition acq(static_cast<uint16_t>(nx), static_cast<uint16_t>(C));
        acq.available_channels() = static_cast<uint16_t>(C);
        acq.center_sample() = static_cast<uint16_t>(nx / 2);
        acq.sample_time_us() = dwell_us;
        acq.scan_counter() = counter++;
        acq.idx().kspace_encode_step_1 = static_cast<uint16_t>(y);
        acq.idx().slice = static_cast<uint16_t>(s);
        if (ak[s][y]) acq.setFlag(ISMRMRD::ISMRMRD_ACQ_IS_PARALLEL_CALIBRATION_AND_IMAGING);
        if (y == first) acq.setFlag(ISMRMRD::ISMRMRD_ACQ_FIRST_IN_SLICE);
        if (y == last) acq.setFlag(ISMRMRD::ISMRMRD_ACQ_LAST_IN_SLICE);
        for (int i = 0; i < 3; ++i) {
          acq.position()[i] = static_cast<float>(g.position[i]);
          acq.read_dir()[i] = static_cast<float>(g.read_dir[i]);
          acq.phase_dir()[i] = static_cast<float>(g.phase_dir[i]);
          acq.slice_dir()[i] = static_cast<float>(g.slice_dir[i]);
        }
        for (int64_t c = 0; c < C; ++c)
          std::memcpy(acq.getDataPtr() + c * nx, pk + ((s * C + c) * ny + y) * nx, sizeof(std::complex<float>) * nx);
        d.appendAcquisition(acq);
      }
    }
  });
}

}  // namespace ambient::mri
