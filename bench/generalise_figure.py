#!/usr/bin/python3
"""Pictures of bench/generalise.sh's run: for each target-test set, one slice as reference | zero-filled | BART
l1-wavelet (best λ) | each model, PSNR in the titles, with 5x error maps below. Debian's python3 (numpy, nibabel,
matplotlib). Usage: generalise_figure.py OUT_DIR DATASET_DIR R PNG LABEL...   (LABEL: the models' labels in the run)"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402


def nifti(path):
    return np.transpose(np.asarray(nib.load(path).dataobj, dtype=np.float32), (2, 1, 0))  # slice, y, x


def cfl(path):
    with open(path + ".hdr") as f:
        lines = [line for line in f if not line.startswith("#")]
    dims = [int(d) for d in lines[0].split()]
    a = np.fromfile(path + ".cfl", dtype=np.complex64).reshape(dims, order="F")
    a = np.abs(a.reshape(dims[0], dims[1], -1, order="F"))  # kx, ky, slice
    return np.transpose(a, (2, 1, 0))


def psnr(path):  # recon --metrics writes {"psnr": ...}; eval --json {"metrics": [{"psnr": ...}]}
    with open(path) as f:
        j = json.load(f)
    return j["psnr"] if "psnr" in j else j["metrics"][0]["psnr"]


def main(out, dataset, r, png, labels):
    sets = sorted(d for d in os.listdir(os.path.join(dataset, "target_test"))
                  if os.path.exists(os.path.join(out, f"{labels[0]}_{d}_r{r}.nii.gz")))
    if not sets:
        sys.exit(f"generalise_figure: no reconstructions of {labels[0]} at R = {r} in {out}")
    cols = ["reference", "zero-filled", "BART l1-wavelet"] + labels
    fig, axes = plt.subplots(2 * len(sets), len(cols), figsize=(1.9 * len(cols), 3.9 * len(sets)), squeeze=False)
    b = os.path.join(out, "baselines")
    for i, s in enumerate(sets):
        ref = nifti(os.path.join(dataset, "target_test", s, f"r{r}_ref.nii.gz"))
        k = ref.shape[0] // 2
        hi = np.quantile(ref[k], 0.995)
        images = [(ref, None), (nifti(os.path.join(b, f"zf_{s}_r{r}.nii.gz")), psnr(os.path.join(b, f"zf_{s}_r{r}.json"))),
                  (cfl(os.path.join(b, f"bart_l1_{s}_r{r}")), psnr(os.path.join(b, f"bart_l1_{s}_r{r}.json")))]
        images += [(nifti(os.path.join(out, f"{m}_{s}_r{r}.nii.gz")), psnr(os.path.join(out, f"{m}_{s}_r{r}.json")))
                   for m in labels]
        for j, (v, p) in enumerate(images):
            ax, ex = axes[2 * i, j], axes[2 * i + 1, j]
            ax.imshow(v[k], cmap="gray", vmin=0, vmax=hi)
            ax.set_title(cols[j] if p is None else f"{cols[j]}\n{p:.2f} dB", fontsize=7)
            if j == 0:
                ax.set_ylabel(s, fontsize=7)
                ex.set_ylabel("|error| x 5", fontsize=7)
            if p is not None:
                ex.imshow(5 * np.abs(v[k] - ref[k]), cmap="gray", vmin=0, vmax=hi)
            for a in (ax, ex):
                a.set_xticks([])
                a.set_yticks([])
            if p is None:
                ex.axis("off")
    fig.suptitle(f"Held-out subjects, R = {r} (bench/generalise.sh)", fontsize=9, y=0.999)
    fig.tight_layout()
    tmp = png + ".partial.png"
    fig.savefig(tmp, dpi=72)
    os.replace(tmp, png)


if __name__ == "__main__":
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5:])
