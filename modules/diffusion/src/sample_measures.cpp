#include "ambient/diffusion/sample_measures.hpp"

#include <algorithm>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/batch.hpp"
#include "ambient/mri/prepare.hpp"

namespace ambient::diffusion {
namespace {

torch::Tensor magnitudes(const torch::Tensor& t, const char* what) {
  auto m = t.dim() == 2 ? t.unsqueeze(0) : t;
  AMBIENT_CHECK(m.dim() == 3 && m.size(0) >= 1, "sample measures: expected ", what, " [n, h, w], got ",
                shape_string(t.sizes().vec()));
  return (m.is_complex() ? m.abs() : m).to(torch::kFloat);
}

torch::Tensor to_unit_range(const torch::Tensor& image) {
  const double hi = std::max(1e-12, image.flatten().quantile(0.995).item<double>());
  return (image / hi).clamp(0, 1);
}

}  // namespace

torch::Tensor pixel_descriptors(const torch::Tensor& images_in, int64_t grid) {
  AMBIENT_CHECK(grid >= 1, "pixel descriptors: expected a grid of at least 1, got ", grid);
  const auto images = magnitudes(images_in, "images");
  const auto scaled = images / mri::intensity_scale(images, 1e-12).reshape({-1, 1, 1});
  return torch::adaptive_avg_pool2d(scaled.unsqueeze(1), {grid, grid}).flatten(1);
}

torch::Tensor measure_training_set(const torch::Tensor& training, bool flips) {
  auto t = magnitudes(training, "training images");
  if (!flips) return t;
  auto h = centred_flip(t, 2), v = centred_flip(t, 1);
  return torch::cat({t, h, v, centred_flip(h, 1)});
}

SampleMeasures measure_samples(const torch::Tensor& samples_in, const torch::Tensor& training_in,
                               const SampleMeasureConfig& c) {
  const auto samples = magnitudes(samples_in, "samples"), training = magnitudes(training_in, "training images");
  AMBIENT_CHECK(samples.size(1) == training.size(1) && samples.size(2) == training.size(2),
                "sample measures: samples are ", samples.size(1), "x", samples.size(2), ", training images ",
                training.size(1), "x", training.size(2), "; compare images of one size");
  const auto compared = measure_training_set(training, c.flips);
  SampleMeasures m;
  m.pixels = mri::nearest_neighbours(samples, compared);
  const int64_t n_train = training.size(0);
  if (n_train > 1) m.training_pixels = mri::nearest_neighbours(training, compared, n_train);
  if (!c.feature_model) {
    AMBIENT_CHECK(!c.quality_reference.defined(), "sample measures: the kernel and Fréchet distances need a feature "
                  "network");
    return m;
  }
  AMBIENT_CHECK(n_train >= 2, "sample measures: feature distances are in units of the training images' distance to "
                "each other; give at least 2 training images, got ", n_train);
  // Standardised by the training images' mean and spread per feature, so that no few large features decide.
  const auto raw_compared = image_features(c.feature_model, compared, c.features);
  const auto mean = raw_compared.mean(0), spread = raw_compared.std(0).clamp_min(1e-6);
  const auto raw_samples = image_features(c.feature_model, samples, c.features);
  const auto fs = (raw_samples - mean) / spread;
  const auto fc = (raw_compared - mean) / spread;
  m.features = mri::nearest_euclidean(fs, fc);
  m.training_features = mri::nearest_euclidean(fc.narrow(0, 0, n_train), fc, n_train);
  m.feature_scale = std::max(1e-12, m.training_features.distance.median().item<double>());
  m.training_features.distance = m.training_features.distance / m.feature_scale;
  m.features.distance = m.features.distance / m.feature_scale;
  m.has_features = true;
  if (c.quality_reference.defined()) {
    const auto fr = image_features(c.feature_model, magnitudes(c.quality_reference, "quality reference"), c.features);
    const auto ft = raw_compared.narrow(0, 0, n_train);  // the training images as they are
    m.kernel_distance = mri::kernel_distance(raw_samples, fr);
    m.frechet_distance = mri::frechet_distance(raw_samples, fr);
    m.reference_kernel_distance = mri::kernel_distance(ft, fr);
    m.reference_frechet_distance = mri::frechet_distance(ft, fr);
    const auto pr = pixel_descriptors(c.quality_reference, c.pixel_grid);
    m.pixel_kernel_distance = mri::kernel_distance(pixel_descriptors(samples, c.pixel_grid), pr);
    m.reference_pixel_kernel_distance = mri::kernel_distance(pixel_descriptors(training, c.pixel_grid), pr);
    m.has_quality = true;
    const int64_t k = c.manifold_k, every = c.manifold_every, n = samples.size(0);
    AMBIENT_CHECK(k >= 1 && every >= 1, "sample measures: expected a manifold k and every of at least 1, got ", k,
                  " and ", every);
    const int64_t r = (fr.size(0) + every - 1) / every;  // the rows kept: 0, every, 2 every, ...
    if (r >= 2 * (k + 1) && n > k) {
      const auto even = torch::arange(0, r, 2) * every, odd = torch::arange(1, r, 2) * every;
      const int64_t held = std::min(n, odd.size(0));  // real images in the samples' place, evenly spaced
      const auto stand_in = odd.index_select(0, torch::linspace(0, odd.size(0) - 1, held).round().to(torch::kLong));
      const auto fa = fr.index_select(0, even).to(torch::kDouble);
      const auto mean = fa.mean(0), spread = fa.std(0).clamp_min(1e-6);
      auto standard = [&](const torch::Tensor& f) { return (f.to(torch::kDouble) - mean) / spread; };
      const auto ra = standard(fa);
      m.feature_manifold = mri::manifold_measures(ra, standard(raw_samples), k);
      m.reference_feature_manifold = mri::manifold_measures(ra, standard(fr.index_select(0, stand_in)), k);
      const auto pa = pr.index_select(0, even);
      m.pixel_manifold = mri::manifold_measures(pa, pixel_descriptors(samples, c.pixel_grid), k);
      m.reference_pixel_manifold = mri::manifold_measures(pa, pr.index_select(0, stand_in), k);
      m.has_manifold = true;
    }
  }
  return m;
}

double fraction_above(const torch::Tensor& values, double threshold) {
  AMBIENT_CHECK(values.numel() > 0, "fraction above: no values");
  return (values > threshold).to(torch::kDouble).mean().item<double>();
}

torch::Tensor closest_pairs(const torch::Tensor& samples_in, const torch::Tensor& compared_in,
                            const mri::NearestNeighbours& nearest, int64_t count) {
  const auto samples = magnitudes(samples_in, "samples"), compared = magnitudes(compared_in, "training images");
  AMBIENT_CHECK(nearest.similarity.numel() == samples.size(0) && nearest.index.numel() == samples.size(0),
                "closest pairs: expected one nearest neighbour per sample");
  AMBIENT_CHECK(count >= 1, "closest pairs: expected a count >= 1, got ", count);
  const int64_t rows = std::min(count, samples.size(0)), h = samples.size(1), w = samples.size(2);
  const auto order = std::get<1>(nearest.similarity.sort(0, /*descending=*/true));
  auto grid = torch::zeros({rows * (h + 2), 2 * (w + 2)});
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t i = order[r].item<int64_t>(), j = nearest.index[i].item<int64_t>();
    grid.narrow(0, r * (h + 2), h).narrow(1, 0, w).copy_(to_unit_range(samples[i]));
    grid.narrow(0, r * (h + 2), h).narrow(1, w + 2, w).copy_(to_unit_range(compared[j]));
  }
  return grid;
}

}  // namespace ambient::diffusion
