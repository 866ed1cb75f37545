// Format detection and the one read_scan() entry point.
#include <hdf5.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstring>
#include <filesystem>

#include "ambient/mri/error.hpp"
#include "hdf5_locking.hpp"
#include "hdf5_vlen.hpp"
#include "ambient/mri/io.hpp"

namespace ambient::mri {

namespace {

// What the crash handler prints: prepared before each read, because a signal handler may only write() and _exit().
char g_crash_message[2048];
size_t g_crash_length = 0;
std::atomic<int> g_reading{0};
std::atomic<bool> g_handler_installed{false};

void on_reader_crash(int sig) {
  if (g_reading.load() == 0) {  // not ours to explain: die of the signal as before
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  const char* name = sig == SIGSEGV ? "SIGSEGV" : sig == SIGBUS ? "SIGBUS" : sig == SIGFPE ? "SIGFPE"
                   : sig == SIGILL ? "SIGILL" : "SIGABRT";
  const char prefix[] = "ambient: error: the HDF5 reader crashed (";
  ssize_t ignored = write(STDERR_FILENO, prefix, sizeof prefix - 1);
  ignored = write(STDERR_FILENO, name, std::strlen(name));
  ignored = write(STDERR_FILENO, g_crash_message, g_crash_length);
  (void)ignored;
  _exit(1);
}

// Marks the HDF5 part of read_scan: a crash inside it is reported as a damaged file.
class ReadingHdf5 {
 public:
  explicit ReadingHdf5(const std::string& path) {
    if (!g_handler_installed.load()) return;
    const std::string text = ") while reading " + path +
                             ": the file is damaged (HDF5 1.10.8 trusts the sizes in its object headers); check it "
                             "with h5dump or h5ls -r, or ask for a fresh copy of the scan\n";
    g_crash_length = std::min(text.size(), sizeof g_crash_message);
    std::memcpy(g_crash_message, text.data(), g_crash_length);
    active_ = true;
    ++g_reading;
  }
  ~ReadingHdf5() {
    if (active_) --g_reading;
  }
  ReadingHdf5(const ReadingHdf5&) = delete;
  ReadingHdf5& operator=(const ReadingHdf5&) = delete;

 private:
  bool active_ = false;
};

}  // namespace

void exit_cleanly_on_reader_crash() {
  if (g_handler_installed.exchange(true)) return;
  // Its own stack, so that a stack overflow (HDF5 recursing through a cyclic datatype) on the calling thread, the
  // main thread of a command-line program, is reported too.
  static char stack[1 << 16];
  stack_t ss{};
  ss.ss_sp = stack;
  ss.ss_size = sizeof stack;
  sigaltstack(&ss, nullptr);
  struct sigaction sa {};
  sa.sa_handler = on_reader_crash;
  sa.sa_flags = SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT}) sigaction(sig, &sa, nullptr);
}

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
