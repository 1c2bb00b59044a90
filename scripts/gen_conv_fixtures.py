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
        if op == "conv_transpose":
            return keras.ops.conv_transpose(xs[0], xs[1], **args)
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
case("conv_transpose2d_valid_stride2", "conv_transpose", [arr([2, 3, 4, 2]), arr([3, 3, 4, 2])],
     {"strides": 2, "padding": "valid"})
case("conv_transpose2d_same", "conv_transpose", [arr([1, 4, 3, 3]), arr([3, 2, 2, 3])],
     {"strides": (2, 1), "padding": "same"})
case("conv_transpose1d_output_padding_dilated", "conv_transpose", [arr([2, 5, 2]), arr([3, 3, 2])],
     {"strides": 2, "padding": "valid", "output_padding": 1, "dilation_rate": 1})
case("conv_transpose1d_same_dilated", "conv_transpose", [arr([1, 6, 2]), arr([3, 2, 2])],
     {"strides": 1, "padding": "same", "dilation_rate": 2})
case("conv_transpose2d_channels_first", "conv_transpose", [arr([1, 2, 3, 3]), arr([2, 2, 3, 2])],
     {"strides": 2, "padding": "same", "data_format": "channels_first"})
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

# ---- layers: forward and jax.grad of sum(layer(x) * r) w.r.t. x and every weight -----------
keras.config.set_floatx("float64")
layers = []


def layer_case(name, layer, x_shape, reference=None, x=None, training=False, state_reference=None):
    """`reference(x, weights)`, where given, is the float64 oracle instead of the layer (which
    is checked against it to 1e-6): Keras 3.15.1's ops.mean of float64 accumulates in
    float32 (its result_type(float64, "float32") narrows) and casts back. Gradients are taken
    with respect to the input (float inputs) and the trainable weights; with `training`, the
    non-trainable weights after the call (BatchNormalization's moving statistics) are kept."""
    x = arr(x_shape) if x is None else x
    layer.build(x.shape)
    tw = [arr(w.shape) for w in layer.trainable_weights]
    # Non-trainable weights are variances or means: keep variances positive.
    # (A seed generator's state, as SpatialDropout's, keeps its value and is not a weight.)
    def state(v):
        if "variance" in v.name:
            return rng.uniform(0.5, 1.5, v.shape)
        if "mean" in v.name:
            return arr(v.shape)
        return np.asarray(v.value)
    ntw = [state(v) for v in layer.non_trainable_variables]
    stats = [i for i, v in enumerate(layer.non_trainable_variables) if "mean" in v.name or "variance" in v.name]

    def call(ws, x):
        # Only layers whose call takes `training` get it (Keras passes it where accepted).
        if training:
            return layer.stateless_call(ws, ntw, x, training=True)
        return layer.stateless_call(ws, ntw, x)

    def f(x, ws):
        if reference is not None:
            return reference(x, ws, ntw)
        return call(ws, x)[0]

    y = f(jnp.asarray(x), tw)
    assert y.dtype == jnp.float64, (name, y.dtype)
    if reference is not None:
        keras_y = np.asarray(call(tw, jnp.asarray(x))[0])
        assert np.allclose(keras_y, y, rtol=1e-6, atol=1e-6), name
    new_ntw = [np.asarray(v) for v in call(tw, jnp.asarray(x))[1]]
    if state_reference is not None:
        # Keras's `moving * momentum` with a Python float narrows float64 to float32 too.
        mine = state_reference(np.asarray(x), ntw)
        assert all(np.allclose(a, b, rtol=1e-6, atol=1e-6) for a, b in zip(mine, new_ntw)), name
        new_ntw = mine
    y = np.asarray(y)
    r = arr(y.shape)

    def loss(x, ws):
        return jnp.sum(f(x, ws) * r)

    differentiable_x = np.issubdtype(np.asarray(x).dtype, np.floating)
    if differentiable_x:
        gx, gw = jax.grad(loss, argnums=(0, 1))(jnp.asarray(x), [jnp.asarray(w) for w in tw])
    else:
        gx, gw = None, jax.grad(lambda ws: loss(jnp.asarray(x), ws))([jnp.asarray(w) for w in tw])
    cfg = layer.get_config()
    layers.append({
        "name": name,
        "class_name": layer.__class__.__name__,
        "config": {k: v for k, v in cfg.items() if k not in ("dtype", "name", "trainable")},
        "training": training,
        "x": enc(x),
        "weights": [enc(w) for w in tw + [ntw[i] for i in stats]],
        "trainable_weights": len(tw),
        "non_trainable_after": [enc(new_ntw[i]) for i in stats],
        "output": enc(y),
        "r": enc(r),
        "grad_x": enc(gx) if gx is not None else None,
        "grad_weights": [enc(g) for g in gw],
    })


L = keras.layers
# Activations are relu or linear: Keras 3.15.1's ops.tanh/sigmoid of a float64 tensor
# return float32 (its result_type(float64, float) narrows), which is no float64 oracle.
layer_case("conv1d_causal_relu", L.Conv1D(4, 3, padding="causal", dilation_rate=2, activation="relu"), [2, 9, 3])
layer_case("conv2d_valid", L.Conv2D(5, 3), [2, 6, 6, 2])
layer_case("conv2d_same_stride2_relu", L.Conv2D(3, (2, 3), strides=2, padding="same", activation="relu"), [2, 7, 5, 2])
layer_case("conv2d_groups_no_bias", L.Conv2D(4, 3, groups=2, use_bias=False), [1, 5, 5, 4])
layer_case("conv2d_channels_first", L.Conv2D(3, 2, data_format="channels_first"), [2, 2, 5, 4])
layer_case("conv3d", L.Conv3D(2, 2, padding="same"), [1, 3, 4, 3, 2])
layer_case("max_pooling1d", L.MaxPooling1D(), [2, 7, 3])
layer_case("max_pooling2d_same", L.MaxPooling2D(pool_size=3, strides=2, padding="same"), [2, 7, 6, 2])
layer_case("average_pooling2d", L.AveragePooling2D(2), [2, 6, 5, 3])
layer_case("average_pooling1d_same", L.AveragePooling1D(pool_size=3, strides=1, padding="same"), [2, 6, 2])
layer_case("global_average_pooling2d", L.GlobalAveragePooling2D(), [2, 4, 3, 5],
           reference=lambda x, ws, ntw: jnp.mean(x, axis=(1, 2)))
layer_case("global_max_pooling1d_keepdims", L.GlobalMaxPooling1D(keepdims=True), [2, 6, 3])
layer_case("global_max_pooling2d_channels_first", L.GlobalMaxPooling2D(data_format="channels_first"), [2, 3, 4, 4])

def layer_norm(eps, center):
    # Keras 3.15.1's ops.layer_normalization narrows float64 to float32 (as ops.mean does):
    # the float64 oracle is its formula in jnp.
    def f(x, ws, ntw):
        m = jnp.mean(x, axis=-1, keepdims=True)
        v = jnp.var(x, axis=-1, keepdims=True)
        y = (x - m) * jax.lax.rsqrt(v + eps) * ws[0]
        return y + ws[1] if center else y
    return f


layer_case("layer_normalization", L.LayerNormalization(), [3, 4, 6], reference=layer_norm(1e-3, True))
layer_case("layer_normalization_no_center", L.LayerNormalization(center=False, epsilon=1e-5), [4, 5],
           reference=layer_norm(1e-5, False))
def batch_norm(training, eps=1e-3):
    # Keras 3.15.1's ops.batch_normalization narrows float64 like layer_normalization: the
    # float64 oracle is its formula in jnp (batch moments while training, else the moving ones).
    def f(x, ws, ntw):
        axes = tuple(range(x.ndim - 1))
        m, v = (jnp.mean(x, axis=axes), jnp.var(x, axis=axes)) if training else (ntw[0], ntw[1])
        return (x - m) * jax.lax.rsqrt(v + eps) * ws[0] + ws[1]
    return f


layer_case("batch_normalization_inference", L.BatchNormalization(), [6, 4], reference=batch_norm(False))
def moving(momentum):
    def f(x, ntw):
        axes = tuple(range(x.ndim - 1))
        return [ntw[0] * momentum + x.mean(axis=axes) * (1 - momentum),
                ntw[1] * momentum + x.var(axis=axes) * (1 - momentum)]
    return f


layer_case("batch_normalization_training", L.BatchNormalization(momentum=0.9), [6, 4], training=True,
           reference=batch_norm(True), state_reference=moving(0.9))
layer_case("batch_normalization_conv_training", L.BatchNormalization(), [2, 3, 3, 5], training=True,
           reference=batch_norm(True), state_reference=moving(0.99))
layer_case("embedding", L.Embedding(7, 3), None, x=rng.integers(0, 7, size=(2, 5)))

layer_case("depthwise_conv2d_layer", L.DepthwiseConv2D(3, depth_multiplier=2, padding="same", activation="relu"),
           [2, 5, 5, 3])
layer_case("depthwise_conv2d_strided_channels_first",
           L.DepthwiseConv2D((2, 3), strides=2, data_format="channels_first"), [1, 2, 6, 7])
layer_case("separable_conv2d", L.SeparableConv2D(4, 3, depth_multiplier=2), [2, 6, 5, 3])
layer_case("separable_conv1d_same", L.SeparableConv1D(3, 3, padding="same", dilation_rate=2), [2, 7, 2])
layer_case("conv2d_transpose", L.Conv2DTranspose(3, 3, strides=2, padding="same", activation="relu"), [2, 3, 3, 2])
layer_case("conv1d_transpose_valid", L.Conv1DTranspose(2, 3, strides=2, output_padding=1), [2, 4, 3])
layer_case("zero_padding2d", L.ZeroPadding2D(((1, 2), (0, 1))), [2, 3, 4, 2])
layer_case("zero_padding1d", L.ZeroPadding1D(2), [2, 3, 2])
layer_case("cropping2d", L.Cropping2D(((1, 0), (1, 2))), [2, 4, 5, 3])
layer_case("cropping1d", L.Cropping1D((1, 2)), [2, 6, 2])
layer_case("up_sampling2d", L.UpSampling2D((2, 3)), [2, 2, 3, 2])
layer_case("up_sampling1d", L.UpSampling1D(3), [2, 3, 2])


def group_norm(groups, eps=1e-3):
    # The formula of Keras's GroupNormalization in jnp (Keras rounds float64 to float32).
    def f(x, ws, ntw):
        c = x.shape[-1]
        r = x.reshape(x.shape[:-1] + (groups, c // groups))
        axes = tuple(i for i in range(1, r.ndim) if i != r.ndim - 2)
        m, v = jnp.mean(r, axis=axes, keepdims=True), jnp.var(r, axis=axes, keepdims=True)
        g = ws[0].reshape((1,) * (r.ndim - 2) + (groups, c // groups))
        b = ws[1].reshape((1,) * (r.ndim - 2) + (groups, c // groups))
        return ((r - m) * jax.lax.rsqrt(v + eps) * g + b).reshape(x.shape)
    return f


layer_case("group_normalization", L.GroupNormalization(groups=2), [2, 3, 3, 4], reference=group_norm(2))
layer_case("spatial_dropout2d_inference", L.SpatialDropout2D(0.3), [2, 3, 3, 4])

with open(OUT, "w") as f:
    json.dump({"generator": "scripts/gen_conv_fixtures.py", "keras": keras.__version__,
               "jax": jax.__version__, "cases": cases, "layers": layers}, f)
print(f"wrote {len(cases)} op cases and {len(layers)} layer cases to {os.path.normpath(OUT)}")
