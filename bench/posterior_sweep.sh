#!/usr/bin/env bash
# The posterior-sampler settings of docs/sampling.md ("Noise convention, γ scale and the conditional mean"), side by
# side in one run: for each MODEL:LABEL, each held-out set and R = 4 / 8, recon's defaults for the model with the γ
# scale and --mean-of varied, scored (PSNR / SSIM over the set's slices) and the --std map's calibration (fraction
# of object pixels within 2 std, the factor that makes 2 std cover 95%). One markdown table to stdout and
# OUT/posterior_sweep.md; the heldout set is the one to choose settings on, val2 the one to confirm them on.
#   bench/posterior_sweep.sh data/models/ambient_ch2_r4.pt:shipped out/noisefix/ambient_finetuned_long.pt:new
# With BASELINES=1 (the default) CG-SENSE and BART pics at its best λ come first (bench/baselines.sh).
#   env: OUT=out/posterior_sweep TARGET=out/results/target VAL2=out/foundations/val2 GAMMAS="0.5 1" MEANS=... SETS="heldout val2" RS="4 8"
# Both held-out sets are made if missing (scripts/make_target_data.sh; bench/foundation_compare.sh's val2 slices).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
O=${OUT:-out/posterior_sweep}
T=${TARGET:-out/results/target}
V=${VAL2:-out/foundations/val2}
GAMMAS=${GAMMAS:-0.5 1}
MEANS=${MEANS:-conditional samples}
SETS=${SETS:-heldout val2}
RS=${RS:-4 8}
[ $# -ge 1 ] || { echo "usage: $0 MODEL.pt:LABEL..." >&2; exit 2; }
[ -f "$T/heldout/r4.h5" ] || scripts/make_target_data.sh "$T" 128 > /dev/null
mkdir -p "$O" "$V"
for R in 4 8; do
  [ -f "$V/r$R.h5" ] || "$A" simulate --orientation axial --slices 55,77,93,111 --matrix 128 --accel "$R" \
    --center-fraction 0.08 --seed $((400 + R)) -o "$V/r$R.h5" -r "$V/r${R}_ref.nii.gz" > /dev/null
done
num() { sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$1" | head -1; }
rows=("| model | γ scale | mean of | set | R | PSNR (dB) | SSIM | within 2 std | std scale for 95% | s/slice |"
      "|---|---|---|---|---|---|---|---|---|---|")
# The classical baselines on the same scans (bench/baselines.sh), unless BASELINES=0.
if [ "${BASELINES:-1}" = 1 ]; then
  specs=(); for set in $SETS; do dir=$T/heldout; [ "$set" = val2 ] && dir=$V; specs+=("$set=$dir"); done
  baselines=$(OUT=$O RS="$RS" COLUMNS_BEFORE=2 bench/baselines.sh "${specs[@]}")
  while IFS= read -r row; do rows+=("$row"); done <<< "$baselines"
  echo "$baselines" >&2
fi
for spec in "$@"; do
  model=${spec%%:*} label=${spec##*:}
  for g in $GAMMAS; do
    for mean in $MEANS; do
      for set in $SETS; do
        dir=$T/heldout; [ "$set" = val2 ] && dir=$V
        for R in $RS; do
          base=$O/${label}_g${g}_${mean}_${set}_r$R
          t0=$(date +%s.%N)
          "$A" recon "$dir/r$R.h5" --method posterior --model "$model" --gamma-scale "$g" --mean-of "$mean" \
            -o "$base.nii.gz" --std "${base}_std.nii.gz" > "$base.log" 2>&1 || { cat "$base.log" >&2; exit 1; }
          t1=$(date +%s.%N)
          n=$("$A" info "$dir/r$R.h5" --json | sed -n 's/.*"slices": \([0-9]*\).*/\1/p' | head -1)
          "$A" eval --reference "$dir/r${R}_ref.nii.gz" "$base.nii.gz" --std "${base}_std.nii.gz" \
            --json "$base.json" > /dev/null
          rows+=("| $label | $g | $mean | $set | $R | $(printf %.2f "$(num "$base.json" psnr)") | $(printf %.4f "$(num "$base.json" ssim)") | $(printf %.3f "$(num "$base.json" within_2)") | $(printf %.2f "$(num "$base.json" scale_for_95)") | $(printf %.1f "$(echo "($t1 - $t0) / $n" | bc -l)") |")
          echo "${rows[-1]}" >&2
        done
      done
    done
  done
done
printf "%s\n" "${rows[@]}" | tee "$O/posterior_sweep.md"
