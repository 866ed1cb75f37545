#!/usr/bin/env bash
# The LibTorch-only configuration of ambient-gpu-pretrain (issue 17): apps/gpu_pretrain configured on its own, as on a
# GPU machine that has a LibTorch and none of ambient's other dependencies. It must build, link none of ITK, HDF5,
# ISMRMRD, FFTW or Boost, and train exactly as the in-tree build of the same sources does.
# Usage: test_gpu_pretrain_build.sh SOURCE_DIR TORCH_DIR AMBIENT_BINARY IN_TREE_GPU_PRETRAIN WORK_DIR
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SRC=$1
TORCH_DIR=$2
AMBIENT=$3
IN_TREE=$4
WORK=$5
mkdir -p "$WORK" && cd "$WORK" || exit 1
rm -rf run && mkdir run
source "$HERE/lib.sh"

launcher=(); command -v ccache > /dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
# The build folder is kept between runs, so that only changed sources recompile.
if cmake -S "$SRC/apps/gpu_pretrain" -B standalone -DTorch_DIR="$TORCH_DIR" "${launcher[@]}" > configure.log 2>&1 &&
   cmake --build standalone -j"$(nproc)" > build.log 2>&1; then
  ok "apps/gpu_pretrain configures and builds on its own"
else
  bad "standalone build"; tail -30 configure.log build.log; finish; exit 1
fi
B=standalone/ambient-gpu-pretrain
# What the binary itself links (Debian's LibTorch brings HDF5 along on its own, so ldd's closure would list it).
needed=$(objdump -p "$B" | sed -n 's/^ *NEEDED *//p')
others=$(echo "$needed" | grep -iE 'libITK|libitk|libhdf5|libismrmrd|libfftw|libboost|libambient' || true)
[ -n "$needed" ] && [ -z "$others" ] && ok "links LibTorch (and zlib) alone: $(echo $needed)" \
  || { bad "links more than LibTorch:"; echo "$others"; }

cd run || exit 1
"$AMBIENT" pretrain --data /usr/share/mricron/templates/ch2.nii.gz@coronal --matrix 16 --dump-slices slices.bin \
  > dump.log 2>&1 || { bad "dump slices"; cat dump.log; }
NET=(--slices slices.bin --batch 2 --base-channels 8 --channel-mult 1,2 --blocks 1 --attention 1 --device cpu
     --steps 3 --checkpoint-every 3 --threads 1)
"../$B" "${NET[@]}" --out standalone.bin > standalone.log 2>&1 && "$IN_TREE" "${NET[@]}" --out in_tree.bin \
  > in_tree.log 2>&1 && ok "both builds train" || { bad "training"; cat standalone.log in_tree.log; }
cmp -s standalone.bin in_tree.bin && ok "the standalone build's weights equal the in-tree build's byte for byte" \
  || bad "standalone and in-tree builds train differently"
finish
