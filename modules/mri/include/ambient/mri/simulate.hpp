// Simulation of realistic multi-coil Cartesian scans from real MRI volumes (e.g. mricron-data's ch2.nii.gz).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ambient/mri/io.hpp"
#include "ambient/mri/scan.hpp"

namespace ambient::mri {

struct SimulateConfig {
  std::string orientation = "axial";  ///< axial (fix index k), coronal (fix j) or sagittal (fix i)
  std::vector<int64_t> slices;        ///< source slice indices; empty: `count` slices spread over the central half
  int64_t count = 4;
  int64_t matrix = 128;               ///< phase-encode lines (ky, image rows); the FOV fits the object
  int64_t readout = 0;                ///< readout samples (kx, image columns); 0: `matrix` (square). Pixels are
                                      ///< square: the FOV is matrix x readout pixels of the size that fits both
  int64_t coils = 8;
  double snr = 30.0;                  ///< mean coil-combined signal over the object / per-coil noise std
  double coil_correlation = 0.15;     ///< strength of off-diagonal coil noise covariance
  double phase_strength = 1.5;        ///< peak amplitude (radians) of the smooth random phase
  std::string mask = "random";        ///< random | equispaced | equispaced-fraction | full
  double acceleration = 4.0;
  double center_fraction = 0.08;
  bool same_mask = false;             ///< one mask for every slice (fastMRI-style) instead of one per slice
  int64_t noise_samples = 8192;       ///< noise-scan samples per coil
  uint32_t seed = 0;
};

struct Simulation {
  Scan scan;                ///< undersampled, noisy, with noise scan and geometry (not prewhitened)
  torch::Tensor reference;  ///< [slice, ny, nx] float: RSS of the noise-free, fully sampled coil images after the
                            ///< prewhitening the noise scan implies, i.e. what a fully sampled scan read by
                            ///< read_scan() and coil-combined would give
  torch::Tensor image;      ///< [slice, ny, nx] complex64 object (magnitude from the volume, smooth phase)
  torch::Tensor maps;       ///< [slice, coil, ny, nx] complex64 simulated coil sensitivities
};

/// Slices of a volume resampled on a matrix x readout grid of square pixels: magnitudes [slice, ny, nx] float64
/// scaled to a maximum of 1, and the geometry of each slice. Uses config.orientation, slices/count, matrix, readout.
struct SliceStack {
  torch::Tensor magnitude;
  Geometry geometry;
};
SliceStack resample_slices(const Volume& volume, const SimulateConfig& config);

/// A smooth random phase [slice, ny, nx] (radians, peak `strength`): smooth_phase_from (phase.hpp) of 5x5 standard
/// complex normal low frequencies drawn from `gen`.
torch::Tensor smooth_phase(int64_t slices, int64_t ny, int64_t nx, double strength, at::Generator& gen);
inline torch::Tensor smooth_phase(int64_t slices, int64_t n, double strength, at::Generator& gen) {
  return smooth_phase(slices, n, n, strength, gen);
}

/// Simulated coil sensitivities of `coils` circular loops around the FOV, by the Biot-Savart law (receive field
/// B_x - i B_y in the image plane). Normalised so that the largest RSS is 1. [coil, ny, nx] complex64; the ring
/// of loops is sized to the larger side, so a non-square FOV is the centre of the square one.
torch::Tensor biot_savart_maps(int64_t coils, int64_t ny, int64_t nx, uint32_t seed);
inline torch::Tensor biot_savart_maps(int64_t coils, int64_t n, uint32_t seed = 0) {
  return biot_savart_maps(coils, n, n, seed);
}

/// Turns slices of `volume` into a multi-coil undersampled scan. Seeded and reproducible.
Simulation simulate(const Volume& volume, const SimulateConfig& config);

}  // namespace ambient::mri
