#!/usr/bin/env python3
"""Writes the malformed inputs of the robustness suite (tests/robustness/robustness.sh) from valid ones.

  make_faults.py FASTMRI.h5 ISMRMRD.h5 SCAN.cfl REFERENCE.nii.gz CHECKPOINT.pt OUTDIR

Every file written is a copy of a valid input with one thing wrong, named after what is wrong; the suite expects
each to be refused with one line naming the file. Needs Debian's python3-h5py, python3-numpy and python3-nibabel.
"""
import os
import shutil
import sys
import zipfile

import h5py
import nibabel
import numpy as np


def fastmri_variants(src, out):
    with h5py.File(src, "r") as f:
        ksp, mask = f["kspace"][()], f["mask"][()]
        header = f["ismrmrd_header"][()] if "ismrmrd_header" in f else None
        attrs = dict(f.attrs)

    def write(name, kspace=ksp, m=mask, hdr=header, drop=()):
        with h5py.File(os.path.join(out, name), "w") as g:
            if "kspace" not in drop:
                g["kspace"] = kspace
            if "mask" not in drop and m is not None:
                g["mask"] = m
            if "ismrmrd_header" not in drop and hdr is not None:
                g["ismrmrd_header"] = hdr
            for k, v in attrs.items():
                g.attrs[k] = v

    write("fm_no_kspace.h5", drop=("kspace",))
    write("fm_kspace_rank5.h5", kspace=ksp[None])
    write("fm_kspace_real.h5", kspace=np.abs(ksp).astype(np.float32))
    write("fm_kspace_int.h5", kspace=np.round(np.abs(ksp) * 1e3).astype(np.int32))
    write("fm_kspace_string.h5", kspace=np.array([b"not k-space"]))
    nan = ksp.copy()
    nan[0, 0, ksp.shape[2] // 2, ksp.shape[3] // 2] = np.nan
    write("fm_kspace_nan.h5", kspace=nan)
    inf = ksp.copy()
    inf[-1, -1, ksp.shape[2] // 2, 3] = np.inf
    write("fm_kspace_inf.h5", kspace=inf)
    write("fm_zero_coils.h5", kspace=ksp[:, :0])
    write("fm_zero_slices.h5", kspace=ksp[:0])
    write("fm_mask_no_lines.h5", kspace=np.zeros_like(ksp), m=np.zeros_like(mask))
    write("fm_mask_wrong_length.h5", m=mask[:-3])
    write("fm_mask_2d.h5", m=np.stack([mask, mask]))
    write("fm_kspace_zero.h5", kspace=np.zeros_like(ksp))


def ismrmrd_variants(src, out):
    def variant(name, edit):
        dst = os.path.join(out, name)
        shutil.copyfile(src, dst)
        with h5py.File(dst, "r+") as g:
            edit(g)

    variant("ism_no_data.h5", lambda g: g["dataset"].__delitem__("data"))
    variant("ism_no_xml.h5", lambda g: g["dataset"].__delitem__("xml"))

    def garbage_xml(g):
        del g["dataset/xml"]
        g.create_dataset("dataset/xml", data=np.array([b"<ismrmrdHeader><encoding>"], dtype=object),
                         dtype=h5py.string_dtype())

    variant("ism_xml_garbage.h5", garbage_xml)

    def data_as_floats(g):
        n = g["dataset/data"].shape[0]
        del g["dataset/data"]
        g["dataset/data"] = np.zeros(n, np.float32)

    variant("ism_data_floats.h5", data_as_floats)
    variant("ism_wrong_group.h5", lambda g: g.move("dataset", "elsewhere"))


def cfl_variants(src, out):
    base = src[:-4]
    with open(base + ".hdr") as f:
        hdr = f.read()
    data = open(base + ".cfl", "rb").read()

    def write(name, header, payload):
        with open(os.path.join(out, name + ".hdr"), "w") as f:
            f.write(header)
        with open(os.path.join(out, name + ".cfl"), "wb") as f:
            f.write(payload)

    write("cfl_short_data", hdr, data[: len(data) // 2])
    write("cfl_long_data", hdr, data + data[:4096])
    write("cfl_empty_hdr", "", data)
    write("cfl_garbage_hdr", "# Dimensions\nthirty-two 32 1\n", data)
    write("cfl_negative_dims", "# Dimensions\n-32 32 1 4 1 1 1 1 1 1 1 1 1 2 1 1\n", data)
    write("cfl_huge_dims", "# Dimensions\n4000000000 4000000000 1 4 1 1 1 1 1 1 1 1 1 2 1 1\n", data)
    nan = np.frombuffer(data, np.complex64).copy()
    nan[len(nan) // 3] = np.nan
    write("cfl_nan", hdr, nan.tobytes())
    # The data file alone, its header missing.
    with open(os.path.join(out, "cfl_no_hdr.cfl"), "wb") as f:
        f.write(data)


def nifti_variants(src, out):
    img = nibabel.load(src)
    vol = np.asarray(img.dataobj, dtype=np.float32)
    nan = vol.copy()
    nan.flat[nan.size // 2] = np.nan
    nibabel.save(nibabel.Nifti1Image(nan, img.affine), os.path.join(out, "ref_nan.nii.gz"))
    inf = vol.copy()
    inf.flat[nan.size // 3] = np.inf
    nibabel.save(nibabel.Nifti1Image(inf, img.affine), os.path.join(out, "ref_inf.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(vol[:-4], img.affine), os.path.join(out, "ref_wrong_shape.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(vol[..., :1], img.affine), os.path.join(out, "ref_too_few_slices.nii.gz"))
    nibabel.save(nibabel.Nifti1Image(np.zeros((4, 4, 4, 2), np.float32), img.affine),
                 os.path.join(out, "ref_4d.nii.gz"))
    with open(os.path.join(out, "ref_not_gzip.nii.gz"), "wb") as f:
        f.write(b"this is not a gzip stream" * 20)


def checkpoint_variants(src, out):
    # A LibTorch archive is a zip of raw tensor storages: overwrite the largest (a convolution's weights) with NaN.
    with zipfile.ZipFile(src) as z:
        entries = [(i, z.read(i.filename)) for i in z.infolist()]
    largest = max((i for i, _ in entries if "/data/" in i.filename), key=lambda i: i.file_size)
    with zipfile.ZipFile(os.path.join(out, "ckpt_nan_weights.pt"), "w", zipfile.ZIP_STORED) as z:
        for info, payload in entries:
            if info.filename == largest.filename:
                payload = np.full(len(payload) // 4, np.nan, np.float32).tobytes()
            z.writestr(info, payload)
    with zipfile.ZipFile(os.path.join(out, "ckpt_zip_of_nothing.pt"), "w") as z:
        z.writestr("nothing/data.txt", "not a model")


def main():
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    fastmri, ismrmrd, cfl, reference, checkpoint, out = sys.argv[1:]
    os.makedirs(out, exist_ok=True)
    fastmri_variants(fastmri, out)
    ismrmrd_variants(ismrmrd, out)
    cfl_variants(cfl, out)
    nifti_variants(reference, out)
    checkpoint_variants(checkpoint, out)


if __name__ == "__main__":
    main()
