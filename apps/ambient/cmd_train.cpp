// ambient pretrain / finetune: train the EDM network on clean slices, or fine-tune it with the ambient objective on
// corrupted scans only. Progress bar, JSON-lines log, atomic checkpoints, --resume.
#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <sstream>

#include "ambient/core/error.hpp"
#include "ambient/core/tensor_file.hpp"
#include "ambient/diffusion/data.hpp"
#include "ambient/diffusion/distributed.hpp"
#include "ambient/diffusion/trainer.hpp"
#include "ambient/mri/io.hpp"
#include "ambient/mri/masks.hpp"
#include "cli.hpp"

namespace ambient::app {
namespace {

using diffusion::TrainConfig;

struct Common {
  std::vector<std::string> data, val;
  std::string out, log, precision;
  bool resume = false;
  TrainConfig cfg;
  diffusion::DistConfig dist;
};

void add_common(po::options_description& o, Common& c) {
  o.add_options()
      ("data", po::value(&c.data)->multitoken()->required(),
       "training files or folders (pretrain: NIfTI volumes, each optionally as volume.nii.gz@coronal)")
      ("val", po::value(&c.val)->multitoken(), "held-out files for the validation loss")
      ("out,o", po::value(&c.out), "checkpoint to write (.pt), atomically, every --checkpoint-every steps")
      ("resume", po::bool_switch(&c.resume), "continue from --out where an interrupted run stopped")
      ("steps", po::value(&c.cfg.steps)->default_value(c.cfg.steps), "total training steps")
      ("batch", po::value(&c.cfg.batch)->default_value(c.cfg.batch), "images per step")
      ("lr", po::value(&c.cfg.lr)->default_value(c.cfg.lr), "Adam learning rate")
      ("warmup", po::value(&c.cfg.warmup)->default_value(c.cfg.warmup), "linear warm-up steps")
      ("grad-clip", po::value(&c.cfg.grad_clip)->default_value(c.cfg.grad_clip), "max gradient norm (0: off)")
      ("ema-halflife", po::value(&c.cfg.ema_halflife)->default_value(c.cfg.ema_halflife), "EMA half-life (steps)")
      ("seed", po::value(&c.cfg.seed)->default_value(c.cfg.seed), "seed: data order, noise and init derive from it")
      ("checkpoint-every", po::value(&c.cfg.checkpoint_every)->default_value(c.cfg.checkpoint_every), "steps")
      ("val-every", po::value(&c.cfg.val_every)->default_value(c.cfg.val_every), "steps between validation losses")
      ("no-flips", "no flip augmentation")
      ("precision", po::value(&c.precision)->default_value("auto"),
       "auto | fp32 | bf16: bfloat16 autocast for the network; auto picks bf16 where the CPU has native bf16 "
       "instructions (8.6x faster than fp32 on such a CPU, docs/performance.md)")
      ("log", po::value(&c.log), "JSON-lines log (default: OUT with .log.jsonl)")
      ("dist-backend", po::value(&c.dist.backend)->default_value(c.dist.backend),
       "data-parallel runs (torchrun/srun set RANK, WORLD_SIZE, ...; docs/scaling.md): auto | gloo | nccl")
      ("dist-init", po::value(&c.dist.init)->default_value(c.dist.init),
       "rendezvous: env (MASTER_ADDR:MASTER_PORT) | file:///shared/path")
      ("dist-timeout", po::value(&c.dist.timeout_s)->default_value(c.dist.timeout_s),
       "seconds before a missing, dead or hung rank makes the others stop with an error")
      ("bucket-mb", po::value(&c.cfg.bucket_mb)->default_value(c.cfg.bucket_mb),
       "gradient all-reduce bucket size in MB, started during backward (0: one all-reduce after backward)");
}

// The options every training run shares, checked before any data is read (each message names its option).
void check_common(const Common& c) {
  AMBIENT_CHECK(c.cfg.steps >= 1, "--steps: expected at least 1, got ", c.cfg.steps);
  AMBIENT_CHECK(c.cfg.batch >= 1, "--batch: expected at least 1, got ", c.cfg.batch);
  AMBIENT_CHECK(c.cfg.lr > 0 && std::isfinite(c.cfg.lr), "--lr: expected a positive learning rate, got ", c.cfg.lr);
  AMBIENT_CHECK(c.cfg.warmup >= 0, "--warmup: expected >= 0, got ", c.cfg.warmup);
  AMBIENT_CHECK(c.cfg.grad_clip >= 0, "--grad-clip: expected >= 0 (0: off), got ", c.cfg.grad_clip);
  AMBIENT_CHECK(c.cfg.ema_halflife >= 0, "--ema-halflife: expected >= 0, got ", c.cfg.ema_halflife);
  AMBIENT_CHECK(c.cfg.checkpoint_every >= 1, "--checkpoint-every: expected at least 1, got ", c.cfg.checkpoint_every);
  AMBIENT_CHECK(c.cfg.val_every >= 1, "--val-every: expected at least 1, got ", c.cfg.val_every);
  AMBIENT_CHECK(c.cfg.delta >= 0 && c.cfg.delta < 1, "--delta: expected a fraction in [0, 1), got ", c.cfg.delta);
  if (!c.out.empty()) ambient::require_output_folder(c.out, "--out");
}

void run_training(Common& c, diffusion::TrainState& state, std::shared_ptr<diffusion::Source> data,
                  std::shared_ptr<diffusion::Source> val, const std::shared_ptr<diffusion::Group>& group) {
  AMBIENT_CHECK(c.precision == "auto" || c.precision == "fp32" || c.precision == "bf16",
                "--precision: expected auto|fp32|bf16, got '", c.precision, "'");
  c.cfg.bf16 = c.precision == "bf16" || (c.precision == "auto" && cpu_has_bf16());
  if (c.log.empty()) c.log = c.out + ".log.jsonl";
  const bool main_rank = group->is_main();
  // Only rank 0 writes the log and the checkpoints. The log is appended on resume so it keeps the whole history.
  std::ofstream log;
  if (main_rank) {
    log.open(c.log, c.resume ? std::ios::app : std::ios::trunc);
    AMBIENT_CHECK(log.good(), "training: cannot write the log ", c.log);
    std::cout << diffusion::objective_name(c.cfg.objective) << " (" << (c.cfg.bf16 ? "bf16" : "fp32")
              << "): " << data->total() << " slices, network " << state.model->config_string() << ", from step "
              << state.step << " to " << c.cfg.steps << "\n";
    if (group->distributed())
      std::cout << "data-parallel: " << group->world() << " ranks (" << group->backend() << "), " << c.cfg.batch
                << " images per rank, " << c.cfg.batch * group->world() << " per step\n";
  }
  Progress bar(diffusion::objective_name(c.cfg.objective), c.cfg.steps, main_rank, state.step);
  double smoothed = NAN;
  diffusion::train(state, c.cfg, data, val, c.out, [&](const diffusion::StepReport& r) {
    smoothed = std::isnan(smoothed) ? r.loss : 0.95 * smoothed + 0.05 * r.loss;
    JsonObject j;
    j.add("step", static_cast<double>(r.step)).add("loss", r.loss).add("lr", r.lr);
    j.add("images_per_s", r.images_per_s);
    if (group->distributed()) j.add("allreduce_s", r.comm_s).add("world", static_cast<double>(group->world()));
    if (!std::isnan(r.val_loss)) j.add("val_loss", r.val_loss);
    if (r.checkpointed) j.add("checkpoint", c.out);
    log << j.str(0) << "\n" << std::flush;
    std::ostringstream note;
    note << std::setprecision(4) << "loss " << smoothed << "  " << std::setprecision(3) << r.images_per_s << " img/s";
    if (!std::isnan(r.val_loss)) note << "  val " << std::setprecision(4) << r.val_loss;
    bar.update(r.step, note.str());
  }, group);
  bar.finish();
  if (main_rank) std::cout << "wrote " << c.out << " (step " << state.step << "), log " << c.log << "\n";
}

}  // namespace

int run_pretrain(const std::vector<std::string>& args) {
  po::options_description opts("pretrain options");
  Common c;
  c.cfg.objective = diffusion::Objective::clean;
  diffusion::UNetConfig net;
  diffusion::EdmConfig edm;
  int64_t matrix = 128;
  std::string orientation = "axial", mult = "1,2,2", attention = "2", init, dump;
  add_common(opts, c);
  opts.add_options()
      ("init", po::value(&init), "continue pretraining from this checkpoint (its EMA weights; network options ignored)")
      ("dump-slices", po::value(&dump), "NIfTI inputs: write the slices' magnitudes (float16 tensor file) for "
       "ambient-gpu-pretrain and stop; --out is then not needed")
      ("matrix", po::value(&matrix)->default_value(matrix), "NIfTI inputs: slices resampled to this square matrix")
      ("orientation", po::value(&orientation)->default_value(orientation), "NIfTI inputs: axial|coronal|sagittal")
      ("base-channels", po::value(&net.base_channels)->default_value(net.base_channels), "UNet width")
      ("channel-mult", po::value(&mult)->default_value(mult), "channel multiplier per level")
      ("blocks", po::value(&net.blocks_per_level)->default_value(net.blocks_per_level), "residual blocks per level")
      ("attention", po::value(&attention)->default_value(attention), "levels with self-attention (comma list)")
      ("dropout", po::value(&net.dropout)->default_value(net.dropout), "dropout in residual blocks")
      ("cond-channels", po::value(&net.cond_channels)->default_value(0), "mask input channels (0 for a foundation)")
      ("sigma-data", po::value(&edm.sigma_data)->default_value(edm.sigma_data), "EDM σ_data");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!parse("pretrain", "--data VOLUMES... --out model.pt [options]", opts, pos, args, vm)) return 0;
  check_common(c);
  const auto group = diffusion::join_group(c.dist);  // first: a rank that cannot join fails before any work
  c.cfg.flips = !vm.count("no-flips");
  net.channel_mult = int_list(mult, "--channel-mult");
  net.attention_levels = attention.empty() ? std::vector<int64_t>{} : int_list(attention, "--attention");
  net.validate();
  // "volume.nii.gz@coronal" gives a volume its own orientation; folders are expanded.
  std::vector<std::string> files;
  for (const auto& spec : c.data) {
    const auto at = spec.rfind('@');
    if (at != std::string::npos && spec.find(".nii", 0) != std::string::npos && at > spec.find(".nii")) {
      AMBIENT_CHECK(std::filesystem::exists(spec.substr(0, at)), "pretrain --data: not found: ", spec.substr(0, at));
      files.push_back(spec);
    } else {
      for (auto& f : diffusion::expand_inputs({spec}, {".nii.gz", ".nii", ".h5"})) files.push_back(f);
    }
  }
  auto is_volume = [](const std::string& f) { return f.find(".nii") != std::string::npos; };
  AMBIENT_CHECK(!dump.empty() || !c.out.empty(), "pretrain: --out is required (the checkpoint to write)");
  if (!dump.empty()) {
    AMBIENT_CHECK(std::all_of(files.begin(), files.end(), is_volume), "pretrain --dump-slices: NIfTI volumes only");
    ambient::TensorFile file;
    file.tensors.emplace_back("slices", diffusion::clean_volume_magnitudes(files, matrix, orientation).to(torch::kHalf));
    std::string list;
    for (const auto& f : files) list += (list.empty() ? "" : " ") + f;
    file.meta = {{"volumes", list}, {"matrix", std::to_string(matrix)}, {"orientation", orientation}};
    ambient::write_tensor_file(dump, file);
    std::cout << "wrote " << dump << ": " << file.tensors[0].second.size(0) << " slices of " << matrix << "x" << matrix
              << " (float16 magnitudes, 99th percentile 1)\n";
    return 0;
  }
  std::shared_ptr<diffusion::Source> data, val;
  auto make = [&](const std::vector<std::string>& fs) -> std::shared_ptr<diffusion::Source> {
    if (std::all_of(fs.begin(), fs.end(), is_volume)) return diffusion::clean_volume_source(fs, matrix, orientation, c.cfg.seed);
    AMBIENT_CHECK(std::none_of(fs.begin(), fs.end(), is_volume), "pretrain --data: mix of NIfTI volumes and scans; "
                  "give one kind");
    diffusion::ScanSourceConfig sc;
    sc.corruption = diffusion::Corruption::none;  // fully sampled scans, coil-combined, as clean images
    return diffusion::scan_source(fs, sc);
  };
  data = make(files);
  if (!c.val.empty()) val = make(diffusion::expand_inputs(c.val, {".nii.gz", ".nii", ".h5"}));
  diffusion::TrainState state = c.resume          ? diffusion::load_state(c.out, c.cfg, true)
                                 : !init.empty() ? diffusion::load_state(init, c.cfg, false)
                                                 : diffusion::new_state(net, edm, c.cfg);
  run_training(c, state, data, val, group);
  return 0;
}

int run_finetune(const std::vector<std::string>& args) {
  po::options_description opts("finetune options");
  Common c;
  std::string init, corruption = "fourier", objective = "ambient", precond = "auto";
  double further_accel = 0;
  diffusion::ScanSourceConfig sc;
  std::string block_size = "8,32";
  diffusion::UNetConfig scratch_net;
  add_common(opts, c);
  opts.add_options()
      ("init", po::value(&init), "foundation: an ambient checkpoint (.pt) or a TorchScript file with "
       "forward(x, sigma) -> denoised; without it the network starts from scratch")
      ("corruption", po::value(&corruption)->default_value(corruption), "fourier (k-space lines) | block (image boxes)")
      ("objective", po::value(&objective)->default_value(objective), "ambient | naive (baseline: corrupted as clean)")
      ("delta", po::value(&c.cfg.delta)->default_value(c.cfg.delta),
       "further corruption: fraction of A's non-calibration lines (or pixels) Ã drops each step")
      ("further-accel", po::value(&further_accel)->default_value(0),
       "fourier: set δ so Ã has this acceleration on the first scan (A-DPS used R=4 -> 5); overrides --delta")
      ("extra-blocks", po::value(&c.cfg.extra_blocks)->default_value(0), "block: Ã erases this many more boxes, of --block-size")
      ("blocks", po::value(&sc.block_count)->default_value(sc.block_count), "block: boxes A erases per slice")
      ("precond", po::value(&precond)->default_value(precond),
       "auto | standard | masked (what Ã hid, a pixel or a k-space line, is treated as σ = ∞, so the network "
       "predicts it directly; docs/objectives.md). auto: masked for --corruption block with the ambient objective, "
       "else standard")
      ("block-size", po::value(&block_size)->default_value(block_size), "block: box side range min,max")
      ("base-channels", po::value(&scratch_net.base_channels)->default_value(scratch_net.base_channels),
       "from scratch: UNet width")
      ("kernel", po::value(&sc.espirit.kernel)->default_value(sc.espirit.kernel), "ESPIRiT kernel width");
  po::positional_options_description pos;
  po::variables_map vm;
  if (!parse("finetune", "--data SCANS... --init foundation.pt --out model.pt [options]", opts, pos, args, vm))
    return 0;
  AMBIENT_CHECK(!c.out.empty(), "finetune: --out is required (the checkpoint to write)");
  check_common(c);
  AMBIENT_CHECK(vm["further-accel"].defaulted() || further_accel > 1, "--further-accel: expected an acceleration > 1, "
                "got ", further_accel);
  const auto group = diffusion::join_group(c.dist);
  c.cfg.flips = !vm.count("no-flips");
  AMBIENT_CHECK(corruption == "fourier" || corruption == "block", "finetune --corruption: expected fourier|block, "
                "got '", corruption, "'");
  AMBIENT_CHECK(objective == "ambient" || objective == "naive", "finetune --objective: expected ambient|naive, got '",
                objective, "'");
  AMBIENT_CHECK(precond == "auto" || precond == "standard" || precond == "masked",
                "finetune --precond: expected auto|standard|masked, got '", precond, "'");
  sc.corruption = diffusion::parse_corruption(corruption);
  c.cfg.objective = diffusion::finetune_objective(sc.corruption, objective == "naive");
  const auto pc = precond == "auto"       ? diffusion::default_precond(c.cfg.objective)
                  : precond == "standard" ? diffusion::Precond::standard
                                          : diffusion::masked_precond(c.cfg.objective);
  AMBIENT_CHECK(!c.resume || vm["precond"].defaulted(), "finetune --resume: the preconditioning is the checkpoint's; "
                "drop --precond");
  const auto sizes = int_list(block_size, "--block-size");
  AMBIENT_CHECK(sizes.size() == 2, "finetune --block-size: expected min,max");
  sc.block_min = sizes[0], sc.block_max = sizes[1];
  c.cfg.extra_block_min = sizes[0], c.cfg.extra_block_max = sizes[1];  // Ã's extra boxes are drawn like A's
  sc.seed = c.cfg.seed;
  auto files = diffusion::expand_inputs(c.data, {".h5", ".cfl"});
  if (further_accel > 0) {
    const auto first = mri::read_scan(files[0]);  // δ from its first slice's lines
    c.cfg.delta = mri::further_drop_fraction(first.mask[0], first.calib[0], further_accel);
    std::cout << "further acceleration " << further_accel << ": δ = " << c.cfg.delta << "\n";
  }
  std::shared_ptr<diffusion::Source> data = diffusion::scan_source(files, sc), val;
  if (sc.corruption == diffusion::Corruption::block && group->is_main()) {  // what A leaves: worth knowing before hours of training
    double erased = 0;
    int64_t n = 0;
    for (int64_t f = 0; f < data->files() && n < 16; ++f)
      for (int64_t s = 0; s < data->slices(f) && n < 16; ++s, ++n)
        erased += 1 - data->load(f, s).mask.mean().item<double>();
    std::cout << std::fixed << std::setprecision(1) << "block corruption: A erases " << 100 * erased / std::max<int64_t>(1, n)
              << "% of the pixels (mean of " << n << " slices)\n" << std::defaultfloat;
  }
  if (!c.val.empty()) val = diffusion::scan_source(diffusion::expand_inputs(c.val, {".h5", ".cfl"}), sc);
  diffusion::TrainState state;
  if (c.resume) {
    state = diffusion::load_state(c.out, c.cfg, true);
  } else if (!init.empty()) {
    state = diffusion::foundation_state(init, c.cfg);
    if (state.model->kind() == "torchscript")
      std::cout << "TorchScript foundation: fine-tuned without a mask channel (it sees the further-corrupted image)\n";
  } else {
    scratch_net.cond_channels = c.cfg.objective == diffusion::Objective::naive ? 0 : 1;
    state = diffusion::new_state(scratch_net, diffusion::EdmConfig{}, c.cfg);
  }
  if (!c.resume) diffusion::set_precond(state, pc);
  run_training(c, state, data, val, group);
  return 0;
}

}  // namespace ambient::app
