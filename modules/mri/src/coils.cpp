// ESPIRiT: calibration matrix -> SVD -> signal-subspace kernels -> per-pixel eigenproblem in the image domain.
#include "ambient/mri/coils.hpp"

#include <torch/fft.h>
#include <torch/linalg.h>

#include <cmath>

#include "ambient/core/error.hpp"
#include "ambient/mri/fft.hpp"

namespace ambient::mri {

torch::Tensor rss(const torch::Tensor& coil_images, int64_t dim) {
  return (coil_images.abs().square()).sum(dim).sqrt();
}

namespace detail {

std::pair<torch::Tensor, torch::Tensor> top_eigenpairs(const torch::Tensor& w, int squarings) {
  // W^(2^s) = sum_i λ_i^(2^s) v_i v_i^H tends to λ_1^(2^s) v_1 v_1^H when λ_1 > λ_2, so each of its columns is
  // proportional to v_1; the largest column is the best-conditioned pick. Renormalising by the trace after each
  // squaring keeps float32 in range. Inside the object ESPIRiT's W is close to a projector (λ_1 ≈ 1, the rest
  // ≈ 0), so a few squarings converge; where λ_1 ≈ λ_2 (no signal) the map is cropped anyway.
  auto m = w;
  for (int i = 0; i < squarings; ++i) {
    m = m.matmul(m);
    auto trace = torch::real(m.diagonal(0, -2, -1).sum(-1)).clamp_min(1e-30);
    m = m / trace.unsqueeze(-1).unsqueeze(-1);
  }
  auto column = m.abs().square().sum(-2).argmax(-1);  // [P]
  auto v = m.gather(-1, column.reshape({-1, 1, 1}).expand({m.size(0), m.size(1), 1})).squeeze(-1);
  v = v / v.abs().square().sum(-1, true).sqrt().clamp_min(1e-30);
  auto lambda = torch::real((v.conj().unsqueeze(-2).matmul(w).matmul(v.unsqueeze(-1))).reshape({-1}));
  return {v, lambda};
}

}  // namespace detail

torch::Tensor espirit_maps(const torch::Tensor& ksp, const torch::Tensor& calib_lines, const EspiritConfig& cfg) {
  AMBIENT_CHECK(ksp.dim() == 3 && ksp.scalar_type() == torch::kComplexFloat,
                "ESPIRiT: expected complex64 k-space [coil, ky, kx], got ", shape_string(ksp.sizes().vec()));
  AMBIENT_CHECK(calib_lines.dim() == 1 && calib_lines.size(0) == ksp.size(1),
                "ESPIRiT: expected calibration lines [", ksp.size(1), "], got ", shape_string(calib_lines.sizes().vec()));
  const int64_t C = ksp.size(0), ny = ksp.size(1), nx = ksp.size(2);
  auto lines = torch::nonzero(calib_lines.to(torch::kBool)).flatten();
  int64_t cy = lines.numel();
  // A k x k kernel on cy lines gives cy - k + 1 rows of patches. Below k - 1 rows (6 x 6 on 8 lines: 3) the signal
  // subspace is estimated so poorly that the top eigenvalue falls below the crop inside dim tissue, and the maps
  // (and the image) are zeroed there: a 64² scan with 8 ACS lines lost most of the brain. The kernel shrinks to
  // (cy + 2) / 2 then (8 lines: 5 x 5, 4 rows; 10 lines or more keep 6 x 6).
  const int64_t k = std::min<int64_t>(cfg.kernel, std::max<int64_t>(3, (cy + 2) / 2));
  AMBIENT_CHECK(cy >= k + 2, "ESPIRiT: expected at least ", k + 2, " calibration lines for a ", k,
                "x", k, " kernel, got ", cy, "; acquire more ACS lines or use --kernel smaller");
  int64_t y0 = lines[0].item<int64_t>();
  AMBIENT_CHECK(lines[-1].item<int64_t>() - y0 + 1 == cy, "ESPIRiT: expected contiguous calibration lines, got ",
                cy, " lines spread over ", lines[-1].item<int64_t>() - y0 + 1);
  if (cy > cfg.calib_size) {  // a fully sampled scan calibrates on its centre, as BART's ecalib does (-r)
    const int64_t keep = std::max<int64_t>(cfg.calib_size, k + 1);
    y0 = std::clamp<int64_t>(ny / 2 - keep / 2, y0, y0 + cy - keep);
    cy = keep;
  }
  const int64_t cx = std::min<int64_t>(std::max<int64_t>(cfg.calib_size, cy), nx);
  const int64_t x0 = nx / 2 - cx / 2;
  auto calib = ksp.narrow(1, y0, cy).narrow(2, x0, cx).to(torch::kComplexDouble);  // [C, cy, cx]

  // Calibration matrix: one row per k x k patch, columns (coil, dy, dx).
  auto patches = calib.unfold(1, k, 1).unfold(2, k, 1);  // [C, py, px, k, k]
  const int64_t py = patches.size(1), px = patches.size(2);
  auto a = patches.permute({1, 2, 0, 3, 4}).reshape({py * px, C * k * k});
  // The right singular vectors and values of a, from the eigenpairs of its Gram matrix a^H a (double precision:
  // the threshold below keeps s² down to 4e-4 of the largest, far above the rounding). LAPACK's SVD of the wide
  // matrices that few calibration lines give (80 x 100 for 8 lines, 4 coils, 5 x 5) crashed inside OpenBLAS's
  // zgemv in the sanitised build; the Hermitian eigensolver takes another path, and a Gram matrix of C k² rows.
  auto eig = torch::linalg::eigh(a.conj().transpose(0, 1).matmul(a), "L");
  auto s = std::get<0>(eig).flip(0).clamp_min(0).sqrt();              // descending singular values
  auto vh = std::get<1>(eig).flip(1).conj().transpose(0, 1);          // [C k k, C k k]: rows are v^H
  const double smax = s[0].item<double>();
  AMBIENT_CHECK(smax > 0, "ESPIRiT: the calibration region is all zeros");
  const int64_t n = (s > cfg.threshold * smax).sum().item<int64_t>();
  // Patches are rows of the calibration matrix, so they lie in the span of the leading rows of V^H themselves;
  // those rows (unconjugated) are the signal-subspace kernels v_n [C, k, k].
  auto kernels = vh.narrow(0, 0, n).reshape({n, C, k, k});

  // The k-space patch projection sum_n v_n v_n^H, averaged over the k² patches covering a sample, is in the
  // image domain the pointwise matrix W(r) = (1/k²) sum_n a_n(r) a_n(r)^H with a_n,c(r) = sum_q v_n,c(q)
  // exp(+i 2π q·r / N) (a k-space shift by q multiplies the image by exp(-i 2π q·r / N)). Coil images S m satisfy
  // W S = S. Expanding the product, W_cc'(r) = (1/k²) sum_d G_cc'(d) exp(+i 2π d·r / N) with the kernels'
  // cross-correlation G_cc'(d) = sum_n sum_{q − q' = d} v_n,c(q) conj(v_n,c'(q')), lags |d| < k: so W is
  // sqrt(N)/k² times the centred inverse FFT of G placed at the centre of the grid. G comes from small 2k x 2k
  // FFTs, leaving C² large FFTs (not n·C, as transforming every kernel would).
  const int64_t l = 2 * k;
  auto small = torch::zeros({n, C, l, l}, torch::kComplexFloat);
  small.narrow(2, 0, k).narrow(3, 0, k).copy_(kernels.to(torch::kComplexFloat));
  auto spec = torch::fft::fft2(small).permute({2, 3, 1, 0}).reshape({l * l, C, n});  // [L², C, n]
  auto cross = spec.matmul(spec.conj().transpose(1, 2));                              // [L², C, C]
  auto corr = torch::fft::ifft2(cross.reshape({l, l, C, C}).permute({2, 3, 0, 1}));    // lag d at index d mod L
  corr = torch::fft::fftshift(corr, std::vector<int64_t>{-2, -1});                    // lag d at L/2 + d
  auto grid = torch::zeros({C, C, ny, nx}, torch::kComplexFloat);
  grid.narrow(2, ny / 2 - (k - 1), 2 * k - 1)
      .narrow(3, nx / 2 - (k - 1), 2 * k - 1)
      .copy_(corr.narrow(2, l / 2 - (k - 1), 2 * k - 1).narrow(3, l / 2 - (k - 1), 2 * k - 1));
  const float norm = static_cast<float>(std::sqrt(static_cast<double>(ny * nx)) / static_cast<double>(k * k));
  auto w = (ifft2c(grid) * norm).permute({2, 3, 0, 1}).reshape({ny * nx, C, C});  // [P, C, C]
  auto [top, lambda] = detail::top_eigenpairs(w);
  // Remove coil 0's phase so the maps are unique; ESPIRiT leaves a per-pixel phase free.
  auto ref = top.select(1, 0);
  auto phase = torch::where(ref.abs() > 0, ref / ref.abs(), torch::ones_like(ref));
  top = top * phase.conj().unsqueeze(1);
  top = top * (lambda > cfg.crop).unsqueeze(1).to(top.scalar_type());
  return top.reshape({ny, nx, C}).permute({2, 0, 1}).contiguous();
}

torch::Tensor espirit_maps_batch(const torch::Tensor& ksp, const torch::Tensor& calib_lines, const EspiritConfig& cfg) {
  AMBIENT_CHECK(ksp.dim() == 4, "ESPIRiT: expected k-space [slice, coil, ky, kx], got ", shape_string(ksp.sizes().vec()));
  AMBIENT_CHECK(calib_lines.dim() == 2 && calib_lines.size(0) == ksp.size(0), "ESPIRiT: expected calibration lines [",
                ksp.size(0), ", ky], got ", shape_string(calib_lines.sizes().vec()));
  std::vector<torch::Tensor> maps;
  for (int64_t s = 0; s < ksp.size(0); ++s) maps.push_back(espirit_maps(ksp[s], calib_lines[s], cfg));
  return torch::stack(maps);
}

}  // namespace ambient::mri
