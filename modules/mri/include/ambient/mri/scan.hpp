// Scan: the one in-memory form of an acquisition, whatever file it came from. Layouts: docs/conventions.md.
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include <torch/types.h>

namespace ambient::mri {

using Vec3 = std::array<double, 3>;

/// Where one slice sits, in the patient coordinate system (LPS, mm), as ISMRMRD and ITK define it.
struct SliceGeometry {
  Vec3 position{0, 0, 0};   ///< centre of the slice; pixel (ny/2, nx/2) of the centred FFT sits here
  Vec3 read_dir{1, 0, 0};   ///< direction of increasing kx index (image columns)
  Vec3 phase_dir{0, 1, 0};  ///< direction of increasing ky index (image rows)
  Vec3 slice_dir{0, 0, 1};
};

struct Geometry {
  Vec3 fov_mm{256, 256, 5};  ///< x (readout), y (phase encode), z (slice thickness) of the reconstructed image
  std::vector<SliceGeometry> slices;

  /// Voxel size in mm: fov / matrix in-plane, slice spacing (or thickness for one slice) through-plane.
  Vec3 voxel_size(int64_t ny, int64_t nx) const;
};

/// An undersampled Cartesian scan.
struct Scan {
  torch::Tensor ksp;        ///< [slice, coil, ky, kx] complex64, zero where not sampled
  torch::Tensor mask;       ///< [slice, ky] bool: phase-encode lines holding image data
  torch::Tensor calib;      ///< [slice, ky] bool: fully sampled calibration (ACS) lines
  torch::Tensor calib_ksp;  ///< [slice, coil, ky, kx]: k-space for calibration when the file has calibration-only
                            ///< lines (separate reference scan); undefined otherwise (then ksp holds them)
  torch::Tensor noise;      ///< [coil, samples] complex64 noise scan as read (before prewhitening); may be undefined
  bool prewhitened = false; ///< ksp has been multiplied by the noise whitening matrix (unit, uncorrelated noise)
  Geometry geometry;
  std::string format;  ///< "ismrmrd", "fastmri", "cfl"
  std::string source;  ///< file the scan was read from
  std::map<std::string, std::string> meta;  ///< free-form attributes (patient id, acquisition, ...)

  int64_t slices() const { return ksp.size(0); }
  int64_t coils() const { return ksp.size(1); }
  int64_t ny() const { return ksp.size(2); }
  int64_t nx() const { return ksp.size(3); }
  /// ksp with calibration-only lines filled in (what ESPIRiT should see).
  torch::Tensor calibration_kspace() const { return calib_ksp.defined() ? calib_ksp : ksp; }
  /// [slice, ky] bool: the lines ESPIRiT calibrates on. The ACS lines, widened over the sampled lines next to them
  /// (a fully sampled centre is calibration data whether or not the file flags it, as BART's ecalib detects it);
  /// the ACS lines as they are when they are not one run. A fully sampled scan flagging 8 ACS lines calibrates on
  /// its whole centre (ESPIRiT keeps EspiritConfig::calib_size of it), not on 8 lines.
  torch::Tensor calibration_lines() const;
  /// The sampling mask broadcastable to ksp: [slice, 1, ky, 1] float.
  torch::Tensor kspace_mask() const;
  /// Acceleration over all slices (lines / sampled lines).
  double acceleration() const;
};

/// Checks layouts, dtypes and finiteness; throws ambient::Error naming the first problem and `what`.
void validate(const Scan& scan, const std::string& what);

/// Fills in geometry for `slices` slices when a format carries none: centred at the origin, stacked along z.
Geometry default_geometry(int64_t slices, const Vec3& fov_mm);

/// Noise whitening matrix W = L^{-1} with L L^H = Ψ, Ψ the coil noise covariance of `noise` [coil, samples],
/// scaled by `variance_scale` (ratio of noise to data dwell time). Returns [coil, coil] complex64.
torch::Tensor whitening_matrix(const torch::Tensor& noise, double variance_scale = 1.0);
/// Applies W along the coil dimension (dim 1) of [slice, coil, ky, kx].
torch::Tensor apply_coil_matrix(const torch::Tensor& w, const torch::Tensor& ksp);

/// Removes readout oversampling: iFFT along kx, keep the central `nx_out` samples, FFT back. [..., kx] -> [..., nx_out].
torch::Tensor crop_readout(const torch::Tensor& ksp, int64_t nx_out);

/// The k-space noise variance per complex sample of `scan`: `requested` when it is positive; 1 for a prewhitened scan
/// (its noise scan whitened the coils); otherwise estimated from the outer 10% of kx on the sampled lines, where the
/// object has little energy.
double noise_variance(const Scan& scan, double requested = -1);

/// The slices `which` of a scan (k-space, masks, calibration data and geometry), in that order.
Scan select_slices(const Scan& scan, const std::vector<int64_t>& which);

}  // namespace ambient::mri
