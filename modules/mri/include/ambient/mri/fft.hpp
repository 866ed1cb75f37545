// The centred unitary 2-D FFT of docs/conventions.md: F x = fftshift(fft2(ifftshift(x))) / sqrt(N), so F^H F = I.
#pragma once

#include <torch/types.h>

namespace ambient::mri {

/// Centred unitary forward FFT over the last two dimensions of a complex64 tensor [..., ny, nx].
/// CPU tensors go through FFTW (plans cached per shape, threaded); CUDA tensors through torch::fft (cuFFT).
torch::Tensor fft2c(const torch::Tensor& x);
/// Centred unitary inverse FFT over the last two dimensions (the adjoint of fft2c).
torch::Tensor ifft2c(const torch::Tensor& x);

/// The same transforms through torch::fft on any device; the reference the FFTW path is tested against.
torch::Tensor fft2c_torch(const torch::Tensor& x);
torch::Tensor ifft2c_torch(const torch::Tensor& x);

/// Centred unitary 1-D transforms along one dimension (readout oversampling removal, the masked-lines
/// preconditioning of edm.hpp); torch::fft based on every device.
torch::Tensor fft1c(const torch::Tensor& x, int64_t dim);
torch::Tensor ifft1c(const torch::Tensor& x, int64_t dim);

/// Number of threads FFTW plans use; defaults to at::get_num_threads() at first planning.
void set_fft_threads(int threads);

}  // namespace ambient::mri
