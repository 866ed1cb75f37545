#!/usr/bin/env bash
# The data set tools (docs/data.md): scripts/volume_to_nifti.py (4-D first frame, .npy slices, truncated input) and
# scripts/make_dataset.sh (a catalogue's split by subject, its refusals).
#   test_dataset_cli.sh AMBIENT WORKDIR
set -uo pipefail
A=$1 W=$2
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/lib.sh"
rm -rf "$W" && mkdir -p "$W"
CONVERT="python3 $ROOT/scripts/volume_to_nifti.py"
T=/usr/share/mricron/templates

# A 4-D int16 NIfTI (8 x 6 x 4 x 2, frame f holds 1000 f + voxel index) and a 2-D float64 .npy (16 x 12 ramp).
python3 - "$W" <<'PY'
import gzip, struct, sys
w = sys.argv[1]
h = bytearray(352)
struct.pack_into('<i', h, 0, 348)
struct.pack_into('<8h', h, 40, 4, 8, 6, 4, 2, 1, 1, 1)
struct.pack_into('<hh', h, 70, 4, 16)
struct.pack_into('<8f', h, 76, 1, 2, 2, 3, 1, 1, 1, 1)
struct.pack_into('<f', h, 108, 352)
h[344:348] = b'n+1\0'
data = b''.join(struct.pack('<h', 1000 * f + v) for f in range(2) for v in range(8 * 6 * 4))
gzip.open(f'{w}/four_d.nii.gz', 'wb').write(bytes(h) + data)
gzip.open(f'{w}/truncated.nii.gz', 'wb').write(bytes(h) + data[:100])
hdr = "{'descr': '<f8', 'fortran_order': False, 'shape': (16, 12), }"
hdr += ' ' * (118 - len(hdr)) + '\n'
arr = b''.join(struct.pack('<d', 1.0 + (y * 12 + x) / 10) for y in range(16) for x in range(12))
open(f'{w}/slice.npy', 'wb').write(b'\x93NUMPY\x01\x00' + struct.pack('<H', len(hdr)) + hdr.encode() + arr)
PY

$CONVERT "$W/four_d.nii.gz" "$W/three_d.nii.gz" && python3 - "$W/three_d.nii.gz" <<'PY' && ok "4-D NIfTI keeps its first frame" || bad "4-D NIfTI keeps its first frame"
import gzip, struct, sys
raw = gzip.open(sys.argv[1], 'rb').read()
dim = struct.unpack('<8h', raw[40:56])
vals = struct.unpack('<192h', raw[352:352 + 384])
assert dim[:5] == (3, 8, 6, 4, 1), dim
assert len(raw) == 352 + 384 and vals == tuple(range(192)), 'first frame'
PY
$CONVERT "$W/truncated.nii.gz" "$W/t.nii.gz" > "$W/trunc.log" 2>&1
[ $? -ne 0 ] && grep -q "truncated" "$W/trunc.log" && [ ! -e "$W/t.nii.gz" ] && [ ! -e "$W/t.nii.gz.partial" ] \
  && ok "truncated NIfTI: error, no output" || bad "truncated NIfTI: error, no output ($(cat "$W/trunc.log"))"
$CONVERT "$W/slice.npy" "$W/slice.nii.gz" --spacing 2 &&
  "$A" simulate -i "$W/slice.nii.gz" --orientation axial --slices 0 --matrix 32 --mask full -o "$W/slice.h5" \
    -r "$W/slice_ref.nii.gz" > /dev/null 2>&1 && ok ".npy slice becomes a volume that simulate reads" \
  || bad ".npy slice becomes a volume that simulate reads"
$CONVERT "$W/missing.npy" "$W/m.nii.gz" > /dev/null 2>&1 && bad "missing input is refused" || ok "missing input is refused"

# make_dataset on a two-volume catalogue: ch2 (subject colin27) trains, inia19 (another subject) tests.
if [ -f "$T/ch2.nii.gz" ] && [ -f "$T/inia19-t1-brain.nii.gz" ]; then
  H="id	subject	species	contrast	package	file	licence	split	orientations"
  printf "%s\nc\tcolin27\thuman\tT1\tmricron-data\t%s\tBSD-3-clause\ttarget-train\taxial\nm\tinia19\tmacaque\tT1\tmricron-data\t%s\tBSD-3-clause\ttarget-test\taxial coronal\n" \
    "$H" "$T/ch2.nii.gz" "$T/inia19-t1-brain.nii.gz" > "$W/good.tsv"
  AMBIENT=$A CATALOGUE=$W/good.tsv MATRICES=32 RS=4 TEST_SLICES=2 TRAIN_EVERY=40 \
    bash "$ROOT/scripts/make_dataset.sh" "$W/ds" > "$W/ds.log" 2>&1
  rc=$?
  [ $rc -eq 0 ] && [ "$(ls "$W/ds/target_train" | wc -l)" -ge 1 ] && [ -f "$W/ds/target_test/m_axial_32/r4.h5" ] &&
    [ -f "$W/ds/target_test/m_coronal_32/r4_ref.nii.gz" ] && [ -f "$W/ds/target_val/r4.h5" ] &&
    cmp -s "$W/good.tsv" "$W/ds/catalogue.tsv" && ok "make_dataset writes train, val and test sets" ||
    bad "make_dataset writes train, val and test sets (rc $rc: $(tail -2 "$W/ds.log"))"
  n=$("$A" info "$W/ds/target_test/m_axial_32/r4.h5" --json | sed -n 's/.*"slices": \([0-9]*\).*/\1/p')
  [ "$n" = 2 ] && ok "TEST_SLICES slices per test set" || bad "TEST_SLICES slices per test set (got $n)"
  # The same subject in training and test is refused before anything is written.
  sed 's/\tinia19\tmacaque/\tcolin27\thuman/' "$W/good.tsv" > "$W/overlap.tsv"
  AMBIENT=$A CATALOGUE=$W/overlap.tsv bash "$ROOT/scripts/make_dataset.sh" "$W/ds2" > "$W/ov.log" 2>&1
  [ $? -ne 0 ] && grep -q "colin27 in both training and test" "$W/ov.log" && [ ! -e "$W/ds2/catalogue.tsv" ] &&
    ok "a subject in both splits is refused" || bad "a subject in both splits is refused ($(cat "$W/ov.log"))"
  printf "%s\nc\tcolin27\thuman\tT1\tmricron-data\t%s\tBSD-3-clause\ttrain\taxial\n" "$H" "$T/ch2.nii.gz" > "$W/bad.tsv"
  AMBIENT=$A CATALOGUE=$W/bad.tsv bash "$ROOT/scripts/make_dataset.sh" "$W/ds3" > "$W/bad.log" 2>&1
  [ $? -ne 0 ] && grep -q "line(s) 2" "$W/bad.log" && ok "an unknown split is refused with its line" ||
    bad "an unknown split is refused with its line ($(cat "$W/bad.log"))"
else
  echo "skip: mricron-data is not installed"
fi
finish
