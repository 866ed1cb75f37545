// NMSE, PSNR and SSIM exactly as fastMRI computes them, in double precision.
#include "ambient/mri/metrics.hpp"

#include <torch/linalg.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "ambient/core/error.hpp"

namespace ambient::mri {
namespace {

torch::Tensor as_volume(const torch::Tensor& t, const char* what) {
  AMBIENT_CHECK(t.defined() && (t.dim() == 2 || t.dim() == 3), "metrics: expected ", what,
                " [slice, h, w] or [h, w], got ", t.defined() ? shape_string(t.sizes().vec()) : std::string("none"));
  auto v = (t.is_complex() ? t.abs() : t).to(torch::kDouble);
  return t.dim() == 2 ? v.unsqueeze(0) : v;
}

void check_pair(const torch::Tensor& gt, const torch::Tensor& x) {
  AMBIENT_CHECK(gt.sizes() == x.sizes(), "metrics: reference ", shape_string(gt.sizes().vec()),
                " and reconstruction ", shape_string(x.sizes().vec()), " differ in shape");
}

}  // namespace

double nmse(const torch::Tensor& gt_in, const torch::Tensor& x_in) {
  auto gt = as_volume(gt_in, "reference"), x = as_volume(x_in, "reconstruction");
  check_pair(gt, x);
  const double den = gt.square().sum().item<double>();
  AMBIENT_CHECK(den > 0, "metrics: the reference is all zeros; NMSE is undefined");
  return (gt - x).square().sum().item<double>() / den;
}

double psnr(const torch::Tensor& gt_in, const torch::Tensor& x_in) {
  auto gt = as_volume(gt_in, "reference"), x = as_volume(x_in, "reconstruction");
  check_pair(gt, x);
  const double range = gt.max().item<double>();
  const double mse = (gt - x).square().mean().item<double>();
  if (mse == 0) return INFINITY;
  return 10.0 * std::log10(range * range / mse);
}

double ssim(const torch::Tensor& gt_in, const torch::Tensor& x_in) {
  auto gt = as_volume(gt_in, "reference"), x = as_volume(x_in, "reconstruction");
  check_pair(gt, x);
  constexpr int64_t win = 7;
  AMBIENT_CHECK(gt.size(1) >= win && gt.size(2) >= win, "metrics: SSIM needs images of at least 7x7, got ",
                gt.size(1), "x", gt.size(2));
  const double range = gt.max().item<double>();
  const double c1 = std::pow(0.01 * range, 2), c2 = std::pow(0.03 * range, 2);
  const double np = win * win, cov_norm = np / (np - 1);
  // Valid 7x7 box means: exactly the interior that skimage keeps after cropping (win-1)/2 on each side.
  auto mean = [&](const torch::Tensor& t) { return t.unfold(1, win, 1).unfold(2, win, 1).mean({-1, -2}); };
  auto ux = mean(gt), uy = mean(x);
  auto vx = cov_norm * (mean(gt * gt) - ux * ux);
  auto vy = cov_norm * (mean(x * x) - uy * uy);
  auto vxy = cov_norm * (mean(gt * x) - ux * uy);
  auto s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2));
  return s.mean({1, 2}).mean().item<double>();
}

Metrics evaluate(const torch::Tensor& gt, const torch::Tensor& x) { return {nmse(gt, x), psnr(gt, x), ssim(gt, x)}; }

namespace {

torch::Tensor feature_rows(const torch::Tensor& t, const char* what) {
  AMBIENT_CHECK(t.dim() == 2 && t.size(0) >= 1 && !t.is_complex(), what, ": expected real features [n, d], got ",
                shape_string(t.sizes().vec()));
  auto f = t.to(torch::kDouble);
  AMBIENT_CHECK(torch::isfinite(f).all().item<bool>(), what, ": the features hold NaN or infinite values");
  return f;
}

void check_widths(const torch::Tensor& a, const torch::Tensor& b, const char* what) {
  AMBIENT_CHECK(a.size(1) == b.size(1), what, ": the feature sets differ in width (", a.size(1), " and ", b.size(1),
                "); compute both with one feature network");
}

// The pairs (i, j) that leaving each image out excludes: row i of `a` is image i of `b`'s blocks of `period` rows.
torch::Tensor left_out(const torch::Tensor& a, const torch::Tensor& b, int64_t period) {
  AMBIENT_CHECK(a.size(0) == period && b.size(0) % period == 0 && b.size(0) >= 2, "nearest: leaving each image "
                "out needs the ", period, " images as the first rows of blocks of ", period, " in the other set, got ",
                a.size(0), " and ", b.size(0), " rows");
  return torch::arange(b.size(0)).remainder(period).unsqueeze(0) == torch::arange(a.size(0)).unsqueeze(1);
}

// The principal square root of a symmetric positive semi-definite matrix (eigenvalues clamped at 0).
torch::Tensor psd_sqrt(const torch::Tensor& m) {
  auto [values, vectors] = torch::linalg::eigh((m + m.t()) / 2, "L");
  return vectors.matmul(torch::diag(values.clamp_min(0).sqrt())).matmul(vectors.t());
}

torch::Tensor covariance(const torch::Tensor& f) {
  auto c = f - f.mean(0, true);
  return c.t().matmul(c) / std::max<int64_t>(1, f.size(0) - 1);
}

}  // namespace

NearestNeighbours nearest_cosine(const torch::Tensor& a_in, const torch::Tensor& b_in, const torch::Tensor& origin,
                                 int64_t leave_out) {
  auto a = feature_rows(a_in, "nearest"), b = feature_rows(b_in, "nearest");
  check_widths(a, b, "nearest");
  if (origin.defined()) {
    AMBIENT_CHECK(origin.numel() == a.size(1), "nearest: the origin has ", origin.numel(), " values for features of ",
                  a.size(1));
    auto o = origin.to(torch::kDouble).reshape({1, -1});
    a = a - o;
    b = b - o;
  }
  auto unit = [](const torch::Tensor& t) { return t / t.norm(2, 1, true).clamp_min(1e-12); };
  auto similarity = unit(a).matmul(unit(b).t());  // [n, m]
  if (leave_out > 0) similarity = similarity.masked_fill(left_out(a, b, leave_out), -2);  // below any cosine
  auto best = similarity.max(1);  // each row's best
  return {std::get<0>(best), std::get<1>(best)};
}

NearestDistances nearest_euclidean(const torch::Tensor& a_in, const torch::Tensor& b_in, int64_t leave_out) {
  auto a = feature_rows(a_in, "nearest"), b = feature_rows(b_in, "nearest");
  check_widths(a, b, "nearest");
  auto distance = torch::cdist(a, b);  // [n, m]
  if (leave_out > 0)
    distance = distance.masked_fill(left_out(a, b, leave_out), std::numeric_limits<double>::infinity());
  auto best = distance.min(1);
  return {std::get<0>(best), std::get<1>(best)};
}

NearestNeighbours nearest_neighbours(const torch::Tensor& samples, const torch::Tensor& training, int64_t leave_out) {
  auto a = as_volume(samples, "samples"), b = as_volume(training, "training images");
  AMBIENT_CHECK(a.size(1) == b.size(1) && a.size(2) == b.size(2), "memorisation: samples are ", a.size(1), "x",
                a.size(2), ", training images ", b.size(1), "x", b.size(2), "; compare images of one size");
  auto centred = [](torch::Tensor t) {  // NCC is the cosine of the mean-free images
    t = t.flatten(1);
    return t - t.mean(1, true);
  };
  return nearest_cosine(centred(a), centred(b), {}, leave_out);
}

double frechet_distance(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  auto a = feature_rows(a_in, "Fréchet distance"), b = feature_rows(b_in, "Fréchet distance");
  check_widths(a, b, "Fréchet distance");
  AMBIENT_CHECK(a.size(0) >= 2 && b.size(0) >= 2, "Fréchet distance: expected at least 2 rows per set, got ",
                a.size(0), " and ", b.size(0));
  auto ca = covariance(a), cb = covariance(b);
  auto ra = psd_sqrt(ca);
  auto cross = torch::linalg::eigvalsh(ra.matmul(cb).matmul(ra), "L").clamp_min(0).sqrt().sum();
  auto mean_term = (a.mean(0) - b.mean(0)).square().sum();
  return (mean_term + ca.trace() + cb.trace() - 2 * cross).item<double>();
}

double kernel_distance(const torch::Tensor& a_in, const torch::Tensor& b_in) {
  auto a = feature_rows(a_in, "kernel distance"), b = feature_rows(b_in, "kernel distance");
  check_widths(a, b, "kernel distance");
  const int64_t n = a.size(0), m = b.size(0);
  AMBIENT_CHECK(n >= 2 && m >= 2, "kernel distance: expected at least 2 rows per set, got ", n, " and ", m);
  const double d = static_cast<double>(a.size(1));
  auto k = [&](const torch::Tensor& x, const torch::Tensor& y) { return (x.matmul(y.t()) / d + 1).pow(3); };
  auto kaa = k(a, a), kbb = k(b, b);
  const double within_a = (kaa.sum() - kaa.diagonal().sum()).item<double>() / (n * (n - 1.0));
  const double within_b = (kbb.sum() - kbb.diagonal().sum()).item<double>() / (m * (m - 1.0));
  return within_a + within_b - 2 * k(a, b).mean().item<double>();
}

namespace {
// Each row's distance to its k-th nearest other row of the same set.
torch::Tensor kth_neighbour_radius(const torch::Tensor& x, int64_t k) {
  auto d = torch::cdist(x, x);
  // The row itself is at distance 0 and is the smallest; the k-th other row is the (k + 1)-th smallest.
  return std::get<0>(d.topk(k + 1, 1, /*largest=*/false, /*sorted=*/true)).select(1, k);
}
}  // namespace

Manifold manifold_measures(const torch::Tensor& real_in, const torch::Tensor& generated_in, int64_t k) {
  auto real = feature_rows(real_in, "manifold measures"), gen = feature_rows(generated_in, "manifold measures");
  check_widths(real, gen, "manifold measures");
  const int64_t m = real.size(0), n = gen.size(0);
  AMBIENT_CHECK(k >= 1 && k < m && k < n, "manifold measures: k = ", k, " needs more than k real and generated rows, "
                "got ", m, " and ", n);
  const auto real_radius = kth_neighbour_radius(real, k), gen_radius = kth_neighbour_radius(gen, k);
  const auto d = torch::cdist(gen, real);                  // [n, m]
  const auto in_real_ball = d <= real_radius.unsqueeze(0);  // generated row i inside real row j's ball
  const auto in_gen_ball = d <= gen_radius.unsqueeze(1);    // real row j inside generated row i's ball
  Manifold out;
  out.precision = in_real_ball.any(1).to(torch::kDouble).mean().item<double>();
  out.recall = in_gen_ball.any(0).to(torch::kDouble).mean().item<double>();
  out.density = in_real_ball.to(torch::kDouble).sum(1).mean().item<double>() / static_cast<double>(k);
  out.coverage = in_real_ball.any(0).to(torch::kDouble).mean().item<double>();
  return out;
}

RegionErrors region_errors(const torch::Tensor& gt_in, const torch::Tensor& x_in, double object_fraction) {
  auto gt = as_volume(gt_in, "reference"), x = as_volume(x_in, "reconstruction");
  check_pair(gt, x);
  AMBIENT_CHECK(object_fraction >= 0 && object_fraction < 1, "region errors: expected an object threshold in [0, 1), "
                "got ", object_fraction);
  const double range = gt.max().item<double>();
  AMBIENT_CHECK(range > 0, "region errors: the reference is all zeros; it has no object");
  auto inside = gt > object_fraction * range;
  auto sq = (x - gt).square();
  RegionErrors r;
  r.object_pixels = inside.sum().item<int64_t>();
  r.background_pixels = gt.numel() - r.object_pixels;
  const double obj_err = sq.masked_select(inside).sum().item<double>();
  const double bg_err = sq.sum().item<double>() - obj_err;
  r.object_nmse = obj_err / gt.masked_select(inside).square().sum().item<double>();
  r.object_psnr = obj_err == 0 ? INFINITY : 10.0 * std::log10(range * range * r.object_pixels / obj_err);
  r.background_share = obj_err + bg_err > 0 ? bg_err / (obj_err + bg_err) : 0.0;
  r.background_rms = r.background_pixels ? std::sqrt(std::max(bg_err, 0.0) / r.background_pixels) / range : 0.0;
  return r;
}

Calibration calibration(const torch::Tensor& gt_in, const torch::Tensor& x_in, const torch::Tensor& std_in,
                        double object_fraction) {
  auto gt = as_volume(gt_in, "reference"), x = as_volume(x_in, "reconstruction"), sd = as_volume(std_in, "std map");
  check_pair(gt, x);
  check_pair(gt, sd);
  AMBIENT_CHECK(object_fraction >= 0 && object_fraction < 1, "calibration: expected an object threshold in [0, 1), "
                "got ", object_fraction);
  AMBIENT_CHECK(torch::isfinite(sd).all().item<bool>() && (sd >= 0).all().item<bool>(),
                "calibration: the std map has negative or non-finite values");
  auto inside = gt > object_fraction * gt.max().item<double>();
  auto err = (x - gt).abs().masked_select(inside);
  auto s = sd.masked_select(inside);
  Calibration c;
  c.pixels = err.numel();
  AMBIENT_CHECK(c.pixels >= 10, "calibration: only ", c.pixels, " pixels inside the object (reference above ",
                object_fraction, " of its maximum); is the reference empty?");
  for (int k = 1; k <= 3; ++k) c.within[k - 1] = (err <= k * s).to(torch::kDouble).mean().item<double>();
  auto ec = err - err.mean(), sc = s - s.mean();
  const double den = std::sqrt(ec.square().sum().item<double>() * sc.square().sum().item<double>());
  c.correlation = den > 0 ? (ec * sc).sum().item<double>() / den : 0.0;
  // Pixels with std 0 need an infinite factor unless their error is 0 too (where() drops their err / 0).
  auto ratio = torch::where(s > 0, err / s, torch::where(err > 0, INFINITY, 0.0));
  c.scale_for_95 = 0.5 * ratio.quantile(0.95).item<double>();
  auto order = std::get<1>(s.sort());
  const int64_t bins = 10;
  c.reliability = torch::zeros({bins, 2}, torch::kDouble);
  for (int64_t b = 0; b < bins; ++b) {
    const int64_t lo = b * c.pixels / bins, hi = (b + 1) * c.pixels / bins;
    auto idx = order.narrow(0, lo, std::max<int64_t>(1, hi - lo));
    c.reliability[b][0] = s.index_select(0, idx).mean();
    c.reliability[b][1] = err.index_select(0, idx).square().mean().sqrt();
  }
  return c;
}

}  // namespace ambient::mri
