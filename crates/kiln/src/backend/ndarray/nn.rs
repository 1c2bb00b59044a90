//! Fused nn kernels of the ndarray engine: the activations in one pass per element, and
//! softmax / log_softmax in three passes per row (max, exp-sum, normalise) over a row that
//! stays in cache, where the composed versions run five or six ops with a full-size
//! intermediate each. Half types compute in f32 and round once.

use super::arith::FloatMath;
use super::elementwise::{map, shaped};
use super::reduce::{row, ExtF, FloatIn, Reducer};
use super::simd;
use super::ArrView;
use crate::array::ArrayData;
use crate::backend::{Activation, Normalize};
use crate::element::Element;
use crate::error::Result;
use crate::hostmem::{alloc_for, par_rows, PAR_MIN};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD};
use num_traits::{Float, NumCast, ToPrimitive};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The compute type of an activation: f32 for f32 and the half types (the vectorised
/// bodies of `vmath`), f64 for f64 (the formulas of the composed reference).
trait Compute: Float + FloatMath + Send + Sync + 'static {
    fn sigmoid(self) -> Self;
    fn softplus(self) -> Self;
    fn gelu_tanh(self) -> Self;
    fn gelu_erf(self) -> Self;
}
impl Compute for f32 {
    #[inline(always)]
    fn sigmoid(self) -> f32 {
        super::vmath::sigmoid(self)
    }
    #[inline(always)]
    fn softplus(self) -> f32 {
        super::vmath::softplus(self)
    }
    // At -inf Keras's formula (and JAX's) gives -inf * 0 = NaN, where the accurate body
    // returns the limit -0; kiln gives what Keras gives.
    #[inline(always)]
    fn gelu_tanh(self) -> f32 {
        let y = super::vmath::gelu_tanh(self);
        if self == f32::NEG_INFINITY {
            f32::NAN
        } else {
            y
        }
    }
    #[inline(always)]
    fn gelu_erf(self) -> f32 {
        let y = super::vmath::gelu_erf(self);
        if self == f32::NEG_INFINITY {
            f32::NAN
        } else {
            y
        }
    }
}
impl Compute for f64 {
    #[inline(always)]
    fn sigmoid(self) -> f64 {
        sigmoid_formula(self)
    }
    #[inline(always)]
    fn softplus(self) -> f64 {
        act::relu(self) + FloatMath::ln_1p(FloatMath::exp(-self.abs()))
    }
    #[inline(always)]
    fn gelu_tanh(self) -> f64 {
        let k = (2.0 / std::f64::consts::PI).sqrt();
        let x3 = self * self * self;
        let inner = FloatMath::tanh((self + x3 * 0.044715) * k);
        self * 0.5 * (inner + 1.0)
    }
    #[inline(always)]
    fn gelu_erf(self) -> f64 {
        // erfc form: no cancellation for very negative x (0.5 x erfc(-x / sqrt 2)); NaN at
        // -inf, as Keras's formula gives.
        if self == f64::NEG_INFINITY {
            return f64::NAN;
        }
        0.5 * self * libm::erfc(-self * std::f64::consts::FRAC_1_SQRT_2)
    }
}

#[inline(always)]
fn c<W: Compute>(v: f64) -> W {
    <W as NumCast>::from(v).unwrap_or(W::nan())
}

/// `1 / (1 + exp(-x))` without overflow: `e = exp(-|x|) <= 1`.
#[inline(always)]
fn sigmoid_formula<W: Float + FloatMath>(x: W) -> W {
    let e = FloatMath::exp(-x.abs());
    let d = e + W::one();
    if x >= W::zero() {
        W::one() / d
    } else {
        e / d
    }
}

/// The activations' element functions, in the compute type (the same formulas, op by op,
/// as the compositions in `ops::composed`). Each is its own function so that each kernel
/// loop is monomorphised for one of them (a `match` per element would not vectorise).
mod act {
    use super::*;

    /// NaN passes through (as `maximum(x, 0)` does); +0 for x <= 0.
    #[inline(always)]
    pub(super) fn relu<W: Float>(x: W) -> W {
        if x.is_nan() || x > W::zero() {
            x
        } else {
            W::zero()
        }
    }
    #[inline(always)]
    pub(super) fn relu6<W: Compute>(x: W) -> W {
        clip(x, W::zero(), c::<W>(6.0))
    }
    /// NumPy's `minimum(maximum(x, lo), hi)`: NaN passes through both.
    #[inline(always)]
    pub(super) fn clip<W: Float>(x: W, lo: W, hi: W) -> W {
        let m = if x.is_nan() || x > lo { x } else { lo };
        if m.is_nan() || m < hi {
            m
        } else {
            hi
        }
    }
    #[inline(always)]
    pub(super) fn silu<W: Compute>(x: W) -> W {
        x * x.sigmoid()
    }
    #[inline(always)]
    pub(super) fn elu<W: Compute>(x: W, alpha: W) -> W {
        if x > W::zero() {
            x
        } else {
            FloatMath::expm1(x) * alpha
        }
    }
    #[inline(always)]
    pub(super) fn leaky_relu<W: Compute>(x: W, slope: W) -> W {
        if x >= W::zero() {
            x
        } else {
            x * slope
        }
    }
}

fn act_typed<T>(a: Activation, x: &ArrayViewD<'_, T>) -> Result<ArrayD<T>>
where
    T: FloatIn + Element,
    T::W: Compute,
{
    let n = "activation";
    match a {
        Activation::Relu => map(x, n, |v: T| T::narrow(act::relu(v.wide()))),
        Activation::Relu6 => map(x, n, |v: T| T::narrow(act::relu6(v.wide()))),
        Activation::Sigmoid => map(x, n, |v: T| T::narrow(v.wide().sigmoid())),
        Activation::Silu => map(x, n, |v: T| T::narrow(act::silu(v.wide()))),
        Activation::Softplus => map(x, n, |v: T| T::narrow(v.wide().softplus())),
        Activation::Gelu { approximate: true } => map(x, n, |v: T| T::narrow(v.wide().gelu_tanh())),
        Activation::Gelu { approximate: false } => map(x, n, |v: T| T::narrow(v.wide().gelu_erf())),
        Activation::Elu { alpha } => {
            let al = c::<T::W>(alpha);
            map(x, n, move |v: T| T::narrow(act::elu(v.wide(), al)))
        }
        Activation::LeakyRelu { negative_slope } => {
            let sl = c::<T::W>(negative_slope);
            map(x, n, move |v: T| T::narrow(act::leaky_relu(v.wide(), sl)))
        }
        Activation::Clip { lo, hi } => {
            let (lo, hi) = (c::<T::W>(lo), c::<T::W>(hi));
            map(x, "clip", move |v: T| {
                T::narrow(act::clip(v.wide(), lo, hi))
            })
        }
    }
}

/// The fused activation, or `None` for dtypes that compose it (integers, complex).
pub(super) fn activation(a: Activation, d: &ArrView<'_>) -> Result<Option<ArrayData>> {
    Ok(Some(match d {
        ArrView::F32(x) => ArrayData::F32(act_typed(a, x)?),
        ArrView::F64(x) => ArrayData::F64(act_typed(a, x)?),
        ArrView::F16(x) => ArrayData::F16(act_typed::<f16>(a, x)?),
        ArrView::BF16(x) => ArrayData::BF16(act_typed::<bf16>(a, x)?),
        _ => return Ok(None),
    }))
}

/// Maximum of a row (NaN-propagating), in `W`: the reductions' own reducer and row kernel.
type Max<T> = ExtF<T, true>;

const LANES: usize = 16;

/// `sum(exp(x - m))` of a row in f64 lanes.
#[inline(always)]
fn sum_exp<T: FloatIn>(x: &[T], m: T::W) -> f64
where
    T::W: Compute,
{
    let mut acc = [0f64; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for ch in &mut chunks {
        for i in 0..LANES {
            let e: T::W = FloatMath::exp(ch[i].wide() - m);
            acc[i] += e.to_f64().unwrap_or(f64::NAN);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for v in chunks.remainder() {
        let e: T::W = FloatMath::exp(v.wide() - m);
        s += e.to_f64().unwrap_or(f64::NAN);
    }
    s
}

/// Writes one normalised row: softmax `exp(x - m) / s`, log_softmax `(x - m) - ln(s)`.
#[inline(always)]
fn write_row<T: FloatIn>(op: Normalize, x: &[T], o: &mut [MaybeUninit<T>], m: T::W, s: f64)
where
    T::W: Compute,
{
    match op {
        Normalize::Softmax => {
            let s = c::<T::W>(s);
            for (slot, v) in o.iter_mut().zip(x) {
                let e: T::W = FloatMath::exp(v.wide() - m);
                slot.write(T::narrow(e / s));
            }
        }
        Normalize::LogSoftmax => {
            let ls = c::<T::W>(s.ln());
            for (slot, v) in o.iter_mut().zip(x) {
                slot.write(T::narrow((v.wide() - m) - ls));
            }
        }
    }
}

/// Softmax of one row in two passes over the output: `exp(x - m)` written (and summed in
/// f64 lanes) once, then divided in place. Only where the element is its own compute type
/// (f32, f64), so the stored exponential is exact.
#[inline(always)]
fn softmax_store<T: FloatIn>(x: &[T], o: &mut [MaybeUninit<T>], m: T::W)
where
    T::W: Compute,
{
    let mut acc = [0f64; LANES];
    let mut oc = o.chunks_exact_mut(LANES);
    let mut xc = x.chunks_exact(LANES);
    for (ob, xb) in (&mut oc).zip(&mut xc) {
        for i in 0..LANES {
            let e: T::W = FloatMath::exp(xb[i].wide() - m);
            ob[i].write(T::narrow(e));
            acc[i] += e.to_f64().unwrap_or(f64::NAN);
        }
    }
    let mut s: f64 = acc.iter().sum();
    for (slot, v) in oc.into_remainder().iter_mut().zip(xc.remainder()) {
        let e: T::W = FloatMath::exp(v.wide() - m);
        slot.write(T::narrow(e));
        s += e.to_f64().unwrap_or(f64::NAN);
    }
    let s = c::<T::W>(s);
    for slot in o.iter_mut() {
        // SAFETY: the loops above wrote every slot of `o` (it has x's length).
        let e = unsafe { slot.assume_init() }.wide();
        slot.write(T::narrow(e / s));
    }
}

/// Softmax / log_softmax of one row (the row stays in cache across the passes).
#[inline(always)]
fn norm_one<T: FloatIn>(op: Normalize, mx: Max<T>, xr: &[T], o: &mut [MaybeUninit<T>])
where
    T::W: Compute,
{
    let m = row(mx, xr);
    if op == Normalize::Softmax && std::mem::size_of::<T>() == std::mem::size_of::<T::W>() {
        return softmax_store(xr, o, m);
    }
    let s = sum_exp(xr, m);
    write_row(op, xr, o, m, s);
}

simd::kernel! {
    /// Softmax / log_softmax of every row of length `r`.
    fn rows[T: FloatIn](op: Normalize, mx: Max<T>, slots: &mut [MaybeUninit<T>], x: &[T], r: usize)
    where [T::W: Compute]
    {
        for (oc, xc) in slots.chunks_mut(r).zip(x.chunks(r)) {
            norm_one(op, mx, xc, oc)
        }
    }
}

simd::kernel! {
    /// The maximum of a long row's chunk.
    fn max_k[T: FloatIn](mx: Max<T>, x: &[T]) -> T::W where [] {
        row(mx, x)
    }
}

simd::kernel! {
    /// The exp-sum of a long row's chunk.
    fn sum_exp_k[T: FloatIn](x: &[T], m: T::W) -> f64 where [T::W: Compute] {
        sum_exp(x, m)
    }
}

simd::kernel! {
    /// The output of a long row's chunk.
    fn write_k[T: FloatIn](op: Normalize, x: &[T], o: &mut [MaybeUninit<T>], m: T::W, s: f64) where [T::W: Compute] {
        write_row(op, x, o, m, s)
    }
}

simd::kernel! {
    /// Softmax / log_softmax along the rows (of `l`) of one block: a max row and an exp-sum
    /// row, then the output.
    fn cols[T: FloatIn](op: Normalize, mx: Max<T>, xb: &[T], ob: &mut [MaybeUninit<T>], l: usize) where [T::W: Compute] {
        let mut m = vec![mx.init(); l];
        let mut s = vec![0f64; l];
        for xr in xb.chunks_exact(l) {
            for (mj, v) in m.iter_mut().zip(xr) {
                *mj = mx.step(*mj, *v);
            }
        }
        for xr in xb.chunks_exact(l) {
            for ((sj, v), mj) in s.iter_mut().zip(xr).zip(&m) {
                let e: T::W = FloatMath::exp(v.wide() - *mj);
                *sj += e.to_f64().unwrap_or(f64::NAN);
            }
        }
        let (sw, lw): (Vec<T::W>, Vec<T::W>) =
            s.iter().map(|v| (c::<T::W>(*v), c::<T::W>(v.ln()))).unzip();
        for (xr, or) in xb.chunks_exact(l).zip(ob.chunks_mut(l)) {
            for ((((slot, v), mj), sj), lj) in or.iter_mut().zip(xr).zip(&m).zip(&sw).zip(&lw) {
                let y = match op {
                    Normalize::Softmax => {
                        let e: T::W = FloatMath::exp(v.wide() - *mj);
                        e / *sj
                    }
                    Normalize::LogSoftmax => (v.wide() - *mj) - *lj,
                };
                slot.write(T::narrow(y));
            }
        }
    }
}

fn norm_typed<T>(op: Normalize, a: &ArrayViewD<'_, T>, axis: usize) -> Result<ArrayD<T>>
where
    T: FloatIn + Element,
    T::W: Compute,
{
    let shape = a.shape().to_vec();
    let n = a.len();
    let r = shape[axis];
    let l: usize = shape[axis + 1..].iter().product();
    let x: std::borrow::Cow<'_, [T]> = match a.as_slice() {
        Some(s) => s.into(),
        None => a.iter().copied().collect::<Vec<_>>().into(),
    };
    let name = if op == Normalize::Softmax {
        "softmax"
    } else {
        "log_softmax"
    };
    let mut out = alloc_for::<T>(n, name, &shape)?;
    if n == 0 {
        return shaped(&shape, out);
    }
    let slots = &mut out.spare_capacity_mut()[..n];
    let mx: Max<T> = ExtF(std::marker::PhantomData);
    if l == 1 {
        if n >= PAR_MIN && n / r >= 2 {
            let per = (PAR_MIN / r).max(1);
            par_rows(slots, r, &x, r, per, |_, o, xr| rows(op, mx, o, xr, r));
        } else if n >= PAR_MIN {
            // One long row: each pass split across threads.
            const C: usize = 1 << 16;
            let m = x
                .par_chunks(C)
                .map(|ch| max_k(mx, ch))
                .reduce(|| mx.init(), |a, b| mx.merge(a, b));
            let s: f64 = x.par_chunks(C).map(|ch| sum_exp_k(ch, m)).sum();
            slots
                .par_chunks_mut(C)
                .zip(x.par_chunks(C))
                .for_each(|(o, xr)| write_k(op, xr, o, m, s));
        } else {
            rows(op, mx, slots, &x, r);
        }
    } else if n >= PAR_MIN && n / (r * l) >= 2 {
        par_rows(slots, r * l, &x, r * l, 1, |_, o, xs| {
            for (ob, xb) in o.chunks_mut(r * l).zip(xs.chunks(r * l)) {
                cols(op, mx, xb, ob, l);
            }
        });
    } else {
        for (o, xb) in slots.chunks_mut(r * l).zip(x.chunks(r * l)) {
            cols(op, mx, xb, o, l);
        }
    }
    // SAFETY: every branch above wrote all n slots (rows or blocks cover the buffer).
    unsafe { out.set_len(n) };
    shaped(&shape, out)
}

/// Fused softmax / log_softmax along `axis`, or `None` for dtypes that compose it.
pub(super) fn normalize(op: Normalize, d: &ArrView<'_>, axis: usize) -> Result<Option<ArrayData>> {
    Ok(Some(match d {
        ArrView::F32(x) => ArrayData::F32(norm_typed(op, x, axis)?),
        ArrView::F64(x) => ArrayData::F64(norm_typed(op, x, axis)?),
        ArrView::F16(x) => ArrayData::F16(norm_typed(op, x, axis)?),
        ArrView::BF16(x) => ArrayData::BF16(norm_typed(op, x, axis)?),
        _ => return Ok(None),
    }))
}
