// Shared pieces of the `ambient` subcommands: option helpers, a progress bar, JSON output, thread set-up.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <boost/program_options.hpp>

namespace ambient::app {

namespace po = boost::program_options;

/// Parses `args` (the subcommand's own) into `vm`; prints help and returns false when --help was given.
bool parse(const std::string& command, const std::string& usage, const po::options_description& options,
           const po::positional_options_description& positional, const std::vector<std::string>& args,
           po::variables_map& vm);

/// A one-line progress bar with rate and ETA on stderr (redrawn in place on a terminal, every 10% otherwise).
class Progress {
 public:
  /// `visible` false draws nothing (the other ranks of a data-parallel job). `first`: work done before this run
  /// (a resumed training), left out of the rate the ETA is computed from.
  Progress(std::string label, int64_t total, bool visible = true, int64_t first = 0);
  void update(int64_t done, const std::string& note = "");
  void finish(const std::string& note = "");

 private:
  void draw(int64_t done, const std::string& note, bool final);
  std::string label_;
  int64_t total_, first_;
  std::chrono::steady_clock::time_point start_;
  bool tty_;
  bool visible_;
  int last_decile_ = -1;
};

/// Progress bars for a library call that reports stages (volume_recon.hpp, StageMonitor): a bar per stage, drawn
/// as the stage reports, finished when the next stage starts or by finish().
class StageBars {
 public:
  explicit StageBars(bool visible) : visible_(visible) {}
  void operator()(const std::string& stage, int64_t done, int64_t total, const std::string& note);
  void finish();

 private:
  bool visible_;
  std::string stage_;
  std::unique_ptr<Progress> bar_;
};

/// A flat JSON object writer for metrics and reports (string and number values).
class JsonObject {
 public:
  JsonObject& add(const std::string& key, double value);
  JsonObject& add(const std::string& key, const std::string& value);
  JsonObject& add_raw(const std::string& key, const std::string& json);
  std::string str(int indent = 2) const;

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

/// "4,8,16" -> {4, 8, 16}; anything else fails with "<what>: expected comma-separated integers".
std::vector<int64_t> int_list(const std::string& text, const char* what);

/// Writes text to `path` atomically.
void write_text(const std::string& path, const std::string& text);

/// True when the CPU has native bfloat16 instructions (AVX512-BF16 or AMX), where bf16 autocast pays.
bool cpu_has_bf16();

/// Uses every core for LibTorch (it defaults to one here) and FFTW, or `threads` when positive.
void set_threads(int threads);
/// "" for a lone process, " (rank R of W)" in a data-parallel job: for error messages.
std::string rank_tag();

int run_info(const std::vector<std::string>& args);
int run_simulate(const std::vector<std::string>& args);
int run_recon(const std::vector<std::string>& args);
int run_convert(const std::vector<std::string>& args);
int run_pretrain(const std::vector<std::string>& args);
int run_finetune(const std::vector<std::string>& args);
int run_sample(const std::vector<std::string>& args);
int run_inpaint(const std::vector<std::string>& args);
int run_eval(const std::vector<std::string>& args);
int run_export(const std::vector<std::string>& args);

}  // namespace ambient::app
