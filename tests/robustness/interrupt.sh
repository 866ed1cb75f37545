#!/usr/bin/env bash
# Kill-and-resume trials (issue 18, docs/reliability.md): `finetune` is killed with SIGKILL at pseudo-random moments,
# several times per trial, and resumed each time (or restarted, when it died before its first checkpoint); the final
# checkpoint must equal an uninterrupted run's bit for bit (model and EMA hashes), and no temporary file may be left.
# Then two 2-rank trials in which one rank is killed.
#   tests/robustness/interrupt.sh AMBIENT WORKDIR [TRIALS=4]
set -uo pipefail
A=$1
W=$2
TRIALS=${3:-4}
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1
hash_of() { "$A" info "$1" --json 2> /dev/null | sed -n "s/.*\"$2\": \"\([0-9a-f]*\)\".*/\1/p"; }
step_of() { "$A" info "$1" --json 2> /dev/null | sed -n 's/.*"step": \([0-9]*\).*/\1/p'; }

"$A" simulate -o scans.h5 --matrix 32 --count 4 --coils 4 --center-fraction 0.25 --seed 2 > /dev/null &&
  "$A" pretrain --data /usr/share/mricron/templates/ch2.nii.gz --matrix 32 --base-channels 8 --steps 2 --batch 2 \
    --out foundation.pt > /dev/null || { echo "interrupt: could not make the inputs"; exit 1; }
STEPS=30
RUN=(finetune --data scans.h5 --init foundation.pt --corruption fourier --delta 0.3 --steps $STEPS --batch 2
     --checkpoint-every 3 --val-every 1000 --seed 5)
t0=$(date +%s%N)
"$A" "${RUN[@]}" --out straight.pt > straight.log 2>&1 || { echo "interrupt: uninterrupted run failed"; cat straight.log; exit 1; }
span=$(( ($(date +%s%N) - t0) / 10000000 ))  # the run's length in 1/100 s: kills fall anywhere in it
want_model=$(hash_of straight.pt model_hash) want_ema=$(hash_of straight.pt ema_hash)

RANDOM=17  # the kill times are pseudo-random but the same every run of the suite
passed=0 failed=0 kills=0
for t in $(seq 1 "$TRIALS"); do
  out=trial$t.pt steps_seen=""
  for k in 1 2 3; do
    resume=(); [ -f "$out" ] && resume=(--resume)
    "$A" "${RUN[@]}" --out "$out" "${resume[@]}" > "trial$t.$k.log" 2>&1 &
    pid=$!
    at_cs=$(( (RANDOM * 32768 + RANDOM) % (span + 1) ))
    sleep "$((at_cs / 100)).$(printf '%02d' $((at_cs % 100)))"
    if kill -9 "$pid" 2> /dev/null; then kills=$((kills + 1)); fi
    wait "$pid" 2> /dev/null
    steps_seen+=" $(step_of "$out")"
  done
  resume=(); [ -f "$out" ] && resume=(--resume)
  "$A" "${RUN[@]}" --out "$out" "${resume[@]}" > "trial$t.final.log" 2>&1
  rc=$?
  leftovers=$(ls -a | grep -c '\.tmp')
  if [ "$rc" -eq 0 ] && [ "$(step_of "$out")" = "$STEPS" ] && [ "$(hash_of "$out" model_hash)" = "$want_model" ] &&
     [ "$(hash_of "$out" ema_hash)" = "$want_ema" ] && [ "$leftovers" -eq 0 ]; then
    passed=$((passed + 1))
    echo "ok: trial $t (checkpoint steps after each kill:${steps_seen:- none}) ends equal to the uninterrupted run"
  else
    failed=$((failed + 1))
    echo "FAILED: trial $t: exit $rc, step $(step_of "$out"), hashes $(hash_of "$out" model_hash)/$want_model, $leftovers temporary file(s)"
    tail -3 "trial$t.final.log"
  fi
done
echo "interrupt: $kills kills in $TRIALS trials; $passed passed, $failed failed"

# Two ranks (loopback, launched as torchrun would), one of them killed: the survivor must stop with an error within
# its --dist-timeout instead of hanging, and the job resumed on two ranks must end equal to an uninterrupted one.
port() { echo $((20000 + (RANDOM % 20000))); }
launch2() {  # OUT LOG [ARGS...]: both ranks of one job, waits for both
  local out=$1 log=$2 p pids=() rc=0
  shift 2
  p=$(port)
  for r in 0 1; do
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=$r LOCAL_WORLD_SIZE=2 "$A" "${RUN[@]}" --out "$out" \
      --dist-timeout 20 "$@" > "$log.$r" 2>&1 &
    pids+=($!)
  done
  for pid in "${pids[@]}"; do wait "$pid" || rc=$?; done
  return $rc
}
launch2 dist_straight.pt dist_straight.log || { echo "interrupt: uninterrupted 2-rank run failed"; cat dist_straight.log.*; exit 1; }
want2_model=$(hash_of dist_straight.pt model_hash)
for t in 1 2; do
  out=dist$t.pt
  p=$(port)
  for r in 0 1; do
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$p WORLD_SIZE=2 RANK=$r LOCAL_WORLD_SIZE=2 "$A" "${RUN[@]}" --out "$out" \
      --dist-timeout 20 > "dist$t.kill.$r" 2>&1 &
    pid[$r]=$!
  done
  # Rank 1 dies once rank 0 has written a checkpoint.
  for _ in $(seq 1 600); do [ -f "$out" ] && break; sleep 0.05; done
  sleep "0.$((RANDOM % 10))"
  kill -9 "${pid[1]}" 2> /dev/null
  t0=$(date +%s)
  wait "${pid[0]}"
  rc0=$? waited=$(( $(date +%s) - t0 ))
  wait "${pid[1]}" 2> /dev/null
  at=$(step_of "$out")
  resume=(); [ -f "$out" ] && resume=(--resume)
  launch2 "$out" "dist$t.resume.log" "${resume[@]}"
  rc=$?
  if [ "$rc0" -ne 0 ] && [ "$rc0" -lt 124 ] && grep -q '^ambient: error' "dist$t.kill.0" && [ "$waited" -le 60 ] &&
     [ "$rc" -eq 0 ] && [ "$(hash_of "$out" model_hash)" = "$want2_model" ]; then
    passed=$((passed + 1))
    echo "ok: 2-rank trial $t: rank 1 killed (checkpoint at step ${at:-none}), rank 0 stopped with an error after ${waited} s; resumed equal to the uninterrupted 2-rank run"
  elif [ "$rc0" -eq 0 ] && [ "$rc" -eq 0 ] && [ "$(hash_of "$out" model_hash)" = "$want2_model" ]; then
    passed=$((passed + 1))
    echo "ok: 2-rank trial $t: the run ended before the kill mattered; equal to the uninterrupted 2-rank run"
  else
    failed=$((failed + 1))
    echo "FAILED: 2-rank trial $t: rank 0 exit $rc0 after ${waited} s ($(grep '^ambient: error' "dist$t.kill.0" | head -1)), resume exit $rc, hash $(hash_of "$out" model_hash) vs $want2_model"
  fi
done
echo "interrupt: $passed passed, $failed failed in all"
[ "$failed" -eq 0 ]
