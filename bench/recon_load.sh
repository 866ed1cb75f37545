#!/usr/bin/env bash
# Load benchmark (issue 18, docs/reliability.md): posterior recon of a SLICES-slice volume, peak memory (RSS) and
# time, with slices sampled in memory-bounded batches (the default) against all slices in one batch (the old
# behaviour, K × S images at once: --slice-batch SLICES), and a 2-rank sharded recon (loopback, as torchrun
# launches it; the peak of the larger rank). Run from the repository root after scripts/setup.sh:
#   bench/recon_load.sh [SLICES=200] [MATRIX=128] [STEPS=1]
# STEPS only shortens the run: memory does not depend on it. Writes out/load/load.tsv.
set -euo pipefail
cd "$(dirname "$0")/.."
S=${1:-200}
N=${2:-128}
STEPS=${3:-1}
A=$PWD/build/apps/ambient
M=$PWD/data/models/ambient_dataset_r4.pt
O=out/load
mkdir -p "$O"
vol=$O/vol${S}_${N}.h5
[ -f "$vol" ] || "$A" simulate -o "$vol" --count "$S" --matrix "$N" > /dev/null
base=(recon "$vol" --method posterior --model "$M" --steps "$STEPS")
measure() {  # LABEL ARGS...: one process; prints label, seconds, peak RSS in MB
  local label=$1
  shift
  /usr/bin/time -f "%e %M" -o "$O/time_$label" "$A" "${base[@]}" "$@" -o "$O/$label.nii.gz" > "$O/$label.log" 2>&1 ||
    { echo "load: $label failed, see $O/$label.log" >&2; exit 1; }
  read -r sec kb < "$O/time_$label"
  printf '%s\t%s\t%.0f\n' "$label" "$sec" "$((kb / 1024))"
}
{
  printf 'run\tseconds\tpeak_rss_mb\n'
  measure batched
  measure one_batch --slice-batch "$S"
  # Two ranks on this machine, one thread each; the peak is the larger of the two.
  port=$((29500 + RANDOM % 1000))
  for r in 0 1; do
    MASTER_ADDR=127.0.0.1 MASTER_PORT=$port WORLD_SIZE=2 RANK=$r LOCAL_WORLD_SIZE=2 /usr/bin/time -f "%e %M" \
      -o "$O/time_rank$r" "$A" --threads 1 "${base[@]}" -o "$O/sharded_r$r.nii.gz" > "$O/sharded_r$r.log" 2>&1 &
  done
  wait
  read -r s0 k0 < "$O/time_rank0"
  read -r s1 k1 < "$O/time_rank1"
  printf 'sharded_2_ranks\t%s\t%.0f\n' "$(echo "if ($s0 > $s1) $s0 else $s1" | bc)" "$(( (k0 > k1 ? k0 : k1) / 1024 ))"
} | tee "$O/load.tsv"
awk -F'\t' 'NR > 1 { t[$1] = $2; m[$1] = $3 }
  END { printf "one batch / batched: memory %.2fx, time %.2fx (%d slices)\n", m["one_batch"] / m["batched"],
        t["one_batch"] / t["batched"], '"$S"' }' "$O/load.tsv"
