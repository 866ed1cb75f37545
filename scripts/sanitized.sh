#!/usr/bin/env bash
# The sanitised configuration (issue 18, docs/reliability.md), run by scripts/test.sh in CI. With clang, ASan and
# UBSan into build-fuzz/ (-DAMBIENT_FUZZ=ON), it
#   1. replays every fixed fuzz finding (tests/fuzz/regressions/NAME/*) through its harness,
#   2. fuzzes each harness for a fixed number of executions from a fixed seed (scripts/fuzz.sh with FUZZ_RUNS;
#      fixed addresses and scratch paths), so that the same code tries the same inputs on every machine and a red
#      run replays locally (each harness repeats exactly on one machine; fuzz_cfl without traced comparisons),
#   3. runs the robustness suite against the sanitised `ambient`: any sanitizer report fails its case.
# Exploratory fuzzing (by time, random seeds, corpora that grow) finds new bugs at random and so is not in CI: run
# scripts/fuzz.sh SECONDS by hand and keep what it finds (tests/fuzz/regressions/ once fixed, tests/fuzz/third_party/
# for crashes inside HDF5 that ambient contains).
#   scripts/sanitized.sh      (SANITIZED_RUNS_SCAN/_CFL/_CHECKPOINT: executions per harness; FUZZ_SEED, default 1)
# Needs the normal build first (scripts/setup.sh): the seed corpus is made with it and io_image.cpp's object comes
# from it (Debian's ITK headers accept only GCC).
set -euo pipefail
cd "$(dirname "$0")/.."
# Builds the harnesses and makes the seed corpus; 1 execution each is a smoke test of the harness itself.
smoke=$(mktemp)
FUZZ_RUNS=1 scripts/fuzz.sh > "$smoke" 2>&1 || { cat "$smoke"; echo "sanitized: building or smoke-testing the harnesses failed"; exit 1; }
rm -f "$smoke"
cmake --build build-fuzz -j"$(nproc)" --target ambient

export ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
status=0
for h in scan cfl checkpoint; do
  d=tests/fuzz/regressions/$h
  [ -d "$d" ] || continue
  n=$(find "$d" -type f | wc -l)
  if build-fuzz/tests/fuzz/fuzz_"$h" -rss_limit_mb=4096 -malloc_limit_mb=65536 "$d"/* > "out/fuzz/replay_$h.log" 2>&1
  then echo "replay fuzz_$h: $n fixed finding(s), none crashes"
  else echo "replay fuzz_$h: a fixed finding crashes again (out/fuzz/replay_$h.log):"; tail -30 "out/fuzz/replay_$h.log"
    status=1
  fi
done

# Executions per harness, each about 20 s on one core of the CI machine. A crash inside HDF5 or libtorch passes
# only if the normal build's `ambient` survives the input (scripts/fuzz.sh).
FUZZ_RUNS=${SANITIZED_RUNS_SCAN:-4000} scripts/fuzz.sh 0 scan || status=1
FUZZ_RUNS=${SANITIZED_RUNS_CFL:-30000} scripts/fuzz.sh 0 cfl || status=1
FUZZ_RUNS=${SANITIZED_RUNS_CHECKPOINT:-3000} scripts/fuzz.sh 0 checkpoint || status=1

# libtorch, HDF5 and ITK are not instrumented: leak reports and container annotations across that boundary would
# be false alarms. UBSan stops at its first report, so it cannot scroll past.
export ASAN_OPTIONS=detect_leaks=0:detect_container_overflow=0
ROBUSTNESS_TIMEOUT=${ROBUSTNESS_TIMEOUT:-300} tests/robustness/robustness.sh "$PWD/build-fuzz/apps/ambient" \
  "$PWD/build-fuzz/robustness" || status=1
exit $status
