// Coil sensitivities: ESPIRiT (Uecker et al., MRM 71:990, 2014) from the calibration region, and root-sum-of-squares.
#pragma once

#include <utility>

#include <torch/types.h>

namespace ambient::mri {

struct EspiritConfig {
  int64_t kernel = 6;            ///< k-space kernel width (k x k); at most (calibration lines + 2) / 2
  int64_t calib_size = 24;       ///< at most this many central samples in kx and of the calibration lines in ky
  double threshold = 0.02;       ///< keep singular vectors with s > threshold * s_max (signal subspace)
  double crop = 0.8;             ///< zero the map where the top eigenvalue is below this (outside the object)
};

/// ESPIRiT maps for one slice. calib_ksp [coil, ky, kx] holds the calibration region (the fully sampled lines
/// given by `calib_lines` [ky] bool, other lines may be zero). Returns maps [coil, ky, kx] complex64 of unit norm
/// over coils where the top eigenvalue passes `crop`, zero elsewhere; the phase of coil 0 is removed so maps are
/// unique (up to a common phase, as ESPIRiT maps are).
torch::Tensor espirit_maps(const torch::Tensor& calib_ksp, const torch::Tensor& calib_lines,
                           const EspiritConfig& config = {});
/// Same for every slice: ksp [slice, coil, ky, kx], calib_lines [slice, ky] -> maps [slice, coil, ky, kx].
torch::Tensor espirit_maps_batch(const torch::Tensor& ksp, const torch::Tensor& calib_lines,
                                 const EspiritConfig& config = {});

namespace detail {
/// The top eigenvector [P, C] and eigenvalue [P] of each Hermitian positive semi-definite matrix of w [P, C, C]
/// (complex64), by repeated squaring; used for ESPIRiT's per-pixel eigenproblems.
std::pair<torch::Tensor, torch::Tensor> top_eigenpairs(const torch::Tensor& w, int squarings = 6);
}  // namespace detail

/// Root-sum-of-squares over the coil dimension `dim` of complex coil images.
torch::Tensor rss(const torch::Tensor& coil_images, int64_t dim = 1);

}  // namespace ambient::mri
