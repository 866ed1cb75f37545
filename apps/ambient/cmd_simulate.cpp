// ambient simulate: a multi-coil undersampled scan (ISMRMRD, fastMRI or cfl) plus its reference, from a NIfTI volume.
#include <filesystem>
#include <iostream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/simulate.hpp"
#include "cli.hpp"

namespace ambient::app {
namespace {

constexpr const char* kDefaultVolume = "/usr/share/mricron/templates/ch2.nii.gz";

}  // namespace

int run_simulate(const std::vector<std::string>& args) {
  po::options_description opts("simulate options");
  mri::SimulateConfig c;
  std::string input, output, reference, slices, format, png;
  opts.add_options()
      ("input,i", po::value(&input)->default_value(kDefaultVolume), "NIfTI volume to slice (Debian's mricron-data)")
      ("output,o", po::value(&output)->required(), "scan to write (.h5; see --format)")
      ("reference,r", po::value(&reference), "also write the fully sampled reference magnitude (.nii.gz)")
      ("png", po::value(&png), "also write a PNG of reference and zero-filled RSS for slice 0")
      ("format", po::value(&format)->default_value("ismrmrd"), "ismrmrd | fastmri | cfl")
      ("orientation", po::value(&c.orientation)->default_value(c.orientation), "axial | coronal | sagittal")
      ("slices", po::value(&slices), "comma-separated source slice indices (default: --count over the central half)")
      ("count", po::value(&c.count)->default_value(c.count), "number of slices when --slices is not given")
      ("matrix", po::value(&c.matrix)->default_value(c.matrix), "phase-encode lines (ky, image rows)")
      ("readout", po::value(&c.readout)->default_value(c.readout),
       "readout samples (kx, image columns); 0: as many as --matrix (square). Pixels stay square")
      ("coils", po::value(&c.coils)->default_value(c.coils), "number of simulated receive coils")
      ("snr", po::value(&c.snr)->default_value(c.snr), "mean coil-combined signal in the object / noise std")
      ("mask", po::value(&c.mask)->default_value(c.mask), "random | equispaced | equispaced-fraction | full")
      ("accel,R", po::value(&c.acceleration)->default_value(c.acceleration), "acceleration factor")
      ("center-fraction", po::value(&c.center_fraction)->default_value(c.center_fraction),
       "fraction of central lines fully sampled (fastMRI semantics)")
      ("same-mask", po::bool_switch(&c.same_mask), "one mask for all slices (default: one per slice)")
      ("phase", po::value(&c.phase_strength)->default_value(c.phase_strength), "peak smooth phase (radians)")
      ("noise-samples", po::value(&c.noise_samples)->default_value(c.noise_samples), "noise-scan samples per coil")
      ("seed", po::value(&c.seed)->default_value(c.seed), "random seed (everything is reproducible from it)");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!parse("simulate", "-o scan.h5 [-r reference.nii.gz] [options]", opts, pos, args, vm)) return 0;
  if (!slices.empty()) c.slices = int_list(slices, "simulate --slices");
  AMBIENT_CHECK(format == "ismrmrd" || format == "fastmri" || format == "cfl",
                "simulate --format: expected ismrmrd|fastmri|cfl, got '", format, "'");
  AMBIENT_CHECK(c.acceleration >= 1, "simulate --accel: expected an acceleration >= 1, got ", c.acceleration);
  AMBIENT_CHECK(c.matrix >= 16 && c.matrix <= 1024, "simulate --matrix: expected 16 to 1024 lines, got ", c.matrix);
  AMBIENT_CHECK(c.coils >= 1 && c.coils <= 64, "simulate --coils: expected 1 to 64 coils, got ", c.coils);
  AMBIENT_CHECK(c.mask == "random" || c.mask == "equispaced" || c.mask == "equispaced-fraction" || c.mask == "full",
                "simulate --mask: expected random|equispaced|equispaced-fraction|full, got '", c.mask, "'");
  AMBIENT_CHECK(c.orientation == "axial" || c.orientation == "coronal" || c.orientation == "sagittal",
                "simulate --orientation: expected axial|coronal|sagittal, got '", c.orientation, "'");
  ambient::require_output_folder(output, "simulate -o");
  if (!reference.empty()) ambient::require_output_folder(reference, "simulate -r");
  AMBIENT_CHECK(std::filesystem::exists(input), "simulate: input volume not found: ", input,
                (input == kDefaultVolume ? " (install Debian's mricron-data package)" : ""));
  const mri::Volume volume = mri::read_nifti(input);
  const mri::Simulation sim = mri::simulate(volume, c);
  if (format == "ismrmrd") mri::write_ismrmrd(output, sim.scan);
  else if (format == "fastmri") mri::write_fastmri(output, sim.scan);
  else mri::write_cfl_kspace(output, sim.scan.ksp);
  if (!reference.empty()) mri::write_nifti(reference, mri::volume_from_geometry(sim.reference, sim.scan.geometry));
  if (!png.empty()) {
    // Slice 0: reference next to the zero-filled RSS, each scaled to its own maximum (they differ by whitening).
    auto ref = sim.reference[0];
    auto zf = mri::rss(mri::ifft2c(sim.scan.ksp[0]), 0);
    mri::write_png_row(png, {ref / ref.max(), zf / zf.max()}, 1.0);
  }
  std::cout << "simulated " << sim.scan.slices() << " slice(s), " << sim.scan.coils() << " coils, "
            << sim.scan.ny() << "x" << sim.scan.nx() << ", R = " << sim.scan.acceleration() << " -> " << output
            << (reference.empty() ? "" : " (+ reference " + reference + ")") << "\n";
  return 0;
}

}  // namespace ambient::app
