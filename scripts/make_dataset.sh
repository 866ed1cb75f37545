#!/usr/bin/env bash
# The generalisation data set (docs/data.md): every real MR volume that Debian's packages ship, split into source
# (clean slices for the foundation), target-train (corrupted scans only), target-val (for choosing settings) and
# target-test (never trained or tuned on) by SUBJECT and volume, never by slice of one volume.
#   scripts/make_dataset.sh [OUT]        (default out/dataset)
#   env: MATRICES="128 192 128x160"  test matrices: N (square) or NYxNX (ky lines x readout samples); the network
#                                   pads any size to its stride
#        RS="4 8"            test accelerations; TEST_SLICES=4 slices per test volume and orientation
#        TRAIN_EVERY=1       every n-th slice of the target-train volumes (central 60% of each axis)
#        TRAIN_MATRIX=128    matrix of the target-train scans
#        CLEAN_TRAIN=1       also OUT/target_train_clean: the target-train slices fully sampled, and OUT/target_train_ref:
#                            their clean magnitudes (.nii.gz), for clean-trained baselines and the memorisation
#                            measure only (never for ambient training)
# The volumes come from installed packages, or, where a package is not installed, from its .deb unpacked under
# OUT/debian (apt-get download + dpkg -x: no root, no dependencies). Everything is reproducible from the seeds below.
set -euo pipefail
cd "$(dirname "$0")/.."
A=${AMBIENT:-$PWD/build/apps/ambient}
O=${1:-out/dataset}
MATRICES=${MATRICES:-128 192 128x160}
RS=${RS:-4 8}
TEST_SLICES=${TEST_SLICES:-4}
TRAIN_EVERY=${TRAIN_EVERY:-1}
TRAIN_MATRIX=${TRAIN_MATRIX:-128}
# 8% centre lines, and at least 8 at small matrices (ESPIRiT calibrates 8 lines with a 5x5 kernel, 10 or more with 6x6;
# the clean, fully sampled files calibrate on their whole centre: Scan::calibration_lines).
TRAIN_CENTRE=$(echo "c = 8 / $TRAIN_MATRIX; if (c < 0.08) c = 0.08; c" | bc -l)
[ -x "$A" ] || { echo "make_dataset: $A is missing: build first (scripts/setup.sh)" >&2; exit 1; }
mkdir -p "$O"

# The catalogue (data/dataset.tsv, tab-separated, one volume per line): id, subject, species, contrast, Debian
# package, file, licence, split (source | target-train | target-test), orientations. Subjects: colin27 (Colin Holmes,
# the MNI single-subject template: ch2, ch2better and BrainWeb are all him); inia19 (a template averaged over 19
# rhesus macaques); itk-kmeans, nibabel-epi, dipy-b0 and dipy-t1 are four scans shipped as test data by ITK, nibabel
# and dipy, of people who are not Colin27 (their packages do not name them; each is treated as its own subject).
CATALOGUE_FILE=${CATALOGUE:-data/dataset.tsv}
[ -f "$CATALOGUE_FILE" ] || { echo "make_dataset: catalogue $CATALOGUE_FILE not found" >&2; exit 1; }
CATALOGUE=$(tail -n +2 "$CATALOGUE_FILE" | grep -v '^ *$' | tr '\t' '|')
bad=$(echo "$CATALOGUE" | awk -F'|' 'NF != 9 || ($8 != "source" && $8 != "target-train" && $8 != "target-test") {print NR + 1}')
[ -z "$bad" ] || { echo "make_dataset: $CATALOGUE_FILE line(s) $(echo $bad): expected 9 tab-separated fields, split source|target-train|target-test" >&2; exit 1; }

# Where a catalogue file is: installed, or unpacked from its package's .deb under $O/debian.
locate() {  # FILE PACKAGE
  [ -f "$1" ] && { echo "$1"; return; }
  if [ ! -f "$O/debian/$1" ]; then
    (mkdir -p "$O/debian/.deb" && cd "$O/debian/.deb" && apt-get download "$2" > /dev/null 2>&1) ||
      { echo "make_dataset: $1 is missing and Debian's $2 could not be downloaded: install it (apt-get install $2)" >&2; exit 1; }
    dpkg -x "$O/debian/.deb/$2"_*.deb "$O/debian"
  fi
  [ -f "$O/debian/$1" ] || { echo "make_dataset: Debian's $2 does not hold $1" >&2; exit 1; }
  echo "$O/debian/$1"
}
# A 3-D NIfTI volume that `ambient simulate` reads: 4-D files keep their first frame, .npy slices are wrapped.
volume() {  # ID FILE PACKAGE
  local src dims; src=$(locate "$2" "$3")
  # NIfTI dim[0] and dim[4] (frames); .npy files always need wrapping.
  dims=$(case "$src" in *.npy) echo "npy";; *) python3 -c "import gzip, struct, sys
f = sys.argv[1]; h = (gzip.open if f.endswith('.gz') else open)(f, 'rb').read(56)
d = struct.unpack('<8h', h[40:56]); print(d[0], d[4])" "$src";; esac)
  # dipy's 10 b0 slices were picked from a larger volume with a sheared affine that ITK refuses: voxel sizes only.
  local plain=(); [ "$1" = dipy_b0 ] && plain=(--plain-geometry)
  if [ "$dims" = npy ] || [ "${dims%% *}" -gt 3 ] || [ ${#plain[@]} -gt 0 ]; then
    mkdir -p "$O/volumes"
    [ -f "$O/volumes/$1.nii.gz" ] || python3 scripts/volume_to_nifti.py "${plain[@]}" "$src" "$O/volumes/$1.nii.gz"
    echo "$O/volumes/$1.nii.gz"
  else
    echo "$src"
  fi
}

# The split is by subject: no subject of target-test may be in source or target-train.
train_subjects=$(echo "$CATALOGUE" | awk -F'|' '$8 != "target-test" {print $2}' | sort -u)
test_subjects=$(echo "$CATALOGUE" | awk -F'|' '$8 == "target-test" {print $2}' | sort -u)
overlap=$(comm -12 <(echo "$train_subjects") <(echo "$test_subjects"))
[ -z "$overlap" ] || { echo "make_dataset: subject(s) $overlap in both training and test splits" >&2; exit 1; }

cp "$CATALOGUE_FILE" "$O/catalogue.tsv"
: > "$O/source.args"
mkdir -p "$O/target_train" "$O/target_val" "$O/target_test"
[ "${CLEAN_TRAIN:-0}" = 0 ] || mkdir -p "$O/target_train_clean" "$O/target_train_ref"
n_train=0 n_test=0 file_i=0
while IFS='|' read -r id subject species contrast pkg file licence split orients; do
  vol=$(volume "$id" "$file" "$pkg")
  case $split in
    source)
      for o in $orients; do echo "$vol@$o" >> "$O/source.args"; done;;
    target-train)
      # Corrupted scans only (R = 4, one random mask per slice), 8 slices per file. Of ch2's axial slices, 70, 86
      # and 102 are target-val (docs/results.md's held-out slices), 55, 77, 93, 111 its second validation set and
      # 45, 63, 81, 99, 117, 135 the shipped sample scan (data/samples): none of them is trained on.
      for o in $orients; do
        size=$(python3 - "$vol" "$o" <<'PY'
import gzip, struct, sys
h = gzip.open(sys.argv[1], 'rb').read(56) if sys.argv[1].endswith('.gz') else open(sys.argv[1], 'rb').read(56)
dim = struct.unpack('<8h', h[40:56])
print(dim[{'sagittal': 1, 'coronal': 2, 'axial': 3}[sys.argv[2]]])
PY
)
        lo=$((size * 2 / 10)) hi=$((size * 8 / 10 - 1))
        [ "$size" -le 16 ] && lo=0 hi=$((size - 1))
        picks=()
        for s in $(seq "$lo" "$TRAIN_EVERY" "$hi"); do
          [ "$id/$o" = colin27_1mm/axial ] && case $s in 70|86|102|55|77|93|111|45|63|81|99|117|135) continue;; esac
          picks+=("$s")
        done
        for ((k = 0; k < ${#picks[@]}; k += 8)); do
          sl=$(IFS=,; echo "${picks[*]:k:8}")
          [ -f "$O/target_train/${id}_${o}_$k.h5" ] ||
            "$A" simulate -i "$vol" --orientation "$o" --slices "$sl" --matrix "$TRAIN_MATRIX" --accel 4 --center-fraction "$TRAIN_CENTRE" \
              --seed $((1000 + file_i)) -o "$O/target_train/${id}_${o}_$k.h5" > /dev/null
          # CLEAN_TRAIN=1: the same slices fully sampled (same seed: same phase, coils and noise) and their clean
          # magnitudes, for the clean-trained comparison and the memorisation measure only (issue 16).
          [ "${CLEAN_TRAIN:-0}" = 0 ] || [ -f "$O/target_train_ref/${id}_${o}_$k.nii.gz" ] ||
            "$A" simulate -i "$vol" --orientation "$o" --slices "$sl" --matrix "$TRAIN_MATRIX" --accel 1 --center-fraction "$TRAIN_CENTRE" \
              --seed $((1000 + file_i)) -o "$O/target_train_clean/${id}_${o}_$k.h5" \
              -r "$O/target_train_ref/${id}_${o}_$k.nii.gz" > /dev/null
          file_i=$((file_i + 1)) n_train=$((n_train + $(echo "$sl" | tr ',' '\n' | wc -l)))
        done
      done;;
    target-test)
      for o in $orients; do
        # A slice stored on its own (dipy's coronal T1) is the volume's only i-j plane.
        so=$o sl=(--count "$TEST_SLICES")
        [ "$id" = dipy_t1 ] && so=axial sl=(--slices 0)
        for N in $MATRICES; do
          d="$O/target_test/${id}_${o}_$N"
          mkdir -p "$d"
          ny=${N%x*} nx=${N#*x}
          [ "$nx" = "$N" ] && nx=0
          for R in $RS; do
            [ -f "$d/r$R.h5" ] ||
              "$A" simulate -i "$vol" --orientation "$so" "${sl[@]}" --matrix "$ny" --readout "$nx" --accel "$R" \
                --center-fraction 0.08 --seed $((2000 + 10 * R + ny + nx)) -o "$d/r$R.h5" -r "$d/r${R}_ref.nii.gz" \
                --png "$d/r$R.png" > /dev/null
          done
          n_test=$((n_test + $("$A" info "$d/r4.h5" --json | sed -n 's/.*"slices": \([0-9]*\).*/\1/p' | head -1)))
        done
      done;;
  esac
done <<< "$CATALOGUE"
# Target-val: ch2 axial 70, 86, 102 at R = 4 and 8, at the target-train matrix (for choosing settings and
# checkpoints; never the test).
for R in $RS; do
  [ -f "$O/target_val/r$R.h5" ] ||
    "$A" simulate -i "$(volume colin27_1mm /usr/share/mricron/templates/ch2.nii.gz mricron-data)" --orientation axial \
      --slices 70,86,102 --matrix "$TRAIN_MATRIX" --accel "$R" --center-fraction "$TRAIN_CENTRE" --seed $((200 + R)) \
      -o "$O/target_val/r$R.h5" -r "$O/target_val/r${R}_ref.nii.gz" > /dev/null
done
echo "data set in $O: $(wc -l < "$O/source.args") source volume-orientations, $n_train target-train slices" \
     "in $(ls "$O/target_train" | wc -l) files, target-val at R = ${RS// /, }, $n_test target-test slices" \
     "($(ls "$O/target_test" | wc -l) volume x orientation x matrix sets); catalogue in $O/catalogue.tsv"
