// Measures of generated samples (sample_measures.hpp): the feature network, the nearest training image with flips,
// the kernel and Fréchet distances of features, and the picture of the closest pairs.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/batch.hpp"
#include "ambient/diffusion/features.hpp"
#include "ambient/diffusion/network.hpp"
#include "ambient/diffusion/sample_measures.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

ModelPtr feature_network(int64_t cond = 0) {
  UNetConfig c;
  c.base_channels = 8;
  c.channel_mult = {1, 2};
  c.blocks_per_level = 1;
  c.attention_levels = {};
  c.cond_channels = cond;
  torch::manual_seed(21);  // before construction: LibTorch seeds its default generator at random in each process
  auto model = std::make_shared<EdmDenoiserImpl>(c, EdmConfig{});
  torch::NoGradGuard g;
  for (auto& p : model->parameters()) p.add_(0.1 * torch::randn_like(p));
  return model;
}

// Smooth positive images [n, 24, 24], each a different blob arrangement.
torch::Tensor blobs(int64_t n, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  auto low = torch::rand({n, 1, 6, 6}, gen);
  return torch::upsample_bilinear2d(low, std::vector<int64_t>{24, 24}, false).squeeze(1);
}

}  // namespace

TEST(Features, DescribeEachImageAtAnyScaleWithTheEncodersChannels) {
  auto model = feature_network();
  auto images = blobs(5, 1);
  auto f = image_features(model, images, FeatureConfig{0.05, 2});  // three calls of at most 2 images
  // D = base × (1 + 2) for the levels, + base × 2 for the middle block.
  ASSERT_EQ(f.sizes(), (std::vector<int64_t>{5, 8 * 3 + 8 * 2}));
  EXPECT_TRUE(torch::allclose(f, image_features(model, images * 7), 1e-4, 1e-5));  // each image is scaled to itself
  EXPECT_TRUE(torch::allclose(f[3], image_features(model, images[3]).squeeze(0), 1e-4, 1e-5));
  EXPECT_FALSE(torch::allclose(f[0], f[1]));
  // A model with a mask channel is told "nothing removed": widened (zero weights on the new channel), the same
  // network describes the images as before.
  std::dynamic_pointer_cast<EdmDenoiserImpl>(model)->net->widen_input(1);
  ASSERT_EQ(model->cond_channels(), 1);
  EXPECT_TRUE(torch::allclose(image_features(model, images), f, 1e-5, 1e-6));
  EXPECT_THROW(image_features(model, torch::rand({2, 3, 24, 24})), Error);
  EXPECT_THROW(image_features(model, images, FeatureConfig{0.0, 2}), Error);
  auto nan = images.clone();
  nan[0][0][0] = std::nan("");
  EXPECT_THROW(image_features(model, nan), Error);
  EXPECT_THROW(image_features(model, images, FeatureConfig{0.05, 2, 0}), Error);
}

TEST(Features, AGridSeesWhereThingsAre) {
  // One bright square, top left or bottom right of a dark image: whole-image means hardly tell the two apart (the
  // same content, moved), the cells of a 2 × 2 grid do. The grid's features are D values per cell, and their mean
  // over the cells is the whole-image mean. Over 16 seeded networks the grid's difference was 5.0 to 12.5 times the
  // whole image's; this one's is 9.8.
  auto model = feature_network();
  auto images = torch::zeros({2, 24, 24});
  images[0].narrow(0, 2, 8).narrow(1, 2, 8).fill_(1);
  images[1].narrow(0, 14, 8).narrow(1, 14, 8).fill_(1);
  const int64_t d = 8 * 3 + 8 * 2;
  auto whole = image_features(model, images);
  auto cells = image_features(model, images, FeatureConfig{0.05, 32, 2});
  ASSERT_EQ(cells.sizes(), (std::vector<int64_t>{2, d * 4}));
  EXPECT_TRUE(torch::allclose(cells.reshape({2, d, 4}).mean(2), whole, 1e-4, 1e-5));
  auto rel = [](const torch::Tensor& f) { return ((f[0] - f[1]).norm() / f[0].norm()).item<double>(); };
  EXPECT_GT(rel(cells), 5 * rel(whole)) << "whole " << rel(whole) << ", grid " << rel(cells);
}

TEST(SampleMeasures, PixelKernelDistanceTellsFlatFieldsFromImages) {
  // Samples of the reference's own kind are near it (unbiased KID: about 0); flat fields of the same brightness,
  // what a sampler that only blurs draws, are far.
  SampleMeasureConfig c;
  c.feature_model = feature_network();
  c.quality_reference = blobs(40, 7);
  c.pixel_grid = 8;
  auto training = blobs(6, 8);
  auto like = measure_samples(blobs(40, 9), training, c);
  auto flat = measure_samples(torch::full({40, 24, 24}, 0.5), training, c);
  ASSERT_TRUE(like.has_quality && flat.has_quality);
  EXPECT_LT(std::abs(like.pixel_kernel_distance), 0.02) << like.pixel_kernel_distance;
  EXPECT_GT(flat.pixel_kernel_distance, 10 * std::max(0.002, std::abs(like.pixel_kernel_distance)))
      << flat.pixel_kernel_distance << " vs " << like.pixel_kernel_distance;
  // On the reference's manifold (k = 5 against its 20 even images): the blobs are inside it and cover it as the
  // odd reference images do; identical flat fields cover nothing, in pixels and in features.
  ASSERT_TRUE(like.has_manifold && flat.has_manifold);
  for (const auto* m : {&like.pixel_manifold, &like.feature_manifold}) {
    EXPECT_GT(m->precision, 0.6);
    EXPECT_GT(m->recall, 0.6);
  }
  EXPECT_GT(like.reference_pixel_manifold.precision, 0.6);
  EXPECT_EQ(flat.pixel_manifold.recall, 0);
  EXPECT_EQ(flat.feature_manifold.recall, 0);
  EXPECT_LT(flat.pixel_manifold.coverage, 0.1);
  EXPECT_LT(flat.pixel_manifold.precision, 0.5 * like.pixel_manifold.precision);
  // Every 4th reference image: 10 rows, enough for k = 2 (6 needed) but not for k = 5; the kernel distances still
  // use all 40.
  c.manifold_every = 4;
  auto thinned = measure_samples(blobs(40, 9), training, c);
  EXPECT_FALSE(thinned.has_manifold);
  EXPECT_DOUBLE_EQ(thinned.pixel_kernel_distance, like.pixel_kernel_distance);
  c.manifold_k = 2;
  EXPECT_TRUE(measure_samples(blobs(40, 9), training, c).has_manifold);
  c.manifold_every = 0;
  EXPECT_THROW(measure_samples(blobs(40, 9), training, c), Error);
  c.manifold_every = 1;
  c.manifold_k = 0;
  EXPECT_THROW(measure_samples(blobs(40, 9), training, c), Error);
  EXPECT_EQ(pixel_descriptors(training, 8).sizes(), (std::vector<int64_t>{6, 64}));
  EXPECT_THROW(pixel_descriptors(training, 0), Error);
}

TEST(SampleMeasures, FindAFlippedCopyInPixelsAndFeaturesAndMeasureDistributions) {
  auto training = blobs(6, 2);
  auto samples = torch::stack({centred_flip(training[4], 0) * 2.5, blobs(1, 3)[0]});
  SampleMeasureConfig c;
  c.feature_model = feature_network();
  c.quality_reference = blobs(8, 4);
  auto m = measure_samples(samples, training, c);
  // Sample 0 is training image 4 flipped up-down (the third block of measure_training_set), brighter.
  EXPECT_NEAR(m.pixels.similarity[0].item<double>(), 1.0, 1e-6);
  EXPECT_EQ(m.pixels.index[0].item<int64_t>(), 2 * 6 + 4);
  EXPECT_LT(m.pixels.similarity[1].item<double>(), 0.999);
  ASSERT_TRUE(m.has_features && m.has_quality);
  EXPECT_FALSE(m.has_manifold);  // 8 reference images: too few for balls of the 5th neighbour on each half
  // Features: the copy is at distance ~0, the other sample farther; distances in units of the training median.
  EXPECT_LT(m.features.distance[0].item<double>(), 1e-2);
  EXPECT_GT(m.features.distance[1].item<double>(), 0.1);
  EXPECT_NEAR(m.training_features.distance.median().item<double>(), 1.0, 1e-9);
  EXPECT_GT(m.feature_scale, 0);
  EXPECT_EQ(m.features.index[0].item<int64_t>(), 2 * 6 + 4);
  EXPECT_TRUE(std::isfinite(m.kernel_distance) && std::isfinite(m.frechet_distance));
  EXPECT_GE(m.frechet_distance, 0);
  EXPECT_GE(m.reference_frechet_distance, 0);
  // Each training image's nearest other image: never itself or its own flips.
  ASSERT_EQ(m.training_pixels.index.numel(), 6);
  for (int64_t i = 0; i < 6; ++i) {
    EXPECT_NE(m.training_pixels.index[i].item<int64_t>() % 6, i);
    EXPECT_NE(m.training_features.index[i].item<int64_t>() % 6, i);
    EXPECT_LT(m.training_pixels.similarity[i].item<double>(), 0.999);
  }
  // Without flips the copy is not found exactly.
  c.flips = false;
  EXPECT_LT(measure_samples(samples, training, c).pixels.similarity[0].item<double>(), 0.999);
  EXPECT_DOUBLE_EQ(fraction_above(m.pixels.similarity, 0.999), 0.5);
  // Pairs: most similar first, the sample left, its match (as matched) right, each in [0, 1].
  auto grid = closest_pairs(samples, measure_training_set(training, true), m.pixels, 5);
  ASSERT_EQ(grid.sizes(), (std::vector<int64_t>{2 * 26, 2 * 26}));
  EXPECT_TRUE(torch::allclose(grid.narrow(0, 0, 24).narrow(1, 0, 24), grid.narrow(0, 0, 24).narrow(1, 26, 24),
                              1e-5, 1e-5));
  EXPECT_LE(grid.max().item<double>(), 1.0);
  // Bad input: sizes that disagree, a reference without a network.
  EXPECT_THROW(measure_samples(torch::rand({2, 16, 16}), training, {}), Error);
  SampleMeasureConfig no_network;
  no_network.quality_reference = blobs(4, 5);
  EXPECT_THROW(measure_samples(samples, training, no_network), Error);
  SampleMeasureConfig features_only;
  features_only.feature_model = c.feature_model;
  EXPECT_THROW(measure_samples(samples, training.narrow(0, 0, 1), features_only), Error);
}
