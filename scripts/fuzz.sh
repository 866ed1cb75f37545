#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz: scan = ISMRMRD/fastMRI HDF5, cfl, checkpoint) with clang,
# ASan and UBSan into build-fuzz/, and runs each for SECONDS on a seed corpus of valid files made by the normal build.
#   scripts/fuzz.sh [SECONDS=60] [HARNESS...]      (FUZZ_SEED=N: libFuzzer's -seed)
# FUZZ_RUNS=N makes a run repeatable, as CI needs (scripts/sanitized.sh): N executions per harness instead of
# SECONDS, no -fork, from a fresh corpus of the seeds and the fixed findings only (FUZZ_SEED defaults to 1), so the
# same code gives the same inputs on any machine.
# Corpora grow in out/fuzz/corpus_NAME; a crashing input lands in out/fuzz/crashes_NAME (keep it as a regression
# input under tests/fuzz/regressions/NAME/ once fixed). Prints executions and crashes per harness; exits 1 on a crash.
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_EACH=${1:-60}
shift || true
HARNESSES=("$@")
[ ${#HARNESSES[@]} -gt 0 ] || HARNESSES=(scan cfl checkpoint)
A=$PWD/build/apps/ambient
[ -x "$A" ] || { echo "fuzz: build the project first (scripts/setup.sh): the seed corpus is made with $A" >&2; exit 1; }
command -v clang++ > /dev/null || { echo "fuzz: clang++ not found (apt-get install clang)" >&2; exit 1; }
export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake -S . -B build-fuzz -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
  -DCMAKE_CXX_COMPILER=clang++ -DAMBIENT_FUZZ=ON > build-fuzz-configure.log 2>&1 || { cat build-fuzz-configure.log; exit 1; }
cmake --build build-fuzz -j"$(nproc)" --target $(printf 'fuzz_%s ' "${HARNESSES[@]}")

O=out/fuzz
mkdir -p "$O/seeds"
S=$O/seeds
if [ ! -f "$S/done" ]; then  # small valid files of each format
  "$A" simulate -o "$S/ismrmrd.h5" --matrix 16 --count 1 --coils 2 --accel 2 --center-fraction 0.25 --noise-samples 16 > /dev/null
  "$A" simulate -o "$S/fastmri.h5" --format fastmri --same-mask --matrix 16 --count 1 --coils 2 --accel 2 --center-fraction 0.25 > /dev/null
  "$A" simulate -o "$S/scan.cfl" -r "$S/ref.nii.gz" --format cfl --matrix 16 --count 1 --coils 2 --accel 2 --center-fraction 0.25 > /dev/null
  "$A" pretrain --data /usr/share/mricron/templates/ch2.nii.gz --matrix 16 --base-channels 8 --channel-mult 1 \
    --attention "" --steps 1 --batch 1 --out "$S/model.pt" > /dev/null
  touch "$S/done"
fi
seed() {  # NAME CORPUS: the harness's seed files into its corpus
  local c=$2
  mkdir -p "$c"
  case $1 in
    scan) cp "$S/ismrmrd.h5" "$S/fastmri.h5" "$c/" ;;
    cfl) { cat "$S/scan.hdr"; printf '\0'; cat "$S/scan.cfl"; } > "$c/scan" ;;
    checkpoint) cp "$S/model.pt" "$c/" ;;
  esac
  # Fixed findings join the corpus. The checkpoint finding is a crash inside libtorch's TorchScript parser under
  # ASan (the normal build refuses that file with an error, tests/robustness replays it), so it stays out, and the
  # checkpoint harness runs with -fork so that it keeps going after such crashes, counting them.
  [ "$1" != checkpoint ] && [ -d "tests/fuzz/regressions/$1" ] && cp tests/fuzz/regressions/"$1"/* "$c/" 2> /dev/null
  return 0
}
# Memory: a finding is a process whose resident memory passes 4 GB. A single large allocation that is never
# touched is not: HDF5 mallocs whatever a damaged object header's size says (4 GB for one fuzzed file) and then
# fails to read it, which costs nothing resident (the normal build refuses that file in 0.4 s at 170 MB RSS;
# tests/fuzz/regressions/scan/hdf5_root_header_4gb_malloc.h5). libFuzzer's default malloc limit equals the RSS
# limit, so it is raised.
status=0
for h in "${HARNESSES[@]}"; do
  corpus=$O/corpus_$h
  if [ -n "${FUZZ_RUNS:-}" ]; then
    corpus=$O/fixed_corpus_$h
    rm -rf "$corpus"
  fi
  seed "$h" "$corpus"
  mkdir -p "$O/crashes_$h"
  touch "$O/start_$h"  # crash inputs of earlier runs stay, but only this run's count
  log=$O/fuzz_$h.log
  budget=(-max_total_time="$SECONDS_EACH"); took="$SECONDS_EACH s"; fork=(); [ "$h" = checkpoint ] && fork=(-fork=1 -ignore_crashes=1)
  [ -n "${FUZZ_RUNS:-}" ] && budget=(-runs="$FUZZ_RUNS") && fork=() && took="$FUZZ_RUNS runs" && FUZZ_SEED=${FUZZ_SEED:-1}
  ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
    build-fuzz/tests/fuzz/fuzz_"$h" -timeout=30 -rss_limit_mb=4096 -malloc_limit_mb=65536 -max_len=1048576 \
    "${fork[@]}" ${FUZZ_SEED:+-seed=$FUZZ_SEED} "${budget[@]}" -artifact_prefix="$O/crashes_$h/" "$corpus" > "$log" 2>&1 || status=1
  execs=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$log" | tail -1)
  [ -n "$execs" ] || execs=$(grep -ao '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  crashes=$(find "$O/crashes_$h" -type f -newer "$O/start_$h" | wc -l)
  cov=$(grep -ao 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  echo "fuzz_$h: $took, ${execs:-?} executions, ${cov:-cov: ?}, $crashes crash input(s) in $O/crashes_$h"
  [ "$crashes" -eq 0 ] || status=1
done
exit $status
