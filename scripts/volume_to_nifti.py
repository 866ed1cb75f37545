#!/usr/bin/env python3
"""Turns the two kinds of Debian-shipped MR files that `ambient simulate` cannot read as a 3-D NIfTI volume into one.

  volume_to_nifti.py IN.nii[.gz] OUT.nii.gz            4-D NIfTI-1: keeps the first frame, header otherwise as is
  volume_to_nifti.py IN.npy OUT.nii.gz --spacing MM    2-D or 3-D little-endian .npy (float64/float32/int16/uint8)
  --plain-geometry: drop the qform/sform (voxel sizes kept), for files whose affine is sheared, which ITK refuses

Standard library only (no numpy), so that scripts/make_dataset.sh needs nothing beyond the data packages.
The output is written to a temporary file and renamed, so a failed run leaves no partial volume.
"""
import argparse
import ast
import gzip
import os
import struct
import sys

NIFTI_TYPES = {2: 1, 4: 2, 8: 4, 16: 4, 64: 8, 512: 2, 256: 1, 768: 4}  # datatype code -> bytes per value
NPY_TYPES = {"<f8": (64, 8), "<f4": (16, 4), "<i2": (4, 2), "|u1": (2, 1), "<u2": (512, 2)}


def fail(msg):
    sys.exit(f"volume_to_nifti: {msg}")


def write_atomic(path, data):
    tmp = path + ".partial"
    with open(tmp, "wb") as raw:
        if path.endswith(".gz"):  # mtime 0: the same input gives the same bytes
            with gzip.GzipFile(filename="", fileobj=raw, mode="wb", mtime=0) as f:
                f.write(data)
        else:
            raw.write(data)
    os.replace(tmp, path)


def first_frame(path, plain_geometry):
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        raw = f.read()
    if len(raw) < 352 or struct.unpack("<i", raw[:4])[0] != 348:
        fail(f"{path} is not a little-endian NIfTI-1 file (header size is not 348)")
    dim = list(struct.unpack("<8h", raw[40:56]))
    dtype = struct.unpack("<h", raw[70:72])[0]
    offset = int(struct.unpack("<f", raw[108:112])[0])
    if dtype not in NIFTI_TYPES:
        fail(f"{path}: NIfTI datatype {dtype} is not supported")
    if dim[0] < 3:
        fail(f"{path}: expected at least 3 dimensions, got {dim[0]}")
    frame = dim[1] * dim[2] * dim[3] * NIFTI_TYPES[dtype]
    if len(raw) < offset + frame:
        fail(f"{path} is truncated: expected at least {offset + frame} bytes, got {len(raw)}")
    dim[0], dim[4:] = 3, [1, 1, 1, 1]
    header = bytearray(raw[:40] + struct.pack("<8h", *dim) + raw[56:offset])
    if plain_geometry:
        struct.pack_into("<hh", header, 252, 0, 0)  # qform_code, sform_code: pixdim only
    return bytes(header) + raw[offset:offset + frame]


def from_npy(path, spacing):
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:6] != b"\x93NUMPY":
        fail(f"{path} is not a .npy file")
    major = raw[6]
    hlen_bytes = 2 if major == 1 else 4
    hlen = int.from_bytes(raw[8:8 + hlen_bytes], "little")
    start = 8 + hlen_bytes + hlen
    meta = ast.literal_eval(raw[8 + hlen_bytes:start].decode("latin1"))
    if meta["descr"] not in NPY_TYPES:
        fail(f"{path}: dtype {meta['descr']} is not supported")
    shape = list(meta["shape"])
    if not 2 <= len(shape) <= 3:
        fail(f"{path}: expected a 2-D or 3-D array, got shape {shape}")
    code, size = NPY_TYPES[meta["descr"]]
    data = raw[start:]
    n = size
    for s in shape:
        n *= s
    if len(data) < n:
        fail(f"{path} is truncated: expected {n} bytes of data, got {len(data)}")
    data = data[:n]
    # NIfTI is column-major (i fastest); a C-order array [a, b(, c)] is a volume of size (c,) b, a along i, j, k.
    if meta["fortran_order"]:
        dims = shape + [1] * (3 - len(shape))
    else:
        dims = list(reversed(shape)) + [1] * (3 - len(shape))
    hdr = bytearray(352)
    struct.pack_into("<i", hdr, 0, 348)
    struct.pack_into("<8h", hdr, 40, 3, dims[0], dims[1], dims[2], 1, 1, 1, 1)
    struct.pack_into("<hh", hdr, 70, code, size * 8)
    struct.pack_into("<8f", hdr, 76, 1.0, spacing, spacing, spacing, 1.0, 1.0, 1.0, 1.0)
    struct.pack_into("<f", hdr, 108, 352.0)
    struct.pack_into("<f", hdr, 112, 1.0)  # scl_slope
    hdr[123] = 2  # xyzt_units: mm
    struct.pack_into("<h", hdr, 254, 1)  # sform_code: scanner
    for row, vals in enumerate(((spacing, 0, 0, 0), (0, spacing, 0, 0), (0, 0, spacing, 0))):
        struct.pack_into("<4f", hdr, 280 + 16 * row, *vals)
    hdr[344:348] = b"n+1\0"
    return bytes(hdr) + data


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--spacing", type=float, default=1.0, help="voxel size in mm for .npy input (default 1)")
    p.add_argument("--plain-geometry", action="store_true", help="drop the qform/sform (sheared affines)")
    a = p.parse_args()
    if not os.path.exists(a.input):
        fail(f"file not found: {a.input}")
    data = from_npy(a.input, a.spacing) if a.input.endswith(".npy") else first_frame(a.input, a.plain_geometry)
    write_atomic(a.output, data)


if __name__ == "__main__":
    main()
