#!/usr/bin/env bash
# Issue 16, controlled experiment: does the block ambient objective (Daras et al.'s ~90% of the pixels erased by
# boxes) learn to inpaint, with the standard EDM preconditioning and with the masked one (edm.hpp, Precond)?
# Everything but the preconditioning is equal: data, foundation, steps, seed, masks. Each model is then scored by
# bench_inpaint on held-out clean slices (NMSE where Ã hid the pixel, one denoiser call per σ, next to a smoothing
# fill), and draws unconditional samples with a fixed Ã as in training.
# Env: FOUNDATION=data/models/foundation_gpu.pt STEPS=600 BATCH=4 OUT=out/block PRECONDS="standard masked"
#      SAMPLES=16 SAMPLER_STEPS=32
# Training data: clean (fully sampled) ch2 slices in all three orientations, every 2nd/3rd slice of the middle,
# none of the held-out axial slices 70, 86, 102 (the evaluation set) nor their neighbours.
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
B=$PWD/build/bench/bench_inpaint
FOUNDATION=${FOUNDATION:-data/models/foundation_gpu.pt}
STEPS=${STEPS:-600}
BATCH=${BATCH:-4}
O=${OUT:-out/block}
PRECONDS=${PRECONDS:-standard masked}
SAMPLES=${SAMPLES:-16}
SSTEPS=${SAMPLER_STEPS:-32}
CH2=/usr/share/mricron/templates/ch2.nii.gz
BLOCKS=(--blocks 70 --block-size 16,40)
EXTRA=4
[ -x "$A" ] && [ -x "$B" ] || { echo "block_experiment: build first (scripts/setup.sh)" >&2; exit 1; }
[ -f "$CH2" ] || { echo "block_experiment: $CH2 not found (apt-get install mricron-data)" >&2; exit 1; }
mkdir -p "$O/train"

near_heldout() { local s=$1; for h in 70 86 102; do [ $((s - h)) -ge -1 ] && [ $((s - h)) -le 1 ] && return 0; done; return 1; }
simulate_clean() {  # orientation, first, last, stride: fully sampled 8-coil scans, 8 slices per file
  local o=$1 picks=() k
  for s in $(seq "$2" "$4" "$3"); do
    [ "$o" = axial ] && near_heldout "$s" && continue
    picks+=("$s")
  done
  for ((k = 0; k < ${#picks[@]}; k += 8)); do
    [ -f "$O/train/${o}_$k.h5" ] && continue
    "$A" simulate -i "$CH2" --orientation "$o" --slices "$(IFS=,; echo "${picks[*]:k:8}")" --matrix 128 --mask full \
      --seed $((300 + k)) -o "$O/train/${o}_$k.h5" > /dev/null
  done
}
simulate_clean axial 36 144 2
simulate_clean coronal 45 180 3
simulate_clean sagittal 36 145 3
[ -f "$O/heldout.h5" ] || "$A" simulate -i "$CH2" --orientation axial --slices 70,86,102 --matrix 128 --mask full \
  --seed 201 -o "$O/heldout.h5" > /dev/null
n_train=0
for f in "$O"/train/*.h5; do
  n_train=$((n_train + $("$A" info "$f" --json | sed -n 's/.*"slices": \([0-9]*\).*/\1/p' | head -1)))
done
echo "block experiment: $n_train clean training slices in $(ls "$O/train" | wc -l) files; held out: ch2 axial 70, 86, 102"

models=()
for p in $PRECONDS; do
  if [ ! -f "$O/block_$p.pt" ]; then
    echo "training block_$p ($STEPS steps, batch $BATCH) ..."
    "$A" finetune --data "$O/train" --val "$O/heldout.h5" --init "$FOUNDATION" --corruption block "${BLOCKS[@]}" \
      --extra-blocks "$EXTRA" --precond "$p" --steps "$STEPS" --batch "$BATCH" --checkpoint-every 200 \
      --val-every 200 --out "$O/block_$p.pt" > "$O/block_$p.train.log" 2>&1 \
      || { tail -5 "$O/block_$p.train.log" >&2; exit 1; }
  fi
  models+=(--model "$p=$O/block_$p.pt")
done
"$B" --data "$O/heldout.h5" "${BLOCKS[@]}" --extra-blocks "$EXTRA" --sigmas 0.01,0.05,0.2,1 --trials 4 \
  "${models[@]}" --png "$O/inpaint.png" --csv "$O/inpaint.csv" | tee "$O/inpaint.md"
for p in $PRECONDS; do
  "$A" sample --model "$O/block_$p.pt" -n "$SAMPLES" --size 128 --steps "$SSTEPS" --further-blocks $((70 + EXTRA)) \
    --block-size 16,40 --seed 3 -o "$O/samples_$p.png" > /dev/null
  "$A" sample --model "$O/block_$p.pt" -n "$SAMPLES" --size 128 --steps "$SSTEPS" --further-blocks 30 \
    --block-size 16,40 --seed 3 -o "$O/samples_${p}_30.png" > /dev/null
done
echo "wrote $O/inpaint.md, $O/inpaint.png and $O/samples_*.png"
