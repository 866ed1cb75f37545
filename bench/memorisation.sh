#!/usr/bin/env bash
# Memorisation and sample quality (issue 16, docs/objectives.md "Measuring samples"): an ambient-trained, a
# clean-trained and a naive model, each fine-tuned from the same foundation on the SAME small set of target-train
# slices for the same steps; SAMPLES unconditional samples of each; `ambient eval --samples` against the clean
# images of those slices (nearest training image in pixels and in the foundation's features, fractions above 0.9
# and 0.95) and against real slices of held-out subjects (kernel and Fréchet distances), with the closest pairs
# drawn. The ambient model sees the corrupted scans only; the clean model their fully sampled versions; the naive
# one their zero-filled images; the block model (Daras et al.'s boxes) sees the clean slices through a fixed box mask
# A per slice (BLOCKS boxes of BLOCK_SIZE, ~89% of the pixels erased), as if they had been measured that way, and
# draws its samples through box masks too, with each of BLOCK_VIEWS (sample --views: 1 is the fixed-mask sampler).
#   bench/memorisation.sh
#   env: DATASET=out/dataset64 (CLEAN_TRAIN=1 TRAIN_MATRIX=$MATRIX scripts/make_dataset.sh, made if missing)
#        MATRIX=64  STEPS=2000  BATCH=4  SAMPLES=64  SAMPLER_STEPS=32  SEED=1
#        FOUNDATION=data/models/foundation_gpu.pt (the feature network too)  OUT=out/memorisation
#        MODELS="ambient clean naive"   (and block; a model whose OUT/NAME.pt exists is not retrained; training resumes)
#        BLOCKS=70 BLOCK_SIZE=8,20 EXTRA_BLOCKS=4 BLOCK_VIEWS="1 4"   (the block model, at 64²)
#        QUALITY_REF="D/target_test/*_MATRIX/r4_ref.nii.gz"   real images for KID / FD (a glob; the slices in between
#        training slices of the same volumes, e.g. another data set's target_train_ref, are the training distribution)
#        MANIFOLD_EVERY=4  MANIFOLD_K=5   precision / recall / coverage against every MANIFOLD_EVERY-th reference image
#        (consecutive slices are near-copies, which would shrink the k-nearest-neighbour balls to nothing)
# Output: OUT/memorisation.md (a row per model) and OUT/memorisation.csv, OUT/NAME.eval.json, OUT/NAME_pairs.png
# (the 8 closest sample / training pairs), OUT/NAME_samples.png (the samples).
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
MATRIX=${MATRIX:-64}
D=${DATASET:-out/dataset$MATRIX}
O=${OUT:-out/memorisation}
STEPS=${STEPS:-2000} BATCH=${BATCH:-4} SAMPLES=${SAMPLES:-64} SAMPLER_STEPS=${SAMPLER_STEPS:-32} SEED=${SEED:-1}
FOUNDATION=${FOUNDATION:-data/models/foundation_gpu.pt}
MODELS=${MODELS:-ambient clean naive}
MANIFOLD_EVERY=${MANIFOLD_EVERY:-4} MANIFOLD_K=${MANIFOLD_K:-5}
BLOCKS=${BLOCKS:-70} BLOCK_SIZE=${BLOCK_SIZE:-8,20} EXTRA_BLOCKS=${EXTRA_BLOCKS:-4} BLOCK_VIEWS=${BLOCK_VIEWS:-1 4}
[ -x "$A" ] || { echo "memorisation: $A is missing: build first (scripts/setup.sh)" >&2; exit 1; }
[ -f "$FOUNDATION" ] || { echo "memorisation: foundation $FOUNDATION not found" >&2; exit 1; }
if [ ! -d "$D/target_train_ref" ]; then
  echo "making the data set in $D (CLEAN_TRAIN=1 TRAIN_MATRIX=$MATRIX MATRICES=$MATRIX)..."
  CLEAN_TRAIN=1 TRAIN_MATRIX=$MATRIX MATRICES=$MATRIX RS=4 scripts/make_dataset.sh "$D" > /dev/null
fi
mkdir -p "$O"
refs=("$D"/target_train_ref/*.nii.gz)
# shellcheck disable=SC2206  # QUALITY_REF is a glob
quality=(${QUALITY_REF:-$D/target_test/*_$MATRIX/r4_ref.nii.gz})
[ -e "${refs[0]}" ] && [ -e "${quality[0]}" ] || { echo "memorisation: $D lacks target_train_ref or target-test sets at $MATRIX" >&2; exit 1; }
common=(--init "$FOUNDATION" --steps "$STEPS" --batch "$BATCH" --seed "$SEED" --checkpoint-every 250)
for m in $MODELS; do
  [ -f "$O/$m.pt" ] && continue
  resume=(); [ -f "$O/$m.ckpt.pt" ] && resume=(--resume)
  case $m in
    ambient) cmd=(finetune --data "$D/target_train" --corruption fourier --further-accel 5);;
    clean) cmd=(pretrain --data "$D/target_train_clean");;
    naive) cmd=(finetune --data "$D/target_train" --objective naive);;
    block) cmd=(finetune --data "$D/target_train_clean" --corruption block --blocks "$BLOCKS" --block-size "$BLOCK_SIZE"
                --extra-blocks "$EXTRA_BLOCKS");;
    *) echo "memorisation: unknown model $m (ambient, clean, naive, block)" >&2; exit 2;;
  esac
  echo "training $m: ambient ${cmd[*]} ${common[*]}"
  "$A" "${cmd[@]}" "${common[@]}" "${resume[@]}" --out "$O/$m.ckpt.pt" > "$O/$m.train.log" 2>&1 \
    || { tail -5 "$O/$m.train.log" >&2; exit 1; }
  "$A" export "$O/$m.ckpt.pt" -o "$O/$m.pt" > /dev/null
done
csv=$O/memorisation.csv
echo "model,steps,ncc_median,ncc_max,ncc_above_0.9,ncc_above_0.95,feature_distance_median,feature_distance_min,feature_distance_below_1,kid,fd,training_kid,training_fd,training_ncc_median,feature_precision,feature_recall,feature_coverage,pixel_precision,pixel_recall,pixel_coverage,real_feature_precision,real_feature_recall,real_feature_coverage" > "$csv"
num() { sed -n "s/.*\"$2\": \([-0-9.eE+]*\).*/\1/p" "$1" | head -1; }
sub() { sed -n "s/.*\"$2\": {[^}]*\"$3\": \([-0-9.eE+]*\).*/\1/p" "$1" | head -1; }
runs=()  # NAME:MODEL:SAMPLER OPTIONS (space-separated)
for m in $MODELS; do
  case $m in
    ambient) runs+=("ambient:ambient:--further-accel 5");;  # the ambient sampler: the network sees Ã x, as in training
    block) for v in $BLOCK_VIEWS; do
             runs+=("block_v$v:block:--further-blocks $((BLOCKS + EXTRA_BLOCKS)) --block-size $BLOCK_SIZE --views $v")
           done;;
    *) runs+=("$m:$m:");;
  esac
done
for run in "${runs[@]}"; do
  IFS=: read -r name m opts <<< "$run"
  further=(); [ -n "$opts" ] && read -r -a further <<< "$opts"
  [ -f "$O/${name}_samples.nii.gz" ] ||
    "$A" sample --model "$O/$m.pt" "${further[@]}" -n "$SAMPLES" --size "$MATRIX" --steps "$SAMPLER_STEPS" --seed "$SEED" \
      -o "$O/${name}_samples.png" --nifti "$O/${name}_samples.nii.gz" > "$O/$name.sample.log" 2>&1 \
      || { tail -3 "$O/$name.sample.log" >&2; exit 1; }
  "$A" eval --samples "$O/${name}_samples.nii.gz" --training "${refs[@]}" --features "$FOUNDATION" \
    --quality-reference "${quality[@]}" --manifold-every "$MANIFOLD_EVERY" --manifold-k "$MANIFOLD_K" --pairs-png "$O/${name}_pairs.png" --json "$O/$name.eval.json" > "$O/$name.eval.log" 2>&1 \
    || { tail -3 "$O/$name.eval.log" >&2; exit 1; }
  j=$O/$name.eval.json
  echo "$name,$STEPS,$(sub "$j" nearest_ncc median),$(sub "$j" nearest_ncc max),$(num "$j" ncc_above_0.9),$(num "$j" ncc_above_0.95),$(sub "$j" nearest_feature_distance median),$(sub "$j" nearest_feature_distance min),$(num "$j" feature_distance_below_1),$(num "$j" kid),$(num "$j" fd),$(num "$j" training_kid),$(num "$j" training_fd),$(sub "$j" nearest_training_ncc median),$(num "$j" feature_precision),$(num "$j" feature_recall),$(num "$j" feature_coverage),$(num "$j" pixel_precision),$(num "$j" pixel_recall),$(num "$j" pixel_coverage),$(num "$j" real_feature_precision),$(num "$j" real_feature_recall),$(num "$j" real_feature_coverage)" >> "$csv"
done
{
  echo "$SAMPLES samples per model at ${MATRIX}², $SAMPLER_STEPS steps; $(ls "${refs[@]}" | wc -l) training volumes; models fine-tuned from $(basename "$FOUNDATION") for $STEPS steps of $BATCH."
  echo
  echo "Feature distance: to the nearest training image, in units of the training images' median distance to their nearest other one (below 1: nearer than real neighbouring slices are). The training images' own median NCC with their nearest other one: $(tail -n +2 "$csv" | head -1 | cut -d, -f14)."
  echo
  echo "Precision / recall / coverage: k = $MANIFOLD_K nearest-neighbour balls of every ${MANIFOLD_EVERY}th quality-reference image (its even ones; real images in the samples' place, its odd ones, score $(tail -n +2 "$csv" | head -1 | cut -d, -f21-23 | tr , /) in features)."
  echo
  echo "| model | NCC median / max | NCC > 0.9 | NCC > 0.95 | feature distance median / min | feature distance < 1 | KID | FD | training images' KID / FD | precision / recall / coverage (features) | (pixels) |"
  echo "|---|---|---|---|---|---|---|---|---|---|---|"
  tail -n +2 "$csv" | awk -F, '{ printf "| %s | %.3f / %.3f | %.3f | %.3f | %.2f / %.2f | %.3f | %.4f | %.2f | %.4f / %.2f | %.2f / %.2f / %.2f | %.2f / %.2f / %.2f |\n", $1, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $15, $16, $17, $18, $19, $20 }'
} > "$O/memorisation.md"
cat "$O/memorisation.md"
