#!/usr/bin/env python3
"""The README's picture, from what scripts/demo.sh wrote: one slice of the sample scan as zero-filled | CG-SENSE |
posterior mean of the shipped ambient model | reference, with 5x error maps and the posterior's standard deviation.
Usage: readme_figure.py [DEMO_DIR [REFERENCE [OUT_PNG]]]"""
import json
import os
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402


def volume(path):
    return np.transpose(np.asarray(nib.load(path).dataobj, dtype=np.float32), (2, 1, 0))  # slice, y, x


def main(demo="out/demo", reference="data/samples/ch2_axial_ref.nii.gz", out="docs/images/sample_recon.png"):
    ref = volume(reference)
    s = ref.shape[0] // 2
    hi = np.quantile(ref[s], 0.995)
    panels = [("zero-filled", "zero_filled"), ("CG-SENSE", "cg_sense"), ("ambient posterior mean", "posterior_shipped")]
    fig, axes = plt.subplots(2, 4, figsize=(9.6, 5.0))
    for i, (title, name) in enumerate(panels):
        v = volume(os.path.join(demo, f"{name}.nii.gz"))[s]
        psnr = json.load(open(os.path.join(demo, f"{name}.json")))["psnr"]
        axes[0, i].imshow(v, cmap="gray", vmin=0, vmax=hi)
        axes[0, i].set_title(f"{title}\n{psnr:.2f} dB (all 6 slices)", fontsize=8)
        axes[1, i].imshow(5 * np.abs(v - ref[s]), cmap="gray", vmin=0, vmax=hi)
        axes[1, i].set_title("5× |error|", fontsize=8)
    axes[0, 3].imshow(ref[s], cmap="gray", vmin=0, vmax=hi)
    axes[0, 3].set_title("fully sampled reference", fontsize=8)
    axes[1, 3].imshow(5 * volume(os.path.join(demo, "posterior_shipped_std.nii.gz"))[s], cmap="gray", vmin=0, vmax=hi)
    axes[1, 3].set_title("5× posterior std (uncertainty)", fontsize=8)
    for ax in axes.ravel():
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    fig.savefig(out + ".tmp.png", dpi=100)
    os.replace(out + ".tmp.png", out)
    print(f"wrote {out}")


if __name__ == "__main__":
    if len(sys.argv) > 4 or "-h" in sys.argv or "--help" in sys.argv:
        sys.exit(__doc__)
    main(*sys.argv[1:])
