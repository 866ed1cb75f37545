// Inpainting benchmark for image-domain (block) models, issue 16: how well one denoiser call predicts the pixels
// a fixed mask Ã hides, at several noise levels, on clean held-out slices (where the truth is known).
// For each slice and trial: A erases --blocks boxes, Ã erases --extra-blocks more (as training draws them), the
// model sees Ã (x + σ n) and Ã, and the error is measured where Ã hid the pixel (hidden) and where it showed it
// (seen), as NMSE = Σ |D − x|² / Σ |x|² over that region. Two baselines without a network, from the same draws:
// zero (NMSE 1 by definition) and a smoothing fill (normalised convolution: blur(Ã x) / blur(Ã), the best of
// three widths per σ), so "the model inpaints" is a measured statement, not a picture.
// --posterior S adds posterior inpainting of the scan A x (diffusion::inpaint, S chains of --posterior-steps, the
// network seeing the iterate through --views masks drawn as training drew Ã, or through A itself; a model without a
// mask channel sees the iterate): NMSE of the posterior mean where A hid the pixel.
// Usage: bench_inpaint --data clean.h5 --model LABEL=model.pt [--model ...] [--blocks 70] [--extra-blocks 4]
//        [--block-size 16,40] [--sigmas 0.02,0.1,0.5,2] [--trials 2] [--seed 0] [--png out.png] [--csv out.csv]
//        [--views K] [--posterior S] [--posterior-steps 24] [--gamma-floor 0.01 (ambient models)]
//        [--sigma-min 0.002 (the posterior schedule's last σ)]
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/data.hpp"
#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/inpaint.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"

using namespace ambient;

namespace {

std::vector<double> number_list(const std::string& s) {
  std::vector<double> out;
  std::stringstream ss(s);
  for (std::string item; std::getline(ss, item, ',');) out.push_back(std::stod(item));
  return out;
}

// Normalised convolution with a separable Gaussian of standard deviation w pixels: fills holes from their seen
// surroundings. x [B, 2, H, W], seen [B, 1, H, W].
torch::Tensor smooth_fill(const torch::Tensor& x, const torch::Tensor& seen, double w) {
  const int64_t r = static_cast<int64_t>(std::ceil(3 * w));
  auto t = torch::arange(-r, r + 1, torch::kFloat);
  auto g = (-(t * t) / (2 * w * w)).exp();
  g = g / g.sum();
  auto blur = [&](const torch::Tensor& v) {
    const int64_t c = v.size(1);
    auto kh = g.reshape({1, 1, -1, 1}).repeat({c, 1, 1, 1});
    auto kw = g.reshape({1, 1, 1, -1}).repeat({c, 1, 1, 1});
    const std::vector<int64_t> one{1, 1}, pad_h{r, 0}, pad_w{0, r};
    auto o = torch::conv2d(v, kh, torch::Tensor(), one, pad_h, one, c);
    return torch::conv2d(o, kw, torch::Tensor(), one, pad_w, one, c);
  };
  auto num = blur(x * seen);
  auto den = blur(seen).clamp_min(1e-6);
  return seen * x + (1 - seen) * num / den;
}

struct Sums {
  double err_hidden = 0, ref_hidden = 0, err_seen = 0, ref_seen = 0;
  void add(const torch::Tensor& d, const torch::Tensor& x, const torch::Tensor& seen) {
    auto e = (d - x).square().sum(1, true), r = x.square().sum(1, true);
    err_hidden += ((1 - seen) * e).sum().item<double>(), ref_hidden += ((1 - seen) * r).sum().item<double>();
    err_seen += (seen * e).sum().item<double>(), ref_seen += (seen * r).sum().item<double>();
  }
  double hidden() const { return err_hidden / std::max(ref_hidden, 1e-30); }
  double seen() const { return err_seen / std::max(ref_seen, 1e-30); }
};

}  // namespace

int main(int argc, char** argv) try {
  std::string data, png, csv, block_size = "16,40", sigma_list = "0.02,0.1,0.5,2";
  std::vector<std::pair<std::string, std::string>> models;
  int64_t blocks = 70, extra = 4, trials = 2, views = 0, posterior = 0, posterior_steps = 24;
  double gamma_floor = 0.01, sigma_min = 0.002;
  uint32_t seed = 0;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    AMBIENT_CHECK(i + 1 < argc, "bench_inpaint: ", a, " expects a value");
    const std::string v = argv[++i];
    if (a == "--data") data = v;
    else if (a == "--model") {
      const auto eq = v.find('=');
      AMBIENT_CHECK(eq != std::string::npos, "bench_inpaint --model: expected LABEL=model.pt, got '", v, "'");
      models.emplace_back(v.substr(0, eq), v.substr(eq + 1));
    } else if (a == "--blocks") blocks = std::stoll(v);
    else if (a == "--extra-blocks") extra = std::stoll(v);
    else if (a == "--block-size") block_size = v;
    else if (a == "--sigmas") sigma_list = v;
    else if (a == "--trials") trials = std::stoll(v);
    else if (a == "--views") views = std::stoll(v);
    else if (a == "--posterior") posterior = std::stoll(v);
    else if (a == "--posterior-steps") posterior_steps = std::stoll(v);
    else if (a == "--gamma-floor") gamma_floor = std::stod(v);
    else if (a == "--sigma-min") sigma_min = std::stod(v);
    else if (a == "--seed") seed = static_cast<uint32_t>(std::stoul(v));
    else if (a == "--png") png = v;
    else if (a == "--csv") csv = v;
    else ambient::fail("bench_inpaint: unknown option ", a);
  }
  AMBIENT_CHECK(!data.empty() && !models.empty(), "bench_inpaint: give --data clean.h5 and at least one --model");
  const auto sizes = number_list(block_size);
  AMBIENT_CHECK(sizes.size() == 2 && sizes[0] >= 1 && sizes[0] <= sizes[1], "bench_inpaint --block-size: min,max");
  const auto sigmas = number_list(sigma_list);
  AMBIENT_CHECK(views >= 0 && views <= 64, "bench_inpaint --views: expected 0 (off) to 64, got ", views);
  AMBIENT_CHECK(posterior >= 0 && posterior_steps >= 1, "bench_inpaint --posterior: expected chains >= 0 and steps "
                ">= 1");
  torch::set_num_threads(static_cast<int>(std::thread::hardware_concurrency()));
  torch::NoGradGuard no_grad;

  // Clean images, scaled as training scales them (99th percentile of the magnitude 1).
  diffusion::ScanSourceConfig sc;
  sc.corruption = diffusion::Corruption::none;
  auto source = diffusion::scan_source({data}, sc);
  std::vector<torch::Tensor> images;
  for (int64_t f = 0; f < source->files(); ++f)
    for (int64_t s = 0; s < source->slices(f); ++s) images.push_back(source->load(f, s).image);
  auto x = torch::stack(images);  // [S, 2, H, W]
  const int64_t n = x.size(0), ny = x.size(2), nx = x.size(3);
  // Ã for every (trial, slice): A's boxes, then the extra ones, both from --block-size.
  // --views: view v > 0 draws B_v from seed k + 7919 (v + 1), view 0 is Ã itself.
  std::vector<torch::Tensor> masks, a_masks;
  std::vector<std::vector<torch::Tensor>> view_masks(static_cast<size_t>(std::max<int64_t>(views, 1)));
  const auto lo = static_cast<int64_t>(sizes[0]), hi = static_cast<int64_t>(sizes[1]);
  for (int64_t t = 0; t < trials; ++t)
    for (int64_t s = 0; s < n; ++s) {
      const uint32_t k = seed + static_cast<uint32_t>(1000 * t + s);
      auto a = mri::random_blocks(ny, nx, blocks, lo, hi, k);
      auto b = mri::random_blocks(ny, nx, extra, lo, hi, k + 7919);
      masks.push_back((a & b).to(torch::kFloat).unsqueeze(0));
      a_masks.push_back(a.to(torch::kFloat).unsqueeze(0));
      for (int64_t v = 1; v < views; ++v)
        view_masks[static_cast<size_t>(v)].push_back(
            (a & mri::random_blocks(ny, nx, extra, lo, hi, k + 7919 * static_cast<uint32_t>(v + 1)))
                .to(torch::kFloat)
                .unsqueeze(0));
    }
  auto seen = torch::stack(masks);  // [T·S, 1, H, W]
  auto kept = torch::stack(a_masks);  // A
  std::vector<torch::Tensor> views_of_a{seen};  // --views: Ã, then A ∩ B_v
  for (int64_t v = 1; v < views; ++v) views_of_a.push_back(torch::stack(view_masks[static_cast<size_t>(v)]));
  auto truth = x.repeat({trials, 1, 1, 1});
  std::printf("bench_inpaint: %lld slices x %lld trials of %lldx%lld; Ã hides %.1f%% of the pixels (%lld + %lld "
              "boxes of %s)\n", static_cast<long long>(n), static_cast<long long>(trials), static_cast<long long>(ny),
              static_cast<long long>(nx), 100 * (1 - seen.mean().item<double>()), static_cast<long long>(blocks),
              static_cast<long long>(extra), block_size.c_str());

  std::map<std::string, std::vector<Sums>> table;  // label -> per σ
  std::map<std::string, std::vector<Sums>> inpaint;  // --views: label -> per σ, NMSE where A hid the pixel
  std::vector<torch::Tensor> preview;              // slice 0, trial 0, smallest σ
  std::vector<std::pair<std::string, Sums>> posterior_rows;  // --posterior: NMSE where A hid the pixel
  std::vector<torch::Tensor> posterior_preview;
  auto gen = at::detail::createCPUGenerator(seed + 1);
  std::vector<torch::Tensor> noise;
  for (size_t k = 0; k < sigmas.size(); ++k) noise.push_back(torch::randn(truth.sizes(), gen));
  for (size_t k = 0; k < sigmas.size(); ++k) {
    auto noisy = seen * (truth + sigmas[k] * noise[k]);
    Sums best;
    double best_w = 0;
    for (double w : {2.0, 4.0, 8.0}) {
      Sums sm;
      sm.add(smooth_fill(noisy, seen, w), truth, seen);
      if (best_w == 0 || sm.hidden() < best.hidden()) best = sm, best_w = w;
    }
    table["smoothing fill"].push_back(best);
    if (views > 0) {  // the fill of everything A kept
      auto measured = kept * (truth + sigmas[k] * noise[k]);
      Sums fill;
      for (double w : {2.0, 4.0, 8.0}) {
        Sums sm;
        sm.add(smooth_fill(measured, kept, w), truth, kept);
        if (w == 2.0 || sm.hidden() < fill.hidden()) fill = sm;
      }
      inpaint["smoothing fill of A"].push_back(fill);
    }
    if (k == 0) {
      preview.push_back(diffusion::from_channels(truth.narrow(0, 0, 1))[0].abs());
      preview.push_back(diffusion::from_channels(noisy.narrow(0, 0, 1))[0].abs());
    }
  }
  for (const auto& [label, path] : models) {
    auto model = diffusion::load_denoiser(path);
    AMBIENT_CHECK(model->cond_channels() <= 1, "bench_inpaint: ", path, " takes ", model->cond_channels(),
                  " corruption channels; expected an image-domain model (0 or 1)");
    auto d = diffusion::chunked(diffusion::as_denoiser(model), 8);
    std::printf("%s: %s (precond %s, %lld mask channel)\n", label.c_str(), path.c_str(),
                diffusion::precond_name(model->training_edm().precond).c_str(),
                static_cast<long long>(model->cond_channels()));
    for (size_t k = 0; k < sigmas.size(); ++k) {
      auto noisy = seen * (truth + sigmas[k] * noise[k]);
      auto sigma = torch::full({truth.size(0)}, sigmas[k]);
      auto out = d(noisy, sigma, seen);
      Sums sm;
      sm.add(out, truth, seen);
      table[label].push_back(sm);
      if (k == 0) preview.push_back(diffusion::from_channels(out.narrow(0, 0, 1))[0].abs());
      if (views > 0) {  // the scan measured through A; the model sees it through one view, then through all
        Sums one, all;
        one.add(out, truth, kept);
        inpaint[label + ", 1 view"].push_back(one);
        if (views > 1) {
          auto many = diffusion::seen_through_views(d, views_of_a)(kept * (truth + sigmas[k] * noise[k]), sigma, {});
          all.add(many, truth, kept);
          inpaint[label + ", " + std::to_string(views) + " views"].push_back(all);
          if (k == 0) preview.push_back(diffusion::from_channels(many.narrow(0, 0, 1))[0].abs());
        }
      }
    }
    if (posterior > 0) {  // the scan A x, filled by posterior sampling
      diffusion::InpaintConfig ic;
      ic.samples = posterior;
      ic.posterior.schedule.steps = posterior_steps;
      ic.posterior.schedule.sigma_min = sigma_min;
      ic.posterior.noise_var = 1e-4;
      ic.posterior.gamma_floor = model->cond_channels() > 0 ? gamma_floor : 0;
      ic.draw.blocks = blocks + extra, ic.draw.min_size = lo, ic.draw.max_size = hi;
      ic.seed = seed;
      std::vector<std::pair<std::string, int64_t>> runs;  // row label, views
      if (model->cond_channels() == 0) runs.emplace_back(label + ", posterior", 0);
      else {
        runs.emplace_back(label + ", posterior through A", 0);
        if (views > 0) runs.emplace_back(label + ", posterior, " + std::to_string(views) + " views", views);
      }
      for (const auto& [row, v] : runs) {
        ic.views = v;
        const auto t0 = std::chrono::steady_clock::now();
        auto r = diffusion::inpaint(d, diffusion::from_channels(kept * truth), kept.squeeze(1),
                                    model->cond_channels(), ic);
        Sums sm;
        sm.add(diffusion::to_channels(r.mean), truth, kept);
        posterior_rows.emplace_back(row, sm);
        posterior_preview.push_back(r.mean[0].abs());
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("%s: %.1f s, %.2f s per image (%lld chains)\n", row.c_str(), seconds,
                    seconds / static_cast<double>(truth.size(0)), static_cast<long long>(posterior));
      }
    }
  }
  std::printf("\nNMSE where Ã hid the pixel (seen pixels in brackets); zero fill is 1 by definition\n\n| model |");
  for (double s : sigmas) std::printf(" σ %g |", s);
  std::printf("\n|---|");
  for (size_t k = 0; k < sigmas.size(); ++k) std::printf("---|");
  std::printf("\n");
  std::ofstream out_csv;
  if (!csv.empty()) {
    out_csv.open(csv);
    AMBIENT_CHECK(out_csv.good(), "bench_inpaint --csv: cannot write ", csv);
    out_csv << "model,sigma,nmse_hidden,nmse_seen\n";
  }
  std::vector<std::string> order{"smoothing fill"};
  for (const auto& m : models) order.push_back(m.first);
  for (const auto& label : order) {
    std::printf("| %s |", label.c_str());
    for (size_t k = 0; k < sigmas.size(); ++k) {
      const auto& sm = table[label][k];
      std::printf(" %.3f (%.4f) |", sm.hidden(), sm.seen());
      if (out_csv.is_open()) out_csv << label << "," << sigmas[k] << "," << sm.hidden() << "," << sm.seen() << "\n";
    }
    std::printf("\n");
  }
  if (views > 0) {
    std::printf("\nInpainting a scan measured through A (%.1f%% of the pixels hidden): NMSE where A hid the pixel\n\n"
                "| prediction |", 100 * (1 - kept.mean().item<double>()));
    for (double s : sigmas) std::printf(" σ %g |", s);
    std::printf("\n|---|");
    for (size_t k = 0; k < sigmas.size(); ++k) std::printf("---|");
    std::printf("\n");
    std::vector<std::string> rows{"smoothing fill of A"};
    for (const auto& m : models) {
      rows.push_back(m.first + ", 1 view");
      if (views > 1) rows.push_back(m.first + ", " + std::to_string(views) + " views");
    }
    for (const auto& label : rows) {
      std::printf("| %s |", label.c_str());
      for (size_t k = 0; k < sigmas.size(); ++k) {
        std::printf(" %.3f |", inpaint[label][k].hidden());
        if (out_csv.is_open())
          out_csv << "inpaint: " << label << "," << sigmas[k] << "," << inpaint[label][k].hidden() << ","
                  << inpaint[label][k].seen() << "\n";
      }
      std::printf("\n");
    }
  }
  if (posterior > 0) {
    std::printf("\nPosterior inpainting of the scan A x (%.1f%% hidden; %lld chains of %lld steps, noise variance "
                "1e-4, γ floor %g for models with a mask channel): NMSE of the posterior mean where A hid the pixel (where A showed it in brackets)\n\n"
                "| prediction | NMSE |\n|---|---|\n", 100 * (1 - kept.mean().item<double>()),
                static_cast<long long>(posterior), static_cast<long long>(posterior_steps), gamma_floor);
    for (const auto& [row, sm] : posterior_rows) {
      std::printf("| %s | %.3f (%.4f) |\n", row.c_str(), sm.hidden(), sm.seen());
      if (out_csv.is_open()) out_csv << "posterior: " << row << ",0," << sm.hidden() << "," << sm.seen() << "\n";
    }
  }
  if (!png.empty()) {
    if (!posterior_preview.empty()) {
      preview.push_back(diffusion::from_channels(kept.narrow(0, 0, 1) * truth.narrow(0, 0, 1))[0].abs());
      preview.insert(preview.end(), posterior_preview.begin(), posterior_preview.end());
    }
    mri::write_png_row(png, preview, std::max(1e-6, preview[0].flatten().quantile(0.995).item<double>()));
    std::printf("\nwrote %s: truth | Ã (x + σ n) | each model's D (and, with --views, its D from all views), in "
                "--model order, at σ %g; with --posterior, then A x | each posterior mean, in row order\n",
                png.c_str(), sigmas[0]);
  }
  return 0;
} catch (const std::exception& e) {
  std::fprintf(stderr, "bench_inpaint: %s\n", e.what());
  return 1;
}
