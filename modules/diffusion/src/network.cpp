// UNet: residual blocks with adaptive GroupNorm conditioned on the noise embedding, self-attention at chosen
// levels, skip connections between encoder and decoder (the DDPM++ layout of Song et al. 2021, as used by EDM).
#include "ambient/diffusion/network.hpp"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "ambient/core/error.hpp"

namespace ambient::diffusion {
namespace {

int64_t groups_for(int64_t channels, int64_t wanted) {
  int64_t g = std::min(wanted, channels);
  while (channels % g) --g;
  return g;
}

// GroupNorm in float32 with CPU autocast excluded: LibTorch 1.13's CPU autocast can hand group_norm a bfloat16
// input next to float32 weights, which it rejects; normalisation statistics want float32 anyway.
torch::Tensor norm_fp32(torch::nn::GroupNorm& norm, const torch::Tensor& x) {
  c10::impl::ExcludeDispatchKeyGuard no_autocast(c10::DispatchKey::AutocastCPU);
  return norm->forward(x.to(torch::kFloat));
}

torch::nn::Conv2d conv(int64_t in, int64_t out, int64_t k, int64_t stride = 1) {
  return torch::nn::Conv2d(torch::nn::Conv2dOptions(in, out, k).stride(stride).padding(k / 2));
}

std::string join(const std::vector<int64_t>& v) {
  std::ostringstream os;
  for (size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  return os.str();
}

std::vector<int64_t> split(const std::string& s) {
  std::vector<int64_t> out;
  std::stringstream ss(s);
  std::string item;
  while (std::getline(ss, item, ','))
    if (!item.empty()) out.push_back(std::stoll(item));
  return out;
}

}  // namespace

std::string UNetConfig::serialize() const {
  std::ostringstream os;
  os << "image_channels=" << image_channels << ";cond_channels=" << cond_channels << ";base_channels="
     << base_channels << ";channel_mult=" << join(channel_mult) << ";blocks_per_level=" << blocks_per_level
     << ";attention_levels=" << join(attention_levels) << ";dropout=" << dropout << ";groups=" << groups;
  return os.str();
}

UNetConfig UNetConfig::deserialize(const std::string& text) {
  UNetConfig c;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ';')) {
    const auto eq = item.find('=');
    AMBIENT_CHECK(eq != std::string::npos, "network config: expected key=value, got '", item, "'");
    const std::string k = item.substr(0, eq), v = item.substr(eq + 1);
    if (k == "image_channels") c.image_channels = std::stoll(v);
    else if (k == "cond_channels") c.cond_channels = std::stoll(v);
    else if (k == "base_channels") c.base_channels = std::stoll(v);
    else if (k == "channel_mult") c.channel_mult = split(v);
    else if (k == "blocks_per_level") c.blocks_per_level = std::stoll(v);
    else if (k == "attention_levels") c.attention_levels = split(v);
    else if (k == "dropout") c.dropout = std::stod(v);
    else if (k == "groups") c.groups = std::stoll(v);
    else fail("network config: unknown key '", k, "'");
  }
  c.validate();
  return c;
}

void UNetConfig::validate() const {
  AMBIENT_CHECK(image_channels >= 1 && cond_channels >= 0, "network: expected image channels >= 1 and cond >= 0");
  AMBIENT_CHECK(base_channels >= 4 && base_channels <= 1024, "network: expected base channels in [4, 1024], got ",
                base_channels);
  AMBIENT_CHECK(!channel_mult.empty() && channel_mult.size() <= 6, "network: expected 1 to 6 levels, got ",
                channel_mult.size());
  for (auto m : channel_mult) AMBIENT_CHECK(m >= 1, "network: expected channel multipliers >= 1, got ", m);
  AMBIENT_CHECK(blocks_per_level >= 1, "network: expected at least one block per level, got ", blocks_per_level);
  for (auto l : attention_levels)
    AMBIENT_CHECK(l >= 0 && l < levels(), "network: attention level ", l, " is not one of the ", levels(), " levels");
  AMBIENT_CHECK(dropout >= 0 && dropout < 1, "network: expected dropout in [0, 1), got ", dropout);
  AMBIENT_CHECK(groups >= 1, "network: expected groups >= 1, got ", groups);
}

torch::Tensor positional_embedding(const torch::Tensor& c_noise, int64_t channels) {
  const int64_t half = channels / 2;
  auto freqs = torch::arange(half, c_noise.options().dtype(torch::kFloat)) / static_cast<double>(half);
  freqs = torch::pow(1.0 / 10000.0, freqs);
  auto args = c_noise.to(torch::kFloat).unsqueeze(1) * freqs.unsqueeze(0);
  return torch::cat({torch::cos(args), torch::sin(args)}, 1);
}

ResBlockImpl::ResBlockImpl(int64_t in, int64_t out, int64_t emb, int64_t groups, double dropout) {
  norm0 = register_module("norm0", torch::nn::GroupNorm(groups_for(in, groups), in));
  conv0 = register_module("conv0", conv(in, out, 3));
  affine = register_module("affine", torch::nn::Linear(emb, 2 * out));
  norm1 = register_module("norm1", torch::nn::GroupNorm(torch::nn::GroupNormOptions(groups_for(out, groups), out)
                                                           .affine(false)));
  drop = register_module("drop", torch::nn::Dropout(dropout));
  conv1 = register_module("conv1", conv(out, out, 3));
  // Zero-initialised last convolution: every block starts as its skip path (as EDM initialises).
  torch::NoGradGuard guard;
  conv1->weight.zero_();
  conv1->bias.zero_();
  if (in != out) skip = register_module("skip", conv(in, out, 1));
}

torch::Tensor ResBlockImpl::forward(const torch::Tensor& x, const torch::Tensor& emb) {
  auto h = conv0->forward(torch::silu(norm_fp32(norm0, x)));
  auto params = affine->forward(emb).unsqueeze(-1).unsqueeze(-1).chunk(2, 1);  // adaptive scale and shift
  h = torch::silu(norm_fp32(norm1, h) * (params[0] + 1) + params[1]);
  h = conv1->forward(drop->forward(h));
  return (skip ? skip->forward(x) : x).to(h.scalar_type()) + h;
}

AttentionImpl::AttentionImpl(int64_t channels, int64_t groups) {
  heads = std::max<int64_t>(1, channels / 64);
  norm = register_module("norm", torch::nn::GroupNorm(groups_for(channels, groups), channels));
  qkv = register_module("qkv", conv(channels, 3 * channels, 1));
  proj = register_module("proj", conv(channels, channels, 1));
  torch::NoGradGuard guard;
  proj->weight.zero_();
  proj->bias.zero_();
}

torch::Tensor AttentionImpl::forward(const torch::Tensor& x) {
  const int64_t b = x.size(0), c = x.size(1), hw = x.size(2) * x.size(3);
  auto t = qkv->forward(norm_fp32(norm, x)).reshape({b, 3, heads, c / heads, hw});
  auto q = t.select(1, 0), k = t.select(1, 1), v = t.select(1, 2);  // [b, heads, d, hw]
  auto w = torch::softmax(q.transpose(2, 3).matmul(k) / std::sqrt(static_cast<double>(c / heads)), -1);
  auto out = v.matmul(w.transpose(2, 3)).reshape({b, c, x.size(2), x.size(3)});
  auto p = proj->forward(out);
  return x.to(p.scalar_type()) + p;
}

UNetImpl::UNetImpl(UNetConfig config) : config_(std::move(config)) {
  config_.validate();
  const auto& c = config_;
  const int64_t emb = c.emb_channels();
  map0 = register_module("map0", torch::nn::Linear(c.base_channels, emb));
  map1 = register_module("map1", torch::nn::Linear(emb, emb));
  conv_in = register_module("conv_in", conv(c.image_channels + c.cond_channels, c.base_channels, 3));
  auto has_attn = [&](int64_t level) {
    return std::find(c.attention_levels.begin(), c.attention_levels.end(), level) != c.attention_levels.end();
  };
  std::vector<int64_t> skips = {c.base_channels};
  int64_t ch = c.base_channels;
  for (int64_t l = 0; l < c.levels(); ++l) {
    const int64_t out = c.base_channels * c.channel_mult[l];
    for (int64_t b = 0; b < c.blocks_per_level; ++b) {
      enc_blocks->push_back(ResBlock(ch, out, emb, c.groups, c.dropout));
      enc_attn_.push_back(has_attn(l) ? register_module("enc_attn" + std::to_string(enc_attn_.size()),
                                                        Attention(out, c.groups))
                                      : Attention(nullptr));
      ch = out;
      skips.push_back(ch);
    }
    if (l + 1 < c.levels()) {
      downs->push_back(conv(ch, ch, 3, 2));
      skips.push_back(ch);
    }
  }
  mid0 = register_module("mid0", ResBlock(ch, ch, emb, c.groups, c.dropout));
  mid_attn = register_module("mid_attn", Attention(ch, c.groups));
  mid1 = register_module("mid1", ResBlock(ch, ch, emb, c.groups, c.dropout));
  for (int64_t l = c.levels() - 1; l >= 0; --l) {
    const int64_t out = c.base_channels * c.channel_mult[l];
    for (int64_t b = 0; b <= c.blocks_per_level; ++b) {
      dec_blocks->push_back(ResBlock(ch + skips.back(), out, emb, c.groups, c.dropout));
      skips.pop_back();
      dec_attn_.push_back(has_attn(l) ? register_module("dec_attn" + std::to_string(dec_attn_.size()),
                                                        Attention(out, c.groups))
                                      : Attention(nullptr));
      ch = out;
    }
    if (l > 0) ups->push_back(conv(ch, ch, 3));
  }
  register_module("enc_blocks", enc_blocks);
  register_module("downs", downs);
  register_module("dec_blocks", dec_blocks);
  register_module("ups", ups);
  norm_out = register_module("norm_out", torch::nn::GroupNorm(groups_for(ch, c.groups), ch));
  conv_out = register_module("conv_out", conv(ch, c.image_channels, 3));
  torch::NoGradGuard guard;
  conv_out->weight.mul_(0.2);
}

torch::Tensor UNetImpl::encode(const torch::Tensor& x_in, const torch::Tensor& c_noise, torch::Tensor& emb,
                              std::vector<torch::Tensor>& skips, std::vector<torch::Tensor>* levels) {
  const auto& c = config_;
  AMBIENT_CHECK(x_in.dim() == 4 && x_in.size(1) == c.image_channels + c.cond_channels, "network input: expected [B, ",
                c.image_channels + c.cond_channels, ", H, W], got ", ambient::shape_string(x_in.sizes().vec()));
  AMBIENT_CHECK(c_noise.dim() == 1 && c_noise.size(0) == x_in.size(0), "network: expected one noise level per image");
  const int64_t h = x_in.size(2), w = x_in.size(3), m = c.size_multiple();
  const int64_t ph = (m - h % m) % m, pw = (m - w % m) % m;
  auto x = (ph || pw) ? torch::constant_pad_nd(x_in, {0, pw, 0, ph}) : x_in;

  emb = torch::silu(map1->forward(torch::silu(map0->forward(positional_embedding(c_noise, c.base_channels)))));
  auto t = conv_in->forward(x);
  skips.push_back(t);
  size_t block = 0, down = 0;
  for (int64_t l = 0; l < c.levels(); ++l) {
    for (int64_t b = 0; b < c.blocks_per_level; ++b, ++block) {
      t = enc_blocks[block]->as<ResBlock>()->forward(t, emb);
      if (enc_attn_[block]) t = enc_attn_[block]->forward(t);
      skips.push_back(t);
    }
    if (levels) levels->push_back(t);
    if (l + 1 < c.levels()) {
      t = downs[down++]->as<torch::nn::Conv2d>()->forward(t);
      skips.push_back(t);
    }
  }
  return mid1->forward(mid_attn->forward(mid0->forward(t, emb)), emb);
}

torch::Tensor UNetImpl::forward(const torch::Tensor& x_in, const torch::Tensor& c_noise) {
  const auto& c = config_;
  torch::Tensor emb;
  std::vector<torch::Tensor> skips;
  auto t = encode(x_in, c_noise, emb, skips, nullptr);
  size_t block = 0, up = 0;
  for (int64_t l = c.levels() - 1; l >= 0; --l) {
    for (int64_t b = 0; b <= c.blocks_per_level; ++b, ++block) {
      t = dec_blocks[block]->as<ResBlock>()->forward(torch::cat({t, skips.back()}, 1), emb);
      skips.pop_back();
      if (dec_attn_[block]) t = dec_attn_[block]->forward(t);
    }
    if (l > 0) {
      t = torch::upsample_nearest2d(t, std::vector<int64_t>{t.size(2) * 2, t.size(3) * 2});
      t = ups[up++]->as<torch::nn::Conv2d>()->forward(t);
    }
  }
  t = conv_out->forward(torch::silu(norm_fp32(norm_out, t)));
  const int64_t h = x_in.size(2), w = x_in.size(3);
  return t.size(2) != h || t.size(3) != w ? t.narrow(2, 0, h).narrow(3, 0, w) : t;
}

torch::Tensor UNetImpl::features(const torch::Tensor& x, const torch::Tensor& c_noise, int64_t grid) {
  AMBIENT_CHECK(grid >= 1, "features: expected a grid of at least 1, got ", grid);
  torch::Tensor emb;
  std::vector<torch::Tensor> skips, levels;
  auto middle = encode(x, c_noise, emb, skips, &levels);
  levels.push_back(middle);
  std::vector<torch::Tensor> means;
  for (const auto& t : levels)
    means.push_back(grid == 1 ? t.to(torch::kFloat).mean({2, 3})
                              : torch::adaptive_avg_pool2d(t.to(torch::kFloat), {grid, grid}).flatten(1));
  return torch::cat(means, 1);
}

void UNetImpl::widen_input(int64_t extra) {
  AMBIENT_CHECK(extra >= 0, "widen input: expected a non-negative channel count, got ", extra);
  if (extra == 0) return;
  const int64_t in = conv_in->options.in_channels();
  auto wider = conv(in + extra, conv_in->options.out_channels(), 3);
  {
    torch::NoGradGuard guard;
    wider->weight.zero_();
    wider->weight.narrow(1, 0, in).copy_(conv_in->weight);
    wider->bias.copy_(conv_in->bias);
  }
  conv_in = replace_module("conv_in", wider);
  config_.cond_channels += extra;
}

}  // namespace ambient::diffusion
