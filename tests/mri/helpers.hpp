// Small helpers shared by the mri tests: seeded random complex tensors and a scratch folder.
#pragma once

#include <filesystem>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

namespace ambient::test {

inline torch::Tensor random_complex(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::kComplexFloat);
}

inline std::string scratch(const std::string& name) {
  std::filesystem::path dir = std::filesystem::path(AMBIENT_TEST_TMP);
  std::filesystem::create_directories(dir);
  return (dir / name).string();
}

/// max |a - b| / max |b|
inline double rel_max_error(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item<double>();
}

}  // namespace ambient::test
