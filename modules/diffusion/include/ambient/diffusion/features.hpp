// A fixed network's description of MR images, for measures of generated samples (issue 16): how close each sample
// is to a training image beyond pixels (eval's memorisation measure) and how far the samples' distribution is from
// real images' (eval's kernel and Fréchet distances, mri/metrics.hpp). The network is an EDM UNet checkpoint's
// encoder: docs/objectives.md, "Measuring samples", says which one the project uses and why.
#pragma once

#include <torch/types.h>

#include "ambient/diffusion/edm.hpp"

namespace ambient::diffusion {

struct FeatureConfig {
  double sigma = 0.05;    ///< the noise level the network is told (no noise is added): small, so it describes detail
  int64_t batch = 32;     ///< images per network call
  int64_t grid = 1;       ///< 1: each activation averaged over the image; G: over each cell of a G × G grid
                          ///< (layout as well as content; D × G² values)
};

/// Features [n, D] float of magnitude images [n, h, w] (or one [h, w]): each image divided by its own intensity
/// scale (mri::intensity_scale, as training scales its data), as a complex image with zero phase, scaled by EDM's
/// c_in(σ) and passed through the encoder of `model` (UNetImpl::features) with its mask channels (if any) saying
/// "nothing removed". Throws unless `model` is an EDM UNet (a TorchScript foundation exposes no encoder).
torch::Tensor image_features(const ModelPtr& model, const torch::Tensor& magnitudes, const FeatureConfig& config = {});

}  // namespace ambient::diffusion
