// Small helpers shared by the mri tests: seeded random complex tensors and a scratch folder.
#pragma once

#include <unistd.h>

#include <filesystem>
#include <string>

#include <ATen/CPUGeneratorImpl.h>
#include <torch/types.h>

namespace ambient::test {

inline torch::Tensor random_complex(std::vector<int64_t> shape, uint64_t seed) {
  auto gen = at::detail::createCPUGenerator(seed);
  return torch::randn(shape, gen, torch::kComplexFloat);
}

/// A path in this process's own scratch folder (AMBIENT_TEST_TMP/p<pid>, removed at exit): ctest runs every test
/// in a process of its own, several at once, so a shared name would be written and read by two tests at a time.
inline std::string scratch(const std::string& name) {
  struct Folder {
    std::filesystem::path path =
        std::filesystem::path(AMBIENT_TEST_TMP) / ("p" + std::to_string(static_cast<long>(::getpid())));
    ~Folder() {
      std::error_code ec;
      std::filesystem::remove_all(path, ec);
    }
  };
  static const Folder folder;
  std::filesystem::create_directories(folder.path);
  return (folder.path / name).string();
}

/// max |a - b| / max |b|
inline double rel_max_error(const torch::Tensor& a, const torch::Tensor& b) {
  return ((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item<double>();
}

}  // namespace ambient::test
