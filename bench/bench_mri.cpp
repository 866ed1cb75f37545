// MRI data-layer benchmark: FFTW vs torch::fft (FFT and SENSE normal operator), ISMRMRD reading, ESPIRiT and
// CG-SENSE per slice. Prints figures and ratios measured in one run. Usage: bench_mri [--threads N] [--reps N]
#include <malloc.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <thread>

#include <ATen/CPUGeneratorImpl.h>
#include <ATen/Parallel.h>
#include <ismrmrd/dataset.h>

#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "ambient/mri/recon.hpp"

using namespace ambient;
using Clock = std::chrono::steady_clock;

namespace {

// Median of `reps` timings (seconds) of fn after warm-up calls. Several warm-ups matter: the first calls pay for
// fresh multi-megabyte allocations (page faults) until glibc's malloc raises its mmap threshold, which made a lone
// warm-up report an FFT 3x slower than its steady state.
double time_it(int reps, const std::function<void()>& fn) {
  for (int i = 0; i < 5; ++i) fn();
  std::vector<double> t;
  for (int i = 0; i < reps; ++i) {
    auto t0 = Clock::now();
    fn();
    t.push_back(std::chrono::duration<double>(Clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int threads = static_cast<int>(std::thread::hardware_concurrency()), reps = 20;
  for (int i = 1; i + 1 < argc; ++i) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[++i]);
    if (!std::strcmp(argv[i], "--reps")) reps = std::atoi(argv[++i]);
  }
  at::set_num_threads(threads);
  mri::set_fft_threads(threads);
  mallopt(M_MMAP_THRESHOLD, 64 << 20);  // as the ambient app does (apps/ambient/main.cpp)
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  std::printf("ambient bench_mri: %d thread(s), median of %d runs\n\n", threads, reps);

  // 1. FFT: 6 slices x 8 coils x 128 x 128, as in the sample scan.
  auto gen = at::detail::createCPUGenerator(0);
  auto x = torch::randn({6, 8, 128, 128}, gen, torch::kComplexFloat);
  const double t_fftw = time_it(reps, [&] { mri::fft2c(x); });
  const double t_torch = time_it(reps, [&] { mri::fft2c_torch(x); });
  std::printf("%-44s %9.3f ms\n", "centred FFT, FFTW [6,8,128,128]", 1e3 * t_fftw);
  std::printf("%-44s %9.3f ms   FFTW speed-up %.2fx\n", "centred FFT, torch::fft", 1e3 * t_torch, t_torch / t_fftw);

  // 2. SENSE normal operator A^H A (what CG-SENSE and data consistency run).
  auto maps = torch::randn({6, 8, 128, 128}, gen, torch::kComplexFloat);
  auto mask = (torch::rand({1, 1, 128, 1}, gen) < 0.25).to(torch::kFloat);
  auto img = torch::randn({6, 128, 128}, gen, torch::kComplexFloat);
  auto a_fftw = mri::make_sense(maps, mask);
  auto a_torch = mri::make_sense(maps, mask, mri::FftBackend::torch);
  const double n_fftw = time_it(reps, [&] { a_fftw->normal(img); });
  const double n_torch = time_it(reps, [&] { a_torch->normal(img); });
  std::printf("%-44s %9.3f ms\n", "SENSE A^H A, FFTW (6 slices, 8 coils)", 1e3 * n_fftw);
  std::printf("%-44s %9.3f ms   FFTW speed-up %.2fx\n", "SENSE A^H A, torch::fft", 1e3 * n_torch, n_torch / n_fftw);

  // 3. ISMRMRD reading of the sample scan: our reader vs a bare loop of readAcquisition (the floor).
  const std::string path = AMBIENT_SAMPLE_SCAN;
  uint32_t acquisitions = 0;
  const double t_read = time_it(std::max(3, reps / 4), [&] { mri::read_scan(path); });
  const double t_bare = time_it(std::max(3, reps / 4), [&] {
    ISMRMRD::Dataset d(path.c_str(), "dataset", false);
    acquisitions = d.getNumberOfAcquisitions();
    ISMRMRD::Acquisition acq;
    for (uint32_t i = 0; i < acquisitions; ++i) d.readAcquisition(i, acq);
  });
  std::printf("%-44s %9.3f ms   (%u acquisitions, %.0f/s)\n", "read_scan(sample ISMRMRD), incl. whitening",
              1e3 * t_read, acquisitions, acquisitions / t_read);
  std::printf("%-44s %9.3f ms   reader overhead %.2fx\n", "bare ISMRMRD readAcquisition loop", 1e3 * t_bare,
              t_read / t_bare);

  // 4. Per-slice costs of the classical reconstruction on the sample scan.
  auto scan = mri::read_scan(path);
  const auto calib = scan.calibration_kspace();
  const double t_espirit = time_it(std::max(3, reps / 4), [&] { mri::espirit_maps(calib[0], scan.calib[0]); });
  auto smaps = mri::espirit_maps_batch(calib, scan.calib);
  auto a = mri::make_sense(smaps, scan.kspace_mask());
  mri::CgConfig cg;
  cg.lambda = 0.01;
  const double t_cg = time_it(std::max(3, reps / 4), [&] { mri::cg_sense(a, scan.ksp, cg); });
  std::printf("%-44s %9.3f ms/slice\n", "ESPIRiT maps (128x128, 8 coils, k=6)", 1e3 * t_espirit);
  std::printf("%-44s %9.3f ms/slice\n", "CG-SENSE, 30 iterations", 1e3 * t_cg / scan.slices());
  return 0;
}
