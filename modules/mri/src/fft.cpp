// FFTW-backed centred unitary 2-D FFT: RAII plans cached per (batch, ny, nx, direction), planner behind a mutex.
// Built without FFTW (AMBIENT_HAVE_FFTW undefined: the LibTorch-only configuration, apps/gpu_pretrain), every
// transform goes through torch::fft.
#include "ambient/mri/fft.hpp"

#include <torch/fft.h>

#ifdef AMBIENT_HAVE_FFTW
#include <fftw3.h>
#endif

#include <ATen/Parallel.h>

#include <cmath>
#include <complex>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <tuple>

#include "ambient/core/error.hpp"

namespace ambient::mri {
#ifdef AMBIENT_HAVE_FFTW
namespace {

// FFTW's planner is not thread-safe; plan creation and destruction go through this lock.
std::mutex& planner_mutex() {
  static std::mutex m;
  return m;
}

int& fft_threads() {
  static int n = 0;  // 0: ask ATen at first planning
  return n;
}

/// One FFTW plan for `batch` in-place transforms of ny x nx, made once and executed on any aligned array.
class Plan {
 public:
  Plan(int batch, int ny, int nx, int sign) {
    std::lock_guard<std::mutex> lock(planner_mutex());
    static bool threads_ready = [] { return fftwf_init_threads() != 0; }();
    if (threads_ready) {
      int n = fft_threads() > 0 ? fft_threads() : at::get_num_threads();
      fftwf_plan_with_nthreads(std::max(1, n));
    }
    const size_t count = static_cast<size_t>(batch) * ny * nx;
    auto* scratch = static_cast<fftwf_complex*>(fftwf_malloc(sizeof(fftwf_complex) * count));
    if (!scratch) fail("FFT plan: could not allocate ", count, " complex samples");
    int dims[2] = {ny, nx};
    // FFTW_ESTIMATE keeps plans (and so results) identical run to run, which the seeded tools rely on.
    plan_ = fftwf_plan_many_dft(2, dims, batch, scratch, nullptr, 1, ny * nx, scratch, nullptr, 1, ny * nx, sign,
                                FFTW_ESTIMATE);
    alignment_ = fftwf_alignment_of(reinterpret_cast<float*>(scratch));
    fftwf_free(scratch);
    if (!plan_) fail("FFT plan: FFTW could not plan ", batch, " x ", ny, " x ", nx);
  }
  Plan(const Plan&) = delete;
  Plan& operator=(const Plan&) = delete;
  ~Plan() {
    std::lock_guard<std::mutex> lock(planner_mutex());
    fftwf_destroy_plan(plan_);
  }
  bool can_run_on(std::complex<float>* data) const {
    return fftwf_alignment_of(reinterpret_cast<float*>(data)) == alignment_;
  }
  void execute(std::complex<float>* data) const {
    auto* p = reinterpret_cast<fftwf_complex*>(data);
    fftwf_execute_dft(plan_, p, p);
  }

 private:
  fftwf_plan plan_ = nullptr;
  int alignment_ = 0;
};

std::shared_ptr<const Plan> plan_for(int batch, int ny, int nx, int sign) {
  static std::mutex cache_mutex;
  static std::map<std::tuple<int, int, int, int>, std::shared_ptr<const Plan>> cache;
  const auto key = std::make_tuple(batch, ny, nx, sign);
  {
    std::lock_guard<std::mutex> lock(cache_mutex);
    auto it = cache.find(key);
    if (it != cache.end()) return it->second;
  }
  auto plan = std::make_shared<const Plan>(batch, ny, nx, sign);
  std::lock_guard<std::mutex> lock(cache_mutex);
  return cache.emplace(key, plan).first->second;
}

// Copies a [ny, nx] plane with a circular shift: out[y][x] = in[(y + sy) % ny][(x + sx) % nx] * scale.
void shifted_copy(const std::complex<float>* in, std::complex<float>* out, int64_t ny, int64_t nx, int64_t sy,
                  int64_t sx, float scale) {
  for (int64_t y = 0; y < ny; ++y) {
    const std::complex<float>* src = in + ((y + sy) % ny) * nx;
    std::complex<float>* dst = out + y * nx;
    const int64_t first = nx - sx;  // out[0, first) comes from in[sx, nx)
    if (scale == 1.0f) {
      std::memcpy(dst, src + sx, sizeof(std::complex<float>) * first);
      std::memcpy(dst + first, src, sizeof(std::complex<float>) * sx);
    } else {
      for (int64_t x = 0; x < first; ++x) dst[x] = src[sx + x] * scale;
      for (int64_t x = 0; x < sx; ++x) dst[first + x] = src[x] * scale;
    }
  }
}

// Even sizes: fftshift(fft(ifftshift(x)))[k] = (-1)^(k + n/2) fft((-1)^m x)[k] per axis, so the centring becomes
// a ±1 modulation before and after an in-place FFT: one buffer and two passes instead of two shifted copies.
void modulate(const std::complex<float>* in, std::complex<float>* out, int64_t ny, int64_t nx, float scale) {
  for (int64_t y = 0; y < ny; ++y) {
    const std::complex<float>* src = in + y * nx;
    std::complex<float>* dst = out + y * nx;
    const float s = (y % 2 == 0) ? scale : -scale;
    for (int64_t x = 0; x < nx; x += 2) {
      dst[x] = src[x] * s;
      dst[x + 1] = src[x + 1] * -s;
    }
  }
}

torch::Tensor fftw_centred(const torch::Tensor& x, int sign) {
  AMBIENT_CHECK(x.dim() >= 2, "FFT input: expected a tensor [..., ny, nx], got ", x.dim(), " dimensions");
  AMBIENT_CHECK(x.scalar_type() == torch::kComplexFloat, "FFT input: expected complex64, got ", x.scalar_type());
  const int64_t ny = x.size(-2), nx = x.size(-1);
  const int64_t plane = ny * nx;
  if (x.numel() == 0) return x.clone();
  const int64_t batch = x.numel() / plane;
  AMBIENT_CHECK(batch <= INT32_MAX && plane <= INT32_MAX, "FFT input: too large for FFTW's int sizes, got ",
                shape_string(x.sizes().vec()));
  const bool even = ny % 2 == 0 && nx % 2 == 0;
  const float scale = static_cast<float>(1.0 / std::sqrt(static_cast<double>(plane)));
  torch::Tensor in = x.contiguous();
  torch::Tensor out = torch::empty_like(in, torch::MemoryFormat::Contiguous);
  auto* src = reinterpret_cast<const std::complex<float>*>(in.data_ptr());
  auto* buf = reinterpret_cast<std::complex<float>*>(out.data_ptr());
  auto plan = plan_for(static_cast<int>(batch), static_cast<int>(ny), static_cast<int>(nx), sign);
  // torch allocations are 64-byte aligned, as FFTW's planning buffer is; anything else is an allocator surprise.
  AMBIENT_CHECK(plan->can_run_on(buf), "FFT: output buffer alignment differs from the FFTW plan's");

  if (even) {
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) modulate(src + b * plane, buf + b * plane, ny, nx, 1.0f);
    });
    plan->execute(buf);
    const float post = ((ny / 2 + nx / 2) % 2 == 0) ? scale : -scale;
    at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) modulate(buf + b * plane, buf + b * plane, ny, nx, post);
    });
    return out;
  }
  // Odd sizes: explicit circular shifts. ifftshift: out[i] = in[(i + n/2) % n]; fftshift: in[(i + (n+1)/2) % n].
  torch::Tensor work = torch::empty_like(out);
  auto* tmp = reinterpret_cast<std::complex<float>*>(work.data_ptr());
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b) shifted_copy(src + b * plane, buf + b * plane, ny, nx, ny / 2, nx / 2, 1.0f);
  });
  plan->execute(buf);
  at::parallel_for(0, batch, 1, [&](int64_t b0, int64_t b1) {
    for (int64_t b = b0; b < b1; ++b)
      shifted_copy(buf + b * plane, tmp + b * plane, ny, nx, (ny + 1) / 2, (nx + 1) / 2, scale);
  });
  return work;
}

}  // namespace

void set_fft_threads(int threads) {
  std::lock_guard<std::mutex> lock(planner_mutex());
  fft_threads() = threads;
}

torch::Tensor fft2c(const torch::Tensor& x) {
  if (!x.device().is_cpu()) return fft2c_torch(x);
  return fftw_centred(x, FFTW_FORWARD);
}

torch::Tensor ifft2c(const torch::Tensor& x) {
  if (!x.device().is_cpu()) return ifft2c_torch(x);
  return fftw_centred(x, FFTW_BACKWARD);
}
#else
void set_fft_threads(int) {}
torch::Tensor fft2c(const torch::Tensor& x) { return fft2c_torch(x); }
torch::Tensor ifft2c(const torch::Tensor& x) { return ifft2c_torch(x); }
#endif

torch::Tensor fft2c_torch(const torch::Tensor& x) {
  const std::vector<int64_t> dims = {-2, -1};
  return torch::fft::fftshift(torch::fft::fft2(torch::fft::ifftshift(x, dims), c10::nullopt, dims, "ortho"), dims);
}

torch::Tensor ifft2c_torch(const torch::Tensor& x) {
  const std::vector<int64_t> dims = {-2, -1};
  return torch::fft::fftshift(torch::fft::ifft2(torch::fft::ifftshift(x, dims), c10::nullopt, dims, "ortho"), dims);
}

torch::Tensor fft1c(const torch::Tensor& x, int64_t dim) {
  return torch::fft::fftshift(torch::fft::fft(torch::fft::ifftshift(x, dim), c10::nullopt, dim, "ortho"), dim);
}

torch::Tensor ifft1c(const torch::Tensor& x, int64_t dim) {
  return torch::fft::fftshift(torch::fft::ifft(torch::fft::ifftshift(x, dim), c10::nullopt, dim, "ortho"), dim);
}

}  // namespace ambient::mri
