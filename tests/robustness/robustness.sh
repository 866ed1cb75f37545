#!/usr/bin/env bash
# The robustness suite (issue 18, docs/reliability.md): every subcommand against every class of bad input. A case
# passes when the command exits non-zero but not by a signal or a time-out, prints exactly one line
# "ambient: error: ..." that names the bad file (or option), and leaves nothing in the output folder. Bit-flipped
# files may still be valid (a flipped sample is just another value): there a case passes when the command either
# succeeds and writes its output, or fails as above; it never crashes or hangs.
#   tests/robustness/robustness.sh AMBIENT WORKDIR [SRCDIR]
# Prints one line per failed case, then "N passed, N failed" per class and in all; exits 1 if any case failed.
set -uo pipefail
A=$1
W=$2
HERE=$(cd "$(dirname "$0")" && pwd)
PY=/usr/bin/python3
TIMEOUT=${ROBUSTNESS_TIMEOUT:-120}
rm -rf "$W" && mkdir -p "$W" && cd "$W" || exit 1

# Valid inputs, small (32 x 32, 4 coils, 2 slices, 8 calibration lines).
scan=(--matrix 32 --count 2 --coils 4 --center-fraction 0.25 --seed 3)
"$A" simulate -o good_ism.h5 -r good_ref.nii.gz "${scan[@]}" > /dev/null &&
  "$A" simulate -o good_fm.h5 --format fastmri --same-mask "${scan[@]}" > /dev/null &&
  "$A" simulate -o good.cfl --format cfl "${scan[@]}" > /dev/null &&
  "$A" simulate -o good48.h5 -r good48_ref.nii.gz --matrix 48 --count 2 --coils 4 --center-fraction 0.25 > /dev/null &&
  "$A" recon good_ism.h5 -o good_recon.nii.gz --method zero-filled > /dev/null &&
  "$A" recon good48.h5 -o good48_recon.nii.gz --method zero-filled --maps maps48.cfl > /dev/null 2>&1 &&
  "$A" pretrain --data /usr/share/mricron/templates/ch2.nii.gz --matrix 32 --base-channels 8 --steps 2 --batch 2 \
    --out good.pt > /dev/null &&
  "$A" finetune --data good_ism.h5 --init good.pt --steps 1 --batch 1 --out good_ft.pt > /dev/null ||
  { echo "robustness: could not make the valid inputs"; exit 1; }
$PY "$HERE/make_faults.py" good_fm.h5 good_ism.h5 good.cfl good_ref.nii.gz good.pt faults ||
  { echo "robustness: make_faults.py failed (python3-h5py, python3-nibabel: scripts/setup.sh installs them)"; exit 1; }

# Generic damage to any file: empty, truncated at three depths, bytes flipped at fixed offsets.
damage() {  # FILE PREFIX: writes PREFIX_empty, PREFIX_trunc{5,50,95}, PREFIX_flip{0..7} with FILE's extension
  local f=$1 p=$2 ext=${1#*.} size
  size=$(stat -c %s "$f")
  : > "${p}_empty.$ext"
  for pct in 5 50 95; do head -c $((size * pct / 100)) "$f" > "${p}_trunc$pct.$ext"; done
  local i=0
  for off in 0 8 48 300 1500 $((size / 3)) $((size / 2)) $((size - 40)); do
    $PY -c "import sys; b = bytearray(open(sys.argv[1], 'rb').read()); o = min(int(sys.argv[2]), len(b) - 1)
b[o] ^= 0xA5; open(sys.argv[3], 'wb').write(b)" "$f" "$off" "${p}_flip$i.$ext"
    i=$((i + 1))
  done
}
mkdir -p dmg
damage good_ism.h5 dmg/ism
damage good_fm.h5 dmg/fm
damage good_ref.nii.gz dmg/ref
damage good.pt dmg/ckpt
for v in empty trunc5 trunc50 trunc95 flip0 flip1 flip2 flip3 flip4 flip5 flip6 flip7; do  # .cfl data, header kept
  cp good.hdr "dmg/cfl_$v.hdr"
done
damage good.cfl dmg/cfl

declare -A pass fail
classes=()
count() {  # CLASS OK
  [[ -v "pass[$1]" ]] || { pass[$1]=0; fail[$1]=0; classes+=("$1"); }
  if [ "$2" = 1 ]; then pass[$1]=$((pass[$1] + 1)); else fail[$1]=$((fail[$1] + 1)); fi
}

# run_case MODE CLASS NAMED CMD...: MODE refuse (must fail cleanly) or survive (may succeed; must not crash).
# NAMED: text the error line must contain (the bad file's name, an option). Outputs go to out/, emptied first.
run_case() {
  local mode=$1 cls=$2 named=$3
  shift 3
  rm -rf out && mkdir out
  timeout "$TIMEOUT" "$@" > case.stdout 2> case.stderr
  local rc=$? why=""
  local errors left lines writes=0
  [[ " $* " == *" out/"* ]] && writes=1
  # Progress bars (label [###...] i/n ...) may come first; otherwise stderr is the one error line.
  grep -avE '\[[#.]+\] +[0-9]+/[0-9]+' case.stderr | grep -av '^$' > case.messages
  errors=$(grep -c '^ambient: error' case.messages)
  lines=$(wc -l < case.messages)
  left=$(find out -mindepth 1 | head -3 | tr '\n' ' ')
  if grep -aqE 'ERROR: AddressSanitizer|runtime error:|ERROR: LeakSanitizer' case.stderr; then  # sanitised build
    why="sanitizer: $(grep -aE 'ERROR: AddressSanitizer|runtime error:|SUMMARY' case.stderr | head -3 | tr '\n' '|')"
    cp case.stderr "sanitizer_$(( ${#classes[@]} ))_$RANDOM.log"
  elif [ "$rc" -ge 124 ]; then
    why="crashed or hung (exit $rc)"
  elif [ "$rc" -eq 0 ]; then
    [ "$mode" = survive ] || why="accepted (exit 0)"
    [ "$mode" = survive ] && [ "$writes" = 1 ] && [ -z "$left" ] && why="exit 0 but no output written"
  elif [ "$errors" -ne 1 ] || [ "$lines" -ne 1 ]; then
    why="exit $rc but $lines stderr message line(s), $errors error line(s): $(head -c 300 case.messages | tr '\n' '|')"
  elif ! grep -qF -- "$named" case.stderr; then
    why="the error does not name '$named': $(head -c 300 case.stderr)"
  elif [ -n "$left" ]; then
    why="failed but left $left"
  fi
  if [ -z "$why" ]; then
    count "$cls" 1
  else
    count "$cls" 0
    echo "FAILED [$cls] $* : $why"
  fi
}

# The subcommands that read each format, as "SUBCOMMAND ARGS" with @ for the input file; outputs go to out/.
scan_readers=(
  "info @"
  "convert @ -o out/x.nii.gz"
  "convert @ -o out/x.cfl"
  "recon @ -o out/x.nii.gz --method zero-filled"
  "recon @ -o out/x.nii.gz"
  "finetune --data @ --base-channels 8 --steps 1 --batch 1 --out out/x.pt"
)
ref_readers=(
  "recon good_ism.h5 -o out/x.nii.gz --method zero-filled --reference @"
  "eval --reference @ good_recon.nii.gz --json out/x.json"
  "simulate -i @ -o out/x.h5 --matrix 32 --count 2 --coils 4"
  "pretrain --data @ --matrix 32 --base-channels 8 --steps 1 --batch 1 --out out/x.pt"
  "inpaint --model good.pt -i @ --erase-blocks 4 --block-size 4,8 --samples 1 --steps 2 -o out/x.nii.gz"
)
ckpt_readers=(
  "info @"
  "export @ -o out/x.pt"
  "sample --model @ -n 1 --size 32 --steps 2 -o out/x.png"
  "recon good_ism.h5 --method posterior --model @ --steps 2 --samples 1 -o out/x.nii.gz"
  "finetune --data good_ism.h5 --init @ --steps 1 --batch 1 --out out/x.pt"
  "inpaint --model @ -i good_ref.nii.gz --erase-blocks 4 --block-size 4,8 --samples 1 --steps 2 -o out/x.nii.gz"
)
# run_readers MODE CLASS FILE READERS...
run_readers() {
  local mode=$1 cls=$2 file=$3
  shift 3
  local r
  for r in "$@"; do
    read -r -a words <<< "${r//@/$file}"
    local name
    name=$(basename "$file")
    run_case "$mode" "$cls" "${name%%.*}" "$A" "${words[@]}"  # the file's name without extensions
  done
}

# 1. Missing, empty, truncated and bit-flipped files of each format.
for fmt in ism fm cfl ref ckpt; do
  case $fmt in
    ism | fm) ext=h5 readers=("${scan_readers[@]}") ;;
    cfl) ext=cfl readers=("${scan_readers[@]}") ;;
    ref) ext=nii.gz readers=("${ref_readers[@]}") ;;
    ckpt) ext=pt readers=("${ckpt_readers[@]}") ;;
  esac
  run_readers refuse missing "dmg/${fmt}_absent.$ext" "${readers[@]}"
  run_readers refuse empty "dmg/${fmt}_empty.$ext" "${readers[@]}"
  for pct in 5 50 95; do run_readers refuse truncated "dmg/${fmt}_trunc$pct.$ext" "${readers[@]}"; done
  # Bit flips through the readers only (the first two of each list): the parsers are what they test.
  for i in 0 1 2 3 4 5 6 7; do run_readers survive bitflip "dmg/${fmt}_flip$i.$ext" "${readers[@]:0:2}"; done
done

# 2. Wrong layouts, dtypes and values of each format.
for f in faults/fm_*.h5 faults/ism_*.h5 faults/cfl_*.cfl; do
  run_readers refuse layout "$f" "${scan_readers[0]}" "${scan_readers[3]}" "${scan_readers[5]}"
done
for f in faults/ref_*.nii.gz; do run_readers refuse layout "$f" "${ref_readers[@]:0:2}"; done
for f in faults/ckpt_*.pt; do run_readers refuse layout "$f" "${ckpt_readers[@]}"; done

# Inputs the fuzzers found (tests/fuzz/regressions, scripts/fuzz.sh), each once a crash; and inputs that crash
# inside HDF5 itself (tests/fuzz/third_party), which `ambient` must turn into its one error line.
for f in "$HERE"/../fuzz/regressions/scan/* "$HERE"/../fuzz/regressions/checkpoint/* "$HERE"/../fuzz/third_party/*.h5; do
  [ -f "$f" ] || continue
  case $f in
    */scan/* | */third_party/*) cp "$f" "faults/fuzz_$(basename "$f")"; run_readers refuse fuzzed "faults/fuzz_$(basename "$f")" "${scan_readers[0]}" "${scan_readers[3]}" ;;
    */checkpoint/*) cp "$f" "faults/fuzz_$(basename "$f")"; run_readers refuse fuzzed "faults/fuzz_$(basename "$f")" "${ckpt_readers[0]}" "${ckpt_readers[2]}" ;;
  esac
done

# 3. Shapes that disagree: a reference of another matrix, a reconstruction of another matrix.
run_case refuse shapes good48_ref.nii.gz "$A" recon good_ism.h5 -o out/x.nii.gz --method zero-filled --reference good48_ref.nii.gz
run_case refuse shapes good48_ref.nii.gz "$A" eval --reference good48_ref.nii.gz good_recon.nii.gz --json out/x.json
run_case refuse shapes good_ref.nii.gz "$A" recon good48.h5 --method posterior --model good_ft.pt --steps 2 --samples 1 -o out/x.nii.gz --reference good_ref.nii.gz
run_case refuse shapes --coil-maps "$A" recon good_ism.h5 --coil-maps maps48.cfl -o out/x.nii.gz
run_case refuse shapes good48_ref.nii.gz "$A" inpaint --model good.pt -i good_ref.nii.gz --mask good48_ref.nii.gz -o out/x.nii.gz

# 4. Absurd options.
while IFS='|' read -r named args; do
  [ -z "$named" ] && continue
  read -r -a words <<< "$args"
  run_case refuse options "$named" "$A" "${words[@]}"
done <<'EOF'
--steps|finetune --data good_ism.h5 --init good.pt --steps -5 --out out/x.pt
--steps|pretrain --data good_ref.nii.gz --steps 0 --out out/x.pt
--batch|pretrain --data good_ref.nii.gz --batch 0 --out out/x.pt
--lr|pretrain --data good_ref.nii.gz --lr -1 --out out/x.pt
--delta|finetune --data good_ism.h5 --init good.pt --delta 1.5 --out out/x.pt
--further-accel|finetune --data good_ism.h5 --init good.pt --further-accel 0.5 --out out/x.pt
--corruption|finetune --data good_ism.h5 --init good.pt --corruption magic --out out/x.pt
--objective|finetune --data good_ism.h5 --init good.pt --objective magic --out out/x.pt
--precond|finetune --data good_ism.h5 --init good.pt --precond magic --out out/x.pt
--method|recon good_ism.h5 --method magic -o out/x.nii.gz
--model|recon good_ism.h5 --method posterior -o out/x.nii.gz
--samples|recon good_ism.h5 --method posterior --model good.pt --samples 0 -o out/x.nii.gz
--further-accel|recon good_ism.h5 --method posterior --model good_ft.pt --further-accel 0.5 -o out/x.nii.gz
--precision|recon good_ism.h5 --method posterior --model good.pt --precision fp8 -o out/x.nii.gz
--accel|simulate -o out/x.h5 --accel 0.5 --matrix 32 --count 1
--matrix|simulate -o out/x.h5 --matrix 0 --count 1
--coils|simulate -o out/x.h5 --coils 0 --matrix 32 --count 1
--mask|simulate -o out/x.h5 --mask magic --matrix 32 --count 1
--format|simulate -o out/x.h5 --format magic --matrix 32 --count 1
--orientation|simulate -o out/x.h5 --orientation magic --matrix 32 --count 1
--to|convert good_ism.h5 -o out/x.h5 --to magic
-n|sample --model good.pt -n 0 -o out/x.png
--size|sample --model good.pt -n 1 --size 0 -o out/x.png
--samples|inpaint --model good.pt -i good_ref.nii.gz --erase-blocks 4 --block-size 4,8 --samples 0 -o out/x.nii.gz
--noise-var|inpaint --model good.pt -i good_ref.nii.gz --erase-blocks 4 --block-size 4,8 --noise-var -1 -o out/x.nii.gz
--block-size|inpaint --model good.pt -i good_ref.nii.gz --erase-blocks 4 --block-size 8,4 -o out/x.nii.gz
--erase-blocks|inpaint --model good.pt -i good_ref.nii.gz -o out/x.nii.gz
--threads|--threads 0 info good_ism.h5
--no-such-option|recon good_ism.h5 -o out/x.nii.gz --no-such-option
magic|magic good_ism.h5
EOF

# 5. Outputs that cannot be written: a folder that does not exist, a path under a regular file, an unknown type.
echo plain > plainfile
while IFS='|' read -r named args; do
  [ -z "$named" ] && continue
  read -r -a words <<< "$args"
  run_case refuse unwritable "$named" "$A" "${words[@]}"
done <<'EOF'
no/such/dir|recon good_ism.h5 -o no/such/dir/x.nii.gz --method zero-filled
plainfile|recon good_ism.h5 -o plainfile/x.nii.gz --method zero-filled
plainfile|convert good_ism.h5 -o plainfile/x.cfl
plainfile|simulate -o plainfile/x.h5 --matrix 32 --count 1
plainfile|export good.pt -o plainfile/x.pt
plainfile|sample --model good.pt -n 1 --size 32 --steps 2 -o plainfile/x.png
plainfile|finetune --data good_ism.h5 --init good.pt --steps 1 --batch 1 --out plainfile/x.pt
plainfile|eval --reference good_ref.nii.gz good_recon.nii.gz --json plainfile/x.json
plainfile|inpaint --model good.pt -i good_ref.nii.gz --erase-blocks 4 --block-size 4,8 -o plainfile/x.nii.gz
x.xyz|convert good_ism.h5 -o out/x.xyz
EOF

echo
total_pass=0 total_fail=0
for c in "${classes[@]}"; do
  printf "%-11s %3d passed, %3d failed\n" "$c" "${pass[$c]}" "${fail[$c]}"
  total_pass=$((total_pass + pass[$c])) total_fail=$((total_fail + fail[$c]))
done
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" -eq 0 ]
