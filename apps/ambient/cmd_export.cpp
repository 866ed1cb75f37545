// ambient export: a checkpoint reduced to its EMA weights (a third of the size): enough to sample, reconstruct or
// fine-tune, small enough to ship under data/models/. Also turns the EMA weights file of ambient-gpu-pretrain
// (a tensor file, readable across LibTorch versions) into such a checkpoint.
#include <filesystem>
#include <iostream>

#include "ambient/core/error.hpp"
#include "ambient/core/tensor_file.hpp"
#include "ambient/diffusion/slices.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "cli.hpp"

namespace ambient::app {

int run_export(const std::vector<std::string>& args) {
  po::options_description opts("export options");
  std::string input, output;
  opts.add_options()("checkpoint", po::value(&input)->required(),
                    "training checkpoint (.pt), or ambient-gpu-pretrain's weights file")(
      "output,o", po::value(&output)->required(), "EMA-only checkpoint to write (.pt)");
  po::positional_options_description pos;
  pos.add("checkpoint", 1);
  po::variables_map vm;
  if (!parse("export", "CHECKPOINT -o model.pt", opts, pos, args, vm)) return 0;
  AMBIENT_CHECK(std::filesystem::exists(input), "export: ", input, " not found");
  if (ambient::is_tensor_file(input)) {
    diffusion::TrainState state;
    auto model = diffusion::load_weights_file(input, &state.step);
    state.model = model.ptr();
    state.ema = model.ptr();
    state.objective = "clean";
    diffusion::TrainConfig cfg;
    cfg.objective = diffusion::Objective::clean;
    diffusion::save_checkpoint(output, state, cfg, true);
    std::cout << "wrote " << output << " (weights of " << input << ", step " << state.step << ")\n";
    return 0;
  }
  AMBIENT_CHECK(diffusion::is_ambient_checkpoint(input), "export: ", input, " is not an ambient checkpoint");
  const auto info = diffusion::describe_checkpoint(input);
  diffusion::TrainConfig cfg;
  cfg.objective = diffusion::parse_objective(info.objective);
  auto state = diffusion::load_state(input, cfg, info.has_optimizer);
  state.objective = info.objective;
  state.noise_convention = info.noise_convention;  // the weights keep what they learnt
  diffusion::save_checkpoint(output, state, cfg, true);
  std::cout << "wrote " << output << " (EMA weights of step " << state.step << ")\n";
  return 0;
}

}  // namespace ambient::app
