// Named tensors in a version-independent file (tensor_file.hpp).
#include "ambient/diffusion/tensor_file.hpp"

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <unistd.h>

#include "ambient/mri/error.hpp"

namespace ambient::diffusion {
namespace {

constexpr const char* kMagic = "ambient-tensors 1";

std::string dtype_name(const torch::Tensor& t) {
  if (t.scalar_type() == torch::kFloat) return "f32";
  if (t.scalar_type() == torch::kHalf) return "f16";
  fail("tensor file: expected float32 or float16 tensors, got ", t.scalar_type());
}

bool single_line(const std::string& s) { return s.find('\n') == std::string::npos; }

}  // namespace

const torch::Tensor& TensorFile::tensor(const std::string& name) const {
  for (const auto& [n, t] : tensors)
    if (n == name) return t;
  std::ostringstream names;
  for (const auto& [n, t] : tensors) names << " " << n;
  fail("tensor file: no tensor '", name, "' (it holds:", names.str(), ")");
}

const std::string& TensorFile::value(const std::string& key) const {
  auto it = meta.find(key);
  AMBIENT_CHECK(it != meta.end(), "tensor file: no metadata '", key, "'");
  return it->second;
}

bool is_tensor_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  return in && std::getline(in, line) && line == kMagic;
}

void write_tensor_file(const std::string& path, const TensorFile& file) {
  const std::string tmp = path + ".tmp" + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    AMBIENT_CHECK(out.good(), "tensor file: cannot create ", tmp, " (does the folder exist and is it writable?)");
    out << kMagic << "\n";
    for (const auto& [k, v] : file.meta) {
      AMBIENT_CHECK(!k.empty() && k.find(' ') == std::string::npos && single_line(k) && single_line(v),
                    "tensor file: metadata keys must be single words and values single lines, got '", k, "'");
      out << "meta " << k << " " << v << "\n";
    }
    for (const auto& [name, t] : file.tensors) {
      AMBIENT_CHECK(!name.empty() && name.find(' ') == std::string::npos && single_line(name),
                    "tensor file: tensor names must be single words, got '", name, "'");
      auto c = t.detach().to(torch::kCPU).contiguous();
      out << "tensor " << name << " " << dtype_name(c) << " " << c.dim();
      for (auto d : c.sizes()) out << " " << d;
      out << "\n";
      out.write(static_cast<const char*>(c.data_ptr()), static_cast<std::streamsize>(c.numel() * c.element_size()));
    }
    out << "end\n";
    out.flush();
    AMBIENT_CHECK(out.good(), "tensor file: write failed: ", tmp, " (disk full?)");
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) {
    std::filesystem::remove(tmp);
    fail("tensor file: cannot rename ", tmp, " to ", path, ": ", ec.message());
  }
}

TensorFile read_tensor_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AMBIENT_CHECK(in.good(), "tensor file: cannot open ", path);
  std::string line;
  AMBIENT_CHECK(std::getline(in, line) && line == kMagic, "tensor file: ", path, " does not start with '", kMagic,
                "' (not an ambient tensor file)");
  TensorFile file;
  std::set<std::string> seen;
  while (true) {
    AMBIENT_CHECK(static_cast<bool>(std::getline(in, line)), "tensor file: ", path,
                  " is truncated (no 'end' line); copy it again");
    if (line == "end") break;
    std::istringstream words(line);
    std::string kind, name;
    words >> kind >> name;
    if (kind == "meta") {
      std::string value;
      std::getline(words, value);
      if (!value.empty() && value[0] == ' ') value.erase(0, 1);
      file.meta[name] = value;
      continue;
    }
    AMBIENT_CHECK(kind == "tensor", "tensor file: ", path, ": unexpected line '", line.substr(0, 80), "'");
    AMBIENT_CHECK(seen.insert(name).second, "tensor file: ", path, " holds '", name, "' twice");
    std::string dtype;
    int64_t ndim = -1;
    words >> dtype >> ndim;
    AMBIENT_CHECK(dtype == "f32" || dtype == "f16", "tensor file: ", path, ": '", name, "' has dtype '", dtype,
                  "', expected f32 or f16");
    AMBIENT_CHECK(ndim >= 0 && ndim <= 8, "tensor file: ", path, ": '", name, "' has ", ndim, " dimensions");
    std::vector<int64_t> shape(static_cast<size_t>(ndim));
    for (auto& d : shape) {
      AMBIENT_CHECK(static_cast<bool>(words >> d) && d >= 0, "tensor file: ", path, ": bad shape for '", name, "'");
    }
    auto t = torch::empty(shape, dtype == "f32" ? torch::kFloat : torch::kHalf);
    const auto bytes = static_cast<std::streamsize>(t.numel() * t.element_size());
    in.read(static_cast<char*>(t.data_ptr()), bytes);
    AMBIENT_CHECK(in.gcount() == bytes, "tensor file: ", path, " is truncated inside '", name, "'; copy it again");
    file.tensors.emplace_back(name, t);
  }
  return file;
}

TensorFile module_tensors(torch::nn::Module& m) {
  TensorFile file;
  for (const auto& p : m.named_parameters(true)) file.tensors.emplace_back(p.key(), p.value().detach().to(torch::kCPU, torch::kFloat));
  for (const auto& b : m.named_buffers(true)) file.tensors.emplace_back(b.key(), b.value().detach().to(torch::kCPU, torch::kFloat));
  return file;
}

void load_module_tensors(torch::nn::Module& m, const TensorFile& file, const std::string& path) {
  torch::NoGradGuard g;
  size_t expected = 0;
  auto copy = [&](const std::string& name, torch::Tensor& dst) {
    const auto& src = file.tensor(name);
    AMBIENT_CHECK(src.sizes() == dst.sizes(), "weights: ", path, ": '", name, "' is ", shape_string(src.sizes().vec()),
                  ", the network expects ", shape_string(dst.sizes().vec()), " (another network configuration?)");
    dst.copy_(src);
    ++expected;
  };
  for (auto& p : m.named_parameters(true)) copy(p.key(), p.value());
  for (auto& b : m.named_buffers(true)) copy(b.key(), b.value());
  AMBIENT_CHECK(expected == file.tensors.size(), "weights: ", path, " holds ", file.tensors.size(),
                " tensors, the network has ", expected, " (another network configuration?)");
}

namespace {

uint32_t crc32_of(const char* data, size_t n) {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = 0xFFFFFFFFu;
  for (size_t i = 0; i < n; ++i) c = table[(c ^ static_cast<uint8_t>(data[i])) & 0xFF] ^ (c >> 8);
  return c ^ 0xFFFFFFFFu;
}

// Little-endian fields of the zip format, bounds-checked.
struct ZipBytes {
  const std::string& b;
  const std::string& name;
  uint64_t get(uint64_t at, int width) const {
    AMBIENT_CHECK(at + width <= b.size(), name, ": damaged zip archive (a record runs past the end of the file; "
                  "truncated?)");
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
    return v;
  }
};

}  // namespace

void check_zip_integrity(const std::string& bytes, const std::string& name) {
  const ZipBytes z{bytes, name};
  AMBIENT_CHECK(bytes.size() >= 22, name, ": not a zip archive (", bytes.size(), " bytes; truncated?)");
  // The end-of-central-directory record: within the last 64 KiB + 22 bytes.
  int64_t eocd = -1;
  const int64_t lowest = std::max<int64_t>(0, static_cast<int64_t>(bytes.size()) - 65557);
  for (int64_t at = static_cast<int64_t>(bytes.size()) - 22; at >= lowest && eocd < 0; --at)
    if (z.get(at, 4) == 0x06054b50) eocd = at;
  AMBIENT_CHECK(eocd >= 0, name, ": not a zip archive, or truncated (no end-of-central-directory record)");
  uint64_t entries = z.get(eocd + 10, 2), cd_offset = z.get(eocd + 16, 4);
  if (entries == 0xFFFF || cd_offset == 0xFFFFFFFFu) {  // zip64: the locator sits just before the record
    AMBIENT_CHECK(eocd >= 20 && z.get(eocd - 20, 4) == 0x07064b50, name, ": damaged zip64 archive (no locator)");
    const uint64_t rec = z.get(eocd - 20 + 8, 8);
    AMBIENT_CHECK(z.get(rec, 4) == 0x06064b50, name, ": damaged zip64 archive (no zip64 directory record)");
    entries = z.get(rec + 32, 8), cd_offset = z.get(rec + 48, 8);
  }
  uint64_t at = cd_offset;
  for (uint64_t e = 0; e < entries; ++e) {
    AMBIENT_CHECK(z.get(at, 4) == 0x02014b50, name, ": damaged zip archive (central directory entry ", e, ")");
    const uint64_t method = z.get(at + 10, 2), crc = z.get(at + 16, 4), name_len = z.get(at + 28, 2),
                   extra_len = z.get(at + 30, 2), comment_len = z.get(at + 32, 2);
    uint64_t size = z.get(at + 20, 4), local = z.get(at + 42, 4);
    // zip64 extra field (id 1): the 64-bit sizes and offset, for the fields that hold 0xFFFFFFFF, in this order.
    const uint64_t usize = z.get(at + 24, 4);
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = z.get(x, 2), len = z.get(x + 2, 2);
      if (id == 1) {
        uint64_t f = x + 4;
        if (usize == 0xFFFFFFFFu) f += 8;
        if (size == 0xFFFFFFFFu) size = z.get(f, 8), f += 8;
        if (local == 0xFFFFFFFFu) local = z.get(f, 8);
      }
      x += 4 + len;
    }
    AMBIENT_CHECK(z.get(local, 4) == 0x04034b50, name, ": damaged zip archive (local header of entry ", e, ")");
    const uint64_t data = local + 30 + z.get(local + 26, 2) + z.get(local + 28, 2);
    AMBIENT_CHECK(data + size <= bytes.size(), name, ": damaged zip archive (entry ", e, " runs past the end; "
                  "truncated?)");
    if (method == 0)
      AMBIENT_CHECK(crc32_of(bytes.data() + data, size) == crc, name, ": damaged file (entry '",
                    bytes.substr(at + 46, name_len), "' fails its CRC-32 check)");
    at += 46 + name_len + extra_len + comment_len;
  }
}

void check_zip_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AMBIENT_CHECK(in.good(), "cannot open ", path);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  check_zip_integrity(bytes.str(), path);
}

}  // namespace ambient::diffusion
