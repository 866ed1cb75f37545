// How an ambient model sees an image: only through a further corruption Ã, as the adjoint image Ã^H Ã x with Ã's
// mask as its corruption channel (Daras et al. 2023, §3; Aali et al. 2024, §3). The one definition that training,
// posterior reconstruction and unconditional sampling share (docs/objectives.md).
#pragma once

#include <torch/types.h>

#include "ambient/diffusion/edm.hpp"
#include "ambient/mri/linear_operator.hpp"

namespace ambient::diffusion {

/// A fixed further corruption as the network meets it.
struct FurtherCorruption {
  mri::OperatorPtr op;    ///< Ã on complex images [B, H, W]: to k-space [B, C, ky, kx], or image -> image
  torch::Tensor channel;  ///< [B, 1, H, W] float 0/1: the corruption channel the network is given with it
};

/// Ã for image-domain masks (pixels or boxes): `mask` [B, 1, H, W] 0/1 is both the operator and the channel.
FurtherCorruption image_corruption(const torch::Tensor& mask);

/// Ã = M̃ F S for k-space line masks: `maps` [B, C, ky, kx] complex64, `lines` [B, ky] (bool or 0/1, Ã's lines).
/// The channel is `lines` broadcast along kx (line_mask_channel).
FurtherCorruption line_corruption(const torch::Tensor& maps, const torch::Tensor& lines,
                                  mri::FftBackend backend = mri::FftBackend::automatic);

/// D(Ã^H ỹ; σ, Ã) for a measurement ỹ = Ã x in Ã's range. The Fourier objective forms ỹ from the data alone
/// (ỹ = M̃ y + Ã σ n, since Ã keeps a subset of what A kept); for any x, denoise_measured(d, Ã, Ã x, σ) equals
/// seen_through(d, Ã)(x, σ).
torch::Tensor denoise_measured(const DenoiserFn& d, const FurtherCorruption& a_tilde, const torch::Tensor& y_tilde,
                               const torch::Tensor& sigma);

/// The denoiser of x [B, 2, H, W] that sees it only through Ã: x ↦ D(Ã^H Ã x; σ, Ã), with Ã's channel in place of
/// whatever corruption channels the caller passes. Ã^H Ã is applied as an operator (mri::make_normal) to the whole
/// batch, so autograd flows through it (DPS back-propagates through the network's input).
DenoiserFn seen_through(DenoiserFn d, FurtherCorruption a_tilde);

/// The denoiser of x [B, 2, H, W] that sees it through K fixed image masks ("views") Ã_1 … Ã_K at once, each
/// [B, 1, H, W] 0/1, and predicts every pixel from the views that show it:
/// D̄(x) = Σ_k m_k D(Ã_k x; σ, Ã_k) / Σ_k m_k, and the mean of the K predictions where no view shows the pixel.
/// One view is seen_through(d, image_corruption(m_1)), the fixed-mask sampler of Daras et al. (2023). An ambient
/// model trained with Ã hiding most pixels predicts a hidden pixel by its conditional mean (a blur); with views
/// whose union covers the image, each pixel is instead denoised by a view that shows it (docs/objectives.md).
/// Costs K denoiser calls.
DenoiserFn seen_through_views(DenoiserFn d, std::vector<torch::Tensor> masks);

}  // namespace ambient::diffusion
