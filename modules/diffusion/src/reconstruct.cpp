// Posterior-sampling reconstruction of whole scans.
#include "ambient/diffusion/reconstruct.hpp"

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <filesystem>

#include "ambient/core/error.hpp"
#include "ambient/core/names.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/diffusion/seen_through.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/masks.hpp"
#include "ambient/mri/prepare.hpp"

namespace ambient::diffusion {
namespace {

}  // namespace

ReconstructConfig defaults_for(const std::string& checkpoint) {
  AMBIENT_CHECK(std::filesystem::exists(checkpoint), "reconstruct: model not found: ", checkpoint);
  ReconstructConfig c;
  if (!is_ambient_checkpoint(checkpoint)) return c;  // TorchScript: a denoiser of clean images
  const auto info = describe_checkpoint(checkpoint);
  if (info.objective != "ambient-fourier" || info.cond_channels == 0) return c;
  // Ã at R = 2: 1.5 / 2 / 3 / 4 / 5 gave 28.95 / 29.03 / 28.69 / 28.40 / 28.23 dB at R = 4 on the held-out target
  // slices (docs/sampling.md), and the scans of data/samples agree.
  c.further_accel = 2.0;
  // Ambient models gain from samples and lose nothing with fewer steps (16 × 8: 29.81 / 26.17 dB at R = 4 / 8
  // against 28.46 / 24.97 with 4 × 32, the same cost). With the conditional mean, 8 × 8 gives the image of 16 × 8
  // (held out 30.78 / 27.73 dB, SSIM 0.840 / 0.794, against 30.75 / 27.68, 0.843 / 0.803) at half the cost, the
  // 15 s per slice budget on 2 cores without bf16 instructions (10.7 s against 21.4; docs/sampling.md).
  c.samples = 8;
  c.posterior.schedule.steps = 8;
  // An ambient model sees x only through Ã, so its estimate keeps an error at σ → 0: +0.3-0.45 dB at R = 4 and 8
  // on two held-out sets and two models over floor 0 / scale 1 (docs/sampling.md). Re-measured after the noise
  // convention was fixed (2026-12-03): scale 0.5 still beats 1 by 0.13 / 0.23 dB on the held-out slices.
  c.posterior.gamma_floor = 0.005;
  c.posterior.gamma_scale = 0.5;
  return c;
}

ReconstructConfig with_defaults_for(ReconstructConfig given, const std::string& checkpoint) {
  const auto d = defaults_for(checkpoint);
  if (given.further_accel < 0) given.further_accel = d.further_accel;
  if (given.posterior.gamma_floor < 0) given.posterior.gamma_floor = d.posterior.gamma_floor;
  if (given.posterior.gamma_scale < 0) given.posterior.gamma_scale = d.posterior.gamma_scale;
  if (given.samples < 0) given.samples = d.samples;
  if (given.posterior.schedule.steps < 0) given.posterior.schedule.steps = d.posterior.schedule.steps;
  return given;
}

namespace {

// The K samples of slices `ksp` [n, C, ny, nx] in one batch; `first` is the index of the first slice in the scan.
Reconstruction reconstruct_batch(const ModelPtr& model, const torch::Tensor& ksp, const torch::Tensor& m,
                                 const torch::Tensor& maps, double eta, const ReconstructConfig& c, uint64_t seed,
                                 const SamplerMonitor& monitor) {
  const int64_t s = ksp.size(0), k = c.samples, ny = ksp.size(2), nx = ksp.size(3);
  // Per-slice scale and noise in network units, as training scales its data (mri::prepare, docs/conventions.md).
  auto prepared = mri::prepare(ksp, m, maps, eta);
  const auto scale = prepared.scale;

  // K samples of every slice in one batch: [K * S] ordered sample-major.
  auto rep = [&](const torch::Tensor& t) { return t.repeat({k, 1, 1, 1}); };
  auto yb = rep(prepared.y);
  const auto maps_b = rep(maps);  // shared by A and by Ã^H Ã below: the largest tensor here
  auto a = mri::make_sense(maps_b, rep(m));
  // Slices differ in scale, so each batch item has its own noise variance η / scale² in network units.
  PosteriorConfig pc = c.posterior;
  pc.noise_var_per_item = prepared.noise_var.repeat({k});
  prepared = mri::Prepared();
  torch::Tensor cond;
  auto d = as_denoiser(model);
  // The network runs on at most c.network_batch of the K * S items at a time.
  DenoiserFn denoise = [&](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cnd) {
    return in_chunks(x.size(0), c.network_batch, [&](int64_t b, int64_t n) {
      Bf16Autocast autocast(c.bf16);
      return d(x.narrow(0, b, n), sigma.narrow(0, b, n), cnd.defined() ? cnd.narrow(0, b, n) : cnd).to(torch::kFloat);
    });
  };
  if (model->cond_channels() > 0 && c.further_accel > 0) {
    // Ambient Fourier models see x only through a fixed further line mask M̃, as Ã^H Ã x = S^H F^H M̃ F S x. The
    // torch FFT keeps the figures of docs/results.md bit for bit.
    AMBIENT_CHECK(c.further_accel > 1, "reconstruct: expected a further acceleration > 1, got ", c.further_accel);
    AMBIENT_CHECK(c.further_views >= 1, "reconstruct: expected at least one further view, got ", c.further_views);
    std::vector<DenoiserFn> views;
    for (int64_t v = 0; v < c.further_views; ++v) {
      std::vector<torch::Tensor> rows;
      for (int64_t i = 0; i < k * s; ++i) {  // view 0 draws exactly the masks of a one-view reconstruction
        const auto index = static_cast<uint64_t>(v * k * s + i);
        rows.push_back(mri::further_line_mask(ny, c.further_accel, static_cast<uint32_t>(ambient::derive_seed(
                                                  seed, ambient::SeedStream::further_masks, index))));
      }
      auto a_tilde = line_corruption(maps_b, torch::stack(rows), mri::FftBackend::torch);
      if (v == 0) cond = a_tilde.channel;
      views.push_back(seen_through(denoise, a_tilde));
    }
    if (views.size() == 1) {
      denoise = views[0];
    } else {  // the mean of the views' estimates E[x0 | Ã_v x_t, Ã_v] (ReconstructConfig::further_views)
      denoise = [views](const torch::Tensor& x, const torch::Tensor& sigma, const torch::Tensor& cnd) {
        auto sum = views[0](x, sigma, cnd);
        for (size_t v = 1; v < views.size(); ++v) sum = sum + views[v](x, sigma, cnd);
        return sum / static_cast<double>(views.size());
      };
    }
  } else if (model->cond_channels() > 0) {  // the corruption input says "nothing further removed"
    cond = torch::ones({k * s, model->cond_channels(), ny, nx});
  }
  auto gen = at::detail::createCPUGenerator(seed);
  model->eval();
  torch::Tensor x, x_mean;
  if (c.method == ReconMethod::posterior) {
    auto draw = posterior_chain(denoise, a, yb, pc, gen, cond, monitor);
    x = draw.sample;
    x_mean = c.conditional_mean ? draw.mean : draw.sample;
  } else {
    x = x_mean = sample_dps(denoise, a, yb, pc, gen, cond, monitor);  // its last step is noise-free already
  }
  auto unscale = [&](const torch::Tensor& t) {
    return from_channels(t).reshape({k, s, ny, nx}) * scale.reshape({1, s, 1, 1});
  };
  auto z = unscale(x);
  Reconstruction r;
  r.mean = unscale(x_mean).mean(0);
  r.std = k > 1 ? z.abs().std(0) : torch::zeros({s, ny, nx});
  r.scale = scale;
  if (c.zero_outside_maps) {  // the image is defined only where some coil sees it (ReconstructConfig)
    const auto seen = (maps.abs().sum(1) > 0).to(torch::kFloat);
    r.mean = r.mean * seen;
    r.std = r.std * seen;
  }
  return r;
}

}  // namespace

constexpr Named<ReconMethod> kReconMethods[] = {{ReconMethod::zero_filled, "zero-filled"},
                                            {ReconMethod::cg_sense, "cg-sense"},
                                            {ReconMethod::posterior, "posterior"},
                                            {ReconMethod::dps, "dps"}};

ReconMethod parse_recon_method(const std::string& name, const char* what) {
  return parse_named(kReconMethods, name, what);
}
std::string recon_method_name(ReconMethod method) { return name_of(kReconMethods, method); }

int64_t slices_per_batch(const ReconstructConfig& c, const mri::Scan& scan) {
  if (c.slice_batch > 0) return std::min<int64_t>(c.slice_batch, std::max<int64_t>(1, scan.slices()));
  // Each slice's K samples hold K coil images of C × ny × nx complex64 in each of about ten batch-sized tensors
  // (the repeated maps, the data, the operator's work space). 128 MB for one of them keeps a 128² recon of any
  // length to a few GB (docs/reliability.md, "Load") and still samples a 4-slice set at 192² in one batch.
  const double per_slice = 8.0 * std::max<int64_t>(1, c.samples) * scan.coils() * scan.ny() * scan.nx();
  const auto fit = static_cast<int64_t>(128.0 * (1 << 20) / per_slice);
  return std::clamp<int64_t>(fit, 1, std::max<int64_t>(1, scan.slices()));
}

Reconstruction reconstruct(const ModelPtr& model, const mri::Scan& scan, const torch::Tensor& maps,
                           const ReconstructConfig& c, const SamplerMonitor& monitor) {
  AMBIENT_CHECK(model != nullptr, "reconstruct: no model");
  AMBIENT_CHECK(samples_with_model(c.method), "reconstruct: expected method posterior|dps, got ",
                recon_method_name(c.method));
  AMBIENT_CHECK(c.samples >= 1, "reconstruct: expected at least one sample per slice, got ", c.samples);
  AMBIENT_CHECK(maps.sizes() == scan.ksp.sizes(), "reconstruct: coil maps ", shape_string(maps.sizes().vec()),
                " do not match the k-space ", shape_string(scan.ksp.sizes().vec()));
  const double eta = mri::noise_variance(scan, c.noise_var);
  const int64_t s = scan.slices(), batch = slices_per_batch(c, scan);
  const auto m = scan.kspace_mask();
  // Slices go through in batches so that memory stays bounded for any volume (K × batch items at a time, not
  // K × S). A batch's noise comes from its own seed; the first batch keeps the run's seed, so a scan that fits
  // one batch reconstructs exactly as before batching existed.
  std::vector<Reconstruction> parts;
  for (int64_t first = 0; first < s; first += batch) {
    const int64_t n = std::min(batch, s - first);
    const uint64_t seed = first == 0 ? c.seed : ambient::derive_seed(c.seed, ambient::SeedStream::recon_slices, first);
    const int64_t offset = (first / batch) * c.posterior.schedule.steps;
    SamplerMonitor shifted;
    if (monitor) shifted = [&](int64_t step, double sigma) { monitor(offset + step, sigma); };
    parts.push_back(reconstruct_batch(model, scan.ksp.narrow(0, first, n), m.narrow(0, first, n),
                                      maps.narrow(0, first, n), eta, c, seed, shifted));
  }
  if (parts.size() == 1) return parts[0];
  Reconstruction r;
  std::vector<torch::Tensor> means, stds, scales;
  for (const auto& p : parts) means.push_back(p.mean), stds.push_back(p.std), scales.push_back(p.scale);
  r.mean = torch::cat(means);
  r.std = torch::cat(stds);
  r.scale = torch::cat(scales);
  return r;
}

}  // namespace ambient::diffusion
