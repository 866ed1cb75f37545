#!/usr/bin/env bash
# Builds ambient-gpu-pretrain against the CUDA LibTorch of this machine's Python torch (or TORCH_PREFIX) and runs
# it with the given arguments; the build is kept in BUILD and reused. Needs CMake, a C++17 compiler and LibTorch,
# nothing else of ambient's dependencies. The foundation recipe (docs/cli.md, data/models/README.md):
#   build/apps/ambient pretrain --data <source volumes> --matrix 128 --dump-slices out/gpu/slices.bin   # here
#   scripts/gpu_pretrain.sh --slices out/gpu/slices.bin --out out/gpu/foundation_gpu.bin ...        # on the GPU
#   build/apps/ambient export out/gpu/foundation_gpu.bin -o data/models/foundation_gpu.pt              # here
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build-gpu}
if [ ! -x "$BUILD/ambient-gpu-pretrain" ]; then
  TORCH_PREFIX=${TORCH_PREFIX:-$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')}
  generator=()
  command -v ninja > /dev/null && generator=(-G Ninja)
  cmake -S apps/gpu_pretrain -B "$BUILD" "${generator[@]}" -DCMAKE_PREFIX_PATH="$TORCH_PREFIX" \
    -DCMAKE_BUILD_TYPE=Release > "$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log"; exit 1; }
  cmake --build "$BUILD" -j"$(nproc)"
fi
exec "$BUILD/ambient-gpu-pretrain" "$@"
