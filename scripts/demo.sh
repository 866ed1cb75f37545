#!/usr/bin/env bash
# The main job on the shipped sample scan: describe it, reconstruct it (zero-filled and CG-SENSE) to NIfTI with
# PNG previews and metrics against the shipped reference. Outputs go to out/.
set -euo pipefail
cd "$(dirname "$0")/.."
AMBIENT=build/apps/ambient
SCAN=data/samples/ch2_axial_r4.h5
REF=data/samples/ch2_axial_ref.nii.gz
mkdir -p out
$AMBIENT info "$SCAN"
$AMBIENT recon "$SCAN" --method zero-filled -o out/zero_filled.nii.gz --reference "$REF" --metrics out/zero_filled.json
$AMBIENT recon "$SCAN" --method cg-sense -o out/cg_sense.nii.gz --png out/png --reference "$REF" \
  --metrics out/cg_sense.json
echo "demo: outputs in out/ (NIfTI volumes, out/png/slice_*.png, metrics JSON)"
