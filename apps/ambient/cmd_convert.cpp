// ambient convert: scan files to BART cfl, fastMRI HDF5, ISMRMRD, or a NIfTI of the zero-filled RSS image.
#include <iostream>

#include "ambient/core/error.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/fft.hpp"
#include "ambient/mri/io.hpp"
#include "cli.hpp"

namespace ambient::app {
namespace {

bool ends_with(const std::string& s, const std::string& e) {
  return s.size() >= e.size() && s.compare(s.size() - e.size(), e.size(), e) == 0;
}

}  // namespace

int run_convert(const std::vector<std::string>& args) {
  po::options_description opts("convert options");
  std::string file, output, to;
  mri::ReadOptions ro;
  bool prewhiten = false;
  opts.add_options()
      ("file", po::value(&file)->required(), "scan to convert")
      ("output,o", po::value(&output)->required(), "output: .cfl (BART k-space), .nii/.nii.gz (RSS image), .h5")
      ("to", po::value(&to), "cfl | nifti | fastmri | ismrmrd (default: from the extension; .h5 means ismrmrd)")
      ("prewhiten", po::bool_switch(&prewhiten), "whiten coils with the noise scan before writing")
      ("group", po::value(&ro.ismrmrd_group)->default_value(ro.ismrmrd_group), "ISMRMRD group name");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!parse("convert", "FILE -o OUTPUT [--to cfl|nifti|fastmri|ismrmrd]", opts, pos, args, vm)) return 0;
  if (to.empty()) {
    if (ends_with(output, ".cfl") || ends_with(output, ".hdr")) to = "cfl";
    else if (ends_with(output, ".nii") || ends_with(output, ".nii.gz")) to = "nifti";
    else if (ends_with(output, ".h5")) to = "ismrmrd";
    else fail("convert: cannot tell the output format from '", output, "'; give --to cfl|nifti|fastmri|ismrmrd");
  }
  ro.prewhiten = prewhiten;
  const mri::Scan scan = mri::read_scan(file, ro);
  if (to == "cfl") mri::write_cfl_kspace(output, scan.ksp);
  else if (to == "nifti")
    mri::write_nifti(output, mri::volume_from_geometry(mri::rss(mri::ifft2c(scan.ksp), 1), scan.geometry));
  else if (to == "fastmri") mri::write_fastmri(output, scan);
  else if (to == "ismrmrd") mri::write_ismrmrd(output, scan);
  else fail("convert --to: expected cfl|nifti|fastmri|ismrmrd, got '", to, "'");
  std::cout << "wrote " << output << " (" << to << ")\n";
  return 0;
}

}  // namespace ambient::app
