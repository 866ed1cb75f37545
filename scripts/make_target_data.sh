#!/usr/bin/env bash
# The target domain (docs/data.md): ch2 (Colin27 T1, 1 mm) axial slices, simulated as 8-coil scans.
# Training scans (corrupted only, R = 4) and held-out scans (R = 4 and R = 8, with fully sampled references) use
# disjoint slices. None of these slices (nor any axial ch2 slice) is in the foundation model's data.
# Usage: scripts/make_target_data.sh [OUT_DIR] [MATRIX]     (default out/target, 128)
set -euo pipefail
cd "$(dirname "$0")/.."
A=build/apps/ambient
O=${1:-out/target}
N=${2:-128}
CH2=/usr/share/mricron/templates/ch2.nii.gz
mkdir -p "$O/train" "$O/heldout"
cf4=0.08; cf8=0.08  # 10 ACS lines at 128: ESPIRiT maps from 8 lines are poor (CG-SENSE 14 dB at R = 8)
[ "$N" -lt 128 ] && cf4=0.16 && cf8=0.12  # ESPIRiT needs >= 7 ACS lines
# Training: axial slices 40..130 except the held-out ones, 6 slices per file, one R = 4 random mask per slice.
i=0
for start in 40 52 64 76 88 100 112 124; do
  slices=$(for s in $(seq "$start" 2 $((start + 11))); do case $s in 70|86|102) ;; *) printf "%s," "$s";; esac; done)
  $A simulate --orientation axial --slices "${slices%,}" --matrix "$N" --accel 4 --center-fraction $cf4 \
    --seed $((100 + i)) -o "$O/train/scan_$i.h5" > /dev/null
  i=$((i + 1))
done
# Held out: slices 70, 86, 102 (never in training), at R = 4 and R = 8.
for R in 4 8; do
  cf=$([ "$R" = 4 ] && echo $cf4 || echo $cf8)
  $A simulate --orientation axial --slices 70,86,102 --matrix "$N" --accel "$R" --center-fraction "$cf" \
    --seed $((200 + R)) -o "$O/heldout/r$R.h5" -r "$O/heldout/r${R}_ref.nii.gz" > /dev/null
done
# Clean references of the training slices: for the clean-trained upper bound and the memorisation measure only.
$A simulate --orientation axial --slices "$(seq -s, 40 2 135 | sed 's/,70,/,/; s/,86,/,/; s/,102,/,/')" \
  --matrix "$N" --mask full --seed 300 -o "$O/train_clean.h5" -r "$O/train_clean_ref.nii.gz" > /dev/null
echo "target data in $O: $(ls "$O/train" | wc -l) training scans, held-out r4/r8 with references"
