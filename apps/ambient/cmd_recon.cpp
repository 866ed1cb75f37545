// ambient recon: classical reconstruction (zero-filled or CG-SENSE with ESPIRiT maps) to NIfTI, PNG and metrics.
#include <filesystem>
#include <functional>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/distributed.hpp"
#include "ambient/diffusion/reconstruct.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/diffusion/volume_recon.hpp"
#include "ambient/mri/coils.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/metrics.hpp"
#include "ambient/mri/recon.hpp"
#include "cli.hpp"

namespace ambient::app {

int run_recon(const std::vector<std::string>& args) {
  po::options_description opts("recon options");
  std::string file, method, output, png_dir, reference, metrics_path, maps_out, maps_in, model_path, std_path,
      precision, mean_of;
  diffusion::ReconstructConfig rc;
  mri::ReadOptions ro;
  mri::EspiritConfig ec;
  mri::CgConfig cg = mri::cg_sense_defaults();
  bool no_prewhiten = false, keep_outside_maps = false;
  diffusion::DistConfig dist;
  opts.add_options()
      ("file", po::value(&file)->required(), "scan (.h5 ISMRMRD/fastMRI, .cfl)")
      ("method,m", po::value(&method)->default_value("cg-sense"),
       "zero-filled | cg-sense | posterior (model, fast data consistency) | dps (model, gradient guidance)")
      ("model", po::value(&model_path), "trained model (.pt checkpoint or TorchScript) for posterior | dps")
      ("samples", po::value(&rc.samples)->default_value(-1),
       "posterior samples per slice (their mean is the reconstruction, their spread the --std map); -1: the "
       "model's default (printed at the start; docs/sampling.md)")
      ("network-batch", po::value(&rc.network_batch)->default_value(rc.network_batch),
       "posterior | dps: images the network sees at once (0: all samples x slices); the result does not depend on "
       "it, the speed and memory do")
      ("slice-batch", po::value(&rc.slice_batch)->default_value(rc.slice_batch),
       "posterior | dps: slices sampled together, which bounds memory for any volume; 0: as many as keep one "
       "batch tensor under 128 MB (docs/reliability.md). Volumes larger than one batch give other (equally valid) "
       "samples for another value")
      ("steps", po::value(&rc.posterior.schedule.steps)->default_value(-1),
       "sampler steps; -1: the model's default")
      ("std", po::value(&std_path), "write the per-pixel standard deviation over samples here (.nii.gz)")
      ("seed", po::value(&rc.seed)->default_value(rc.seed), "sampler seed (the result is deterministic for it)")
      ("cg-per-step", po::value(&rc.posterior.cg_iterations)->default_value(rc.posterior.cg_iterations),
       "posterior: CG iterations of each data-consistency step")
      ("further-views", po::value(&rc.further_views)->default_value(rc.further_views),
       "posterior | dps, with --further-accel: the network's estimate is the mean over this many fixed further masks "
       "per sample (this many network calls per step)")
      ("further-accel", po::value(&rc.further_accel)->default_value(-1),
       "ambient-Fourier models: the network sees Ã^H Ã x through a fixed line mask of this acceleration, as in "
       "training (A-DPS); -1: the model's default (on for such models, docs/sampling.md), 0: off")
      ("gamma-floor", po::value(&rc.posterior.gamma_floor)->default_value(-1),
       "posterior: error variance of the model's estimate that remains at σ → 0 (network units); -1: the model's "
       "default (> 0 for ambient-Fourier models, which see x only through Ã)")
      ("gamma-scale", po::value(&rc.posterior.gamma_scale)->default_value(-1),
       "posterior: scale of the denoiser error variance γ(σ) the data-consistency step assumes (< 1: trust the "
       "model more, fewer noise-like artefacts; docs/sampling.md); -1: the model's default")
      ("mean-of", po::value(&mean_of)->default_value("conditional"),
       "posterior: conditional (each chain's last conditional mean E[x0 | x(σ_min), y], averaged: the same chains, "
       "less noise; docs/sampling.md) | samples (the plain mean of the samples)")
      ("keep-outside-maps", po::bool_switch(&keep_outside_maps), "posterior | dps: keep the model's fill where "
       "every coil map is 0 (no coil sees signal there; by default the image is 0 there, as CG-SENSE gives)")
      ("dps-step", po::value(&rc.posterior.dps_step)->default_value(rc.posterior.dps_step), "dps: step size ζ")
      ("noise-var", po::value(&rc.noise_var)->default_value(rc.noise_var),
       "k-space noise variance per sample (< 0: 1 for prewhitened scans, else estimated)")
      ("precision", po::value(&precision)->default_value("auto"), "auto | fp32 | bf16 for the network")
      ("output,o", po::value(&output)->required(), "magnitude volume to write (.nii.gz)")
      ("png", po::value(&png_dir), "folder for PNG previews (one per slice: zero-filled | recon [| ref | 5x error] [| 5x std])")
      ("reference", po::value(&reference), "fully sampled reference (.nii.gz) to compute NMSE/PSNR/SSIM against")
      ("metrics", po::value(&metrics_path), "write the metrics as JSON here (needs --reference)")
      ("maps", po::value(&maps_out), "also write the ESPIRiT maps as BART cfl [slice, coil, ky, kx]")
      ("coil-maps", po::value(&maps_in), "use these coil maps (BART cfl, e.g. from bart ecalib) instead of ESPIRiT")
      ("lambda", po::value(&cg.lambda)->default_value(cg.lambda), "CG-SENSE Tikhonov weight (A^H A has norm 1)")
      ("iterations", po::value(&cg.iterations)->default_value(cg.iterations), "CG-SENSE iterations")
      ("kernel", po::value(&ec.kernel)->default_value(ec.kernel), "ESPIRiT kernel width")
      ("threshold", po::value(&ec.threshold)->default_value(ec.threshold), "ESPIRiT singular-value threshold")
      ("crop", po::value(&ec.crop)->default_value(ec.crop), "ESPIRiT eigenvalue crop (0 keeps the whole FOV)")
      ("no-prewhiten", po::bool_switch(&no_prewhiten), "do not whiten coils with the file's noise scan")
      ("repetition", po::value(&ro.repetition)->default_value(ro.repetition), "ISMRMRD repetition (-1: average)")
      ("average", po::value(&ro.average)->default_value(ro.average), "ISMRMRD average index (-1: average them)")
      ("group", po::value(&ro.ismrmrd_group)->default_value(ro.ismrmrd_group), "ISMRMRD group name")
      ("dist-init", po::value(&dist.init)->default_value(dist.init),
       "launched as several ranks (torchrun/srun, docs/scaling.md): slices are shared out round-robin and rank 0 "
       "writes every output once; rendezvous env (MASTER_ADDR:MASTER_PORT) | file:///shared/path")
      ("dist-timeout", po::value(&dist.timeout_s)->default_value(dist.timeout_s), "seconds before a lost rank fails");
  po::positional_options_description pos;
  pos.add("file", 1);
  po::variables_map vm;
  if (!parse("recon", "FILE -o out.nii.gz [--method zero-filled|cg-sense|posterior|dps] [--model m.pt] [--png DIR] "
             "[--reference ref.nii.gz]",
             opts, pos, args, vm))
    return 0;
  const auto how = diffusion::parse_recon_method(method, "recon --method");
  AMBIENT_CHECK(mean_of == "conditional" || mean_of == "samples", "recon --mean-of: expected conditional|samples, "
                "got '", mean_of, "'");
  rc.conditional_mean = mean_of == "conditional";
  rc.zero_outside_maps = !keep_outside_maps;
  const bool with_model = diffusion::samples_with_model(how);
  AMBIENT_CHECK(!with_model || !model_path.empty(), "recon --method ", method, " needs --model (a trained .pt)");
  AMBIENT_CHECK(std_path.empty() || with_model, "recon --std needs a sampling method (posterior or dps)");
  AMBIENT_CHECK(precision == "auto" || precision == "fp32" || precision == "bf16",
                "recon --precision: expected auto|fp32|bf16, got '", precision, "'");
  AMBIENT_CHECK(rc.further_views >= 1, "recon --further-views: expected at least 1, got ", rc.further_views);
  AMBIENT_CHECK(rc.slice_batch >= 0, "recon --slice-batch: expected 0 (automatic) or a number of slices, got ",
                rc.slice_batch);
  const auto group = diffusion::join_group(dist);
  const bool main_rank = group->is_main();
  diffusion::ModelPtr model;
  if (with_model) {
    model = diffusion::load_denoiser(model_path);  // fail on a bad model before any work
    AMBIENT_CHECK(rc.further_accel == -1 || rc.further_accel == 0 || rc.further_accel > 1, "recon --further-accel: "
                  "expected an acceleration > 1, 0 (off) or -1 (the model's default), got ", rc.further_accel);
    // The model's own defaults (the library chooses them from the checkpoint); options given here override.
    rc = diffusion::with_defaults_for(rc, model_path);
    AMBIENT_CHECK(rc.samples >= 1, "recon --samples: expected at least 1 (or -1 for the default), got ", rc.samples);
    AMBIENT_CHECK(rc.posterior.schedule.steps >= 1, "recon --steps: expected at least 1 (or -1 for the default), got ",
                  rc.posterior.schedule.steps);
    if (main_rank) {
      std::cout << "sampling: " << rc.samples << " samples x " << rc.posterior.schedule.steps << " steps per slice\n";
      if (rc.further_accel > 0)
        std::cout << "network input: Ã^H Ã x_t through a fixed further line mask at R = " << rc.further_accel
                  << " per sample (A-DPS; --further-accel), γ floor " << rc.posterior.gamma_floor << ", γ scale "
                  << rc.posterior.gamma_scale << "\n";
      else
        std::cout << "network input: x_t, γ floor " << rc.posterior.gamma_floor << ", γ scale "
                  << rc.posterior.gamma_scale << "\n";
    }
  }
  AMBIENT_CHECK(metrics_path.empty() || !reference.empty(), "recon --metrics needs --reference");
  ambient::require_output_folder(output, "recon -o");  // before minutes of sampling, not after
  if (!std_path.empty()) ambient::require_output_folder(std_path, "recon --std");
  if (!metrics_path.empty()) ambient::require_output_folder(metrics_path, "recon --metrics");
  if (!maps_out.empty()) ambient::require_output_folder(maps_out, "recon --maps");
  if (!png_dir.empty()) {
    std::error_code ec_dir;
    std::filesystem::create_directories(png_dir, ec_dir);
    AMBIENT_CHECK(std::filesystem::is_directory(png_dir), "recon --png: cannot create folder ", png_dir);
  }
  ro.prewhiten = !no_prewhiten;
  const mri::Scan scan = mri::read_scan(file, ro);
  torch::Tensor ref;
  if (!reference.empty()) {
    ref = mri::read_nifti(reference).data;
    AMBIENT_CHECK(ref.sizes() == torch::IntArrayRef({scan.slices(), scan.ny(), scan.nx()}),
                  "recon --reference ", reference, ": expected a volume [", scan.slices(), ", ", scan.ny(), ", ", scan.nx(),
                  "] (slices, ky, kx) to match the scan, got ", shape_string(ref.sizes().vec()));
  }

  StageBars bars(main_rank);
  torch::Tensor maps;
  if (!maps_in.empty()) {
    maps = mri::read_cfl_maps(maps_in);
    AMBIENT_CHECK(maps.sizes() == scan.ksp.sizes(), "recon --coil-maps: maps ", shape_string(maps.sizes().vec()),
                  " (slice, coil, ky, kx) do not match the scan's k-space ", shape_string(scan.ksp.sizes().vec()),
                  "; missing coil data or a different matrix?");
  } else {
    maps = diffusion::shared_espirit_maps(scan, ec, *group, std::ref(bars));
    bars.finish();
  }
  if (!maps_out.empty() && main_rank) mri::write_cfl_kspace(maps_out, maps);
  diffusion::VolumeReconConfig vc;
  vc.method = how;
  vc.cg = cg;
  rc.bf16 = precision == "bf16" || (precision == "auto" && cpu_has_bf16());
  vc.model = rc;
  const auto r = diffusion::reconstruct_volume(scan, maps, vc, model, *group, std::ref(bars));
  bars.finish();
  const auto& zf = r.zero_filled;
  const auto& x = r.image;
  const auto& std_map = r.std;
  if (!main_rank) return 0;  // rank 0 writes every output, once
  const auto mag = x.abs();
  mri::write_nifti(output, mri::volume_from_geometry(mag, scan.geometry));
  std::cout << "wrote " << output << " (" << scan.slices() << " x " << scan.ny() << " x " << scan.nx() << ", "
            << method << ")\n";
  if (!std_path.empty()) {
    mri::write_nifti(std_path, mri::volume_from_geometry(std_map, scan.geometry));
    std::cout << "wrote " << std_path << " (per-pixel standard deviation over " << rc.samples << " samples)\n";
  }

  if (!png_dir.empty()) {
    const double hi = (ref.defined() ? ref : mag).flatten().quantile(0.995).item<double>();
    for (int64_t s = 0; s < scan.slices(); ++s) {
      std::vector<torch::Tensor> row = {zf[s].abs(), mag[s]};
      if (ref.defined()) row.insert(row.end(), {ref[s], 5 * (mag[s] - ref[s]).abs()});
      if (std_map.defined()) row.push_back(5 * std_map[s]);
      std::ostringstream name;
      name << png_dir << "/slice_" << std::setw(3) << std::setfill('0') << s << ".png";
      mri::write_png_row(name.str(), row, hi);
    }
    std::cout << "wrote " << scan.slices() << " PNG preview(s) to " << png_dir << "\n";
  }
  if (ref.defined()) {
    const auto m = mri::evaluate(ref, mag);
    const auto mz = mri::evaluate(ref, zf.abs());
    std::cout << std::fixed << std::setprecision(4) << "metrics vs " << reference << ":\n"
              << "  " << std::left << std::setw(12) << method << " NMSE " << m.nmse << "  PSNR " << m.psnr
              << " dB  SSIM " << m.ssim << "\n"
              << "  " << std::setw(12) << "zero-filled" << " NMSE " << mz.nmse << "  PSNR " << mz.psnr << " dB  SSIM "
              << mz.ssim << "\n";
    if (!metrics_path.empty()) {
      JsonObject j;
      j.add("scan", file).add("reference", reference).add("method", method);
      j.add("nmse", m.nmse).add("psnr", m.psnr).add("ssim", m.ssim);
      j.add("zero_filled_nmse", mz.nmse).add("zero_filled_psnr", mz.psnr).add("zero_filled_ssim", mz.ssim);
      write_text(metrics_path, j.str() + "\n");
    }
  }
  return 0;
}

}  // namespace ambient::app
