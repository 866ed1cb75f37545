// Measured slices made ready for a network, the same way for training and for reconstruction: the operator A, the
// data y and each slice's intensity scale (the 99th percentile of the coil-combined zero-filled magnitude, so that
// network-side images have it at 1; docs/conventions.md) and noise variance in those units.
#pragma once

#include <torch/types.h>

#include "ambient/mri/linear_operator.hpp"

namespace ambient::mri {

/// The 99th percentile of |x| of each slice of `images` [S, ...] (torch's quantile: linear interpolation between
/// the two nearest values), at least `floor`: [S] float. The scale every network-side image is divided by.
torch::Tensor intensity_scale(const torch::Tensor& images, double floor = 1e-12);

struct Prepared {
  OperatorPtr a;            ///< A = M F S: images [S, ky, kx] -> k-space [S, C, ky, kx]
  torch::Tensor y;          ///< [S, C, ky, kx] complex64: the measured samples / scale (zero where not sampled)
  torch::Tensor scale;      ///< [S] float: intensity_scale of A^H (M ksp)
  torch::Tensor noise_var;  ///< [S] float: noise variance per complex sample in the scaled units, η / scale²
};

/// Slices `ksp` [S, C, ky, kx] sampled where `mask` [S, 1, ky, 1] (or broadcastable to k-space) is 1, with coil maps
/// `maps` [S, C, ky, kx] and noise variance `noise_var` (η, per complex sample, in the units of ksp).
Prepared prepare(const torch::Tensor& ksp, const torch::Tensor& mask, const torch::Tensor& maps, double noise_var);

}  // namespace ambient::mri
