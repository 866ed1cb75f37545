// Option parsing, progress drawing and JSON helpers for the subcommands.
#include "cli.hpp"

#include <dlfcn.h>
#include <torch/torch.h>
#include <unistd.h>

#include <cmath>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>
#include <thread>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/distributed.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"

namespace ambient::app {

bool parse(const std::string& command, const std::string& usage, const po::options_description& options,
           const po::positional_options_description& positional, const std::vector<std::string>& args,
           po::variables_map& vm) {
  po::options_description all;
  all.add(options);
  all.add_options()("help,h", "show this help");
  try {
    po::store(po::command_line_parser(args).options(all).positional(positional).run(), vm);
    if (vm.count("help")) {
      std::cout << "usage: ambient " << command << " " << usage << "\n\n" << all << "\n";
      return false;
    }
    po::notify(vm);
  } catch (const po::error& e) {
    fail("ambient ", command, ": ", e.what(), " (see 'ambient ", command, " --help')");
  }
  return true;
}

Progress::Progress(std::string label, int64_t total, bool visible, int64_t first)
    : label_(std::move(label)),
      total_(std::max<int64_t>(1, total)),
      first_(std::max<int64_t>(0, first)),
      start_(std::chrono::steady_clock::now()),
      tty_(isatty(STDERR_FILENO) != 0),
      visible_(visible) {}

void Progress::update(int64_t done, const std::string& note) { draw(done, note, false); }

void Progress::finish(const std::string& note) { draw(total_, note, true); }

void Progress::draw(int64_t done, const std::string& note, bool final) {
  if (!visible_) return;
  const double frac = std::min(1.0, static_cast<double>(done) / total_);
  const int decile = static_cast<int>(frac * 10);
  if (!tty_ && !final && decile == last_decile_) return;
  last_decile_ = decile;
  const double elapsed = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count();
  const double eta = done > first_ ? elapsed * (total_ - done) / static_cast<double>(done - first_) : 0;
  constexpr int width = 28;
  const int filled = static_cast<int>(frac * width);
  std::ostringstream os;
  os << label_ << " [" << std::string(filled, '#') << std::string(width - filled, '.') << "] " << done << "/"
     << total_ << std::fixed << std::setprecision(1) << "  " << elapsed << "s";
  if (!final && done > first_) os << "  ETA " << eta << "s";
  if (!note.empty()) os << "  " << note;
  if (tty_) std::cerr << "\r\033[K" << os.str() << (final ? "\n" : "") << std::flush;
  else std::cerr << os.str() << "\n";
}

void StageBars::operator()(const std::string& stage, int64_t done, int64_t total, const std::string& note) {
  if (!bar_ || stage != stage_) {
    finish();
    stage_ = stage;
    bar_ = std::make_unique<Progress>(stage, total, visible_);
  }
  bar_->update(done, note);
}

void StageBars::finish() {
  if (bar_) bar_->finish();
  bar_.reset();
  stage_.clear();
}

JsonObject& JsonObject::add(const std::string& key, double value) {
  std::ostringstream os;
  if (std::isfinite(value)) os << std::setprecision(8) << value;
  else os << "null";
  items_.emplace_back(key, os.str());
  return *this;
}

JsonObject& JsonObject::add(const std::string& key, const std::string& value) {
  std::ostringstream os;
  os << '"';
  for (char ch : value) {
    if (ch == '"' || ch == '\\') os << '\\' << ch;
    else if (ch == '\n') os << "\\n";
    else if (static_cast<unsigned char>(ch) < 0x20) os << ' ';
    else os << ch;
  }
  os << '"';
  items_.emplace_back(key, os.str());
  return *this;
}

JsonObject& JsonObject::add_raw(const std::string& key, const std::string& json) {
  items_.emplace_back(key, json);
  return *this;
}

std::string JsonObject::str(int indent) const {
  std::ostringstream os;
  const std::string pad(indent, ' ');
  os << "{" << (indent ? "\n" : "");
  for (size_t i = 0; i < items_.size(); ++i) {
    os << pad << '"' << items_[i].first << "\": " << items_[i].second << (i + 1 < items_.size() ? "," : "")
       << (indent ? "\n" : "");
  }
  os << "}";
  return os.str();
}

std::vector<int64_t> int_list(const std::string& text, const char* what) {
  std::vector<int64_t> out;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) {
    size_t used = 0;
    try {
      out.push_back(std::stoll(item, &used));
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size()) fail(what, ": expected comma-separated integers, got '", text, "'");
  }
  if (out.empty()) fail(what, ": expected comma-separated integers, got '", text, "'");
  return out;
}

void write_text(const std::string& path, const std::string& text) {
  ambient::write_atomically(path, [&](const std::string& tmp) {
    std::ofstream out(tmp);
    out << text;
    AMBIENT_CHECK(out.good(), "output: could not write ", tmp);
  });
}

std::string rank_tag() {
  try {
    const auto p = diffusion::placement_from_environment();
    if (p.world > 1) return " (rank " + std::to_string(p.rank) + " of " + std::to_string(p.world) + ")";
  } catch (...) {
  }
  return "";
}

bool cpu_has_bf16() {
  std::ifstream info("/proc/cpuinfo");
  std::string line;
  while (std::getline(info, line))
    if (line.rfind("flags", 0) == 0)
      return line.find(" avx512_bf16") != std::string::npos || line.find(" amx_bf16") != std::string::npos;
  return false;
}

void set_threads(int threads) {
  // Ranks of a data-parallel job on one node share its cores.
  const int local = static_cast<int>(diffusion::placement_from_environment().local_world);
  const int n = threads > 0 ? threads
                            : std::max(1, static_cast<int>(std::max(1u, std::thread::hardware_concurrency())) / local);
  torch::set_num_threads(n);
  mri::set_fft_threads(n);
  // LibTorch reaches BLAS through libblas.so.3, which Debian points at OpenBLAS when libopenblas0-pthread is
  // installed (scripts/setup.sh; 4x the reference BLAS). OpenBLAS picks its own thread count from the environment
  // (torchrun sets OMP_NUM_THREADS=1), and its LAPACK results change in the last bits with it, so a recon would
  // differ between launchers and layouts. One BLAS thread everywhere keeps every result independent of both; it was
  // faster for recon than two and about 20% slower for a training step (bench/blas_compare.sh, docs/performance.md).
  using SetThreads = void (*)(int);
  if (auto set = reinterpret_cast<SetThreads>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set(1);
}

}  // namespace ambient::app
