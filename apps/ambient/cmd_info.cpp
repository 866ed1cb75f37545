// ambient info: what a scan file holds (format, matrix, coils, slices, sampling, calibration, noise, geometry).
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/io.hpp"
#include "cli.hpp"

namespace ambient::app {

int run_info(const std::vector<std::string>& args) {
  po::options_description opts("info options");
  std::string file, group;
  opts.add_options()("file", po::value(&file)->required(), "scan file (.h5 ISMRMRD/fastMRI, .cfl) or model checkpoint (.pt)")(
      "group", po::value(&group)->default_value("dataset"), "ISMRMRD group name")(
      "json", "print a JSON object instead of text");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!parse("info", "FILE [--json]", opts, pos, args, vm)) return 0;
  mri::ReadOptions ro;
  ro.ismrmrd_group = group;
  if (file.size() > 3 && file.compare(file.size() - 3, 3, ".pt") == 0) {
    const auto c = diffusion::describe_checkpoint(file);
    if (vm.count("json")) {
      JsonObject j;
      j.add("file", file).add("format", "ambient-checkpoint").add("network", c.net_config);
      j.add("objective", c.objective).add("step", static_cast<double>(c.step));
      j.add("noise_convention", static_cast<double>(c.noise_convention));
      j.add("parameters", static_cast<double>(c.parameters)).add("sigma_data", c.sigma_data);
      j.add("precond", c.precond).add("model_hash", c.model_hash).add("ema_hash", c.ema_hash);
      std::cout << j.str() << "\n";
    } else {
      std::cout << "file          " << file << "\nformat        ambient checkpoint\nnetwork       " << c.net_config
                << "\nparameters    " << c.parameters << "\nobjective     " << c.objective
                << (c.noise_convention == 1 ? " (old noise draw: σ/√2 per channel; sampled as told √2 σ)" : "")
                << "\nstep          "
                << c.step << (c.has_optimizer ? " (resumable)" : "") << "\nsigma_data    " << c.sigma_data
                << "\nprecond       " << c.precond
                << "\nmodel hash    " << c.model_hash << "\nEMA hash      " << c.ema_hash << "\n";
    }
    return 0;
  }
  const mri::Scan s = mri::read_scan(file, ro);
  const int64_t sampled = s.mask.sum().item<int64_t>();
  const int64_t acs = s.calib[0].sum().item<int64_t>();
  const int64_t calibration = s.calibration_lines()[0].sum().item<int64_t>();
  const auto vox = s.geometry.voxel_size(s.ny(), s.nx());
  const auto& g0 = s.geometry.slices.at(0);
  auto vec = [](const mri::Vec3& v) {
    std::ostringstream os;
    os << std::setprecision(5) << "[" << v[0] << ", " << v[1] << ", " << v[2] << "]";
    return os.str();
  };
  if (vm.count("json")) {
    JsonObject j;
    j.add("file", file).add("format", s.format).add("slices", s.slices()).add("coils", s.coils());
    j.add("ky", s.ny()).add("kx", s.nx()).add("sampled_lines", sampled).add("acceleration", s.acceleration());
    j.add("acs_lines", acs).add("calibration_lines", calibration);
    j.add("calibration_only_lines", s.calib_ksp.defined() ? 1.0 : 0.0);
    j.add("noise_samples", s.noise.defined() ? s.noise.size(1) : 0).add("prewhitened", s.prewhitened ? 1.0 : 0.0);
    j.add_raw("fov_mm", vec(s.geometry.fov_mm)).add_raw("voxel_mm", vec(vox));
    j.add_raw("position_first_slice", vec(g0.position)).add_raw("read_dir", vec(g0.read_dir));
    j.add_raw("phase_dir", vec(g0.phase_dir)).add_raw("slice_dir", vec(g0.slice_dir));
    for (const auto& [k, v] : s.meta) j.add("meta_" + k, v);
    std::cout << j.str() << "\n";
    return 0;
  }
  std::cout << std::setprecision(4);
  std::cout << "file          " << file << "\n"
            << "format        " << s.format << "\n"
            << "matrix        " << s.ny() << " (ky, phase encode) x " << s.nx() << " (kx, readout)\n"
            << "coils         " << s.coils() << "\n"
            << "slices        " << s.slices() << "\n"
            << "sampled lines " << sampled << " of " << s.mask.numel() << " (all slices)\n"
            << "acceleration  R = " << s.acceleration() << "\n"
            << "ACS lines     " << acs << " (slice 0)" << (s.calib_ksp.defined() ? ", with calibration-only lines" : "")
            << "\n"
            << "calibration   " << calibration << " lines (slice 0: the ACS lines and the sampled lines next to them; "
            << "ESPIRiT uses the central " << mri::EspiritConfig{}.calib_size << " by default)\n"
            << "noise scan    "
            << (s.noise.defined() ? std::to_string(s.noise.size(1)) + " samples per coil" +
                                        (s.prewhitened ? ", data prewhitened" : "")
                                  : std::string("none"))
            << "\n"
            << "FOV           " << vec(s.geometry.fov_mm) << " mm\n"
            << "voxel         " << vec(vox) << " mm\n"
            << "slice 0       position " << vec(g0.position) << " mm (LPS)\n"
            << "              read " << vec(g0.read_dir) << " phase " << vec(g0.phase_dir) << " slice "
            << vec(g0.slice_dir) << "\n";
  for (const auto& [k, v] : s.meta) std::cout << std::left << std::setw(14) << k << " " << v << "\n";
  return 0;
}

}  // namespace ambient::app
