// Data sources, the deterministic (seed, step) order, and the background loader.
#include "ambient/diffusion/data.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <numeric>
#include <filesystem>
#include <random>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/simulate.hpp"

namespace ambient::diffusion {
namespace {

uint64_t mix(uint64_t a, uint64_t b) {  // splitmix-style hash of two integers, for per-example seeds
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Reflection about the centred-FFT origin (index n/2): i -> (2 (n/2) - i) mod n. It commutes with fft2c, so
// flipping image, maps, k-space and line mask this way keeps y = M F S x true.
torch::Tensor centred_flip(const torch::Tensor& t, int64_t dim) {
  auto f = torch::flip(t, {dim});
  return t.size(dim) % 2 == 0 ? torch::roll(f, {1}, {dim}) : f;
}

double percentile99(const torch::Tensor& magnitude) {
  return magnitude.flatten().to(torch::kFloat).quantile(0.99).item<double>();
}

class CleanVolumeSource final : public Source {
 public:
  CleanVolumeSource(std::vector<std::string> volumes, int64_t matrix, std::string orientation, uint64_t seed)
      : matrix_(matrix), seed_(seed) {
    AMBIENT_CHECK(!volumes.empty(), "pretrain data: no NIfTI volumes given");
    for (const auto& spec : volumes) {
      const auto at = spec.rfind('@');
      paths_.push_back(at == std::string::npos ? spec : spec.substr(0, at));
      orientations_.push_back(at == std::string::npos ? orientation : spec.substr(at + 1));
      const auto& o = orientations_.back();
      AMBIENT_CHECK(o == "axial" || o == "coronal" || o == "sagittal", "pretrain data: expected orientation "
                    "axial|coronal|sagittal after '@', got '", o, "' in ", spec);
    }
    for (size_t f = 0; f < paths_.size(); ++f) {
      // The central 60% of slices along the chosen axis: the ends of brain volumes are mostly empty.
      const auto v = mri::read_nifti(paths_[f]);
      const auto& o = orientations_[f];
      const int64_t axis = o == "axial" ? 0 : o == "coronal" ? 1 : 2;
      const int64_t n = v.data.size(axis);
      first_.push_back(n / 5);
      counts_.push_back(std::max<int64_t>(1, n - 2 * (n / 5)));
    }
  }
  int64_t files() const override { return static_cast<int64_t>(paths_.size()); }
  int64_t slices(int64_t f) const override { return counts_.at(f); }
  /// Slice s of file f: magnitude [H, W] scaled so its 99th percentile is 1.
  torch::Tensor magnitude(int64_t f, int64_t s) {
    if (f != cached_) {
      mri::SimulateConfig c;
      c.orientation = orientations_[f];
      c.matrix = matrix_;
      c.slices.clear();
      for (int64_t i = 0; i < counts_[f]; ++i) c.slices.push_back(first_[f] + i);
      stack_ = mri::resample_slices(mri::read_nifti(paths_[f]), c).magnitude.to(torch::kFloat);
      cached_ = f;
    }
    return stack_[s] / std::max(percentile99(stack_[s]), 1e-6);  // = the percentile of |x| whatever the phase
  }
  Example load(int64_t f, int64_t s) override {
    auto mag = magnitude(f, s);
    auto gen = at::detail::createCPUGenerator(mix(seed_, mix(f, s)));
    auto phase = mri::smooth_phase(1, matrix_, 1.5, gen).to(torch::kFloat);
    auto z = torch::polar(mag.unsqueeze(0), phase);
    Example e;
    e.image = to_channels(z)[0];
    return e;
  }

 private:
  std::vector<std::string> paths_, orientations_;
  int64_t matrix_;
  uint64_t seed_;
  std::vector<int64_t> first_, counts_;
  int64_t cached_ = -1;
  torch::Tensor stack_;
};

class ScanSource final : public Source {
 public:
  ScanSource(std::vector<std::string> scans, ScanSourceConfig config)
      : paths_(std::move(scans)), cfg_(std::move(config)) {
    AMBIENT_CHECK(!paths_.empty(), "training data: no scans given");
    AMBIENT_CHECK(cfg_.corruption == "fourier" || cfg_.corruption == "block" || cfg_.corruption == "none",
                  "training data: expected corruption fourier|block|none, got '", cfg_.corruption, "'");
    for (const auto& p : paths_) {
      const auto scan = mri::read_scan(p);
      if (!counts_.empty())
        AMBIENT_CHECK(scan.ny() == ny_ && scan.nx() == nx_, "training data: ", p, " is ", scan.ny(), "x", scan.nx(),
                      ", earlier scans are ", ny_, "x", nx_, "; train on one matrix size (resample or crop first)");
      ny_ = scan.ny(), nx_ = scan.nx();
      counts_.push_back(scan.slices());
    }
  }
  int64_t files() const override { return static_cast<int64_t>(paths_.size()); }
  int64_t slices(int64_t f) const override { return counts_.at(f); }
  Example load(int64_t f, int64_t s) override {
    if (f != cached_) {
      scan_ = mri::read_scan(paths_[f]);
      maps_ = mri::espirit_maps_batch(scan_.calibration_kspace(), scan_.calib, cfg_.espirit);
      cached_ = f;
    }
    auto ksp = scan_.ksp[s];
    auto maps = maps_[s];
    auto lines = scan_.mask[s];
    auto a = mri::make_sense(maps.unsqueeze(0), lines.to(torch::kFloat).reshape({1, 1, -1, 1}));
    auto zf = a->adjoint(ksp.unsqueeze(0));  // [1, ky, kx] coil-combined zero-filled
    const double scale = std::max(percentile99(zf.abs()), 1e-12);
    Example e;
    if (cfg_.corruption == "fourier") {
      e.ksp = ksp / scale;
      e.maps = maps;
      e.lines = lines;
      e.calib = scan_.calib[s];
    } else if (cfg_.corruption == "none") {  // fully sampled scans as clean images (pretraining)
      e.image = to_channels(zf / scale)[0];
    } else {
      auto keep = mri::random_blocks(ny_, nx_, cfg_.block_count, cfg_.block_min, cfg_.block_max,
                                     static_cast<uint32_t>(mix(cfg_.seed, mix(f, s))));
      e.mask = keep.to(torch::kFloat).unsqueeze(0);
      e.image = to_channels(zf / scale)[0] * e.mask;  // only what A observed ever leaves this function
    }
    return e;
  }

 private:
  std::vector<std::string> paths_;
  ScanSourceConfig cfg_;
  std::vector<int64_t> counts_;
  int64_t ny_ = 0, nx_ = 0;
  int64_t cached_ = -1;
  mri::Scan scan_;
  torch::Tensor maps_;
};

torch::Tensor stack_field(const std::vector<Example>& ex, torch::Tensor Example::*field) {
  if (!(ex[0].*field).defined()) return {};
  std::vector<torch::Tensor> parts;
  for (const auto& e : ex) parts.push_back(e.*field);
  return torch::stack(parts);
}

}  // namespace

int64_t Batch::size() const {
  for (const auto* t : {&image, &ksp})
    if (t->defined()) return t->size(0);
  return 0;
}

Batch collate(const std::vector<Example>& ex) {
  AMBIENT_CHECK(!ex.empty(), "collate: empty batch");
  Batch b;
  b.image = stack_field(ex, &Example::image);
  b.mask = stack_field(ex, &Example::mask);
  b.ksp = stack_field(ex, &Example::ksp);
  b.maps = stack_field(ex, &Example::maps);
  b.lines = stack_field(ex, &Example::lines);
  b.calib = stack_field(ex, &Example::calib);
  return b;
}

int64_t Source::total() const {
  int64_t n = 0;
  for (int64_t f = 0; f < files(); ++f) n += slices(f);
  return n;
}

std::unique_ptr<Source> clean_volume_source(const std::vector<std::string>& volumes, int64_t matrix,
                                            const std::string& orientation, uint64_t seed) {
  AMBIENT_CHECK(orientation == "axial" || orientation == "coronal" || orientation == "sagittal",
                "pretrain: expected orientation axial|coronal|sagittal, got '", orientation, "'");
  return std::make_unique<CleanVolumeSource>(volumes, matrix, orientation, seed);
}

torch::Tensor clean_volume_magnitudes(const std::vector<std::string>& volumes, int64_t matrix,
                                      const std::string& orientation) {
  CleanVolumeSource source(volumes, matrix, orientation, 0);
  std::vector<torch::Tensor> slices;
  for (int64_t f = 0; f < source.files(); ++f)
    for (int64_t s = 0; s < source.slices(f); ++s) slices.push_back(source.magnitude(f, s));
  return torch::stack(slices);
}

std::unique_ptr<Source> scan_source(const std::vector<std::string>& scans, const ScanSourceConfig& config) {
  return std::make_unique<ScanSource>(scans, config);
}

std::vector<std::string> expand_inputs(const std::vector<std::string>& inputs, const std::vector<std::string>& exts) {
  namespace fs = std::filesystem;
  std::vector<std::string> out;
  for (const auto& in : inputs) {
    AMBIENT_CHECK(fs::exists(in), "data: not found: ", in);
    if (!fs::is_directory(in)) {
      out.push_back(in);
      continue;
    }
    std::vector<std::string> found;
    for (const auto& entry : fs::directory_iterator(in)) {
      const std::string name = entry.path().string();
      for (const auto& ext : exts)
        if (name.size() > ext.size() && name.compare(name.size() - ext.size(), ext.size(), ext) == 0)
          found.push_back(name);
    }
    AMBIENT_CHECK(!found.empty(), "data: folder ", in, " holds no file ending in any of the expected extensions");
    std::sort(found.begin(), found.end());
    out.insert(out.end(), found.begin(), found.end());
  }
  return out;
}

Order::Order(const Source& source, uint64_t seed) : source_(source), seed_(seed), total_(source.total()) {
  AMBIENT_CHECK(total_ > 0, "data: no slices to train on");
}

std::vector<std::pair<int64_t, int64_t>> Order::epoch(int64_t e) const {
  std::mt19937_64 rng(mix(seed_, static_cast<uint64_t>(e)));
  std::vector<int64_t> files(source_.files());
  std::iota(files.begin(), files.end(), 0);
  std::shuffle(files.begin(), files.end(), rng);
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t f : files) {
    std::vector<int64_t> s(source_.slices(f));
    std::iota(s.begin(), s.end(), 0);
    std::shuffle(s.begin(), s.end(), rng);
    for (int64_t i : s) out.emplace_back(f, i);
  }
  return out;
}

std::pair<int64_t, int64_t> Order::at(int64_t k) {
  const int64_t e = k / total_;
  if (e != cached_epoch_) {
    cache_ = epoch(e);
    cached_epoch_ = e;
  }
  return cache_[k % total_];
}

Example flip(const Example& e, bool horizontal, bool vertical) {
  Example o = e;
  auto apply = [&](torch::Tensor& t, int64_t dim_from_end) {
    if (t.defined()) t = centred_flip(t, t.dim() - dim_from_end);
  };
  if (horizontal) {
    for (auto* t : {&o.image, &o.mask, &o.ksp, &o.maps}) apply(*t, 1);
  }
  if (vertical) {
    for (auto* t : {&o.image, &o.mask, &o.ksp, &o.maps}) apply(*t, 2);
    for (auto* t : {&o.lines, &o.calib}) apply(*t, 1);
  }
  return o;
}

Loader::Loader(std::shared_ptr<Source> source, int64_t batch, uint64_t seed, int64_t first_step, bool flips,
               int64_t depth, int64_t rank, int64_t world)
    : source_(std::move(source)), batch_(batch), seed_(seed), flips_(flips), depth_(depth), rank_(rank),
      world_(world), next_step_(first_step) {
  AMBIENT_CHECK(batch_ >= 1, "training: expected a batch size >= 1, got ", batch_);
  AMBIENT_CHECK(world_ >= 1 && rank_ >= 0 && rank_ < world_, "training: rank ", rank_, " outside a world of ", world_);
  thread_ = std::thread([this] { work(); });
}

Loader::~Loader() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void Loader::work() {
  try {
    Order order(*source_, seed_);
    int64_t step = next_step_;
    while (true) {
      {
        std::unique_lock<std::mutex> lock(mutex_);
        cv_.wait(lock, [&] { return stop_ || static_cast<int64_t>(ready_.size()) < depth_; });
        if (stop_) return;
      }
      std::vector<Example> examples;
      for (int64_t i = 0; i < batch_; ++i) {
        const int64_t k = first_index(step, batch_, rank_, world_) + i;
        const auto [f, s] = order.at(k);
        Example e = source_->load(f, s);
        if (flips_) {
          const uint64_t r = mix(seed_ + 1, static_cast<uint64_t>(k));
          e = flip(e, r & 1, (r >> 1) & 1);
        }
        examples.push_back(std::move(e));
      }
      Batch b = collate(examples);
      {
        std::lock_guard<std::mutex> lock(mutex_);
        ready_.push_back(std::move(b));
      }
      cv_.notify_all();
      ++step;
    }
  } catch (...) {
    std::lock_guard<std::mutex> lock(mutex_);
    error_ = std::current_exception();
    cv_.notify_all();
  }
}

Batch Loader::next() {
  std::unique_lock<std::mutex> lock(mutex_);
  cv_.wait(lock, [&] { return !ready_.empty() || error_; });
  if (ready_.empty() && error_) std::rethrow_exception(error_);
  Batch b = std::move(ready_.front());
  ready_.pop_front();
  cv_.notify_all();
  return b;
}

}  // namespace ambient::diffusion
