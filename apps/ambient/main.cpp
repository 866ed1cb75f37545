// ambient: the command-line entry point; dispatches git-style subcommands and turns errors into one clear line.
#include <torch/torch.h>

#include <malloc.h>

#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include "ambient/core/error.hpp"
#include "ambient/core/log.hpp"
#include "ambient/mri/io.hpp"
#include "cli.hpp"

namespace {

constexpr const char* kUsage = R"(usage: ambient [--verbose] [--threads N] <command> [options]

Learn clean MRI priors from corrupted scans, and reconstruct undersampled scans.

commands:
  info       describe a scan file (ISMRMRD, fastMRI HDF5, BART cfl)
  simulate   make a multi-coil undersampled ISMRMRD scan from a NIfTI volume
  recon      reconstruct a scan (zero-filled, CG-SENSE, or posterior sampling with a trained model) to NIfTI,
             with an uncertainty map, PNG previews and metrics
  convert    convert a scan to BART cfl, fastMRI HDF5, ISMRMRD, or a NIfTI image
  pretrain   train the diffusion model on clean slices (NIfTI volumes or fully sampled scans)
  finetune   fine-tune a model with the ambient objective on corrupted scans only
  sample     draw samples from a trained model (PNG grid, NIfTI)
  inpaint    fill the pixels a mask hid in a magnitude volume by posterior sampling with a trained model
  eval       PSNR/SSIM/NMSE against a reference; memorisation of samples (nearest training image NCC)
  export     reduce a training checkpoint to its EMA weights (to ship or fine-tune)

global options:
  --verbose      log progress details (same as AMBIENT_LOG=info; AMBIENT_LOG=debug for more)
  --threads N    threads for LibTorch and FFTW (default: all cores)
  --version      print the version

'ambient <command> --help' lists a command's options.
)";

// One line on stderr, whatever the message holds (libraries' messages carry their own line breaks): exit 1.
int report(const std::string& message) {
  std::string line = message;
  while (!line.empty() && (line.back() == '\n' || line.back() == ' ')) line.pop_back();
  while (!line.empty() && (line.front() == '\n' || line.front() == ' ')) line.erase(0, 1);
  for (size_t p = line.find('\n'); p != std::string::npos; p = line.find('\n', p)) line.replace(p, 1, " | ");
  std::cerr << "ambient: error" << ambient::app::rank_tag() << ": " << line << "\n";
  return 1;
}

}  // namespace

int main(int argc, char** argv) {
  // Keep multi-megabyte k-space buffers in the heap: glibc's defaults return them to the OS after each free and
  // page-fault them back on the next allocation, which made FFT-heavy loops up to 3x slower (see bench/).
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 256 << 20);
  ambient::exit_cleanly_on_reader_crash();  // a damaged HDF5 file that crashes HDF5 is an error, not a signal
  std::vector<std::string> args(argv + 1, argv + argc);
  int threads = 0;
  size_t i = 0;
  try {
    for (; i < args.size() && !args[i].empty() && args[i][0] == '-'; ++i) {
      if (args[i] == "--help" || args[i] == "-h") {
        std::cout << kUsage;
        return 0;
      } else if (args[i] == "--version") {
        std::cout << "ambient 0.1.0\n";
        return 0;
      } else if (args[i] == "--verbose" || args[i] == "-v") {
        ambient::log::set_level(ambient::log::Level::info);
      } else if (args[i] == "--threads" && i + 1 < args.size()) {
        const std::string value = args[++i];
        try {
          threads = std::stoi(value);
        } catch (const std::exception&) {
          threads = -1;
        }
        AMBIENT_CHECK(threads >= 1, "--threads: expected a number of threads >= 1, got '", value, "'");
      } else {
        ambient::fail("unknown global option '", args[i], "' (see 'ambient --help')");
      }
    }
    if (i == args.size()) {
      std::cerr << kUsage;
      return 2;
    }
    const std::string command = args[i];
    std::vector<std::string> rest(args.begin() + static_cast<long>(i) + 1, args.end());
    ambient::app::set_threads(threads);
    if (command == "info") return ambient::app::run_info(rest);
    if (command == "simulate") return ambient::app::run_simulate(rest);
    if (command == "recon") return ambient::app::run_recon(rest);
    if (command == "convert") return ambient::app::run_convert(rest);
    if (command == "pretrain") return ambient::app::run_pretrain(rest);
    if (command == "finetune") return ambient::app::run_finetune(rest);
    if (command == "sample") return ambient::app::run_sample(rest);
    if (command == "inpaint") return ambient::app::run_inpaint(rest);
    if (command == "eval") return ambient::app::run_eval(rest);
    if (command == "export") return ambient::app::run_export(rest);
    ambient::fail("unknown command '", command, "' (commands: info, simulate, recon, convert, pretrain, finetune, sample, inpaint, eval, export; see 'ambient --help')");
  } catch (const ambient::Error& e) {
    return report(e.what());
  } catch (const c10::Error& e) {
    return report(e.what_without_backtrace());
  } catch (const std::exception& e) {
    return report(e.what());
  }
}
