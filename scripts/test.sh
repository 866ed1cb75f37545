#!/usr/bin/env bash
# Runs every test that fits in CI time (labels unit and integration) on the build from scripts/setup.sh, then the
# sanitised configuration (scripts/sanitized.sh: a short fuzz of each harness and the robustness suite under ASan
# and UBSan). AMBIENT_SANITIZED=0 skips the latter; arguments go to ctest.
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/apps/ambient ] || scripts/setup.sh
cmake --build build -j"$(nproc)"
ctest --test-dir build --output-on-failure -j"$(nproc)" -L 'unit|integration' "$@"
[ "${AMBIENT_SANITIZED:-1}" = 0 ] || scripts/sanitized.sh
