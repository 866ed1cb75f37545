#!/usr/bin/env bash
# The posterior-sampler sweeps quoted in docs/sampling.md and docs/results.md: how many samples K, how many steps,
# the γ floor, and the acceleration of the further mask Ã through which an ambient-Fourier model sees x_t.
# Needs the held-out target slices and models that bench/results.sh made.
#   bench/sampler_sweep.sh [MODEL] [RESULTS_DIR]     (defaults: out/results/ambient_finetuned.pt out/results)
# Prints one line per setting: PSNR/SSIM/NMSE over the three held-out slices and seconds per slice. About 20 min
# (800-step model, all settings) on 2 cores; SWEEP=shipped runs the 16/32-sample rows of the shipped model and the
# clean-trained one instead; SWEEP=budget the samples-against-steps table (about 15 min).
set -euo pipefail
cd "$(dirname "$0")/.."
FOUNDATION=${FOUNDATION:-data/models/foundation.pt}
A=$PWD/build/apps/ambient
O=${2:-out/results}
M=${1:-$O/ambient_finetuned.pt}
T=$O/target/heldout
[ -f "$T/r4.h5" ] || { echo "sampler_sweep: no held-out slices in $T; run bench/results.sh first" >&2; exit 1; }
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
run() {  # LABEL R MODEL recon-options...
  local label=$1 R=$2 model=$3; shift 3
  local t0; t0=$(date +%s.%N)
  "$A" recon "$T/r$R.h5" --method posterior --model "$model" "$@" -o "$TMP/x.nii.gz" > "$TMP/log" 2>&1 \
    || { cat "$TMP/log" >&2; exit 1; }
  local t; t=$(echo "($(date +%s.%N) - $t0) / 3" | bc -l)
  echo "$label R=$R $("$A" eval --reference "$T/r${R}_ref.nii.gz" "$TMP/x.nii.gz" | tail -1 | sed 's/.*NMSE/NMSE/') s/slice $(printf %.1f "$t")"
}
if [ "${SWEEP:-}" = budget ]; then  # samples against steps with the shipped model (docs/sampling.md)
  M=data/models/ambient_ch2_r4.pt
  for ks in 4x32 8x16 16x8 16x16 16x32 32x8; do
    for R in 4 8; do run "shipped K=${ks%x*} steps=${ks#*x}" "$R" "$M" --samples "${ks%x*}" --steps "${ks#*x}"; done
  done
  for ks in 16x6 32x4 48x4; do run "shipped K=${ks%x*} steps=${ks#*x}" 8 "$M" --samples "${ks%x*}" --steps "${ks#*x}"; done
  for m in "$O/clean.pt" "$FOUNDATION"; do
    for ks in 4x32 16x8; do run "$(basename "$m") K=${ks%x*} steps=${ks#*x}" 4 "$m" --samples "${ks%x*}" --steps "${ks#*x}"; done
  done
  exit 0
fi
if [ "${SWEEP:-}" = shipped ]; then
  for R in 4 8; do run "shipped K=16" "$R" data/models/ambient_ch2_r4.pt --samples 16 --steps 32; done
  run "shipped K=32" 8 data/models/ambient_ch2_r4.pt --samples 32 --steps 32
  for R in 4 8; do run "clean K=16" "$R" "$O/clean.pt" --samples 16 --steps 32; done
  exit 0
fi
for K in 4 8 16; do run "K=$K further-accel=5" 4 "$M" --samples "$K" --further-accel 5 --steps 32; done
for f in 0.003 0.03; do run "K=8 further-accel=5 gamma-floor=$f" 4 "$M" --samples 8 --further-accel 5 --gamma-floor "$f" --steps 32; done
run "K=8 further-accel=5 steps=64" 4 "$M" --samples 8 --further-accel 5 --steps 64
for fa in 0 1.5 2 3 4; do run "K=8 further-accel=$fa" 4 "$M" --samples 8 --further-accel "$fa" --steps 32; done
for fa in 2 3 5; do run "K=8 further-accel=$fa" 8 "$M" --samples 8 --further-accel "$fa" --steps 32; done
