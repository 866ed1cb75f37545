// A whole scan's reconstruction shared out over ranks (volume_recon.hpp).
#include "ambient/diffusion/volume_recon.hpp"

#include <iomanip>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/core/seed.hpp"
#include "ambient/mri/linear_operator.hpp"

namespace ambient::diffusion {
namespace {

// Sums a complex or real tensor over ranks in place (each rank filled only its own slices).
void sum_over_ranks(Group& group, torch::Tensor& t) {
  if (!group.distributed()) return;
  auto real = t.is_complex() ? torch::view_as_real(t) : t;
  AMBIENT_CHECK(real.is_contiguous(), "recon: internal: expected a contiguous tensor to gather");
  group.allreduce_sum(real);
}

void report(const StageMonitor& monitor, const std::string& stage, int64_t done, int64_t total,
            const std::string& note = "") {
  if (monitor) monitor(stage, done, total, note);
}

}  // namespace

torch::Tensor shared_espirit_maps(const mri::Scan& scan, const mri::EspiritConfig& config, Group& group,
                                  const StageMonitor& monitor) {
  const auto mine = shard(scan.slices(), group.rank(), group.world());
  const auto calib_ksp = scan.calibration_kspace();
  const auto calib_lines = scan.calibration_lines();
  auto maps = torch::zeros_like(scan.ksp);
  const std::string stage = "coil maps (ESPIRiT)";
  const auto total = static_cast<int64_t>(mine.size());
  report(monitor, stage, 0, total);
  for (size_t i = 0; i < mine.size(); ++i) {
    const int64_t s = mine[i];
    maps[s].copy_(mri::espirit_maps(calib_ksp[s], calib_lines[s], config));
    report(monitor, stage, static_cast<int64_t>(i) + 1, total);
  }
  sum_over_ranks(group, maps);
  return maps;
}

VolumeRecon reconstruct_volume(const mri::Scan& scan, const torch::Tensor& maps, const VolumeReconConfig& config,
                               const ModelPtr& model, Group& group, const StageMonitor& monitor) {
  AMBIENT_CHECK(maps.sizes() == scan.ksp.sizes(), "recon: coil maps ", shape_string(maps.sizes().vec()),
                " (slice, coil, ky, kx) do not match the scan's k-space ", shape_string(scan.ksp.sizes().vec()));
  AMBIENT_CHECK(!samples_with_model(config.method) || model != nullptr, "recon: method ",
                recon_method_name(config.method), " needs a model");
  const auto a = mri::make_sense(maps, scan.kspace_mask());
  VolumeRecon out;
  out.zero_filled = mri::zero_filled(a, scan.ksp);
  out.image = out.zero_filled;
  if (config.method == ReconMethod::zero_filled) return out;

  // This rank's slices (all of them in a lone process).
  const auto mine = shard(scan.slices(), group.rank(), group.world());
  const auto idx = torch::tensor(mine, torch::kLong);
  const mri::Scan part = group.distributed() ? mri::select_slices(scan, mine) : scan;
  const auto part_maps = group.distributed() ? maps.index_select(0, idx) : maps;
  out.image = torch::zeros_like(out.zero_filled);  // more ranks than slices: this one only joins the sum
  if (samples_with_model(config.method)) out.std = torch::zeros(out.zero_filled.sizes());
  if (!mine.empty() && samples_with_model(config.method)) {
    auto rc = config.model;
    rc.method = config.method;
    // Rank 0 keeps the run's seed, so a lone process reconstructs as before; deterministic for a seed and a world size.
    if (group.rank() > 0) rc.seed = derive_seed(rc.seed, SeedStream::recon_ranks, static_cast<uint64_t>(group.rank()));
    const int64_t per_batch = slices_per_batch(rc, part);
    out.batches = (part.slices() + per_batch - 1) / per_batch;
    std::ostringstream stage;
    stage << recon_method_name(config.method) << " sampling (" << rc.samples << " samples/slice";
    if (out.batches > 1) stage << ", " << out.batches << " batches of up to " << per_batch << " slices";
    stage << ")";
    const int64_t total = rc.posterior.schedule.steps * out.batches;
    report(monitor, stage.str(), 0, total);
    const auto r = reconstruct(model, part, part_maps, rc, [&](int64_t step, double sigma) {
      std::ostringstream note;
      note << std::setprecision(3) << "sigma " << sigma;
      report(monitor, stage.str(), step, total, note.str());
    });
    out.image.index_copy_(0, idx, r.mean);
    out.std.index_copy_(0, idx, r.std);
  } else if (!mine.empty()) {
    const std::string stage = "CG-SENSE";
    report(monitor, stage, 0, config.cg.iterations);
    const auto a_part = mri::make_sense(part_maps, part.kspace_mask());
    const auto x_part = mri::cg_sense(a_part, part.ksp, config.cg, {}, [&](int it, double rel) {
      std::ostringstream note;
      note << std::scientific << std::setprecision(2) << "residual " << rel;
      report(monitor, stage, it, config.cg.iterations, note.str());
      return true;
    });
    out.image.index_copy_(0, idx, x_part);
  }
  sum_over_ranks(group, out.image);
  if (out.std.defined()) sum_over_ranks(group, out.std);
  return out;
}

}  // namespace ambient::diffusion
