// The UNet and EDM preconditioning: shapes for any H x W, widening keeps the function, configs round-trip.
#include <gtest/gtest.h>

#include <ATen/CPUGeneratorImpl.h>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/edm.hpp"
#include "ambient/diffusion/network.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

UNetConfig tiny(int64_t cond = 0) {
  UNetConfig c;
  c.base_channels = 8;
  c.channel_mult = {1, 2, 2};
  c.blocks_per_level = 1;
  c.attention_levels = {2};
  c.cond_channels = cond;
  return c;
}

void randomise(torch::nn::Module& m, uint64_t seed) {
  // Fresh networks have zero-initialised output layers; perturb every weight so tests see a non-trivial function.
  torch::manual_seed(seed);
  torch::NoGradGuard g;
  for (auto& p : m.parameters()) p.add_(0.05 * torch::randn_like(p));
}


// A randomised standard-preconditioned model and a model with the same weights and preconditioning `p`.
std::pair<EdmDenoiser, EdmDenoiser> standard_and(Precond p, uint64_t seed) {
  EdmConfig other;
  other.precond = p;
  EdmDenoiser standard(tiny(1), EdmConfig{}), twin(tiny(1), other);
  randomise(*standard, seed);
  torch::NoGradGuard g;
  auto from = standard->parameters(), to = twin->parameters();
  for (size_t i = 0; i < from.size(); ++i) to[i].copy_(from[i]);
  return {standard, twin};
}

}  // namespace

TEST(UNet, KeepsAnyImageSizeAndTakesConditionChannels) {
  UNet net(tiny(1));
  randomise(*net, 1);
  for (auto hw : std::vector<std::pair<int64_t, int64_t>>{{32, 32}, {37, 29}, {8, 12}}) {
    auto x = torch::randn({2, 3, hw.first, hw.second});
    auto y = net->forward(x, torch::zeros({2}));
    EXPECT_EQ(y.sizes(), torch::IntArrayRef({2, 2, hw.first, hw.second}));
    EXPECT_TRUE(torch::isfinite(y).all().item<bool>());
  }
  EXPECT_THROW(net->forward(torch::randn({1, 2, 16, 16}), torch::zeros({1})), ambient::Error);  // missing cond
}

TEST(UNet, WideningTheInputKeepsThePretrainedFunction) {
  UNet net(tiny(0));
  randomise(*net, 2);
  net->eval();
  auto x = torch::randn({2, 2, 24, 20});
  auto c = torch::rand({2});
  auto before = net->forward(x, c);
  net->widen_input(1);
  EXPECT_EQ(net->config().cond_channels, 1);
  auto mask = torch::randn({2, 1, 24, 20});  // any values in the new channel
  auto after = net->forward(torch::cat({x, mask}, 1), c);
  EXPECT_TRUE(torch::allclose(before, after, 1e-6, 1e-6));
}

TEST(UNet, NoiseLevelChangesTheOutput) {
  UNet net(tiny());
  randomise(*net, 3);
  auto x = torch::randn({1, 2, 16, 16});
  EXPECT_FALSE(torch::allclose(net->forward(x, torch::tensor({-1.0f})), net->forward(x, torch::tensor({1.0f}))));
}

TEST(UNet, ConfigRoundTripsAndValidates) {
  auto c = tiny(2);
  c.dropout = 0.1;
  auto r = UNetConfig::deserialize(c.serialize());
  EXPECT_EQ(r.serialize(), c.serialize());
  EXPECT_THROW(UNetConfig::deserialize("base_channels=2"), ambient::Error);
  EXPECT_THROW(UNetConfig::deserialize("channel_mult=1,2;attention_levels=5"), ambient::Error);
  EXPECT_THROW(UNetConfig::deserialize("colour=blue"), ambient::Error);
}

TEST(Edm, PreconditioningIsTheIdentityAtVanishingNoise) {
  EdmDenoiser d(tiny(), EdmConfig{});
  randomise(*d, 4);
  auto x = torch::randn({2, 2, 16, 16});
  // c_skip -> 1 and c_out -> 0 as σ -> 0: D(x; σ) -> x.
  auto out = d->forward(x, torch::full({2}, 1e-5f));
  EXPECT_LT((out - x).abs().max().item<double>(), 1e-3);
}

TEST(Edm, MaskedPreconditioningPredictsHiddenPixelsWithoutTheSkip) {
  // Same weights, two preconditionings. Where Ã shows the pixel they agree; where it hides it (input 0 there) the
  // standard one gives c_out(σ) F and the masked one σ_d F: at small σ the standard output can only reach x0 if F
  // grows like 1/σ, the masked one's target stays O(1).
  auto [standard, masked] = standard_and(Precond::masked, 6);
  auto gen = at::detail::createCPUGenerator(3);
  auto seen = (torch::rand({2, 1, 16, 16}, gen) > 0.4).to(torch::kFloat);
  auto x = seen * torch::randn({2, 2, 16, 16}, gen);
  auto sigma = torch::tensor({0.01f, 0.3f});
  auto a = standard->forward(x, sigma, seen), b = masked->forward(x, sigma, seen);
  EXPECT_LT((seen * (a - b)).abs().max().item<double>(), 1e-6);
  const double sd = 0.5;
  auto c_out = (sigma * sd / (sigma * sigma + sd * sd).sqrt()).reshape({-1, 1, 1, 1});
  auto expected = (1 - seen) * a * (sd / c_out);
  EXPECT_LT(((1 - seen) * b - expected).abs().max().item<double>(), 1e-4 * expected.abs().max().item<double>());
  EXPECT_GT(((1 - seen) * (b - a)).abs().max().item<double>(), 1e-3);
  // Without a mask (unconditional use) it is the standard preconditioning.
  auto ones = torch::ones_like(seen);
  EXPECT_LT((standard->forward(x, sigma, ones) - masked->forward(x, sigma, ones)).abs().max().item<double>(), 1e-6);
  EXPECT_EQ(parse_precond(precond_name(Precond::masked)), Precond::masked);
  EXPECT_THROW(parse_precond("nope"), ambient::Error);
}

TEST(Edm, MaskedLinesPreconditioningMixesPerKyLine) {
  // The k-space twin: along ky (the 1-D FFT over the image's rows), a line the mask keeps gets the standard
  // c_skip X + c_out N, a line it drops gets σ_d N alone, N the network's output.
  auto [standard, masked] = standard_and(Precond::masked_lines, 7);
  const int64_t n = 16;
  auto gen = at::detail::createCPUGenerator(5);
  auto kept = (torch::rand({2, n}, gen) > 0.5).to(torch::kFloat);
  auto cond = kept.reshape({2, 1, n, 1}).expand({2, 1, n, n}).contiguous();
  auto x = torch::randn({2, 2, n, n}, gen);
  auto sigma = torch::tensor({0.02f, 0.4f});
  auto a = standard->forward(x, sigma, cond), b = masked->forward(x, sigma, cond);
  auto ky = [](const torch::Tensor& t) {  // centred 1-D FFT over ky of the complex image
    auto z = torch::view_as_complex(t.permute({0, 2, 3, 1}).contiguous());
    return torch::fft::fftshift(torch::fft::fft(torch::fft::ifftshift(z, 1), c10::nullopt, 1, "ortho"), 1);
  };
  const double sd = 0.5;
  auto s = sigma.reshape({-1, 1, 1});
  auto c_skip = sd * sd / (s * s + sd * sd), c_out = s * sd / (s * s + sd * sd).sqrt();
  auto ka = ky(a), kb = ky(b), kx = ky(x), k = kept.unsqueeze(2);
  EXPECT_LT((k * (ka - kb)).abs().max().item<double>(), 1e-5);
  auto expected = (1 - k) * (ka - c_skip * kx) * (sd / c_out);
  EXPECT_LT(((1 - k) * kb - expected).abs().max().item<double>(), 1e-4 * expected.abs().max().item<double>());
  // All lines kept: the standard preconditioning.
  auto ones = torch::ones_like(cond);
  EXPECT_LT((standard->forward(x, sigma, ones) - masked->forward(x, sigma, ones)).abs().max().item<double>(), 1e-5);
  EXPECT_EQ(parse_precond(precond_name(Precond::masked_lines)), Precond::masked_lines);
}

TEST(Edm, SigmaSamplesAreLogNormal) {
  auto gen = at::detail::createCPUGenerator(1);
  EdmConfig e;
  auto s = sample_sigma(20000, e, gen).log();
  EXPECT_NEAR(s.mean().item<double>(), e.p_mean, 0.03);
  EXPECT_NEAR(s.std().item<double>(), e.p_std, 0.03);
  // λ(σ) = (σ² + σd²)/(σ σd)²
  EXPECT_NEAR(loss_weight(torch::tensor({0.5}), e).item<double>(), (0.25 + 0.25) / (0.0625), 1e-9);
}

TEST(Edm, ChunkedDenoiserMatchesOneBatchAndPassesGradients) {
  EdmDenoiser net(tiny(1), EdmConfig{});
  randomise(*net, 5);
  net->eval();
  auto d = as_denoiser(net);
  auto x = torch::randn({7, 2, 16, 16});
  auto sigma = torch::rand({7}) + 0.1;
  auto cond = (torch::rand({7, 1, 16, 16}) > 0.5).to(torch::kFloat);
  const auto whole = d(x, sigma, cond);
  // 7 items in chunks of 3: 3 + 3 + 1, each item with its own σ and mask channel.
  const auto parts = chunked(d, 3)(x, sigma, cond);
  EXPECT_LT((parts - whole).abs().max().item<double>(), 1e-5);
  // chunk <= 0 or >= batch: one call.
  int calls = 0;
  in_chunks(7, 0, [&](int64_t b, int64_t n) { ++calls; EXPECT_EQ(b, 0); EXPECT_EQ(n, 7); return torch::zeros({n}); });
  EXPECT_EQ(calls, 1);
  // DPS differentiates through the network: the chunked gradient is the whole one.
  auto xa = x.clone().requires_grad_(true), xb = x.clone().requires_grad_(true);
  auto ga = torch::autograd::grad({d(xa, sigma, cond).square().sum()}, {xa})[0];
  auto gb = torch::autograd::grad({chunked(d, 3)(xb, sigma, cond).square().sum()}, {xb})[0];
  EXPECT_LT((ga - gb).abs().max().item<double>(), 1e-4 * ga.abs().max().item<double>());
}
