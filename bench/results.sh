#!/usr/bin/env bash
# Regenerates docs/results.md (issue 5): trains the variants on the target data (scripts/make_target_data.sh) and
# compares them on held-out slices at R = 4 and R = 8 with zero-filled, CG-SENSE and BART pics l1-wavelet (best λ),
# plus the memorisation measure. Everything runs in one go; sizes and schedules come from the environment:
#   FOUNDATION=data/models/foundation.pt MATRIX=128 STEPS=2000 SAMPLES=4 SAMPLER_STEPS=32 OUT=out/results
#   RESULTS_MD=docs/results.md (set to /dev/null for a smoke run) RESULTS_IMAGES=docs/images (figures)
#   LONG_STEPS=2400 (also carry the ambient fine-tune on to this many steps), MORE="16x8 32x8" (also reconstruct
#   with the longest-trained ambient model at these samples x steps), CLEAN_MORE="16x32" (the same for the
#   clean-trained upper reference)
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
FOUNDATION=${FOUNDATION:?set FOUNDATION to a pretrained checkpoint (e.g. data/models/foundation.pt)}
N=${MATRIX:-128}
STEPS=${STEPS:-2000}
SAMPLES=${SAMPLES:-4}
SSTEPS=${SAMPLER_STEPS:-32}
O=${OUT:-out/results}
MD=${RESULTS_MD:-docs/results.md}
IMAGES=${RESULTS_IMAGES:-docs/images}
BATCH=${BATCH:-8}
mkdir -p "$O"
scripts/make_target_data.sh "$O/target" "$N" > /dev/null
T=$O/target
TRAIN=(--data "$T/train" --val "$T/heldout/r4.h5" --steps "$STEPS" --batch "$BATCH" --checkpoint-every 500 --val-every 500)
train() {  # skips models already trained; shows the log and stops on failure
  local name=$1; shift
  [ -f "$O/$name.pt" ] && return 0
  "$A" "$@" --out "$O/$name.pt" > "$O/$name.train.log" 2>&1 || { tail -5 "$O/$name.train.log" >&2; exit 1; }
}
train ambient_finetuned finetune "${TRAIN[@]}" --init "$FOUNDATION" --corruption fourier --further-accel 5
train ambient_scratch finetune "${TRAIN[@]}" --corruption fourier --further-accel 5
train naive finetune "${TRAIN[@]}" --objective naive
# The paper's block experiment: image-domain boxes erase ~90% of each clean training slice (A); Ã erases more.
BLOCKS=(--blocks 70 --block-size 16,40)  # boxes anywhere (clipped at the edge): about 90% erased
train block_ambient finetune --data "$T/train_clean.h5" --steps "$STEPS" --batch "$BATCH" --checkpoint-every 500 \
  --init "$FOUNDATION" --corruption block "${BLOCKS[@]}" --extra-blocks 4
# Optional: the same ambient fine-tune carried on to LONG_STEPS, to see what more steps buy.
if [ -n "${LONG_STEPS:-}" ] && [ ! -f "$O/ambient_finetuned_long.pt" ]; then
  if [ ! -f "$O/ambient_finetuned_long.ckpt.pt" ]; then  # resume a copy, with its log so far
    cp "$O/ambient_finetuned.pt" "$O/ambient_finetuned_long.ckpt.pt"
    cp "$O/ambient_finetuned.pt.log.jsonl" "$O/ambient_finetuned_long.ckpt.pt.log.jsonl"
  fi
  "$A" finetune --data "$T/train" --val "$T/heldout/r4.h5" --steps "$LONG_STEPS" --batch "$BATCH" \
    --checkpoint-every 500 --val-every 500 --corruption fourier --further-accel 5 --resume \
    --out "$O/ambient_finetuned_long.ckpt.pt" > "$O/ambient_finetuned_long.train.log" 2>&1 \
    || { tail -5 "$O/ambient_finetuned_long.train.log" >&2; exit 1; }
  mv "$O/ambient_finetuned_long.ckpt.pt.log.jsonl" "$O/ambient_finetuned_long.pt.log.jsonl"
  mv "$O/ambient_finetuned_long.ckpt.pt" "$O/ambient_finetuned_long.pt"
fi
train clean pretrain --data "$T/train_clean.h5" --init "$FOUNDATION" --steps "$STEPS" --batch "$BATCH" \
  --checkpoint-every 500

metric() { sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$1" | head -1; }
timed() { local t0; t0=$(date +%s.%N); "$@" > "$O/last.log" 2>&1 || { cat "$O/last.log" >&2; exit 1; }
          echo "$(date +%s.%N) - $t0" | bc -l; }
rows=()
add_row() {  # NAME R RECON SECONDS
  "$A" eval --reference "$T/heldout/r$2_ref.nii.gz" "$3" --json "$O/eval.json" > /dev/null
  local per_slice
  per_slice=$(printf "%.2f" "$(echo "$4 / 3" | bc -l)")
  echo "\"$1\",$2,$(metric "$O/eval.json" psnr),$(metric "$O/eval.json" ssim),$(metric "$O/eval.json" nmse),$per_slice,$3" \
    >> "$O/results.csv"
  rows+=("| $1 | $2 | $(printf %.2f "$(metric "$O/eval.json" psnr)") | $(printf %.4f "$(metric "$O/eval.json" ssim)") | $(printf %.4f "$(metric "$O/eval.json" nmse)") | $per_slice |")
  echo "${rows[-1]}"
}
echo "method,R,psnr,ssim,nmse,seconds_per_slice,volume" > "$O/results.csv"
for R in 4 8; do
  S=$T/heldout/r$R.h5
  t=$(timed "$A" recon "$S" --method zero-filled -o "$O/zf$R.nii.gz"); add_row zero-filled "$R" "$O/zf$R.nii.gz" "$t"
  t=$(timed "$A" recon "$S" --method cg-sense -o "$O/cg$R.nii.gz"); add_row CG-SENSE "$R" "$O/cg$R.nii.gz" "$t"
  if command -v bart > /dev/null; then
    best=-1000; best_t=0
    "$A" convert "$S" --prewhiten -o "$O/k$R.cfl" > /dev/null
    for lam in 0.001 0.003 0.01 0.03 0.1; do
      t0=$(date +%s.%N); parts=()
      for s in 0 1 2; do
        bart slice 13 $s "$O/k$R" "$O/ks" > /dev/null; bart ecalib -m1 -r 24 "$O/ks" "$O/ms" > /dev/null 2>&1
        bart pics -S -R W:7:0:$lam -i 100 "$O/ks" "$O/ms" "$O/x$s" > /dev/null 2>&1; parts+=("$O/x$s")
      done
      bart join 13 "${parts[@]}" "$O/bart${R}_$lam" > /dev/null
      t=$(echo "$(date +%s.%N) - $t0" | bc -l)
      "$A" eval --reference "$T/heldout/r${R}_ref.nii.gz" "$O/bart${R}_$lam.cfl" --json "$O/eval.json" > /dev/null
      p=$(metric "$O/eval.json" psnr)
      if [ "$(echo "$p > $best" | bc -l)" = 1 ]; then best=$p; best_lam=$lam; best_t=$t; fi
    done
    add_row "BART pics l1-wavelet (best λ = $best_lam)" "$R" "$O/bart${R}_$best_lam.cfl" "$best_t"
  fi
  models=(foundation naive ambient_scratch ambient_finetuned clean)
  [ -f "$O/ambient_finetuned_long.pt" ] && models+=(ambient_finetuned_long)
  for m in "${models[@]}"; do
    model=$O/$m.pt; [ "$m" = foundation ] && model=$FOUNDATION
    t=$(timed "$A" recon "$S" --method posterior --model "$model" --samples "$SAMPLES" --steps "$SSTEPS" \
      -o "$O/$m$R.nii.gz" --std "$O/${m}${R}_std.nii.gz" --png "$O/png_${m}_r$R" --reference "$T/heldout/r${R}_ref.nii.gz")
    add_row "$m (posterior, $SAMPLES×$SSTEPS)" "$R" "$O/$m$R.nii.gz" "$t"
  done
  # The longest-trained ambient model (and the clean one) again at other samples x steps (docs/sampling.md).
  long=ambient_finetuned; [ -f "$O/ambient_finetuned_long.pt" ] && long=ambient_finetuned_long
  for spec in ${MORE:+$(printf "$long:%s " $MORE)} ${CLEAN_MORE:+$(printf "clean:%s " $CLEAN_MORE)}; do
    m=${spec%%:*} ks=${spec#*:}; k=${ks%x*} st=${ks#*x}
    t=$(timed "$A" recon "$S" --method posterior --model "$O/$m.pt" --samples "$k" --steps "$st" \
      -o "$O/${m}_${k}x$st$R.nii.gz" --reference "$T/heldout/r${R}_ref.nii.gz")
    add_row "$m (posterior, $k×$st)" "$R" "$O/${m}_${k}x$st$R.nii.gz" "$t"
  done
done
# Memorisation: samples of the ambient model and of the clean-trained one against the clean training slices.
memo=()
for m in ambient_finetuned clean; do
  further=(); [ "$m" = ambient_finetuned ] && further=(--further-accel 5)  # the ambient sampler, as in training
  "$A" sample --model "$O/$m.pt" "${further[@]}" -n 16 --size "$N" --steps "$SSTEPS" -o "$O/samples_$m.png" --nifti "$O/samples_$m.nii.gz" > /dev/null 2>&1
  "$A" eval --samples "$O/samples_$m.nii.gz" --training "$T/train_clean_ref.nii.gz" --json "$O/memo_$m.json" > /dev/null
  memo+=("| $m | $(sed -n 's/.*"nearest_ncc": {\([^}]*\)}.*/\1/p' "$O/memo_$m.json") |")
done
"$A" sample --model "$O/block_ambient.pt" -n 16 --size "$N" --steps "$SSTEPS" --further-blocks 74 --block-size 16,40 \
  -o "$O/samples_block_ambient.png" > /dev/null 2>&1
block_missing=$(sed -n 's/.*A erases \([0-9.]*\)%.*/\1/p' "$O/block_ambient.train.log" | head -1)
/usr/bin/python3 bench/plot_results.py "$O" "$T/heldout" "$IMAGES"
# The hand-written discussion below the marker survives regeneration.
marker='<!-- analysis: hand-written, kept by bench/results.sh -->'
analysis=""
if [ -f "$MD" ]; then analysis=$(awk -v m="$marker" '$0 == m { on = 1 } on' "$MD"); fi
{
  echo "# Results"
  echo
  echo "Generated by \`bench/results.sh\` (FOUNDATION=$FOUNDATION, MATRIX=$N, STEPS=$STEPS, SAMPLES=$SAMPLES,"
  echo "SAMPLER_STEPS=$SSTEPS${LONG_STEPS:+, LONG_STEPS=$LONG_STEPS}${MORE:+, MORE=\"$MORE\"}${CLEAN_MORE:+, CLEAN_MORE=\"$CLEAN_MORE\"}) on $(nproc) cores. Held-out target slices (docs/data.md), 8 coils;"
  echo "each figure is the mean over the three slices. Posterior rows: K samples × sampler steps, the mean of the samples."
  echo
  echo "| method | R | PSNR (dB) | SSIM | NMSE | s/slice |"
  echo "|---|---|---|---|---|---|"
  printf "%s\n" "${rows[@]}"
  echo
  echo "Memorisation: normalised cross-correlation of 16 samples with their nearest clean training slice."
  echo
  echo "| model | nearest-neighbour NCC |"
  echo "|---|---|"
  printf "%s\n" "${memo[@]}"
  echo
  echo "![quality vs time]($(basename "$IMAGES")/results_quality_vs_time.png)"
  echo
  echo "Held-out slice 2 of 3 at R = 4 and R = 8 (top: magnitude, the title's PSNR is the mean over the three slices; bottom: 5× absolute error):"
  echo
  echo "![R = 4]($(basename "$IMAGES")/results_examples_r4.png)"
  echo "![R = 8]($(basename "$IMAGES")/results_examples_r8.png)"
  echo
  echo "Unconditional samples: the ambient fine-tuned model, the clean-trained one, and the block model (trained on"
  echo "clean slices with ${block_missing:-?}% of the pixels erased by boxes; ambient sampler with a fixed Ã of 74 boxes, as in training)."
  echo
  echo "![ambient]($(basename "$IMAGES")/results_samples_ambient_finetuned.png)"
  echo "![clean]($(basename "$IMAGES")/results_samples_clean.png)"
  echo "![block]($(basename "$IMAGES")/results_samples_block_ambient.png)"
  if [ -n "$analysis" ]; then echo; printf "%s\n" "$analysis"; fi
} > "$O/results.md.tmp"
cat "$O/results.md.tmp" > "$MD"  # MD may be /dev/null; the figures and the CSV are in place already
echo "wrote $MD"
