#!/usr/bin/env bash
# Data-parallel runs of the `ambient` executable on loopback, launched as torchrun would (RANK, WORLD_SIZE,
# MASTER_ADDR, MASTER_PORT): fine-tuning on ISMRMRD scans that both ranks read, one checkpoint and one log from
# rank 0, resume on a different world size, and a sharded reconstruction equal to a one-process one.
# Usage: test_dist_cli.sh AMBIENT_BINARY WORK_DIR SAMPLE_SCAN
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AMBIENT=$1
WORK=$2
SCAN=$3
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
source "$HERE/lib.sh"
step_of() { "$AMBIENT" info "$1" --json | sed -n 's/.*"step": \([0-9]*\).*/\1/p'; }
port() { echo $((20000 + (RANDOM % 20000))); }
# launch N LOG_PREFIX ARGS...: N ranks of one job; returns the worst exit code
launch() {
  local n=$1 prefix=$2 p pids=() rc=0
  shift 2
  p=$(port)
  for r in $(seq 0 $((n - 1))); do
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=$n RANK=$r LOCAL_WORLD_SIZE=$n "$AMBIENT" "$@" \
      > "$prefix.$r.log" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  return $rc
}

TUNE=(finetune --data "$SCAN" --corruption fourier --base-channels 8 --batch 1 --checkpoint-every 2
      --precision fp32 --seed 5)
launch 2 tune "${TUNE[@]}" --steps 4 --out tuned.pt && ok "2-rank finetune" || { bad "2-rank finetune"; cat tune.*.log; }
grep -q "data-parallel: 2 ranks" tune.0.log && ok "rank 0 reports the job" || bad "rank 0 reports the job"
[ "$(step_of tuned.pt)" = 4 ] && ok "rank 0 wrote the checkpoint at step 4" || bad "checkpoint step"
[ "$(grep -c '"world": 2' tuned.pt.log.jsonl)" = 4 ] && ok "one log line per step, from rank 0 only" \
  || { bad "log lines"; cat tuned.pt.log.jsonl; }
[ ! -s tune.1.log ] && ok "rank 1 stays quiet" || { bad "rank 1 printed"; cat tune.1.log; }

"$AMBIENT" "${TUNE[@]}" --steps 6 --out tuned.pt --resume > resume1.log 2>&1 && [ "$(step_of tuned.pt)" = 6 ] \
  && ok "a 2-rank checkpoint resumes on 1 process" || { bad "resume on 1 process"; cat resume1.log; }
launch 2 resume2 "${TUNE[@]}" --steps 8 --out tuned.pt --resume && [ "$(step_of tuned.pt)" = 8 ] \
  && ok "and back on 2 ranks" || { bad "resume on 2 ranks"; cat resume2.*.log; }

# Mismatched command lines are refused, not silently mixed.
p=$(port)
MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=0 "$AMBIENT" "${TUNE[@]}" --steps 4 --out m.pt \
  --dist-timeout 30 > m0.log 2>&1 &
pid=$!
MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=1 "$AMBIENT" "${TUNE[@]}" --steps 5 --out m.pt \
  --dist-timeout 30 > m1.log 2>&1
wait $pid; rc=$?
grep -q "disagree" m0.log && [ $rc -ne 0 ] && ok "ranks with different options stop with an error" \
  || { bad "mismatched ranks"; cat m0.log m1.log; }

# Sharded reconstruction: 3 ranks share 6 slices; rank 0 writes the volume once; equal to one process.
"$AMBIENT" recon "$SCAN" --method cg-sense -o one.nii.gz > one.log 2>&1 || { bad "1-process recon"; cat one.log; }
launch 3 rec recon "$SCAN" --method cg-sense -o three.nii.gz --png png && ok "3-rank recon" \
  || { bad "3-rank recon"; cat rec.*.log; }
"$AMBIENT" eval --reference one.nii.gz three.nii.gz --json cmp.json > /dev/null 2>&1
grep -q '"nmse": 0[,}]' cmp.json && ok "sharded recon equals the one-process recon" || { bad "sharded recon"; cat cmp.json; }
[ "$(ls png | wc -l)" = 6 ] && ok "one PNG per slice" || bad "PNG count"
ls .three* *.tmp* 2> /dev/null && bad "temporary files left" || ok "no temporary files"

# Rendezvous through a shared file instead of TCP.
pids=()
for r in 0 1; do
  WORLD_SIZE=2 RANK=$r "$AMBIENT" recon "$SCAN" --method cg-sense -o filestore.nii.gz \
    --dist-init "file://$PWD/job.store" > fs.$r.log 2>&1 &
  pids+=($!)
done
rc=0; for p in "${pids[@]}"; do wait "$p" || rc=1; done
"$AMBIENT" eval --reference one.nii.gz filestore.nii.gz --json cmp3.json > /dev/null 2>&1
[ $rc = 0 ] && grep -q '"nmse": 0[,}]' cmp3.json && ok "file-store rendezvous" || { bad "file store"; cat fs.*.log; }

# Launched by torchrun (python3-torch), whose agent serves the store itself.
if command -v torchrun > /dev/null; then
  mkdir -p bin && ln -sf "$AMBIENT" bin/ambient
  PATH=$PWD/bin:$PATH timeout 120 torchrun --nproc_per_node=2 --master_port "$(port)" -r 2 -t 2 --log_dir tr_logs \
    --no_python ambient recon "$SCAN" --method cg-sense -o torchrun.nii.gz > torchrun.log 2>&1
  "$AMBIENT" eval --reference one.nii.gz torchrun.nii.gz --json cmp2.json > /dev/null 2>&1
  grep -q '"nmse": 0[,}]' cmp2.json && ok "torchrun-launched recon equals the one-process recon" \
    || { bad "torchrun recon"; tail -20 torchrun.log; }
else
  echo "skip: torchrun not installed"
fi

# A missing rank: rank 0 alone waits for the rendezvous, then says what to check.
MASTER_ADDR=127.0.0.1 MASTER_PORT=$(port) WORLD_SIZE=2 RANK=0 timeout 60 "$AMBIENT" recon "$SCAN" -o lone.nii.gz \
  --dist-timeout 2 > lone.log 2>&1
rc=$?
[ $rc -eq 1 ] && grep -q "could not join" lone.log && [ ! -e lone.nii.gz ] && ok "a missing rank fails after the timeout" \
  || { bad "missing rank (rc $rc)"; cat lone.log; }
finish
