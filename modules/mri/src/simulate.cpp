// Simulation: resample slices, add smooth phase, multiply by Biot-Savart coil maps, FFT, add correlated complex
// Gaussian noise with a matching noise scan, and undersample with a fastMRI-style mask.
#include "ambient/mri/simulate.hpp"

#include <ATen/CPUGeneratorImpl.h>
#include <torch/linalg.h>

#include <cmath>
#include <random>

#include "ambient/core/error.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/phase.hpp"

namespace ambient::mri {
namespace {

struct Plane {
  int fixed_axis;  // index axis held constant: 2 (k) axial, 1 (j) coronal, 0 (i) sagittal
  int row_axis;    // index axis along image rows (ky)
  int col_axis;    // index axis along image columns (kx)
};

Plane plane_for(const std::string& orientation) {
  if (orientation == "axial") return {2, 1, 0};
  if (orientation == "coronal") return {1, 2, 0};
  if (orientation == "sagittal") return {0, 2, 1};
  fail("simulate: expected orientation axial|coronal|sagittal, got '", orientation, "'");
}

// Bilinear sample of a [rows, cols] plane at fractional indices, zero outside.
double bilinear(const torch::TensorAccessor<float, 2>& p, int64_t rows, int64_t cols, double r, double c) {
  const int64_t r0 = static_cast<int64_t>(std::floor(r)), c0 = static_cast<int64_t>(std::floor(c));
  const double fr = r - r0, fc = c - c0;
  double v = 0;
  for (int dr = 0; dr < 2; ++dr)
    for (int dc = 0; dc < 2; ++dc) {
      const int64_t rr = r0 + dr, cc = c0 + dc;
      if (rr < 0 || rr >= rows || cc < 0 || cc >= cols) continue;
      v += (dr ? fr : 1 - fr) * (dc ? fc : 1 - fc) * p[rr][cc];
    }
  return v;
}

torch::Tensor make_mask(const SimulateConfig& c, int64_t n, uint32_t seed) {
  if (c.mask == "random") return random_mask_1d(n, c.center_fraction, c.acceleration, seed);
  if (c.mask == "equispaced")
    return equispaced_mask_1d(n, c.center_fraction, static_cast<int64_t>(std::lround(c.acceleration)), seed);
  if (c.mask == "equispaced-fraction") return equispaced_fraction_mask_1d(n, c.center_fraction, c.acceleration, seed);
  if (c.mask == "full") return torch::ones({n}, torch::kBool);
  fail("simulate: expected mask random|equispaced|equispaced-fraction|full, got '", c.mask,
       "' (2-D Poisson-disc masks need a 3-D acquisition and cannot be written as 2-D Cartesian lines)");
}

}  // namespace

torch::Tensor biot_savart_maps(int64_t coils, int64_t ny, int64_t nx, uint32_t seed) {
  AMBIENT_CHECK(coils >= 1 && coils <= 64, "coil maps: expected 1 to 64 coils, got ", coils);
  AMBIENT_CHECK(ny >= 8 && nx >= 8, "coil maps: expected a matrix of at least 8 x 8, got ", ny, " x ", nx);
  const int64_t n = std::max(ny, nx);  // the unit of length: the larger side
  // Geometry in units of the FOV (the image spans [-0.5, 0.5)): loops of radius 0.25 on a ring of radius 0.62,
  // each loop's plane containing z and tangent to the ring, so its axis points at the centre.
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> jitter(-0.03, 0.03);
  constexpr int kSegments = 72;
  const double ring = 0.62, loop = 0.25;
  auto maps = torch::zeros({coils, ny, nx}, torch::kComplexDouble);
  auto acc = maps.accessor<c10::complex<double>, 3>();
  for (int64_t c = 0; c < coils; ++c) {
    const double theta = 2 * M_PI * c / coils + jitter(rng);
    const double rad = ring + jitter(rng), zc = jitter(rng);
    const double cx = rad * std::cos(theta), cy = rad * std::sin(theta);
    const double tx = -std::sin(theta), ty = std::cos(theta);  // in-plane tangent; the loop spans (t, z)
    for (int64_t y = 0; y < ny; ++y)
      for (int64_t x = 0; x < nx; ++x) {
        const double px = (x - nx / 2) / static_cast<double>(n), py = (y - ny / 2) / static_cast<double>(n);
        double bx = 0, by = 0;
        for (int s = 0; s < kSegments; ++s) {
          const double a0 = 2 * M_PI * s / kSegments, a1 = 2 * M_PI * (s + 1) / kSegments, am = 0.5 * (a0 + a1);
          // Segment midpoint and direction on the loop: centre + loop (cos a · t + sin a · z).
          const double mx = cx + loop * std::cos(am) * tx, my = cy + loop * std::cos(am) * ty,
                       mz = zc + loop * std::sin(am);
          const double dlx = loop * (std::cos(a1) - std::cos(a0)) * tx, dly = loop * (std::cos(a1) - std::cos(a0)) * ty,
                       dlz = loop * (std::sin(a1) - std::sin(a0));
          const double rx = px - mx, ry = py - my, rz = -mz;
          const double r3 = std::pow(rx * rx + ry * ry + rz * rz, 1.5);
          // dB ∝ dl × r / |r|³ (x and y components; the receive field is B_x - i B_y)
          bx += (dly * rz - dlz * ry) / r3;
          by += (dlz * rx - dlx * rz) / r3;
        }
        acc[c][y][x] = c10::complex<double>(bx, -by);
      }
  }
  const double peak = rss(maps, 0).max().item<double>();
  return (maps / peak).to(torch::kComplexFloat);
}

SliceStack resample_slices(const Volume& volume, const SimulateConfig& c) {
  AMBIENT_CHECK(volume.data.defined() && volume.data.dim() == 3, "simulate: expected a 3-D volume");
  AMBIENT_CHECK(c.matrix >= 16 && c.matrix <= 1024, "simulate: expected a matrix in [16, 1024], got ", c.matrix);
  AMBIENT_CHECK(c.readout == 0 || (c.readout >= 16 && c.readout <= 1024),
                "simulate: expected readout samples in [16, 1024] (or 0: as many as the matrix), got ", c.readout);
  const Plane pl = plane_for(c.orientation);
  // Volume data is [k, j, i]; sizes per index axis i, j, k:
  const int64_t size[3] = {volume.data.size(2), volume.data.size(1), volume.data.size(0)};
  std::vector<int64_t> picks = c.slices;
  if (picks.empty()) {
    AMBIENT_CHECK(c.count >= 1, "simulate: expected at least one slice, got ", c.count);
    const int64_t n = size[pl.fixed_axis];
    for (int64_t s = 0; s < c.count; ++s)
      picks.push_back(c.count == 1 ? n / 2 : n / 4 + (n / 2) * s / (c.count - 1));
  }
  for (auto p : picks)
    AMBIENT_CHECK(p >= 0 && p < size[pl.fixed_axis], "simulate: slice ", p, " is outside the volume's ",
                  size[pl.fixed_axis], " ", c.orientation, " slices");
  const int64_t S = picks.size(), NY = c.matrix, NX = c.readout > 0 ? c.readout : c.matrix;
  const double sp_row = volume.spacing[pl.row_axis], sp_col = volume.spacing[pl.col_axis];
  // Square pixels of the size at which the plane's extent fits along both sides.
  const double d = std::max(size[pl.row_axis] * sp_row / NY, size[pl.col_axis] * sp_col / NX);

  // Resample each slice on the NY x NX grid whose centre pixel (NY/2, NX/2) sits on the plane's centre.
  auto mag = torch::zeros({S, NY, NX}, torch::kDouble);
  Geometry geo;
  geo.fov_mm = {NX * d, NY * d, volume.spacing[pl.fixed_axis]};
  for (int64_t s = 0; s < S; ++s) {
    torch::Tensor plane = pl.fixed_axis == 2 ? volume.data.select(0, picks[s])
                          : pl.fixed_axis == 1 ? volume.data.select(1, picks[s])
                                               : volume.data.select(2, picks[s]);  // rows: larger index axis
    plane = plane.contiguous();  // [rows, cols] = [row_axis, col_axis] since row_axis > col_axis
    auto pa = plane.accessor<float, 2>();
    const int64_t rows = plane.size(0), cols = plane.size(1);
    const double rc = 0.5 * (rows - 1), cc = 0.5 * (cols - 1);
    auto ma = mag.accessor<double, 3>();
    for (int64_t y = 0; y < NY; ++y)
      for (int64_t x = 0; x < NX; ++x)
        ma[s][y][x] = bilinear(pa, rows, cols, rc + (y - NY / 2) * d / sp_row, cc + (x - NX / 2) * d / sp_col);
    // Physical centre of the plane: origin + D (spacing ⊙ index).
    double index[3];
    index[pl.fixed_axis] = picks[s];
    index[pl.row_axis] = rc;
    index[pl.col_axis] = cc;
    SliceGeometry g;
    for (int i = 0; i < 3; ++i) {
      g.position[i] = volume.origin[i];
      for (int a = 0; a < 3; ++a) g.position[i] += volume.direction[a][i] * volume.spacing[a] * index[a];
      g.read_dir[i] = volume.direction[pl.col_axis][i];
      g.phase_dir[i] = volume.direction[pl.row_axis][i];
      g.slice_dir[i] = volume.direction[pl.fixed_axis][i];
    }
    geo.slices.push_back(g);
  }
  const double peak = mag.max().item<double>();
  AMBIENT_CHECK(peak > 0, "simulate: the chosen slices are empty (all zero)");
  return {(mag / peak).clamp_min(0), geo};
}

torch::Tensor smooth_phase(int64_t slices, int64_t ny, int64_t nx, double strength, at::Generator& gen) {
  return smooth_phase_from(torch::randn({slices, 5, 5}, gen, torch::kComplexDouble), ny, nx, strength);
}

Simulation simulate(const Volume& volume, const SimulateConfig& c) {
  AMBIENT_CHECK(c.snr > 0, "simulate: expected a positive SNR, got ", c.snr);
  AMBIENT_CHECK(c.coil_correlation >= 0 && c.coil_correlation < 1, "simulate: expected coil correlation in [0, 1), got ",
                c.coil_correlation);
  AMBIENT_CHECK(c.noise_samples >= 4 * c.coils, "simulate: expected at least ", 4 * c.coils,
                " noise samples per coil to estimate the noise covariance, got ", c.noise_samples);
  auto stack = resample_slices(volume, c);
  auto mag = stack.magnitude.to(torch::kDouble);
  const Geometry geo = stack.geometry;
  const int64_t S = mag.size(0), NY = mag.size(1), NX = mag.size(2), C = c.coils;

  auto gen = at::detail::createCPUGenerator(c.seed);
  auto phase = smooth_phase(S, NY, NX, c.phase_strength, gen);
  auto image = torch::polar(mag, phase).to(torch::kComplexFloat);  // [S, NY, NX]

  auto maps1 = biot_savart_maps(C, NY, NX, c.seed);
  auto maps = maps1.unsqueeze(0).expand({S, C, NY, NX}).contiguous();
  auto coil_images = maps * image.unsqueeze(1);
  auto full = fft2c(coil_images);  // [S, C, NY, NX]

  // Coil noise covariance Ψ = G G^H (unit mean diagonal) scaled to the SNR; noise = σ L w, L = chol(Ψ).
  auto g = torch::eye(C, torch::kComplexDouble) +
           c.coil_correlation * torch::randn({C, C}, gen, torch::kComplexDouble) / std::sqrt(static_cast<double>(C));
  auto psi = g.matmul(g.conj().transpose(0, 1));
  psi = psi / torch::real(psi.diagonal()).mean();
  auto l = torch::linalg::cholesky(psi).to(torch::kComplexFloat);
  auto object = mag > 0.1;
  const double signal = rss(coil_images, 1).to(torch::kDouble).masked_select(object).mean().item<double>();
  const float sigma = static_cast<float>(signal / c.snr);
  auto white = torch::randn({S, C, NY * NX}, gen, torch::kComplexFloat);
  auto noisy = full + sigma * l.matmul(white).reshape({S, C, NY, NX});
  auto noise_scan = sigma * l.matmul(torch::randn({C, c.noise_samples}, gen, torch::kComplexFloat));

  Simulation out;
  Scan& scan = out.scan;
  scan.format = "simulated";
  scan.geometry = geo;
  scan.mask = torch::zeros({S, NY}, torch::kBool);
  scan.calib = torch::zeros({S, NY}, torch::kBool);
  const int64_t n_low = num_low_frequencies(NY, c.center_fraction);
  for (int64_t s = 0; s < S; ++s) {
    scan.mask[s] = make_mask(c, NY, c.same_mask ? c.seed : c.seed + static_cast<uint32_t>(s));
    const int64_t pad = (NY - n_low + 1) / 2;
    scan.calib[s].slice(0, pad, pad + n_low).fill_(true);
  }
  scan.calib &= scan.mask;
  if (c.mask == "full") scan.calib.fill_(true);  // fully sampled: every line can calibrate
  scan.ksp = (noisy * scan.mask.to(torch::kFloat).reshape({S, 1, NY, 1})).contiguous();
  scan.noise = noise_scan.contiguous();
  scan.meta["patient_id"] = "ambient-simulate";
  scan.meta["simulate_snr"] = std::to_string(c.snr);

  // Reference: what a fully sampled scan gives after prewhitening with this noise scan.
  auto w = whitening_matrix(noise_scan);
  out.reference = rss(apply_coil_matrix(w, coil_images), 1).to(torch::kFloat).contiguous();
  out.image = image;
  out.maps = maps;
  validate(scan, "simulate");
  return out;
}

}  // namespace ambient::mri
