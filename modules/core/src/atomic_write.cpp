// Atomic writes (atomic_write.hpp).
#include "ambient/core/atomic_write.hpp"

#include <algorithm>
#include <filesystem>
#include <random>

#include "ambient/core/error.hpp"

namespace ambient {
namespace {

std::string extension_of(const std::string& path) {
  const std::string name = std::filesystem::path(path).filename().string();
  for (const char* ext : {".nii.gz", ".cfl", ".hdr", ".nii", ".png", ".h5"}) {
    const std::string e(ext);
    if (name.size() > e.size() && name.compare(name.size() - e.size(), e.size(), e) == 0) return e;
  }
  return std::filesystem::path(path).extension().string();
}

}  // namespace

void require_output_folder(const std::string& path, const std::string& what) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  AMBIENT_CHECK(fs::is_directory(dir), what, " ", path, ": the folder ", dir.string(), " does not exist (create it "
                "first)");
}

void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write) {
  namespace fs = std::filesystem;
  const fs::path target(path);
  const fs::path dir = target.has_parent_path() ? target.parent_path() : fs::path(".");
  AMBIENT_CHECK(fs::is_directory(dir), "output: directory does not exist: ", dir.string(), " (for ", path, ")");
  const std::string ext = extension_of(path);
  std::random_device rd;
  const std::string stem = target.filename().string();
  const fs::path tmp = dir / ("." + stem.substr(0, stem.size() - ext.size()) + ".tmp" + std::to_string(rd() % 1000000) + ext);
  try {
    write(tmp.string());
    fs::rename(tmp, target);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
  // Temporaries of this target that a killed process left (SIGKILL mid-write): the rename above supersedes them.
  const std::string prefix = "." + stem.substr(0, stem.size() - ext.size()) + ".tmp";
  std::error_code ec;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() <= prefix.size() + ext.size() || name.compare(0, prefix.size(), prefix) != 0 ||
        name.compare(name.size() - ext.size(), ext.size(), ext) != 0)
      continue;
    const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - ext.size());
    if (std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) fs::remove(entry.path(), ec);
  }
}

}  // namespace ambient
