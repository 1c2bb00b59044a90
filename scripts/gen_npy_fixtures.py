#!/usr/bin/env python3
"""Writes the .npy/.npz fixtures of crates/kiln/tests/data/npy/ with NumPy itself:

* seed_x.npy: random float64 [1, 2, 3] (the seed scenario), seed_log10.npy: NumPy's log10 of it;
* <dtype>.npy: np.arange(24).reshape(2, 3, 4) in each dtype, little-endian, C order;
* <dtype>_be_f.npy: the same values, big-endian and Fortran order (multi-byte dtypes);
* all.npz (np.savez) and all_compressed.npz (np.savez_compressed) holding every <dtype> array.

    pip install numpy==2.4.6 ml_dtypes==0.6.0 && python3 scripts/gen_npy_fixtures.py
"""
import os
import numpy as np

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kiln", "tests", "data", "npy")
os.makedirs(OUT, exist_ok=True)
rng = np.random.default_rng(1)
x = rng.uniform(0.01, 100.0, size=[1, 2, 3])
np.save(os.path.join(OUT, "seed_x.npy"), x)
np.save(os.path.join(OUT, "seed_log10.npy"), np.log10(x))

DT = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
      "float16", "float32", "float64", "complex64", "complex128"]
arrays = {}
for d in DT:
    base = np.arange(24).reshape(2, 3, 4)
    if d == "bool":
        a = (base % 3 == 0)
    elif d.startswith("complex"):
        a = (base + 0.5j * base).astype(d)
    else:
        a = base.astype(d)
    arrays[d] = a
    np.save(os.path.join(OUT, f"{d}.npy"), a)
    if a.dtype.itemsize > 1:
        be = np.asfortranarray(a.astype(a.dtype.newbyteorder(">")))
        np.save(os.path.join(OUT, f"{d}_be_f.npy"), be)
np.savez(os.path.join(OUT, "all.npz"), **arrays)
np.savez_compressed(os.path.join(OUT, "all_compressed.npz"), **arrays)
print("wrote", OUT)
