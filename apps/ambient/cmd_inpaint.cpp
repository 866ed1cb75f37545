// ambient inpaint: fill the pixels a mask hid in a magnitude volume (a block-corrupted scan) by posterior sampling
// with a trained model, the network seeing each iterate as training showed it data (issue 16 item 2).
#include <filesystem>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/diffusion/inpaint.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/metrics.hpp"
#include "cli.hpp"

namespace ambient::app {
namespace {

/// Σ |x − ref|² / Σ |ref|² over the pixels where `where` is 1.
double nmse_where(const torch::Tensor& ref, const torch::Tensor& x, const torch::Tensor& where) {
  const double den = (where * ref.square()).sum().item<double>();
  return den > 0 ? (where * (x - ref).square()).sum().item<double>() / den : 0.0;
}

}  // namespace

int run_inpaint(const std::vector<std::string>& args) {
  po::options_description opts("inpaint options");
  std::string model_path, image_path, mask_path, output, std_path, png_dir, reference, metrics_path, mask_out,
      block_size = "8,32", precision;
  int64_t erase_blocks = 0, slice_batch = 8;
  double further_delta = 0, gamma_floor = -1, sigma_min = -1;
  diffusion::InpaintConfig ic;
  ic.posterior.noise_var = 1e-4;
  opts.add_options()
      ("model", po::value(&model_path)->required(), "trained model (.pt): an ambient image (block or pixel) model, "
       "or one trained on clean images")
      ("image,i", po::value(&image_path)->required(), "magnitude volume to fill (.nii.gz), slices along its third axis")
      ("mask", po::value(&mask_path), "volume of the same shape: nonzero where the image was observed")
      ("erase-blocks", po::value(&erase_blocks)->default_value(0),
       "instead of --mask: erase this many boxes of --block-size from each slice of --image (a clean volume, then "
       "also the reference for the metrics) to try the model on a known truth")
      ("write-mask", po::value(&mask_out), "write the mask used (1 observed, 0 hidden) here (.nii.gz)")
      ("output,o", po::value(&output)->required(), "the posterior mean's magnitude (.nii.gz)")
      ("std", po::value(&std_path), "the per-pixel standard deviation over the samples (.nii.gz)")
      ("png", po::value(&png_dir), "folder for PNG previews, one per slice: input | filled [| reference | 5x error] "
       "| 5x std")
      ("reference", po::value(&reference), "the true volume (.nii.gz), for NMSE/PSNR/SSIM, overall and in the holes")
      ("metrics", po::value(&metrics_path), "write the metrics as JSON here")
      ("samples", po::value(&ic.samples)->default_value(ic.samples), "posterior samples (chains) per slice")
      ("steps", po::value(&ic.posterior.schedule.steps)->default_value(32), "sampler steps")
      ("sigma-min", po::value(&sigma_min)->default_value(-1),
       "the schedule's last noise level, whose conditional mean is the output; -1: 0.1 for models with a mask "
       "channel (their prediction of hidden pixels is best there; docs/objectives.md), else EDM's 0.002")
      ("views", po::value(&ic.views)->default_value(ic.views),
       "ambient image models: 0 shows the network each iterate through the image's own mask (Daras et al.'s fixed "
       "Ã; the holes end at their conditional mean; measured best, docs/objectives.md); K >= 1: through K masks per "
       "chain drawn as training drew Ã (--further-blocks / --further-delta; K network calls per step). Models "
       "trained on clean images take 0")
      ("further-blocks", po::value(&ic.draw.blocks)->default_value(0),
       "boxes each view erases: as training's Ã, finetune's --blocks plus --extra-blocks")
      ("further-delta", po::value(&further_delta)->default_value(0),
       "pixel models: the fraction of pixels each view erases (finetune's pixel fraction and --delta combined)")
      ("block-size", po::value(&block_size)->default_value(block_size),
       "box side range min,max, of --further-blocks and --erase-blocks (finetune's --block-size)")
      ("noise-var", po::value(&ic.posterior.noise_var)->default_value(ic.posterior.noise_var),
       "noise variance of the observed pixels per complex sample, with each slice scaled so that its observed "
       "pixels' 99th percentile is 1")
      ("gamma-floor", po::value(&gamma_floor)->default_value(-1),
       "error variance the model's estimate keeps at σ → 0 (network units), so that the observed pixels follow "
       "the data where no view showed them to the network; -1: 0.01 for models with a mask channel, 0 otherwise")
      ("slice-batch", po::value(&slice_batch)->default_value(slice_batch), "slices sampled together (memory)")
      ("seed", po::value(&ic.seed)->default_value(ic.seed), "seed (the result is deterministic for it)")
      ("precision", po::value(&precision)->default_value("auto"), "auto | fp32 | bf16 for the network");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!parse("inpaint", "--model m.pt -i damaged.nii.gz --mask observed.nii.gz -o filled.nii.gz [--views K "
             "--further-blocks N --block-size a,b] [--png DIR] [--reference truth.nii.gz]", opts, pos, args, vm))
    return 0;
  AMBIENT_CHECK(mask_path.empty() != (erase_blocks == 0), "inpaint: give either --mask (the observed pixels) or "
                "--erase-blocks N (erase boxes from a clean --image), not ", mask_path.empty() ? "neither" : "both");
  AMBIENT_CHECK(erase_blocks >= 0, "inpaint --erase-blocks: expected a count >= 0, got ", erase_blocks);
  AMBIENT_CHECK(ic.samples >= 1 && ic.samples <= 256, "inpaint --samples: expected 1 to 256, got ", ic.samples);
  AMBIENT_CHECK(ic.posterior.schedule.steps >= 1 && ic.posterior.schedule.steps <= 1000,
                "inpaint --steps: expected 1 to 1000, got ", ic.posterior.schedule.steps);
  AMBIENT_CHECK(ic.views >= 0 && ic.views <= 64, "inpaint --views: expected 0 to 64, got ", ic.views);
  AMBIENT_CHECK(ic.draw.blocks >= 0, "inpaint --further-blocks: expected a count >= 0, got ", ic.draw.blocks);
  AMBIENT_CHECK(further_delta >= 0 && further_delta < 1, "inpaint --further-delta: expected [0, 1), got ",
                further_delta);
  AMBIENT_CHECK(ic.posterior.noise_var > 0, "inpaint --noise-var: expected a positive variance, got ",
                ic.posterior.noise_var);
  AMBIENT_CHECK(slice_batch >= 1, "inpaint --slice-batch: expected at least 1, got ", slice_batch);
  AMBIENT_CHECK(precision == "auto" || precision == "fp32" || precision == "bf16",
                "inpaint --precision: expected auto|fp32|bf16, got '", precision, "'");
  AMBIENT_CHECK(metrics_path.empty() || !reference.empty() || erase_blocks > 0,
                "inpaint --metrics needs --reference (or --erase-blocks, whose --image is the reference)");
  const auto sizes = int_list(block_size, "inpaint --block-size");
  AMBIENT_CHECK(sizes.size() == 2 && sizes[0] >= 1 && sizes[0] <= sizes[1],
                "inpaint --block-size: expected min,max with 1 <= min <= max, got '", block_size, "'");
  ic.draw.min_size = sizes[0], ic.draw.max_size = sizes[1], ic.draw.delta = further_delta;
  for (const auto* p : {&output, &std_path, &metrics_path, &mask_out})
    if (!p->empty()) ambient::require_output_folder(*p, "inpaint output");
  if (!png_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(png_dir, ec);
    AMBIENT_CHECK(std::filesystem::is_directory(png_dir), "inpaint --png: cannot create folder ", png_dir);
  }

  auto model = diffusion::load_denoiser(model_path);  // fail on a bad model before reading volumes
  const int64_t cond = model->cond_channels();
  AMBIENT_CHECK(cond <= 1, "inpaint: ", model_path, " takes ", cond, " corruption channels; expected an image-domain "
                "model (0: trained on clean images, 1: an ambient image model)");
  if (cond == 0 && ic.views > 0) {
    std::cout << "model without a mask channel (trained on clean images): it sees the iterate itself (--views 0)\n";
    ic.views = 0;
  }
  AMBIENT_CHECK(ic.views == 0 || ic.draw.blocks > 0 || further_delta > 0,
                "inpaint --views ", ic.views, ": say how training drew Ã, with --further-blocks N (finetune's --blocks "
                "plus --extra-blocks) and --block-size, or --further-delta for a pixel model; or use --views 0");
  AMBIENT_CHECK(ic.draw.blocks == 0 || further_delta == 0, "inpaint: give --further-blocks or --further-delta, not both");
  AMBIENT_CHECK(gamma_floor == -1 || gamma_floor >= 0, "inpaint --gamma-floor: expected >= 0 (or -1, the default), got ",
                gamma_floor);
  ic.posterior.gamma_floor = gamma_floor >= 0 ? gamma_floor : (cond > 0 ? 0.01 : 0.0);
  AMBIENT_CHECK(sigma_min == -1 || (sigma_min > 0 && sigma_min < 10), "inpaint --sigma-min: expected a noise level "
                "in (0, 10) (or -1, the default), got ", sigma_min);
  ic.posterior.schedule.sigma_min = sigma_min > 0 ? sigma_min : (cond > 0 ? 0.1 : 0.002);

  const mri::Volume volume = mri::read_nifti(image_path);
  const auto image = volume.data.to(torch::kFloat);  // [S, H, W]
  AMBIENT_CHECK(image.dim() == 3, "inpaint --image ", image_path, ": expected a volume [slices, rows, columns], got ",
                shape_string(image.sizes().vec()));
  const int64_t slices = image.size(0), h = image.size(1), w = image.size(2);
  AMBIENT_CHECK(h >= 8 && w >= 8, "inpaint --image: expected slices of at least 8 x 8 pixels, got ", h, " x ", w);
  torch::Tensor mask;
  if (!mask_path.empty()) {
    mask = mri::read_nifti(mask_path).data;
    AMBIENT_CHECK(mask.sizes() == image.sizes(), "inpaint --mask ", mask_path, ": its shape ",
                  shape_string(mask.sizes().vec()), " differs from the image's ", shape_string(image.sizes().vec()));
    mask = (mask != 0).to(torch::kFloat);
  } else {
    AMBIENT_CHECK(sizes[1] <= std::max(h, w), "inpaint --block-size: boxes of up to ", sizes[1],
                  " pixels do not fit slices of ", h, " x ", w);
    std::vector<torch::Tensor> per_slice;
    for (int64_t s = 0; s < slices; ++s)
      per_slice.push_back(mri::random_blocks(h, w, erase_blocks, sizes[0], sizes[1],
                                             static_cast<uint32_t>(derive_seed(ic.seed, SeedStream::inpaint_masks,
                                                                               static_cast<uint64_t>(s)))));
    mask = torch::stack(per_slice).to(torch::kFloat);
  }
  torch::Tensor ref;
  if (!reference.empty()) {
    ref = mri::read_nifti(reference).data.to(torch::kFloat);
    AMBIENT_CHECK(ref.sizes() == image.sizes(), "inpaint --reference ", reference, ": its shape ",
                  shape_string(ref.sizes().vec()), " differs from the image's ", shape_string(image.sizes().vec()));
  } else if (erase_blocks > 0) {
    ref = image;
  }
  // Each slice in network units: its observed pixels' 99th percentile of the magnitude at 1, as training scales.
  auto scale = torch::ones({slices});
  for (int64_t s = 0; s < slices; ++s) {
    auto seen = image[s].abs().masked_select(mask[s] > 0);
    AMBIENT_CHECK(seen.numel() > 0, "inpaint: slice ", s, " has no observed pixels (its mask is all zero)");
    scale[s] = std::max(1e-12, seen.quantile(0.99).item<double>());
  }
  const double hidden_fraction = 1 - mask.mean().item<double>();
  AMBIENT_CHECK(hidden_fraction > 0, "inpaint: the mask hides no pixel: nothing to fill");
  std::cout << "inpaint: " << slices << " slice(s) of " << h << " x " << w << ", " << std::fixed
            << std::setprecision(1) << 100 * hidden_fraction << "% of the pixels hidden; " << ic.samples
            << " sample(s) x " << ic.posterior.schedule.steps << " steps, ";
  if (ic.views == 0)
    std::cout << (cond == 0 ? "the network sees the iterate\n" : "the network sees the iterate through its mask\n");
  else
    std::cout << ic.views << " views of "
              << (ic.draw.blocks > 0 ? std::to_string(ic.draw.blocks) + " boxes" : "erased pixels") << " per chain\n";
  std::cout.unsetf(std::ios::fixed);

  const bool bf16 = precision == "bf16" || (precision == "auto" && cpu_has_bf16());
  auto net = diffusion::chunked(diffusion::as_denoiser(model), 4);  // small batches are faster on CPU (edm.hpp)
  diffusion::DenoiserFn d = [&](const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& c) {
    diffusion::Bf16Autocast autocast(bf16);
    return net(x, s, c).to(torch::kFloat);
  };
  auto mean = torch::zeros({slices, h, w}), spread = torch::zeros({slices, h, w});
  const int64_t batches = (slices + slice_batch - 1) / slice_batch;
  Progress bar("inpainting", batches * ic.posterior.schedule.steps);
  for (int64_t b = 0; b < batches; ++b) {
    const int64_t first = b * slice_batch, n = std::min(slice_batch, slices - first);
    auto sc = scale.narrow(0, first, n).reshape({-1, 1, 1});
    auto m = mask.narrow(0, first, n);
    auto y = (image.narrow(0, first, n) / sc * m).to(torch::kComplexFloat);
    auto c = ic;
    c.seed = derive_seed(ic.seed, SeedStream::recon_slices, static_cast<uint64_t>(first));
    const int64_t done = b * ic.posterior.schedule.steps;
    const auto r = diffusion::inpaint(d, y, m, cond, c, [&](int64_t step, double) { bar.update(done + step); });
    mean.narrow(0, first, n).copy_(r.mean.abs() * sc);
    spread.narrow(0, first, n).copy_(r.std * sc);
  }
  bar.finish();
  auto as_volume = [&](const torch::Tensor& data) {
    mri::Volume v = volume;
    v.data = data.contiguous();
    return v;
  };
  mri::write_nifti(output, as_volume(mean));
  std::cout << "wrote " << output << "\n";
  if (!std_path.empty()) {
    mri::write_nifti(std_path, as_volume(spread));
    std::cout << "wrote " << std_path << " (per-pixel standard deviation over " << ic.samples << " samples)\n";
  }
  if (!mask_out.empty()) {
    mri::write_nifti(mask_out, as_volume(mask));
    std::cout << "wrote " << mask_out << "\n";
  }
  const auto input = image * mask;
  if (!png_dir.empty()) {
    const double hi = std::max(1e-12, (ref.defined() ? ref : mean).flatten().quantile(0.995).item<double>());
    for (int64_t s = 0; s < slices; ++s) {
      std::vector<torch::Tensor> row = {input[s], mean[s]};
      if (ref.defined()) row.insert(row.end(), {ref[s], 5 * (mean[s] - ref[s]).abs()});
      row.push_back(5 * spread[s]);
      std::ostringstream name;
      name << png_dir << "/slice_" << std::setw(3) << std::setfill('0') << s << ".png";
      mri::write_png_row(name.str(), row, hi);
    }
    std::cout << "wrote " << slices << " PNG preview(s) to " << png_dir << "\n";
  }
  if (ref.defined()) {
    const auto hidden = 1 - mask;
    const auto m = mri::evaluate(ref, mean), mz = mri::evaluate(ref, input);
    const double holes = nmse_where(ref, mean, hidden), holes_zero = nmse_where(ref, input, hidden);
    std::cout << std::fixed << std::setprecision(4) << "metrics against " << (reference.empty() ? image_path : reference)
              << ":\n  filled  NMSE " << m.nmse << "  PSNR " << m.psnr << " dB  SSIM " << m.ssim
              << "  NMSE in the holes " << holes << "\n  input   NMSE " << mz.nmse << "  PSNR " << mz.psnr
              << " dB  SSIM " << mz.ssim << "  NMSE in the holes " << holes_zero << "\n";
    if (!metrics_path.empty()) {
      JsonObject j;
      j.add("image", image_path).add("model", model_path).add("hidden_fraction", hidden_fraction);
      j.add("samples", static_cast<double>(ic.samples)).add("views", static_cast<double>(ic.views));
      j.add("steps", static_cast<double>(ic.posterior.schedule.steps));
      j.add("nmse", m.nmse).add("psnr", m.psnr).add("ssim", m.ssim).add("hole_nmse", holes);
      j.add("input_nmse", mz.nmse).add("input_psnr", mz.psnr).add("input_ssim", mz.ssim);
      j.add("input_hole_nmse", holes_zero);
      write_text(metrics_path, j.str() + "\n");
      std::cout << "wrote " << metrics_path << "\n";
    }
  }
  return 0;
}

}  // namespace ambient::app
