// ambient-gpu-pretrain: pretrains the foundation network on a GPU with the one training loop (trainer.hpp) over
// clean slices on the device (slices.hpp). It links only LibTorch (ambient::core and ambient::nn), so it builds on a
// machine that has a CUDA LibTorch and none of ambient's other dependencies (apps/gpu_pretrain/CMakeLists.txt). Its input is a tensor file of clean slices (`ambient pretrain --dump-slices`);
// its output, EMA weights in a tensor file that `ambient export` turns into a checkpoint. docs/cli.md has the recipe.
// Options are parsed by hand: Boost is one of the dependencies this build must do without.
#include <torch/torch.h>

#include <algorithm>
#include <fstream>
#include <iomanip>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <thread>

#include "ambient/core/error.hpp"
#include "ambient/diffusion/slices.hpp"

namespace {

constexpr const char* kUsage = R"(usage: ambient-gpu-pretrain --slices SLICES.bin --out WEIGHTS.bin [options]

Pretrains the default EDM network (complex images as 2 channels) on clean slices with the clean EDM objective,
on a GPU when there is one. Random flips and a random smooth phase per image are drawn on the device each step.

options (defaults in brackets):
  --slices FILE          tensor file with 'slices' [N, H, W] magnitudes (ambient pretrain --dump-slices)
  --out FILE             EMA weights (tensor file); FILE.model.pt and FILE.adam.pt beside it hold the run for --resume
  --resume               continue the run saved at --out (same options)
  --steps N              [40000]
  --batch N              [128]
  --lr X                 Adam learning rate after the warm-up [6e-4]
  --warmup N             linear warm-up steps [1000]
  --ema-halflife N       EMA half-life in steps [2000]
  --grad-clip X          max gradient norm, 0 = off [1]
  --seed N               [1]
  --base-channels N      network width [32]
  --channel-mult A,B,..  channels per level as multiples of the width [1,2,2]
  --blocks N             residual blocks per level [2]
  --attention A,B,..     levels with self-attention, 0 = full resolution [2]
  --device D             auto | cuda | cpu [auto: cuda when available]
  --no-bf16              train in float32 (default: bfloat16 autocast for the network)
  --checkpoint-every N   steps [1000]
  --time-limit S         stop after S seconds of training, checkpointed; --resume goes on [0: none]
  --log FILE             JSON lines: step, loss, lr, images/s, elapsed [OUT.log.jsonl]
  --threads N            CPU threads for LibTorch [all cores]
)";

std::vector<int64_t> parse_list(const std::string& text) {
  std::vector<int64_t> v;
  std::stringstream ss(text);
  std::string item;
  while (std::getline(ss, item, ',')) v.push_back(std::stoll(item));
  return v;
}

std::string clock_string(double seconds) {
  const auto s = static_cast<int64_t>(std::max(0.0, seconds));
  std::ostringstream os;
  os << s / 3600 << ":" << std::setw(2) << std::setfill('0') << (s / 60) % 60 << ":" << std::setw(2) << s % 60;
  return os.str();
}

}  // namespace

int main(int argc, char** argv) {
  using namespace ambient;
  using namespace ambient::diffusion;
  try {
    std::map<std::string, std::string> opt;
    const std::vector<std::string> flags = {"--resume", "--no-bf16", "--help", "-h"};
    for (int i = 1; i < argc; ++i) {
      const std::string a = argv[i];
      if (std::find(flags.begin(), flags.end(), a) != flags.end()) {
        opt[a] = "1";
        continue;
      }
      AMBIENT_CHECK(a.rfind("--", 0) == 0 && i + 1 < argc, "ambient-gpu-pretrain: expected --option VALUE, got '", a,
                    "' (see --help)");
      opt[a] = argv[++i];
    }
    if (opt.count("--help") || opt.count("-h") || argc == 1) {
      std::cout << kUsage;
      return 0;
    }
    const std::vector<std::string> known = {"--slices", "--out", "--resume", "--steps", "--batch", "--lr",
                                            "--warmup", "--ema-halflife", "--grad-clip", "--seed",
                                            "--base-channels", "--channel-mult", "--blocks", "--attention", "--device",
                                            "--no-bf16", "--checkpoint-every", "--time-limit", "--log", "--threads"};
    for (const auto& [k, v] : opt)
      AMBIENT_CHECK(std::find(known.begin(), known.end(), k) != known.end(), "ambient-gpu-pretrain: unknown option ",
                    k, " (see --help)");
    AMBIENT_CHECK(opt.count("--slices") && opt.count("--out"), "ambient-gpu-pretrain: --slices and --out are required");
    auto get = [&](const std::string& k, const std::string& fallback) {
      return opt.count(k) ? opt.at(k) : fallback;
    };
    TrainConfig cfg = slice_pretrain_defaults();
    SliceAugment augment;
    int64_t report_every = 50;
    UNetConfig net;
    EdmConfig edm;
    std::string device_name, out, log_path;
    int64_t threads = 0;
    try {
      cfg.steps = std::stoll(get("--steps", std::to_string(cfg.steps)));
      cfg.batch = std::stoll(get("--batch", std::to_string(cfg.batch)));
      cfg.lr = std::stod(get("--lr", std::to_string(cfg.lr)));
      cfg.warmup = std::stoll(get("--warmup", std::to_string(cfg.warmup)));
      cfg.ema_halflife = std::stod(get("--ema-halflife", std::to_string(cfg.ema_halflife)));
      cfg.grad_clip = std::stod(get("--grad-clip", std::to_string(cfg.grad_clip)));
      cfg.seed = std::stoull(get("--seed", std::to_string(cfg.seed)));
      cfg.checkpoint_every = std::stoll(get("--checkpoint-every", std::to_string(cfg.checkpoint_every)));
      cfg.time_limit_s = std::stod(get("--time-limit", "0"));
      cfg.bf16 = !opt.count("--no-bf16");
      net.base_channels = std::stoll(get("--base-channels", std::to_string(net.base_channels)));
      if (opt.count("--channel-mult")) net.channel_mult = parse_list(opt.at("--channel-mult"));
      if (opt.count("--attention")) net.attention_levels = parse_list(opt.at("--attention"));
      net.blocks_per_level = std::stoll(get("--blocks", std::to_string(net.blocks_per_level)));
      threads = std::stoll(get("--threads", "0"));
    } catch (const std::logic_error&) {
      ambient::fail("ambient-gpu-pretrain: a numeric option has a value that is not a number (see --help)");
    }
    out = opt.at("--out");
    log_path = get("--log", out + ".log.jsonl");
    device_name = get("--device", "auto");
    AMBIENT_CHECK(device_name == "auto" || device_name == "cuda" || device_name == "cpu",
                  "ambient-gpu-pretrain: --device must be auto, cuda or cpu, got '", device_name, "'");
    AMBIENT_CHECK(device_name != "cuda" || torch::cuda::is_available(),
                  "ambient-gpu-pretrain: --device cuda, but this LibTorch sees no CUDA device");
    const torch::Device device = device_name == "cpu" || (device_name == "auto" && !torch::cuda::is_available())
                                     ? torch::Device(torch::kCPU)
                                     : torch::Device(torch::kCUDA);
    torch::set_num_threads(threads > 0 ? static_cast<int>(threads)
                                       : static_cast<int>(std::max(1u, std::thread::hardware_concurrency())));
    if (device.is_cuda()) {
      at::globalContext().setBenchmarkCuDNN(true);
    }

    const auto data = read_tensor_file(opt.at("--slices"));
    const auto slices = data.tensor("slices").to(torch::kFloat);
    std::cout << "slices: " << slices.size(0) << " of " << slices.size(1) << "x" << slices.size(2) << " from "
              << opt.at("--slices") << "\nnetwork: " << net.serialize() << "\ndevice: " << device
              << (cfg.bf16 ? ", bf16 autocast" : ", float32") << "; batch " << cfg.batch << ", " << cfg.steps
              << " steps, lr " << cfg.lr << std::endl;

    std::ofstream log(log_path, opt.count("--resume") ? std::ios::app : std::ios::trunc);
    AMBIENT_CHECK(log.good(), "ambient-gpu-pretrain: cannot write the log ", log_path);
    // Every step reports; the log and the screen get the mean loss of the last report_every steps.
    double loss_sum = 0;
    int64_t since = 0;
    double since_s = 0;
    const auto monitor = [&](const StepReport& r) {
      loss_sum += r.loss;
      ++since;
      since_s += static_cast<double>(cfg.batch) / std::max(1e-9, r.images_per_s);
      if (r.step % report_every != 0 && !r.checkpointed) return;
      const double loss = loss_sum / static_cast<double>(since);
      const double images_per_s = static_cast<double>(since * cfg.batch) / std::max(1e-9, since_s);
      loss_sum = 0, since = 0, since_s = 0;
      log << "{\"step\": " << r.step << ", \"loss\": " << loss << ", \"lr\": " << r.lr
          << ", \"images_per_s\": " << images_per_s << ", \"elapsed_s\": " << r.elapsed_s << "}\n";
      log.flush();
      const double steps_per_s = images_per_s / static_cast<double>(cfg.batch);
      std::cout << "step " << r.step << "/" << r.steps << "  loss " << std::setprecision(4) << loss << "  "
                << std::setprecision(5) << images_per_s << " img/s  elapsed " << clock_string(r.elapsed_s)
                << "  ETA " << clock_string(static_cast<double>(r.steps - r.step) / std::max(1e-9, steps_per_s))
                << (r.checkpointed ? "  (checkpoint)" : "") << std::endl;
    };
    const auto step = train_on_slices(slices, net, edm, cfg, augment, device, out, opt.count("--resume") > 0,
                                      monitor);
    std::cout << "wrote " << out << " (EMA weights at step " << step << "/" << cfg.steps << ")"
              << (step < cfg.steps ? "; continue with the same command and --resume" : "") << "\n";
    return 0;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
