// What the objectives share: the network's channel layout, the objective's names, the checks, and the one place
// that chooses an objective. Each loss uses the data only where A observed it: y is masked by A inside the loss, so
// no caller can leak unobserved values into the loss or its gradient (tests/diffusion/test_objectives.cpp).
#include "ambient/diffusion/objectives.hpp"

#include "ambient/core/error.hpp"
#include "ambient/core/names.hpp"
#include "objective_common.hpp"

namespace ambient::diffusion {
namespace detail {

void check_image(const torch::Tensor& t, const char* what) {
  AMBIENT_CHECK(t.defined() && t.dim() == 4, what, ": expected [B, C, H, W], got ",
                t.defined() ? ambient::shape_string(t.sizes().vec()) : std::string("none"));
}

void check_draw(const NoiseDraw& draw, int64_t batch) {
  AMBIENT_CHECK(draw.sigma.defined() && draw.sigma.dim() == 1 && draw.sigma.size(0) == batch,
                "objective: expected one σ per example (", batch, ")");
  AMBIENT_CHECK((draw.sigma > 0).all().item<bool>(), "objective: expected σ > 0");
}

}  // namespace detail

torch::Tensor to_channels(const torch::Tensor& z) {
  AMBIENT_CHECK(z.is_complex() && z.dim() == 3, "to_channels: expected complex [B, H, W], got ",
                ambient::shape_string(z.sizes().vec()));
  return torch::view_as_real(z).permute({0, 3, 1, 2}).contiguous();
}

torch::Tensor from_channels(const torch::Tensor& c) {
  AMBIENT_CHECK(c.dim() == 4 && c.size(1) == 2, "from_channels: expected [B, 2, H, W], got ",
                ambient::shape_string(c.sizes().vec()));
  return torch::view_as_complex(c.permute({0, 2, 3, 1}).contiguous());
}

constexpr Named<Objective> kObjectives[] = {{Objective::clean, "clean"},
                                        {Objective::ambient_image, "ambient-image"},
                                        {Objective::ambient_fourier, "ambient-fourier"},
                                        {Objective::naive, "naive"},
                                        {Objective::ambient_image, "block", true},
                                        {Objective::ambient_fourier, "fourier", true}};

Objective parse_objective(const std::string& name) { return parse_named(kObjectives, name, "objective"); }
std::string objective_name(Objective o) { return name_of(kObjectives, o); }

Precond default_precond(Objective o) {
  return o == Objective::ambient_image ? Precond::masked : Precond::standard;
}

Precond masked_precond(Objective o) {
  AMBIENT_CHECK(o == Objective::ambient_image || o == Objective::ambient_fourier, "preconditioning masked: only for "
                "the ambient objective (it reads Ã from the mask channel); got the ", objective_name(o), " objective");
  return o == Objective::ambient_image ? Precond::masked : Precond::masked_lines;
}

std::unique_ptr<TrainingObjective> make_objective(Objective kind, const FurtherCorruptionConfig& further) {
  switch (kind) {
    case Objective::clean: return detail::make_clean_objective(false);
    case Objective::naive: return detail::make_clean_objective(true);
    case Objective::ambient_image: return detail::make_ambient_image_objective(further);
    case Objective::ambient_fourier: return detail::make_ambient_fourier_objective(further);
  }
  fail("objective: unknown");
}

}  // namespace ambient::diffusion
