//! The gradient rule of every primitive call, in one place: given the call, its inputs, its
//! output and the cotangent `g` of the output, the cotangent of each input (the
//! vector-Jacobian product). Every op differentiates through the primitives it is made of,
//! so these rules cover them all; the fused kernels (activations, softmax, the fused
//! reductions) have rules of their own, with JAX's conventions where a function has a kink:
//! relu's gradient at 0 is 0; `maximum`/`minimum` and `max`/`min` reductions split a tie
//! evenly; `leaky_relu` and `abs` take the `x >= 0` side at 0; relu6 is 0 at 0 and 6.
//!
//! Each rule is written with the public ops (run without recording), so it computes on the
//! inputs' engine and device in their dtype. A gradient always has its input's shape and
//! dtype: broadcasting sums back ([`unbroadcast`]), `cast` casts the gradient back.

use super::elementwise::*;
use super::prim::{apply, Prim};
use super::reduce::{cumprod, cumsum, sum};
use super::shape::{broadcast_to, flip, pad, reshape, strided_slice, transpose, SliceArg};
use crate::backend::{Activation, BinaryOp, FusedReduce, Normalize, ReduceOp, ScanOp, UnaryOp};
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;
use std::f64::consts::{LN_10, LN_2, PI};

/// The cotangents of `inputs` (`None` where `needs` says an input is a constant, or where it
/// has no gradient: indices, conditions).
pub(crate) fn vjp(
    prim: &Prim,
    inputs: &[Tensor],
    out: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let x = &inputs[0];
    if x.dtype().is_complex() || out.dtype().is_complex() {
        return Err(KilnError::not_allowed(
            prim.name(),
            &[x.dtype()],
            "gradients of complex values are not supported yet; differentiate real and imaginary parts as separate float tensors",
        ));
    }
    let one = |t: Tensor| Ok(vec![Some(t)]);
    match prim {
        Prim::Cast(_) | Prim::Transfer => one(super::convert_at(g, x.dtype(), super::place_of(x))?),
        Prim::Unary(op) => one(unary(*op, x, out, g)?),
        Prim::Binary(op, _) => binary(*op, &inputs[0], &inputs[1], out, g, needs),
        Prim::Select(_) => {
            let (c, a, b) = (&inputs[0], &inputs[1], &inputs[2]);
            let ga = needs[1]
                .then(|| unbroadcast(&r#where(c, g, 0.0)?, a.shape()))
                .transpose()?;
            let gb = needs[2]
                .then(|| unbroadcast(&r#where(c, 0.0, g)?, b.shape()))
                .transpose()?;
            Ok(vec![None, ga, gb])
        }
        Prim::Reduce(op, axes, keep) => one(reduce(*op, x, out, g, axes, *keep)?),
        Prim::Scan(ScanOp::CumSum, ax) => one(reverse_cumsum(g, *ax)?),
        Prim::Scan(ScanOp::CumProd, ax) => one(cumprod_grad(x, out, g, *ax)?),
        Prim::Matmul {
            transpose_a,
            transpose_b,
        } => matmul(&inputs[0], &inputs[1], g, *transpose_a, *transpose_b, needs),
        Prim::Reshape(_) => one(reshape(g, &dims(x.shape()))?),
        Prim::Permute(perm) => {
            let mut inv = vec![0; perm.len()];
            for (i, p) in perm.iter().enumerate() {
                inv[*p] = i;
            }
            one(transpose(g, Some(&inv))?)
        }
        Prim::BroadcastTo(_) => one(unbroadcast(g, x.shape())?),
        Prim::Slice(specs) => one(unslice(g, x.shape(), specs)?),
        Prim::Concat(ax) => {
            let mut start = 0usize;
            let mut parts = Vec::with_capacity(inputs.len());
            for (t, need) in inputs.iter().zip(needs) {
                let n = t.shape()[*ax];
                parts.push(
                    need.then(|| {
                        let mut args = vec![SliceArg::all(); g.ndim()];
                        args[*ax] = SliceArg::range(start as isize, (start + n) as isize);
                        strided_slice(g, &args)
                    })
                    .transpose()?,
                );
                start += n;
            }
            Ok(parts)
        }
        Prim::IndexSelect(idx, ax) => one(apply(
            Prim::IndexAdd(idx.clone(), *ax, x.shape()[*ax]),
            &[g],
        )?),
        Prim::IndexAdd(idx, ax, _) => one(apply(Prim::IndexSelect(idx.clone(), *ax), &[g])?),
        // (take_along_axis stretches size-1 axes of x to the indices': sum those back.)
        Prim::Gather(ax) => Ok(vec![
            Some(unbroadcast(
                &scatter_add(g, &inputs[1], *ax, x.shape()[*ax])?,
                x.shape(),
            )?),
            None,
        ]),
        Prim::Pad(widths, _) => {
            let args: Vec<SliceArg> = widths
                .iter()
                .zip(x.shape())
                .map(|((l, _), d)| SliceArg::range(*l as isize, (*l + *d) as isize))
                .collect();
            one(strided_slice(g, &args)?)
        }
        Prim::Sort(ax) => {
            // sort(x) = take_along_axis(x, argsort(x)): the same stable order.
            let idx = apply(Prim::Argsort(*ax), &[x])?;
            one(scatter_add(g, &idx, *ax, x.shape()[*ax])?)
        }
        Prim::ReduceFused(op, axes, keep) => one(fused_reduce(*op, x, out, g, axes, *keep)?),
        // A mask: the gradient is the same triangle of g.
        Prim::Triangle { k, upper } => one(super::shape::triangle(g, *k, *upper)?),
        Prim::Activation(act) => one(activation(*act, x, out, g)?),
        Prim::Normalize(Normalize::Softmax, ax) => {
            let a = [*ax as isize];
            let s = sum(&multiply(g, out)?, Some(&a), true)?;
            one(multiply(out, &subtract(g, &s)?)?)
        }
        Prim::Normalize(Normalize::LogSoftmax, ax) => {
            let a = [*ax as isize];
            let s = sum(g, Some(&a), true)?;
            one(subtract(g, &multiply(&exp(out)?, &s)?)?)
        }
        // Integer or bool results: never recorded.
        Prim::Compare(..) | Prim::ArgReduce(..) | Prim::Argsort(_) | Prim::OneHot(..) => {
            Ok(vec![None; inputs.len()])
        }
    }
}

fn dims(shape: &[usize]) -> Vec<isize> {
    shape.iter().map(|d| *d as isize).collect()
}

/// Sums `g` down to `shape` over the axes broadcasting added or stretched.
pub(crate) fn unbroadcast(g: &Tensor, shape: &[usize]) -> Result<Tensor> {
    if g.shape() == shape {
        return Ok(g.clone());
    }
    let lead = g.ndim() - shape.len();
    let axes: Vec<isize> = (0..g.ndim())
        .filter(|&i| i < lead || (shape[i - lead] == 1 && g.shape()[i] != 1))
        .map(|i| i as isize)
        .collect();
    let s = if axes.is_empty() {
        g.clone()
    } else {
        sum(g, Some(&axes), true)?
    };
    reshape(&s, &dims(shape))
}

/// `g` (a reduction's cotangent) broadcast back over the reduced axes of `shape`.
fn expand(g: &Tensor, shape: &[usize], axes: &[usize], keepdims: bool) -> Result<Tensor> {
    let kept: Vec<isize> = (0..shape.len())
        .map(|i| {
            if axes.contains(&i) {
                1
            } else {
                shape[i] as isize
            }
        })
        .collect();
    let g = if keepdims {
        g.clone()
    } else {
        reshape(g, &kept)?
    };
    broadcast_to(&g, shape)
}

fn unary(op: UnaryOp, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    use UnaryOp::*;
    match op {
        Neg => negative(g),
        // JAX's rule: the x >= 0 side at 0 (abs'(0) = 1).
        Abs => r#where(&greater_equal(x, 0.0)?, g, &negative(g)?),
        Sign | Floor | Ceil | Round => super::creation::zeros_like(x, None),
        Sqrt => divide(g, &multiply(y, 2.0)?),
        Exp => multiply(g, y),
        Expm1 => multiply(g, &add(y, 1.0)?),
        Log => divide(g, x),
        Log1p => divide(g, &add(x, 1.0)?),
        Log2 => divide(g, &multiply(x, LN_2)?),
        Log10 => divide(g, &multiply(x, LN_10)?),
        Sin => multiply(g, &cos(x)?),
        Cos => negative(&multiply(g, &sin(x)?)?),
        Tan => multiply(g, &add(&multiply(y, y)?, 1.0)?),
        Asin => divide(g, &sqrt(&subtract(1.0, &multiply(x, x)?)?)?),
        Acos => negative(&divide(g, &sqrt(&subtract(1.0, &multiply(x, x)?)?)?)?),
        Atan => divide(g, &add(&multiply(x, x)?, 1.0)?),
        Sinh => multiply(g, &cosh(x)?),
        Cosh => multiply(g, &sinh(x)?),
        Tanh => multiply(g, &subtract(1.0, &multiply(y, y)?)?),
        Erf => multiply(
            g,
            &multiply(&exp(&negative(&multiply(x, x)?)?)?, 2.0 / PI.sqrt())?,
        ),
        IsNan | IsInf | IsFinite | LogicalNot | Real | Imag | Conj => Err(KilnError::invalid(
            "unary",
            format!("{op:?} has no real gradient"),
        )),
    }
}

/// `1` where `t` equals `at`, with ties against `other` counting one half (JAX's balanced
/// rule for `maximum`/`minimum`).
fn balanced(t: &Tensor, at: &Tensor, other: &Tensor) -> Result<Tensor> {
    let half = r#where(&equal(other, at)?, 0.5, 1.0)?;
    let w = r#where(&equal(t, at)?, &half, 0.0)?;
    cast_like(&w, t)
}

fn cast_like(w: &Tensor, t: &Tensor) -> Result<Tensor> {
    super::convert_at(w, t.dtype(), super::place_of(t))
}

fn binary(
    op: BinaryOp,
    a: &Tensor,
    b: &Tensor,
    y: &Tensor,
    g: &Tensor,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    use BinaryOp::*;
    let (ga, gb): (Option<Tensor>, Option<Tensor>) = match op {
        Add => (Some(g.clone()), Some(g.clone())),
        Sub => (Some(g.clone()), needs[1].then(|| negative(g)).transpose()?),
        Mul => (
            needs[0].then(|| multiply(g, b)).transpose()?,
            needs[1].then(|| multiply(g, a)).transpose()?,
        ),
        Div => (
            needs[0].then(|| divide(g, b)).transpose()?,
            needs[1]
                .then(|| negative(&divide(&multiply(g, y)?, b)?))
                .transpose()?,
        ),
        Pow => {
            // JAX's conventions: d/da is 0 where b == 0 (even at a == 0), and d/db uses
            // log(a) with a == 0 read as 1 (so 0 ** b contributes 0).
            let ga = needs[0]
                .then(|| -> Result<Tensor> {
                    let bz = equal(b, 0.0)?;
                    let d = multiply(b, &power(a, &subtract(b, 1.0)?)?)?;
                    multiply(g, &r#where(&bz, 0.0, &d)?)
                })
                .transpose()?;
            let gb = needs[1]
                .then(|| -> Result<Tensor> {
                    let safe = r#where(&equal(a, 0.0)?, 1.0, a)?;
                    multiply(g, &multiply(y, &log(&safe)?)?)
                })
                .transpose()?;
            (ga, gb)
        }
        Max | Min => (
            needs[0]
                .then(|| multiply(g, &balanced(a, y, b)?))
                .transpose()?,
            needs[1]
                .then(|| multiply(g, &balanced(b, y, a)?))
                .transpose()?,
        ),
        Atan2 => {
            let d = add(&multiply(a, a)?, &multiply(b, b)?)?;
            (
                needs[0].then(|| divide(&multiply(g, b)?, &d)).transpose()?,
                needs[1]
                    .then(|| negative(&divide(&multiply(g, a)?, &d)?))
                    .transpose()?,
            )
        }
        Hypot => (
            needs[0].then(|| multiply(g, &divide(a, y)?)).transpose()?,
            needs[1].then(|| multiply(g, &divide(b, y)?)).transpose()?,
        ),
        FloorDiv => (
            Some(super::creation::zeros_like(a, None)?),
            Some(super::creation::zeros_like(b, None)?),
        ),
        Mod => (
            Some(g.clone()),
            needs[1]
                .then(|| negative(&multiply(g, &floor_divide(a, b)?)?))
                .transpose()?,
        ),
        And | Or | Xor => (None, None),
    };
    let fit = |t: Option<Tensor>, like: &Tensor, need: bool| -> Result<Option<Tensor>> {
        match t {
            Some(t) if need => unbroadcast(&t, like.shape()).map(Some),
            _ => Ok(None),
        }
    };
    Ok(vec![fit(ga, a, needs[0])?, fit(gb, b, needs[1])?])
}

fn reduce(
    op: ReduceOp,
    x: &Tensor,
    y: &Tensor,
    g: &Tensor,
    axes: &[usize],
    keep: bool,
) -> Result<Tensor> {
    let ge = expand(g, x.shape(), axes, keep)?;
    match op {
        ReduceOp::Sum => Ok(ge),
        ReduceOp::Max | ReduceOp::Min => {
            // The cotangent is shared evenly among the elements equal to the extreme.
            let ye = expand(y, x.shape(), axes, keep)?;
            let hit = cast_like(&equal(x, &ye)?, x)?;
            let ax: Vec<isize> = axes.iter().map(|a| *a as isize).collect();
            let count = expand(&sum(&hit, Some(&ax), true)?, x.shape(), axes, true)?;
            multiply(&ge, &divide(&hit, &count)?)
        }
        ReduceOp::Prod => {
            // d prod / d x_i is the product of the others: y / x_i without zeros; with one
            // zero in a group, that product at the zero and 0 elsewhere; with more, 0.
            let ax: Vec<isize> = axes.iter().map(|a| *a as isize).collect();
            let zero = equal(x, 0.0)?;
            let nz = sum(&cast_like(&zero, x)?, Some(&ax), true)?;
            let nz = expand(&nz, x.shape(), axes, true)?;
            let others = super::reduce::prod(&r#where(&zero, 1.0, x)?, Some(&ax), true)?;
            let others = expand(&others, x.shape(), axes, true)?;
            let ye = expand(y, x.shape(), axes, keep)?;
            let no_zero = divide(&ye, &r#where(&zero, 1.0, x)?)?;
            let at_zero = r#where(&equal(&nz, 1.0)?, &others, 0.0)?;
            let d = r#where(&equal(&nz, 0.0)?, &no_zero, &r#where(&zero, &at_zero, 0.0)?)?;
            multiply(&ge, &d)
        }
        ReduceOp::All | ReduceOp::Any => super::creation::zeros_like(x, None),
    }
}

fn reverse_cumsum(g: &Tensor, ax: usize) -> Result<Tensor> {
    let a = [ax as isize];
    flip(&cumsum(&flip(g, Some(&a))?, Some(ax as isize))?, Some(&a))
}

fn cumprod_grad(x: &Tensor, y: &Tensor, g: &Tensor, ax: usize) -> Result<Tensor> {
    let has_zero = {
        let z = super::reduce::any(&equal(x, 0.0)?, None, false)?;
        z.to_host()?.to_f64_vec()[0] != 0.0
    };
    if !has_zero {
        // d y_j / d x_i = y_j / x_i for j >= i.
        return divide(&reverse_cumsum(&multiply(g, y)?, ax)?, x);
    }
    // With zeros, each position's gradient from the products with it replaced by 1:
    // sum_{j >= i} g_j prod_{k <= j, k != i} x_k. Quadratic in the axis length: taken only
    // when a zero makes the division above undefined.
    let n = x.shape()[ax];
    let pos = position_along(x, ax)?;
    let mut parts = Vec::with_capacity(n);
    for i in 0..n {
        let at_i = equal(&pos, i as f64)?;
        let c = cumprod(&r#where(&at_i, 1.0, x)?, Some(ax as isize))?;
        let later = greater_equal(&pos, i as f64)?;
        let contrib = r#where(&later, &multiply(&c, g)?, 0.0)?;
        parts.push(sum(&contrib, Some(&[ax as isize]), true)?);
    }
    let refs: Vec<&Tensor> = parts.iter().collect();
    super::shape::concatenate(&refs, ax as isize)
}

/// Each element's index along `ax`, in `x`'s dtype, broadcastable against `x`.
fn position_along(x: &Tensor, ax: usize) -> Result<Tensor> {
    let n = x.shape()[ax];
    let mut shape = vec![1usize; x.ndim()];
    shape[ax] = n;
    let host = crate::array::ArrayData::from_shape_vec(
        &shape,
        (0..n).map(|i| i as f64).collect::<Vec<_>>(),
    )?;
    // Rounded to x's dtype on the host: x's device holds that dtype, maybe not float64.
    let host = crate::precision::report::convert_with_report(&host, x.dtype()).0;
    x.upload_like(host)
}

fn matmul(
    a: &Tensor,
    b: &Tensor,
    g: &Tensor,
    ta: bool,
    tb: bool,
    needs: &[bool],
) -> Result<Vec<Option<Tensor>>> {
    let mm = |x: &Tensor, y: &Tensor, tx: bool, ty: bool| {
        apply(
            Prim::Matmul {
                transpose_a: tx,
                transpose_b: ty,
            },
            &[x, y],
        )
    };
    // With A = op(a), B = op(b): dA = G B^T and dB = A^T G, each transposed back where its
    // operand was read transposed; every product reads its operands as strides.
    let ga = needs[0]
        .then(|| match (ta, tb) {
            (false, false) => mm(g, b, false, true),
            (false, true) => mm(g, b, false, false),
            (true, false) => mm(b, g, false, true),
            (true, true) => mm(b, g, true, true),
        })
        .transpose()?;
    let gb = needs[1]
        .then(|| match (ta, tb) {
            (false, false) => mm(a, g, true, false),
            (true, false) => mm(a, g, false, false),
            (false, true) => mm(g, a, true, false),
            (true, true) => mm(g, a, true, true),
        })
        .transpose()?;
    Ok(vec![
        ga.map(|t| unbroadcast(&t, a.shape())).transpose()?,
        gb.map(|t| unbroadcast(&t, b.shape())).transpose()?,
    ])
}

/// The gradient of a strided slice: `g` spread back to `shape`, zeros where nothing was
/// taken. Per axis: a step of `s` interleaves `s - 1` zeros after each element (a pad of a
/// new axis and a free reshape), then pads to the input's length.
fn unslice(g: &Tensor, shape: &[usize], specs: &[crate::backend::SliceSpec]) -> Result<Tensor> {
    let mut g = g.clone();
    for (ax, (spec, &n)) in specs.iter().zip(shape).enumerate() {
        let m = g.shape()[ax];
        if spec.step == 1 && m == n {
            continue;
        }
        let step = spec.step.unsigned_abs();
        // The first position taken, in ascending order (a negative step walks from the end).
        let first = if spec.step > 0 {
            spec.start
        } else {
            g = flip(&g, Some(&[ax as isize]))?;
            if m == 0 {
                0
            } else {
                spec.end - 1 - (m - 1) * step
            }
        };
        if m == 0 {
            let mut s = g.shape().to_vec();
            s[ax] = n;
            g = super::creation::zeros(&s, Some(g.dtype()), Some(g.device()))?;
            continue;
        }
        if step > 1 {
            let mut w = vec![(0, 0); g.ndim() + 1];
            let e = super::shape::expand_dims(&g, ax as isize + 1)?;
            w[ax + 1] = (0, step - 1);
            let p = pad(&e, &w, 0.0)?;
            let mut s = dims(g.shape());
            s[ax] = (m * step) as isize;
            g = reshape(&p, &s)?;
        }
        // Now the elements sit at first, first + step, ... over `m * step` (or `m`) slots.
        let len = g.shape()[ax];
        let mut w = vec![(0, 0); g.ndim()];
        if first + len <= n {
            w[ax] = (first, n - first - len);
            g = pad(&g, &w, 0.0)?;
        } else {
            w[ax] = (first, 0);
            g = pad(&g, &w, 0.0)?;
            let mut args = vec![SliceArg::all(); g.ndim()];
            args[ax] = SliceArg::range(0, n as isize);
            g = strided_slice(&g, &args)?;
        }
    }
    Ok(g)
}

/// The transpose of a `take_along_axis` along `ax`: each `g` element added at its index (in
/// `indices`, `g`'s shape) into a zero tensor whose `ax` has length `n`.
///
/// Composed as a one-hot contraction (deterministic, on every engine); its cost is
/// `size(g) * n`, fine for labels and sorts along short axes. (Gathers with host indices,
/// `take` and the convolutions' patches, have the `IndexAdd` primitive instead.)
fn scatter_add(g: &Tensor, indices: &Tensor, ax: usize, n: usize) -> Result<Tensor> {
    // (one_hot narrows an explicit float64 with x64 off, as Keras does: cast to g's dtype.)
    let oh = cast_like(&super::shape::one_hot(indices, n, Some(g.dtype()))?, g)?;
    let nd = g.ndim();
    let a = ax as isize;
    // oh: g's shape + [n]; sum over ax of g * oh, then the class axis goes to ax.
    let e = super::shape::expand_dims(g, -1)?;
    let r = sum(&multiply(&e, &oh)?, Some(&[a]), false)?;
    let mut perm: Vec<usize> = (0..nd - 1).collect();
    perm.insert(ax, nd - 1);
    transpose(&r, Some(&perm))
}

fn fused_reduce(
    op: FusedReduce,
    x: &Tensor,
    y: &Tensor,
    g: &Tensor,
    axes: &[usize],
    keep: bool,
) -> Result<Tensor> {
    let ge = expand(g, x.shape(), axes, keep)?;
    let n = super::reduce::count(x, axes);
    let ax: Vec<isize> = axes.iter().map(|a| *a as isize).collect();
    match op {
        FusedReduce::Mean => divide(&ge, n),
        FusedReduce::Var | FusedReduce::Std => {
            let centred = subtract(x, &super::reduce::mean(x, Some(&ax), true)?)?;
            let d = multiply(&centred, 2.0 / n)?;
            if op == FusedReduce::Var {
                multiply(&ge, &d)
            } else {
                let ye = expand(y, x.shape(), axes, keep)?;
                multiply(&ge, &divide(&d, &multiply(&ye, 2.0)?)?)
            }
        }
        FusedReduce::LogSumExp => {
            let ye = expand(y, x.shape(), axes, keep)?;
            multiply(&ge, &exp(&subtract(x, &ye)?)?)
        }
        FusedReduce::CountNonzero => super::creation::zeros_like(x, None),
    }
}

fn activation(act: Activation, x: &Tensor, y: &Tensor, g: &Tensor) -> Result<Tensor> {
    match act {
        Activation::Relu => r#where(&greater(x, 0.0)?, g, 0.0),
        Activation::Relu6 => {
            let inside = logical_and(&greater(x, 0.0)?, &less(x, 6.0)?)?;
            r#where(&inside, g, 0.0)
        }
        Activation::Clip { lo, hi } => {
            // clip is minimum(maximum(x, lo), hi): a tie with a bound counts one half.
            let w = r#where(
                &logical_and(&greater(x, lo)?, &less(x, hi)?)?,
                1.0,
                &r#where(&logical_or(&equal(x, lo)?, &equal(x, hi)?)?, 0.5, 0.0)?,
            )?;
            multiply(g, &cast_like(&w, x)?)
        }
        Activation::Sigmoid => multiply(g, &multiply(y, &subtract(1.0, y)?)?),
        Activation::Silu => {
            let s = super::nn::sigmoid(x)?;
            let d = multiply(&s, &add(&multiply(x, &subtract(1.0, &s)?)?, 1.0)?)?;
            multiply(g, &d)
        }
        Activation::Softplus => multiply(g, &super::nn::sigmoid(x)?),
        Activation::Gelu { approximate: true } => {
            let c = (2.0 / PI).sqrt();
            let x2 = multiply(x, x)?;
            let u = multiply(&multiply(x, &add(&multiply(&x2, 0.044715)?, 1.0)?)?, c)?;
            let t = tanh(&u)?;
            let du = multiply(&add(&multiply(&x2, 3.0 * 0.044715)?, 1.0)?, c)?;
            let d = add(
                &multiply(&add(&t, 1.0)?, 0.5)?,
                &multiply(
                    &multiply(&multiply(x, 0.5)?, &subtract(1.0, &multiply(&t, &t)?)?)?,
                    &du,
                )?,
            )?;
            multiply(g, &d)
        }
        Activation::Gelu { approximate: false } => {
            let cdf = multiply(
                &add(&erf(&multiply(x, std::f64::consts::FRAC_1_SQRT_2)?)?, 1.0)?,
                0.5,
            )?;
            let pdf = multiply(
                &exp(&multiply(&multiply(x, x)?, -0.5)?)?,
                1.0 / (2.0 * PI).sqrt(),
            )?;
            multiply(g, &add(&cdf, &multiply(x, &pdf)?)?)
        }
        Activation::Elu { alpha } => r#where(
            &greater(x, 0.0)?,
            g,
            &multiply(g, &multiply(&exp(x)?, alpha)?)?,
        ),
        Activation::LeakyRelu { negative_slope } => {
            r#where(&greater_equal(x, 0.0)?, g, &multiply(g, negative_slope)?)
        }
    }
}
