#!/usr/bin/env bash
# End-to-end tests of the ambient executable: the happy path, the outputs, and clear failures on bad input.
# Usage: test_cli.sh AMBIENT_BINARY WORK_DIR
set -uo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
AMBIENT=$1
WORK=$2
rm -rf "$WORK" && mkdir -p "$WORK" && cd "$WORK" || exit 1
source "$HERE/lib.sh"
expect_success() { local name=$1; shift; if "$@" > "$name.log" 2>&1; then ok "$name"; else bad "$name"; cat "$name.log"; fi; }
# expect_failure NAME PATTERN CMD...: non-zero exit and PATTERN in the error output
expect_failure() {
  local name=$1 pattern=$2; shift 2
  if "$@" > "$name.log" 2>&1; then bad "$name (exit 0)"; cat "$name.log"; return; fi
  if grep -q -- "$pattern" "$name.log"; then ok "$name"; else bad "$name (no '$pattern')"; cat "$name.log"; fi
}

expect_success help "$AMBIENT" --help
expect_success recon_help "$AMBIENT" recon --help
expect_failure unknown_command "unknown command" "$AMBIENT" frobnicate
expect_failure no_command "usage" "$AMBIENT"

# Simulate a small scan with a reference, describe it, reconstruct it.
expect_success simulate "$AMBIENT" simulate -o scan.h5 -r ref.nii.gz --count 2 --matrix 64 --coils 6 \
  --center-fraction 0.2 --accel 3 --seed 2 --png sim.png
[ -s scan.h5 ] && [ -s ref.nii.gz ] && [ -s sim.png ] && ok "simulate outputs" || bad "simulate outputs"
expect_success info "$AMBIENT" info scan.h5
grep -q "coils         6" info.log && grep -q "R = 3" info.log && ok "info content" || { bad "info content"; cat info.log; }
expect_success info_json "$AMBIENT" info scan.h5 --json
grep -q '"coils": 6' info_json.log && ok "info json" || bad "info json"
expect_success recon_cg "$AMBIENT" recon scan.h5 -o cg.nii.gz --png png --reference ref.nii.gz --metrics cg.json
[ -s cg.nii.gz ] && [ -s png/slice_000.png ] && [ -s png/slice_001.png ] && ok "recon outputs" || bad "recon outputs"
grep -q '"psnr"' cg.json && ok "metrics json" || { bad "metrics json"; cat cg.json; }
expect_success recon_zf "$AMBIENT" recon scan.h5 --method zero-filled -o zf.nii.gz --reference ref.nii.gz \
  --metrics zf.json
# CG-SENSE must beat zero-filled on this R=3 scan.
psnr() { sed -n 's/.*"psnr": \([0-9.]*\).*/\1/p' "$1"; }
awk -v a="$(psnr cg.json)" -v b="$(psnr zf.json)" 'BEGIN { exit !(a > b + 2) }' && ok "cg-sense beats zero-filled" \
  || bad "cg-sense beats zero-filled ($(psnr cg.json) vs $(psnr zf.json))"

# Conversions.
expect_success convert_cfl "$AMBIENT" convert scan.h5 -o scan.cfl
[ -s scan.cfl ] && [ -s scan.hdr ] && ok "cfl files" || bad "cfl files"
expect_failure fastmri_needs_one_mask "one mask for all slices" "$AMBIENT" convert scan.h5 -o x.h5 --to fastmri
expect_success simulate_same_mask "$AMBIENT" simulate -o same.h5 --count 2 --matrix 64 --coils 4 --same-mask \
  --center-fraction 0.2 --accel 3
expect_success convert_fastmri "$AMBIENT" convert same.h5 -o scan_fastmri.h5 --to fastmri
expect_success info_fastmri "$AMBIENT" info scan_fastmri.h5
grep -q "format        fastmri" info_fastmri.log && ok "fastmri detected" || bad "fastmri detected"
expect_success recon_cfl "$AMBIENT" recon scan.cfl -o from_cfl.nii.gz
if command -v bart > /dev/null; then
  expect_success bart_reads_our_cfl bart show -m scan
  # Coil maps from bart ecalib drive our reconstruction (--coil-maps), one slice.
  expect_success one_slice "$AMBIENT" simulate -o one.h5 -r one_ref.nii.gz --count 1 --matrix 64 --coils 6 \
    --center-fraction 0.2 --accel 3 --seed 4
  "$AMBIENT" convert one.h5 --prewhiten -o one_k.cfl > /dev/null && bart ecalib -m1 -r 20 one_k one_maps > /dev/null 2>&1
  expect_success recon_bart_maps "$AMBIENT" recon one.h5 --coil-maps one_maps -o one_bart.nii.gz --reference one_ref.nii.gz \
    --metrics one_bart.json
  expect_success recon_own_maps "$AMBIENT" recon one.h5 -o one_own.nii.gz --reference one_ref.nii.gz --metrics one_own.json
  # Same data, maps from two ESPIRiT implementations: within 1 dB of each other.
  awk -v a="$(psnr one_bart.json)" -v b="$(psnr one_own.json)" 'BEGIN { d = a - b; exit !(d < 1 && d > -1) }' \
    && ok "bart maps and ours agree ($(psnr one_bart.json) vs $(psnr one_own.json) dB)" || bad "bart vs own maps"
  expect_failure maps_mismatch "do not match" "$AMBIENT" recon scan.h5 --coil-maps one_maps -o never.nii.gz
fi

# The NIfTI lands where the scanner put it: nibabel's RAS affine maps voxel (nx/2, ny/2, 0) to slice 0's position.
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3  # Debian's python has python3-nibabel; a pyenv one may not
if $PY -c "import nibabel" 2> /dev/null; then
  pos=$(sed -n 's/.*"position_first_slice": \[\(.*\)\].*/\1/p' info_json.log)
  if $PY - "$pos" << 'PY'
import sys, nibabel, numpy as np
lps = np.array([float(v) for v in sys.argv[1].split(",")])
img = nibabel.load("cg.nii.gz")
nx, ny, nz = img.shape
ras = img.affine @ np.array([nx // 2, ny // 2, 0, 1.0])
expected = np.array([-lps[0], -lps[1], lps[2]])  # LPS -> RAS
sys.exit(0 if np.allclose(ras[:3], expected, atol=1e-3) and nz == 2 else 1)
PY
  then ok "nibabel geometry"; else bad "nibabel geometry"; fi
else
  bad "nibabel geometry (python3-nibabel missing; scripts/setup.sh installs it)"
fi

# Bad input: clear error, non-zero exit, and no output file left behind.
expect_failure missing_file "not found" "$AMBIENT" recon nothing.h5 -o never.nii.gz
head -c 20000 scan.h5 > truncated.h5
expect_failure truncated_file "error" "$AMBIENT" recon truncated.h5 -o never.nii.gz
echo "garbage" > junk.h5
expect_failure junk_file "neither HDF5" "$AMBIENT" info junk.h5
expect_failure bad_method "expected zero-filled|cg-sense" "$AMBIENT" recon scan.h5 --method magic -o never.nii.gz
expect_failure bad_option "unrecognised option\|unrecognized option" "$AMBIENT" recon scan.h5 --frobnicate -o x.nii.gz
expect_success small_reference "$AMBIENT" simulate -o small.h5 -r small_ref.nii.gz --count 1 --matrix 32
expect_failure reference_shape "expected a volume" "$AMBIENT" recon scan.h5 -o never.nii.gz --reference small_ref.nii.gz
expect_failure impossible_accel "centre fraction" "$AMBIENT" simulate -o never.h5 --center-fraction 0.5 --accel 4 --count 1 --matrix 32
expect_failure missing_dir "does not exist" "$AMBIENT" recon scan.h5 -o no/such/dir/out.nii.gz
ls never* 2> /dev/null && bad "a failed command left an output" || ok "no partial outputs"
ls .*.tmp* 2> /dev/null && bad "temporary files left" || ok "no temporary files"

finish
