"""Writes crates/kiln/tests/data/functional_fixtures.json: what Keras 3 (JAX backend, CPU)
computes when it trains functional models with several inputs and outputs, for
tests/suite/functional.rs to compare with.

Each case is a model built from the same layers in kiln, its initial weights (so both start
from the same point), the data, compile's per-output losses, loss weights and metrics, and
what `fit` (no shuffle, float32) returns: the history of every log key per epoch and the
final weights; then `evaluate` on the data.

Run: KERAS_BACKEND=jax python scripts/gen_functional_fixtures.py
(numpy 2.4.6, keras 3.15.1, jax 0.10.2 when this was generated.)
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "data", "functional_fixtures.json")
L = keras.layers


def lst(a):
    return np.asarray(a, dtype=np.float64).ravel().tolist()


def data(seed, n=24):
    rng = np.random.default_rng(seed)
    xa = rng.normal(size=(n, 3)).astype(np.float32)
    xb = rng.normal(size=(n, 2)).astype(np.float32)
    # Targets a small model can learn: a smooth regression and a 3-class label.
    yr = (xa[:, :1] * 0.7 - xb[:, 1:] * 0.4 + 0.1).astype(np.float32)
    yc = (np.argmax(np.concatenate([xa[:, :2], xb[:, :1]], axis=1), axis=1)).astype(np.int64)
    return xa, xb, yr, yc


def two_heads(l2=False):
    """Two inputs, a shared trunk, a regression head `reg` and a class head `cls`."""
    a = keras.Input((3,))
    b = keras.Input((2,))
    h = L.Concatenate()([a, b])
    h = L.Dense(6, activation="relu", kernel_regularizer=keras.regularizers.L2(0.01) if l2 else None)(h)
    reg = L.Dense(1, name="reg")(h)
    cls = L.Dense(3, name="cls")(h)
    return keras.Model([a, b], [reg, cls])


def shared_siamese():
    """One Dense called on both inputs (one set of weights), the two results added."""
    a = keras.Input((3,))
    b = keras.Input((3,))
    d = L.Dense(4, activation="tanh")
    s = L.Add()([d(a), d(b)])
    out = L.Dense(1, name="out")(s)
    aux = L.Dense(1, name="aux")(d(a))
    return keras.Model([a, b], [out, aux])


def case(name, model, xs, ys, compile_kw, fit_kw, kiln):
    rng = np.random.default_rng(7)
    init = []
    for w in model.get_weights():
        init.append(rng.uniform(-0.5, 0.5, size=w.shape).astype(np.float32))
    model.set_weights(init)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), **compile_kw)
    hist = model.fit(xs, ys, shuffle=False, verbose=0, **fit_kw)
    ev = model.evaluate(xs, ys, verbose=0, return_dict=True, batch_size=fit_kw.get("batch_size", 32))
    return {
        "name": name,
        "kiln": kiln,
        "inputs": [{"shape": list(x.shape), "values": lst(x)} for x in xs],
        "targets": [{"shape": list(y.shape), "values": lst(y), "int": bool(y.dtype.kind == "i")} for y in ys],
        "sample_weight": lst(fit_kw["sample_weight"]) if "sample_weight" in fit_kw else None,
        "init": [{"shape": list(w.shape), "values": lst(w)} for w in init],
        "history": {k: [float(v) for v in vs] for k, vs in hist.history.items()},
        "evaluate": {k: float(v) for k, v in ev.items()},
        "final": [{"shape": list(w.shape), "values": lst(w)} for w in model.get_weights()],
        "output_names": list(model.output_names),
    }


cases = []
xa, xb, yr, yc = data(0)
cases.append(case(
    "two_heads_list",
    two_heads(),
    [xa, xb], [yr, yc],
    dict(loss=["mse", keras.losses.SparseCategoricalCrossentropy(from_logits=True)],
         loss_weights=[1.0, 0.5], metrics=[["mae"], ["accuracy"]]),
    dict(epochs=3, batch_size=8),
    {"losses": ["mse", "sparse_categorical_crossentropy_logits"], "loss_weights": [1.0, 0.5],
     "metrics": [["mae"], ["accuracy"]], "l2": False},
))
cases.append(case(
    "two_heads_dict_l2_sample_weight",
    two_heads(l2=True),
    [xa, xb], [yr, yc],
    dict(loss={"cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True), "reg": "mae"},
         loss_weights={"reg": 2.0, "cls": 1.0}, metrics={"cls": ["accuracy"]}),
    dict(epochs=2, batch_size=5, sample_weight=np.linspace(0.5, 1.5, len(xa)).astype(np.float32),
         validation_split=0.25),
    {"losses": ["mae", "sparse_categorical_crossentropy_logits"], "loss_weights": [2.0, 1.0],
     "metrics": [[], ["accuracy"]], "l2": True},
))
cases.append(case(
    "two_heads_one_loss",
    two_heads(),
    [xa, xb], [yr, np.eye(3, dtype=np.float32)[yc]],
    dict(loss="mse"),
    dict(epochs=2, batch_size=6),
    {"losses": ["mse", "mse"], "loss_weights": None, "metrics": [[], []], "l2": False},
))
ya = (xa[:, :1] + xb[:, :1]).astype(np.float32)
xs = [xa, np.flip(xa, axis=0).copy()]
cases.append(case(
    "shared_siamese",
    shared_siamese(),
    xs, [ya, yr],
    dict(loss=["mse", "mse"], loss_weights=[1.0, 0.3]),
    dict(epochs=2, batch_size=8),
    {"losses": ["mse", "mse"], "loss_weights": [1.0, 0.3], "metrics": [[], []], "l2": False},
))

with open(OUT, "w") as f:
    json.dump({"keras": keras.__version__, "cases": cases}, f)
print(OUT, len(cases), "cases")
for c in cases:
    print(c["name"], sorted(c["history"]), c["output_names"])
