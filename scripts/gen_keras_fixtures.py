"""Keras 3 model files for kiln's loader, and the check that Keras loads what kiln saves.

Generate (writes crates/kiln/tests/data/keras/):
    KERAS_BACKEND=jax python scripts/gen_keras_fixtures.py
  For each model: NAME.keras (saved by Keras after a few training steps, so the optimizer
  and BatchNormalization statistics are not at their initial values) and NAME_io.npz with
  the inputs `x0`, `x1`, ... and Keras's predictions `y0`, `y1`, ... (inference mode).
  Also hostile files built from real ones: a Lambda layer, a config naming a module outside
  Keras, a custom registered class.

Check (what kiln saved loads in Keras and predicts the same):
    cargo run -p kiln --example export_keras -- OUTDIR
    KERAS_BACKEND=jax python scripts/gen_keras_fixtures.py --check OUTDIR
  For every OUTDIR/NAME.keras with OUTDIR/NAME_io.npz: keras.saving.load_model (safe mode),
  predict on the x arrays, compare with kiln's y arrays; also checks that the optimizer
  state loaded (iterations) and that one more training step runs.

numpy 2.4.6, keras 3.15.1, jax 0.10.2 when this was generated.
"""

import json
import os
import shutil
import sys
import zipfile

os.environ.setdefault("KERAS_BACKEND", "jax")
import keras
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "data", "keras")
L = keras.layers


def rng(seed):
    return np.random.default_rng(seed)


def mlp():
    m = keras.Sequential(
        [keras.Input((8,)), L.Dense(16, activation="relu"), L.Dropout(0.3), L.Dense(16, activation="tanh"), L.Dense(3)],
        name="mlp",
    )
    m.compile(optimizer=keras.optimizers.Adam(1e-2), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    r = rng(1)
    x = r.normal(size=(64, 8)).astype("float32")
    y = r.integers(0, 3, 64)
    m.fit(x, y, epochs=2, batch_size=16, verbose=0, shuffle=False)
    return m, [x[:10]]


def convnet():
    i = keras.Input((12, 12, 2), name="image")
    h = L.Conv2D(6, 3, padding="same", activation="relu")(i)
    h = L.BatchNormalization()(h)
    h = L.MaxPooling2D()(h)
    h = L.Conv2D(8, 3, strides=1, padding="valid")(h)
    h = L.BatchNormalization(momentum=0.9, epsilon=1e-5)(h)
    h = L.Activation("relu")(h)
    h = L.AveragePooling2D(pool_size=2)(h)
    h = L.Flatten()(h)
    h = L.Dropout(0.2)(h)
    o = L.Dense(4)(h)
    m = keras.Model(i, o, name="convnet")
    m.compile(optimizer=keras.optimizers.SGD(0.05, momentum=0.9), loss="mse", metrics=["mae"])
    r = rng(2)
    x = r.normal(size=(32, 12, 12, 2)).astype("float32")
    y = r.normal(size=(32, 4)).astype("float32")
    m.fit(x, y, epochs=2, batch_size=8, verbose=0, shuffle=False)
    return m, [x[:6]]


def multi():
    a = keras.Input((5,), name="a")
    b = keras.Input((5,), name="b")
    shared = L.Dense(6, activation="relu", name="shared")
    h = L.Add()([shared(a), shared(b)])
    inner = keras.Sequential([keras.Input((6,)), L.Dense(6, activation="sigmoid"), L.LayerNormalization()], name="block")
    h2 = inner(h)
    c = L.Concatenate()([h, h2])
    reg = L.Dense(1, name="reg")(c)
    cls = L.Dense(3, name="cls")(L.Multiply()([h, h2]))
    m = keras.Model([a, b], [reg, cls], name="multi")
    m.compile(
        optimizer=keras.optimizers.RMSprop(1e-2, momentum=0.5),
        loss={"reg": "mse", "cls": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
        loss_weights={"reg": 1.0, "cls": 0.5},
        metrics={"cls": ["accuracy"]},
    )
    r = rng(3)
    xa, xb = r.normal(size=(40, 5)).astype("float32"), r.normal(size=(40, 5)).astype("float32")
    m.fit([xa, xb], {"reg": r.normal(size=(40, 1)).astype("float32"), "cls": r.integers(0, 3, 40)}, epochs=1, batch_size=10, verbose=0, shuffle=False)
    return m, [xa[:7], xb[:7]]


def zoo_seq():
    """Sequence layers: Embedding, Conv1D, pooling, normalization, padding/cropping."""
    m = keras.Sequential(
        [
            keras.Input((10,), dtype="int32"),
            L.Embedding(20, 6),
            L.Conv1D(5, 3, padding="causal", dilation_rate=2, activation="gelu"),
            L.ZeroPadding1D(2),
            L.Cropping1D((1, 2)),
            L.SeparableConv1D(4, 3, depth_multiplier=2),
            L.DepthwiseConv1D(2, activation="silu"),
            L.GroupNormalization(groups=2),
            L.UpSampling1D(2),
            L.MaxPooling1D(2, strides=1, padding="same"),
            L.GlobalAveragePooling1D(),
            L.Dense(2, activation="softmax"),
        ],
        name="zoo_seq",
    )
    m.compile(optimizer=keras.optimizers.Nadam(1e-2), loss="categorical_crossentropy")
    r = rng(4)
    x = r.integers(0, 20, (24, 10)).astype("int32")
    y = keras.utils.to_categorical(r.integers(0, 2, 24), 2)
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    return m, [x[:5]]


def zoo_img():
    """Image layers: transposed / depthwise / separable convolutions, up-sampling, global
    pools, reshaping, the other merges."""
    i = keras.Input((8, 8, 3))
    h = L.ZeroPadding2D(((1, 0), (0, 1)))(i)
    h = L.Cropping2D(((0, 1), (1, 0)))(h)
    h = L.DepthwiseConv2D(3, depth_multiplier=2, padding="same")(h)
    h = L.SeparableConv2D(4, 3, padding="same", activation="elu")(h)
    t = L.Conv2DTranspose(4, 3, strides=2, padding="same")(h)
    t = L.MaxPooling2D()(t)
    s = L.Subtract()([h, t])
    mx = L.Maximum()([h, t])
    mn = L.Minimum()([h, t])
    av = L.Average()([s, mx, mn])
    u = L.UpSampling2D(2)(av)
    g1 = L.GlobalMaxPooling2D()(u)
    g2 = L.GlobalAveragePooling2D(keepdims=True)(u)
    g2 = L.Reshape((4,))(g2)
    c = L.Concatenate()([g1, g2])
    c = L.Dense(6, activation="leaky_relu", kernel_regularizer=keras.regularizers.L2(1e-3))(c)
    o = L.Dense(2, activation="sigmoid")(c)
    m = keras.Model(i, o, name="zoo_img")
    m.compile(optimizer=keras.optimizers.Adam(1e-3, amsgrad=True), loss="binary_crossentropy")
    r = rng(5)
    x = r.normal(size=(16, 8, 8, 3)).astype("float32")
    y = r.integers(0, 2, (16, 2)).astype("float32")
    m.fit(x, y, epochs=1, batch_size=8, verbose=0, shuffle=False)
    return m, [x[:4]]


def uncompiled():
    m = keras.Sequential([keras.Input((3,)), L.Dense(2)], name="plain")
    return m, [rng(6).normal(size=(3, 3)).astype("float32")]


MODELS = {"mlp": mlp, "convnet": convnet, "multi": multi, "zoo_seq": zoo_seq, "zoo_img": zoo_img, "uncompiled": uncompiled}


def io_npz(path, xs, ys):
    arrays = {f"x{i}": x for i, x in enumerate(xs)}
    arrays.update({f"y{i}": np.asarray(y) for i, y in enumerate(ys)})
    np.savez(path, **arrays)


def rewrite_config(src, dst, edit):
    """A copy of src with config.json passed through edit (for hostile files)."""
    with zipfile.ZipFile(src) as z, zipfile.ZipFile(dst, "w") as o:
        for n in z.namelist():
            data = z.read(n)
            if n == "config.json":
                c = json.loads(data)
                edit(c)
                data = json.dumps(c).encode()
            o.writestr(n, data)


def generate():
    os.makedirs(OUT, exist_ok=True)
    for name, make in MODELS.items():
        keras.utils.set_random_seed(7)
        m, xs = make()
        ys = m.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        ys = ys if isinstance(ys, list) else [ys]
        m.save(os.path.join(OUT, f"{name}.keras"))
        io_npz(os.path.join(OUT, f"{name}_io.npz"), xs, ys)
        print(name, [y.shape for y in ys])
    # Hostile: a Lambda layer (Keras refuses it in safe mode; kiln always).
    m = keras.Sequential([keras.Input((3,)), L.Lambda(lambda t: t * 2), L.Dense(1)])
    m.save(os.path.join(OUT, "hostile_lambda.keras"))
    src = os.path.join(OUT, "uncompiled.keras")

    def os_module(c):
        c["config"]["layers"][1]["module"] = "os"
        c["config"]["layers"][1]["class_name"] = "system"

    def registered(c):
        c["config"]["layers"][1]["registered_name"] = "my_package>EvilDense"

    def unknown(c):
        c["config"]["layers"][1]["class_name"] = "TextVectorization"

    def constraint(c):
        c["config"]["layers"][1]["config"]["kernel_constraint"] = {"module": "keras.constraints", "class_name": "NonNeg", "config": {}}

    for n, f in [("hostile_module", os_module), ("hostile_registered", registered), ("unknown_layer", unknown), ("unsupported_option", constraint)]:
        rewrite_config(src, os.path.join(OUT, f"{n}.keras"), f)


def check(d):
    ok = True
    for f in sorted(os.listdir(d)):
        if not f.endswith(".keras"):
            continue
        name = f[: -len(".keras")]
        io = os.path.join(d, f"{name}_io.npz")
        if not os.path.exists(io):
            continue
        m = keras.saving.load_model(os.path.join(d, f))
        z = np.load(io)
        xs = [z[k] for k in sorted(k for k in z.files if k.startswith("x"))]
        ys = [z[k] for k in sorted(k for k in z.files if k.startswith("y"))]
        got = m.predict(xs if len(xs) > 1 else xs[0], verbose=0)
        got = got if isinstance(got, list) else [got]
        err = max(float(np.max(np.abs(np.asarray(g, np.float64) - y))) for g, y in zip(got, ys))
        opt = getattr(m, "optimizer", None)
        it = int(opt.iterations.numpy()) if opt is not None else None
        good = err <= 1e-5
        ok &= good
        print(f"{name}: max |keras - kiln| = {err:.3g} {'ok' if good else 'FAIL'}; optimizer iterations {it}")
        if opt is not None:
            # Train one step on kiln's predictions (as class labels for sparse losses).
            losses = m.loss if isinstance(m.loss, (list, dict)) else [m.loss]
            losses = [losses[n] for n in m.output_names] if isinstance(losses, dict) else losses
            targets = [np.argmax(y, -1) if "Sparse" in type(l).__name__ or l == "sparse_categorical_crossentropy" else y for l, y in zip(losses, ys)]
            m.train_on_batch(xs if len(xs) > 1 else xs[0], targets if len(targets) > 1 else targets[0])
            print(f"  one more training step in Keras: ok (iterations {int(opt.iterations.numpy())})")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    else:
        if os.path.isdir(OUT):
            shutil.rmtree(OUT)
        generate()
