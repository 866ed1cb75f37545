// Scan helpers: validation, geometry defaults, noise prewhitening and readout-oversampling removal.
#include "ambient/mri/scan.hpp"

#include <cmath>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"

#include <torch/linalg.h>

namespace ambient::mri {

Vec3 Geometry::voxel_size(int64_t ny, int64_t nx) const {
  double dz = fov_mm[2];
  if (slices.size() > 1) {
    const auto& a = slices[0];
    const auto& b = slices[1];
    double d = 0;
    for (int i = 0; i < 3; ++i) d += (b.position[i] - a.position[i]) * a.slice_dir[i];
    if (std::abs(d) > 1e-6) dz = std::abs(d);
  }
  return {fov_mm[0] / static_cast<double>(nx), fov_mm[1] / static_cast<double>(ny), dz};
}

torch::Tensor Scan::kspace_mask() const {
  return mask.to(torch::kFloat).reshape({slices(), 1, ny(), 1});
}

torch::Tensor Scan::calibration_lines() const {
  AMBIENT_CHECK(mask.defined() && calib.defined() && mask.sizes() == calib.sizes() && mask.dim() == 2,
                "scan ", source, ": expected line and calibration masks [slice, ky] of one shape");
  auto out = calib.to(torch::kBool).clone().contiguous();
  const auto sampled = (mask.to(torch::kBool) | out).contiguous();
  auto o = out.accessor<bool, 2>();
  auto a = sampled.accessor<bool, 2>();
  const int64_t n = out.size(1);
  for (int64_t s = 0; s < out.size(0); ++s) {
    int64_t lo = 0, hi = n - 1;
    while (lo < n && !o[s][lo]) ++lo;
    while (hi >= 0 && !o[s][hi]) --hi;
    if (lo > hi) continue;  // no ACS lines: nothing to widen (ESPIRiT says so)
    bool one_run = true;
    for (int64_t k = lo; k <= hi; ++k) one_run = one_run && a[s][k];
    if (!one_run) continue;  // gaps among the ACS lines: leave them as flagged
    while (lo > 0 && a[s][lo - 1]) --lo;
    while (hi < n - 1 && a[s][hi + 1]) ++hi;
    for (int64_t k = lo; k <= hi; ++k) o[s][k] = true;
  }
  return out;
}

double Scan::acceleration() const {
  const double sampled = mask.to(torch::kFloat).sum().item<double>();
  AMBIENT_CHECK(sampled > 0, "scan ", source, ": no sampled lines");
  return static_cast<double>(mask.numel()) / sampled;
}

void validate(const Scan& s, const std::string& what) {
  AMBIENT_CHECK(s.ksp.defined() && s.ksp.dim() == 4, what, ": expected k-space [slice, coil, ky, kx], got ",
                s.ksp.defined() ? shape_string(s.ksp.sizes().vec()) : std::string("none"));
  AMBIENT_CHECK(s.ksp.scalar_type() == torch::kComplexFloat, what, ": expected complex64 k-space, got ",
                s.ksp.scalar_type());
  AMBIENT_CHECK(s.ksp.numel() > 0, what, ": k-space is empty (", shape_string(s.ksp.sizes().vec()), ")");
  const std::vector<int64_t> line_shape = {s.slices(), s.ny()};
  AMBIENT_CHECK(s.mask.defined() && s.mask.sizes().vec() == line_shape, what, ": expected a mask of shape ",
                shape_string(line_shape), ", got ",
                s.mask.defined() ? shape_string(s.mask.sizes().vec()) : std::string("none"));
  AMBIENT_CHECK(s.calib.defined() && s.calib.sizes().vec() == line_shape, what,
                ": expected a calibration mask of shape ", shape_string(line_shape), ", got ",
                s.calib.defined() ? shape_string(s.calib.sizes().vec()) : std::string("none"));
  if (s.calib_ksp.defined())
    AMBIENT_CHECK(s.calib_ksp.sizes() == s.ksp.sizes(), what, ": calibration k-space ",
                  shape_string(s.calib_ksp.sizes().vec()), " differs from k-space ", shape_string(s.ksp.sizes().vec()));
  AMBIENT_CHECK(torch::isfinite(torch::view_as_real(s.ksp)).all().item<bool>(), what,
                ": k-space holds NaN or infinite values; the file is damaged");
  AMBIENT_CHECK(s.mask.any().item<bool>(), what, ": no phase-encode line is sampled");
  const auto blank = (s.ksp.abs().amax({1, 2, 3}) == 0).nonzero();
  AMBIENT_CHECK(blank.numel() == 0, what, ": the k-space of ", blank.numel(), " slice(s) is all zeros (first: slice ",
                blank.numel() ? blank[0][0].item<int64_t>() : 0, "); the file holds no measurement there");
  AMBIENT_CHECK(static_cast<int64_t>(s.geometry.slices.size()) == s.slices(), what, ": geometry has ",
                s.geometry.slices.size(), " slices, k-space has ", s.slices());
}

Geometry default_geometry(int64_t slices, const Vec3& fov_mm) {
  Geometry g;
  g.fov_mm = fov_mm;
  for (int64_t s = 0; s < slices; ++s) {
    SliceGeometry sg;
    sg.position = {0, 0, (static_cast<double>(s) - 0.5 * static_cast<double>(slices - 1)) * fov_mm[2]};
    g.slices.push_back(sg);
  }
  return g;
}

torch::Tensor whitening_matrix(const torch::Tensor& noise, double variance_scale) {
  AMBIENT_CHECK(noise.dim() == 2 && noise.size(1) > noise.size(0), "noise scan: expected [coil, samples] with more "
                "samples than coils, got ", shape_string(noise.sizes().vec()));
  AMBIENT_CHECK(variance_scale > 0 && std::isfinite(variance_scale), "noise scan: expected a positive variance "
                "scale, got ", variance_scale);
  auto n = noise.to(torch::kComplexDouble);
  n = n - n.mean(1, true);
  auto psi = n.matmul(n.conj().transpose(0, 1)) / static_cast<double>(n.size(1) - 1) * variance_scale;
  torch::Tensor l;
  try {
    l = torch::linalg::cholesky(psi);
  } catch (const c10::Error&) {
    fail("noise scan: the coil noise covariance is not positive definite (a dead or duplicated channel?)");
  }
  auto eye = torch::eye(psi.size(0), psi.options());
  return torch::linalg::solve_triangular(l, eye, /*upper=*/false, /*left=*/true, /*unitriangular=*/false)
      .to(torch::kComplexFloat);
}

torch::Tensor apply_coil_matrix(const torch::Tensor& w, const torch::Tensor& ksp) {
  // ksp: [slice, coil, ky, kx]; out[s, c] = sum_d w[c, d] ksp[s, d]
  AMBIENT_CHECK(ksp.dim() == 4 && w.dim() == 2 && w.size(1) == ksp.size(1), "coil matrix: expected [",
                ksp.size(1), ", ", ksp.size(1), "] for k-space ", shape_string(ksp.sizes().vec()), ", got ",
                shape_string(w.sizes().vec()));
  const auto s = ksp.size(0), c = ksp.size(1);
  auto flat = ksp.reshape({s, c, -1});
  return w.matmul(flat).reshape({s, w.size(0), ksp.size(2), ksp.size(3)});
}

torch::Tensor crop_readout(const torch::Tensor& ksp, int64_t nx_out) {
  const int64_t nx = ksp.size(-1);
  AMBIENT_CHECK(nx_out > 0 && nx_out <= nx, "readout crop: expected 0 < recon size <= encoded size ", nx, ", got ",
                nx_out);
  if (nx_out == nx) return ksp;
  auto hybrid = ifft1c(ksp, -1);
  const int64_t start = nx / 2 - nx_out / 2;  // keeps index nx/2 (the centre) at nx_out/2
  return fft1c(hybrid.narrow(-1, start, nx_out).contiguous(), -1);
}

double noise_variance(const Scan& scan, double requested) {
  if (requested > 0) return requested;
  if (scan.prewhitened) return 1.0;
  const int64_t nx = scan.nx(), edge = std::max<int64_t>(2, nx / 20);
  auto sampled = scan.ksp * scan.kspace_mask();
  auto outer = torch::cat({sampled.narrow(3, 0, edge), sampled.narrow(3, nx - edge, edge)}, 3);
  const double lines = scan.mask.sum().item<double>() * scan.coils() * 2 * edge;
  return outer.abs().square().sum().item<double>() / std::max(1.0, lines);
}

Scan select_slices(const Scan& scan, const std::vector<int64_t>& which) {
  for (const auto s : which)
    AMBIENT_CHECK(s >= 0 && s < scan.slices(), "select slices: slice ", s, " outside a scan of ", scan.slices());
  const auto idx = torch::tensor(which, torch::kLong);
  Scan sub = scan;
  sub.ksp = scan.ksp.index_select(0, idx);
  sub.mask = scan.mask.index_select(0, idx);
  sub.calib = scan.calib.index_select(0, idx);
  if (scan.calib_ksp.defined()) sub.calib_ksp = scan.calib_ksp.index_select(0, idx);
  sub.geometry.slices.clear();
  for (const auto s : which) sub.geometry.slices.push_back(scan.geometry.slices.at(s));
  return sub;
}

}  // namespace ambient::mri
