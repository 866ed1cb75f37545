// The version-independent tensor file and the clean slices in memory behind ambient-gpu-pretrain: files round-trip
// and refuse damage, the random phase is smooth and bounded, batches follow the loader's order and depend only on
// (seed, step), the loss of the one training loop over them falls, resume is exact, and the weights load into the
// network they came from.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "ambient/core/error.hpp"
#include "ambient/core/tensor_file.hpp"
#include "ambient/diffusion/slices.hpp"
#include "../mri/helpers.hpp"

using namespace ambient;
using namespace ambient::diffusion;

namespace {

using test::scratch;

UNetConfig tiny() {
  UNetConfig c;
  c.base_channels = 8;
  c.channel_mult = {1, 2};
  c.blocks_per_level = 1;
  c.attention_levels = {1};
  return c;
}

// Discs of random radius and centre, scaled so the 99th percentile is about 1: [n, 16, 16].
torch::Tensor discs(int64_t n) {
  torch::manual_seed(5);
  auto coords = torch::arange(16, torch::kFloat) - 7.5;
  auto r2 = coords.reshape({1, 16, 1}).square() + coords.reshape({1, 1, 16}).square();
  auto radius = torch::rand({n, 1, 1}) * 4 + 3;
  return (r2 < radius.square()).to(torch::kFloat);
}

TrainConfig quick(int64_t steps) {
  TrainConfig c = slice_pretrain_defaults();
  c.steps = steps;
  c.batch = 8;
  c.lr = 2e-3;
  c.warmup = 5;
  c.ema_halflife = 5;
  c.checkpoint_every = 1000;
  c.bf16 = false;
  return c;
}

int64_t train(const torch::Tensor& data, const UNetConfig& net, const TrainConfig& cfg, const std::string& out,
              bool resume, const TrainMonitor& monitor = {}) {
  return train_on_slices(data, net, EdmConfig{}, cfg, SliceAugment{}, torch::kCPU, out, resume, monitor);
}

std::string bytes_of(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

}  // namespace

TEST(TensorFile, RoundTripsTensorsAndMetadata) {
  TensorFile f;
  f.meta = {{"net_config", "base_channels=8;channel_mult=1,2"}, {"note", "two words"}};
  f.tensors = {{"a.weight", torch::randn({3, 4})}, {"half", torch::randn({2, 5, 1}).to(torch::kHalf)},
               {"scalar", torch::tensor(2.5f).reshape({})}, {"empty", torch::zeros({0, 3})}};
  const auto path = scratch("roundtrip.bin");
  write_tensor_file(path, f);
  EXPECT_TRUE(is_tensor_file(path));
  auto g = read_tensor_file(path);
  EXPECT_EQ(g.meta, f.meta);
  ASSERT_EQ(g.tensors.size(), f.tensors.size());
  for (size_t i = 0; i < f.tensors.size(); ++i) {
    EXPECT_EQ(g.tensors[i].first, f.tensors[i].first);
    EXPECT_EQ(g.tensors[i].second.scalar_type(), f.tensors[i].second.scalar_type());
    EXPECT_TRUE(torch::equal(g.tensors[i].second, f.tensors[i].second)) << f.tensors[i].first;
  }
  EXPECT_EQ(g.value("note"), "two words");
  EXPECT_THROW(g.tensor("missing"), Error);
  EXPECT_THROW(g.value("missing"), Error);
}

TEST(TensorFile, DamagedOrForeignFilesGiveClearErrors) {
  TensorFile f;
  f.tensors = {{"w", torch::randn({64, 64})}};
  const auto path = scratch("damaged.bin");
  write_tensor_file(path, f);
  const auto whole = bytes_of(path);
  std::ofstream(path, std::ios::binary | std::ios::trunc) << whole.substr(0, whole.size() / 2);
  try {
    read_tensor_file(path);
    FAIL() << "a truncated file was read";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("truncated"), std::string::npos) << e.what();
  }
  std::ofstream(path, std::ios::binary | std::ios::trunc) << "PK\x03\x04 a zip archive";
  EXPECT_FALSE(is_tensor_file(path));
  EXPECT_THROW(read_tensor_file(path), Error);
  EXPECT_THROW(read_tensor_file(scratch("absent.bin")), Error);
  TensorFile ints;
  ints.tensors = {{"i", torch::arange(3)}};  // int64: not a dtype the format carries
  EXPECT_THROW(write_tensor_file(scratch("ints.bin"), ints), Error);
  EXPECT_FALSE(std::filesystem::exists(scratch("ints.bin")));
}

// The zip records of a real LibTorch archive, which check_zip_integrity must read as LibTorch's miniz does.
uint64_t get_le(const std::string& b, size_t at, int width) {
  uint64_t v = 0;
  for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b.at(at + i));
  return v;
}
void put_le(std::string& b, size_t at, int width, uint64_t v) {
  for (int i = 0; i < width; ++i, v >>= 8) b.at(at + i) = static_cast<char>(v & 0xFF);
}
std::string zip_refusal(const std::string& bytes) {
  try {
    check_zip_integrity(bytes, "archive");
    return "";
  } catch (const Error& e) {
    return e.what();
  }
}

TEST(ZipCheck, ReadsTheArchiveLibTorchReadsAndRefusesEveryDisagreement) {
  torch::serialize::OutputArchive out;  // long code entries (deflated) and tensor entries (stored)
  for (int i = 0; i < 64; ++i) out.write("value_" + std::to_string(i), c10::IValue(int64_t{i}));
  out.write("w", torch::randn({16, 16}));
  const auto path = scratch("archive.pt");
  out.save_to(path);
  const auto good = bytes_of(path);
  EXPECT_EQ(zip_refusal(good), "");
  const size_t eocd = good.rfind(std::string("PK\x05\x06", 4));
  ASSERT_NE(eocd, std::string::npos);
  ASSERT_GE(eocd, 20u);
  ASSERT_EQ(good.substr(eocd - 20, 4), std::string("PK\x06\x07", 4)) << "LibTorch writes zip64 records";
  const size_t zip64 = get_le(good, eocd - 20 + 8, 8), cd = get_le(good, zip64 + 48, 8);
  const auto has = [](const std::string& refusal, const char* text) {
    return refusal.find(text) != std::string::npos;
  };

  // The fuzzed checkpoints: the 32-bit end record says 0 entries, the zip64 record that LibTorch reads says 67.
  auto no_entries = good;
  put_le(no_entries, eocd + 8, 2, 0);
  put_le(no_entries, eocd + 10, 2, 0);
  EXPECT_TRUE(has(zip_refusal(no_entries), "records disagree")) << zip_refusal(no_entries);
  auto elsewhere = good;  // both records agree on a directory that is not where the entries are
  put_le(elsewhere, zip64 + 48, 8, cd - 4);
  if (get_le(good, eocd + 16, 4) != 0xFFFFFFFFu) put_le(elsewhere, eocd + 16, 4, cd - 4);
  EXPECT_TRUE(has(zip_refusal(elsewhere), "central directory entry 0")) << zip_refusal(elsewhere);
  auto longer = good;  // a directory size that its entries do not fill
  put_le(longer, zip64 + 40, 8, get_le(good, zip64 + 40, 8) - 1);
  if (get_le(good, eocd + 12, 4) != 0xFFFFFFFFu) put_le(longer, eocd + 12, 4, get_le(good, eocd + 12, 4) - 1);
  EXPECT_TRUE(has(zip_refusal(longer), "runs past the directory")) << zip_refusal(longer);
  auto empty = good;
  put_le(empty, zip64 + 24, 8, 0);
  put_le(empty, zip64 + 32, 8, 0);
  if (get_le(good, eocd + 10, 2) != 0xFFFF) put_le(empty, eocd + 8, 2, 0), put_le(empty, eocd + 10, 2, 0);
  EXPECT_TRUE(has(zip_refusal(empty), "no entries")) << zip_refusal(empty);

  // One byte changed inside a stored entry and inside a deflated one (LibTorch checks neither CRC).
  int stored = 0, deflated = 0;
  for (size_t at = cd, e = 0; e < get_le(good, zip64 + 32, 8); ++e) {
    const uint64_t method = get_le(good, at + 10, 2), size = get_le(good, at + 20, 4), local = get_le(good, at + 42, 4);
    const uint64_t data = local + 30 + get_le(good, local + 26, 2) + get_le(good, local + 28, 2);
    if (size > 8 && ((method == 0 && stored == 0) || (method == 8 && deflated == 0))) {
      auto flipped = good;
      flipped[data + size / 2] = static_cast<char>(flipped[data + size / 2] ^ 0x10);
      const auto why = zip_refusal(flipped);
      EXPECT_TRUE(has(why, "fails its CRC-32 check") || has(why, "not a complete deflate stream"))
          << "method " << method << ": " << why;
      auto other_method = good;
      put_le(other_method, at + 10, 2, 12);  // bzip2
      EXPECT_TRUE(has(zip_refusal(other_method), "compression method 12")) << zip_refusal(other_method);
      ++(method == 0 ? stored : deflated);
    }
    at += 46 + get_le(good, at + 28, 2) + get_le(good, at + 30, 2) + get_le(good, at + 32, 2);
  }
  EXPECT_EQ(stored, 1);
  EXPECT_EQ(deflated, 1) << "expected LibTorch to deflate the long code entry";
}

TEST(SliceBatches, FollowTheLoadersOrderAndDependOnlyOnSeedAndStep) {
  // Slice i is the constant i + 1, so a batch's magnitudes say which slices it holds.
  const int64_t n = 6;
  auto data = (torch::arange(1, n + 1, torch::kFloat).reshape({n, 1, 1}) * torch::ones({1, 8, 8})).contiguous();
  SliceBatches straight(data, 3, 11, 0, SliceAugment{}, torch::kCPU);
  std::vector<Batch> batches;
  for (int i = 0; i < 4; ++i) batches.push_back(straight.next());
  // Two steps of 3 are one epoch: every slice once.
  std::vector<int64_t> seen;
  for (int i = 0; i < 2; ++i) {
    auto mag = batches[i].image.square().sum(1).sqrt().mean({1, 2});  // |x| is the slice's value, whatever the phase
    for (int64_t j = 0; j < 3; ++j) seen.push_back(std::lround(mag[j].item<double>()));
  }
  std::sort(seen.begin(), seen.end());
  EXPECT_EQ(seen, (std::vector<int64_t>{1, 2, 3, 4, 5, 6}));
  // Step 3's batch from a source started there equals the straight run's: resume draws what it would have drawn.
  SliceBatches resumed(data, 3, 11, 3, SliceAugment{}, torch::kCPU);
  EXPECT_TRUE(torch::equal(resumed.next().image, batches[3].image));
  // The phase is fresh at each visit of a slice, and another seed draws otherwise.
  SliceBatches other(data, 3, 12, 0, SliceAugment{}, torch::kCPU);
  EXPECT_FALSE(torch::equal(other.next().image, batches[0].image));
  EXPECT_THROW(SliceBatches(torch::zeros({0, 8, 8}), 3, 1, 0, SliceAugment{}, torch::kCPU), Error);
}

TEST(SliceTrainer, LossFallsAndResumeIsExact) {
  const auto data = discs(32);
  const auto straight = scratch("straight.bin"), resumed = scratch("resumed.bin");
  std::vector<double> losses;
  EXPECT_EQ(train(data, tiny(), quick(120), straight, false, [&](const StepReport& r) { losses.push_back(r.loss); }),
            120);
  ASSERT_EQ(losses.size(), 120u);
  const double first = std::accumulate(losses.begin(), losses.begin() + 10, 0.0) / 10;
  const double last = std::accumulate(losses.end() - 10, losses.end(), 0.0) / 10;
  std::cout << "[ measured ] clean loss over the first / last 10 steps: " << first << " / " << last << "\n";
  EXPECT_LT(last, 0.7 * first);
  // Stopped at step 50 (as --time-limit stops a run), then resumed to 120: the same weights, byte for byte.
  EXPECT_EQ(train(data, tiny(), quick(50), resumed, false), 50);
  EXPECT_EQ(train(data, tiny(), quick(120), resumed, true), 120);
  EXPECT_EQ(bytes_of(straight), bytes_of(resumed));
  // Resuming with another network is refused.
  auto wider = tiny();
  wider.base_channels = 16;
  EXPECT_THROW(train(data, wider, quick(130), resumed, true), Error);
}

TEST(SliceTrainer, TimeLimitStopsCheckpointedAndResumeFinishes) {
  const auto data = discs(8);
  const auto straight = scratch("limit_straight.bin"), limited = scratch("limit_stopped.bin");
  EXPECT_EQ(train(data, tiny(), quick(6), straight, false), 6);
  auto cfg = quick(6);
  cfg.time_limit_s = 1e-6;  // runs out after the first step
  EXPECT_EQ(train(data, tiny(), cfg, limited, false), 1);
  int64_t step = 0;
  load_weights_file(limited, &step);
  EXPECT_EQ(step, 1);
  EXPECT_EQ(train(data, tiny(), quick(6), limited, true), 6);
  EXPECT_EQ(bytes_of(straight), bytes_of(limited));
}

TEST(SliceTrainer, WeightsLoadIntoTheNetworkTheyDescribe) {
  const auto path = scratch("weights.bin");
  train(discs(8), tiny(), quick(3), path, false);
  int64_t step = 0;
  auto model = load_weights_file(path, &step);
  EXPECT_EQ(step, 3);
  EXPECT_EQ(model->net->config().serialize(), tiny().serialize());
  auto file = read_tensor_file(path);
  for (const auto& p : model->named_parameters()) EXPECT_TRUE(torch::equal(p.value(), file.tensor(p.key()))) << p.key();
  // A file of another network is refused with the reason.
  file.tensors.pop_back();
  write_tensor_file(path, file);
  EXPECT_THROW(load_weights_file(path), Error);
  EXPECT_THROW(train(torch::zeros({0, 16, 16}), tiny(), quick(1), path, false), Error);
  auto bad = discs(4);
  bad[0][3][3] = std::nanf("");
  EXPECT_THROW(train(bad, tiny(), quick(1), path, false), Error);
  auto ambient = quick(1);
  ambient.objective = Objective::ambient_image;
  EXPECT_THROW(train(discs(4), tiny(), ambient, path, false), Error);
}
