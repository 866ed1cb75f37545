#!/usr/bin/env bash
# The summary of bench/generalise.sh's CSV (set,matrix,R,method,psnr,ssim,nmse,s_per_slice; several runs' CSVs may
# be given and are read as one): the mean over sets per matrix, R and method (each set weighs the same, whatever its
# number of slices), then each LABEL's mean PSNR / SSIM minus BART l1-wavelet's, as markdown.
#   bench/generalise_summary.sh out/generalise/generalise.csv [MORE.csv...] -- ambient foundation
set -euo pipefail
csvs=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do csvs+=("$1"); shift; done
[ $# -gt 0 ] && shift
[ ${#csvs[@]} -ge 1 ] || { echo "usage: $0 CSV... -- LABEL..." >&2; exit 2; }
for f in "${csvs[@]}"; do [ -f "$f" ] || { echo "generalise_summary: $f not found" >&2; exit 1; }; done
summary=$(awk -F, 'FNR > 1 { k = $2 "," $3 "," $4; n[k]++; p[k] += $5; s[k] += $6; e[k] += $7; t[k] += $8
                              if (!(k in order)) order[k] = ++rows }
  END { for (k in n) { split(k, a, ","); printf "%s|%s|%s|%.2f|%.4f|%.4f|%.2f|%d|%d\n", a[1], a[2], a[3], p[k]/n[k], s[k]/n[k], e[k]/n[k], t[k]/n[k], order[k], n[k] } }' "${csvs[@]}" |
  sort -t'|' -k1,1 -k2,2n -k8,8n)
echo "Mean over the target-test sets (each set weighs the same):"
echo
echo "| matrix | R | method | sets | PSNR (dB) | SSIM | NMSE | s/slice |"
echo "|---|---|---|---|---|---|---|---|"
echo "$summary" | awk -F'|' '{ printf "| %s | %s | %s | %s | %s | %s | %s | %s |\n", $1, $2, $3, $9, $4, $5, $6, $7 }'
[ $# -ge 1 ] || exit 0
echo
echo "Each model's mean PSNR / SSIM minus BART l1-wavelet's (best λ and crop):"
echo
echo "| matrix | R | model | ΔPSNR (dB) | ΔSSIM |"
echo "|---|---|---|---|---|"
for label in "$@"; do
  echo "$summary" | awk -F'|' -v m="$label" '$3 == "BART l1-wavelet" { bp[$1 "," $2] = $4; bs[$1 "," $2] = $5 }
    $3 == m { mp[$1 "," $2] = $4; ms[$1 "," $2] = $5 }
    END { for (k in mp) { split(k, a, ",")
            if (k in bp) printf "| %s | %s | %s | %+.2f | %+.4f |\n", a[1], a[2], m, mp[k] - bp[k], ms[k] - bs[k]
            else printf "| %s | %s | %s | no BART l1 row in these CSVs | |\n", a[1], a[2], m } }' | sort
done
