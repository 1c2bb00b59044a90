//! Activations and softmax. Each op runs its engine's fused kernel where the engine has one
//! (`Backend::activation` / `Backend::normalize`: one pass per element, or per row), and
//! otherwise the composition of primitives in [`composed`], which stays the reference the
//! fused kernels are tested against. The compositions take care of range: `sigmoid` never
//! evaluates `exp` of a large positive number, `softmax`/`log_softmax` shift by the
//! maximum, `softplus` is `max(x, 0) + log1p(exp(-|x|))`.

pub use super::conv::{
    average_pool, conv, conv_transpose, depthwise_conv, max_pool, DataFormat, Padding,
};
use super::elementwise::*;
use super::prim::{apply_fused, Prim};
use super::rules::{self, UnaryRule};
use super::{cfg_for_tensors, normalize_axis};
use crate::backend::{Activation, Normalize};
use crate::error::Result;
use crate::tensor::Tensor;

/// The engine's fused activation on `x` (already in its compute dtype) where it has one,
/// else the composition; recorded as the activation either way. Complex inputs (sigmoid,
/// silu) compose from primitives.
macro_rules! with_fused {
    ($x:expr, $act:expr, $composed:expr) => {{
        let x = $x;
        if x.dtype().is_complex() {
            $composed(&x)
        } else {
            apply_fused(Prim::Activation($act), &x, $composed)
        }
    }};
}

#[track_caller]
fn float_in(op: &str, rule: UnaryRule, x: &Tensor) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let d = rules::unary(op, rule, x.dtype(), &cfg)?;
    cast_internal(x, d, op)
}

/// `max(x, 0)`; bool becomes int32 (Keras).
#[track_caller]
pub fn relu(x: &Tensor) -> Result<Tensor> {
    with_fused!(
        float_in("relu", UnaryRule::BoolToInt, x)?,
        Activation::Relu,
        super::composed::relu
    )
}

/// `min(max(x, 0), 6)`.
#[track_caller]
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    with_fused!(
        float_in("relu6", UnaryRule::BoolToInt, x)?,
        Activation::Relu6,
        super::composed::relu6
    )
}

/// `1 / (1 + exp(-x))`, stable for large |x| (float and complex inputs only).
#[track_caller]
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    with_fused!(
        float_in("sigmoid", UnaryRule::FloatOnly, x)?,
        Activation::Sigmoid,
        super::composed::sigmoid
    )
}

/// `x * sigmoid(x)` (float and complex inputs only).
#[track_caller]
pub fn silu(x: &Tensor) -> Result<Tensor> {
    with_fused!(
        float_in("silu", UnaryRule::FloatOnly, x)?,
        Activation::Silu,
        super::composed::silu
    )
}

/// `log(1 + exp(x))` computed as `max(x, 0) + log1p(exp(-|x|))`.
#[track_caller]
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    with_fused!(
        float_in("softplus", UnaryRule::ToFloat, x)?,
        Activation::Softplus,
        super::composed::softplus
    )
}

/// GELU; `approximate` uses the tanh form (Keras's default), else `0.5x(1 + erf(x/√2))`.
#[track_caller]
pub fn gelu(x: &Tensor, approximate: bool) -> Result<Tensor> {
    with_fused!(
        float_in("gelu", UnaryRule::ToFloat, x)?,
        Activation::Gelu { approximate },
        |x| super::composed::gelu(x, approximate)
    )
}

/// `x` for `x > 0`, else `alpha * (exp(x) - 1)`.
#[track_caller]
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    with_fused!(
        float_in("elu", UnaryRule::ToFloat, x)?,
        Activation::Elu { alpha },
        |x| super::composed::elu(x, alpha)
    )
}

/// `x` for `x >= 0`, else `negative_slope * x` (Keras's default slope is 0.2).
#[track_caller]
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    with_fused!(
        float_in("leaky_relu", UnaryRule::ToFloat, x)?,
        Activation::LeakyRelu { negative_slope },
        |x| super::composed::leaky_relu(x, negative_slope)
    )
}

/// Softmax along `axis` (bool refused, ints become floats).
#[track_caller]
pub fn softmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    let x = float_in("softmax", UnaryRule::ToFloatNoBool, x)?;
    let ax = normalize_axis(axis, x.ndim(), "softmax")?;
    if x.dtype().is_complex() {
        return super::composed::softmax(&x, ax);
    }
    apply_fused(Prim::Normalize(Normalize::Softmax, ax), &x, |x| {
        super::composed::softmax(x, ax)
    })
}

/// `log(softmax(x))`, computed as `x - max - log(sum(exp(x - max)))`.
#[track_caller]
pub fn log_softmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    let x = float_in("log_softmax", UnaryRule::ToFloatNoBool, x)?;
    let ax = normalize_axis(axis, x.ndim(), "log_softmax")?;
    if x.dtype().is_complex() {
        return super::composed::log_softmax(&x, ax);
    }
    apply_fused(Prim::Normalize(Normalize::LogSoftmax, ax), &x, |x| {
        super::composed::log_softmax(x, ax)
    })
}

/// Mean and variance over `axes` (Keras's `ops.moments`; the variance is the biased one, as
/// Keras's).
#[track_caller]
pub fn moments(x: &Tensor, axes: &[isize], keepdims: bool) -> Result<(Tensor, Tensor)> {
    Ok((
        super::reduce::mean(x, Some(axes), keepdims)?,
        super::reduce::var(x, Some(axes), keepdims)?,
    ))
}

/// `(x - mean) / sqrt(variance + epsilon) * scale + offset`, with `mean`, `variance`,
/// `offset` and `scale` of `x`'s length on `axis` (Keras's `ops.batch_normalization`,
/// computed as Keras's JAX backend does: `x * inv + (offset - mean * inv)`).
#[track_caller]
pub fn batch_normalization(
    x: &Tensor,
    mean: &Tensor,
    variance: &Tensor,
    axis: isize,
    offset: Option<&Tensor>,
    scale: Option<&Tensor>,
    epsilon: f64,
) -> Result<Tensor> {
    let ax = normalize_axis(axis, x.ndim(), "batch_normalization")?;
    let n = x.shape()[ax];
    let mut shape = vec![1isize; x.ndim()];
    shape[ax] = n as isize;
    let r = |t: &Tensor, what: &str| {
        if t.size() != n {
            return Err(crate::error::KilnError::invalid(
                "batch_normalization",
                format!(
                    "{what} has {} elements, x has {n} on axis {axis}; they must match",
                    t.size()
                ),
            ));
        }
        super::shape::reshape(t, &shape)
    };
    let mut inv = super::elementwise::rsqrt(&add(&r(variance, "variance")?, epsilon)?)?;
    if let Some(s) = scale {
        inv = multiply(&inv, &r(s, "scale")?)?;
    }
    let mut res = negative(&multiply(&r(mean, "mean")?, &inv)?)?;
    if let Some(o) = offset {
        res = add(&res, &r(o, "offset")?)?;
    }
    add(&multiply(x, &inv)?, &res)
}
