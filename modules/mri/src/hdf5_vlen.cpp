// Variable-length HDF5 values checked on disk: the raw descriptors and the global heap collections they name, read
// with plain file I/O, following the HDF5 file format specification (version 2 / 3 superblocks, global heap version 1).
#include "hdf5_vlen.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>

#include "ambient/core/error.hpp"

namespace ambient::mri::detail {
namespace {

uint64_t little_endian(const unsigned char* p, size_t bytes) {
  uint64_t v = 0;
  for (size_t i = bytes; i-- > 0;) v = (v << 8) | p[i];
  return v;
}

constexpr uint64_t align8(uint64_t n) { return (n + 7) / 8 * 8; }

struct Member {
  size_t offset = 0;     // within the stored element
  size_t base_size = 0;  // bytes per item of the sequence (1 for strings)
  std::string name;      // the compound member's name
};

/// The global heap collections of one file, parsed once each: object index -> object size.
class GlobalHeap {
 public:
  GlobalHeap(const std::string& path, uint64_t base, uint64_t eof, size_t length_size)
      : path_(path), in_(path, std::ios::binary), base_(base), eof_(eof), length_size_(length_size) {
    AMBIENT_CHECK(in_.good(), "HDF5 check: cannot open ", path);
  }

  /// Size of object `index` of the collection at `address`; throws when the collection is damaged or lacks it.
  uint64_t object_size(uint64_t address, uint32_t index) {
    auto it = collections_.find(address);
    if (it == collections_.end()) it = collections_.emplace(address, parse(address)).first;
    const auto obj = it->second.find(index);
    AMBIENT_CHECK(index > 0 && obj != it->second.end(), "HDF5 file damaged: a variable-length value refers to object ",
                  index, " of the global heap collection at byte ", address, ", which has no such object (", path_, ")");
    return obj->second;
  }

 private:
  std::map<uint32_t, uint64_t> parse(uint64_t address) {
    const uint64_t header = align8(8 + length_size_), object_header = align8(8 + length_size_);
    const uint64_t at = base_ + address;
    AMBIENT_CHECK(address > 0 && at >= base_ && at <= eof_ && eof_ - at >= header, "HDF5 file damaged: a "
                  "variable-length value refers to byte ", address, ", outside the file (", path_, ")");
    std::vector<unsigned char> bytes(header);
    in_.seekg(static_cast<std::streamoff>(at));
    in_.read(reinterpret_cast<char*>(bytes.data()), static_cast<std::streamsize>(header));
    AMBIENT_CHECK(in_.good(), "HDF5 check: cannot read ", path_, " at byte ", at);
    const uint64_t size = little_endian(bytes.data() + 8, length_size_);
    AMBIENT_CHECK(std::string(bytes.begin(), bytes.begin() + 4) == "GCOL" && bytes[4] == 1,
                  "HDF5 file damaged: expected a global heap collection (GCOL, version 1) at byte ", address,
                  ", got something else (", path_, ")");
    AMBIENT_CHECK(size >= header && size <= eof_ - at, "HDF5 file damaged: the global heap collection at byte ",
                  address, " claims ", size, " bytes, more than the file holds (", path_, ")");
    bytes.resize(size);
    in_.read(reinterpret_cast<char*>(bytes.data() + header), static_cast<std::streamsize>(size - header));
    AMBIENT_CHECK(in_.good(), "HDF5 check: cannot read ", path_, " at byte ", at);

    // The walk HDF5 does when it loads a collection: an object header (index, references, reserved, size), then
    // the data padded to 8 bytes; index 0 is free space whose size includes its header.
    std::map<uint32_t, uint64_t> objects;
    for (uint64_t p = header; p < size && size - p >= object_header;) {
      const uint32_t index = static_cast<uint32_t>(little_endian(bytes.data() + p, 2));
      const uint64_t object = little_endian(bytes.data() + p + 8, length_size_);
      const uint64_t need = index > 0 ? object_header + align8(object) : object;
      AMBIENT_CHECK(object <= size && need > 0 && need <= size - p, "HDF5 file damaged: object ", index,
                    " of the global heap collection at byte ", address, " has an impossible size, ", object,
                    " (it must be positive and fit its collection) (", path_, ")");
      if (index > 0) {
        AMBIENT_CHECK(objects.emplace(index, object).second, "HDF5 file damaged: object ", index,
                      " appears twice in the global heap collection at byte ", address, " (", path_, ")");
      }
      p += need;
    }
    return objects;
  }

  std::string path_;
  std::ifstream in_;
  uint64_t base_, eof_;
  size_t length_size_;
  std::map<uint64_t, std::map<uint32_t, uint64_t>> collections_;
};

/// The variable-length members of a stored element, and the element's size on disk. False where that layout is
/// not known here (a variable-length string inside a compound, whose memory and disk sizes differ).
bool vlen_layout(hid_t type, size_t address_size, size_t& element_size, std::vector<Member>& members) {
  const size_t descriptor = 4 + address_size + 4;
  const H5T_class_t cls = H5Tget_class(type);
  if (cls == H5T_STRING && H5Tis_variable_str(type) > 0) {
    element_size = descriptor;
    members = {{0, 1, ""}};
    return true;
  }
  if (cls == H5T_VLEN) {
    H5Handle super(H5Tget_super(type), H5Tclose);
    element_size = descriptor;
    members = {{0, super.get() >= 0 ? H5Tget_size(super.get()) : 0, ""}};
    return members[0].base_size > 0;
  }
  element_size = H5Tget_size(type);
  if (cls != H5T_COMPOUND) return true;
  const int n = H5Tget_nmembers(type);
  for (int i = 0; i < n; ++i) {
    H5Handle m(H5Tget_member_type(type, static_cast<unsigned>(i)), H5Tclose);
    if (m.get() < 0) return false;
    if (H5Tget_class(m.get()) == H5T_STRING && H5Tis_variable_str(m.get()) > 0) return false;
    if (H5Tget_class(m.get()) != H5T_VLEN) continue;
    // H5Dget_type gives the memory layout: a sequence member is an hvl_t there, 4 + address + 4 bytes on disk.
    if (descriptor != sizeof(hvl_t)) return false;
    H5Handle super(H5Tget_super(m.get()), H5Tclose);
    const size_t base = super.get() >= 0 ? H5Tget_size(super.get()) : 0;
    if (base == 0) return false;
    char* name = H5Tget_member_name(type, static_cast<unsigned>(i));
    members.push_back({H5Tget_member_offset(type, static_cast<unsigned>(i)), base, name ? name : ""});
    if (name) H5free_memory(name);
  }
  return true;
}

// Whether a stored datatype is laid out consistently: compound members inside the compound, arrays the size of
// their elements. HDF5 1.10.8 converts a damaged compound by the member offsets it records, without checking them
// against the sizes, and copies out of bounds (a fuzz finding, through libismrmrd's acquisition read).
std::string type_damage(hid_t type, int depth) {
  const size_t size = H5Tget_size(type);
  if (size == 0) return "a datatype of 0 bytes";
  if (depth > 16) return "datatypes nested more than 16 deep";
  const H5T_class_t cls = H5Tget_class(type);
  if (cls == H5T_INTEGER || cls == H5T_FLOAT) {  // the bits must lie inside the bytes
    const size_t precision = H5Tget_precision(type);
    const int offset = H5Tget_offset(type);
    if (precision == 0 || offset < 0 || precision + static_cast<size_t>(offset) > 8 * size)
      return "a number of " + std::to_string(precision) + " bits at bit " + std::to_string(offset) + " of " +
             std::to_string(size) + " bytes";
    if (cls == H5T_FLOAT) {
      size_t spos = 0, epos = 0, esize = 0, mpos = 0, msize = 0;
      if (H5Tget_fields(type, &spos, &epos, &esize, &mpos, &msize) < 0 || esize == 0 || esize > 32 ||
          spos >= precision || epos + esize > precision || mpos + msize > precision)
        return "a floating-point type whose sign, exponent and mantissa do not fit its " +
               std::to_string(precision) + " bits";
    }
  } else if (cls == H5T_COMPOUND) {
    const int n = H5Tget_nmembers(type);
    if (n < 0) return "a compound whose members cannot be read";
    for (int i = 0; i < n; ++i) {
      H5Handle m(H5Tget_member_type(type, static_cast<unsigned>(i)), H5Tclose);
      if (m.get() < 0) return "a compound member whose type cannot be read";
      const size_t offset = H5Tget_member_offset(type, static_cast<unsigned>(i)), bytes = H5Tget_size(m.get());
      if (offset > size || bytes > size - offset)
        return "a compound member of " + std::to_string(bytes) + " bytes at byte " + std::to_string(offset) +
               " of a " + std::to_string(size) + "-byte compound";
      if (auto why = type_damage(m.get(), depth + 1); !why.empty()) return why;
    }
  } else if (cls == H5T_ARRAY) {
    const int rank = H5Tget_array_ndims(type);
    if (rank < 1 || rank > 32) return "an array type of rank " + std::to_string(rank);
    hsize_t dims[32] = {};
    H5Tget_array_dims2(type, dims);
    H5Handle base(H5Tget_super(type), H5Tclose);
    if (base.get() < 0) return "an array type without an element type";
    long double bytes = static_cast<long double>(H5Tget_size(base.get()));
    for (int i = 0; i < rank; ++i) bytes *= static_cast<long double>(dims[i]);
    if (bytes != static_cast<long double>(size)) return "an array type whose elements do not fill its size";
    return type_damage(base.get(), depth + 1);
  } else if (cls == H5T_VLEN) {
    H5Handle base(H5Tget_super(type), H5Tclose);
    if (base.get() < 0) return "a sequence type without an element type";
    return type_damage(base.get(), depth + 1);
  }
  return "";
}

}  // namespace

void require_plausible_extent(hid_t ds, const std::string& path, const std::string& name) {
  H5Handle type(H5Dget_type(ds), H5Tclose);
  H5Handle space(H5Dget_space(ds), H5Sclose);
  H5Handle dcpl(H5Dget_create_plist(ds), H5Pclose);
  AMBIENT_CHECK(type.get() >= 0 && space.get() >= 0 && dcpl.get() >= 0,
                "HDF5 reader: cannot read the type and extent of ", name, " in ", path);
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  AMBIENT_CHECK(count >= 0, "HDF5 reader: cannot read the extent of ", name, " in ", path);
  const std::string damage = type_damage(type.get(), 0);
  AMBIENT_CHECK(damage.empty(), "HDF5 file damaged: the datatype of ", name, " holds ", damage, " (", path, ")");
  const long double bytes = static_cast<long double>(count) * static_cast<long double>(H5Tget_size(type.get()));
  const bool filtered = H5Pget_layout(dcpl.get()) == H5D_CHUNKED && H5Pget_nfilters(dcpl.get()) > 0;
  const long double room = static_cast<long double>(std::filesystem::file_size(path)) * (filtered ? 1032.0L : 1.0L);
  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  AMBIENT_CHECK(layout == H5D_COMPACT || bytes <= room, "HDF5 file damaged: dataset ", name, " claims ", count,
                " elements (", static_cast<double>(bytes), " bytes), more than the file can hold (", path, ")");
  // The storage that the layout message records must hold the extent: HDF5 1.10.8 reads a compact dataset whose
  // stored size is smaller (0 in a fuzzed file) from a null buffer, a SIGSEGV.
  const auto stored = static_cast<long double>(H5Dget_storage_size(ds));
  const bool allocated = layout == H5D_COMPACT || (layout == H5D_CONTIGUOUS && H5Dget_offset(ds) != HADDR_UNDEF);
  AMBIENT_CHECK(!allocated || stored >= bytes, "HDF5 file damaged: dataset ", name, " holds ", count,
                " elements (", static_cast<double>(bytes), " bytes) in ", static_cast<double>(stored),
                " bytes of storage (", path, ")");
}

VlenLengths check_vlen_storage(hid_t file, const std::string& path, const std::string& name) {
  VlenLengths out;
  H5Handle ds(H5Dopen2(file, name.c_str(), H5P_DEFAULT), H5Dclose);
  AMBIENT_CHECK(ds.get() >= 0, "HDF5 reader: cannot open dataset ", name, " in ", path);
  require_plausible_extent(ds.get(), path, name);
  H5Handle type(H5Dget_type(ds.get()), H5Tclose);
  H5Handle space(H5Dget_space(ds.get()), H5Sclose);
  H5Handle dcpl(H5Dget_create_plist(ds.get()), H5Pclose);
  H5Handle fcpl(H5Fget_create_plist(file), H5Pclose);
  AMBIENT_CHECK(type.get() >= 0 && space.get() >= 0 && dcpl.get() >= 0 && fcpl.get() >= 0,
                "HDF5 reader: cannot read the type and layout of ", name, " in ", path);
  size_t address_size = 0, length_size = 0;
  hsize_t base = 0;
  H5Pget_sizes(fcpl.get(), &address_size, &length_size);
  H5Pget_userblock(fcpl.get(), &base);
  if (address_size == 0 || address_size > 8 || length_size == 0 || length_size > 8) return out;

  size_t element_size = 0;
  std::vector<Member> members;
  if (!vlen_layout(type.get(), address_size, element_size, members)) return out;
  out.members = members.size();
  for (const Member& m : members) out.names.push_back(m.name);
  // A damaged compound type can place a member's descriptor beyond the element's end (a fuzz finding: the walk
  // below then read out of bounds).
  for (const Member& m : members)
    AMBIENT_CHECK(m.offset <= element_size && 4 + address_size + 4 <= element_size - m.offset,
                  "HDF5 file damaged: member '", m.name, "' of ", name, " lies at byte ", m.offset,
                  " of an element of ", element_size, " bytes (", path, ")");
  if (members.empty()) {
    out.checked = true;
    return out;
  }
  const hssize_t count = H5Sget_simple_extent_npoints(space.get());
  AMBIENT_CHECK(count >= 0, "HDF5 reader: cannot read the extent of ", name, " in ", path);
  const auto n = static_cast<uint64_t>(count);
  out.lengths.assign(n * members.size(), 0);

  const uint64_t eof = std::filesystem::file_size(path);
  GlobalHeap heap(path, base, eof, length_size);
  auto check_elements = [&](const unsigned char* raw, uint64_t first, uint64_t elements) {
    for (uint64_t e = 0; e < elements && first + e < n; ++e) {
      for (size_t m = 0; m < members.size(); ++m) {
        const unsigned char* d = raw + e * element_size + members[m].offset;
        const auto length = static_cast<uint32_t>(little_endian(d, 4));
        const uint64_t address = little_endian(d + 4, address_size);
        const auto index = static_cast<uint32_t>(little_endian(d + 4 + address_size, 4));
        // A null value (address 0) reads as an empty sequence whatever its stored length: what HDF5 will hand
        // over is what is recorded (a fuzzed row with a null address and a matching length made libismrmrd
        // copy the header's samples x channels from a null pointer).
        out.lengths[(first + e) * members.size() + m] = address == 0 ? 0 : length;
        if (address == 0) continue;
        const uint64_t object = heap.object_size(address, index);
        AMBIENT_CHECK(object == static_cast<uint64_t>(length) * members[m].base_size, "HDF5 file damaged: element ",
                      first + e, " of ", name, " says ", length, " values, its heap object holds ", object,
                      " bytes (", path, ")");
      }
    }
  };

  const H5D_layout_t layout = H5Pget_layout(dcpl.get());
  // Compact storage lives inside the object header, where no API reaches its raw bytes, so its variable-length
  // values cannot be checked before HDF5 follows them. libismrmrd and h5py never write it for these datasets.
  AMBIENT_CHECK(layout != H5D_COMPACT, "HDF5 reader: dataset ", name, " holds variable-length values in compact "
                "storage, which ambient cannot check before reading; rewrite the file with contiguous or chunked "
                "storage (h5repack -l ", name, ":CONTI) (", path, ")");
  if (layout == H5D_CONTIGUOUS) {
    const haddr_t at = H5Dget_offset(ds.get());
    if (at == HADDR_UNDEF) {  // never written: every element is the fill value
      out.checked = true;
      return out;
    }
    const uint64_t bytes = n * element_size;  // H5Dget_offset counts the user block already
    AMBIENT_CHECK(at <= eof && bytes <= eof - at, "HDF5 file damaged: dataset ", name,
                  " claims more bytes than the file holds (", path, ")");
    std::vector<unsigned char> raw(bytes);
    std::ifstream in(path, std::ios::binary);
    in.seekg(static_cast<std::streamoff>(at));
    in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(bytes));
    AMBIENT_CHECK(in.good(), "HDF5 check: cannot read dataset ", name, " of ", path);
    check_elements(raw.data(), 0, n);
    out.checked = true;
  } else if (layout == H5D_CHUNKED && H5Pget_nfilters(dcpl.get()) == 0 && H5Sget_simple_extent_ndims(space.get()) == 1) {
    hsize_t chunk = 0;
    AMBIENT_CHECK(H5Pget_chunk(dcpl.get(), 1, &chunk) == 1 && chunk > 0, "HDF5 file damaged: dataset ", name,
                  " is chunked without a chunk size (", path, ")");
    const uint64_t chunk_bytes = chunk * element_size;
    AMBIENT_CHECK(chunk_bytes <= eof, "HDF5 file damaged: dataset ", name, " claims chunks of ", chunk_bytes,
                  " bytes, more than the file holds (", path, ")");
    // The chunk's address and size from the index, then its bytes read here: H5Dread_chunk writes whatever size
    // the index claims into the caller's buffer, which a damaged index makes overflow (found by fuzzing).
    std::vector<unsigned char> raw(chunk_bytes);
    std::ifstream in(path, std::ios::binary);
    hsize_t found = 0;
    for (hsize_t first = 0; first < n; first += chunk) {
      unsigned filters = 0;
      haddr_t at = HADDR_UNDEF;
      hsize_t stored = 0;
      if (H5Dget_chunk_info_by_coord(ds.get(), &first, &filters, &at, &stored) < 0 || stored == 0 ||
          at == HADDR_UNDEF)
        continue;  // not written: fill values
      AMBIENT_CHECK(stored == chunk_bytes, "HDF5 file damaged: a chunk of ", name, " holds ", stored,
                    " bytes, expected ", chunk_bytes, " (", path, ")");
      const uint64_t from = base + at;
      AMBIENT_CHECK(from >= at && from <= eof && chunk_bytes <= eof - from, "HDF5 file damaged: the chunk at element ",
                    first, " of ", name, " lies outside the file (", path, ")");
      in.seekg(static_cast<std::streamoff>(from));
      in.read(reinterpret_cast<char*>(raw.data()), static_cast<std::streamsize>(chunk_bytes));
      AMBIENT_CHECK(in.good(), "HDF5 check: cannot read the chunk at element ", first, " of ", name, " (", path, ")");
      check_elements(raw.data(), first, chunk);
      ++found;
    }
    // HDF5's own read walks every entry of the chunk index; entries at coordinates outside the extent, or with
    // sizes of gigabytes, make it copy out of bounds (found by fuzzing). So the index must hold exactly the chunks
    // found above. (HDF5 1.10.8 refuses H5S_ALL here: the dataset's own dataspace is passed.)
    hsize_t listed = 0;
    AMBIENT_CHECK(H5Dget_num_chunks(ds.get(), space.get(), &listed) >= 0 && listed == found, "HDF5 file damaged: the "
                  "chunk index of ", name, " lists ", listed, " chunks, of which ", found, " lie where its ", n,
                  " elements are (", path, ")");
    out.checked = true;
  }
  return out;
}

void check_local_heaps(const std::string& path, uint64_t base, size_t length_size, size_t address_size) {
  if (length_size == 0 || length_size > 8 || address_size == 0 || address_size > 8) return;
  const uint64_t eof = std::filesystem::file_size(path);
  std::ifstream in(path, std::ios::binary);
  AMBIENT_CHECK(in.good(), "HDF5 check: cannot open ", path);
  const size_t header = 8 + 2 * length_size + address_size;
  auto read_at = [&](uint64_t at, size_t n, std::vector<unsigned char>& out) {
    out.assign(n, 0);
    in.clear();
    in.seekg(static_cast<std::streamoff>(at));
    in.read(reinterpret_cast<char*>(out.data()), static_cast<std::streamsize>(n));
    return in.good();
  };
  auto walk = [&](uint64_t at) {  // the heap whose header starts at file byte `at`
    std::vector<unsigned char> h;
    if (!read_at(at, header, h) || h[4] != 0 || h[5] != 0 || h[6] != 0 || h[7] != 0) return;  // not a heap header
    const uint64_t size = little_endian(h.data() + 8, length_size);
    const uint64_t head = little_endian(h.data() + 8 + length_size, length_size);
    const uint64_t data = little_endian(h.data() + 8 + 2 * length_size, address_size);
    const uint64_t none = length_size == 8 ? ~0ull : (1ull << (8 * length_size)) - 1;  // "no free list"
    if (head == none) return;
    AMBIENT_CHECK(data <= eof && base <= eof - data && size <= eof - base - data, "HDF5 file damaged: the local "
                  "heap at byte ", at, " claims a data segment of ", size, " bytes at byte ", data,
                  ", outside the file (", path, ")");
    std::vector<unsigned char> segment;
    AMBIENT_CHECK(read_at(base + data, size, segment), "HDF5 check: cannot read ", path, " at byte ", base + data);
    std::vector<bool> seen(size, false);
    for (uint64_t block = head; block != 1;) {  // HDF5 ends the list with offset 1
      AMBIENT_CHECK(block < size && 2 * length_size <= size - block && !seen[block], "HDF5 file damaged: the free "
                    "list of the local heap at byte ", at, " ", block < size && seen[block] ? "loops back to" :
                    "points outside its data segment at", " offset ", block, " (", path, ")");
      seen[block] = true;
      const uint64_t next = little_endian(segment.data() + block, length_size);
      const uint64_t bytes = little_endian(segment.data() + block + length_size, length_size);
      AMBIENT_CHECK(next != 0 && bytes <= size - block, "HDF5 file damaged: a free block of the local heap at byte ",
                    at, " has a size of ", bytes, " at offset ", block, " of ", size, " (", path, ")");
      block = next;
    }
  };
  // Find the signatures: reading in blocks that overlap by the signature's length less one.
  constexpr size_t kBlock = 1 << 22;
  std::vector<char> buf(kBlock + 3);
  size_t carried = 0;
  for (uint64_t offset = 0; offset < eof;) {
    const size_t want = static_cast<size_t>(std::min<uint64_t>(kBlock, eof - offset));
    in.clear();
    in.seekg(static_cast<std::streamoff>(offset));
    in.read(buf.data() + carried, static_cast<std::streamsize>(want));
    const size_t got = carried + static_cast<size_t>(in.gcount());
    if (in.gcount() <= 0) break;
    const uint64_t start = offset - carried;  // file byte of buf[0]
    std::vector<uint64_t> found;
    for (size_t i = 0; i + 4 <= got; ++i)
      if (buf[i] == 'H' && buf[i + 1] == 'E' && buf[i + 2] == 'A' && buf[i + 3] == 'P') found.push_back(start + i);
    offset += static_cast<uint64_t>(in.gcount());
    carried = std::min<size_t>(3, got);
    std::memmove(buf.data(), buf.data() + got - carried, carried);
    for (uint64_t at : found) walk(at);
  }
}

}  // namespace ambient::mri::detail
