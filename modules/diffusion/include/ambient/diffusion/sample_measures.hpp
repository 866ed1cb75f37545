// Measures of generated samples (issue 16): how close each sample comes to a training image (memorisation), in
// pixels (normalised cross-correlation) and in a fixed network's features, and how far the samples' distribution is
// from real images' (kernel and Fréchet distances of those features). `ambient eval --samples` prints them.
#pragma once

#include <cstdint>

#include <torch/types.h>

#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/features.hpp"
#include "ambient/mri/metrics.hpp"

namespace ambient::diffusion {

struct SampleMeasureConfig {
  bool flips = true;               ///< also compare with the training images' flips (training augments with them)
  ModelPtr feature_model;          ///< the fixed feature network (features.hpp); none: pixels only
  FeatureConfig features;
  torch::Tensor quality_reference;  ///< real magnitude images [r, h, w] for the kernel and Fréchet distances
  int64_t pixel_grid = 16;          ///< the pixel kernel distance's images: each averaged to pixel_grid² cells
  int64_t manifold_k = 5;           ///< the neighbour whose distance is a ball's radius (mri::manifold_measures)
  /// The manifold measures keep every manifold_every-th quality-reference image: consecutive slices of a volume
  /// are near-copies, whose balls shrink to nothing. The kernel and Fréchet distances use them all.
  int64_t manifold_every = 1;
};

struct SampleMeasures {
  mri::NearestNeighbours pixels;    ///< NCC with the nearest training image; index into measure_training_set()
  /// With a network: the Euclidean distance of standardised features (the training images' mean and spread per
  /// feature) to the nearest training image, divided by `feature_scale`: below 1, a sample is nearer a training
  /// image than the typical training image is to its nearest other one.
  mri::NearestDistances features;
  double feature_scale = 0;  ///< the median of training_features' distances
  /// Each training image against the other training images (its own flips left out): what real neighbouring
  /// slices score, the yardstick for the samples' figures (features: distances divided by feature_scale too).
  mri::NearestNeighbours training_pixels;
  mri::NearestDistances training_features;
  double kernel_distance = 0;       ///< samples against quality_reference (if both a network and a reference)
  double frechet_distance = 0;
  double reference_kernel_distance = 0;  ///< training images against quality_reference: what real images score
  double reference_frechet_distance = 0;
  /// The kernel distance of the images themselves, each scaled to its own intensity (99th percentile) and averaged
  /// to pixel_grid × pixel_grid cells: what a reader sees at a glance (head, skull, brain, background), no network.
  double pixel_kernel_distance = 0;
  double reference_pixel_kernel_distance = 0;
  /// Precision, recall, density and coverage (mri::manifold_measures) against the quality reference's even rows
  /// (after keeping every manifold_every-th), in standardised features and in pixel descriptors; the reference_
  /// figures are what real images score: up to as many of its odd rows as there are samples, evenly spaced, in the
  /// samples' place. Only with at least 2 (manifold_k + 1) such rows and more than manifold_k samples.
  mri::Manifold feature_manifold, pixel_manifold, reference_feature_manifold, reference_pixel_manifold;
  bool has_features = false, has_quality = false, has_manifold = false;
};

/// The images samples are compared with: `training` [m, h, w], then, with flips, its horizontal, vertical and
/// double flips (centred_flip, as the loader flips): [m or 4m, h, w]. Index i is training image i mod m.
torch::Tensor measure_training_set(const torch::Tensor& training, bool flips);

/// All measures of `samples` [n, h, w] (magnitudes) against `training` [m, h, w] (m >= 2 with a feature network). The reference distances compare
/// the training images themselves with the quality reference, a floor for the samples' (equal sizes make them
/// comparable: the Fréchet distance is biased by the number of images).
SampleMeasures measure_samples(const torch::Tensor& samples, const torch::Tensor& training,
                               const SampleMeasureConfig& config);

/// The images as the pixel kernel distance sees them: [n, grid²].
torch::Tensor pixel_descriptors(const torch::Tensor& magnitudes, int64_t grid);

/// The fraction of values above `threshold`.
double fraction_above(const torch::Tensor& values, double threshold);

/// A picture of the `count` samples most similar to a training image (by `nearest`), most similar first: one row
/// per pair, the sample left and its nearest training image (as matched, flipped or not) right, each scaled to its
/// own 99.5th percentile; values in [0, 1].
torch::Tensor closest_pairs(const torch::Tensor& samples, const torch::Tensor& compared,
                            const mri::NearestNeighbours& nearest, int64_t count);

}  // namespace ambient::diffusion
