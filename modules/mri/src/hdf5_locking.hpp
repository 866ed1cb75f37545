// Internal: HDF5 file locking off for the readers.
#pragma once

#include <cstdlib>

namespace ambient::mri::detail {

// libismrmrd opens files read-write, and HDF5 then holds an exclusive lock, so the ranks of a data-parallel job
// reading the same scan would fail to open it. ambient never modifies an input and writes outputs to a temporary
// file that is renamed, so HDF5's locks protect nothing here. A setting already in the environment is kept.
inline void disable_hdf5_file_locking() {
  static const bool done = setenv("HDF5_USE_FILE_LOCKING", "FALSE", 0) == 0;
  (void)done;
}

}  // namespace ambient::mri::detail
