// The smooth random phase of simulated objects (mri::simulate) and of clean training images (diffusion/slices.hpp):
// real MR images carry a slowly varying phase, which the clean magnitude templates lack.
#pragma once

#include <torch/types.h>

#include "ambient/mri/linear_operator.hpp"

namespace ambient::mri {

/// The phase [B, ny, nx] (radians, float64, peak |phase| = `strength`) whose spectrum is `low` [B, 5, 5] (complex)
/// at the centre of k-space and zero elsewhere: low's centred inverse FFT (at float32 precision, through `backend`),
/// real part, scaled to the peak. Runs on low's device.
torch::Tensor smooth_phase_from(const torch::Tensor& low, int64_t ny, int64_t nx, double strength,
                                FftBackend backend = FftBackend::automatic);

}  // namespace ambient::mri
