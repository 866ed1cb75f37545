// NIfTI and PNG through ITK (linked privately; ITK types stay in this file), and atomic file replacement.
#include <itkImage.h>
#include <itkImageFileReader.h>
#include <itkImageFileWriter.h>
#include <itkNiftiImageIO.h>
#include <itkPNGImageIO.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include "ambient/core/error.hpp"
#include "ambient/mri/io.hpp"

namespace ambient::mri {
namespace {

using Image3 = itk::Image<float, 3>;
using Image2 = itk::Image<unsigned char, 2>;

// The whole file, decompressed when it is gzip (.nii.gz): zlib checks the stream's CRC and length, which ITK does not
// (it reads a truncated .nii.gz as zeros). A file that is not gzip is read as it is.
std::string read_all(const std::string& path) {
  gzFile f = gzopen(path.c_str(), "rb");
  AMBIENT_CHECK(f != nullptr, "NIfTI reader: cannot open ", path);
  std::string out;
  char buf[1 << 16];
  int n = 0;
  while ((n = gzread(f, buf, sizeof buf)) > 0) out.append(buf, static_cast<size_t>(n));
  int code = Z_OK;
  const std::string why = n < 0 ? gzerror(f, &code) : "";
  gzclose(f);
  AMBIENT_CHECK(n >= 0, "NIfTI reader: ", path, " is damaged or truncated (gzip: ", why, ")");
  return out;
}

// What ITK does not say about a NIfTI-1 file: that it holds fewer voxels than its header promises, or NaN/Inf
// values (ITK turns those into 0). NIfTI-2 and other headers are left to ITK.
void check_nifti_payload(const std::string& path) {
  const std::string raw = read_all(path);
  AMBIENT_CHECK(raw.size() >= 348, "NIfTI reader: ", path, " is too short for a NIfTI header (", raw.size(),
                " bytes; truncated?)");
  int32_t sizeof_hdr = 0;
  std::memcpy(&sizeof_hdr, raw.data(), 4);
  constexpr int32_t nifti1 = 348, nifti2 = 540, nifti1_swapped = 0x5C010000, nifti2_swapped = 0x1C020000;
  AMBIENT_CHECK(sizeof_hdr == nifti1 || sizeof_hdr == nifti2 || sizeof_hdr == nifti1_swapped ||
                    sizeof_hdr == nifti2_swapped,
                "NIfTI reader: ", path, " is not a NIfTI file (its first field, the header size, is ", sizeof_hdr,
                "; expected 348 or 540)");
  if (sizeof_hdr != nifti1) return;  // byte-swapped or NIfTI-2: ITK checks those
  int16_t dim[8], datatype = 0, bitpix = 0;
  float vox_offset = 0;
  std::memcpy(dim, raw.data() + 40, sizeof dim);
  std::memcpy(&datatype, raw.data() + 70, 2);
  std::memcpy(&bitpix, raw.data() + 72, 2);
  std::memcpy(&vox_offset, raw.data() + 108, 4);
  AMBIENT_CHECK(dim[0] >= 1 && dim[0] <= 7 && std::all_of(dim + 1, dim + 1 + dim[0], [](int16_t d) { return d >= 1; }),
                "NIfTI reader: ", path, " has a damaged header: dim = [", dim[0], ", ", dim[1], ", ", dim[2], ", ",
                dim[3], ", ...]");
  AMBIENT_CHECK(bitpix > 0 && bitpix % 8 == 0 && vox_offset >= 0 && vox_offset < 1e9, "NIfTI reader: ", path,
                " has a damaged header: bitpix ", bitpix, ", vox_offset ", vox_offset);
  long double claimed = 1.0L;  // seven dims of up to 32767 overflow 64 bits
  for (int i = 1; i <= dim[0]; ++i) claimed *= static_cast<long double>(dim[i]);
  const uint64_t offset = static_cast<uint64_t>(vox_offset);
  const long double need = static_cast<long double>(offset) + claimed * (bitpix / 8);
  const auto count = [](long double v) {
    return v < 0x1p62L ? std::to_string(static_cast<int64_t>(v)) : std::string("over 2^62");
  };
  AMBIENT_CHECK(static_cast<long double>(raw.size()) >= need, "NIfTI reader: ", path,
                " is truncated: its header promises ", count(claimed), " voxels (", count(need),
                " bytes), the file holds ", raw.size(), " bytes");
  const auto voxels = static_cast<uint64_t>(claimed);
  auto count_bad = [&](auto zero) {
    using T = decltype(zero);
    int64_t bad = 0;
    for (uint64_t i = 0; i < voxels; ++i) {
      T v;
      std::memcpy(&v, raw.data() + offset + i * sizeof(T), sizeof(T));
      bad += !std::isfinite(v);
    }
    return bad;
  };
  const int64_t bad = datatype == 16 ? count_bad(0.0f) : datatype == 64 ? count_bad(0.0) : 0;  // FLOAT32, FLOAT64
  AMBIENT_CHECK(bad == 0, "NIfTI reader: ", path, " holds ", bad, " NaN or infinite voxel(s); replace them (e.g. by 0) "
                "before using it");
}

// Writes `image` to `path` through `io`, atomically (a temporary file renamed); `what` names the format in errors.
template <typename Image>
void write_with_itk(const std::string& path, const typename Image::Pointer& image, itk::ImageIOBase::Pointer io,
                    const char* what) {
  write_atomically(path, [&](const std::string& tmp) {
    auto writer = itk::ImageFileWriter<Image>::New();
    writer->SetImageIO(io);
    writer->SetFileName(tmp);
    writer->SetInput(image);
    try {
      writer->Update();
    } catch (const itk::ExceptionObject& e) {
      fail(what, " writer: ITK could not write ", path, " (", e.GetDescription(), ")");
    }
  });
}

}  // namespace

Volume volume_from_geometry(const torch::Tensor& images, const Geometry& g) {
  AMBIENT_CHECK(images.dim() == 3, "volume: expected images [slice, ky, kx], got ", shape_string(images.sizes().vec()));
  AMBIENT_CHECK(static_cast<int64_t>(g.slices.size()) == images.size(0), "volume: geometry has ", g.slices.size(),
                " slices, images have ", images.size(0));
  const int64_t ny = images.size(1), nx = images.size(2);
  Volume v;
  v.data = (images.is_complex() ? images.abs() : images).to(torch::kFloat).contiguous();
  v.spacing = g.voxel_size(ny, nx);
  const auto& s0 = g.slices[0];
  Vec3 slice_axis = s0.slice_dir;
  if (g.slices.size() > 1) {  // stack along the direction slices actually advance
    Vec3 d;
    double n = 0;
    for (int i = 0; i < 3; ++i) d[i] = g.slices[1].position[i] - s0.position[i], n += d[i] * d[i];
    n = std::sqrt(n);
    if (n > 1e-6)
      for (int i = 0; i < 3; ++i) slice_axis[i] = d[i] / n;
  }
  v.direction = {s0.read_dir, s0.phase_dir, slice_axis};
  // Pixel (ny/2, nx/2) sits at the slice position (centred FFT convention).
  for (int i = 0; i < 3; ++i)
    v.origin[i] = s0.position[i] - (nx / 2) * v.spacing[0] * s0.read_dir[i] - (ny / 2) * v.spacing[1] * s0.phase_dir[i];
  return v;
}

void write_nifti(const std::string& path, const Volume& v) {
  AMBIENT_CHECK(v.data.defined() && v.data.dim() == 3, "NIfTI writer: expected a volume [z, y, x], got ",
                v.data.defined() ? shape_string(v.data.sizes().vec()) : std::string("none"));
  auto data = v.data.to(torch::kFloat).contiguous();
  AMBIENT_CHECK(torch::isfinite(data).all().item<bool>(), "NIfTI writer: the volume holds NaN or infinite values; "
                "refusing to write ", path);
  auto image = Image3::New();
  Image3::RegionType region;
  Image3::SizeType size;
  size[0] = data.size(2);
  size[1] = data.size(1);
  size[2] = data.size(0);
  region.SetSize(size);
  image->SetRegions(region);
  image->Allocate();
  std::memcpy(image->GetBufferPointer(), data.data_ptr(), sizeof(float) * data.numel());
  Image3::SpacingType spacing;
  Image3::PointType origin;
  Image3::DirectionType direction;
  for (int i = 0; i < 3; ++i) {
    spacing[i] = v.spacing[i];
    origin[i] = v.origin[i];
    for (int j = 0; j < 3; ++j) direction[i][j] = v.direction[j][i];  // column j = axis j
  }
  image->SetSpacing(spacing);
  image->SetOrigin(origin);
  image->SetDirection(direction);
  write_with_itk<Image3>(path, image, itk::NiftiImageIO::New(), "NIfTI");
}

Volume read_nifti(const std::string& path) {
  AMBIENT_CHECK(std::filesystem::exists(path), "NIfTI reader: file not found: ", path);
  check_nifti_payload(path);
  auto reader = itk::ImageFileReader<Image3>::New();
  reader->SetImageIO(itk::NiftiImageIO::New());
  reader->SetFileName(path);
  try {
    reader->Update();
  } catch (const itk::ExceptionObject& e) {
    fail("NIfTI reader: ITK could not read ", path, " as a 3-D NIfTI volume (", e.GetDescription(), ")");
  }
  auto image = reader->GetOutput();
  const auto size = image->GetLargestPossibleRegion().GetSize();
  Volume v;
  v.data = torch::empty({static_cast<int64_t>(size[2]), static_cast<int64_t>(size[1]), static_cast<int64_t>(size[0])},
                        torch::kFloat);
  std::memcpy(v.data.data_ptr(), image->GetBufferPointer(), sizeof(float) * v.data.numel());
  for (int i = 0; i < 3; ++i) {
    v.spacing[i] = image->GetSpacing()[i];
    v.origin[i] = image->GetOrigin()[i];
    for (int j = 0; j < 3; ++j) v.direction[j][i] = image->GetDirection()[i][j];
  }
  AMBIENT_CHECK(torch::isfinite(v.data).all().item<bool>(), "NIfTI reader: ", path, " holds NaN or infinite values");
  return v;
}

void write_png(const std::string& path, const torch::Tensor& image, double lo, double hi) {
  AMBIENT_CHECK(image.dim() == 2, "PNG writer: expected an image [h, w], got ", shape_string(image.sizes().vec()));
  AMBIENT_CHECK(hi > lo, "PNG writer: expected a window with hi > lo, got [", lo, ", ", hi, "]");
  auto scaled = ((image.to(torch::kDouble) - lo) / (hi - lo) * 255.0).nan_to_num(0).clamp(0, 255).round()
                    .to(torch::kUInt8).contiguous();
  auto png = Image2::New();
  Image2::RegionType region;
  Image2::SizeType size;
  size[0] = scaled.size(1);
  size[1] = scaled.size(0);
  region.SetSize(size);
  png->SetRegions(region);
  png->Allocate();
  std::memcpy(png->GetBufferPointer(), scaled.data_ptr(), scaled.numel());
  write_with_itk<Image2>(path, png, itk::PNGImageIO::New(), "PNG");
}

void write_png_row(const std::string& path, const std::vector<torch::Tensor>& images, double hi) {
  AMBIENT_CHECK(!images.empty(), "PNG writer: expected at least one image");
  std::vector<torch::Tensor> parts;
  const int64_t h = images[0].size(0);
  for (size_t i = 0; i < images.size(); ++i) {
    AMBIENT_CHECK(images[i].dim() == 2 && images[i].size(0) == h, "PNG writer: images must share their height");
    if (i) parts.push_back(torch::full({h, 2}, 0.5 * hi, torch::kDouble));
    parts.push_back(images[i].to(torch::kDouble));
  }
  write_png(path, torch::cat(parts, 1), 0.0, hi);
}

}  // namespace ambient::mri
