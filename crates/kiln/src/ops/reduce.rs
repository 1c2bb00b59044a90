//! Reductions and scans. `axis: None` reduces over every axis; negative axes count from
//! the end; `keepdims` keeps reduced axes with size 1.

use super::elementwise::{cast_internal, sqrt};
use super::prim::{apply, Prim};
use super::rules::{self, UnaryRule};
use super::{cfg_for_tensors, normalize_axes, normalize_axis};
use crate::backend::{ArgOp, FusedReduce, ReduceOp, ScanOp};
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;

pub(crate) fn reduce_prim(
    x: &Tensor,
    op: ReduceOp,
    axes: &[usize],
    keepdims: bool,
) -> Result<Tensor> {
    apply(Prim::Reduce(op, axes.to_vec(), keepdims), &[x])
}

#[track_caller]
fn reduce_with(
    name: &str,
    rule: UnaryRule,
    op: ReduceOp,
    x: &Tensor,
    axis: Option<&[isize]>,
    keepdims: bool,
) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary(name, rule, x.dtype(), &cfg)?;
    let axes = normalize_axes(axis, x.ndim(), name)?;
    let x = cast_internal(x, out, name)?;
    reduce_prim(&x, op, &axes, keepdims)
}

/// Sum. Bool and small ints accumulate in int32/uint32 (Keras); floats pairwise.
///
/// ```
/// use kiln::{ops, ArrayData, Device, DType, convert_to_tensor};
/// let x = convert_to_tensor(&ArrayData::from_shape_vec(&[2, 2], vec![1u8, 2, 3, 250]).unwrap(), None, &Device::Cpu).unwrap();
/// let s = ops::sum(&x, None, false).unwrap();
/// assert_eq!(s.dtype(), DType::UInt32);
/// assert_eq!(s.to_vec::<u32>().unwrap(), vec![256]);
/// assert_eq!(ops::sum(&x, Some(&[-1]), true).unwrap().shape(), &[2, 1]);
/// ```
#[track_caller]
pub fn sum(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    reduce_with("sum", UnaryRule::Sum, ReduceOp::Sum, x, axis, keepdims)
}

/// Product (same dtype rule as `sum`).
#[track_caller]
pub fn prod(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    reduce_with("prod", UnaryRule::Sum, ReduceOp::Prod, x, axis, keepdims)
}

/// Maximum (NaN-propagating; empty reductions are an error).
#[track_caller]
pub fn max(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    reduce_with("max", UnaryRule::Same, ReduceOp::Max, x, axis, keepdims)
}

/// Minimum (NaN-propagating; empty reductions are an error).
#[track_caller]
pub fn min(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    reduce_with("min", UnaryRule::Same, ReduceOp::Min, x, axis, keepdims)
}

/// Whether every element is nonzero.
#[track_caller]
pub fn all(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    reduce_with("all", UnaryRule::Bool, ReduceOp::All, x, axis, keepdims)
}

/// Whether any element is nonzero.
#[track_caller]
pub fn any(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    reduce_with("any", UnaryRule::Bool, ReduceOp::Any, x, axis, keepdims)
}

pub(crate) fn count(x: &Tensor, axes: &[usize]) -> f64 {
    axes.iter().map(|a| x.shape()[*a]).product::<usize>() as f64
}

/// The engine's fused reduction where it has one for this dtype and layout, else
/// `composed`; recorded as the fused reduction either way (real float inputs: complex ones
/// compose from primitives).
fn fused(
    x: &Tensor,
    op: FusedReduce,
    axes: &[usize],
    keepdims: bool,
    composed: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    if x.dtype().is_complex() {
        return composed(x);
    }
    super::prim::apply_fused(Prim::ReduceFused(op, axes.to_vec(), keepdims), x, composed)
}

/// Arithmetic mean; ints become floats.
#[track_caller]
pub fn mean(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("mean", UnaryRule::ToFloat, x.dtype(), &cfg)?;
    let axes = normalize_axes(axis, x.ndim(), "mean")?;
    let x = cast_internal(x, out, "mean")?;
    fused(&x, FusedReduce::Mean, &axes, keepdims, |x| {
        super::composed::mean(x, &axes, keepdims)
    })
}

/// Population variance (`ddof = 0`, as Keras); complex input gives a complex dtype
/// holding the real variance (Keras's dtype rule).
#[track_caller]
pub fn var(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("var", UnaryRule::ToFloat, x.dtype(), &cfg)?;
    let axes = normalize_axes(axis, x.ndim(), "var")?;
    let x = cast_internal(x, out, "var")?;
    fused(&x, FusedReduce::Var, &axes, keepdims, |x| {
        cast_internal(&super::composed::var(x, &axes, keepdims)?, out, "var")
    })
}

/// Population standard deviation; complex input gives its real dtype.
#[track_caller]
pub fn std(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("std", UnaryRule::RealFloat, x.dtype(), &cfg)?;
    let axes = normalize_axes(axis, x.ndim(), "std")?;
    if !x.dtype().is_complex() {
        let xf = cast_internal(x, out, "std")?;
        return fused(&xf, FusedReduce::Std, &axes, keepdims, |x| {
            sqrt(&super::composed::var(x, &axes, keepdims)?)
        });
    }
    let v = var(x, axis, keepdims)?;
    let v = super::elementwise::real(&v)?;
    cast_internal(&sqrt(&v)?, out, "std")
}

#[track_caller]
fn arg(name: &str, op: ArgOp, x: &Tensor, axis: Option<isize>, keepdims: bool) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary(name, UnaryRule::IndexNoComplex, x.dtype(), &cfg)?;
    let (flat, ax) = match axis {
        None => (super::shape::reshape(x, &[-1])?, 0),
        Some(a) => (x.clone(), normalize_axis(a, x.ndim(), name)?),
    };
    if flat.ndim() == 0 {
        return cast_internal(
            &super::creation::zeros_like(&flat, Some(DType::Int64))?,
            out,
            name,
        );
    }
    let mut t = apply(Prim::ArgReduce(op, ax), &[&flat])?;
    if keepdims {
        t = match axis {
            None => super::shape::reshape(&t, &vec![1isize; x.ndim()])?,
            Some(_) => super::shape::expand_dims(&t, ax as isize)?,
        };
    }
    cast_internal(&t, out, name)
}

/// Index of the maximum (first occurrence; NaN counts as maximal, as in NumPy).
#[track_caller]
pub fn argmax(x: &Tensor, axis: Option<isize>, keepdims: bool) -> Result<Tensor> {
    arg("argmax", ArgOp::ArgMax, x, axis, keepdims)
}

/// Index of the minimum (first occurrence; NaN counts as minimal, as in NumPy).
#[track_caller]
pub fn argmin(x: &Tensor, axis: Option<isize>, keepdims: bool) -> Result<Tensor> {
    arg("argmin", ArgOp::ArgMin, x, axis, keepdims)
}

#[track_caller]
fn scan(name: &str, op: ScanOp, x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary(name, UnaryRule::BoolToInt, x.dtype(), &cfg)?;
    let (x, ax) = match axis {
        None => (super::shape::reshape(x, &[-1])?, 0),
        Some(a) => (x.clone(), normalize_axis(a, x.ndim(), name)?),
    };
    let x = cast_internal(&x, out, name)?;
    if x.ndim() == 0 {
        return Ok(x);
    }
    apply(Prim::Scan(op, ax), &[&x])
}

/// Cumulative sum (flattened when `axis` is `None`).
#[track_caller]
pub fn cumsum(x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
    scan("cumsum", ScanOp::CumSum, x, axis)
}

/// Cumulative product (flattened when `axis` is `None`).
#[track_caller]
pub fn cumprod(x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
    scan("cumprod", ScanOp::CumProd, x, axis)
}

/// `log(sum(exp(x)))`, computed stably (shifted by the maximum).
#[track_caller]
pub fn logsumexp(x: &Tensor, axis: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("logsumexp", UnaryRule::ToFloat, x.dtype(), &cfg)?;
    let x = cast_internal(x, out, "logsumexp")?;
    let axes = normalize_axes(axis, x.ndim(), "logsumexp")?;
    fused(&x, FusedReduce::LogSumExp, &axes, keepdims, |x| {
        super::composed::logsumexp(x, &axes, keepdims)
    })
}

/// Number of nonzero elements (index dtype).
#[track_caller]
pub fn count_nonzero(x: &Tensor, axis: Option<&[isize]>) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("count_nonzero", UnaryRule::Index, x.dtype(), &cfg)?;
    let axes = normalize_axes(axis, x.ndim(), "count_nonzero")?;
    let fused = Prim::ReduceFused(FusedReduce::CountNonzero, axes.clone(), false);
    let s = match super::prim::try_fused(fused, &[x])? {
        Some(t) => t,
        None => super::composed::count_nonzero(x, &axes)?,
    };
    cast_internal(&s, out, "count_nonzero")
}
