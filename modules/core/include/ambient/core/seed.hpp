// Seeds of independent random streams, derived from a run's seed.
#pragma once

#include <cstdint>

namespace ambient {

/// The purposes seeds are derived for; each is its own stream, so no two purposes share random numbers.
enum class SeedStream : uint64_t {
  recon_slices = 1,  ///< the noise of a batch of slices in posterior reconstruction, by its first slice
};

/// A seed for item `index` of `stream`, derived from `seed` with a splitmix64 finaliser: nearby inputs give
/// unrelated outputs.
inline uint64_t derive_seed(uint64_t seed, SeedStream stream, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(stream) * 0xD1B54A32D192ED03ull + index;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace ambient
