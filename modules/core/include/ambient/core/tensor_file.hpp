// A plain file of named tensors and text metadata, readable by any LibTorch version. It carries weights and data
// between this build (Debian's LibTorch 1.13, CPU) and a GPU build against another LibTorch (apps/gpu_pretrain),
// whose torch::serialize archives the other version may refuse. Layout (docs/formats.md):
//   "ambient-tensors 1\n", then "meta KEY VALUE\n" lines, then per tensor "tensor NAME DTYPE NDIM D0 .. Dn-1\n"
//   followed by its bytes (little-endian, row-major; DTYPE f32 or f16), then "end\n".
#pragma once

#include <map>
#include <string>
#include <utility>
#include <vector>

#include <torch/torch.h>

namespace ambient {

struct TensorFile {
  std::map<std::string, std::string> meta;                    ///< keys: no spaces; values: one line
  std::vector<std::pair<std::string, torch::Tensor>> tensors;  ///< float32 or float16, any device

  /// The tensor called `name`; throws naming the file's tensors when it has none.
  const torch::Tensor& tensor(const std::string& name) const;
  /// meta[key]; throws when absent.
  const std::string& value(const std::string& key) const;
};

/// True when `path` starts with the tensor-file magic line.
bool is_tensor_file(const std::string& path);
/// Writes through a temporary sibling renamed into place (no half-written file on failure).
void write_tensor_file(const std::string& path, const TensorFile& file);
/// Reads a whole file onto the CPU; a missing, truncated or malformed file throws ambient::Error naming it.
TensorFile read_tensor_file(const std::string& path);

/// Checks a zip archive (LibTorch checkpoints and TorchScript files are zips of stored entries) before LibTorch
/// parses it: the central directory must be intact and every stored entry must match its CRC-32. LibTorch checks
/// neither, and its TorchScript parser can crash on a damaged code entry (found by fuzzing, tests/fuzz).
/// `bytes` is the whole file; throws ambient::Error naming `name`.
void check_zip_integrity(const std::string& bytes, const std::string& name);
/// The same for a file on disk.
void check_zip_file(const std::string& path);
/// Loads a LibTorch archive (an ambient checkpoint, a .model.pt or .adam.pt) from `path`: check_zip_file first,
/// then LibTorch's reader inside an ambient::ReaderCrashScope (a crash in its TorchScript parser reads as a damaged
/// file in programs that asked for that). Missing files and LibTorch's errors throw ambient::Error naming `path`.
void load_archive(torch::serialize::InputArchive& archive, const std::string& path,
                  c10::optional<torch::Device> device = c10::nullopt);

/// The parameters and buffers of `m` by their dotted names, as float32 on the CPU.
TensorFile module_tensors(torch::nn::Module& m);
/// Copies every parameter and buffer of `m` from `file` (names and shapes must match exactly, both ways).
void load_module_tensors(torch::nn::Module& m, const TensorFile& file, const std::string& path);

}  // namespace ambient
