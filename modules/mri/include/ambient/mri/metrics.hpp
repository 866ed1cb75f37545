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

/// Each row's most similar row of another set, and which one.
struct NearestNeighbours {
  torch::Tensor similarity;  ///< [n] double: the highest similarity of each row
  torch::Tensor index;       ///< [n] int64: which row of the other set reached it
};
/// Cosine similarity of each row of `a` [n, d] with its nearest row of `b` [m, d], both taken relative to `origin`
/// [d] when it is given. With `leave_out` = p > 0, row i of `a` is not compared with the rows j of `b` with
/// j mod p = i: `a` is the first p rows of `b` (images, then blocks of their flips), and each image's nearest *other*
/// image is wanted.
NearestNeighbours nearest_cosine(const torch::Tensor& a, const torch::Tensor& b, const torch::Tensor& origin = {},
                                 int64_t leave_out = 0);
/// Each row's nearest row of another set by Euclidean distance, and which one.
struct NearestDistances {
  torch::Tensor distance;  ///< [n] double
  torch::Tensor index;     ///< [n] int64
};
/// The Euclidean distance of each row of `a` [n, d] to its nearest row of `b` [m, d]; `leave_out` as for
/// nearest_cosine.
NearestDistances nearest_euclidean(const torch::Tensor& a, const torch::Tensor& b, int64_t leave_out = 0);
/// Memorisation measure: for each image of `samples` [n, h, w], the normalised cross-correlation
/// (a − ā)·(b − b̄) / (||a − ā|| ||b − b̄||) with its nearest image of `training` [m, h, w] (magnitudes).
NearestNeighbours nearest_neighbours(const torch::Tensor& samples, const torch::Tensor& training,
                                     int64_t leave_out = 0);

/// The Fréchet distance of Gaussians fitted to feature sets a [n, d] and b [m, d] (FID's formula, Heusel et al.
/// 2017): ||μa − μb||² + tr(Σa + Σb − 2 (Σa^½ Σb Σa^½)^½), in float64. It is biased upwards at small n: compare
/// sets of equal sizes only.
double frechet_distance(const torch::Tensor& a, const torch::Tensor& b);
/// The kernel distance (KID, Bińkowski et al. 2018): the unbiased estimate of the squared MMD between the feature
/// sets' distributions with the kernel k(x, y) = (x·y / d + 1)³. Its expectation is 0 for two sets from one
/// distribution at any sizes ≥ 2, so it suits the tens of samples a CPU draws; it can come out slightly negative.
double kernel_distance(const torch::Tensor& a, const torch::Tensor& b);

/// How much of each distribution the other covers, from k-nearest-neighbour balls in feature space: each point's
/// ball has the radius of its k-th nearest other point of its own set. `precision` (Kynkäänniemi et al. 2019) is
/// the fraction of generated rows inside some real row's ball (do the samples look real?), `recall` the fraction of
/// real rows inside some generated row's ball (do they cover the real variety?); `density` and `coverage` (Naeem et
/// al. 2020) are their outlier-robust forms: density counts, per generated row, how many real balls contain it,
/// divided by k (about 1 for one distribution, above 1 where samples crowd where real images are dense), coverage
/// is the fraction of real balls that contain some generated row. Unlike a kernel or Fréchet distance, which
/// compare averages, a generated row off the real images' manifold counts against precision however typical its
/// average statistics are.
struct Manifold {
  double precision = 0, recall = 0, density = 0, coverage = 0;
};
/// `real` [m, d] and `generated` [n, d]; k >= 1, below both set sizes.
Manifold manifold_measures(const torch::Tensor& real, const torch::Tensor& generated, int64_t k);

/// The object of a reference image: its pixels above this fraction of the volume's maximum magnitude.
constexpr double kObjectFraction = 0.1;

/// How well a per-pixel uncertainty map predicts the error of a reconstruction (magnitudes [slice, h, w]), over the
/// pixels inside the object: the reference's magnitude above `object_fraction` of its volume maximum.
struct Calibration {
  int64_t pixels = 0;               ///< pixels inside the object
  double within[3] = {0, 0, 0};     ///< fraction with |x − gt| <= k · std, k = 1, 2, 3 (Gaussian: 0.68, 0.95, 0.997)
  double correlation = 0;           ///< Pearson correlation of std and |x − gt|
  double scale_for_95 = 0;          ///< the factor c with |x − gt| <= 2 c std on 95% of the pixels (1: calibrated)
  /// Reliability: the pixels in ten equal-count bins of std; per bin the mean std and the RMS error ([10, 2]).
  torch::Tensor reliability;
};
Calibration calibration(const torch::Tensor& gt, const torch::Tensor& x, const torch::Tensor& std,
                        double object_fraction = kObjectFraction);

/// Where a reconstruction's error lies: the object (reference above `object_fraction` of its volume maximum, as for
/// calibration) against the rest, the background. A method can lose PSNR in either; on skull-stripped references
/// with an exactly zero background the two tell apart "noise left outside the head" from "wrong anatomy".
struct RegionErrors {
  int64_t object_pixels = 0, background_pixels = 0;
  double object_psnr = 0;        ///< PSNR over the object's pixels only (data range: the volume maximum, as psnr())
  double object_nmse = 0;        ///< ||gt − x||² / ||gt||², both sums over the object
  double background_share = 0;   ///< the background's part of the volume's squared error, in [0, 1]
  double background_rms = 0;     ///< RMS of x − gt over the background, as a fraction of the volume maximum
};
RegionErrors region_errors(const torch::Tensor& gt, const torch::Tensor& x, double object_fraction = kObjectFraction);

}  // namespace ambient::mri
