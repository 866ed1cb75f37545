// LibTorch seeds its default generator from the operating system's entropy in every process, so a test that draws
// weights or data without seeding first would see different numbers each run: a test that passes on one run and
// fails on the next (Features.AGridSeesWhereThingsAre did, in CI). Every test process starts from one fixed seed.
// Tests that depend on their draws still seed where they draw: this keeps them deterministic whatever ran before
// them in the same process. AMBIENT_TEST_SEED=<n> picks another start, to find tests that pass only by luck of the
// draw.
#include <cstdlib>
#include <string>

#include <gtest/gtest.h>
#include <torch/torch.h>

namespace {

class FixedSeed : public ::testing::Environment {
 public:
  void SetUp() override {
    const char* seed = std::getenv("AMBIENT_TEST_SEED");
    torch::manual_seed(seed != nullptr ? std::stoull(seed) : 20261207);
  }
};

[[maybe_unused]] ::testing::Environment* const fixed_seed = ::testing::AddGlobalTestEnvironment(new FixedSeed);

}  // namespace
