"""Writes crates/kiln/tests/data/callback_fixtures.json: what Keras 3's EarlyStopping and
ReduceLROnPlateau do on scripted sequences of a monitored value (the real callbacks, driven
with a stand-in model whose weights are the epoch number), for tests/suite/callbacks.rs.

Run: KERAS_BACKEND=jax python scripts/gen_callback_fixtures.py
(keras 3.15.1, jax 0.10.2 when this was generated.)
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "data", "callback_fixtures.json")


class Opt:
    def __init__(self, lr):
        self.learning_rate = lr


class Model:
    def __init__(self, lr=1e-3):
        self.stop_training = False
        self.epoch = None
        self.restored = None
        self.optimizer = Opt(lr)

    def get_weights(self):
        return [np.array(self.epoch, dtype=np.float64)]

    def set_weights(self, w):
        self.restored = float(w[0])


SEQS = {
    "down_then_flat": [1.0, 0.8, 0.9, 0.85, 0.95, 0.7, 0.72, 0.71, 0.73, 0.74],
    "noisy": [0.5, 0.49, 0.495, 0.48, 0.4801, 0.47995, 0.47, 0.469, 0.4695, 0.4692],
    "rising": [0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    "accuracy": [0.5, 0.6, 0.65, 0.64, 0.66, 0.66, 0.65, 0.64, 0.7, 0.69],
}

early = []
for seq_name, seq in SEQS.items():
    monitor = "val_accuracy" if seq_name == "accuracy" else "val_loss"
    for args in [
        {},
        {"patience": 2},
        {"patience": 2, "restore_best_weights": True},
        {"patience": 1, "min_delta": 0.01},
        {"patience": 3, "baseline": 0.75 if monitor == "val_loss" else 0.62, "restore_best_weights": True},
        {"patience": 2, "start_from_epoch": 3, "restore_best_weights": True},
        {"patience": 20, "restore_best_weights": True},
        {"patience": 2, "mode": "max"},
    ]:
        mode = args.get("mode", "max" if monitor == "val_accuracy" else "auto")
        cb = keras.callbacks.EarlyStopping(monitor=monitor, **{**args, "mode": mode})
        m = Model()
        cb.set_model(m)
        cb.on_train_begin()
        ran = []
        for e, v in enumerate(seq):
            m.epoch = e
            ran.append(e)
            cb.on_epoch_end(e, {monitor: v, "loss": 1.0})
            if m.stop_training:
                break
        cb.on_train_end()
        early.append({"seq": seq_name, "monitor": monitor, "args": {**args, "mode": mode},
                      "epochs_run": ran, "stopped_epoch": cb.stopped_epoch,
                      "restored": m.restored})

plateau = []
for seq_name, seq in SEQS.items():
    monitor = "val_accuracy" if seq_name == "accuracy" else "val_loss"
    for args in [
        {"patience": 2, "factor": 0.5},
        {"patience": 1, "factor": 0.5, "cooldown": 2},
        {"patience": 1, "factor": 0.1, "min_lr": 2e-5},
        {"patience": 2, "factor": 0.5, "min_delta": 0.01},
        {},
    ]:
        mode = "max" if monitor == "val_accuracy" else "auto"
        cb = keras.callbacks.ReduceLROnPlateau(monitor=monitor, mode=mode, **args)
        m = Model(1e-3)
        cb.set_model(m)
        cb.on_train_begin()
        lrs = []
        for e, v in enumerate(seq):
            cb.on_epoch_end(e, {monitor: v, "loss": 1.0})
            lrs.append(float(m.optimizer.learning_rate))
        plateau.append({"seq": seq_name, "monitor": monitor, "args": {**args, "mode": mode},
                        "lrs": lrs})

with open(OUT, "w") as f:
    json.dump({"generator": "scripts/gen_callback_fixtures.py", "keras": keras.__version__,
               "sequences": SEQS, "early_stopping": early, "reduce_lr_on_plateau": plateau}, f, indent=1)
print(f"wrote {len(early)} EarlyStopping and {len(plateau)} ReduceLROnPlateau cases to {os.path.normpath(OUT)}")
