// Image quality metrics with fastMRI's definitions (fastmri/evaluate.py), on magnitude volumes [slice, h, w].
#pragma once

#include <torch/types.h>

namespace ambient::mri {

/// ||gt - x||² / ||gt||² over the volume.
double nmse(const torch::Tensor& gt, const torch::Tensor& x);
/// 10 log10(max(gt)² / MSE), data range = volume maximum of gt.
double psnr(const torch::Tensor& gt, const torch::Tensor& x);
/// Mean over slices of SSIM (7x7 uniform window, K1 0.01, K2 0.03, sample covariance, data range = volume max of
/// gt), averaged over the pixels whose window lies inside the image, as skimage's structural_similarity does.
double ssim(const torch::Tensor& gt, const torch::Tensor& x);

struct Metrics {
  double nmse = 0, psnr = 0, ssim = 0;
};
/// All three; inputs of shape [slice, h, w] or [h, w], real or complex (magnitude is taken).
Metrics evaluate(const torch::Tensor& gt, const torch::Tensor& x);

/// Memorisation measure: for each image of `samples` [n, h, w], the normalised cross-correlation
/// (a − ā)·(b − b̄) / (||a − ā|| ||b − b̄||) with its nearest image of `training` [m, h, w] (magnitudes).
struct NearestNeighbours {
  torch::Tensor ncc;    ///< [n] double: the highest NCC of each sample
  torch::Tensor index;  ///< [n] int64: which training image reached it
};
NearestNeighbours nearest_neighbours(const torch::Tensor& samples, const torch::Tensor& training);

}  // namespace ambient::mri
