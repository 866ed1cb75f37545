#!/usr/bin/env bash
# Quality versus time, in one run: held-out ch2 axial scans simulated at R = 4 and R = 8, reconstructed by
# zero-filled, CG-SENSE, BART pics l1-wavelet (λ swept, per slice, ESPIRiT maps from bart ecalib) and ambient's
# posterior samplers at several step counts. Prints PSNR / SSIM / NMSE against the reference and seconds per slice.
# Usage: bench/recon_curve.sh MODEL.pt [MATRIX] [SLICES]     (MODEL trained at MATRIX; default 128, "60,80,100")
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=${1:?usage: bench/recon_curve.sh MODEL.pt [MATRIX] [SLICES]}
N=${2:-128}
SLICES=${3:-60,80,100}
A=$PWD/build/apps/ambient
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
nslices=$(echo "$SLICES" | tr ',' '\n' | wc -l)
printf "%-34s %3s %8s %7s %8s %9s\n" method R PSNR SSIM NMSE s/slice
row() {  # row NAME R RECON SECONDS
  local line
  line=$("$A" eval --reference "$W/ref$2.nii.gz" "$3" | tail -1)
  printf "%-34s %3s %8s %7s %8s %9.2f\n" "$1" "$2" "$(echo "$line" | sed 's/.*PSNR \([0-9.-]*\).*/\1/')" \
    "$(echo "$line" | sed 's/.*SSIM \([0-9.-]*\).*/\1/')" "$(echo "$line" | sed 's/.*NMSE \([0-9.]*\).*/\1/')" \
    "$(echo "$4 / $nslices" | bc -l)"
}
timed() {  # prints seconds; on failure shows the log and stops
  local t0; t0=$(date +%s.%N)
  "$@" > "$W/log" 2>&1 || { cat "$W/log" >&2; exit 1; }
  echo "$(date +%s.%N) - $t0" | bc -l
}
for R in 4 8; do
  cf=$([ "$R" = 4 ] && echo 0.08 || echo 0.04)
  [ "$N" -lt 128 ] && cf=$([ "$R" = 4 ] && echo 0.16 || echo 0.12)  # ESPIRiT needs >= 7 ACS lines
  "$A" simulate --orientation axial --slices "$SLICES" --matrix "$N" --accel "$R" --center-fraction "$cf" \
    --seed $((40 + R)) -o "$W/scan$R.h5" -r "$W/ref$R.nii.gz" > /dev/null
  t=$(timed "$A" recon "$W/scan$R.h5" --method zero-filled -o "$W/zf$R.nii.gz"); row zero-filled "$R" "$W/zf$R.nii.gz" "$t"
  t=$(timed "$A" recon "$W/scan$R.h5" --method cg-sense -o "$W/cg$R.nii.gz"); row "cg-sense (λ 0.01)" "$R" "$W/cg$R.nii.gz" "$t"
  if command -v bart > /dev/null; then
    "$A" convert "$W/scan$R.h5" --prewhiten -o "$W/k$R.cfl" > /dev/null
    for lam in 0.001 0.003 0.01 0.03; do
      t0=$(date +%s.%N)
      parts=()
      for ((s = 0; s < nslices; s++)); do
        bart slice 13 $s "$W/k$R" "$W/ks" > /dev/null
        bart ecalib -m1 -r 24 "$W/ks" "$W/ms" > /dev/null 2>&1
        bart pics -S -R W:7:0:$lam -i 100 "$W/ks" "$W/ms" "$W/x$s" > /dev/null 2>&1
        parts+=("$W/x$s")
      done
      bart join 13 "${parts[@]}" "$W/bart$R" > /dev/null
      row "bart pics l1-wavelet λ $lam" "$R" "$W/bart$R.cfl" "$(echo "$(date +%s.%N) - $t0" | bc -l)"
    done
  fi
  for steps in 8 16 32; do
    t=$(timed "$A" recon "$W/scan$R.h5" --method posterior --model "$MODEL" --samples 2 --steps $steps -o "$W/p$R.nii.gz")
    row "ambient posterior, 2 samples, $steps steps" "$R" "$W/p$R.nii.gz" "$t"
  done
  t=$(timed "$A" recon "$W/scan$R.h5" --method dps --model "$MODEL" --samples 1 --steps 32 -o "$W/d$R.nii.gz")
  row "ambient dps, 1 sample, 32 steps" "$R" "$W/d$R.nii.gz" "$t"
done
