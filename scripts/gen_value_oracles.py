#!/usr/bin/env python3
"""Generates crates/kiln/tests/data/value_oracles.json: inputs and NumPy results for every op
of kiln's registry on every dtype Keras accepts, for the value-oracle tests.

    pip install numpy==2.4.6 ml_dtypes==0.6.0
    python3 scripts/gen_value_oracles.py

Result dtypes come from Keras's own table (tests/data/keras_op_dtypes.json, x64 off). The values
are NumPy's: exact ops (integer/bool results, and ops that only move or compare values) are
computed natively in the result dtype; the others in float64/complex128 from the input cast to
the compute dtype, and compared with dtype-derived tolerances. For 64-bit inputs a second case
checks x64 mode (JAX semantics: every 32-bit result widened to 64-bit).
"""
import json, math, os, sys
import numpy as np
import ml_dtypes

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "..", "crates", "kiln", "tests", "data")
rng = np.random.default_rng(20261127)

DTYPES = ["bool", "uint8", "uint16", "uint32", "uint64", "int8", "int16", "int32", "int64",
          "bfloat16", "float16", "float32", "float64", "complex64", "complex128"]
NP = {d: (ml_dtypes.bfloat16 if d == "bfloat16" else np.dtype(d)) for d in DTYPES}
TO32 = {"int64": "int32", "uint64": "uint32", "float64": "float32", "complex128": "complex64"}
TO64 = {"int32": "int64", "uint32": "uint64", "float32": "float64", "complex64": "complex128"}
SHAPE = (4, 6)

def inputs(d, which, x64=True):
    n = SHAPE[0] * SHAPE[1]
    if d == "bool":
        v = rng.integers(0, 2, n).astype(bool)
    elif d.startswith("uint") or d.startswith("int"):
        # x64 off narrows 64-bit ints, and kiln refuses values that would change: stay in range.
        info = np.iinfo(d if x64 else TO32.get(d, d))
        lo, hi = max(info.min, -100), min(info.max, 100)
        v = rng.integers(lo, hi + 1, n, dtype=np.int64).astype(d)
        v[0], v[1], v[2] = info.max, info.min, 0
        if which == "b":  # divisors/exponents: small, and one zero divisor
            v = rng.integers(0 if d.startswith("u") else -7, 8, n).astype(d)
            v[3] = 0
    elif d.startswith("complex"):
        v = (rng.uniform(-2, 2, n) + 1j * rng.uniform(-2, 2, n)).astype(d)
    else:
        v = rng.uniform(-3, 3, n)
        if which == "a":
            v[:8] = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5]
        v = v.astype(NP[d])
    return v.reshape(SHAPE)

def enc(a):
    a = np.asarray(a)
    dt = "bfloat16" if a.dtype == ml_dtypes.bfloat16 else a.dtype.name
    flat = a.reshape(-1)
    def f(x):
        x = float(x)
        return "nan" if math.isnan(x) else ("inf" if x == math.inf else ("-inf" if x == -math.inf else x))
    if dt == "bool":
        data = [bool(x) for x in flat]
    elif dt.startswith("int") or dt.startswith("uint"):
        data = [int(x) for x in flat]
    elif dt.startswith("complex"):
        data = [[f(x.real), f(x.imag)] for x in flat]
    else:
        data = [f(x) for x in flat.astype(np.float64)]
    return {"dtype": dt, "shape": list(a.shape), "data": data}

def hi(d):  # float64/complex128 reference input
    return d.startswith("complex")

def erf(x):
    return np.vectorize(math.erf)(x)

def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))

# name -> (kind, fn); kind "exact": computed in the result dtype (via float32 for 16-bit floats);
# "approx": computed in float64/complex128, compared with a tolerance.
UNARY = {
    "negative": ("exact", np.negative), "abs": ("exact", np.abs), "sign": ("exact", np.sign),
    "sqrt": ("approx", np.sqrt), "rsqrt": ("approx", lambda x: 1 / np.sqrt(x)), "square": ("exact", np.square),
    "exp": ("approx", np.exp), "expm1": ("approx", np.expm1), "log": ("approx", np.log),
    "log1p": ("approx", np.log1p), "log2": ("approx", np.log2), "log10": ("approx", np.log10),
    "sin": ("approx", np.sin), "cos": ("approx", np.cos), "tan": ("approx", np.tan),
    "arcsin": ("approx", np.arcsin), "arccos": ("approx", np.arccos), "arctan": ("approx", np.arctan),
    "sinh": ("approx", np.sinh), "cosh": ("approx", np.cosh), "tanh": ("approx", np.tanh),
    "erf": ("approx", erf), "floor": ("exact", np.floor), "ceil": ("exact", np.ceil),
    "round": ("exact", np.round), "reciprocal": ("approx", lambda x: 1 / x),
    "isnan": ("exact", np.isnan), "isinf": ("exact", np.isinf), "isfinite": ("exact", np.isfinite),
    "logical_not": ("exact", np.logical_not), "real": ("exact", np.real), "imag": ("exact", np.imag),
    "conj": ("exact", np.conj), "relu": ("exact", lambda x: np.maximum(x, 0)),
    "relu6": ("exact", lambda x: np.minimum(np.maximum(x, 0), 6)),
    "sigmoid": ("approx", sigmoid), "silu": ("approx", lambda x: x * sigmoid(x)),
    "softplus": ("approx", lambda x: np.logaddexp(x, 0) if not np.iscomplexobj(x) else np.log1p(np.exp(x))),
    "gelu": ("approx", lambda x: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x ** 3)))),
    "elu": ("approx", lambda x: np.where(x > 0, x, np.expm1(x))),
    "leaky_relu": ("approx", lambda x: np.where(x >= 0, x, 0.2 * x)),
    "softmax": ("approx", lambda x: (lambda e: e / e.sum(-1, keepdims=True))(np.exp(x - (x.max(-1, keepdims=True) if not np.iscomplexobj(x) else 0)))),
    "log_softmax": ("approx", lambda x: (lambda s: s - np.log(np.exp(s).sum(-1, keepdims=True)))(x - (x.max(-1, keepdims=True) if not np.iscomplexobj(x) else 0))),
    "sum": ("red", lambda x, dt: np.sum(x, dtype=dt)), "prod": ("red", lambda x, dt: np.prod(x, dtype=dt)),
    "mean": ("approx", np.mean), "max": ("exact", np.max), "min": ("exact", np.min),
    "argmax": ("exact", lambda x: np.argmax(x)), "argmin": ("exact", lambda x: np.argmin(x)),
    "all": ("exact", np.all), "any": ("exact", np.any),
    "std": ("approx", np.std), "var": ("approx", np.var),
    "cumsum": ("red", lambda x, dt: np.cumsum(x, dtype=dt)), "cumprod": ("red", lambda x, dt: np.cumprod(x, dtype=dt)),
    "logsumexp": ("approx", lambda x: (lambda m: np.log(np.sum(np.exp(x - m))) + m)(np.max(x) if not np.iscomplexobj(x) else 0)),
    "count_nonzero": ("exact", np.count_nonzero), "transpose": ("exact", np.transpose), "flip": ("exact", np.flip),
    "sort": ("exact", lambda x: np.sort(x, axis=-1)), "argsort": ("exact", lambda x: np.argsort(x, axis=-1, kind="stable")),
    "triu": ("exact", np.triu), "tril": ("exact", np.tril), "diag": ("exact", np.diag),
    "trace": ("red", lambda x, dt: np.trace(x, dtype=dt)),
    "zeros_like": ("exact", np.zeros_like), "ones_like": ("exact", np.ones_like),
    "nonzero": ("exact", lambda x: np.stack(np.nonzero(x))),
}
# Ops whose kernel reads the input in its own dtype (the result dtype differs by design).
READS_INPUT = {"isnan", "isinf", "isfinite", "logical_not", "real", "imag", "abs", "argmax", "argmin", "all", "any",
               "count_nonzero", "argsort", "nonzero", "std"}
BINARY = {
    "add": ("exact", np.add), "subtract": ("exact", np.subtract), "multiply": ("exact", np.multiply),
    "divide": ("approx", np.divide), "true_divide": ("approx", np.divide),
    "floor_divide": ("exact", np.floor_divide), "mod": ("exact", np.mod), "power": ("approx", np.power),
    "maximum": ("exact", np.maximum), "minimum": ("exact", np.minimum), "arctan2": ("approx", np.arctan2),
    "hypot": ("approx", np.hypot), "equal": ("exact", np.equal), "not_equal": ("exact", np.not_equal),
    "less": ("exact", np.less), "less_equal": ("exact", np.less_equal), "greater": ("exact", np.greater),
    "greater_equal": ("exact", np.greater_equal), "logical_and": ("exact", np.logical_and),
    "logical_or": ("exact", np.logical_or), "logical_xor": ("exact", np.logical_xor),
    "matmul": ("approx", np.matmul), "dot": ("approx", np.dot),
}
CMP = {"equal", "not_equal", "less", "less_equal", "greater", "greater_equal"}
LOGIC = {"logical_and", "logical_or", "logical_xor"}

def table():
    with open(os.path.join(DATA, "keras_op_dtypes.json")) as f:
        cases = json.load(f)["cases"]
    return {(c["op"], tuple(c["inputs"])): c["result"] for c in cases}

def in_compute(x, d):
    """x cast to dtype d (string), as a NumPy array we can compute on exactly."""
    if d in ("bfloat16", "float16"):
        return x.astype(NP[d]).astype(np.float32)
    return x.astype(NP[d])

def finish(y, res):
    y = np.asarray(y)
    if res in ("bfloat16", "float16"):
        return y.astype(np.float32).astype(NP[res])
    return y.astype(NP[res])

def ref(kind, fn, xs, compute, res, op):
    with np.errstate(all="ignore"):
        if kind == "red":
            cx = in_compute(xs[0], compute)
            acc = np.float32 if res in ("bfloat16", "float16") else NP[res]
            return finish(fn(cx, acc), res), (res.startswith("float") or res.startswith("bfloat") or res.startswith("complex"))
        if kind == "exact":
            cxs = [in_compute(x, compute) for x in xs]
            return finish(fn(*cxs), res), False
        wide = np.complex128 if (compute.startswith("complex")) else np.float64
        cxs = [in_compute(x, compute).astype(wide) for x in xs]
        return finish(fn(*cxs), res), True

def main():
    keras = table()
    out = []
    for x64 in (False, True):
        for d in DTYPES:
            if x64 and d not in TO32:
                continue
            d32 = TO32.get(d, d)
            for op, (kind, fn) in UNARY.items():
                res = keras.get((op, (d,)))
                if res is None:
                    continue
                if x64:
                    res = TO64.get(res, res) if d in TO32 else res
                a = inputs(d, "a", x64)
                canon = d if x64 else d32
                compute = canon if op in READS_INPUT else res
                y, approx = ref(kind, fn, [a], compute, res, op)
                out.append({"op": op, "x64": x64, "inputs": [enc(a)], "result": enc(y), "approx": approx})
            for op, (kind, fn) in BINARY.items():
                res = keras.get((op, (d, d)))
                if res is None:
                    continue
                if x64:
                    res = TO64.get(res, res)
                a, b = inputs(d, "a", x64), inputs(d, "b", x64)
                if op == "arctan2" and res.startswith("complex"):
                    continue  # NumPy has no complex arctan2 (JAX's is tested in the Rust suite)
                if op in ("matmul", "dot"):
                    b = b.T.copy()
                canon = d if x64 else d32
                compute = canon if op in CMP else ("bool" if op in LOGIC else res)
                if op == "power" and d not in ("bool",) and not d.startswith("float") and not d.startswith("bfloat") and not d.startswith("complex"):
                    b = np.abs(b.astype(np.int64)).astype(NP[d]) % 4  # ints to negative powers are refused
                    kind = "exact"
                if op in ("matmul", "dot") and res in ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool"):
                    kind = "exact"
                if op in ("floor_divide", "mod") and (res.startswith("float") or res.startswith("bfloat")):
                    kind = "approx"
                y, approx = ref(kind, fn, [a, b], compute, res, op)
                out.append({"op": op, "x64": x64, "inputs": [enc(a), enc(b)], "result": enc(y), "approx": approx})
    src = f"numpy {np.__version__}, ml_dtypes {ml_dtypes.__version__}: scripts/gen_value_oracles.py"
    with open(os.path.join(DATA, "value_oracles.json"), "w") as f:
        json.dump({"source": src, "cases": out}, f, separators=(",", ":"))
    print(f"{len(out)} cases -> {os.path.join(DATA, 'value_oracles.json')}")

if __name__ == "__main__":
    main()


# ---------------------------------------------------------------------------------------------
# The ops outside the name registry (they take parameters), and cast between every dtype pair:
# crates/kiln/tests/data/value_oracles_extra.json, run by tests/suite/value_oracles_extra.rs with x64
# on (inputs keep their dtype). Parameters are fixed here and in the Rust test.

def extra():
    keras = table()
    out = []
    def add(op, ins, y, approx=False):
        out.append({"op": op, "inputs": [enc(i) for i in ins], "result": enc(y), "approx": approx})
    for d in DTYPES:
        a, b = inputs(d, "a"), inputs(d, "b")
        x = a.astype(NP[d])
        with np.errstate(all="ignore"):
            if keras.get(("greater", (d, "int"))) is not None:
                add("where_gt0", [a, b], np.where(a > 0, a, b))
            add("reshape_3_8", [a], a.reshape(3, 8))
            add("expand_dims_1", [a], np.expand_dims(a, 1))
            add("broadcast_row_to_3x6", [a], np.broadcast_to(a[:1], (3, 6)))
            add("concatenate_ax1", [a, b], np.concatenate([a, b], axis=1))
            add("stack_ax0", [a, b], np.stack([a, b], axis=0))
            add("split2_ax0_second", [a], np.split(a, 2, axis=0)[1])
            add("tile_2_1", [a], np.tile(a, (2, 1)))
            add("repeat_2_ax1", [a], np.repeat(a, 2, axis=1))
            add("pad_1_0_0_2", [a], np.pad(a, ((1, 0), (0, 2))))
            add("take_3_0_m1_ax1", [a], np.take(a, [3, 0, -1], axis=1))
            # ml_dtypes' bfloat16 argsort does not put NaN last; NumPy's float order does.
            key = a.astype(np.float32) if d == "bfloat16" else a
            add("take_along_argsort_ax1", [a], np.take_along_axis(a, np.argsort(key, axis=1, kind="stable"), axis=1))
            add("slice_rev_1_5_2", [a], a[::-1, 1:5:2])
            if d != "bool" and not d.startswith("complex"):
                res = keras[("maximum", (d, "int"))]
                res = TO64.get(res, res) if d in TO32 else res
                add("clip_1_5", [a], np.clip(in_compute(a, res), 1, 5).astype(NP[res]))
            if d.startswith("int") or d.startswith("uint"):
                # Indices -1..3 (0..4 for unsigned): out-of-range ones give all-zero rows.
                idx = (a.astype(np.int64) % 5) - (1 if d.startswith("int") else 0)
                add("one_hot_4", [idx.astype(NP[d])], one_hot(idx, 4))
            if d not in ("bool",):
                wide = np.complex128 if d.startswith("complex") else np.float64
                # Keras: tensordot keeps result_type (int8 stays int8); einsum of all-int8
                # operands accumulates in int32 (`preferred_element_type`).
                res = keras.get(("add", (d, d)))
                if res is not None and d not in TO32:
                    approx = not (d.startswith("int") or d.startswith("uint"))
                    for op, r, fn in (("tensordot_bT_1", res, lambda p, q: np.tensordot(p, q.T, axes=1)),
                                      ("einsum_ij_kj_ik", "int32" if d == "int8" else res, lambda p, q: np.einsum("ij,kj->ik", p, q))):
                        cm = (lambda z: z.astype(wide)) if approx else (lambda z, r=r: in_compute(z, r))
                        add(op, [a, b], finish(fn(cm(a), cm(b)), r), approx)
        # cast to every dtype, on values whose NumPy result is well defined
        for t in DTYPES:
            src = x
            if (d.startswith("float") or d.startswith("bfloat") or d.startswith("complex")) and (t.startswith("int") or t.startswith("uint")):
                info = np.iinfo(t)
                re = np.real(src.astype(np.complex128)) if d.startswith("complex") else src.astype(np.float64)
                ok = np.isfinite(re) & (re >= info.min) & (re <= info.max)
                src = np.where(ok, src, np.zeros_like(src))
            with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
                __import__("warnings").simplefilter("ignore")
                if t == "bfloat16" and d not in ("float32", "bfloat16"):
                    y = np.asarray(src).astype(np.float64).astype(np.float32).astype(ml_dtypes.bfloat16) if not d.startswith("complex") else np.real(src).astype(np.float32).astype(ml_dtypes.bfloat16)
                    approx = True
                else:
                    y = (np.real(src) if d.startswith("complex") and not t.startswith("complex") else src).astype(NP[t])
                    approx = False
            add(f"cast_{t}", [src], y, approx)
    with open(os.path.join(DATA, "value_oracles_extra.json"), "w") as f:
        json.dump({"source": f"numpy {np.__version__}, ml_dtypes {ml_dtypes.__version__}: scripts/gen_value_oracles.py (extra)", "cases": out}, f, separators=(",", ":"))
    print(f"{len(out)} extra cases")

def one_hot(idx, k):
    oh = np.zeros(idx.shape + (k,), dtype=np.float32)
    for pos in np.ndindex(idx.shape):
        if 0 <= idx[pos] < k:
            oh[pos + (int(idx[pos]),)] = 1
    return oh

if __name__ == "__main__":
    extra()
