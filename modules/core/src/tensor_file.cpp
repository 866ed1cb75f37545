// Named tensors in a version-independent file (tensor_file.hpp).
#include "ambient/core/tensor_file.hpp"

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <set>
#include <sstream>
#include <utility>

#ifdef AMBIENT_HAVE_ZLIB
#include <zlib.h>
#endif

#include "ambient/core/atomic_write.hpp"
#include "ambient/core/error.hpp"
#include "ambient/core/reader_crash.hpp"

namespace ambient {
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
  write_atomically(path, [&](const std::string& tmp) {
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
  });
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

// Little-endian fields of the zip format, bounds-checked (offsets come from the file: up to 2^64).
struct ZipBytes {
  const std::string& b;
  const std::string& name;
  uint64_t get(uint64_t at, int width) const {
    AMBIENT_CHECK(at <= b.size() && static_cast<uint64_t>(width) <= b.size() - at, name,
                  ": damaged zip archive (a record runs past the end of the file; truncated?)");
    uint64_t v = 0;
    for (int i = width - 1; i >= 0; --i) v = (v << 8) | static_cast<uint8_t>(b[at + i]);
    return v;
  }
};

// A running CRC-32 (zip's polynomial; start from 0).
uint32_t crc32_update(uint32_t crc, const unsigned char* data, uint64_t n) {
#ifdef AMBIENT_HAVE_ZLIB
  while (n > 0) {
    const auto piece = static_cast<uInt>(std::min<uint64_t>(n, 1u << 30));
    crc = static_cast<uint32_t>(crc32(crc, data, piece));
    data += piece, n -= piece;
  }
  return crc;
#else  // the LibTorch-only build of ambient-gpu-pretrain, where zlib may be absent
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t i = 0; i < 256; ++i) {
      uint32_t c = i;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[i] = c;
    }
    return t;
  }();
  uint32_t c = ~crc;
  for (uint64_t i = 0; i < n; ++i) c = table[(c ^ data[i]) & 0xFF] ^ (c >> 8);
  return ~c;
#endif
}

// CRC-32 and length of a stored or deflated entry's contents, inflating in pieces (no allocation of the size the
// directory claims, and no inflating past it). Throws when the deflate stream is damaged or does not end inside
// the entry. Without zlib, deflated entries go unchecked (nullopt).
std::optional<std::pair<uint32_t, uint64_t>> entry_crc(const char* data, uint64_t size, uint64_t method,
                                                       uint64_t usize, const std::string& entry,
                                                       const std::string& name) {
  const auto* bytes = reinterpret_cast<const unsigned char*>(data);
  if (method == 0) return std::make_pair(crc32_update(0, bytes, size), size);
  AMBIENT_CHECK(method == 8, name, ": entry '", entry, "' uses zip compression method ", method,
                "; LibTorch archives store or deflate their entries");
#ifdef AMBIENT_HAVE_ZLIB
  z_stream zs{};
  AMBIENT_CHECK(inflateInit2(&zs, -MAX_WBITS) == Z_OK, name, ": cannot start zlib's inflate");
  std::array<unsigned char, 1 << 16> out{};
  uint32_t crc = 0;
  uint64_t length = 0, consumed = 0;
  int rc = Z_OK;
  while (rc == Z_OK && length <= usize) {
    if (zs.avail_in == 0 && consumed < size) {
      const auto piece = static_cast<uInt>(std::min<uint64_t>(size - consumed, 1u << 30));
      zs.next_in = const_cast<unsigned char*>(bytes + consumed);
      zs.avail_in = piece;
      consumed += piece;
    }
    zs.next_out = out.data();
    zs.avail_out = static_cast<uInt>(out.size());
    rc = inflate(&zs, Z_NO_FLUSH);
    const uint64_t produced = out.size() - zs.avail_out;
    crc = crc32_update(crc, out.data(), produced);
    length += produced;
    if (rc == Z_BUF_ERROR && zs.avail_in == 0 && consumed == size) break;  // the input ended before the stream
    if (rc == Z_BUF_ERROR) rc = Z_OK;
  }
  inflateEnd(&zs);
  AMBIENT_CHECK(length > usize || rc == Z_STREAM_END, name, ": damaged file (entry '", entry,
                "' is not a complete deflate stream)");
  return std::make_pair(crc, length);
#else
  return std::nullopt;
#endif
}

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
  const uint64_t disk = z.get(eocd + 4, 2), cd_disk = z.get(eocd + 6, 2);
  uint64_t here = z.get(eocd + 8, 2), entries = z.get(eocd + 10, 2), cd_size = z.get(eocd + 12, 4),
           cd_offset = z.get(eocd + 16, 4);
  uint64_t cd_limit = eocd;  // the directory ends before the records that describe it
  // LibTorch's miniz reads the zip64 record whenever its locator precedes the end record, whatever the 32-bit
  // fields say; they must then agree with it (or hold the zip64 marker), or this check and LibTorch would read two
  // different archives out of one file (found by fuzzing: 0 entries here, 753 there).
  if (eocd >= 20 && z.get(eocd - 20, 4) == 0x07064b50) {
    const uint64_t rec = z.get(eocd - 20 + 8, 8);
    AMBIENT_CHECK(rec <= static_cast<uint64_t>(eocd) - 20 && eocd - 20 - rec >= 56 && z.get(rec, 4) == 0x06064b50,
                  name, ": damaged zip64 archive (no zip64 end-of-central-directory record where its locator points)");
    const uint64_t here64 = z.get(rec + 24, 8), entries64 = z.get(rec + 32, 8), size64 = z.get(rec + 40, 8),
                   offset64 = z.get(rec + 48, 8);
    const auto agree = [](uint64_t narrow, uint64_t wide, uint64_t marker) { return narrow == marker || narrow == wide; };
    AMBIENT_CHECK(agree(here, here64, 0xFFFF) && agree(entries, entries64, 0xFFFF) &&
                      agree(cd_size, size64, 0xFFFFFFFFu) && agree(cd_offset, offset64, 0xFFFFFFFFu),
                  name, ": damaged zip archive (its zip64 and end-of-central-directory records disagree: ", entries,
                  " vs ", entries64, " entries, directory at ", cd_offset, " vs ", offset64, ")");
    here = here64, entries = entries64, cd_size = size64, cd_offset = offset64, cd_limit = rec;
  } else {
    AMBIENT_CHECK(entries != 0xFFFF && cd_offset != 0xFFFFFFFFu && cd_size != 0xFFFFFFFFu, name,
                  ": damaged zip64 archive (no zip64 locator before the end record)");
  }
  AMBIENT_CHECK(disk == 0 && cd_disk == 0 && here == entries, name, ": damaged zip archive (its end record claims ",
                "another disk, or ", here, " of ", entries, " entries on this one)");
  AMBIENT_CHECK(entries > 0, name, ": damaged zip archive (no entries)");
  AMBIENT_CHECK(cd_size <= cd_limit && cd_offset <= cd_limit - cd_size, name, ": damaged zip archive (a central ",
                "directory of ", cd_size, " bytes at ", cd_offset, " runs past its end record at ", cd_limit, ")");
  uint64_t at = cd_offset;
  for (uint64_t e = 0; e < entries; ++e) {
    AMBIENT_CHECK(at + 46 <= cd_offset + cd_size && z.get(at, 4) == 0x02014b50, name,
                  ": damaged zip archive (central directory entry ", e, ")");
    const uint64_t method = z.get(at + 10, 2), crc = z.get(at + 16, 4), name_len = z.get(at + 28, 2),
                   extra_len = z.get(at + 30, 2), comment_len = z.get(at + 32, 2);
    uint64_t size = z.get(at + 20, 4), usize = z.get(at + 24, 4), local = z.get(at + 42, 4);
    const uint64_t next = at + 46 + name_len + extra_len + comment_len;
    AMBIENT_CHECK(next <= cd_offset + cd_size, name, ": damaged zip archive (central directory entry ", e,
                  " runs past the directory)");
    const std::string entry = bytes.substr(at + 46, name_len);
    // zip64 extra field (id 1): the 64-bit sizes and offset, for the fields that hold 0xFFFFFFFF, in this order.
    const bool wide_usize = usize == 0xFFFFFFFFu, wide_size = size == 0xFFFFFFFFu, wide_local = local == 0xFFFFFFFFu;
    for (uint64_t x = at + 46 + name_len; x + 4 <= at + 46 + name_len + extra_len;) {
      const uint64_t id = z.get(x, 2), len = z.get(x + 2, 2);
      if (id == 1) {
        uint64_t f = x + 4;
        if (wide_usize) usize = z.get(f, 8), f += 8;
        if (wide_size) size = z.get(f, 8), f += 8;
        if (wide_local) local = z.get(f, 8);
      }
      x += 4 + len;
    }
    AMBIENT_CHECK(z.get(local, 4) == 0x04034b50, name, ": damaged zip archive (local header of entry ", e, ")");
    const uint64_t data = local + 30 + z.get(local + 26, 2) + z.get(local + 28, 2);
    AMBIENT_CHECK(data <= bytes.size() && size <= bytes.size() - data, name, ": damaged zip archive (entry ", e,
                  " runs past the end; truncated?)");
    const auto actual = entry_crc(bytes.data() + data, size, method, usize, entry, name);
    AMBIENT_CHECK(!actual || (actual->first == crc && actual->second == usize), name, ": damaged file (entry '",
                  entry, "' fails its CRC-32 check)");
    at = next;
  }
  AMBIENT_CHECK(at == cd_offset + cd_size, name, ": damaged zip archive (its central directory holds ", cd_size,
                " bytes, its ", entries, " entries ", at - cd_offset, ")");
}

void check_zip_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  AMBIENT_CHECK(in.good(), "cannot open ", path);
  std::ostringstream bytes;
  bytes << in.rdbuf();
  check_zip_integrity(bytes.str(), path);
}

void load_archive(torch::serialize::InputArchive& archive, const std::string& path,
                  c10::optional<torch::Device> device) {
  AMBIENT_CHECK(std::filesystem::exists(path), "checkpoint: file not found: ", path);
  check_zip_file(path);  // LibTorch's parser trusts the archive
  const ambient::ReaderCrashScope scope("checkpoint reader (LibTorch 1.13)", path,
                                    "the file is damaged; train again, or resume from an earlier checkpoint");
  try {
    archive.load_from(path, device);
  } catch (const c10::Error& e) {
    fail("checkpoint: cannot read ", path, " (truncated or not an ambient checkpoint): ", e.what_without_backtrace());
  } catch (const std::exception& e) {  // TorchScript's parse errors
    fail("checkpoint: cannot read ", path, " (damaged or not an ambient checkpoint): ", e.what());
  }
}

}  // namespace ambient
