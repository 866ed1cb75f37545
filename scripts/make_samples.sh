#!/usr/bin/env bash
# Regenerates data/samples/ from Debian's mricron-data (ch2.nii.gz, Colin27 T1, BSD-3) with `ambient simulate`.
# The files are committed; this script documents exactly how they were made.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBIENT=build/apps/ambient
# 6 axial slices, 128x128, 8 Biot-Savart coils, SNR 30, fastMRI random mask R=4 (8% centre), seed 1.
$AMBIENT simulate --orientation axial --count 6 --matrix 128 --coils 8 --snr 30 --mask random --accel 4 \
  --center-fraction 0.08 --seed 1 -o data/samples/ch2_axial_r4.h5 -r data/samples/ch2_axial_ref.nii.gz \
  --png data/samples/ch2_axial_r4_preview.png
