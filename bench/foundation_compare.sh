#!/usr/bin/env bash
# Which foundation fine-tunes better: for each FOUNDATION:LABEL, the ambient fine-tune of bench/results.sh (R = 4
# training scans, further acceleration 5, batch BATCH) to STEPS and on to LONG_STEPS, unless OUT/LABEL already holds
# ambient_finetuned.pt / ambient_finetuned_long.pt; then each model reconstructs the held-out target slices (70, 86,
# 102) and a second held-out set (slices 55, 77, 93, 111, other masks and noise) at R = 4 and R = 8 with recon's
# defaults, next to CG-SENSE and BART pics l1-wavelet at its best λ, and a markdown table of PSNR / SSIM (mean over slices) goes to stdout and OUT/compare.md (no timings:
# the models share one network size, so one speed; docs/performance.md).
#   bench/foundation_compare.sh data/models/foundation.pt:cpu out/gpu/foundation_gpu.pt:gpu
#   env: OUT=out/foundations STEPS=800 LONG_STEPS=2400 BATCH=4 TARGET=out/results/target (made if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
O=${OUT:-out/foundations}
STEPS=${STEPS:-800}
LONG_STEPS=${LONG_STEPS:-2400}
BATCH=${BATCH:-4}
T=${TARGET:-out/results/target}
[ $# -ge 1 ] || { echo "usage: $0 FOUNDATION.pt:LABEL..." >&2; exit 2; }
[ -f "$T/heldout/r4.h5" ] || scripts/make_target_data.sh "$T" 128 > /dev/null
mkdir -p "$O/val2"
for R in 4 8; do
  [ -f "$O/val2/r$R.h5" ] || "$A" simulate --orientation axial --slices 55,77,93,111 --matrix 128 --accel "$R" \
    --center-fraction 0.08 --seed $((400 + R)) -o "$O/val2/r$R.h5" -r "$O/val2/r${R}_ref.nii.gz" > /dev/null
done
FT=(--data "$T/train" --val "$T/heldout/r4.h5" --batch "$BATCH" --checkpoint-every 500 --val-every 500
    --corruption fourier --further-accel 5)
metric() { sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$1" | head -1; }
rows=("| foundation | model | slices | R | PSNR (dB) | SSIM |" "|---|---|---|---|---|---|")
# The baselines on the same scans: CG-SENSE, and BART pics l1-wavelet at its best λ (bench/baselines.sh).
baselines=$(OUT=$O bench/baselines.sh heldout="$T/heldout" val2="$O/val2")
while IFS= read -r row; do rows+=("| - $row"); done <<< "$baselines"
printf "%s\n" "${rows[@]}" >&2
for spec in "$@"; do
  f=${spec%%:*} label=${spec##*:}
  d=$O/$label
  mkdir -p "$d"
  if [ ! -f "$d/ambient_finetuned.pt" ]; then
    "$A" finetune "${FT[@]}" --init "$f" --steps "$STEPS" --out "$d/ambient_finetuned.pt" > "$d/finetune.log" 2>&1 \
      || { tail -5 "$d/finetune.log" >&2; exit 1; }
  fi
  if [ "$LONG_STEPS" -gt "$STEPS" ] && [ ! -f "$d/ambient_finetuned_long.pt" ]; then
    [ -f "$d/long.ckpt.pt" ] || { cp "$d/ambient_finetuned.pt" "$d/long.ckpt.pt"
                                   cp "$d/ambient_finetuned.pt.log.jsonl" "$d/long.ckpt.pt.log.jsonl"; }
    "$A" finetune "${FT[@]}" --steps "$LONG_STEPS" --resume --out "$d/long.ckpt.pt" > "$d/finetune_long.log" 2>&1 \
      || { tail -5 "$d/finetune_long.log" >&2; exit 1; }
    mv "$d/long.ckpt.pt.log.jsonl" "$d/ambient_finetuned_long.pt.log.jsonl"
    mv "$d/long.ckpt.pt" "$d/ambient_finetuned_long.pt"
  fi
  models=(foundation ambient_finetuned)
  [ -f "$d/ambient_finetuned_long.pt" ] && models+=(ambient_finetuned_long)
  for m in "${models[@]}"; do
    model=$d/$m.pt; [ "$m" = foundation ] && model=$f
    for set in heldout val2; do
      dir=$T/heldout; [ "$set" = val2 ] && dir=$O/val2
      for R in 4 8; do
        "$A" recon "$dir/r$R.h5" --method posterior --model "$model" -o "$d/${m}_${set}_r$R.nii.gz" \
          --reference "$dir/r${R}_ref.nii.gz" --metrics "$d/${m}_${set}_r$R.json" > "$d/last.log" 2>&1 \
          || { cat "$d/last.log" >&2; exit 1; }
        rows+=("| $label | $m | $set | $R | $(printf %.2f "$(metric "$d/${m}_${set}_r$R.json" psnr)") | $(printf %.4f "$(metric "$d/${m}_${set}_r$R.json" ssim)") |")
        echo "${rows[-1]}" >&2
      done
    done
  done
done
printf "%s\n" "${rows[@]}" | tee "$O/compare.md"
