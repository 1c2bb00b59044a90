"""Writes crates/kiln/tests/data/conv_fixtures.json: what Keras 3's ops.nn (JAX backend, CPU,
float64) computes for convolutions and pools, and jax.grad of a weighted sum of each output
with respect to every input, for kiln's tests (tests/suite/conv.rs) to compare with.

Each case: the op, its arguments, the inputs (flattened, with shapes), the output, and the
gradients of sum(output * r) for a fixed random r.

Run: KERAS_BACKEND=jax python scripts/gen_conv_fixtures.py
(numpy 2.4.6, keras 3.15.1, jax 0.10.2 when this was generated.)
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")
import jax

jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import keras
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "data", "conv_fixtures.json")
rng = np.random.default_rng(7)


def arr(shape):
    return rng.uniform(-1.0, 1.0, shape).astype(np.float64)


def enc(a):
    a = np.asarray(a, dtype=np.float64)
    return {"shape": list(a.shape), "data": a.ravel().tolist()}


cases = []


def case(name, op, inputs, args):
    def f(*xs):
        if op == "conv" and args.get("padding") == "causal":
            # ops.conv has no causal padding; Keras's Conv1D pads dilation * (k - 1) on the left.
            k, d = xs[1].shape[0], args.get("dilation_rate", 1)
            x = jnp.pad(xs[0], ((0, 0), (d * (k - 1), 0), (0, 0)))
            return keras.ops.conv(x, xs[1], **{**args, "padding": "valid"})
        if op == "conv":
            return keras.ops.conv(xs[0], xs[1], **args)
        if op == "depthwise_conv":
            return keras.ops.depthwise_conv(xs[0], xs[1], **args)
        if op == "max_pool":
            return keras.ops.max_pool(xs[0], **args)
        if op == "average_pool":
            return keras.ops.average_pool(xs[0], **args)
        raise ValueError(op)

    xs = [jnp.asarray(x) for x in inputs]
    y = np.asarray(f(*xs))
    assert y.dtype == np.float64, (name, y.dtype)
    r = arr(y.shape)
    grads = jax.grad(lambda *xs: jnp.sum(f(*xs) * r), argnums=tuple(range(len(xs))))(*xs)
    cases.append({
        "name": name,
        "op": op,
        "args": args,
        "inputs": [enc(x) for x in inputs],
        "output": enc(y),
        "r": enc(r),
        "grads": [enc(g) for g in grads],
    })


# Pools pass strides explicitly: Keras 3.15.1's JAX max_pool/average_pool with strides=None
# convert pool_size to a spatial operand twice and fail (kiln's default, strides =
# pool_size, is Keras's documented one).

# conv: 1-d, 2-d, 3-d; valid/same/causal; strides; dilation; groups; channels_first.
case("conv1d_valid", "conv", [arr([2, 9, 3]), arr([3, 3, 4])], {"strides": 1, "padding": "valid"})
case("conv1d_same_stride2", "conv", [arr([2, 9, 3]), arr([4, 3, 2])], {"strides": 2, "padding": "same"})
case("conv1d_causal_dilated", "conv", [arr([2, 8, 2]), arr([3, 2, 3])],
     {"strides": 1, "padding": "causal", "dilation_rate": 2})
case("conv2d_valid", "conv", [arr([2, 6, 5, 3]), arr([3, 3, 3, 4])], {"strides": 1, "padding": "valid"})
case("conv2d_same", "conv", [arr([2, 5, 5, 2]), arr([3, 3, 2, 3])], {"strides": 1, "padding": "same"})
case("conv2d_same_stride2_even_kernel", "conv", [arr([1, 7, 6, 2]), arr([2, 4, 2, 3])],
     {"strides": (2, 2), "padding": "same"})
case("conv2d_dilated", "conv", [arr([1, 7, 7, 2]), arr([3, 3, 2, 2])],
     {"strides": 1, "padding": "valid", "dilation_rate": (2, 1)})
case("conv2d_groups", "conv", [arr([2, 5, 5, 4]), arr([3, 3, 2, 6])], {"strides": 1, "padding": "same"})
case("conv2d_channels_first", "conv", [arr([2, 3, 6, 5]), arr([3, 2, 3, 4])],
     {"strides": (1, 2), "padding": "valid", "data_format": "channels_first"})
case("conv3d_same", "conv", [arr([1, 4, 4, 3, 2]), arr([2, 2, 2, 2, 3])], {"strides": 1, "padding": "same"})
case("depthwise_conv2d", "depthwise_conv", [arr([2, 6, 6, 3]), arr([3, 3, 3, 2])],
     {"strides": 1, "padding": "valid"})
case("depthwise_conv2d_same_stride2", "depthwise_conv", [arr([1, 7, 7, 2]), arr([3, 3, 2, 1])],
     {"strides": 2, "padding": "same"})
case("max_pool2d_valid", "max_pool", [arr([2, 6, 6, 3])], {"pool_size": 2, "strides": 2, "padding": "valid"})
case("max_pool2d_same_stride1", "max_pool", [arr([1, 5, 5, 2])],
     {"pool_size": 3, "strides": 1, "padding": "same"})
case("max_pool1d_same", "max_pool", [arr([2, 7, 2])], {"pool_size": 2, "strides": 2, "padding": "same"})
case("max_pool2d_channels_first", "max_pool", [arr([1, 2, 6, 4])],
     {"pool_size": 2, "strides": 2, "data_format": "channels_first"})
case("average_pool2d_valid", "average_pool", [arr([2, 6, 6, 3])], {"pool_size": 2, "strides": 2, "padding": "valid"})
case("average_pool2d_same", "average_pool", [arr([1, 5, 5, 2])],
     {"pool_size": 3, "strides": 2, "padding": "same"})
case("average_pool1d_same", "average_pool", [arr([2, 7, 2])], {"pool_size": 2, "strides": 2, "padding": "same"})

with open(OUT, "w") as f:
    json.dump({"generator": "scripts/gen_conv_fixtures.py", "keras": keras.__version__,
               "jax": jax.__version__, "cases": cases}, f)
print(f"wrote {len(cases)} cases to {os.path.normpath(OUT)}")
