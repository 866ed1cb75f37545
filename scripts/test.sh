#!/usr/bin/env bash
# Runs every test that fits in CI time (labels unit and integration) on the build from scripts/setup.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/apps/ambient ] || scripts/setup.sh
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" -L 'unit|integration' "$@"
