// ambient eval: fastMRI metrics of reconstructions against a reference, and the measures of generated samples
// (sample_measures.hpp: nearest training image in pixels and in a fixed network's features, kernel and Fréchet
// distances to real images), printed and as JSON.
#include <algorithm>
#include <cmath>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/checkpoint.hpp"
#include "ambient/diffusion/sample_measures.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/metrics.hpp"
#include "cli.hpp"

namespace ambient::app {
namespace {

torch::Tensor load_stack(const std::vector<std::string>& files, const char* what) {
  std::vector<torch::Tensor> parts;
  for (const auto& f : files) parts.push_back(mri::read_nifti(f).data);
  for (const auto& p : parts)
    AMBIENT_CHECK(p.size(1) == parts[0].size(1) && p.size(2) == parts[0].size(2), "eval: ", what, " volumes differ "
                  "in image size; give volumes of one matrix");
  return torch::cat(parts, 0);
}

std::string quantiles_json(const torch::Tensor& v) {
  auto s = std::get<0>(v.to(torch::kDouble).sort());
  auto q = [&](double p) { return s[static_cast<int64_t>(p * (s.numel() - 1))].item<double>(); };
  std::ostringstream os;
  os << std::setprecision(6) << "{\"min\": " << q(0) << ", \"p25\": " << q(0.25) << ", \"median\": " << q(0.5)
     << ", \"p75\": " << q(0.75) << ", \"p95\": " << q(0.95) << ", \"max\": " << q(1) << ", \"mean\": "
     << v.to(torch::kDouble).mean().item<double>() << "}";
  return os.str();
}

std::string values_json(const torch::Tensor& v) {
  std::ostringstream os;
  os << std::setprecision(6) << "[";
  auto d = v.to(torch::kDouble);
  for (int64_t i = 0; i < d.numel(); ++i) os << (i ? ", " : "") << d[i].item<double>();
  os << "]";
  return os.str();
}

// The similarity figures of one measure (pixels or features), printed and added to the JSON under `key`.
void report_nearest(const char* what, const std::string& key, const mri::NearestNeighbours& nn, JsonObject& out) {
  const std::string q = quantiles_json(nn.similarity);
  const double above_90 = diffusion::fraction_above(nn.similarity, 0.9);
  const double above_95 = diffusion::fraction_above(nn.similarity, 0.95);
  std::cout << what << ": " << q << "; above 0.9: " << above_90 << ", above 0.95: " << above_95 << "\n";
  out.add_raw("nearest_" + key, q).add(key + "_above_0.9", above_90).add(key + "_above_0.95", above_95);
  out.add_raw("nearest_" + key + "_all", values_json(nn.similarity));
}

// Feature distances in units of the training images' median nearest-neighbour distance: below 1 is nearer a
// training image than training images are to each other.
void report_feature_distance(const char* what, const std::string& key, const torch::Tensor& d, JsonObject& out) {
  const std::string q = quantiles_json(d);
  const double below_1 = 1 - diffusion::fraction_above(d, 1.0), below_half = 1 - diffusion::fraction_above(d, 0.5);
  std::cout << what << ": " << q << "; below 1: " << below_1 << ", below 0.5: " << below_half << "\n";
  out.add_raw("nearest_" + key, q).add(key + "_below_1", below_1).add(key + "_below_0.5", below_half);
  out.add_raw("nearest_" + key + "_all", values_json(d));
}

void report_manifold(const char* what, const std::string& key, const mri::Manifold& m, const mri::Manifold& real,
                     JsonObject& out) {
  std::cout << what << ": precision " << m.precision << " (real " << real.precision << "), recall " << m.recall
            << " (" << real.recall << "), density " << m.density << " (" << real.density << "), coverage "
            << m.coverage << " (" << real.coverage << ")\n";
  out.add(key + "_precision", m.precision).add(key + "_recall", m.recall);
  out.add(key + "_density", m.density).add(key + "_coverage", m.coverage);
  out.add("real_" + key + "_precision", real.precision).add("real_" + key + "_recall", real.recall);
  out.add("real_" + key + "_density", real.density).add("real_" + key + "_coverage", real.coverage);
}

// A reliability diagram as a PNG: the calibration bins (mean std, RMS error) as squares on a white-on-black
// plot with both axes from 0 to the largest value, and the diagonal a calibrated map would follow.
void write_reliability_png(const std::string& path, const torch::Tensor& bins) {
  const int64_t size = 256, margin = 16, span = size - 2 * margin;
  auto canvas = torch::zeros({size, size});
  const double top = 1.05 * std::max(1e-12, bins.max().item<double>());
  auto to_px = [&](double v, bool vertical) {
    const auto p = static_cast<int64_t>(std::lround(v / top * (span - 1)));
    return vertical ? size - 1 - margin - p : margin + p;
  };
  for (int64_t i = 0; i < span; ++i) {
    canvas[size - 1 - margin][margin + i] = 0.6;  // x axis: predicted std
    canvas[size - 1 - margin - i][margin] = 0.6;  // y axis: observed RMS error
    canvas[size - 1 - margin - i][margin + i] = 0.35;  // calibrated
  }
  for (int64_t b = 0; b < bins.size(0); ++b) {
    const int64_t cx = to_px(bins[b][0].item<double>(), false), cy = to_px(bins[b][1].item<double>(), true);
    for (int64_t dy = -2; dy <= 2; ++dy)
      for (int64_t dx = -2; dx <= 2; ++dx)
        canvas[std::clamp<int64_t>(cy + dy, 0, size - 1)][std::clamp<int64_t>(cx + dx, 0, size - 1)] = 1.0;
  }
  mri::write_png(path, canvas, 0.0, 1.0);
}

}  // namespace

// A reconstruction as a magnitude volume [slice, ky, kx]: NIfTI, or a BART image cfl (kx, ky, 1, ..., slice at 13).
torch::Tensor load_recon(const std::string& path) {
  const bool cfl = path.size() > 4 && (path.compare(path.size() - 4, 4, ".cfl") == 0 ||
                                       path.compare(path.size() - 4, 4, ".hdr") == 0);
  if (!cfl) return mri::read_nifti(path).data;
  return mri::read_cfl_images(path).abs();
}

int run_eval(const std::vector<std::string>& args) {
  po::options_description opts("eval options");
  std::string reference, samples, json, std_map, reliability_png, feature_model, pairs_png;
  double object_fraction = mri::kObjectFraction;
  std::vector<std::string> recons, training, quality_reference;
  diffusion::FeatureConfig features;
  int64_t pairs = 8, manifold_k = diffusion::SampleMeasureConfig{}.manifold_k, manifold_every = 1;
  bool no_flips = false;
  opts.add_options()
      ("recon", po::value(&recons)->multitoken(), "reconstructions (.nii.gz, or BART image .cfl) to score against --reference")
      ("reference", po::value(&reference), "fully sampled reference volume (.nii.gz)")
      ("samples", po::value(&samples), "generated samples (.nii.gz stack, e.g. from ambient sample --nifti)")
      ("training", po::value(&training)->multitoken(), "training images (.nii.gz stacks) for the memorisation measure: "
       "each sample's nearest one (and its flips) by normalised cross-correlation")
      ("no-flips", po::bool_switch(&no_flips), "--training: compare with the training images only, not their flips")
      ("features", po::value(&feature_model), "an EDM UNet checkpoint whose encoder describes images "
       "(docs/objectives.md, \"Measuring samples\": data/models/foundation_gpu.pt): adds the nearest training "
       "image by feature similarity")
      ("feature-sigma", po::value(&features.sigma)->default_value(features.sigma),
       "--features: the noise level the network is told")
      ("feature-grid", po::value(&features.grid)->default_value(features.grid),
       "--features: 1 averages each activation over the image; G over each cell of a G x G grid, so that layout "
       "counts (docs/objectives.md)")
      ("quality-reference", po::value(&quality_reference)->multitoken(), "--features: real images (.nii.gz) to "
       "measure the samples' distribution against (kernel and Fréchet distances; the training images' distances to "
       "them are given too)")
      ("manifold-every", po::value(&manifold_every)->default_value(manifold_every), "--quality-reference: "
       "precision, recall, density and coverage use every Nth of its images (consecutive slices are near-copies; "
       "those measures need distinct images)")
      ("manifold-k", po::value(&manifold_k)->default_value(manifold_k), "--quality-reference: precision, recall, "
       "density and coverage use balls out to each image's k-th nearest neighbour")
      ("pairs-png", po::value(&pairs_png), "draw the samples closest to a training image (by NCC) beside it here")
      ("pairs", po::value(&pairs)->default_value(pairs), "--pairs-png: how many pairs")
      ("std", po::value(&std_map), "calibration of an uncertainty map (recon --std) of the one reconstruction: the "
       "fraction of object pixels whose error is within 1, 2, 3 std, the std-error correlation, the factor that "
       "makes the 2-std band cover 95%")
      ("object-threshold", po::value(&object_fraction)->default_value(object_fraction),
       "pixels count as object where the reference exceeds this fraction of its maximum (the object / "
       "background split of the error, and --std's calibration)")
      ("reliability-png", po::value(&reliability_png), "--std: draw the reliability diagram (RMS error against "
       "std in ten bins; calibrated = diagonal) here")
      ("json", po::value(&json), "write every figure as JSON here");
  po::positional_options_description pos;
  pos.add("recon", -1);
  po::variables_map vm;
  if (!parse("eval",
             "--reference ref.nii.gz RECON.nii.gz... | --samples s.nii.gz --training t.nii.gz... [--features m.pt]",
             opts, pos, args, vm))
    return 0;
  const bool metrics = !reference.empty() || !recons.empty();
  const bool memo = !samples.empty() || !training.empty();
  AMBIENT_CHECK(metrics || memo, "eval: give --reference with reconstructions, or --samples with --training");
  AMBIENT_CHECK(!metrics || (!reference.empty() && !recons.empty()), "eval: metrics need --reference and at least one "
                "reconstruction");
  AMBIENT_CHECK(!memo || (!samples.empty() && !training.empty()), "eval: memorisation needs --samples and --training");
  AMBIENT_CHECK(memo || (feature_model.empty() && quality_reference.empty() && pairs_png.empty()),
                "eval: --features, --quality-reference and --pairs-png measure samples: give --samples and --training");
  AMBIENT_CHECK(quality_reference.empty() || !feature_model.empty(), "eval --quality-reference needs --features "
                "(the distances are between feature distributions)");
  AMBIENT_CHECK(manifold_every >= 1, "eval --manifold-every: expected at least 1, got ", manifold_every);
  AMBIENT_CHECK(manifold_k >= 1, "eval --manifold-k: expected at least 1, got ", manifold_k);
  AMBIENT_CHECK(pairs >= 1, "eval --pairs: expected at least 1, got ", pairs);
  if (!pairs_png.empty()) ambient::require_output_folder(pairs_png, "eval --pairs-png");
  AMBIENT_CHECK(std_map.empty() || (metrics && recons.size() == 1), "eval --std: give --reference and exactly one "
                "reconstruction, the one the std map belongs to");
  AMBIENT_CHECK(reliability_png.empty() || !std_map.empty(), "eval --reliability-png needs --std");
  JsonObject out;
  if (metrics) {
    const auto ref = mri::read_nifti(reference).data;
    std::ostringstream arr;
    arr << "[";
    std::cout << std::fixed << std::setprecision(4);
    for (size_t i = 0; i < recons.size(); ++i) {
      const auto x = load_recon(recons[i]);
      AMBIENT_CHECK(ref.sizes() == x.sizes(), "eval: reference ", reference, " ", shape_string(ref.sizes().vec()),
                    " and reconstruction ", recons[i], " ", shape_string(x.sizes().vec()), " differ in shape");
      const auto m = mri::evaluate(ref, x);
      const auto r = mri::region_errors(ref, x, object_fraction);
      std::cout << recons[i] << ": NMSE " << m.nmse << "  PSNR " << m.psnr << " dB  SSIM " << m.ssim << "\n"
                << "  object (" << r.object_pixels << " pixels): PSNR " << r.object_psnr << " dB  NMSE "
                << r.object_nmse << "; background: " << 100 * r.background_share
                << "% of the squared error, RMS " << r.background_rms << " of the maximum\n";
      JsonObject j;
      j.add("recon", recons[i]).add("nmse", m.nmse).add("psnr", m.psnr).add("ssim", m.ssim);
      j.add("object_pixels", static_cast<double>(r.object_pixels)).add("object_psnr", r.object_psnr);
      j.add("object_nmse", r.object_nmse).add("background_error_share", r.background_share);
      j.add("background_rms", r.background_rms);
      arr << (i ? ", " : "") << j.str(0);
    }
    arr << "]";
    out.add("reference", reference).add_raw("metrics", arr.str());
    if (!std_map.empty()) {
      const auto c = mri::calibration(ref, load_recon(recons[0]), mri::read_nifti(std_map).data, object_fraction);
      std::cout << "calibration of " << std_map << " over " << c.pixels << " object pixels: within 1/2/3 std "
                << c.within[0] << " / " << c.within[1] << " / " << c.within[2] << " (Gaussian 0.683 / 0.954 / "
                << "0.997), corr(std, |error|) " << c.correlation << ", scale for 95% in 2 std " << c.scale_for_95
                << "\n";
      std::ostringstream rel;
      rel << std::setprecision(6) << "[";
      for (int64_t b = 0; b < c.reliability.size(0); ++b)
        rel << (b ? ", " : "") << "[" << c.reliability[b][0].item<double>() << ", "
            << c.reliability[b][1].item<double>() << "]";
      rel << "]";
      JsonObject cj;
      cj.add("std", std_map).add("pixels", static_cast<double>(c.pixels)).add("within_1", c.within[0]);
      cj.add("within_2", c.within[1]).add("within_3", c.within[2]).add("correlation", c.correlation);
      cj.add("scale_for_95", c.scale_for_95).add_raw("reliability_std_rms", rel.str());
      out.add_raw("calibration", cj.str(0));
      if (!reliability_png.empty()) {
        write_reliability_png(reliability_png, c.reliability);
        std::cout << "wrote " << reliability_png << "\n";
      }
    }
  }
  if (memo) {
    const auto s = mri::read_nifti(samples).data;
    const auto t = load_stack(training, "training");
    diffusion::SampleMeasureConfig mc;
    mc.flips = !no_flips;
    mc.features = features;
    mc.manifold_k = manifold_k;
    mc.manifold_every = manifold_every;
    if (!feature_model.empty()) mc.feature_model = diffusion::load_denoiser(feature_model);
    if (!quality_reference.empty()) mc.quality_reference = load_stack(quality_reference, "quality reference");
    const auto m = diffusion::measure_samples(s, t, mc);
    std::cout << std::setprecision(4) << "samples: " << s.size(0) << " against " << t.size(0) << " training images"
              << (mc.flips ? " and their flips" : "") << "\n";
    out.add("samples", samples).add("sample_count", static_cast<double>(s.size(0)));
    out.add("training_count", static_cast<double>(t.size(0))).add("flips", mc.flips ? "yes" : "no");
    report_nearest("memorisation, nearest-training-image NCC", "ncc", m.pixels, out);
    if (m.training_pixels.similarity.defined())
      report_nearest("  the training images' own nearest other training image, NCC", "training_ncc", m.training_pixels,
                     out);
    if (m.has_features) {
      report_feature_distance("memorisation, nearest-training-image feature distance / training images' median",
                              "feature_distance", m.features.distance, out);
      if (m.training_features.distance.defined())
        report_feature_distance("  the training images' own nearest other training image, the same",
                                "training_feature_distance", m.training_features.distance, out);
      out.add("features", feature_model).add("feature_sigma", features.sigma).add("feature_grid", features.grid);
    }
    if (m.has_quality) {
      std::cout << "distance to " << mc.quality_reference.size(0) << " real images: kernel (KID) "
                << m.kernel_distance << ", Fréchet " << m.frechet_distance << "; the training images' own: "
                << m.reference_kernel_distance << ", " << m.reference_frechet_distance << "\n";
      out.add("quality_reference_count", static_cast<double>(mc.quality_reference.size(0)));
      out.add("kid", m.kernel_distance).add("fd", m.frechet_distance);
      out.add("training_kid", m.reference_kernel_distance).add("training_fd", m.reference_frechet_distance);
      std::cout << "pixel kernel distance (images averaged to " << mc.pixel_grid << "x" << mc.pixel_grid
                << " cells): " << m.pixel_kernel_distance << "; the training images' own: "
                << m.reference_pixel_kernel_distance << "\n";
      out.add("pixel_kid", m.pixel_kernel_distance).add("training_pixel_kid", m.reference_pixel_kernel_distance);
    }
    if (m.has_manifold) {
      std::cout << "against the quality reference's manifold (k = " << manifold_k << ", every " << manifold_every
                << "th image; real images in the samples' place score):\n";
      report_manifold("  features", "feature", m.feature_manifold, m.reference_feature_manifold, out);
      report_manifold("  pixels  ", "pixel", m.pixel_manifold, m.reference_pixel_manifold, out);
      out.add("manifold_k", static_cast<double>(manifold_k)).add("manifold_every", static_cast<double>(manifold_every));
    } else if (m.has_quality) {
      std::cout << "precision and recall need at least " << 2 * (manifold_k + 1) << " quality-reference images "
                << "(after --manifold-every) and more than " << manifold_k << " samples (--manifold-k)\n";
    }
    if (!pairs_png.empty()) {
      const auto compared = diffusion::measure_training_set(t, mc.flips);
      mri::write_png(pairs_png, diffusion::closest_pairs(s, compared, m.pixels, pairs), 0.0, 1.0);
      std::cout << "wrote " << pairs_png << "\n";
    }
  }
  if (!json.empty()) write_text(json, out.str() + "\n");
  return 0;
}

}  // namespace ambient::app
