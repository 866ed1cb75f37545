#!/usr/bin/env bash
# Pretrains the foundation model on the source domain (docs/data.md): the default 128x128 network on clean slices of
# ch2better (coronal, sagittal) and inia19 (axial, coronal, sagittal). Long: run it in the background.
#   scripts/pretrain_foundation.sh [STEPS] [OUT] [INIT]     (INIT: continue from an exported checkpoint)
# Resume an interrupted run with the same arguments plus RESUME=1.
set -euo pipefail
cd "$(dirname "$0")/.."
T=/usr/share/mricron/templates
STEPS=${1:-20000}
OUT=${2:-out/foundation/foundation.pt}
INIT=${3:-}
mkdir -p "$(dirname "$OUT")"
args=(--data "$T/ch2better.nii.gz@coronal" "$T/ch2better.nii.gz@sagittal" "$T/inia19-t1-brain.nii.gz@axial"
      "$T/inia19-t1-brain.nii.gz@coronal" "$T/inia19-t1-brain.nii.gz@sagittal"
      --matrix 128 --steps "$STEPS" --batch 8 --lr 5e-4 --warmup 200 --checkpoint-every 100 --seed 1 --out "$OUT")
[ -n "$INIT" ] && args+=(--init "$INIT")
[ "${RESUME:-0}" = 1 ] && args+=(--resume)
exec build/apps/ambient pretrain "${args[@]}"
