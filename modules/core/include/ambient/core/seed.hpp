// Seeds of independent random streams, derived from a run's seed. Every seed the library draws with comes from
// derive_seed: one hash, one list of purposes, so that no two purposes share random numbers by accident.
#pragma once

#include <cstdint>

namespace ambient {

/// The purposes seeds are derived for; each is its own stream.
enum class SeedStream : uint64_t {
  recon_slices = 1,       ///< the noise of a batch of slices in posterior reconstruction, by its first slice
  slice_phase = 2,        ///< the smooth phase of example k of a run on clean slices in memory (slices.hpp)
  step_draws = 3,         ///< the draws of training step t (σ, noise, Ã), by step
  example_draws = 4,      ///< one example's draws within a step or validation batch, by its global index
  dropout = 5,            ///< dropout of training step t on rank r, by (t, r)
  validation_order = 6,   ///< the order of the validation slices (index 0)
  validation_draws = 7,   ///< the draws of validation batch i, by i
  epoch_order = 8,        ///< the shuffle of epoch e of the data order, by e
  flips = 9,              ///< the flips of the k-th example of the data order, by k
  slice_draws = 10,       ///< the fixed draws of slice s of file f of a training source (phase, boxes), by (f, s)
  further_masks = 11,     ///< the fixed further corruption Ã of sample i at inference (recon, sample), by i
  recon_ranks = 12,       ///< the seed of rank r > 0 of a distributed reconstruction, by r
  sample_corruption = 13, ///< the generator of `ambient sample`'s pixel masks (index 0)
  inpaint_masks = 14      ///< the boxes `ambient inpaint --erase-blocks` erases from slice s, by s
};

/// A seed for item `index` of `stream`, derived from `seed` with a splitmix64 finaliser: nearby inputs give
/// unrelated outputs.
inline uint64_t derive_seed(uint64_t seed, SeedStream stream, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + static_cast<uint64_t>(stream) * 0xD1B54A32D192ED03ull + index;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/// Item (i, j) of `stream`: the seed of item i, derived once more for j.
inline uint64_t derive_seed(uint64_t seed, SeedStream stream, uint64_t i, uint64_t j) {
  return derive_seed(derive_seed(seed, stream, i), stream, j);
}

}  // namespace ambient
