// The sources that read training data from disk (data.hpp).
#include "ambient/diffusion/data.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <numeric>
#include <filesystem>
#include <random>

#include "ambient/core/error.hpp"
#include "ambient/core/names.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/prepare.hpp"
#include "ambient/mri/simulate.hpp"

namespace ambient::diffusion {
namespace {

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
    // The percentile of |x| whatever the phase (mri::intensity_scale, as scans are scaled).
    return stack_[s] / mri::intensity_scale(stack_[s].unsqueeze(0), 1e-6).item<double>();
  }
  Example load(int64_t f, int64_t s) override {
    auto mag = magnitude(f, s);
    auto gen = at::detail::createCPUGenerator(derive_seed(seed_, SeedStream::slice_draws, f, s));
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
      maps_ = mri::espirit_maps_batch(scan_.calibration_kspace(), scan_.calibration_lines(), cfg_.espirit);
      cached_ = f;
    }
    auto ksp = scan_.ksp[s];
    auto maps = maps_[s];
    auto lines = scan_.mask[s];
    auto a = mri::make_sense(maps.unsqueeze(0), lines.to(torch::kFloat).reshape({1, 1, -1, 1}));
    auto zf = a->adjoint(ksp.unsqueeze(0));  // [1, ky, kx] coil-combined zero-filled
    const double scale = mri::intensity_scale(zf).item<double>();
    Example e;
    if (cfg_.corruption == Corruption::fourier) {
      e.ksp = ksp / scale;
      e.maps = maps;
      e.lines = lines;
      e.calib = scan_.calib[s];
    } else if (cfg_.corruption == Corruption::none) {  // fully sampled scans as clean images (pretraining)
      e.image = to_channels(zf / scale)[0];
    } else {
      auto keep = mri::random_blocks(ny_, nx_, cfg_.block_count, cfg_.block_min, cfg_.block_max,
                                     static_cast<uint32_t>(derive_seed(cfg_.seed, SeedStream::slice_draws, f, s)));
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

}  // namespace

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

constexpr Named<Corruption> kCorruptions[] = {
    {Corruption::fourier, "fourier"}, {Corruption::block, "block"}, {Corruption::none, "none"}};

Corruption parse_corruption(const std::string& name) { return parse_named(kCorruptions, name, "corruption"); }
std::string corruption_name(Corruption c) { return name_of(kCorruptions, c); }

Objective finetune_objective(Corruption c, bool naive) {
  AMBIENT_CHECK(c != Corruption::none, "fine-tuning: clean data (corruption none) is pretraining's, not an ambient "
                "objective's");
  if (naive) return Objective::naive;
  return c == Corruption::fourier ? Objective::ambient_fourier : Objective::ambient_image;
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

}  // namespace ambient::diffusion
