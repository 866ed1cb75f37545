#!/usr/bin/env bash
# Which BLAS LibTorch gets, and what it costs: the fp32 training step (bench_train) and a posterior reconstruction
# of one simulated 128x128 slice with the shipped model (8 samples x 8 steps), once with each libblas.so.3 that
# Debian has installed (the reference BLAS of libblas3, OpenBLAS of libopenblas0-pthread), chosen per run with
# LD_LIBRARY_PATH so the machine's default is left alone. Prints seconds and the ratios against the reference BLAS.
#   bench/blas_compare.sh          env: OUT=out/blas_compare STEPS=4 (training steps timed)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
O=${OUT:-out/blas_compare}
L=/usr/lib/$(gcc -print-multiarch)
mkdir -p "$O"
[ -x "$A" ] && [ -x build/bench/bench_train ] || { echo "blas_compare: build first (scripts/setup.sh)" >&2; exit 1; }
"$A" simulate --orientation axial --slices 70 --matrix 128 --accel 4 --center-fraction 0.08 --seed 204 \
  -o "$O/slice.h5" -r "$O/slice_ref.nii.gz" > /dev/null
echo "default libblas.so.3: $(readlink -f "$L/libblas.so.3")"
ref_train="" ref_recon=""
for name in blas openblas-pthread; do
  [ -f "$L/$name/libblas.so.3" ] || { echo "$name: not installed, skipped"; continue; }
  train=$(LD_LIBRARY_PATH=$L/$name build/bench/bench_train --precision fp32 --steps "${STEPS:-4}" \
          | sed -n 's/.*: \([0-9.]*\) s\/step.*/\1/p')
  t0=$(date +%s.%N)
  LD_LIBRARY_PATH=$L/$name "$A" recon "$O/slice.h5" --method posterior --model data/models/ambient_ch2_r4.pt \
    --samples 8 --precision fp32 -o "$O/recon_$name.nii.gz" --reference "$O/slice_ref.nii.gz" \
    --metrics "$O/recon_$name.json" > "$O/recon_$name.log" 2>&1 || { cat "$O/recon_$name.log" >&2; exit 1; }
  recon=$(echo "$(date +%s.%N) - $t0" | bc -l)
  psnr=$(sed -n 's/.*"psnr": \([0-9.]*\).*/\1/p' "$O/recon_$name.json" | head -1)
  [ -z "$ref_train" ] && ref_train=$train ref_recon=$recon
  printf "%-18s training step (fp32, batch 4) %7.2f s (x%.2f)   recon 8x8, one slice %7.2f s (x%.2f, PSNR %.2f dB)\n" \
    "$name" "$train" "$(echo "$ref_train / $train" | bc -l)" "$recon" "$(echo "$ref_recon / $recon" | bc -l)" "$psnr"
done
