#!/usr/bin/env bash
# The main job, on the shipped data, in a few minutes on 2 cores (outputs in out/demo/):
#  1. the sample scan (6 axial ch2 slices, 8 coils, R = 4; none of them in any training set): zero-filled and
#     CG-SENSE reconstructions with PNG previews and metrics against the shipped reference;
#  2. posterior-sampling reconstruction with the shipped ambient fine-tuned model (data/models/), with a
#     per-pixel standard deviation map;
#  3. ambient fine-tuning from the shipped foundation model on corrupted scans only (simulated R = 4 target scans,
#     scripts/make_target_data.sh), a short schedule, then a posterior reconstruction of the sample with it;
#  4. a table of the metrics.
# DEMO_STEPS (default 60) sets the fine-tuning schedule; docs/cli.md gives the longer one behind the shipped model.
# DEMO_SAMPLES sets how many posterior samples the ambient models average (default: recon's, 8 × 8 steps).
set -euo pipefail
cd "$(dirname "$0")/.."
A=build/apps/ambient
SCAN=data/samples/ch2_axial_r4.h5
REF=data/samples/ch2_axial_ref.nii.gz
FOUNDATION=data/models/foundation_gpu.pt
FINETUNED=data/models/ambient_ch2_r4.pt
O=out/demo
STEPS=${DEMO_STEPS:-60}
SAMPLING=(); [ -n "${DEMO_SAMPLES:-}" ] && SAMPLING=(--samples "$DEMO_SAMPLES")
mkdir -p "$O"
$A info "$SCAN"
echo "== classical reconstructions"
$A recon "$SCAN" --method zero-filled -o "$O/zero_filled.nii.gz" --reference "$REF" --metrics "$O/zero_filled.json"
$A recon "$SCAN" --method cg-sense -o "$O/cg_sense.nii.gz" --png "$O/png_cg_sense" --reference "$REF" \
  --metrics "$O/cg_sense.json"
if [ -f "$FINETUNED" ]; then
  echo "== posterior sampling with the shipped fine-tuned model ($FINETUNED)"
  $A recon "$SCAN" --method posterior --model "$FINETUNED" "${SAMPLING[@]}" -o "$O/posterior_shipped.nii.gz" \
    --std "$O/posterior_shipped_std.nii.gz" --png "$O/png_posterior_shipped" --reference "$REF" \
    --metrics "$O/posterior_shipped.json"
fi
if [ -f "$FOUNDATION" ] && [ "$STEPS" -gt 0 ]; then
  echo "== ambient fine-tuning from $FOUNDATION on corrupted scans only ($STEPS steps)"
  scripts/make_target_data.sh "$O/target" 128
  $A finetune --data "$O/target/train" --init "$FOUNDATION" --corruption fourier --further-accel 5 --steps "$STEPS" \
    --batch 4 --checkpoint-every 20 --out "$O/finetuned.pt"
  $A recon "$SCAN" --method posterior --model "$O/finetuned.pt" "${SAMPLING[@]}" -o "$O/posterior_demo.nii.gz" \
    --png "$O/png_posterior_demo" --reference "$REF" --metrics "$O/posterior_demo.json"
fi
echo "== metrics on the sample scan (R = 4) against its fully sampled reference"
printf "%-42s %9s %8s %8s\n" method "PSNR dB" SSIM NMSE
for m in zero_filled cg_sense posterior_shipped posterior_demo; do
  [ -f "$O/$m.json" ] || continue
  v() { sed -n "s/^  \"$1\": \([0-9.eE+-]*\).*/\1/p" "$O/$m.json"; }
  printf "%-42s %9.2f %8.4f %8.4f\n" "$m" "$(v psnr)" "$(v ssim)" "$(v nmse)"
done
echo "demo: outputs in $O/ (NIfTI volumes, PNG previews png_*/slice_*.png: zero-filled | recon | reference | 5x error [| 5x std])"
