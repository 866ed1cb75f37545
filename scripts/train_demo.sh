#!/usr/bin/env bash
# A small end-to-end training run from the command line (a few minutes on 2 cores): pretrain a small network on
# clean ch2better coronal slices, simulate corrupted R=4 axial ch2 scans (training and held-out), and fine-tune the
# foundation on the corrupted scans only with the ambient Fourier objective. Outputs in out/train_demo/.
set -euo pipefail
cd "$(dirname "$0")/.."
A=build/apps/ambient
T=/usr/share/mricron/templates
O=out/train_demo
mkdir -p $O
STEPS=${STEPS:-300}
$A pretrain --data $T/ch2better.nii.gz --orientation coronal --matrix 64 --base-channels 16 --steps "$STEPS" \
  --batch 8 --lr 1e-3 --warmup 20 --checkpoint-every 100 --val $T/inia19-t1-brain.nii.gz --val-every 100 \
  --out $O/foundation.pt
$A simulate --orientation axial --slices 50,60,70,80,90,100,110,120 --matrix 64 --center-fraction 0.16 --accel 4 \
  --seed 21 -o $O/train_r4.h5 > /dev/null
$A simulate --orientation axial --slices 65,95 --matrix 64 --center-fraction 0.16 --accel 4 --seed 22 \
  -o $O/heldout_r4.h5 -r $O/heldout_ref.nii.gz > /dev/null
$A finetune --data $O/train_r4.h5 --val $O/heldout_r4.h5 --init $O/foundation.pt --corruption fourier \
  --further-accel 5 --steps "$STEPS" --batch 8 --lr 5e-4 --warmup 20 --checkpoint-every 100 --val-every 100 \
  --out $O/finetuned.pt
