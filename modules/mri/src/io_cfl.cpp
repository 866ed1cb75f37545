// BART .cfl/.hdr: a text header of up to 16 dimensions and raw column-major complex64 data.
#include <complex>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "ambient/core/error.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"

namespace ambient::mri {
namespace {

constexpr int kBartDims = 16;
constexpr int kCoilDim = 3, kMapsDim = 4, kSliceDim = 13;

std::string base_of(const std::string& path) {
  for (const char* ext : {".cfl", ".hdr"})
    if (path.size() > 4 && path.compare(path.size() - 4, 4, ext) == 0) return path.substr(0, path.size() - 4);
  return path;
}

}  // namespace

torch::Tensor read_cfl(const std::string& path) {
  const std::string base = base_of(path);
  std::ifstream hdr(base + ".hdr");
  AMBIENT_CHECK(hdr.good(), "cfl reader: header not found: ", base, ".hdr");
  std::string line;
  std::vector<int64_t> dims;
  while (std::getline(hdr, line)) {
    if (line.rfind("# Dimensions", 0) == 0) {
      AMBIENT_CHECK(std::getline(hdr, line), "cfl reader: '# Dimensions' has no values in ", base, ".hdr");
      std::istringstream is(line);
      int64_t d;
      while (is >> d) {
        AMBIENT_CHECK(d >= 1, "cfl reader: expected dimensions >= 1, got ", d, " in ", base, ".hdr");
        dims.push_back(d);
      }
      break;
    }
  }
  AMBIENT_CHECK(!dims.empty() && dims.size() <= kBartDims, "cfl reader: expected 1 to 16 dimensions, got ",
                dims.size(), " in ", base, ".hdr");
  const std::string data = base + ".cfl";
  AMBIENT_CHECK(std::filesystem::exists(data), "cfl reader: data file not found: ", data);
  const auto bytes = static_cast<int64_t>(std::filesystem::file_size(data));
  // The product is formed in long double first: dimensions from a damaged header overflow int64 (UB).
  long double claimed = 8.0L;
  for (auto d : dims) claimed *= static_cast<long double>(d);
  AMBIENT_CHECK(claimed == static_cast<long double>(bytes), "cfl reader: expected ",
                claimed < 0x1p62L ? std::to_string(static_cast<int64_t>(claimed)) : "over 2^62", " bytes for dims ",
                shape_string(dims), ", got ", bytes, " (truncated?) in ", data);
  const int64_t n = bytes / 8;
  while (dims.size() > 1 && dims.back() == 1) dims.pop_back();
  std::vector<int64_t> shape(dims.rbegin(), dims.rend());  // column-major (BART) = row-major with reversed dims
  auto t = torch::empty(shape, torch::kComplexFloat);
  std::ifstream in(data, std::ios::binary);
  in.read(reinterpret_cast<char*>(t.data_ptr()), n * 8);
  AMBIENT_CHECK(in.gcount() == n * 8, "cfl reader: short read from ", data);
  return t;
}

void write_cfl(const std::string& path, const torch::Tensor& data) {
  AMBIENT_CHECK(data.dim() >= 1 && data.dim() <= kBartDims, "cfl writer: expected 1 to 16 dimensions, got ",
                data.dim());
  const std::string base = base_of(path);
  auto t = data.to(torch::kComplexFloat).contiguous();
  write_atomically(base + ".cfl", [&](const std::string& tmp) {
    std::ofstream out(tmp, std::ios::binary);
    out.write(reinterpret_cast<const char*>(t.data_ptr()), t.numel() * 8);
    AMBIENT_CHECK(out.good(), "cfl writer: write failed: ", tmp);
  });
  write_atomically(base + ".hdr", [&](const std::string& tmp) {
    std::ofstream out(tmp);
    out << "# Dimensions\n";
    for (int64_t i = t.dim() - 1; i >= 0; --i) out << t.size(i) << " ";
    for (int64_t i = t.dim(); i < kBartDims; ++i) out << "1 ";
    out << "\n";
    AMBIENT_CHECK(out.good(), "cfl writer: write failed: ", tmp);
  });
}

void write_cfl_kspace(const std::string& path, const torch::Tensor& ksp) {
  AMBIENT_CHECK(ksp.dim() == 4, "cfl writer: expected k-space [slice, coil, ky, kx], got ",
                shape_string(ksp.sizes().vec()));
  // Row-major [slice, 1 x 9, coil, 1, ky, kx] = BART (kx, ky, 1, coil, 1..., slice at dim 13).
  std::vector<int64_t> shape = {ksp.size(0)};
  for (int i = kSliceDim - 1; i > kCoilDim; --i) shape.push_back(1);
  shape.insert(shape.end(), {ksp.size(1), 1, ksp.size(2), ksp.size(3)});
  write_cfl(path, ksp.reshape(shape));
}

torch::Tensor read_cfl_maps(const std::string& path) {
  auto t = read_cfl(path);
  std::vector<int64_t> shape(kBartDims - t.dim(), 1);
  shape.insert(shape.end(), t.sizes().begin(), t.sizes().end());
  t = t.reshape(shape);  // index i of the row-major tensor is BART dim 15 - i
  auto size = [&](int bart_dim) { return t.size(kBartDims - 1 - bart_dim); };
  for (int d = 0; d < kBartDims; ++d) {
    const bool used = d == 0 || d == 1 || d == kCoilDim || d == kMapsDim || d == kSliceDim;
    AMBIENT_CHECK(used || size(d) == 1, "cfl reader: expected coil maps with BART dims READ, PHS1, COIL, MAPS, SLICE "
                  "only (bart ecalib), got size ", size(d), " in dim ", d, " of ", path);
  }
  return t.select(kBartDims - 1 - kMapsDim, 0)
      .reshape({size(kSliceDim), size(kCoilDim), size(1), size(0)})
      .contiguous();
}

torch::Tensor read_cfl_images(const std::string& path) {
  auto t = read_cfl(path);
  AMBIENT_CHECK(t.dim() >= 2, "cfl reader: expected a 2-D or multi-slice image in ", path, ", got ",
                shape_string(t.sizes().vec()));
  return t.reshape({-1, t.size(-2), t.size(-1)});
}

Scan read_cfl_scan(const std::string& path) {
  auto t = read_cfl(path);
  // Pad back to 16 reversed dims, then pick (slice, coil, ky, kx).
  std::vector<int64_t> shape(kBartDims - t.dim(), 1);
  shape.insert(shape.end(), t.sizes().begin(), t.sizes().end());
  t = t.reshape(shape);  // index i of the row-major tensor is BART dim 15 - i
  for (int d = 0; d < kBartDims; ++d) {
    const bool used = d == 0 || d == 1 || d == kCoilDim || d == kSliceDim;
    AMBIENT_CHECK(used || t.size(kBartDims - 1 - d) == 1, "cfl reader: expected k-space with BART dims READ, PHS1, "
                  "COIL, SLICE only, got size ", t.size(kBartDims - 1 - d), " in dim ", d, " of ", path);
  }
  const int64_t S = t.size(kBartDims - 1 - kSliceDim), C = t.size(kBartDims - 1 - kCoilDim);
  const int64_t ny = t.size(kBartDims - 2), nx = t.size(kBartDims - 1);
  Scan scan;
  scan.format = "cfl";
  scan.source = path;
  scan.ksp = t.reshape({S, C, ny, nx}).contiguous();
  scan.mask = scan.ksp.abs().amax({1, 3}).gt(0);
  scan.calib = torch::zeros_like(scan.mask);
  for (int64_t s = 0; s < S; ++s) scan.calib[s] = central_run(scan.mask[s]);
  scan.geometry = default_geometry(S, {static_cast<double>(nx), static_cast<double>(ny), 5.0});
  validate(scan, "cfl reader (" + path + ")");
  return scan;
}

}  // namespace ambient::mri
