// Format detection and the one read_scan() entry point.
#include <hdf5.h>

#include <filesystem>

#include "ambient/core/error.hpp"
#include "hdf5_locking.hpp"
#include "hdf5_vlen.hpp"
#include "ambient/core/reader_crash.hpp"
#include "ambient/mri/io.hpp"

namespace ambient::mri {

namespace {

// Marks the HDF5 part of read_scan: a crash inside it is reported as a damaged file (reader_crash.hpp).
class ReadingHdf5 : public ReaderCrashScope {
 public:
  explicit ReadingHdf5(const std::string& path)
      : ReaderCrashScope("HDF5 reader", path,
                         "the file is damaged (HDF5 1.10.8 trusts the sizes in its object headers); check it with "
                         "h5dump or h5ls -r, or ask for a fresh copy of the scan") {}
};

}  // namespace

std::string detect_format(const std::string& path, const ReadOptions& opt) {
  namespace fs = std::filesystem;
  const std::string ext = fs::path(path).extension().string();
  if (ext == ".cfl" || ext == ".hdr" || (!fs::exists(path) && fs::exists(path + ".hdr"))) return "cfl";
  AMBIENT_CHECK(fs::exists(path), "scan: file not found: ", path);
  AMBIENT_CHECK(fs::is_regular_file(path), "scan: expected a file, got a directory or device: ", path);
  ReadingHdf5 guard(path);
  detail::disable_hdf5_file_locking();
  H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
  AMBIENT_CHECK(H5Fis_hdf5(path.c_str()) > 0, "scan: ", path, " is neither HDF5 (ISMRMRD, fastMRI) nor BART cfl; "
                "is it truncated?");
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  AMBIENT_CHECK(f >= 0, "scan: cannot open HDF5 file ", path, " (truncated?)");
  try {  // before the first link lookup: HDF5 follows a looping free list for ever
    size_t address_size = 0, length_size = 0;
    hsize_t user_block = 0;
    const hid_t fcpl = H5Fget_create_plist(f);
    if (fcpl >= 0) {
      H5Pget_sizes(fcpl, &address_size, &length_size);
      H5Pget_userblock(fcpl, &user_block);
      H5Pclose(fcpl);
    }
    detail::check_local_heaps(path, user_block, length_size, address_size);
  } catch (...) {
    H5Fclose(f);
    throw;
  }
  const std::string data = "/" + opt.ismrmrd_group + "/data";
  const bool ismrmrd = H5Lexists(f, ("/" + opt.ismrmrd_group).c_str(), H5P_DEFAULT) > 0 &&
                       H5Lexists(f, data.c_str(), H5P_DEFAULT) > 0;
  const bool fastmri = H5Lexists(f, "kspace", H5P_DEFAULT) > 0;
  H5Fclose(f);
  if (ismrmrd) return "ismrmrd";
  if (fastmri) return "fastmri";
  fail("scan: HDF5 file ", path, " has neither an ISMRMRD group '/", opt.ismrmrd_group,
       "/data' nor a fastMRI 'kspace' dataset");
}

Scan read_scan(const std::string& path, const ReadOptions& opt) {
  const std::string format = detect_format(path, opt);
  try {
    if (format == "ismrmrd") {
      ReadingHdf5 guard(path);
      return read_ismrmrd(path, opt);
    }
    if (format == "fastmri") {
      ReadingHdf5 guard(path);
      return read_fastmri(path, opt);
    }
    return read_cfl_scan(path);
  } catch (const Error& e) {  // every message names the file (a cfl scan's may name only its .hdr)
    const std::string stem = std::filesystem::path(path).stem().string();
    if (std::string(e.what()).find(stem) != std::string::npos) throw;
    fail(path, ": ", e.what());
  }
}

}  // namespace ambient::mri
