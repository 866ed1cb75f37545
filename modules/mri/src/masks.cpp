// Sampling patterns. The fastMRI-compatible masks reproduce numpy's legacy RandomState draws so that a given
// seed gives the same mask as fastMRI's subsample.py.
#include "ambient/mri/masks.hpp"

#include <algorithm>
#include <cfenv>
#include <cmath>
#include <numeric>
#include <vector>

#include "ambient/core/error.hpp"

namespace ambient::mri {
namespace {

/// The subset of numpy.random.RandomState(seed) that fastMRI's masks use. RandomState seeds MT19937 with
/// init_genrand(seed) for 32-bit integer seeds, the same as std::mt19937(seed).
class NumpyRandomState {
 public:
  explicit NumpyRandomState(uint32_t seed) : mt_(seed) {}
  /// random_sample(): 53-bit double from two 32-bit draws.
  double random_sample() {
    const uint32_t a = mt_() >> 5, b = mt_() >> 6;
    return (a * 67108864.0 + b) / 9007199254740992.0;
  }
  /// randint(low, high): [low, high), masked rejection sampling as in numpy's legacy bounded integers.
  int64_t randint(int64_t low, int64_t high) {
    const uint64_t range = static_cast<uint64_t>(high - low - 1);
    if (range == 0) return low;
    uint64_t mask = range;
    for (int shift = 1; shift < 64; shift <<= 1) mask |= mask >> shift;
    uint64_t value;
    do {
      value = mt_() & mask;
    } while (value > range);
    return low + static_cast<int64_t>(value);
  }

 private:
  std::mt19937 mt_;
};

/// Python's round() and numpy's around(): halves to even.
int64_t round_half_even(double v) {
  const int old = std::fegetround();
  std::fesetround(FE_TONEAREST);
  const double r = std::nearbyint(v);
  std::fesetround(old);
  return static_cast<int64_t>(r);
}

void check_mask_args(int64_t n, double center_fraction, double acceleration) {
  AMBIENT_CHECK(n > 0, "mask: expected a positive number of lines, got ", n);
  AMBIENT_CHECK(center_fraction >= 0 && center_fraction <= 1, "mask: expected a centre fraction in [0, 1], got ",
                center_fraction);
  AMBIENT_CHECK(acceleration >= 1, "mask: expected an acceleration >= 1, got ", acceleration);
  AMBIENT_CHECK(center_fraction * acceleration <= 1.0 + 1e-9, "mask: centre fraction ", center_fraction,
                " already samples more than 1/", acceleration, " of k-space; lower it or the acceleration");
}

// The fully sampled centre: pad = (n - n_low + 1) // 2, lines [pad, pad + n_low).
std::vector<bool> centre_lines(int64_t n, int64_t n_low) {
  std::vector<bool> m(n, false);
  const int64_t pad = (n - n_low + 1) / 2;
  for (int64_t i = pad; i < pad + n_low; ++i) m[i] = true;
  return m;
}

torch::Tensor to_tensor(const std::vector<bool>& m) {
  auto t = torch::zeros({static_cast<int64_t>(m.size())}, torch::kBool);
  auto a = t.accessor<bool, 1>();
  for (size_t i = 0; i < m.size(); ++i) a[i] = m[i];
  return t;
}

}  // namespace

int64_t num_low_frequencies(int64_t n, double center_fraction) { return round_half_even(n * center_fraction); }

torch::Tensor random_mask_1d(int64_t n, double center_fraction, double acceleration, uint32_t seed) {
  check_mask_args(n, center_fraction, acceleration);
  NumpyRandomState rng(seed);
  const int64_t n_low = num_low_frequencies(n, center_fraction);
  auto m = centre_lines(n, n_low);
  const double prob = (n / acceleration - n_low) / static_cast<double>(n - n_low);
  for (int64_t i = 0; i < n; ++i)
    if (rng.random_sample() < prob) m[i] = true;
  return to_tensor(m);
}

torch::Tensor further_line_mask(int64_t n, double acceleration, uint32_t seed) {
  return random_mask_1d(n, std::min(0.08, 0.5 / acceleration), acceleration, seed);
}

torch::Tensor equispaced_mask_1d(int64_t n, double center_fraction, int64_t acceleration, uint32_t seed) {
  check_mask_args(n, center_fraction, static_cast<double>(acceleration));
  NumpyRandomState rng(seed);
  const int64_t n_low = num_low_frequencies(n, center_fraction);
  auto m = centre_lines(n, n_low);
  const int64_t offset = rng.randint(0, acceleration);
  for (int64_t i = offset; i < n; i += acceleration) m[i] = true;
  return to_tensor(m);
}

torch::Tensor equispaced_fraction_mask_1d(int64_t n, double center_fraction, double acceleration, uint32_t seed) {
  check_mask_args(n, center_fraction, acceleration);
  NumpyRandomState rng(seed);
  const int64_t n_low = num_low_frequencies(n, center_fraction);
  auto m = centre_lines(n, n_low);
  const double adjusted = (acceleration * (n_low - n)) / (n_low * acceleration - n);
  AMBIENT_CHECK(std::isfinite(adjusted) && adjusted >= 1, "equispaced-fraction mask: centre of ", n_low,
                " lines leaves no room for acceleration ", acceleration);
  const int64_t offset = rng.randint(0, round_half_even(adjusted));
  // np.arange(offset, n - 1, adjusted): offset + k * adjusted < n - 1
  for (int64_t k = 0;; ++k) {
    const double pos = offset + k * adjusted;
    if (!(pos < static_cast<double>(n - 1))) break;
    const int64_t i = round_half_even(pos);
    if (i >= 0 && i < n) m[i] = true;
  }
  return to_tensor(m);
}

torch::Tensor poisson_disc_2d(int64_t ny, int64_t nx, const PoissonDiscConfig& c, uint32_t seed) {
  AMBIENT_CHECK(ny > 0 && nx > 0, "poisson disc: expected a positive matrix, got ", ny, " x ", nx);
  AMBIENT_CHECK(c.acceleration >= 1, "poisson disc: expected acceleration >= 1, got ", c.acceleration);
  AMBIENT_CHECK(c.calib >= 0 && c.calib <= std::min(ny, nx), "poisson disc: calibration size ", c.calib,
                " does not fit a ", ny, " x ", nx, " matrix");
  AMBIENT_CHECK(static_cast<double>(c.calib * c.calib) <= ny * nx / c.acceleration + 1e-9,
                "poisson disc: calibration square ", c.calib, "^2 already exceeds 1/", c.acceleration,
                " of k-space; lower --calib or the acceleration");
  // Random-order dart throwing over the grid: each point is kept when no kept point lies within the local
  // radius, which yields a maximal Poisson-disc set. The same point order is used for every radius tried.
  std::vector<int64_t> order(ny * nx);
  std::iota(order.begin(), order.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(order.begin(), order.end(), rng);
  const double cy = ny / 2, cx = nx / 2;
  const double r_max = std::sqrt(cy * cy + cx * cx);
  const int64_t target = static_cast<int64_t>(std::llround(ny * nx / c.acceleration));
  const int64_t y_lo = ny / 2 - c.calib / 2, x_lo = nx / 2 - c.calib / 2;  // calib x calib square at the centre
  auto in_calib = [&](int64_t y, int64_t x) {
    return y >= y_lo && y < y_lo + c.calib && x >= x_lo && x < x_lo + c.calib;
  };
  auto draw = [&](double r0, std::vector<uint8_t>& m) {
    m.assign(ny * nx, 0);
    int64_t count = 0;
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x)
        if (in_calib(y, x)) m[y * nx + x] = 1, ++count;
    for (int64_t p : order) {
      const int64_t y = p / nx, x = p % nx;
      if (m[p]) continue;
      const double d = std::hypot(y - cy, x - cx) / r_max;
      const double r = r0 * (1 + c.density_power * d);
      const int64_t w = static_cast<int64_t>(std::ceil(r));
      bool free = true;
      for (int64_t yy = std::max<int64_t>(0, y - w); free && yy <= std::min(ny - 1, y + w); ++yy)
        for (int64_t xx = std::max<int64_t>(0, x - w); xx <= std::min(nx - 1, x + w); ++xx)
          if (m[yy * nx + xx] && !in_calib(yy, xx) && std::hypot(yy - y, xx - x) < r) {
            free = false;
            break;
          }
      if (free) m[p] = 1, ++count;
    }
    return count;
  };
  std::vector<uint8_t> m;
  double lo = 0.5, hi = std::max(ny, nx);
  for (int it = 0; it < 40; ++it) {
    const double mid = 0.5 * (lo + hi);
    if (draw(mid, m) > target) lo = mid;
    else hi = mid;
  }
  draw(hi, m);
  auto t = torch::zeros({ny, nx}, torch::kBool);
  auto a = t.accessor<bool, 2>();
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) a[y][x] = m[y * nx + x] != 0;
  return t;
}

torch::Tensor random_blocks(int64_t ny, int64_t nx, int64_t count, int64_t min_size, int64_t max_size,
                            uint32_t seed) {
  AMBIENT_CHECK(ny > 0 && nx > 0, "block mask: expected a positive matrix, got ", ny, " x ", nx);
  AMBIENT_CHECK(count >= 0, "block mask: expected a non-negative block count, got ", count);
  AMBIENT_CHECK(min_size >= 1 && min_size <= max_size && max_size <= std::min(ny, nx),
                "block mask: expected 1 <= min size <= max size <= ", std::min(ny, nx), ", got ", min_size, " and ",
                max_size);
  auto t = torch::ones({ny, nx}, torch::kBool);
  auto a = t.accessor<bool, 2>();
  std::mt19937_64 rng(seed);
  std::uniform_int_distribution<int64_t> size(min_size, max_size);
  for (int64_t b = 0; b < count; ++b) {
    // Boxes may hang over the edge (clipped): every pixel is then covered with the same probability. Boxes kept
    // inside the image cover the centre far more often than the border: 82 boxes of 16-40 at 128 x 128 leave a
    // centre pixel visible in 0.1% of masks and a corner pixel in nearly all.
    const int64_t h = size(rng), w = size(rng);
    const int64_t y0 = std::uniform_int_distribution<int64_t>(1 - h, ny - 1)(rng);
    const int64_t x0 = std::uniform_int_distribution<int64_t>(1 - w, nx - 1)(rng);
    for (int64_t y = std::max<int64_t>(0, y0); y < std::min(ny, y0 + h); ++y)
      for (int64_t x = std::max<int64_t>(0, x0); x < std::min(nx, x0 + w); ++x) a[y][x] = false;
  }
  return t;
}

torch::Tensor random_pixels(int64_t ny, int64_t nx, double erase_probability, uint32_t seed) {
  AMBIENT_CHECK(erase_probability >= 0 && erase_probability <= 1,
                "pixel mask: expected an erase probability in [0, 1], got ", erase_probability);
  auto t = torch::zeros({ny, nx}, torch::kBool);
  auto a = t.accessor<bool, 2>();
  std::mt19937_64 rng(seed);
  std::bernoulli_distribution keep(1.0 - erase_probability);
  for (int64_t y = 0; y < ny; ++y)
    for (int64_t x = 0; x < nx; ++x) a[y][x] = keep(rng);
  return t;
}

double further_drop_fraction(const torch::Tensor& mask, const torch::Tensor& calib, double further_accel) {
  AMBIENT_CHECK(mask.dim() == 1 && calib.sizes() == mask.sizes(), "further acceleration: expected line masks [n]");
  const double n = static_cast<double>(mask.numel()), sampled = mask.to(torch::kDouble).sum().item<double>();
  const double calibration = (calib.to(torch::kBool) & mask.to(torch::kBool)).sum().item<double>();
  AMBIENT_CHECK(sampled > 0 && further_accel > n / sampled, "further acceleration ", further_accel,
                ": expected more than the data's own acceleration ", n / std::max(1.0, sampled));
  return std::clamp((sampled - n / further_accel) / std::max(1.0, sampled - calibration), 0.0, 0.95);
}

torch::Tensor further_subsample(const torch::Tensor& mask, const torch::Tensor& calib, double drop_fraction,
                                std::mt19937_64& rng) {
  AMBIENT_CHECK(mask.dim() == 1, "further subsample: expected a 1-D line mask, got ",
                shape_string(mask.sizes().vec()));
  AMBIENT_CHECK(calib.sizes() == mask.sizes(), "further subsample: expected a calibration mask of shape ",
                shape_string(mask.sizes().vec()), ", got ", shape_string(calib.sizes().vec()));
  AMBIENT_CHECK(drop_fraction >= 0 && drop_fraction < 1, "further subsample: expected a drop fraction in [0, 1), got ",
                drop_fraction);
  auto m = mask.to(torch::kBool).contiguous();
  auto k = calib.to(torch::kBool).contiguous();
  auto out = m.clone();
  auto am = m.accessor<bool, 1>();
  auto ak = k.accessor<bool, 1>();
  auto ao = out.accessor<bool, 1>();
  std::bernoulli_distribution drop(drop_fraction);
  std::vector<int64_t> dropped;
  int64_t kept_outside = 0, outside = 0;
  for (int64_t i = 0; i < m.size(0); ++i) {
    if (!am[i] || ak[i]) continue;
    ++outside;
    if (drop(rng)) {
      ao[i] = false;
      dropped.push_back(i);
    } else {
      ++kept_outside;
    }
  }
  if (outside > 0 && kept_outside == 0) {  // keep one line so Ã still sees some high frequencies
    const int64_t i = dropped[std::uniform_int_distribution<size_t>(0, dropped.size() - 1)(rng)];
    ao[i] = true;
  }
  return out;
}

torch::Tensor central_run(const torch::Tensor& mask) {
  AMBIENT_CHECK(mask.dim() == 1, "calibration region: expected a 1-D line mask, got ",
                shape_string(mask.sizes().vec()));
  auto m = mask.to(torch::kBool).contiguous();
  auto a = m.accessor<bool, 1>();
  const int64_t n = m.size(0);
  auto out = torch::zeros_like(m);
  int64_t c = n / 2;
  if (!a[c]) {  // nearest sampled line to the centre
    int64_t best = -1;
    for (int64_t d = 1; d < n && best < 0; ++d) {
      if (c - d >= 0 && a[c - d]) best = c - d;
      else if (c + d < n && a[c + d]) best = c + d;
    }
    if (best < 0) return out;
    c = best;
  }
  int64_t lo = c, hi = c;
  while (lo > 0 && a[lo - 1]) --lo;
  while (hi < n - 1 && a[hi + 1]) ++hi;
  out.slice(0, lo, hi + 1).fill_(true);
  return out;
}

double acceleration_of(const torch::Tensor& mask) {
  const double sampled = mask.to(torch::kFloat).sum().item<double>();
  AMBIENT_CHECK(sampled > 0, "acceleration: the mask samples nothing");
  return static_cast<double>(mask.numel()) / sampled;
}

}  // namespace ambient::mri
