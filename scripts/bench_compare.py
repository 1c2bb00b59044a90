#!/usr/bin/env python3
"""Runs kiln's criterion benchmarks (crates/kiln/benches/core.rs) and the same work in NumPy, in
one run on one machine, and prints the time ratios (NumPy time / kiln time: > 1 means kiln is
faster). NumPy is timed before and after the Rust run; the better of the two is used, so
machine noise works against kiln, not for it.

    pip install numpy && python3 scripts/bench_compare.py [--skip-cargo]

OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are cleared for the NumPy timings (they slow a current
OpenBLAS on this machine; see the environment notes) and NumPy keeps its default threads.
"""
import json, os, subprocess, sys, time

for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
    os.environ.pop(k, None)
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")

def best(fn, reps):
    fn()
    ts = []
    for _ in range(reps):
        t = time.perf_counter(); fn(); ts.append(time.perf_counter() - t)
    return min(ts), sorted(ts)[len(ts) // 2]

def numpy_times():
    rng = np.random.default_rng(0)
    n32 = 32 << 20
    x = ((np.arange(n32) * 0.618033988749895) % 1.0) * 200.0 - 100.0
    out32 = np.empty(n32, dtype=np.float32)
    a = rng.uniform(-2, 2, 10_000_000).astype(np.float32)
    b = rng.uniform(-2, 2, 10_000_000).astype(np.float32)
    a2 = rng.uniform(-2, 2, (10_000, 1000)).astype(np.float32)
    row = rng.uniform(-2, 2, 1000).astype(np.float32)
    m1 = rng.uniform(-2, 2, (1024, 1024)).astype(np.float32)
    m2 = rng.uniform(-2, 2, (1024, 1024)).astype(np.float32)
    return {
        # kiln allocating its output vs astype (allocates); kiln into a ready buffer vs copyto.
        "convert/f64_to_f32_report_32M": best(lambda: x.astype(np.float32), 10),
        "convert/f64_to_f32_report_32M_into": best(lambda: np.copyto(out32, x, casting="unsafe"), 10),
        "elementwise_10M_f32/add": best(lambda: np.add(a, b), 20),
        "elementwise_10M_f32/multiply": best(lambda: np.multiply(a, b), 20),
        "elementwise_10M_f32/exp": best(lambda: np.exp(a), 20),
        "elementwise_10M_f32/add_broadcast_row": best(lambda: np.add(a2, row), 20),
        "elementwise_10M_f32/multiply_broadcast_row": best(lambda: np.multiply(a2, row), 20),
        "matmul/f32_1024": best(lambda: m1 @ m2, 10),
    }

def kiln_time(name):
    p = os.path.join(ROOT, "target", "criterion", *name.split("/"), "new", "estimates.json")
    with open(p) as f:
        e = json.load(f)
    return e["median"]["point_estimate"] / 1e9

def main():
    before = numpy_times()
    if "--skip-cargo" not in sys.argv:
        subprocess.run(["cargo", "bench", "-p", "kiln", "--bench", "core", "--", "--noplot"], cwd=ROOT, check=True)
    after = numpy_times()
    print(f"\nnumpy {np.__version__}; times are medians (kiln: criterion) / best-of-two medians (NumPy)")
    print("(convert: kiln allocating vs np.astype; kiln _into a ready buffer vs np.copyto(out, x, casting='unsafe'))")
    print(f"{'benchmark':<46}{'kiln ms':>10}{'numpy ms':>10}{'numpy/kiln':>12}")
    for name in before:
        k = kiln_time(name)
        nt = min(before[name][1], after[name][1])
        print(f"{name:<46}{k*1e3:>10.2f}{nt*1e3:>10.2f}{nt/k:>12.2f}")

if __name__ == "__main__":
    main()
