//! The composed versions of the ops that engines may fuse (`Backend::activation`,
//! `Backend::normalize`, `Backend::reduce_fused`, `Backend::triangle`): chains of primitives, each formula
//! written once. An engine without a fused kernel runs these, and they are the reference
//! the fused kernels are property-tested against. Each takes its input already in the op's
//! compute dtype (what the public op casts it to) and normalised axes.

use super::elementwise::*;
use super::reduce::{max, sum};
use crate::backend::ReduceOp;
use crate::error::Result;
use crate::tensor::Tensor;

/// `max(x, 0)`.
pub fn relu(x: &Tensor) -> Result<Tensor> {
    maximum(x, 0)
}

/// `minimum(maximum(x, lo), hi)` (NaN passes through; `lo > hi` gives `hi`).
pub fn clip<'a, 'b>(
    x: &Tensor,
    lo: impl Into<super::Operand<'a>>,
    hi: impl Into<super::Operand<'b>>,
) -> Result<Tensor> {
    minimum(&maximum(x, lo)?, hi)
}

/// `min(max(x, 0), 6)`.
pub fn relu6(x: &Tensor) -> Result<Tensor> {
    clip(x, 0, 6)
}

/// `1 / (1 + exp(-x))` as `1/(1+e)` for `x >= 0` and `e/(1+e)` for `x < 0`, `e = exp(-|x|)`.
pub fn sigmoid(x: &Tensor) -> Result<Tensor> {
    if x.dtype().is_complex() {
        return divide(1, &add(&exp(&negative(x)?)?, 1)?);
    }
    let e = exp(&negative(&abs(x)?)?)?;
    let d = add(&e, 1)?;
    r#where(&greater_equal(x, 0)?, &divide(1, &d)?, &divide(&e, &d)?)
}

/// `x * sigmoid(x)`.
pub fn silu(x: &Tensor) -> Result<Tensor> {
    multiply(x, &sigmoid(x)?)
}

/// `max(x, 0) + log1p(exp(-|x|))`.
pub fn softplus(x: &Tensor) -> Result<Tensor> {
    if x.dtype().is_complex() {
        return log1p(&exp(x)?);
    }
    add(&maximum(x, 0)?, &log1p(&exp(&negative(&abs(x)?)?)?)?)
}

/// `0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))`, or `0.5 x (1 + erf(x / sqrt(2)))`.
pub fn gelu(x: &Tensor, approximate: bool) -> Result<Tensor> {
    let inner = if approximate {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        let x3 = multiply(&multiply(x, x)?, x)?;
        tanh(&multiply(&add(x, &multiply(&x3, 0.044715)?)?, c)?)?
    } else {
        erf(&multiply(x, std::f64::consts::FRAC_1_SQRT_2)?)?
    };
    multiply(&multiply(x, 0.5)?, &add(&inner, 1)?)
}

/// `x` for `x > 0`, else `alpha * expm1(x)`.
pub fn elu(x: &Tensor, alpha: f64) -> Result<Tensor> {
    r#where(&greater(x, 0)?, x, &multiply(&expm1(x)?, alpha)?)
}

/// `x` for `x >= 0`, else `negative_slope * x`.
pub fn leaky_relu(x: &Tensor, negative_slope: f64) -> Result<Tensor> {
    r#where(&greater_equal(x, 0)?, x, &multiply(x, negative_slope)?)
}

/// `exp(x - max) / sum(exp(x - max))` along `axis` (normalised).
pub fn softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    let ax = [axis as isize];
    let m = if x.dtype().is_complex() {
        super::creation::zeros_like(x, None)?
    } else {
        max(x, Some(&ax), true)?
    };
    let e = exp(&subtract(x, &m)?)?;
    divide(&e, &sum(&e, Some(&ax), true)?)
}

/// `(x - max) - log(sum(exp(x - max)))` along `axis` (normalised).
pub fn log_softmax(x: &Tensor, axis: usize) -> Result<Tensor> {
    let ax = [axis as isize];
    let m = if x.dtype().is_complex() {
        super::creation::zeros_like(x, None)?
    } else {
        max(x, Some(&ax), true)?
    };
    let s = subtract(x, &m)?;
    subtract(&s, &log(&sum(&exp(&s)?, Some(&ax), true)?)?)
}

fn iaxes(axes: &[usize]) -> Vec<isize> {
    axes.iter().map(|a| *a as isize).collect()
}

/// `sum / count`.
pub fn mean(x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let s = super::reduce::reduce_prim(x, ReduceOp::Sum, axes, keepdims)?;
    divide(&s, super::reduce::count(x, axes))
}

/// `mean(|x - mean(x)|^2)`.
pub fn var(x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let m = mean(x, axes, true)?;
    let d = super::elementwise::abs(&subtract(x, &m)?)?;
    mean(&super::elementwise::multiply(&d, &d)?, axes, keepdims)
}

/// `sqrt(var(x))`.
pub fn std(x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    sqrt(&super::elementwise::real(&var(x, axes, keepdims)?)?)
}

/// `log(sum(exp(x - m))) + m`, `m` the maximum where finite, else 0.
pub fn logsumexp(x: &Tensor, axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let ax = iaxes(axes);
    // Complex values have no order to shift by.
    let m = if x.dtype().is_complex() {
        sum(&super::creation::zeros_like(x, None)?, Some(&ax), true)?
    } else {
        max(x, Some(&ax), true)?
    };
    // An all -inf (or inf) slice would give inf - inf = NaN; shift by 0 there instead.
    let m = super::elementwise::r#where(&super::elementwise::isfinite(&m)?, &m, 0)?;
    let s = sum(&exp(&subtract(x, &m)?)?, Some(&ax), true)?;
    let r = super::elementwise::add(&log(&s)?, &m)?;
    if keepdims {
        return Ok(r);
    }
    let keep: Vec<isize> = (0..x.ndim())
        .filter(|i| !axes.contains(i))
        .map(|i| x.shape()[i] as isize)
        .collect();
    super::shape::reshape(&r, &keep)
}

/// `sum(x != 0)`.
pub fn count_nonzero(x: &Tensor, axes: &[usize]) -> Result<Tensor> {
    let nz = not_equal(x, 0)?;
    sum(&nz, Some(&iaxes(axes)), false)
}

/// `triu` (`upper`) or `tril` of the last two axes about diagonal `k` (`x` has at least two):
/// `where(mask, x, 0)` with the `[m, n]` triangular mask, as NumPy's `triu`/`tril`.
pub fn triangle(x: &Tensor, k: isize, upper: bool) -> Result<Tensor> {
    r#where(
        &super::shape::tri_mask(x, k, upper)?,
        x,
        super::Operand::Scalar(super::shape::zero_for(x)),
    )
}
