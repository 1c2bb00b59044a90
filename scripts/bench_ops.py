#!/usr/bin/env python3
"""The op benchmark: every op of kiln's `ops::registry` plus the parameterised ops training needs,
at three sizes, against NumPy, in one run on one machine. Prints NumPy time / kiln time per case
(> 1: kiln is faster) and each case's bar from the kernels issue.

    python3 -m venv /tmp/venv && /tmp/venv/bin/pip install numpy scipy ml_dtypes
    /tmp/venv/bin/python scripts/bench_ops.py [--engine candle] [--only REGEX] [--markdown FILE]

Sizes: small [32, 128] (a batch-32 MLP), medium [256, 784], large [1000, 10000]; matmul at
32x64x128, 256x784x512 and 1024^3; and a 1-element add (size "one", bar: under 0.5 us). float32 for every op; float64, float16 and bfloat16 for the
memory-bound ones (NumPy's bfloat16 is ml_dtypes', the type JAX hands NumPy).

Both sides time alike: one warm-up call, then batches of calls (about 2 ms a batch), the best batch
mean of 3 to 7 batches. The NumPy side runs before and after kiln and keeps the better figure
of the two, so the machine's drift counts against kiln. The NumPy anchor for an op NumPy has no
single call for is what Keras's NumPy backend runs (keras/src/backend/numpy), e.g. softmax as five
calls, relu as np.maximum(x, 0), gelu through scipy.special.erf. NumPy's elementwise loops use one
thread, kiln two on the 2-core machine; matmul is OpenBLAS with its default threads.

OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are cleared (they slow a current OpenBLAS on this machine).
"""
import argparse, json, math, os, re, subprocess, sys, tempfile, time

for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(k, None)
import numpy as np

try:
    import scipy.special as sps
except ImportError:  # erf / gelu(approximate=False) anchors need scipy
    sps = None
try:
    import ml_dtypes
except ImportError:
    ml_dtypes = None

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
SIZES = {"small": [32, 128], "medium": [256, 784], "large": [1000, 10000]}
MATMUL = {"small": (32, 64, 128), "medium": (256, 784, 512), "large": (1024, 1024, 1024)}

UNARY_RANGE = {
    "sqrt": (0.1, 4), "rsqrt": (0.1, 4), "log": (0.1, 4), "log2": (0.1, 4), "log10": (0.1, 4),
    "log1p": (-0.5, 4), "reciprocal": (0.1, 4), "arcsin": (-0.99, 0.99), "arccos": (-0.99, 0.99),
    "prod": (0.99, 1.01), "cumprod": (0.99, 1.01),
}
BINARY_RANGE = {
    "divide": (0.5, 4), "true_divide": (0.5, 4), "floor_divide": (0.5, 4), "mod": (0.5, 4),
    "power": (0.5, 2),
}
# Ops whose float64 / half-precision figures the issue asks for (memory-bound).
MEMORY_BOUND = ["add", "subtract", "multiply", "divide", "maximum", "negative", "abs", "square",
                "relu", "clip", "where", "transpose", "sum", "mean", "max", "add_row"]
REDUCTIONS = ["sum", "mean", "prod", "max", "min", "argmax", "argmin", "all", "any",
              "count_nonzero", "var", "std", "logsumexp"]
ACTIVATIONS = ["relu", "relu6", "sigmoid", "gelu", "gelu_exact", "silu", "softplus", "elu",
               "leaky_relu"]
NN_ROW = ["softmax", "log_softmax", "logsumexp"]
# Registry ops whose by-name call reshapes the input to a 1-d signal (a kernel the size of
# the input would be quadratic): they are timed where they are used, in the convnet of
# scripts/compare_training.py.
SHAPED = ["conv", "max_pool", "average_pool"]


def bench_cmd(binary):
    # A prebuilt bench binary (--bin, --baseline) or cargo's, which rebuilds where sources changed.
    return [binary] if binary else ["cargo", "bench", "-q", "-p", "kiln", "--bench", "ops", "--"]


def registry(binary=None):
    # The op names as kiln's registry lists them (family macros and the table together).
    out = subprocess.run(bench_cmd(binary) + ["--registry"],
                         cwd=ROOT, check=True, capture_output=True, text=True).stdout
    names = json.loads(out)
    return names["unary"], names["binary"]


def np_dtype(name):
    if name == "bfloat16":
        return ml_dtypes.bfloat16 if ml_dtypes else None
    return np.dtype(name)


def make(shape, dtype, rng, lo=-2.0, hi=2.0):
    if dtype == "bool":
        return rng.uniform(-1, 1, shape) > 0
    x = rng.uniform(lo, hi, shape)
    if np.dtype(np_dtype(dtype)).kind in "iu":
        x = np.floor(x)
    return x.astype(np_dtype(dtype))


def s(dt, v):
    """A NumPy scalar of x's dtype (what Keras's NumPy backend passes)."""
    return np.array(v, dt)


def numpy_fn(case, x, y):
    op, ax = case["op"], case.get("axis")
    a = tuple(ax) if ax is not None else None
    dt = x.dtype
    one = s(dt, 1.0)
    f = {
        "negative": lambda: np.negative(x), "abs": lambda: np.abs(x), "sign": lambda: np.sign(x),
        "sqrt": lambda: np.sqrt(x), "rsqrt": lambda: one / np.sqrt(x),
        "square": lambda: np.square(x), "exp": lambda: np.exp(x), "expm1": lambda: np.expm1(x),
        "log": lambda: np.log(x), "log1p": lambda: np.log1p(x), "log2": lambda: np.log2(x),
        "log10": lambda: np.log10(x), "sin": lambda: np.sin(x), "cos": lambda: np.cos(x),
        "tan": lambda: np.tan(x), "arcsin": lambda: np.arcsin(x), "arccos": lambda: np.arccos(x),
        "arctan": lambda: np.arctan(x), "sinh": lambda: np.sinh(x), "cosh": lambda: np.cosh(x),
        "tanh": lambda: np.tanh(x), "erf": lambda: sps.erf(x).astype(dt),
        "floor": lambda: np.floor(x), "ceil": lambda: np.ceil(x), "round": lambda: np.round(x),
        "reciprocal": lambda: np.reciprocal(x), "isnan": lambda: np.isnan(x),
        "isinf": lambda: np.isinf(x), "isfinite": lambda: np.isfinite(x),
        "logical_not": lambda: np.logical_not(x), "real": lambda: np.real(x),
        "imag": lambda: np.imag(x), "conj": lambda: np.conj(x),
        "relu": lambda: np.maximum(x, s(dt, 0.0)),
        "relu6": lambda: np.minimum(np.maximum(x, s(dt, 0.0)), s(dt, 6.0)),
        "sigmoid": lambda: one / (one + np.exp(-x)),
        "silu": lambda: x * (one / (one + np.exp(-x))),
        "softplus": lambda: np.logaddexp(x, s(dt, 0.0)),
        "elu": lambda: np.where(x >= s(dt, 0.0), x, s(dt, 1.0) * np.expm1(x)),
        "leaky_relu": lambda: np.maximum(x, s(dt, 0.2) * x),
        "gelu": lambda: x * (s(dt, 0.5) * (one + np.tanh(s(dt, math.sqrt(2 / math.pi))
                                                          * (x + s(dt, 0.044715) * (x ** 3))))),
        "gelu_exact": lambda: x * (sps.erf(x / s(dt, math.sqrt(2))) + 1).astype(dt) / s(dt, 2),
        "softmax": lambda: (lambda e: e / np.sum(e, axis=-1, keepdims=True))(
            np.exp(x - np.max(x, axis=-1, keepdims=True))),
        "log_softmax": lambda: (lambda m: x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True)))(
            np.max(x, axis=-1, keepdims=True)),
        "logsumexp": lambda: (lambda m: np.log(np.sum(np.exp(x - m), axis=a)) + np.squeeze(m, axis=a))(
            np.max(x, axis=a, keepdims=True)),
        "sum": lambda: np.sum(x, axis=a), "mean": lambda: np.mean(x, axis=a),
        "prod": lambda: np.prod(x, axis=a), "max": lambda: np.max(x, axis=a),
        "min": lambda: np.min(x, axis=a),
        "argmax": lambda: np.argmax(x, axis=None if a is None else a[0]),
        "argmin": lambda: np.argmin(x, axis=None if a is None else a[0]),
        "all": lambda: np.all(x, axis=a), "any": lambda: np.any(x, axis=a),
        "std": lambda: np.std(x, axis=a), "var": lambda: np.var(x, axis=a),
        "cumsum": lambda: np.cumsum(x), "cumprod": lambda: np.cumprod(x),
        "count_nonzero": lambda: np.count_nonzero(x, axis=a),
        # kiln's transpose and flip give new contiguous tensors: NumPy's view plus the copy.
        "transpose": lambda: np.ascontiguousarray(x.T),
        "flip": lambda: np.ascontiguousarray(np.flip(x)),
        "sort": lambda: np.sort(x, axis=-1), "argsort": lambda: np.argsort(x, axis=-1),
        "triu": lambda: np.triu(x), "tril": lambda: np.tril(x), "diag": lambda: np.diag(x),
        "trace": lambda: np.trace(x), "zeros_like": lambda: np.zeros_like(x),
        "ones_like": lambda: np.ones_like(x), "nonzero": lambda: np.nonzero(x),
        "add": lambda: np.add(x, y), "subtract": lambda: np.subtract(x, y),
        "multiply": lambda: np.multiply(x, y), "divide": lambda: np.divide(x, y),
        "true_divide": lambda: np.true_divide(x, y), "floor_divide": lambda: np.floor_divide(x, y),
        "mod": lambda: np.mod(x, y), "power": lambda: np.power(x, y),
        "maximum": lambda: np.maximum(x, y), "minimum": lambda: np.minimum(x, y),
        "arctan2": lambda: np.arctan2(x, y), "hypot": lambda: np.hypot(x, y),
        "equal": lambda: np.equal(x, y), "not_equal": lambda: np.not_equal(x, y),
        "less": lambda: np.less(x, y), "less_equal": lambda: np.less_equal(x, y),
        "greater": lambda: np.greater(x, y), "greater_equal": lambda: np.greater_equal(x, y),
        "logical_and": lambda: np.logical_and(x, y), "logical_or": lambda: np.logical_or(x, y),
        "logical_xor": lambda: np.logical_xor(x, y),
        "matmul": lambda: np.matmul(x, y), "dot": lambda: np.dot(x, y),
        "matmul_bt": lambda: x @ y.T, "matmul_at": lambda: x.T @ y,
        "clip": lambda: np.clip(x, s(dt, -1.0), s(dt, 1.0)),
        "concatenate": lambda: np.concatenate([x, y], axis=case["axis"][0]),
        "add_row": lambda: x + y,
    }.get(op)
    if op == "where":
        cond = x > 0
        return lambda: np.where(cond, x, y)
    if op == "take":
        idx = np.random.default_rng(9).integers(0, x.shape[0], case.get("n", 256)).astype(np.int32)
        return lambda: np.take(x, idx, axis=0)
    if op == "one_hot":
        c = case.get("n", 10)
        idx = np.random.default_rng(9).integers(0, c, x.shape[0]).astype(np.int32)
        def one_hot():  # Keras's NumPy backend one_hot
            out = np.zeros((idx.shape[0], c), dtype=dt)
            out[np.arange(idx.shape[0]), idx] = 1
            return out
        return one_hot
    return f


def cases(unary, binary, only):
    out = []
    def add(op, dtype, shapes, size, tag=None, **kw):
        cid = "/".join([op] + ([tag] if tag else []) + [dtype, size])
        if only and not re.search(only, cid):
            return
        out.append(dict(id=cid, op=op, dtype=dtype, shapes=shapes, size=size, **kw))
    def rng_kw(table, op):
        r = table.get(op)
        return {"range": r} if r else {}
    for size, shp in SIZES.items():
        m, k, n = MATMUL[size]
        for dtype in ["float32", "float64", "float16", "bfloat16"]:
            full = dtype == "float32"
            sel = lambda op: full or op in MEMORY_BOUND
            for op in unary:
                if op in SHAPED:
                    continue
                if sel(op):
                    add(op, dtype, [shp], size, **rng_kw(UNARY_RANGE, op))
            if full:
                add("gelu_exact", dtype, [shp], size)
            for op in binary:
                if op in ("matmul", "dot") or op in SHAPED:
                    continue
                if sel(op):
                    add(op, dtype, [shp, shp], size, **rng_kw(BINARY_RANGE, op))
            for op in REDUCTIONS:
                if sel(op):
                    for ax in (0, 1):
                        add(op, dtype, [shp], size, tag=f"axis{ax}", axis=[ax], **rng_kw(UNARY_RANGE, op))
            if full:
                for op in ("softmax", "log_softmax"):
                    add(op, dtype, [shp], size, tag="axis-1", axis=[-1])
            # matmul in every float dtype (half types are held to half of kiln's float32)
            add("matmul", dtype, [[m, k], [k, n]], size)
            add("matmul_bt", dtype, [[m, k], [n, k]], size)
            add("matmul_at", dtype, [[k, m], [k, n]], size)
            if full:
                add("dot", dtype, [[m, k], [k, n]], size)
                add("take", dtype, [shp], size, n=min(256, shp[0]))
                add("one_hot", dtype, [[shp[0] * 4, 1]], size, n=shp[1])
                add("concatenate", dtype, [shp, shp], size, tag="axis0", axis=[0])
                add("concatenate", dtype, [shp, shp], size, tag="axis1", axis=[1])
            for op in ("add_row", "where", "clip"):
                if sel(op):
                    add(op, dtype, [shp, [shp[1]]] if op == "add_row" else [shp, shp], size)
    # Per-op latency: a 1-element add, whose bar is absolute (under 0.5 us) as well.
    add("add", "float32", [[1], [1]], "one")
    return out


def bar(case):
    op, size = case["op"], case["size"]
    if size == "one":
        return None  # absolute: under 0.5 us
    if op in ("matmul", "dot", "matmul_bt", "matmul_at"):
        if case["dtype"] in ("float16", "bfloat16"):
            return None  # against kiln's float32 (see half_matmul_bars)
        return 0.95 if size == "large" else 1.0
    if op in NN_ROW:
        return 2.0
    if size == "large" and (op in REDUCTIONS or op in ACTIVATIONS):
        return 1.5
    return 1.0


def best(fn):
    t0 = time.perf_counter(); fn(); once = max(time.perf_counter() - t0, 1e-8)
    reps = min(max(math.ceil(2e-3 / once), 1), 100_000)
    batches = min(max(int(0.6 / (once * reps)), 3), 7)
    b = float("inf")
    for _ in range(batches):
        t = time.perf_counter()
        for _ in range(reps):
            fn()
        b = min(b, (time.perf_counter() - t) / reps)
    return b


def numpy_times(cs):
    rng = np.random.default_rng(0)
    times = {}
    for c in cs:
        if np_dtype(c["dtype"]) is None:
            continue
        lo, hi = c.get("range") or (-2.0, 2.0)
        xs = [make(sh, c["dtype"], rng, lo, hi) for sh in c["shapes"]]
        try:
            fn = numpy_fn(c, xs[0], xs[1] if len(xs) > 1 else None)
            if fn is None:
                continue
            times[c["id"]] = best(fn)
        except Exception as e:  # NumPy lacks the op for this dtype (e.g. erf of bfloat16)
            times[c["id"]] = None
    return times


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="ndarray")
    ap.add_argument("--only", default=None, help="regex over case ids")
    ap.add_argument("--markdown", default=None)
    ap.add_argument("--pivot", default=None,
                    help="markdown: one row per op and dtype, NumPy/kiln per size (misses bold)")
    ap.add_argument("--skip-build", action="store_true")
    ap.add_argument("--bin", default=None, help="a prebuilt benches/ops binary to time (no cargo)")
    ap.add_argument("--baseline", default=None,
                    help="a second ops binary (an older commit's) timed right after, in the same run: "
                         "adds its time and baseline/kiln")
    ap.add_argument("--numpy-once", action="store_true", help="time NumPy once (faster, noisier)")
    args = ap.parse_args()
    if not args.skip_build and not args.bin:
        subprocess.run(["cargo", "bench", "-p", "kiln", "--bench", "ops", "--no-run"], cwd=ROOT, check=True)
    unary, binary = registry(args.bin)
    cs = cases(unary, binary, args.only)
    tmp = tempfile.mkdtemp()
    spec = os.path.join(tmp, "cases.json")
    with open(spec, "w") as f:
        json.dump(cs, f)
    before = numpy_times(cs)
    out = os.path.join(tmp, "kiln.jsonl")
    subprocess.run(bench_cmd(args.bin) + ["--cases", spec, "--out", out, "--engine", args.engine],
                   cwd=ROOT, check=True)
    base = {}
    if args.baseline:
        bout = os.path.join(tmp, "base.jsonl")
        subprocess.run([args.baseline, "--cases", spec, "--out", bout, "--engine", args.engine],
                       cwd=ROOT, check=True)
        for line in open(bout):
            r = json.loads(line)
            base[r["id"]] = r.get("seconds")
    after = before if args.numpy_once else numpy_times(cs)
    kiln = {}
    for line in open(out):
        r = json.loads(line)
        kiln[r["id"]] = r
    rows, misses = [], []
    f32_matmul = {}
    for c in cs:
        k = kiln.get(c["id"], {})
        if c["op"] in ("matmul", "matmul_bt", "matmul_at") and c["dtype"] == "float32" and "seconds" in k:
            f32_matmul[(c["op"], c["size"])] = k["seconds"]
    for c in cs:
        k = kiln.get(c["id"], {})
        ts = [t for t in (before.get(c["id"]), after.get(c["id"])) if t]
        nt = min(ts) if ts else None
        kt = k.get("seconds")
        b = bar(c)
        ratio = nt / kt if (nt and kt) else None
        note = ""
        if kt is None:
            note = "kiln: " + k.get("error", "not run")[:60]
        elif c["op"] in ("matmul", "matmul_bt", "matmul_at") and c["dtype"] in ("float16", "bfloat16"):
            ref = f32_matmul.get((c["op"], c["size"]))
            if ref:
                half = ref / kt
                note = f"{half:.2f}x kiln float32" + ("" if half >= 0.5 else "  MISS(<0.5)")
                if half < 0.5:
                    misses.append(c["id"])
        elif c["size"] == "one" and kt > 0.5e-6:
            note = "MISS(>0.5 us)"
            misses.append(c["id"])
        elif ratio is not None and b is not None and ratio < b:
            note = f"MISS(<{b})"
            misses.append(c["id"])
        bt = base.get(c["id"])
        if bt and kt:
            note = (note + "  " if note else "") + f"baseline {bt*1e6:.2f} us, {bt/kt:.2f}x"
        rows.append((c["id"], kt, nt, ratio, b, note))
    print(f"\nnumpy {np.__version__}, engine {args.engine}; best batch means (see the script's doc)")
    hdr = f"{'case':<40}{'kiln us':>11}{'numpy us':>11}{'np/kiln':>9}{'bar':>6}  note"
    print(hdr)
    fmt = lambda t: f"{t*1e6:.2f}" if t else "-"
    for cid, kt, nt, ratio, b, note in rows:
        print(f"{cid:<40}{fmt(kt):>11}{fmt(nt):>11}{(f'{ratio:.2f}' if ratio else '-'):>9}{(str(b) if b else '-'):>6}  {note}")
    print(f"\n{len(rows)} cases, {len(misses)} below their bar")
    if args.markdown:
        with open(args.markdown, "w") as f:
            f.write(f"| case | kiln µs | NumPy µs | NumPy/kiln | bar | note |\n| --- | ---: | ---: | ---: | ---: | --- |\n")
            for cid, kt, nt, ratio, b, note in rows:
                f.write(f"| `{cid}` | {fmt(kt)} | {fmt(nt)} | {(f'{ratio:.2f}' if ratio else '-')} | {b or '-'} | {note} |\n")
    if args.pivot:
        write_pivot(args.pivot, rows, f"numpy {np.__version__}, engine {args.engine}")


def write_pivot(path, rows, title):
    """NumPy time / kiln time per op (and variant) and dtype, one column per size; a ratio
    below the case's bar is bold, a half-precision matmul shows its ratio to kiln float32."""
    table, order = {}, []
    for cid, kt, nt, ratio, b, note in rows:
        key, dtype, size = cid.rsplit("/", 2)
        if (key, dtype) not in table:
            table[(key, dtype)] = {}
            order.append((key, dtype))
        if "x kiln float32" in note:
            cell = note.split()[0] + " of f32" + (" **miss**" if "MISS" in note else "")
        elif ratio is None:
            cell = "error" if kt is None else "-"
        else:
            cell = f"**{ratio:.2f}**" if (b is not None and ratio < b) else f"{ratio:.2f}"
        table[(key, dtype)][size] = cell
    with open(path, "w") as f:
        f.write(f"{title}: NumPy time / kiln time (above 1: kiln faster); **bold**: below the bar\n\n")
        f.write("| op | dtype | small | medium | large |\n| --- | --- | ---: | ---: | ---: |\n")
        for key, dtype in order:
            c = table[(key, dtype)]
            f.write(f"| `{key}` | {dtype} | {c.get('small', '')} | {c.get('medium', '')} | {c.get('large', '')} |\n")


if __name__ == "__main__":
    main()
