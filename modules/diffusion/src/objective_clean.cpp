// Objectives 1 and 4: clean denoising score matching (pretraining), and the naive baseline that takes corrupted
// images (zero-filled A^H y, or y with holes) as if they were clean (docs/objectives.md).
#include "ambient/core/error.hpp"
#include "ambient/diffusion/objectives.hpp"
#include "ambient/mri/linear_operator.hpp"
#include "objective_common.hpp"

namespace ambient::diffusion {

using detail::check_draw;
using detail::check_image;
using detail::per_example;

torch::Tensor clean_loss(const DenoiserFn& d, const torch::Tensor& x0, const NoiseDraw& draw, const EdmConfig& edm) {
  check_image(x0, "clean objective");
  check_draw(draw, x0.size(0));
  auto s = draw.sigma.reshape({-1, 1, 1, 1});
  auto denoised = d(x0 + s * draw.noise, draw.sigma, {});
  auto err = per_example((denoised - x0).square()) / static_cast<double>(x0[0].numel());
  return (loss_weight(draw.sigma, edm) * err).mean();
}

torch::Tensor naive_loss(const DenoiserFn& d, const torch::Tensor& corrupted, const NoiseDraw& draw,
                         const EdmConfig& edm) {
  return clean_loss(d, corrupted, draw, edm);
}

namespace detail {
namespace {

// The coil-combined zero-filled image of k-space data, the naive baseline's "clean" image.
torch::Tensor zero_filled_channels(const Batch& b) {
  auto m = b.lines.to(torch::kFloat).reshape({b.lines.size(0), 1, b.lines.size(1), 1});
  return to_channels(mri::make_sense(b.maps, m)->adjoint(b.ksp * m));
}

class CleanObjective final : public TrainingObjective {
 public:
  explicit CleanObjective(bool naive) : naive_(naive) {}
  Objective kind() const override { return naive_ ? Objective::naive : Objective::clean; }
  torch::Tensor draw_noise(const Batch& b, at::Generator& gen) const override {
    // image data, or the zero-filled image of k-space data (naive)
    const std::vector<int64_t> shape = b.image.defined()
                                           ? std::vector<int64_t>{1, b.image.size(1), b.image.size(2), b.image.size(3)}
                                           : std::vector<int64_t>{1, 2, b.ksp.size(2), b.ksp.size(3)};
    return noise_like(torch::empty(shape), 1.0, gen);
  }
  torch::Tensor loss(const DenoiserFn& d, const Batch& b, const torch::Tensor&, const NoiseDraw& draw,
                     const EdmConfig& edm, bool) const override {
    auto x0 = b.image.defined() ? b.image : zero_filled_channels(b);
    return naive_ ? naive_loss(d, x0, draw, edm) : clean_loss(d, x0, draw, edm);
  }

 private:
  bool naive_;
};

}  // namespace

std::unique_ptr<TrainingObjective> make_clean_objective(bool naive) { return std::make_unique<CleanObjective>(naive); }

}  // namespace detail
}  // namespace ambient::diffusion
