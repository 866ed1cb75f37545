#!/usr/bin/env bash
# The sanitised configuration (issue 18, docs/reliability.md): `ambient` and the libFuzzer harnesses built with
# clang, ASan and UBSan into build-fuzz/ (-DAMBIENT_FUZZ=ON), a short fuzz of each harness (scripts/fuzz.sh), then
# the robustness suite run against the sanitised `ambient`: any sanitizer report fails its case.
#   scripts/sanitized.sh            (FUZZ_SECONDS per harness, default 20; scripts/test.sh runs this in CI)
# Needs the normal build first (scripts/setup.sh): the seed corpus is made with it and io_image.cpp's object comes
# from it (Debian's ITK headers accept only GCC).
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SEED=${FUZZ_SEED:-1} scripts/fuzz.sh "${FUZZ_SECONDS:-20}"  # a fixed seed: a CI failure replays locally
cmake --build build-fuzz -j"$(nproc)" --target ambient
# libtorch, HDF5 and ITK are not instrumented: leak reports and container annotations across that boundary would
# be false alarms. UBSan stops at its first report, so it cannot scroll past.
export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
ROBUSTNESS_TIMEOUT=${ROBUSTNESS_TIMEOUT:-300} tests/robustness/robustness.sh "$PWD/build-fuzz/apps/ambient" \
  "$PWD/build-fuzz/robustness"
