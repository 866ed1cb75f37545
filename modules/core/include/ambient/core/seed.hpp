// Seeds of independent random streams, derived from a run's seed.
#pragma once

#include <cstdint>

namespace ambient {

/// The purposes seeds are derived for; each is its own stream, so no two purposes share random numbers.
enum class SeedStream : uint64_t {
  recon_slices = 1,  ///< the noise of a batch of slices in posterior reconstruction, by its first slice
  slice_phase = 2,   ///< the smooth phase of example k of a run on clean slices in memory (slices.hpp)
};

/// A seed for item `index` of `stream`, derived from `seed` with a splitmix64 finaliser: nearby inputs give
/// unrelated outputs.
inline uint64_t derive_seed(uint64_t seed, SeedStream stream, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(stream) * 0xD1B54A32D192ED03ull + index;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// The splitmix-style hash of two integers that seeds the data order (batch.hpp: epochs, flips) and the per-slice
/// draws of the training sources (a clean slice's phase, a scan's boxes) from the run's seed.
inline uint64_t mix_seeds(uint64_t a, uint64_t b) {
  uint64_t z = a * 0x9E3779B97F4A7C15ull + b + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

}  // namespace ambient
