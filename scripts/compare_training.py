"""kiln against Keras 3 (JAX backend, CPU) on the main job, in one run: the same models (the
MLP 64-128-10 with relu; the convnet Conv2D(16, 3, relu) - Conv2D(32, 3, relu) -
MaxPooling2D - Flatten - Dense(10) on the 8x8 images; glorot_uniform kernels, zero biases),
the same rows (kiln writes its split with --split-out), the same standardisation, Adam(1e-3),
sparse categorical cross-entropy from logits, batch 32, shuffled, 20 epochs. Runs alternate (kiln, Keras, kiln, Keras, ...) so the
ratio holds on a noisy machine. Prints test accuracies and ms/epoch. (kiln's peak memory: a
child forked from this Python process reports Python's, so measure it from outside:
`farm-bench -- target/release/kiln train --verbose 0`.)

    cargo build --release -p kiln-cli
    KERAS_BACKEND=jax python scripts/compare_training.py [--runs 3] [--epochs 20] [--model mlp|cnn|both]

kiln's ms/epoch is fit's wall time over the epochs (conversion and checks included). Keras's
is the median epoch after the first (which compiles the step with XLA), and its mean over all
epochs is printed too.
"""

import argparse
import os
import re
import statistics
import subprocess
import sys
import time

os.environ.setdefault("KERAS_BACKEND", "jax")
import jax
import keras
import numpy as np

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
KILN = os.path.join(ROOT, "target", "release", "kiln")


def run_kiln(model, epochs, split):
    with open("/tmp/kiln_compare_out.txt", "w") as f:
        p = subprocess.Popen(
            [KILN, "train", "--verbose", "0", "--model", model, "--epochs", str(epochs),
             "--split-out", split],
            cwd=ROOT, stdout=f, stderr=subprocess.STDOUT,
        )
        status = p.wait()
    out = open("/tmp/kiln_compare_out.txt").read()
    if status != 0:
        raise SystemExit(out)
    ms = float(re.search(r"\(([\d.]+) ms/epoch\)", out).group(1))
    acc = float(re.search(r"test accuracy: ([\d.]+)%", out).group(1))
    return ms, acc


def run_keras(kind, epochs, split, seed):
    d = np.load(os.path.join(ROOT, "data", "digits.npz"))
    s = np.load(split)
    x, y = d["x"], d["y"]
    xtr, xte, ytr, yte = x[s["train"]], x[s["test"]], y[s["train"]], y[s["test"]]
    m, sd = xtr.mean(0, keepdims=True), xtr.std(0, keepdims=True)
    sd[sd == 0] = 1.0
    xtr, xte = ((xtr - m) / sd).astype("float32"), ((xte - m) / sd).astype("float32")
    keras.utils.set_random_seed(seed)
    L = keras.layers
    if kind == "cnn":
        xtr, xte = xtr.reshape(-1, 8, 8, 1), xte.reshape(-1, 8, 8, 1)
        model = keras.Sequential([keras.Input((8, 8, 1)), L.Conv2D(16, 3, activation="relu"),
                                  L.Conv2D(32, 3, activation="relu"), L.MaxPooling2D(),
                                  L.Flatten(), L.Dense(10)])
    else:
        model = keras.Sequential([keras.Input((64,)), L.Dense(128, activation="relu"), L.Dense(10)])
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    times = []

    class T(keras.callbacks.Callback):
        def on_epoch_begin(self, e, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, e, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(xtr, ytr, batch_size=32, epochs=epochs, verbose=0, callbacks=[T()])
    acc = model.evaluate(xte, yte, verbose=0)[1]
    return 1e3 * statistics.median(times[1:]), 1e3 * statistics.mean(times), 100 * acc


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--model", default="both", choices=["mlp", "cnn", "both"])
    a = ap.parse_args()
    split = "/tmp/kiln_compare_split.npz"
    kinds = ["mlp", "cnn"] if a.model == "both" else [a.model]
    table = []
    for kind in kinds:
        rows = []
        for r in range(a.runs):
            k = run_kiln(kind, a.epochs, split)
            j = run_keras(kind, a.epochs, split, r)
            rows.append((k, j))
            print(f"{kind} run {r + 1}: kiln {k[0]:.2f} ms/epoch, {k[1]:.2f}%; keras-jax {j[0]:.2f} "
                  f"ms/epoch (mean incl. compile {j[1]:.1f}), {j[2]:.2f}%", flush=True)
        ratios = [r[0][0] / r[1][0] for r in rows]
        table.append((kind, rows, ratios))
    print()
    print(f"keras {keras.__version__}, jax {jax.__version__}, numpy {np.__version__}; {os.cpu_count()} cpus; "
          f"{a.epochs} epochs, batch 32")
    print("| model | kiln test accuracy | Keras-JAX test accuracy | kiln ms/epoch | Keras-JAX ms/epoch | kiln/Keras (run by run) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for kind, rows, ratios in table:
        print(f"| {kind} | {statistics.median(r[0][1] for r in rows):.2f}% "
              f"| {statistics.median(r[1][2] for r in rows):.2f}% "
              f"| {statistics.median(r[0][0] for r in rows):.2f} "
              f"| {statistics.median(r[1][0] for r in rows):.2f} "
              f"| {', '.join(f'{x:.2f}' for x in ratios)} (median {statistics.median(ratios):.2f}) |")


if __name__ == "__main__":
    sys.exit(main())
