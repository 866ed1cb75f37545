#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz: scan = ISMRMRD/fastMRI HDF5, cfl, checkpoint) with clang,
# ASan and UBSan into build-fuzz/, and runs each for SECONDS on a seed corpus of valid files made by the normal build.
#   scripts/fuzz.sh [SECONDS=60] [HARNESS...]      (FUZZ_SEED=N: libFuzzer's -seed; FUZZ_FORK=1: keep going after a
#   crash, as the checkpoint harness always does)
# FUZZ_RUNS=N makes a run repeatable, as CI needs (scripts/sanitized.sh): N executions per harness instead of
# SECONDS, no -fork, from a fresh corpus of the seeds and the fixed findings only, with FUZZ_SEED (default 1), a
# fixed scratch folder and address-space randomisation off, so that the same code tries the same inputs on any
# machine.
# Corpora grow in out/fuzz/corpus_NAME; a crashing input lands in out/fuzz/crashes_NAME (keep it as a regression
# input under tests/fuzz/regressions/NAME/ once fixed). Prints executions
# and crashes per harness; exits 1 on a crash. With FUZZ_RUNS, a crash inside HDF5, libismrmrd or libtorch that the
# normal build's `ambient` survives is counted apart (out/fuzz/third_party_NAME) and the run goes on (below).
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
  # Fixed findings join the corpus. The checkpoint harness runs with -fork when fuzzing by time, so that it keeps
  # going after crashes inside libtorch's TorchScript parser, counting them.
  [ -d "tests/fuzz/regressions/$1" ] && cp tests/fuzz/regressions/"$1"/* "$c/" 2> /dev/null
  return 0
}
# Memory: a finding is a process whose resident memory passes 4 GB. A single large allocation that is never
# touched is not: HDF5 mallocs whatever a damaged object header's size says (4 GB for one fuzzed file) and then
# fails to read it, which costs nothing resident (the normal build refuses that file in 0.4 s at 170 MB RSS;
# tests/fuzz/regressions/scan/hdf5_root_header_4gb_malloc.h5). libFuzzer's default malloc limit equals the RSS
# limit, so it is raised.
# A crash whose first frame outside libc and the sanitizer runtime lies in an uninstrumented Debian library (HDF5,
# libismrmrd, libtorch) is a third-party finding: HDF5 1.10.8's decoders overread on damaged object headers, and
# no check of ours can reach inside them. Such an input is kept in out/fuzz/third_party_NAME and replayed through the
# normal build's `ambient info`, which must survive it (exit 0 or 1 with its one error line, no signal, no hang);
# only then does the run go on, from the grown corpus with the next seed. A crash in our code, a UBSan report, a
# time-out or an out-of-memory is a finding, and the run fails.
classify() {  # LOG: prints "ours" or "third-party"
  local frame
  # A frame in the harness binary with no source line is the sanitizer runtime (its interceptors: strdup, memcpy,
  # malloc ...) or libFuzzer; our code is built with debug information and shows FILE:LINE.
  frame=$(grep -aE '^ +#[0-9]+ ' "$1" | grep -avE '__interceptor_|__asan|__sanitizer|sysdeps|libc\.so|libc_start' |
    grep -avE '\(/[^ ]*/fuzz_[a-z]+\+0x[0-9a-f]+\)' | head -1)
  if grep -aqE 'runtime error:|libFuzzer: (timeout|out-of-memory|deadly signal|malloc)' "$1" && ! grep -aq 'AddressSanitizer' "$1"; then
    echo ours
  elif echo "$frame" | grep -aqE '\((/usr)?/lib/x86_64-linux-gnu/lib(hdf5|ismrmrd|torch|c10)[^/]*\.so'; then
    echo third-party
  else
    echo ours
  fi
}
survives() {  # NAME INPUT: the normal build's `ambient info` on the input, as a file of the harness's format
  local d=$O/survive_$1 rc=0
  rm -rf "$d" && mkdir -p "$d"
  case $1 in
    scan) cp "$2" "$d/input.h5"; set -- "$d/input.h5" ;;
    checkpoint) cp "$2" "$d/input.pt"; set -- "$d/input.pt" ;;
    cfl) python3 -c "import sys; b = open(sys.argv[1], 'rb').read(); i = b.find(b'\0'); i = len(b) if i < 0 else i
open(sys.argv[2] + '.hdr', 'wb').write(b[:i]); open(sys.argv[2] + '.cfl', 'wb').write(b[i + 1:])" "$2" "$d/input"
         set -- "$d/input.cfl" ;;
  esac
  timeout 120 "$A" info "$1" > "$d/stdout" 2> "$d/stderr" || rc=$?
  [ "$rc" -le 1 ] && { [ "$rc" -eq 0 ] || [ "$(grep -c '^ambient: error:' "$d/stderr")" -eq 1 ]; }
}
# Repeatable runs also need fixed addresses: libFuzzer traces comparisons, and pointers compared in them would
# otherwise differ from run to run (ASLR).
norandom=()
[ -n "${FUZZ_RUNS:-}" ] && setarch "$(uname -m)" -R true 2> /dev/null && norandom=(setarch "$(uname -m)" -R)
status=0
for h in "${HARNESSES[@]}"; do
  corpus=$O/corpus_$h
  if [ -n "${FUZZ_RUNS:-}" ]; then
    corpus=$O/fixed_corpus_$h
    rm -rf "$corpus" "$O/scratch_$h"
  fi
  seed "$h" "$corpus"
  mkdir -p "$O/crashes_$h" "$O/third_party_$h"
  touch "$O/start_$h"  # crash inputs of earlier runs stay, but only this run's count
  log=$O/fuzz_$h.log
  : > "$log"
  budget=(-max_total_time="$SECONDS_EACH"); took="$SECONDS_EACH s"; fork=(); { [ "$h" = checkpoint ] || [ -n "${FUZZ_FORK:-}" ]; } && fork=(-fork=1 -ignore_crashes=1)
  left=${FUZZ_RUNS:-0} seed_now=${FUZZ_SEED:-1} execs=0 third=0 crashes=0
  while :; do
    [ -n "${FUZZ_RUNS:-}" ] && budget=(-runs="$left" -seed="$seed_now") && fork=() && took="$FUZZ_RUNS runs"
    # fuzz_cfl's traced comparisons carry a value that changes from run to run (two runs of 30 000 part after about
    # 5150 executions with them, never without), so its fixed run goes without them.
    [ -n "${FUZZ_RUNS:-}" ] && [ "$h" = cfl ] && budget+=(-use_cmp=0)
    [ -z "${FUZZ_RUNS:-}" ] && [ -n "${FUZZ_SEED:-}" ] && budget+=(-seed="$FUZZ_SEED")
    part=$O/fuzz_${h}_part.log
    AMBIENT_FUZZ_DIR=$PWD/$O/scratch_$h ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
      UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 "${norandom[@]}" \
      build-fuzz/tests/fuzz/fuzz_"$h" -timeout=30 -rss_limit_mb=4096 -malloc_limit_mb=65536 -max_len=1048576 \
      "${fork[@]}" "${budget[@]}" -artifact_prefix="$O/crashes_$h/" "$corpus" > "$part" 2>&1 && rc=0 || rc=$?
    cat "$part" >> "$log"
    n=$(sed -n 's/^Done \([0-9]*\) runs.*/\1/p' "$part" | tail -1)
    [ -n "$n" ] || n=$(grep -ao '^#[0-9]*' "$part" | tail -1 | tr -d '#')
    execs=$((execs + ${n:-0}))
    new=$(find "$O/crashes_$h" -type f -newer "$O/start_$h")
    [ "$rc" -eq 0 ] && [ -z "$new" ] && break
    [ -z "${FUZZ_RUNS:-}" ] && { crashes=$(echo "$new" | grep -c . || true); break; }
    input=$(echo "$new" | head -1)
    if [ -n "$input" ] && [ "$(classify "$part")" = third-party ] && survives "$h" "$input"; then
      third=$((third + 1))
      mv "$input" "$O/third_party_$h/"
      cp "$part" "$O/third_party_$h/$(basename "$input").log"
      left=$((left - ${n:-0}))
      seed_now=$((seed_now + 1))
      [ "$left" -gt 0 ] && [ "$third" -lt 20 ] && continue
      break
    fi
    crashes=$(echo "$new" | grep -c . || true)
    [ "$crashes" -gt 0 ] || crashes=1  # libFuzzer failed without leaving an input
    break
  done
  cov=$(grep -ao 'cov: [0-9]* ft: [0-9]*' "$log" | tail -1)
  extra=""; [ "$third" -gt 0 ] && extra=", $third third-party input(s) that ambient survives in $O/third_party_$h"
  echo "fuzz_$h: $took, $execs executions, ${cov:-cov: ?}, $crashes crash input(s) in $O/crashes_$h$extra"
  [ "$crashes" -eq 0 ] || { status=1; tail -60 "$log" | grep -aE 'ERROR|SUMMARY|runtime error|#[0-9]+ ' | head -25; }
done
exit $status
