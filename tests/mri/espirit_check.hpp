// Comparison of estimated and true coil maps, insensitive only to what ESPIRiT cannot know (a per-pixel phase).
#pragma once

#include <torch/types.h>

namespace ambient::test {

struct MapAgreement {
  double mean_abs_correlation;        ///< mean over the region of |<est, true>| / (||est|| ||true||)
  double rel_error_phase_normalised;  ///< ||est' - true'|| / ||true'|| with both unit-normed and coil 0 made real
};

/// est, truth: [coil, ny, nx]; region: [ny, nx] bool.
inline MapAgreement compare_maps(const torch::Tensor& est, const torch::Tensor& truth, const torch::Tensor& region) {
  auto normalise = [](torch::Tensor m) {
    m = m.to(torch::kComplexDouble);
    auto n = (m.abs().square().sum(0, true)).sqrt().clamp_min(1e-12);
    m = m / n;
    auto ref = m[0];
    auto ph = torch::where(ref.abs() > 1e-12, ref / ref.abs().clamp_min(1e-12), torch::ones_like(ref));
    return m * ph.conj().unsqueeze(0);
  };
  auto e = normalise(est), t = normalise(truth);
  auto corr = (e.conj() * t).sum(0).abs();
  auto r = region.to(torch::kBool);
  MapAgreement out;
  out.mean_abs_correlation = corr.masked_select(r).mean().item<double>();
  auto diff = (e - t).abs().square().sum(0).masked_select(r).sum().sqrt();
  auto ref = t.abs().square().sum(0).masked_select(r).sum().sqrt();
  out.rel_error_phase_normalised = (diff / ref).item<double>();
  return out;
}

}  // namespace ambient::test
