// Internal: variable-length HDF5 values checked on disk before HDF5 follows them.
#pragma once

#include <hdf5.h>

#include <cstdint>
#include <string>
#include <vector>

namespace ambient::mri::detail {

/// Closes an HDF5 handle with the right function (H5Dclose, H5Fclose, ...) when it leaves scope.
class H5Handle {
 public:
  H5Handle(hid_t id, herr_t (*close)(hid_t)) : id_(id), close_(close) {}
  H5Handle(const H5Handle&) = delete;
  H5Handle& operator=(const H5Handle&) = delete;
  ~H5Handle() {
    if (id_ >= 0) close_(id_);
  }
  hid_t get() const { return id_; }
  bool valid() const { return id_ >= 0; }

 private:
  hid_t id_;
  herr_t (*close_)(hid_t);
};

/// The stored lengths of a dataset's variable-length values, element by element.
struct VlenLengths {
  bool checked = false;           ///< false: compact or filtered storage, whose raw bytes are not read here
  size_t members = 0;             ///< variable-length members per element (1 for a string or a sequence)
  std::vector<std::string> names; ///< the compound's name of each variable-length member ("" otherwise)
  std::vector<uint32_t> lengths;  ///< lengths[element * members + member], in the type's member order
};

/// HDF5 trusts the descriptors of variable-length values (length, global heap collection, object index) and the
/// heap collections they point to: a free-space object of size 0 makes it loop for ever, a damaged length makes it
/// allocate gigabytes, an object larger than its descriptor says overruns the buffer (all found by fuzzing,
/// tests/fuzz). This reads dataset `name`'s raw elements (contiguous or unfiltered chunked storage) and every heap
/// collection they reference, and checks that each collection lies inside the file and parses, that each referenced
/// object exists and that its size is the descriptor's length times the base type's size. Throws ambient::Error
/// naming `path` and what is damaged. Datasets without variable-length values return checked = true, no lengths.
VlenLengths check_vlen_storage(hid_t file, const std::string& path, const std::string& name);

/// A damaged extent (found by fuzzing: 8 million rows of which 7 are stored) makes HDF5 produce fill values for
/// minutes, or a reader allocate what the file cannot hold. Throws ambient::Error naming `path` unless dataset `ds`
/// (called `name`) can be stored in the file: its elements' bytes at most the file's size, or 1032 times it for
/// filtered (compressed) storage, deflate's largest ratio.
void require_plausible_extent(hid_t ds, const std::string& path, const std::string& name);

/// HDF5 1.10.8 walks a group's local heap free list (the heap that holds link names in files of the original
/// format, as h5py and libismrmrd write) without looking for a cycle: a damaged file whose list points back made it
/// allocate a node per step until memory ran out (a 12 KB fuzzed file: 22 GB, then the OOM killer). This finds every
/// local heap in the file (signature "HEAP", version 0) and walks its free list first: each block inside the data
/// segment, of a size that fits, every offset seen once, the list ending. `base` is the user block's size,
/// `length_size` and `address_size` the file's. Throws ambient::Error naming `path`. Reads the file once.
void check_local_heaps(const std::string& path, uint64_t base, size_t length_size, size_t address_size);

}  // namespace ambient::mri::detail
