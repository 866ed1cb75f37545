#!/usr/bin/env bash
# One run, both languages: the C++ training step (bench_train) and the same step in Python (train_step.py, Debian's
# python3-torch on the same LibTorch 1.13), fp32 and bf16. Prints the images/s ratios.
set -euo pipefail
cd "$(dirname "$0")/.."
ARGS=(--threads "$(nproc)" "$@")
cpp=$(build/bench/bench_train "${ARGS[@]}")
py=$(/usr/bin/python3 bench/train_step.py "${ARGS[@]}")
echo "$cpp"
echo "$py"
rate() { echo "$1" | grep "$2" | sed -n 's/.* \([0-9.]*\) images\/s/\1/p'; }
for p in fp32 bf16; do
  awk -v c="$(rate "$cpp" "C++ $p")" -v y="$(rate "$py" "Python $p")" -v p=$p \
    'BEGIN { printf "%s: C++ / Python images/s = %.2f\n", p, c / y }'
done
awk -v a="$(rate "$cpp" "C++ bf16")" -v b="$(rate "$cpp" "C++ fp32")" 'BEGIN { printf "C++ bf16 / fp32 = %.2f\n", a / b }'
