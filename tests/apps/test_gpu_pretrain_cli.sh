#!/usr/bin/env bash
# The GPU pretraining route from the command line, run on the CPU: ambient pretrain --dump-slices, then
# ambient-gpu-pretrain (stopped by --time-limit, resumed), ambient export of its weights, and the exported model
# used by ambient info and ambient sample; damaged inputs fail with a clear message and leave no output.
# Usage: test_gpu_pretrain_cli.sh AMBIENT_BINARY GPU_PRETRAIN_BINARY WORK_DIR
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AMBIENT=$1
GPU=$2
WORK=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
source "$HERE/lib.sh"

VOL=/usr/share/mricron/templates/ch2.nii.gz
"$AMBIENT" pretrain --data "$VOL@coronal" --matrix 32 --dump-slices slices.bin > dump.log 2>&1 \
  && grep -q "slices of 32x32" dump.log && ok "dump slices" || { bad "dump slices"; cat dump.log; }
"$AMBIENT" pretrain --data "$VOL" --matrix 32 > noout.log 2>&1 && bad "pretrain without --out accepted" \
  || { grep -q "out is required" noout.log && ok "pretrain without --out: clear error" || bad "no --out message"; }

NET=(--slices slices.bin --batch 4 --base-channels 8 --channel-mult 1,2 --blocks 1 --attention 1 --device cpu --checkpoint-every 2)
"$GPU" "${NET[@]}" --steps 6 --out straight.bin > straight.log 2>&1 && ok "gpu-pretrain on the CPU" \
  || { bad "gpu-pretrain on the CPU"; cat straight.log; }
grep -q '"images_per_s"' straight.bin.log.jsonl && ok "JSON log" || bad "JSON log"
"$GPU" "${NET[@]}" --steps 6 --out part.bin --time-limit 0.001 > part.log 2>&1 \
  && grep -q "continue with the same command and --resume" part.log && ok "time limit stops and says how to go on" \
  || { bad "time limit"; cat part.log; }
"$GPU" "${NET[@]}" --steps 6 --out part.bin --resume > resume.log 2>&1 && cmp -s part.bin straight.bin \
  && ok "stopped + resumed run equals the straight run byte for byte" || { bad "resume"; cat resume.log; }

"$AMBIENT" export straight.bin -o model.pt > export.log 2>&1 && ok "export weights to a checkpoint" \
  || { bad "export"; cat export.log; }
"$AMBIENT" info model.pt --json > info.json 2>&1 && grep -q '"step": 6' info.json && grep -q 'base_channels=8' info.json \
  && ok "info reads the exported model" || { bad "info of the exported model"; cat info.json; }
"$AMBIENT" sample --model model.pt -n 2 --size 32 --steps 4 -o samples.png > sample.log 2>&1 && [ -s samples.png ] \
  && ok "sample from the exported model" || { bad "sample from the exported model"; cat sample.log; }

head -c 3000 straight.bin > cut.bin
"$AMBIENT" export cut.bin -o cut.pt > cut.log 2>&1 && bad "truncated weights exported" \
  || { grep -q "truncated" cut.log && [ ! -e cut.pt ] && ok "truncated weights: clear error, no output" \
       || { bad "truncated weights message"; cat cut.log; }; }
head -c 5000 slices.bin > cut_slices.bin
"$GPU" "${NET[@]}" --slices cut_slices.bin --steps 2 --out never.bin > cutslices.log 2>&1 && bad "truncated slices used" \
  || { grep -q "truncated" cutslices.log && [ ! -e never.bin ] && ok "truncated slices: clear error" \
       || { bad "truncated slices message"; cat cutslices.log; }; }
"$GPU" "${NET[@]}" --steps 2 --out never.bin --batch two > nan.log 2>&1 && bad "non-numeric --batch accepted" \
  || { grep -q "not a number" nan.log && ok "non-numeric option: clear error" || { bad "bad option message"; cat nan.log; }; }
"$GPU" "${NET[@]}" --steps 2 --out never.bin --bogus 1 > bogus.log 2>&1 && bad "unknown option accepted" \
  || { grep -q "unknown option --bogus" bogus.log && ok "unknown option: clear error" || bad "unknown option message"; }
"$GPU" --help | grep -q "usage: ambient-gpu-pretrain" && ok "--help" || bad "--help"
finish
