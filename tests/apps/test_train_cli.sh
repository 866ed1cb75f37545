#!/usr/bin/env bash
# Training from the command line: pretrain, kill -9 mid-run, --resume, and compare with an uninterrupted run
# bit for bit (weight hashes); then fine-tune from the foundation on simulated scans only.
# Usage: test_train_cli.sh AMBIENT_BINARY WORK_DIR
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AMBIENT=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
source "$HERE/lib.sh"
hash_of() { "$AMBIENT" info "$1" --json | sed -n "s/.*\"$2\": \"\([0-9a-f]*\)\".*/\1/p"; }
step_of() { "$AMBIENT" info "$1" --json | sed -n 's/.*"step": \([0-9]*\).*/\1/p'; }

VOL=/usr/share/mricron/templates/ch2.nii.gz
TRAIN=(--data "$VOL" --steps 40 --batch 2 --matrix 64 --base-channels 16 --checkpoint-every 4 --seed 3)

"$AMBIENT" pretrain "${TRAIN[@]}" --out straight.pt > straight.log 2>&1 && ok "uninterrupted pretrain" \
  || { bad "uninterrupted pretrain"; cat straight.log; }

# Interrupt: SIGKILL once a checkpoint exists (a hard stop: no handler, no cleanup).
"$AMBIENT" pretrain "${TRAIN[@]}" --out killed.pt > killed.log 2>&1 &
pid=$!
for _ in $(seq 1 400); do [ -f killed.pt ] && break; sleep 0.05; done
sleep 0.3
kill -9 $pid 2> /dev/null
wait $pid 2> /dev/null
stopped_at=$(step_of killed.pt)
if [ -n "$stopped_at" ] && [ "$stopped_at" -gt 0 ] && [ "$stopped_at" -lt 40 ]; then
  ok "killed mid-run with a valid checkpoint at step $stopped_at"
else
  bad "killed mid-run (checkpoint step '$stopped_at')"
fi
ls .killed*tmp* 2> /dev/null && bad "temporary checkpoint left behind" || ok "no temporary files"

"$AMBIENT" pretrain "${TRAIN[@]}" --out killed.pt --resume > resumed.log 2>&1 && ok "resume" \
  || { bad "resume"; cat resumed.log; }
[ "$(step_of killed.pt)" = 40 ] && ok "resumed to step 40" || bad "resumed to step 40"
if [ -n "$(hash_of straight.pt model_hash)" ] && [ "$(hash_of straight.pt model_hash)" = "$(hash_of killed.pt model_hash)" ] \
  && [ "$(hash_of straight.pt ema_hash)" = "$(hash_of killed.pt ema_hash)" ]; then
  ok "killed + resumed run equals the uninterrupted run bit for bit"
else
  bad "resume is not bit-for-bit ($(hash_of straight.pt model_hash) vs $(hash_of killed.pt model_hash))"
fi
grep -q '"step": 40' killed.pt.log.jsonl && ok "log continues after resume" || bad "log continues after resume"

# Fine-tune the foundation on simulated R=4 scans (no clean image anywhere), Fourier and block corruption.
"$AMBIENT" simulate -o scans.h5 --matrix 64 --count 4 --center-fraction 0.16 --seed 5 > /dev/null
"$AMBIENT" finetune --data scans.h5 --val scans.h5 --init straight.pt --corruption fourier --delta 0.3 \
  --out ft.pt --steps 6 --batch 2 --val-every 3 > ft.log 2>&1 && ok "finetune fourier" || { bad "finetune fourier"; cat ft.log; }
grep -q '"val_loss"' ft.pt.log.jsonl && ok "validation loss logged" || bad "validation loss logged"
"$AMBIENT" info ft.pt | grep -q "cond_channels=1" && ok "foundation widened by one mask channel" || bad "widened"
"$AMBIENT" finetune --data scans.h5 --init straight.pt --corruption block --out ftb.pt --steps 3 --batch 2 \
  > ftb.log 2>&1 && ok "finetune block" || { bad "finetune block"; cat ftb.log; }
"$AMBIENT" info ftb.pt | grep -q "precond *masked" && "$AMBIENT" info ft.pt | grep -q "precond *standard" \
  && ok "default preconditioning: masked for block, standard for Fourier" || bad "default preconditioning"
"$AMBIENT" finetune --data scans.h5 --init straight.pt --corruption block --precond standard --out ftm.pt --steps 3 \
  --batch 2 > ftm.log 2>&1 && "$AMBIENT" info ftm.pt | grep -q "precond *standard" \
  && ok "finetune block --precond standard" || { bad "finetune block --precond standard"; cat ftm.log; }
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --steps 4 --further-blocks 6 -o ftm_samples.png > /dev/null 2>&1 \
  && [ -s ftm_samples.png ] && ok "sample from a masked-preconditioning block model" || bad "sample masked block model"
"$AMBIENT" finetune --data scans.h5 --init straight.pt --corruption fourier --delta 0.3 --precond masked \
  --out ftk.pt --steps 3 --batch 2 > ftk.log 2>&1 && "$AMBIENT" info ftk.pt | grep -q "precond *masked-lines" \
  && ok "finetune fourier --precond masked: masked by k-space lines" || { bad "finetune fourier --precond masked"; cat ftk.log; }
"$AMBIENT" sample --model ftk.pt -n 2 --size 64 --steps 4 --further-accel 2 -o ftk_samples.png > /dev/null 2>&1 \
  && [ -s ftk_samples.png ] && ok "sample from a masked-lines Fourier model" || bad "sample masked-lines model"

echo "junk" > junk.pt

# Export: EMA-only, smaller, usable for reconstruction and fine-tuning, not for resuming.
"$AMBIENT" export ft.pt -o ft_export.pt > /dev/null 2>&1 && [ "$(hash_of ft_export.pt ema_hash)" = "$(hash_of ft.pt ema_hash)" ] \
  && [ "$(stat -c %s ft_export.pt)" -lt "$(stat -c %s ft.pt)" ] && ok "export keeps the EMA weights" || bad "export"
"$AMBIENT" finetune --data scans.h5 --out ft_export.pt --resume --steps 8 > e7.log 2>&1 \
  && bad "resume from an export accepted" || ok "resume from an export refused"

# Model-based reconstruction and sampling with the fine-tuned model.
R=(--method posterior --model ft.pt --samples 2 --steps 6 --seed 4)
"$AMBIENT" recon scans.h5 "${R[@]}" -o post.nii.gz --std post_std.nii.gz --png ppng > post.log 2>&1 \
  && ok "recon --method posterior" || { bad "recon --method posterior"; cat post.log; }
grep -q "further line mask at R = 2 " post.log && ok "ambient-Fourier model sees x_t through Ã at R = 2 by default" \
  || { bad "default further mask of an ambient-Fourier model"; cat post.log; }
[ -s post.nii.gz ] && [ -s post_std.nii.gz ] && [ -s ppng/slice_000.png ] && ok "posterior outputs" || bad "posterior outputs"
"$AMBIENT" recon scans.h5 "${R[@]}" -o post2.nii.gz --std post_std2.nii.gz > /dev/null 2>&1
cmp -s post.nii.gz post2.nii.gz && cmp -s post_std.nii.gz post_std2.nii.gz && ok "recon deterministic for --seed" \
  || bad "recon deterministic for --seed"
"$AMBIENT" recon scans.h5 "${R[@]}" --network-batch 1 -o post_nb1.nii.gz > /dev/null 2>&1
"$AMBIENT" eval --reference post.nii.gz post_nb1.nii.gz --json nb1.json > /dev/null 2>&1
grep -q '"nmse": [0-9.]*e-1[0-9]\|"nmse": 0[,}]' nb1.json && ok "recon result does not depend on --network-batch" \
  || { bad "recon result depends on --network-batch"; cat nb1.json; }
"$AMBIENT" recon scans.h5 --method posterior --model ft.pt --steps 1 -o post_k.nii.gz > post_k.log 2>&1
grep -q "sampling: 8 samples x 1 steps" post_k.log && ok "ambient-Fourier models average 8 samples by default" \
  || { bad "default samples of an ambient-Fourier model"; cat post_k.log; }
"$AMBIENT" recon scans.h5 --method dps --model ft.pt --samples 1 --steps 4 -o dps.nii.gz > dps.log 2>&1 \
  && ok "recon --method dps" || { bad "recon --method dps"; cat dps.log; }
"$AMBIENT" sample --model straight.pt -n 4 --size 32 --steps 6 -o grid.png --nifti samples.nii.gz > s.log 2>&1 \
  && [ -s grid.png ] && [ -s samples.nii.gz ] && ok "sample" || { bad "sample"; cat s.log; }
"$AMBIENT" sample --model ft.pt -n 2 --size 64 --steps 4 --further-accel 2 -o amb_f.png > /dev/null 2>&1 \
  && [ -s amb_f.png ] && ok "ambient sampler, fixed line mask" || bad "ambient sampler, fixed line mask"
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --steps 4 --further-delta 0.3 -o amb_b.png > /dev/null 2>&1 \
  && [ -s amb_b.png ] && ok "ambient sampler, fixed pixel mask" || bad "ambient sampler, fixed pixel mask"
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --steps 4 --further-blocks 6 --block-size 8,24 -o amb_k.png \
  > /dev/null 2>&1 && [ -s amb_k.png ] && ! cmp -s amb_k.png amb_b.png && ok "ambient sampler, fixed box mask" \
  || bad "ambient sampler, fixed box mask"
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --steps 4 --further-blocks 6 --block-size 8,24 --views 3 \
  -o amb_v.png --nifti amb_v.nii.gz > /dev/null 2>&1 && "$AMBIENT" sample --model ftb.pt -n 2 --size 64 --steps 4 \
  --further-blocks 6 --block-size 8,24 --views 1 -o amb_v1.png --nifti amb_v1.nii.gz > /dev/null 2>&1 \
  && cmp -s amb_v1.png amb_k.png && ! cmp -s amb_v.nii.gz amb_v1.nii.gz \
  && ok "ambient sampler, several views (--views 1 is the fixed mask)" || bad "ambient sampler, several views"
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --views 3 -o never.png > e10.log 2>&1 \
  && bad "--views without a further corruption accepted" || { grep -q "give --further-delta or --further-blocks" \
  e10.log && ok "--views needs an image mask" || bad "--views message"; }
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --further-blocks 6 --block-size 8,x -o never.png > e8.log 2>&1 \
  && bad "bad --block-size accepted" || { grep -q "comma-separated integers" e8.log && ok "bad --block-size refused" \
  || bad "bad --block-size message"; }
"$AMBIENT" sample --model ftb.pt -n 2 --size 64 --further-blocks 6 --further-delta 0.3 -o never.png > e9.log 2>&1 \
  && bad "two further corruptions accepted" || ok "one further corruption at a time"
"$AMBIENT" sample --model straight.pt -n 2 --size 32 --steps 2 --further-delta 0.3 -o never.png > e6.log 2>&1 \
  && bad "ambient sampler on a maskless model accepted" || ok "ambient sampler needs a mask channel"
"$AMBIENT" simulate -o ref_scan.h5 -r ref.nii.gz --matrix 64 --count 4 --center-fraction 0.16 --seed 5 > /dev/null
# inpaint: boxes erased from a clean volume, filled by the block model seeing the iterate through views.
I=(--model ftb.pt --further-blocks 8 --block-size 8,24 --views 2 --samples 2 --steps 3)
"$AMBIENT" inpaint "${I[@]}" -i ref.nii.gz --erase-blocks 6 -o inp.nii.gz --std inp_std.nii.gz \
  --write-mask inp_mask.nii.gz --metrics inp.json --png inp_png > inp.log 2>&1 && [ -s inp_std.nii.gz ] \
  && [ -s inp_png/slice_003.png ] && grep -q '"hole_nmse"' inp.json && grep -q "% of the pixels hidden" inp.log \
  && ok "inpaint --erase-blocks: filled volume, std, mask, metrics, previews" || { bad "inpaint"; cat inp.log; }
"$AMBIENT" inpaint "${I[@]}" -i ref.nii.gz --mask inp_mask.nii.gz -o inp2.nii.gz > /dev/null 2>&1 \
  && cmp -s inp.nii.gz inp2.nii.gz && ok "inpaint --mask with the written mask repeats the --erase-blocks run" \
  || bad "inpaint --mask differs from --erase-blocks"
"$AMBIENT" inpaint --model ftb.pt --samples 2 --steps 3 -i ref.nii.gz --mask inp_mask.nii.gz -o inp0.nii.gz \
  > inp0.log 2>&1 && grep -q "through its mask" inp0.log && ! cmp -s inp0.nii.gz inp.nii.gz \
  && ok "inpaint: by default the network sees the iterate through the image's own mask" \
  || { bad "inpaint --views 0"; cat inp0.log; }
"$AMBIENT" inpaint --model straight.pt -i ref.nii.gz --mask inp_mask.nii.gz --samples 1 --steps 2 --views 2 \
  -o inp3.nii.gz \
  > inp3.log 2>&1 && grep -q "sees the iterate itself" inp3.log && ok "inpaint with a model trained on clean images" \
  || { bad "inpaint with a clean model"; cat inp3.log; }
"$AMBIENT" inpaint "${I[@]}" -i ref.nii.gz --mask inp_mask.nii.gz --erase-blocks 6 -o never.nii.gz > e12.log 2>&1 \
  && bad "inpaint with --mask and --erase-blocks accepted" || { grep -q "not both" e12.log \
  && ok "inpaint: --mask or --erase-blocks" || bad "inpaint --mask/--erase-blocks message"; }
"$AMBIENT" inpaint "${I[@]}" -i ref.nii.gz --mask samples.nii.gz -o never.nii.gz > e13.log 2>&1 \
  && bad "inpaint with a mask of another shape accepted" || { grep -q "differs from the image" e13.log \
  && ok "inpaint: mask shape checked" || bad "inpaint mask shape message"; }
"$AMBIENT" inpaint --model ftb.pt -i ref.nii.gz --erase-blocks 6 --views 3 -o never.nii.gz > e14.log 2>&1 \
  && bad "inpaint views without their draw accepted" || { grep -q "say how training drew" e14.log \
  && ok "inpaint: views need --further-blocks" || bad "inpaint views message"; }
[ ! -e never.nii.gz ] && ok "refused inpaint runs write nothing" || bad "a refused inpaint run wrote output"
"$AMBIENT" eval --reference ref.nii.gz post.nii.gz --json eval.json > eval.log 2>&1 && grep -q '"psnr"' eval.json \
  && grep -q '"object_psnr"' eval.json && grep -q '"background_error_share"' eval.json && grep -q "object (" eval.log \
  && ok "eval metrics, the object / background split" || { bad "eval metrics"; cat eval.log; }
"$AMBIENT" eval --reference ref.nii.gz post.nii.gz --std post_std.nii.gz --reliability-png rel.png --json cal.json \
  > cal.log 2>&1 && grep -q '"within_2"' cal.json && grep -q '"scale_for_95"' cal.json && [ -s rel.png ] \
  && ok "eval --std: calibration figures and reliability diagram" || { bad "eval --std"; cat cal.log; }
"$AMBIENT" eval --reference ref.nii.gz post.nii.gz post2.nii.gz --std post_std.nii.gz > e10.log 2>&1 \
  && bad "eval --std with two reconstructions accepted" || { grep -q "exactly one" e10.log \
  && ok "eval --std needs one reconstruction" || bad "eval --std message"; }
"$AMBIENT" recon scans.h5 "${R[@]}" --mean-of samples -o post_ms.nii.gz > /dev/null 2>&1 \
  && ! cmp -s post.nii.gz post_ms.nii.gz && ok "recon --mean-of samples differs from the conditional mean" \
  || bad "recon --mean-of samples"
"$AMBIENT" recon scans.h5 "${R[@]}" --mean-of median -o never.nii.gz > e11.log 2>&1 \
  && bad "bad --mean-of accepted" || { grep -q "conditional|samples" e11.log && ok "bad --mean-of refused" \
  || bad "bad --mean-of message"; }
"$AMBIENT" sample --model straight.pt -n 4 --size 64 --steps 4 -o g64.png --nifti s64.nii.gz > /dev/null 2>&1
"$AMBIENT" eval --samples s64.nii.gz --training ref.nii.gz --json memo.json > memo.log 2>&1 \
  && grep -q '"nearest_ncc"' memo.json && ok "eval memorisation" || { bad "eval memorisation"; cat memo.log; }
"$AMBIENT" eval --samples s64.nii.gz --training ref.nii.gz --features straight.pt --quality-reference ref.nii.gz \
  --manifold-k 1 --pairs-png pairs.png --pairs 2 --json memo2.json > memo2.log 2>&1 \
  && grep -q '"feature_distance_below_1"' memo2.json && grep -q '"kid"' memo2.json && grep -q '"training_fd"' memo2.json \
  && grep -q '"ncc_above_0.95"' memo2.json && grep -q '"feature_coverage"' memo2.json \
  && grep -q '"real_pixel_precision"' memo2.json && [ -s pairs.png ] \
  && ok "eval sample measures: features, KID/FD, precision/recall, pairs" \
  || { bad "eval sample measures"; cat memo2.log; }
"$AMBIENT" eval --samples s64.nii.gz --training ref.nii.gz --features straight.pt --quality-reference ref.nii.gz \
  --manifold-every 0 > e13.log 2>&1 && bad "--manifold-every 0 accepted" \
  || { grep -q "manifold-every: expected at least 1" e13.log && ok "--manifold-every 0 refused" \
  || bad "--manifold-every message"; }
"$AMBIENT" eval --samples s64.nii.gz --training ref.nii.gz --quality-reference ref.nii.gz > e12.log 2>&1 \
  && bad "--quality-reference without --features accepted" || { grep -q "needs --features" e12.log \
  && ok "--quality-reference needs --features" || bad "--quality-reference message"; }
"$AMBIENT" eval --samples samples.nii.gz --training ref.nii.gz > e5.log 2>&1 \
  && bad "size mismatch accepted" || { grep -q "one size" e5.log && ok "eval size mismatch" || bad "eval size mismatch message"; }
"$AMBIENT" recon scans.h5 --method posterior -o never.nii.gz > e0.log 2>&1 \
  && bad "posterior without --model accepted" || { grep -q "needs --model" e0.log && ok "posterior needs a model" || bad "posterior needs a model message"; }
"$AMBIENT" recon scans.h5 --method posterior --model junk.pt -o never.nii.gz > e4.log 2>&1 \
  && bad "junk model accepted" || ok "junk model rejected"
[ -f never.nii.gz ] && bad "failed recon wrote output" || ok "no output from failed recon"

# Bad input.
"$AMBIENT" finetune --data scans.h5 --init nothing.pt --out x.pt --steps 2 > e1.log 2>&1 \
  && bad "missing foundation accepted" || { grep -q "not found" e1.log && ok "missing foundation" || bad "missing foundation message"; }
"$AMBIENT" finetune --data scans.h5 --init junk.pt --out x.pt --steps 2 > e2.log 2>&1 \
  && bad "junk foundation accepted" || { grep -q "checkpoint" e2.log && ok "junk foundation" || bad "junk foundation message"; }
"$AMBIENT" finetune --data scans.h5 --out x.pt --steps 2 --corruption magic > e3.log 2>&1 \
  && bad "bad corruption accepted" || ok "bad corruption rejected"
"$AMBIENT" finetune --data scans.h5 --out x.pt --steps 2 --objective naive --precond masked > e5.log 2>&1 \
  && bad "--precond masked accepted for the naive objective" \
  || { grep -q "only for the ambient objective" e5.log && ok "--precond masked refused for the naive objective" \
       || bad "--precond masked message"; }
"$AMBIENT" finetune --data scans.h5 --out x.pt --steps 2 --precond masked-lines > e6.log 2>&1 \
  && bad "--precond masked-lines accepted" \
  || { grep -q "expected auto|standard|masked" e6.log && ok "unknown --precond refused" || bad "--precond message"; }
[ -f x.pt ] && bad "a failed run wrote a checkpoint" || ok "no checkpoint from failed runs"

finish
