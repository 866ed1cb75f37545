#!/usr/bin/env bash
# Generalisation (issue 14, docs/results.md "Generalisation"): every target-test set of scripts/make_dataset.sh (held-out
# subjects, orientations and contrasts; none of their volumes is in any training set) at each matrix, R = 4 and 8:
# PSNR / SSIM / NMSE (fastMRI definitions, `ambient eval`) and seconds per slice of zero-filled, CG-SENSE, BART l1 and
# l2 at their best λ (bench/baselines.sh), and each model with recon's defaults for it, all in this one run.
#   bench/generalise.sh data/models/foundation_gpu.pt:foundation data/models/ambient_ch2_r4.pt:ambient [NAIVE.pt:naive]
#   (MODEL.pt:LABEL:OPTIONS adds recon options for that row, e.g. m.pt:m-fa3:--further-accel=3)
#   env: DATASET=out/dataset (made if missing)  OUT=out/generalise  MATRICES="128 192 128x160"  RS="4 8"  SETS="..."
#        (SETS: names under DATASET/target_test, default all of the given matrices)
#        FIGURES=DIR: also DIR/generalise_rR.png per R (bench/generalise_figure.py, Debian's python3-matplotlib)
#        BASELINES=0: models only (comparing models with each other; the baselines are deterministic, so an earlier
#        run's rows still hold for the same data set)
# Output: OUT/generalise.md (a row per set, R and method, then bench/generalise_summary.sh: the mean over sets per
# matrix, R and method, and each model's PSNR / SSIM margin over BART l1), OUT/generalise.csv. Recon runs one at a time: two LibTorch jobs on 2 cores
# slow each other down far more than 2x.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
D=${DATASET:-out/dataset}
O=${OUT:-out/generalise}
MATRICES=${MATRICES:-128 192 128x160}
RS=${RS:-4 8}
[ $# -ge 1 ] || { echo "usage: $0 MODEL.pt:LABEL..." >&2; exit 2; }
for spec in "$@"; do [ -f "${spec%%:*}" ] || { echo "generalise: model ${spec%%:*} not found" >&2; exit 1; }; done
[ -d "$D/target_test" ] || MATRICES="$MATRICES" RS="$RS" scripts/make_dataset.sh "$D" > /dev/null
mkdir -p "$O"
sets=()
if [ -n "${SETS:-}" ]; then
  for s in $SETS; do sets+=("$s"); done
else
  for N in $MATRICES; do for d in "$D"/target_test/*_"$N"; do [ -d "$d" ] && sets+=("$(basename "$d")"); done; done
fi
[ ${#sets[@]} -ge 1 ] || { echo "generalise: no target-test sets for matrices $MATRICES in $D (run scripts/make_dataset.sh)" >&2; exit 1; }
num() { sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$1" | head -1; }
csv=$O/generalise.csv
echo "set,matrix,R,method,psnr,ssim,nmse,s_per_slice" > "$csv"
rows=("| set | R | method | PSNR (dB) | SSIM | NMSE | s/slice |" "|---|---|---|---|---|---|---|")
rm -f "$O/baselines/baselines.csv"
for set in "${sets[@]}"; do
  dir=$D/target_test/$set N=${set##*_}
  [ -f "$dir/r4.h5" ] || { echo "generalise: $dir holds no scans" >&2; exit 1; }
  # Baselines: rows "| METHOD | SET | R | PSNR | SSIM | NMSE | s |"
  [ "${BASELINES:-1}" = 0 ] || while IFS='|' read -r _ method _ R psnr ssim nmse t _; do
    method=$(echo "$method" | sed 's/^ *//; s/ *$//') R=$(echo "$R" | tr -d ' ')
    rows+=("| $set | $R | $method |$psnr|$ssim|$nmse|$t|")
    echo "$set,$N,$R,$(echo "$method" | sed 's/ (best.*//'),$(echo $psnr),$(echo $ssim),$(echo $nmse),$(echo $t)" >> "$csv"
    echo "${rows[-1]}" >&2
  done < <(OUT=$O/baselines RS="$RS" METHODS="zf cg l1 l2" EXTRA=1 bench/baselines.sh "$set=$dir")
  for spec in "$@"; do  # MODEL.pt:LABEL[:RECON OPTIONS], e.g. m.pt:m-fa3:--further-accel=3
    model=${spec%%:*} rest=${spec#*:}
    label=${rest%%:*} extra=()
    [[ $rest == *:* ]] && read -r -a extra <<< "${rest#*:}"
    for R in $RS; do
      base=$O/${label}_${set}_r$R
      n=$("$A" info "$dir/r$R.h5" --json | sed -n 's/.*"slices": \([0-9]*\).*/\1/p' | head -1)
      t0=$(date +%s.%N)
      "$A" recon "$dir/r$R.h5" --method posterior --model "$model" -o "$base.nii.gz" --reference "$dir/r${R}_ref.nii.gz" \
        --metrics "$base.json" "${extra[@]}" > "$base.log" 2>&1 || { tail -3 "$base.log" >&2; exit 1; }
      t=$(echo "($(date +%s.%N) - $t0) / $n" | bc -l)
      rows+=("| $set | $R | $label | $(printf %.2f "$(num "$base.json" psnr)") | $(printf %.4f "$(num "$base.json" ssim)") | $(printf %.4f "$(num "$base.json" nmse)") | $(printf %.2f "$t") |")
      echo "$set,$N,$R,$label,$(num "$base.json" psnr),$(num "$base.json" ssim),$(num "$base.json" nmse),$t" >> "$csv"
      echo "${rows[-1]}" >&2
    done
  done
done
# Means over the sets of each matrix and each model's margin over BART l1 (bench/generalise_summary.sh).
labels=(); for spec in "$@"; do rest=${spec#*:}; labels+=("${rest%%:*}"); done
{
  printf "%s\n" "${rows[@]}"
  echo
  bench/generalise_summary.sh "$csv" -- "${labels[@]}"
} | tee "$O/generalise.md"
if [ -n "${FIGURES:-}" ]; then
  mkdir -p "$FIGURES"
  for R in $RS; do /usr/bin/python3 bench/generalise_figure.py "$O" "$D" "$R" "$FIGURES/generalise_r$R.png" "${labels[@]}"; done
fi
