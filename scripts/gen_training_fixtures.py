"""Writes crates/kiln/tests/data/training_fixtures.json: what Keras 3 (JAX backend, CPU) and
JAX compute, for kiln's training tests to compare with.

* optimizer trajectories: 12 steps of each optimizer (and its options) on fixed
  quadratic gradients, the variable after every step;
* learning-rate schedules at a list of steps;
* losses: each loss on shared inputs, with and without sample weights, including
  saturated probabilities and logits of +-100;
* metrics: accuracy family, precision, recall, AUC (ROC and PR), R2 over two batches;
* jax.grad of composite functions of float64 inputs.

Run: KERAS_BACKEND=jax python scripts/gen_training_fixtures.py
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

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "kiln", "tests", "data", "training_fixtures.json")


def lst(a):
    return np.asarray(a, dtype=np.float64).ravel().tolist()


# ---- optimizers -----------------------------------------------------------------------
W0 = np.array([0.5, -1.5, 2.0, 0.05], dtype=np.float32)
A = np.array([1.0, 2.0, -0.5, 3.0], dtype=np.float32)
B = np.array([0.3, -1.0, 0.8, 0.0], dtype=np.float32)


def grad(w):
    # d/dw sum((a w - b)^2) = 2 a (a w - b), in float32
    w = np.asarray(w, dtype=np.float32)
    return (2 * A * (A * w - B)).astype(np.float32)


def trajectory(opt, steps=12):
    v = keras.Variable(W0.copy(), dtype="float32")
    out = []
    for _ in range(steps):
        g = grad(np.asarray(v.value))
        opt.apply([jnp.asarray(g)], [v])
        out.append(lst(np.asarray(v.value)))
    if getattr(opt, "use_ema", False):
        opt.finalize_variable_values([v])
        out.append(lst(np.asarray(v.value)))
    return out


O = keras.optimizers
S = keras.optimizers.schedules
optimizers = {
    "sgd": O.SGD(),
    "sgd_momentum": O.SGD(learning_rate=0.05, momentum=0.9),
    "sgd_nesterov": O.SGD(learning_rate=0.05, momentum=0.9, nesterov=True),
    "adam": O.Adam(learning_rate=0.05),
    "adam_amsgrad": O.Adam(learning_rate=0.05, amsgrad=True),
    "adamw": O.AdamW(learning_rate=0.05),
    "rmsprop": O.RMSprop(learning_rate=0.01),
    "rmsprop_centered_momentum": O.RMSprop(learning_rate=0.01, momentum=0.5, centered=True),
    "adagrad": O.Adagrad(learning_rate=0.1),
    "adamax": O.Adamax(learning_rate=0.05),
    "nadam": O.Nadam(learning_rate=0.05),
    "lion": O.Lion(learning_rate=0.01),
    "adam_clipnorm": O.Adam(learning_rate=0.05, clipnorm=1.0),
    "adam_clipvalue": O.Adam(learning_rate=0.05, clipvalue=0.5),
    "adam_global_clipnorm": O.Adam(learning_rate=0.05, global_clipnorm=1.0),
    "sgd_weight_decay": O.SGD(learning_rate=0.05, weight_decay=0.1),
    "adam_ema": O.Adam(learning_rate=0.05, use_ema=True, ema_momentum=0.9),
    "sgd_exponential_decay": O.SGD(learning_rate=S.ExponentialDecay(0.1, decay_steps=3, decay_rate=0.5)),
}
opt_out = {k: trajectory(o) for k, o in optimizers.items()}

schedules = {
    "exponential": S.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5),
    "exponential_staircase": S.ExponentialDecay(0.1, decay_steps=4, decay_rate=0.5, staircase=True),
    "piecewise": S.PiecewiseConstantDecay([3, 7], [1.0, 0.5, 0.1]),
    "cosine": S.CosineDecay(0.1, decay_steps=10, alpha=0.1),
    "cosine_warmup": S.CosineDecay(0.0, decay_steps=10, warmup_target=0.2, warmup_steps=4),
    "inverse_time": S.InverseTimeDecay(0.1, decay_steps=2, decay_rate=0.5),
    "inverse_time_staircase": S.InverseTimeDecay(0.1, decay_steps=2, decay_rate=0.5, staircase=True),
}
steps = [0, 1, 2, 3, 4, 5, 7, 8, 10, 13, 20]
sched_out = {k: [float(s(st)) for st in steps] for k, s in schedules.items()}

# ---- losses ---------------------------------------------------------------------------
rng = np.random.default_rng(0)
L = keras.losses
prob = np.array([[0.9, 0.05, 0.05], [1e-9, 1.0 - 1e-9, 0.0], [0.2, 0.3, 0.5], [1.0, 0.0, 0.0]], dtype=np.float32)
onehot = np.array([[1, 0, 0], [1, 0, 0], [0, 0, 1], [0, 1, 0]], dtype=np.float32)
sparse = np.array([0, 0, 2, 1], dtype=np.int32)
logits = np.array([[100.0, -100.0, 0.0], [-100.0, 100.0, 3.0], [0.5, -0.5, 1.0], [2.0, 1.0, -3.0]], dtype=np.float32)
reg_true = rng.normal(size=(4, 3)).astype(np.float32)
reg_pred = (reg_true + rng.normal(size=(4, 3)) * 1.5).astype(np.float32)
bin_true = np.array([[1.0], [0.0], [1.0], [0.0]], dtype=np.float32)
bin_prob = np.array([[1.0], [1e-12], [0.3], [0.999]], dtype=np.float32)
bin_logit = np.array([[100.0], [-100.0], [0.3], [50.0]], dtype=np.float32)
sw = np.array([1.0, 0.5, 2.0, 0.0], dtype=np.float32)

cases = [
    ("mean_squared_error", L.MeanSquaredError(), reg_true, reg_pred),
    ("mean_absolute_error", L.MeanAbsoluteError(), reg_true, reg_pred),
    ("mean_absolute_percentage_error", L.MeanAbsolutePercentageError(), reg_true, reg_pred),
    ("huber", L.Huber(), reg_true, reg_pred),
    ("huber_delta_0.5", L.Huber(delta=0.5), reg_true, reg_pred),
    ("log_cosh", L.LogCosh(), reg_true, reg_pred),
    ("binary_crossentropy", L.BinaryCrossentropy(), bin_true, bin_prob),
    ("binary_crossentropy_logits", L.BinaryCrossentropy(from_logits=True), bin_true, bin_logit),
    ("binary_crossentropy_smoothing", L.BinaryCrossentropy(label_smoothing=0.1), bin_true, bin_prob),
    ("categorical_crossentropy", L.CategoricalCrossentropy(), onehot, prob),
    ("categorical_crossentropy_logits", L.CategoricalCrossentropy(from_logits=True), onehot, logits),
    ("categorical_crossentropy_smoothing", L.CategoricalCrossentropy(from_logits=True, label_smoothing=0.2), onehot, logits),
    ("sparse_categorical_crossentropy", L.SparseCategoricalCrossentropy(), sparse, prob),
    ("sparse_categorical_crossentropy_logits", L.SparseCategoricalCrossentropy(from_logits=True), sparse, logits),
    ("kl_divergence", L.KLDivergence(), onehot * 0.8 + 0.05, prob),
    ("hinge", L.Hinge(), bin_true, bin_logit / 60.0),
]
loss_out = []
for name, fn, yt, yp in cases:
    loss_out.append(
        {
            "name": name,
            "y_true": lst(yt),
            "y_true_shape": list(np.shape(yt)),
            "y_true_int": bool(np.issubdtype(np.asarray(yt).dtype, np.integer)),
            "y_pred": lst(yp),
            "y_pred_shape": list(np.shape(yp)),
            "value": float(fn(yt, yp)),
            "weighted": float(fn(yt, yp, sample_weight=sw)),
        }
    )

# ---- metrics --------------------------------------------------------------------------
M = keras.metrics
scores = rng.uniform(size=(40, 1)).astype(np.float32)
labels = (rng.uniform(size=(40, 1)) < scores * 0.8 + 0.1).astype(np.float32)
metric_out = {}
for name, m in [
    ("auc", M.AUC()),
    ("pr_auc", M.AUC(curve="PR")),
    ("precision", M.Precision()),
    ("recall", M.Recall()),
    ("binary_accuracy", M.BinaryAccuracy()),
]:
    m.update_state(labels[:25], scores[:25])
    m.update_state(labels[25:], scores[25:])
    metric_out[name] = float(m.result())
r2 = M.R2Score()
r2.update_state(reg_true[:2], reg_pred[:2])
r2.update_state(reg_true[2:], reg_pred[2:])
metric_out["r2_score"] = float(r2.result())
for name, m, yt, yp in [
    ("categorical_accuracy", M.CategoricalAccuracy(), onehot, prob),
    ("sparse_categorical_accuracy", M.SparseCategoricalAccuracy(), sparse, logits),
    ("top_k_categorical_accuracy_k2", M.TopKCategoricalAccuracy(k=2), onehot, logits),
    ("sparse_top_k_categorical_accuracy_k2", M.SparseTopKCategoricalAccuracy(k=2), sparse, logits),
]:
    m.update_state(yt, yp)
    metric_out[name] = float(m.result())
metric_inputs = {
    "scores": lst(scores),
    "labels": lst(labels),
    "reg_true": lst(reg_true),
    "reg_pred": lst(reg_pred),
}

# ---- jax.grad of composite functions (float64) -----------------------------------------
X = rng.normal(size=(5, 4))
W1 = rng.normal(size=(4, 3)) * 0.5
B1 = rng.normal(size=(3,)) * 0.1
Y = np.array([0, 2, 1, 1, 0])
G = rng.normal(size=(4,))


def mlp_ce(x, w, b):
    h = jnp.tanh(x @ w + b)
    return -jnp.mean(jax.nn.log_softmax(h)[jnp.arange(5), Y])


def layer_norm(x, g):
    m = jnp.mean(x, axis=-1, keepdims=True)
    v = jnp.var(x, axis=-1, keepdims=True)
    return jnp.sum(((x - m) / jnp.sqrt(v + 1e-5) * g) ** 2)


def bias_broadcast(x, b):
    return jnp.sum(jax.nn.sigmoid(x + b[None, :]) * jnp.arange(4.0))


def softmax_attention(x, w):
    q = x @ w
    s = jax.nn.softmax(q @ q.T / 2.0, axis=-1)
    return jnp.sum(s @ q)


def gelu_mse(x, w):
    return jnp.mean((jax.nn.gelu(x @ w) - 0.5) ** 2)


def logsumexp_max(x):
    return jnp.sum(jax.scipy.special.logsumexp(x, axis=0)) + jnp.sum(jnp.max(x, axis=1))


def std_prod(x):
    return jnp.sum(jnp.std(x, axis=1)) + jnp.prod(x[0])


def clip_where(x):
    return jnp.sum(jnp.where(x > 0, jnp.clip(x, -1.0, 0.7) ** 2, jnp.exp(x)))


def cumsum_power(x):
    return jnp.sum(jnp.cumsum(jnp.abs(x) ** 1.5, axis=1))


def matmul_transposed(x, w):
    return jnp.sum((x.T @ x) @ w) + jnp.sum(jnp.square(w.T @ x.T))


def elu_softplus(x):
    return jnp.sum(jax.nn.elu(x) * jax.nn.softplus(x) + jax.nn.silu(x))


def take_concat(x, w):
    z = jnp.concatenate([x[::2], x[1:2]], axis=0)
    return jnp.sum(jnp.take(z, jnp.array([2, 0, 0]), axis=0) @ w)


grads = []
for name, f, args in [
    ("mlp_cross_entropy", mlp_ce, (X, W1, B1)),
    ("layer_norm", layer_norm, (X, G)),
    ("bias_broadcast", bias_broadcast, (X, G)),
    ("softmax_attention", softmax_attention, (X, W1)),
    ("gelu_mse", gelu_mse, (X, W1)),
    ("logsumexp_max", logsumexp_max, (X,)),
    ("std_prod", std_prod, (X,)),
    ("clip_where", clip_where, (X,)),
    ("cumsum_power", cumsum_power, (X,)),
    ("matmul_transposed", matmul_transposed, (X, W1 @ W1.T)),
    ("elu_softplus", elu_softplus, (X,)),
    ("take_concat", take_concat, (X, W1)),
]:
    g = jax.grad(f, argnums=tuple(range(len(args))))(*args)
    grads.append(
        {
            "name": name,
            "value": float(f(*args)),
            "args": [lst(a) for a in args],
            "shapes": [list(np.shape(a)) for a in args],
            "grads": [lst(x) for x in g],
        }
    )

json.dump(
    {
        "source": f"keras {keras.__version__}, jax {jax.__version__}, numpy {np.__version__}; scripts/gen_training_fixtures.py",
        "optimizer_w0": lst(W0),
        "optimizer_a": lst(A),
        "optimizer_b": lst(B),
        "optimizers": opt_out,
        "schedule_steps": steps,
        "schedules": sched_out,
        "losses": loss_out,
        "loss_sample_weight": lst(sw),
        "metrics": metric_out,
        "metric_inputs": metric_inputs,
        "grads": grads,
    },
    open(OUT, "w"),
    indent=1,
)
print("wrote", OUT)
