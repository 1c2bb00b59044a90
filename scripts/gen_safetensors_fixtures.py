#!/usr/bin/env python3
"""Writes crates/kiln/tests/data/npy/all.safetensors with the `safetensors` package itself:
np.arange(24).reshape(2, 3, 4) in every dtype safetensors' NumPy API writes (the same values
as scripts/gen_npy_fixtures.py's <dtype>.npy), for kiln's safetensors reader to match.

    pip install numpy==2.4.6 safetensors==0.8.0 && python3 scripts/gen_safetensors_fixtures.py
"""
import os
import numpy as np
from safetensors.numpy import save_file

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "crates", "kiln", "tests", "data", "npy")
DT = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
      "float16", "float32", "float64"]
arrays = {}
for d in DT:
    base = np.arange(24).reshape(2, 3, 4)
    arrays[d] = (base % 3 == 0) if d == "bool" else base.astype(d)
save_file(arrays, os.path.join(OUT, "all.safetensors"), metadata={"format": "np"})
print("wrote", len(arrays), "arrays")
