// ambient sample: unconditional samples from a trained model, as a PNG grid (and optionally a NIfTI stack).
#include <ATen/CPUGeneratorImpl.h>

#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/diffusion/inpaint.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/samplers.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"
#include "cli.hpp"

namespace ambient::app {

int run_sample(const std::vector<std::string>& args) {
  po::options_description opts("sample options");
  std::string model_path, output, nifti, precision;
  double further_delta = 0, further_accel = 0;
  int64_t n = 16, size = 128, further_blocks = 0, views = 1;
  std::string block_size = "8,32";
  uint64_t seed = 0;
  diffusion::HeunConfig hc;
  opts.add_options()
      ("model", po::value(&model_path)->required(), "trained model (.pt checkpoint or TorchScript)")
      ("n,n", po::value(&n)->default_value(n), "number of samples")
      ("output,o", po::value(&output)->required(), "PNG grid of the sample magnitudes")
      ("nifti", po::value(&nifti), "also write the magnitudes as a NIfTI stack [n, size, size]")
      ("size", po::value(&size)->default_value(size), "image size (square)")
      ("steps", po::value(&hc.schedule.steps)->default_value(32), "Heun steps")
      ("churn", po::value(&hc.s_churn)->default_value(0), "stochastic churn S_churn (0: deterministic)")
      ("seed", po::value(&seed)->default_value(seed), "seed")
      ("precision", po::value(&precision)->default_value("auto"), "auto | fp32 | bf16")
      ("further-delta", po::value(&further_delta)->default_value(0),
       "ambient-image models: the network sees x through one fixed mask Ã erasing this fraction of pixels")
      ("further-accel", po::value(&further_accel)->default_value(0),
       "ambient-fourier models: the network sees x through one fixed line mask of this acceleration")
      ("further-blocks", po::value(&further_blocks)->default_value(0),
       "ambient-block models: the network sees x through one fixed mask Ã erasing this many boxes (as training's Ã: "
       "finetune's --blocks plus --extra-blocks)")
      ("block-size", po::value(&block_size)->default_value(block_size), "--further-blocks: box side range min,max")
      ("views", po::value(&views)->default_value(views),
       "--further-delta/--further-blocks: draw this many masks Ã per sample and predict each pixel from the ones "
       "that show it (K network calls per step; docs/objectives.md). 1: one fixed Ã, Daras et al.'s sampler");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!parse("sample", "--model m.pt -n 16 -o grid.png [--nifti out.nii.gz]", opts, pos, args, vm)) return 0;
  AMBIENT_CHECK(n >= 1 && n <= 1024, "sample -n: expected 1 to 1024, got ", n);
  ambient::require_output_folder(output, "sample -o");
  if (!nifti.empty()) ambient::require_output_folder(nifti, "sample --nifti");
  AMBIENT_CHECK(precision == "auto" || precision == "fp32" || precision == "bf16",
                "sample --precision: expected auto|fp32|bf16, got '", precision, "'");
  AMBIENT_CHECK(size >= 8 && size <= 1024, "sample --size: expected 8 to 1024, got ", size);
  const bool bf16 = precision == "bf16" || (precision == "auto" && cpu_has_bf16());
  auto model = diffusion::load_denoiser(model_path);
  torch::Tensor cond;
  if (model->cond_channels() > 0) cond = torch::ones({n, model->cond_channels(), size, size});
  auto d = diffusion::chunked(diffusion::as_denoiser(model), 4);  // small batches are faster on CPU (edm.hpp)
  // The ambient sampler (Daras et al. 2023): the network sees the sample through one fixed further corruption Ã,
  // drawn once, at every step, as it saw data during training.
  AMBIENT_CHECK(further_delta >= 0 && further_delta < 1, "sample --further-delta: expected [0, 1), got ",
                further_delta);
  AMBIENT_CHECK(further_accel == 0 || further_accel > 1, "sample --further-accel: expected > 1, got ", further_accel);
  AMBIENT_CHECK(further_blocks >= 0, "sample --further-blocks: expected a count >= 0, got ", further_blocks);
  AMBIENT_CHECK((further_delta > 0) + (further_accel > 0) + (further_blocks > 0) <= 1,
                "sample: give one of --further-delta, --further-accel, --further-blocks");
  const auto sizes = int_list(block_size, "--block-size");
  AMBIENT_CHECK(sizes.size() == 2 && sizes[0] >= 1 && sizes[0] <= sizes[1] && sizes[1] <= size,
                "sample --block-size: expected min,max with 1 <= min <= max <= --size, got '", block_size, "'");
  AMBIENT_CHECK(views >= 1 && views <= 64, "sample --views: expected 1 to 64, got ", views);
  AMBIENT_CHECK(views == 1 || further_delta > 0 || further_blocks > 0,
                "sample --views: several views are of image masks: give --further-delta or --further-blocks");
  if (further_delta > 0 || further_accel > 0 || further_blocks > 0) {
    AMBIENT_CHECK(model->cond_channels() == 1, "sample: the ambient sampler needs a model trained with a mask channel");
    if (further_accel > 0) {
      // Single-coil: the adjoint image of the line-masked spectrum, Ã = M̃ F.
      std::vector<torch::Tensor> rows;
      for (int64_t i = 0; i < n; ++i)
        rows.push_back(mri::further_line_mask(
            size, further_accel,
            static_cast<uint32_t>(derive_seed(seed, SeedStream::further_masks, static_cast<uint64_t>(i)))));
      d = diffusion::seen_through(d, diffusion::line_corruption(torch::ones({n, 1, size, size}, torch::kComplexFloat),
                                                                torch::stack(rows)));
    } else {
      // View 0 is the one fixed Ã that a single-view run draws; further views draw their own.
      diffusion::ViewDraw draw;
      draw.blocks = further_blocks, draw.min_size = sizes[0], draw.max_size = sizes[1], draw.delta = further_delta;
      const auto masks = diffusion::draw_views(n, size, size, views, draw, seed);
      d = views == 1 ? diffusion::seen_through(d, diffusion::image_corruption(masks[0]))
                     : diffusion::seen_through_views(d, masks);
    }
  }
  diffusion::DenoiserFn denoise = [&](const torch::Tensor& x, const torch::Tensor& s, const torch::Tensor& c) {
    diffusion::Bf16Autocast autocast(bf16);
    return d(x, s, c).to(torch::kFloat);
  };
  auto gen = at::detail::createCPUGenerator(seed);
  Progress bar("sampling " + std::to_string(n), hc.schedule.steps);
  auto x = diffusion::sample_heun(denoise, {n, 2, size, size}, hc, gen, cond,
                                  [&](int64_t step, double) { bar.update(step); });
  bar.finish();
  auto mag = diffusion::from_channels(x).abs();  // [n, size, size]
  // Grid: ceil(sqrt(n)) columns, each image windowed to the 99.5th percentile of all samples.
  const int64_t cols = static_cast<int64_t>(std::ceil(std::sqrt(static_cast<double>(n))));
  const int64_t rows = (n + cols - 1) / cols;
  auto grid = torch::zeros({rows * (size + 2), cols * (size + 2)});
  for (int64_t i = 0; i < n; ++i)
    grid.narrow(0, (i / cols) * (size + 2), size).narrow(1, (i % cols) * (size + 2), size).copy_(mag[i]);
  const double hi = std::max(1e-6, mag.flatten().quantile(0.995).item<double>());
  mri::write_png(output, grid, 0.0, hi);
  std::cout << "wrote " << output << " (" << n << " samples, " << hc.schedule.steps << " steps)\n";
  if (!nifti.empty()) {
    mri::write_nifti(nifti, mri::volume_from_geometry(mag, mri::default_geometry(n, {1.0 * size, 1.0 * size, 1.0})));
    std::cout << "wrote " << nifti << "\n";
  }
  return 0;
}

}  // namespace ambient::app
