// Sampling patterns: fastMRI-compatible 1-D Cartesian masks, 2-D Poisson disc, image-domain blocks, and the
// further subsampling M' ⊆ M that the ambient objective draws at every training step.
#pragma once

#include <cstdint>
#include <random>

#include <torch/types.h>

namespace ambient::mri {

/// fastMRI's RandomMaskFunc for one (center_fraction, acceleration): round-half-even(n * cf) central lines, the
/// others kept with probability (n/R - n_low) / (n - n_low). With a seed it draws the same numbers as
/// numpy.random.RandomState(seed), so masks match fastMRI's subsample.py line for line. Returns bool [n].
torch::Tensor random_mask_1d(int64_t n, double center_fraction, double acceleration, uint32_t seed);
/// The fixed further line mask Ã through which an ambient-Fourier model sees a full estimate at inference
/// (posterior reconstruction, unconditional sampling): random_mask_1d at this acceleration, with a centre of 8%
/// of the lines or half of those kept, whichever is smaller. Returns bool [n].
torch::Tensor further_line_mask(int64_t n, double acceleration, uint32_t seed);
/// fastMRI's EquiSpacedMaskFunc: the centre plus every R-th line from a random offset in [0, R).
torch::Tensor equispaced_mask_1d(int64_t n, double center_fraction, int64_t acceleration, uint32_t seed);
/// fastMRI's EquispacedMaskFractionFunc: spacing adjusted so that the total fraction sampled is 1/R.
torch::Tensor equispaced_fraction_mask_1d(int64_t n, double center_fraction, double acceleration, uint32_t seed);

/// Number of central lines fastMRI keeps: round-half-even(n * center_fraction).
int64_t num_low_frequencies(int64_t n, double center_fraction);

struct PoissonDiscConfig {
  double acceleration = 4.0;     ///< target fraction sampled = 1 / acceleration (reached by bisection on the radius)
  int64_t calib = 16;            ///< fully sampled central calib x calib square
  double density_power = 1.0;    ///< radius grows as (1 + power * r / r_max): variable density
  int max_tries = 30;            ///< Bridson's k
};
/// 2-D variable-density Poisson-disc mask (Bridson's algorithm with a radius growing with |k|), bool [ny, nx].
torch::Tensor poisson_disc_2d(int64_t ny, int64_t nx, const PoissonDiscConfig& config, uint32_t seed);

/// Image-domain corruption: `count` random boxes with sides in [min_size, max_size] erased, placed so that every
/// pixel is equally likely to be erased (boxes may be clipped by the edge). Returns bool [ny, nx], true where the
/// pixel is kept.
torch::Tensor random_blocks(int64_t ny, int64_t nx, int64_t count, int64_t min_size, int64_t max_size,
                            uint32_t seed);

/// Random pixel erasure: each pixel is kept with probability 1 - erase_probability. bool [ny, nx].
torch::Tensor random_pixels(int64_t ny, int64_t nx, double erase_probability, uint32_t seed);

/// Further subsampling for the ambient objective: from a 1-D mask (bool [n]) drop each sampled line outside
/// `calib` (bool [n], lines that must stay) with probability `drop_fraction`, but always keep at least one
/// non-calibration line if the input had one. The result is a subset of `mask`.
torch::Tensor further_subsample(const torch::Tensor& mask, const torch::Tensor& calib, double drop_fraction,
                                std::mt19937_64& rng);

/// The drop fraction δ for further_subsample that gives Ã the acceleration `further_accel` (A-DPS's R̃) on a line
/// mask `mask` (bool [n]) with calibration lines `calib`: (sampled − n / R̃) / (sampled − calibration), at most 0.95.
/// Throws unless R̃ exceeds the mask's own acceleration.
double further_drop_fraction(const torch::Tensor& mask, const torch::Tensor& calib, double further_accel);

/// The largest run of consecutive sampled lines containing (or nearest to) the centre of a 1-D mask, as a bool
/// mask of the same length: the auto-detected calibration (ACS) region.
torch::Tensor central_run(const torch::Tensor& mask);

/// Acceleration of a mask: numel / sampled.
double acceleration_of(const torch::Tensor& mask);

}  // namespace ambient::mri
