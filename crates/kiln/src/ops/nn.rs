//! Activations, composed from primitives with attention to range: `sigmoid` never
//! evaluates `exp` of a large positive number, `softmax`/`log_softmax` shift by the
//! maximum, `softplus` is `max(x, 0) + log1p(exp(-|x|))`.

use super::elementwise::*;
use super::reduce::{max, sum};
use super::rules::{self, UnaryRule};
use super::{cfg_for_tensors, normalize_axis};
use crate::error::Result;
use crate::tensor::Tensor;

#[track_caller]
fn float_in(op: &str, rule: UnaryRule, x: &Tensor) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let d = rules::unary(op, rule, x.dtype(), &cfg)?;
    cast_internal(x, d, op)
}

/// `max(x, 0)`; bool becomes int32 (Keras).
#[track_caller]
pub fn relu(x: &Tensor) -> Result<Tensor> {
    let x = float_in("relu", UnaryRule::BoolToInt, x)?;
    maximum(&x, 0)
}

/// `min(max(x, 0), 6)`.
#[track_caller]
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    let x = float_in("relu6", UnaryRule::BoolToInt, x)?;
    clip(&x, 0, 6)
}

/// `1 / (1 + exp(-x))`, stable for large |x| (float and complex inputs only).
#[track_caller]
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    let x = float_in("sigmoid", UnaryRule::FloatOnly, x)?;
    if x.dtype().is_complex() {
        return divide(1, &add(&exp(&negative(&x)?)?, 1)?);
    }
    // e = exp(-|x|) <= 1; sigmoid = 1/(1+e) for x >= 0, e/(1+e) for x < 0.
    let e = exp(&negative(&abs(&x)?)?)?;
    let d = add(&e, 1)?;
    r#where(&greater_equal(&x, 0)?, &divide(1, &d)?, &divide(&e, &d)?)
}

/// `x * sigmoid(x)` (float and complex inputs only).
#[track_caller]
pub fn silu(x: &Tensor) -> Result<Tensor> {
    let x = float_in("silu", UnaryRule::FloatOnly, x)?;
    multiply(&x, &sigmoid(&x)?)
}

/// `log(1 + exp(x))` computed as `max(x, 0) + log1p(exp(-|x|))`.
#[track_caller]
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    let x = float_in("softplus", UnaryRule::ToFloat, x)?;
    if x.dtype().is_complex() {
        return log1p(&exp(&x)?);
    }
    add(&maximum(&x, 0)?, &log1p(&exp(&negative(&abs(&x)?)?)?)?)
}

/// GELU; `approximate` uses the tanh form (Keras's default), else `0.5x(1 + erf(x/√2))`.
#[track_caller]
pub fn gelu(x: &Tensor, approximate: bool) -> Result<Tensor> {
    let x = float_in("gelu", UnaryRule::ToFloat, x)?;
    let inner = if approximate {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let x3 = multiply(&multiply(&x, &x)?, &x)?;
        tanh(&multiply(&add(&x, &multiply(&x3, 0.044715)?)?, c)?)?
    } else {
        erf(&multiply(&x, std::f64::consts::FRAC_1_SQRT_2)?)?
    };
    multiply(&multiply(&x, 0.5)?, &add(&inner, 1)?)
}

/// `x` for `x > 0`, else `alpha * (exp(x) - 1)`.
#[track_caller]
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    let x = float_in("elu", UnaryRule::ToFloat, x)?;
    r#where(&greater(&x, 0)?, &x, &multiply(&expm1(&x)?, alpha)?)
}

/// `x` for `x >= 0`, else `negative_slope * x` (Keras's default slope is 0.2).
#[track_caller]
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    let x = float_in("leaky_relu", UnaryRule::ToFloat, x)?;
    r#where(&greater_equal(&x, 0)?, &x, &multiply(&x, negative_slope)?)
}

/// Softmax along `axis` (bool refused, ints become floats).
#[track_caller]
pub fn softmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    let x = float_in("softmax", UnaryRule::ToFloatNoBool, x)?;
    let ax = [normalize_axis(axis, x.ndim(), "softmax")? as isize];
    let m = if x.dtype().is_complex() {
        super::creation::zeros_like(&x, None)?
    } else {
        max(&x, Some(&ax), true)?
    };
    let e = exp(&subtract(&x, &m)?)?;
    divide(&e, &sum(&e, Some(&ax), true)?)
}

/// `log(softmax(x))`, computed as `x - max - log(sum(exp(x - max)))`.
#[track_caller]
pub fn log_softmax(x: &Tensor, axis: isize) -> Result<Tensor> {
    let x = float_in("log_softmax", UnaryRule::ToFloatNoBool, x)?;
    let ax = [normalize_axis(axis, x.ndim(), "log_softmax")? as isize];
    let m = if x.dtype().is_complex() {
        super::creation::zeros_like(&x, None)?
    } else {
        max(&x, Some(&ax), true)?
    };
    let s = subtract(&x, &m)?;
    subtract(&s, &log(&sum(&exp(&s)?, Some(&ax), true)?)?)
}
