// Posterior inpainting through a pixel mask (inpaint.hpp): against the closed-form posterior of a Gaussian prior
// whose pixels are independent, with the network seeing the iterate itself, through the image's mask, and through
// views; the views' draws; bad input.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/inpaint.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/masks.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

// x ~ N(μ, v I) per real component on one [8, 8] complex image, observed where `mask` is 1 with complex noise of
// variance η. Observed pixels: mean (μ/(2v) + y/η) c, complex variance c = 1/(1/(2v) + 1/η); hidden ones keep the
// prior (μ, 2v).
struct MaskedGaussian {
  int64_t n = 8;
  double v = 0.25, eta = 0.02;
  torch::Tensor mu, mask, y, post_mean, post_var;  // complex [n, n] / float [n, n]

  explicit MaskedGaussian(uint64_t seed) {
    auto gen = at::detail::createCPUGenerator(seed);
    mu = 0.5 * torch::randn({n, n}, gen, torch::kComplexFloat);
    mask = mri::random_blocks(n, n, 2, 2, 4, static_cast<uint32_t>(seed)).to(torch::kFloat);
    auto truth = mu + std::sqrt(2 * v) * torch::randn({n, n}, gen, torch::kComplexFloat);
    y = (truth + std::sqrt(eta) * torch::randn({n, n}, gen, torch::kComplexFloat)) * mask;
    const double c = 1 / (1 / (2 * v) + 1 / eta);
    post_mean = torch::where(mask > 0, (mu / (2 * v) + y / eta) * c, mu);
    post_var = torch::where(mask > 0, torch::full({n, n}, c), torch::full({n, n}, 2 * v));
  }
  DenoiserFn prior() const {
    return gaussian_denoiser(to_channels(mu.unsqueeze(0))[0], torch::full({2, n, n}, v));
  }
  InpaintConfig config(int64_t samples, int64_t views) const {
    InpaintConfig c;
    c.samples = samples;
    c.views = views;
    c.posterior.schedule.steps = 24;
    c.posterior.noise_var = eta;
    c.posterior.prior_var = v;
    c.seed = 31;
    return c;
  }
  // The largest error of the samples' mean and variance over the pixels, in standard errors.
  std::pair<double, double> errors(const Inpainting& r) const {
    const auto k = static_cast<double>(r.samples.size(0));
    auto s = r.samples.select(1, 0);
    auto mean_err = ((s.mean(0) - post_mean).abs() / (post_var / k).sqrt()).max().item<double>();
    auto var = (s - s.mean(0, true)).abs().square().sum(0) / (k - 1);
    auto var_err = ((var - post_var).abs() / (post_var * std::sqrt(1 / k))).max().item<double>();
    return {mean_err, var_err};
  }
};

}  // namespace

TEST(Inpaint, MatchesTheGaussianPosteriorSeeingTheIterateOrItsMaskOrViews) {
  MaskedGaussian p(41);
  ASSERT_GT(p.mask.mean().item<double>(), 0.3);  // both kinds of pixel are there
  ASSERT_LT(p.mask.mean().item<double>(), 0.9);
  const int64_t k = 3000;
  // A model without a mask channel sees the iterate itself.
  auto plain = inpaint(p.prior(), p.y.unsqueeze(0), p.mask.unsqueeze(0), 0, p.config(k, 0));
  ASSERT_EQ(plain.samples.sizes(), (std::vector<int64_t>{k, 1, 8, 8}));
  // Views of boxes of one pixel: four per chain leave a pixel unseen by all of them with probability (1/64)^4, so
  // this prior, whose pixels are independent, is denoised exactly through them.
  auto c = p.config(k, 4);
  c.draw.blocks = 1, c.draw.min_size = 1, c.draw.max_size = 1;
  auto views = inpaint(p.prior(), p.y.unsqueeze(0), p.mask.unsqueeze(0), 1, c);
  for (const auto* r : {&plain, &views}) {
    const auto [mean_err, var_err] = p.errors(*r);
    EXPECT_LT(mean_err, 4.5) << "posterior mean off by " << mean_err << " standard errors";
    EXPECT_LT(var_err, 4.5) << "posterior variance off by " << var_err << " standard errors";
    // The Rao-Blackwellised mean and the samples' spread, as inpaint reports them.
    EXPECT_LT(((r->mean[0] - p.post_mean).abs() / (p.post_var / k).sqrt()).max().item<double>(), 4.5);
    EXPECT_NEAR((r->std[0].square() / p.post_var).mean().item<double>(), 1.0, 0.05);
  }
  // Seen through its own mask (Ã = A), a pixel A hid is never seen: it ends at the denoiser's guess from zero input,
  // μ v σ²/(v + σ²) ≈ 0 at σ_min, with no spread. That is Daras et al.'s fixed-mask sampler, and why views exist.
  auto own = inpaint(p.prior(), p.y.unsqueeze(0), p.mask.unsqueeze(0), 1, p.config(64, 0));
  auto hidden = (1 - p.mask) > 0;
  EXPECT_LT(own.mean[0].masked_select(hidden).abs().max().item<double>(), 0.01);
  EXPECT_LT(own.std[0].masked_select(hidden).max().item<double>(), 0.01);
  EXPECT_GT(p.mu.masked_select(hidden).abs().max().item<double>(), 0.3);
}

TEST(Inpaint, ViewsAreDrawnAsTrainingDrawsTheFurtherCorruption) {
  ViewDraw boxes;
  boxes.blocks = 20, boxes.min_size = 4, boxes.max_size = 8;
  auto v = draw_views(3, 32, 32, 4, boxes, 7);
  ASSERT_EQ(v.size(), 4u);
  ASSERT_EQ(v[0].sizes(), (std::vector<int64_t>{3, 1, 32, 32}));
  // View 0 is the fixed Ã a one-view run draws; views differ from each other and between images; same seed, same
  // views.
  EXPECT_TRUE(torch::equal(v[0], draw_views(3, 32, 32, 1, boxes, 7)[0]));
  EXPECT_FALSE(torch::equal(v[0], v[1]));
  EXPECT_FALSE(torch::equal(v[0][0], v[0][1]));
  EXPECT_TRUE(torch::equal(v[3], draw_views(3, 32, 32, 4, boxes, 7)[3]));
  EXPECT_FALSE(torch::equal(v[0], draw_views(3, 32, 32, 1, boxes, 8)[0]));
  ViewDraw pixels;
  pixels.delta = 0.3;
  auto p = draw_views(2, 64, 64, 2, pixels, 7);
  EXPECT_NEAR(1 - p[1].mean().item<double>(), 0.3, 0.02);
  EXPECT_THROW(draw_views(2, 64, 64, 2, ViewDraw{}, 7), Error);  // neither boxes nor δ
  EXPECT_THROW(draw_views(2, 64, 64, 0, pixels, 7), Error);
  boxes.max_size = 80;
  EXPECT_THROW(draw_views(2, 64, 64, 1, boxes, 7), Error);
}

TEST(Inpaint, RefusesInputItCannotUse) {
  MaskedGaussian p(43);
  auto y = p.y.unsqueeze(0), m = p.mask.unsqueeze(0);
  auto c = p.config(2, 0);
  EXPECT_THROW(inpaint(p.prior(), y, m.narrow(1, 0, 4), 0, c), Error);         // shapes disagree
  EXPECT_THROW(inpaint(p.prior(), y, m * 0.5, 0, c), Error);                   // not a 0/1 mask
  EXPECT_THROW(inpaint(p.prior(), torch::view_as_real(y), m, 0, c), Error);    // not complex
  auto nan = y.clone();
  nan[0][0][0] = c10::complex<float>(std::nanf(""), 0);
  EXPECT_THROW(inpaint(p.prior(), nan, m, 0, c), Error);
  EXPECT_THROW(inpaint(p.prior(), y, m, 0, p.config(2, 4)), Error);            // views need a mask channel
  EXPECT_THROW(inpaint(p.prior(), y, m, 2, c), Error);
  EXPECT_THROW(inpaint(p.prior(), y, m, 0, p.config(0, 0)), Error);
}
