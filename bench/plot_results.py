#!/usr/bin/env python3
"""Figures for docs/results.md from what bench/results.sh wrote: quality against time, example slices with error
maps, and the sample grids. Usage: plot_results.py RESULTS_DIR HELDOUT_DIR IMAGES_DIR"""
import csv
import os
import shutil
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402


def load_volume(path):
    """Magnitude volume [slice, y, x] from NIfTI or BART cfl (x, y, ..., slice)."""
    if path.endswith(".cfl"):
        base = path[:-4]
        with open(base + ".hdr") as f:
            dims = [int(d) for d in f.read().split("\n")[1].split()]
        data = np.fromfile(base + ".cfl", dtype=np.complex64).reshape(dims, order="F")
        data = np.abs(data).reshape(dims[0], dims[1], -1)  # x, y, slices (other dims are 1)
        return np.transpose(data, (2, 1, 0))
    v = np.asarray(nib.load(path).dataobj, dtype=np.float32)  # x, y, slice as ambient writes it
    return np.transpose(v, (2, 1, 0))


def label(method):
    """Short plot label: the method's name, with K samples × steps for posterior rows."""
    name = method.split(" (")[0]
    if "posterior, " in method:
        name += " " + method.split("posterior, ")[1].rstrip(")")
    return name


def main(results, heldout, images):
    os.makedirs(images, exist_ok=True)
    rows = list(csv.DictReader(open(os.path.join(results, "results.csv"))))

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=False)
    for ax, r in zip(axes, ("4", "8")):
        for row in (x for x in rows if x["R"] == r):
            t, p = float(row["seconds_per_slice"]), float(row["psnr"])
            ax.scatter(max(t, 1e-3), p, s=30)
            ax.annotate(label(row["method"]), (max(t, 1e-3), p), fontsize=7, xytext=(4, 2),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("seconds per slice (2 cores)")
        ax.set_ylabel("PSNR (dB)")
        ax.set_title(f"held-out target slices, R = {r}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(os.path.join(images, "results_quality_vs_time.png"), dpi=110)
    plt.close(fig)

    for r in ("4", "8"):
        ref = load_volume(os.path.join(heldout, f"r{r}_ref.nii.gz"))
        picked = [x for x in rows if x["R"] == r]
        s = min(1, ref.shape[0] - 1)
        hi = np.quantile(ref, 0.995)
        fig, axes = plt.subplots(2, len(picked) + 1, figsize=(2.0 * (len(picked) + 1), 4.4))
        axes[0, 0].imshow(ref[s], cmap="gray", vmin=0, vmax=hi)
        axes[0, 0].set_title("reference", fontsize=7)
        axes[1, 0].axis("off")
        for i, row in enumerate(picked, start=1):
            v = load_volume(row["volume"])[s]
            axes[0, i].imshow(v, cmap="gray", vmin=0, vmax=hi)
            axes[0, i].set_title(f"{label(row['method'])}\n{float(row['psnr']):.2f} dB", fontsize=6)
            axes[1, i].imshow(5 * np.abs(v - ref[s]), cmap="gray", vmin=0, vmax=hi)
        for ax in axes.ravel():
            ax.set_xticks([])
            ax.set_yticks([])
        fig.tight_layout()
        fig.savefig(os.path.join(images, f"results_examples_r{r}.png"), dpi=110)
        plt.close(fig)

    for name in ("ambient_finetuned", "clean", "block_ambient"):
        src = os.path.join(results, f"samples_{name}.png")
        if os.path.exists(src):
            shutil.copyfile(src, os.path.join(images, f"results_samples_{name}.png"))
    print(f"figures in {images}")


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(*sys.argv[1:])
