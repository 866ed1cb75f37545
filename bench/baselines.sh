#!/usr/bin/env bash
# The classical baselines on held-out scans, as markdown table rows: CG-SENSE, and BART pics l1-wavelet at its best
# λ (swept over LAMBDAS, ESPIRiT maps per slice, as bench/results.sh runs it; skipped when bart is not installed).
# Each SET is a LABEL=DIR whose DIR holds rR.h5 and rR_ref.nii.gz for every R in RS.
#   bench/baselines.sh heldout=out/results/target/heldout val2=out/foundations/val2
#   env: OUT=out/baselines RS="4 8" LAMBDAS="0.001 0.003 0.01 0.03 0.1" COLUMNS_BEFORE=N (cells of "-" after the method)
# Rows are "| CG-SENSE | SET | R | PSNR | SSIM |"; COLUMNS_BEFORE pads them to a wider table (a posterior sweep's).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
O=${OUT:-out/baselines}
RS=${RS:-4 8}
LAMBDAS=${LAMBDAS:-0.001 0.003 0.01 0.03 0.1}
pad=$(for _ in $(seq 1 "${COLUMNS_BEFORE:-0}"); do printf " - |"; done)
[ $# -ge 1 ] || { echo "usage: $0 LABEL=DIR..." >&2; exit 2; }
mkdir -p "$O"
metric() { sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$1" | head -1; }
for spec in "$@"; do
  set=${spec%%=*} dir=${spec#*=}
  for R in $RS; do
    [ -f "$dir/r$R.h5" ] && [ -f "$dir/r${R}_ref.nii.gz" ] || { echo "baselines: $dir/r$R.h5 or its reference is missing" >&2; exit 1; }
    "$A" recon "$dir/r$R.h5" --method cg-sense -o "$O/cg_${set}_r$R.nii.gz" --reference "$dir/r${R}_ref.nii.gz" \
      --metrics "$O/cg_${set}_r$R.json" > /dev/null 2>&1
    echo "| CG-SENSE |$pad $set | $R | $(printf %.2f "$(metric "$O/cg_${set}_r$R.json" psnr)") | $(printf %.4f "$(metric "$O/cg_${set}_r$R.json" ssim)") |"
    command -v bart > /dev/null || continue
    n=$("$A" info "$dir/r$R.h5" --json | sed -n 's/.*"slices": \([0-9]*\).*/\1/p' | head -1)
    "$A" convert "$dir/r$R.h5" --prewhiten -o "$O/k.cfl" > /dev/null
    best=-1000 best_lam="" best_ssim=0
    for lam in $LAMBDAS; do
      parts=()
      for s in $(seq 0 $((n - 1))); do
        bart slice 13 "$s" "$O/k" "$O/ks" > /dev/null; bart ecalib -m1 -r 24 "$O/ks" "$O/ms" > /dev/null 2>&1
        bart pics -S -R W:7:0:$lam -i 100 "$O/ks" "$O/ms" "$O/x$s" > /dev/null 2>&1; parts+=("$O/x$s")
      done
      bart join 13 "${parts[@]}" "$O/bart" > /dev/null
      "$A" eval --reference "$dir/r${R}_ref.nii.gz" "$O/bart.cfl" --json "$O/bart.json" > /dev/null
      p=$(metric "$O/bart.json" psnr)
      if [ "$(echo "$p > $best" | bc -l)" = 1 ]; then best=$p; best_lam=$lam; best_ssim=$(metric "$O/bart.json" ssim); fi
    done
    echo "| BART l1-wavelet (best λ = $best_lam) |$pad $set | $R | $(printf %.2f "$best") | $(printf %.4f "$best_ssim") |"
  done
done
