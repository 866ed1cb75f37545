// Readers and writers: ISMRMRD, fastMRI HDF5, BART cfl, and NIfTI/PNG through ITK. All writers are atomic.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <torch/types.h>

#include "ambient/core/atomic_write.hpp"
#include "ambient/core/reader_crash.hpp"
#include "ambient/mri/scan.hpp"

namespace ambient::mri {

struct ReadOptions {
  std::string ismrmrd_group = "dataset";  ///< HDF5 group of an ISMRMRD dataset
  int repetition = -1;  ///< select one repetition; -1 averages each line over all repetitions it was acquired in
  int average = -1;     ///< select one average; -1 averages
  int contrast = 0;     ///< contrast index to read (others are skipped)
  bool prewhiten = true;           ///< whiten coils with the noise scan when the file has one
  bool remove_oversampling = true; ///< crop readout oversampling (encoded -> recon matrix in x)
};

/// "ismrmrd", "fastmri" or "cfl" from the file's content (HDF5 layout) or extension; throws if unknown.
std::string detect_format(const std::string& path, const ReadOptions& options = {});
/// Reads any supported scan file. Once a program has called exit_cleanly_on_reader_crash() (reader_crash.hpp), a
/// crash inside HDF5 here is reported as a damaged file: HDF5 1.10.8 trusts sizes and counts in a damaged file's
/// object headers before any of its API calls return, so no check of ours can come first.
Scan read_scan(const std::string& path, const ReadOptions& options = {});

Scan read_ismrmrd(const std::string& path, const ReadOptions& options = {});
/// Writes only the sampled lines as acquisitions (calibration flags on calib lines), the noise scan as
/// NOISE_MEASUREMENT acquisitions, and a header describing matrix, FOV, limits and coils.
void write_ismrmrd(const std::string& path, const Scan& scan, const std::string& group = "dataset");

/// fastMRI: `kspace` (slices, coils, H, W) complex64 (or single-coil (slices, H, W)), W = phase encode, H = readout.
Scan read_fastmri(const std::string& path, const ReadOptions& options = {});
/// Writes a fastMRI-layout file (used by tests and `ambient convert`); attributes from scan.meta.
void write_fastmri(const std::string& path, const Scan& scan);

/// BART .cfl/.hdr (path without extension or with either), column-major complex64 with up to 16 dims.
/// Returned tensors use BART's dims reversed, so BART (kx, ky, 1, coil, ..., slice) reads as row-major
/// [slice, ..., coil, 1, ky, kx].
torch::Tensor read_cfl(const std::string& path);
void write_cfl(const std::string& path, const torch::Tensor& data);
/// A scan from a k-space cfl with BART's dims (READ, PHS1, PHS2=1, COIL, ..., SLICE at 13); mask from nonzeros.
Scan read_cfl_scan(const std::string& path);
/// Writes scan k-space with BART's dimension convention (READ=0, PHS1=1, COIL=3, SLICE=13).
void write_cfl_kspace(const std::string& path, const torch::Tensor& ksp);
/// Coil maps from a BART cfl (`bart ecalib`: READ, PHS1, PHS2=1, COIL, MAPS at 4, SLICE at 13) as [slice, coil, ky,
/// kx]: the first set of maps when ecalib wrote several (-m). Throws naming the file if another dimension is used.
torch::Tensor read_cfl_maps(const std::string& path);
/// An image from a BART cfl (`bart pics`, `bart fft`: READ, PHS1, ..., SLICE at 13) as [image, ky, kx] complex64:
/// every dimension beyond the first two counts images (slices first, in BART's order).
torch::Tensor read_cfl_images(const std::string& path);

/// A 3-D scalar volume with ITK geometry: data [z, y, x] float32; LPS physical space.
struct Volume {
  torch::Tensor data;
  Vec3 spacing{1, 1, 1};
  Vec3 origin{0, 0, 0};
  std::array<Vec3, 3> direction{{{1, 0, 0}, {0, 1, 0}, {0, 0, 1}}};  ///< columns: axes of index i, j, k
};

/// Images [slice, ky, kx] (float, or complex: magnitude is taken) placed by the scan's geometry.
Volume volume_from_geometry(const torch::Tensor& images, const Geometry& geometry);
void write_nifti(const std::string& path, const Volume& volume);
Volume read_nifti(const std::string& path);

/// 8-bit greyscale PNG of image [h, w] (float), linearly mapped from [lo, hi] to [0, 255].
void write_png(const std::string& path, const torch::Tensor& image, double lo, double hi);
/// Several images side by side, each windowed to [0, hi]; one grey row of pixels separates them.
void write_png_row(const std::string& path, const std::vector<torch::Tensor>& images, double hi);

}  // namespace ambient::mri
