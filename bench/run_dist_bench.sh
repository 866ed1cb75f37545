#!/usr/bin/env bash
# Data-parallel training throughput (issue 6), in one run: the default network (128x128, `ambient pretrain`) for
# STEPS steps on 1 process (batch BATCH, and 2*BATCH: the same global batch as 2 ranks) and on 2 processes (loopback, gloo, cores split between the ranks), per-rank batch
# BATCH, gradients all-reduced in 4 MB buckets during backward or in one flat all-reduce after it. Prints steps/s,
# images/s, the all-reduce wait per step, and ratios against the 1-process run; then the raw all-reduce cost.
#   bench/run_dist_bench.sh [STEPS=30] [BATCH=4]
set -euo pipefail
cd "$(dirname "$0")/.."
A=$PWD/build/apps/ambient
STEPS=${1:-30}
BATCH=${2:-4}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT
VOL=/usr/share/mricron/templates/ch2better.nii.gz
ARGS=(pretrain --data "$VOL" --matrix 128 --steps "$STEPS" --batch "$BATCH" --checkpoint-every 100000 --seed 1)
run() {  # NAME WORLD EXTRA...
  local name=$1 n=$2 port=$((20000 + RANDOM % 20000)) pids=()
  shift 2
  for r in $(seq 0 $((n - 1))); do
    if [ "$n" -gt 1 ]; then
      MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=$n RANK=$r LOCAL_WORLD_SIZE=$n \
        "$A" "${ARGS[@]}" "$@" -o "$W/$name.pt" > "$W/$name.$r.out" 2>&1 &
    else
      "$A" "${ARGS[@]}" "$@" -o "$W/$name.pt" > "$W/$name.$r.out" 2>&1 &
    fi
    pids+=($!)
  done
  for p in "${pids[@]}"; do wait "$p" || { cat "$W/$name".*.out >&2; exit 1; }; done
}
# median over steps after the first 5 (warm-up) of a field of the JSON-lines log
med() { sed -n "s/.*\"$2\": \([0-9.eE+-]*\).*/\1/p" "$W/$1.pt.log.jsonl" | tail -n +6 | sort -g | \
        awk '{ v[NR] = $1 } END { print (NR ? v[int((NR + 1) / 2)] : 0) }'; }
run one 1
ARGS_SAVED=("${ARGS[@]}")
ARGS=(pretrain --data "$VOL" --matrix 128 --steps "$STEPS" --batch $((2 * BATCH)) --checkpoint-every 100000 --seed 1)
run one_doubled_batch 1
ARGS=("${ARGS_SAVED[@]}")
run two_bucketed 2 --bucket-mb 4
run two_flat 2 --bucket-mb 0
base=$(med one images_per_s)
printf "%-34s %6s %9s %9s %14s %9s\n" run ranks steps/s images/s "all-reduce ms" "vs 1 proc"
for r in one one_doubled_batch two_bucketed two_flat; do
  n=1; b=$BATCH
  case $r in two*) n=2 ;; one_doubled_batch) b=$((2 * BATCH)) ;; esac
  ips=$(med $r images_per_s)
  ar=$(med $r allreduce_s)
  awk -v r="$r" -v n=$n -v ips="$ips" -v b="$b" -v ar="${ar:-0}" -v base="$base" 'BEGIN {
    printf "%-34s %6d %9.3f %9.2f %14.1f %8.2fx\n", r, n, ips / (b * n), ips, ar * 1000, ips / base }'
done
echo "(per-rank batch $BATCH; $(nproc) cores; images/s counts all ranks)"
port=$((20000 + RANDOM % 20000))
MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=1 build/bench/bench_allreduce > /dev/null &
MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=0 build/bench/bench_allreduce
wait
