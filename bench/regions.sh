#!/usr/bin/env bash
# Where each method's error lies on the held-out sets (docs/results.md, "Where the error lies"): every
# reconstruction that earlier runs left in DIRS (bench/generalise.sh's OUT: LABEL_SET_rR.nii.gz; bench/baselines.sh's
# OUT: zf_/cg_SET_rR.nii.gz and bart_l1_/bart_l2_SET_rR.cfl) is scored by `ambient eval` against its set's reference,
# and the mean over sets per method and R of PSNR, the object's PSNR (reference above 10% of its maximum) and the
# background's share of the squared error is printed as a markdown table. Nothing is reconstructed here.
#   bench/regions.sh out/gen_zero out/gen_zero_amb out/bl_regions
#   env: DATASET=out/dataset  MATRICES="128"  RS="4 8"  OUT=out/regions (JSON per set, R and method; regions.csv)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
D=${DATASET:-out/dataset}
O=${OUT:-out/regions}
MATRICES=${MATRICES:-128}
RS=${RS:-4 8}
[ $# -ge 1 ] || { echo "usage: $0 DIR... (folders of earlier generalise.sh / baselines.sh runs)" >&2; exit 2; }
[ -x "$A" ] || { echo "regions: $A is missing: build first (scripts/setup.sh)" >&2; exit 1; }
mkdir -p "$O"
csv=$O/regions.csv
echo "set,R,method,psnr,ssim,object_psnr,background_error_share" > "$csv"
num() { sed -n "s/.*\"$2\": \([-0-9.eE+]*\).*/\1/p" "$1" | head -1; }
found=0
for N in $MATRICES; do
  for dir in "$D"/target_test/*_"$N"; do
    [ -d "$dir" ] || continue
    set=$(basename "$dir")
    for R in $RS; do
      ref=$dir/r${R}_ref.nii.gz
      [ -f "$ref" ] || { echo "regions: $ref is missing" >&2; exit 1; }
      for src in "$@"; do
        for f in "$src"/*_"${set}"_r"$R".nii.gz "$src"/bart_*_"${set}"_r"$R".cfl; do
          [ -f "$f" ] || continue
          name=$(basename "$f"); method=${name%_"${set}"_r"$R".*}
          j=$O/${method}_${set}_r$R.json
          "$A" eval --reference "$ref" "$f" --json "$j" > /dev/null
          echo "$set,$R,$method,$(num "$j" psnr),$(num "$j" ssim),$(num "$j" object_psnr)," \
            "$(num "$j" background_error_share)" | tr -d ' ' >> "$csv"
          found=$((found + 1))
        done
      done
    done
  done
done
[ "$found" -gt 0 ] || { echo "regions: no reconstructions of the sets of $D in $*" >&2; exit 1; }
echo "| R | method | sets | PSNR (dB) | SSIM | object PSNR (dB) | background's share of the squared error |"
echo "|---|---|---|---|---|---|---|"
tail -n +2 "$csv" | awk -F, '{ k = $2 "," $3; n[k]++; p[k] += $4; s[k] += $5; o[k] += $6; b[k] += $7 }
  END { for (k in n) { split(k, a, ",")
                       printf "| %s | %s | %d | %.2f | %.4f | %.2f | %.2f |\n", a[1], a[2], n[k], p[k] / n[k],
                              s[k] / n[k], o[k] / n[k], b[k] / n[k] } }' \
  | sort -t'|' -k2,2n -k5,5nr
