// Internal: the checks, reductions and state the objectives share, and the constructors make_objective() chooses
// from.
#pragma once

#include <memory>

#include <torch/torch.h>

#include "ambient/diffusion/objectives.hpp"

namespace ambient::diffusion::detail {

/// Throws unless `t` is a batch of images [B, C, H, W]; `what` names the objective and the argument.
void check_image(const torch::Tensor& t, const char* what);
/// Throws unless the draw holds one positive σ per example.
void check_draw(const NoiseDraw& draw, int64_t batch);
/// Sum over everything but the batch dimension.
inline torch::Tensor per_example(const torch::Tensor& t) { return t.flatten(1).sum(1); }

/// What the ambient objectives share: the configuration of the further corruption Ã they draw.
class AmbientObjective : public TrainingObjective {
 public:
  explicit AmbientObjective(const FurtherCorruptionConfig& further) : further_(further) {}

 protected:
  const FurtherCorruptionConfig further_;
};

std::unique_ptr<TrainingObjective> make_clean_objective(bool naive);
std::unique_ptr<TrainingObjective> make_ambient_image_objective(const FurtherCorruptionConfig& further);
std::unique_ptr<TrainingObjective> make_ambient_fourier_objective(const FurtherCorruptionConfig& further);

}  // namespace ambient::diffusion::detail
