#!/usr/bin/env bash
# Installs ambient's Debian dependencies (idempotent, non-interactive), configures and builds into build/.
# Usage: scripts/setup.sh            (as root, or with sudo available)
set -euo pipefail
cd "$(dirname "$0")/.."

# libopenblas0-pthread: without it libblas.so.3 is the reference BLAS, single-threaded and unblocked, and LibTorch's
# fp32 matrix products (attention, linear layers) run 4x slower end to end (bench/blas_compare.sh).
PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config git bc clang libclang-rt-14-dev
  libopenblas0-pthread libtorch-dev libgloo-dev libinsighttoolkit5-dev libgdcm-tools libfftw3-dev libhdf5-dev
  libismrmrd-dev ismrmrd-tools libboost-program-options-dev libgtest-dev
  mricron-data bart python3 python3-numpy python3-nibabel python3-torch python3-matplotlib python3-h5py
)

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "setup: installing ${missing[*]}"
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

export CCACHE_DIR="${CCACHE_DIR:-$HOME/.cache/ccache}"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release ${AMBIENT_CMAKE_ARGS:-} > build-configure.log 2>&1 \
  || { cat build-configure.log; exit 1; }
cmake --build build -j"$(nproc)"
