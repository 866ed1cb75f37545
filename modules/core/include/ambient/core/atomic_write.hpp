// Outputs written whole or not at all: through a temporary sibling renamed into place (docs/reliability.md).
#pragma once

#include <functional>
#include <string>

namespace ambient {

/// Writes `path` through a temporary sibling and renames it into place, so no half-written file is left.
/// `write` receives the temporary path (same extension as `path`). Temporaries of the same target that a killed
/// process left behind are removed after the rename.
void write_atomically(const std::string& path, const std::function<void(const std::string&)>& write);

/// Fails, naming `what` (an option) and the folder, unless `path`'s folder exists: for outputs that are written only
/// after minutes of work, checked before the work starts.
void require_output_folder(const std::string& path, const std::string& what);

}  // namespace ambient
