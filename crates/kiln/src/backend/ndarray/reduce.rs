//! Reductions of the ndarray engine, reading the input in place.
//!
//! A reduction's axes are first coalesced: size-1 axes dropped, neighbouring axes of the
//! same kind (kept or reduced) merged, so any set of axes of a C-order array becomes
//! alternating *runs*. Two kernels cover every layout:
//! * **rows**: when the innermost run is reduced, each contiguous row reduces with
//!   `LANES` independent accumulators (SIMD lanes), blocked and combined pairwise as
//!   NumPy's pairwise summation is; a reducer whose result does not depend on the order
//!   (float max/min) brings a row kernel of its own (`Reducer::row_fast`, no tree);
//! * **columns**: when the innermost run is kept, whole rows accumulate into the output
//!   row (a vectorised `acc[j] op= x[j]`), for every reduced index.
//!
//! A layout with reduced runs on both sides (`[r, k, r]`) runs the row kernel, then the
//! column kernel over the row partials. Threads split the output (rows, or column stripes)
//! or, for a single long row, fixed-size chunks whose partials combine in a fixed order, so
//! results do not depend on the number of threads. Floats of up to 32 bits sum in f64.
//!
//! `reference` keeps the straightforward implementation (transpose the reduced axes to the
//! end, reduce each row); tests compare the kernels with it.

use super::arg_avx512::{RowArg, SimdArg};
use super::half_conv::{bf16_from_f32, bf16_to_f32, f16_from_f32, f16_to_f32};
use super::simd;
use super::ArrView;
use crate::array::{ArrayData, HostElement};
use crate::backend::{ArgOp, FusedReduce, ReduceOp, ScanOp};
use crate::dtype::DType;
use crate::element::{Element, Scalar};
use crate::error::{KilnError, Result};
// Reductions and copies are memory-bound: they split across threads from PAR_MIN_MEM.
use crate::hostmem::{alloc_for, par_rows, PAR_MIN_MEM};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use num_traits::Float;
use rayon::prelude::*;
use std::borrow::Cow;

/// Independent accumulators per row (4 zmm registers of f64, 2 of f32).
const LANES: usize = 32;
/// Elements summed lane-wise before partials combine pairwise (16 per lane, as NumPy's
/// pairwise sum does 128 with 8 accumulators).
const BLOCK: usize = 512;

/// One reduction: how an accumulator starts, takes an element and merges with another.
pub(super) trait Reducer: Copy + Send + Sync {
    type In: Copy + Send + Sync;
    type Acc: Copy + Send + Sync;
    fn init(self) -> Self::Acc;
    fn step(self, a: Self::Acc, x: Self::In) -> Self::Acc;
    fn merge(self, a: Self::Acc, b: Self::Acc) -> Self::Acc;
    /// A whole contiguous row by a kernel of the reducer's own, where it has one faster
    /// than the lane-wise pairwise tree (exact reductions need no tree).
    #[inline(always)]
    fn row_fast(self, _x: &[Self::In]) -> Option<Self::Acc> {
        None
    }
}

/// Merges partials of `R` (the second stage of a two-stage reduction).
#[derive(Copy, Clone)]
struct Merge<R>(R);

impl<R: Reducer> Reducer for Merge<R> {
    type In = R::Acc;
    type Acc = R::Acc;
    #[inline(always)]
    fn init(self) -> R::Acc {
        self.0.init()
    }
    #[inline(always)]
    fn step(self, a: R::Acc, x: R::Acc) -> R::Acc {
        self.0.merge(a, x)
    }
    #[inline(always)]
    fn merge(self, a: R::Acc, b: R::Acc) -> R::Acc {
        self.0.merge(a, b)
    }
}

/// Float inputs: widened exactly to `W` (f32 for half types and f32, f64 for f64) for
/// comparisons, and to f64 for sums.
pub(super) trait FloatIn: Copy + Send + Sync + 'static {
    type W: num_traits::Float + Element + Send + Sync + 'static;
    fn wide(self) -> Self::W;
    fn narrow(w: Self::W) -> Self;
    fn f64(self) -> f64;
    /// The nearest value to `x` (one rounding).
    fn round_f64(x: f64) -> Self;
}

impl FloatIn for f32 {
    type W = f32;
    #[inline(always)]
    fn wide(self) -> f32 {
        self
    }
    #[inline(always)]
    fn narrow(w: f32) -> f32 {
        w
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn round_f64(x: f64) -> f32 {
        x as f32
    }
}

impl FloatIn for f64 {
    type W = f64;
    #[inline(always)]
    fn wide(self) -> f64 {
        self
    }
    #[inline(always)]
    fn narrow(w: f64) -> f64 {
        w
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        self
    }
    #[inline(always)]
    fn round_f64(x: f64) -> f64 {
        x
    }
}

impl FloatIn for f16 {
    type W = f32;
    #[inline(always)]
    fn wide(self) -> f32 {
        f16_to_f32(self)
    }
    #[inline(always)]
    fn narrow(w: f32) -> f16 {
        f16_from_f32(w)
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        f16_to_f32(self) as f64
    }
    #[inline(always)]
    fn round_f64(x: f64) -> f16 {
        f16::from_f64(x)
    }
}

impl FloatIn for bf16 {
    type W = f32;
    #[inline(always)]
    fn wide(self) -> f32 {
        bf16_to_f32(self)
    }
    #[inline(always)]
    fn narrow(w: f32) -> bf16 {
        bf16_from_f32(w)
    }
    #[inline(always)]
    fn f64(self) -> f64 {
        bf16_to_f32(self) as f64
    }
    #[inline(always)]
    fn round_f64(x: f64) -> bf16 {
        bf16::from_f64(x)
    }
}

/// Sum of floats in f64.
#[derive(Copy, Clone)]
struct SumF<T>(std::marker::PhantomData<T>);
impl<T: FloatIn> Reducer for SumF<T> {
    type In = T;
    type Acc = f64;
    #[inline(always)]
    fn init(self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn step(self, a: f64, x: T) -> f64 {
        a + x.f64()
    }
    #[inline(always)]
    fn merge(self, a: f64, b: f64) -> f64 {
        a + b
    }
}

/// Sum of `(x - center)^2` in f64 (the second pass of a variance).
#[derive(Copy, Clone)]
struct SqDev<T>(f64, std::marker::PhantomData<T>);
impl<T: FloatIn> Reducer for SqDev<T> {
    type In = T;
    type Acc = f64;
    #[inline(always)]
    fn init(self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn step(self, a: f64, x: T) -> f64 {
        let d = x.f64() - self.0;
        a + d * d
    }
    #[inline(always)]
    fn merge(self, a: f64, b: f64) -> f64 {
        a + b
    }
}

/// Sum of `exp(x - shift)` in f64 (the second pass of a logsumexp); `exp` in the input's
/// compute type (f32 through the vectorised body).
#[derive(Copy, Clone)]
struct SumExp<T: FloatIn>(T::W);
impl<T: FloatIn> Reducer for SumExp<T>
where
    T::W: super::arith::FloatMath,
{
    type In = T;
    type Acc = f64;
    #[inline(always)]
    fn init(self) -> f64 {
        0.0
    }
    #[inline(always)]
    fn step(self, a: f64, x: T) -> f64 {
        let e = super::arith::FloatMath::exp(x.wide() - self.0);
        a + num_traits::ToPrimitive::to_f64(&e).unwrap_or(f64::NAN)
    }
    #[inline(always)]
    fn merge(self, a: f64, b: f64) -> f64 {
        a + b
    }
}

/// Product (`MUL`) or sum in the element's own type (integers wrap, as NumPy's
/// multiply.reduce and add.reduce of integers).
#[derive(Copy, Clone)]
struct Fold<T, const MUL: bool>(std::marker::PhantomData<T>);
impl<T: Element, const MUL: bool> Reducer for Fold<T, MUL> {
    type In = T;
    type Acc = T;
    #[inline(always)]
    fn init(self) -> T {
        if MUL {
            T::one()
        } else {
            T::zero()
        }
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        self.merge(a, x)
    }
    #[inline(always)]
    fn merge(self, a: T, b: T) -> T {
        if MUL {
            a.mul(b)
        } else {
            a.add(b)
        }
    }
}

/// NaN-propagating maximum (`MAX`) or minimum of floats, compared in `W`.
#[derive(Copy, Clone)]
pub(super) struct ExtF<T, const MAX: bool>(pub(super) std::marker::PhantomData<T>);
impl<T: FloatIn, const MAX: bool> Reducer for ExtF<T, MAX> {
    type In = T;
    type Acc = T::W;
    #[inline(always)]
    fn init(self) -> T::W {
        if MAX {
            T::W::neg_infinity()
        } else {
            T::W::infinity()
        }
    }
    #[inline(always)]
    fn step(self, a: T::W, x: T) -> T::W {
        self.merge(a, x.wide())
    }
    #[inline(always)]
    fn merge(self, a: T::W, x: T::W) -> T::W {
        // Once `a` is NaN no comparison is true, so it stays NaN; a NaN `x` is taken.
        let better = if MAX { x > a } else { x < a };
        if better || Float::is_nan(x) {
            x
        } else {
            a
        }
    }
    #[inline(always)]
    fn row_fast(self, x: &[T]) -> Option<T::W> {
        Some(ext_row::<T, MAX>(x))
    }
}

/// NaN-propagating maximum (`MAX`) or minimum of a float row, in `W`: 64 f32 or 32 f64
/// lanes (4 vector registers, so four independent dependency chains; one register's worth
/// is latency-bound at a third of the speed), then a quarter of the lanes over the
/// remainder; no pairwise tree (the result does not depend on the order).
#[inline(always)]
fn ext_row<T: FloatIn, const MAX: bool>(x: &[T]) -> T::W {
    if std::mem::size_of::<T::W>() == 4 {
        ext_row_l::<T, MAX, 64, 16>(x)
    } else {
        ext_row_l::<T, MAX, 32, 8>(x)
    }
}

/// The lanes run a plain compare-select (one `vmaxps`), which drops NaN; a second
/// accumulator sums `x - x` (0, or NaN for a NaN or an infinity), and only a row where that
/// sum is NaN is searched for a NaN. The NaN-aware step costs four instructions an element,
/// this one three independent ones.
#[inline(always)]
fn ext_row_l<T: FloatIn, const MAX: bool, const L: usize, const Q: usize>(x: &[T]) -> T::W {
    let r = ExtF::<T, MAX>(pd());
    let zero = <T::W as num_traits::Zero>::zero();
    let mut m = [r.init(); L];
    let mut u = [zero; L];
    macro_rules! lanes {
        ($c:expr, $n:expr) => {
            for i in 0..$n {
                let v = $c[i].wide();
                let b = if MAX { v > m[i] } else { v < m[i] };
                m[i] = if b { v } else { m[i] };
                u[i] = u[i] + (v - v);
            }
        };
    }
    let mut chunks = x.chunks_exact(L);
    for c in &mut chunks {
        lanes!(c, L);
    }
    let mut tail = chunks.remainder().chunks_exact(Q);
    for c in &mut tail {
        lanes!(c, Q);
    }
    // Lanes merged by halves (vector operations, not L scalar steps).
    let mut w = L;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            m[i] = r.merge(m[i], m[i + w]);
            u[i] = u[i] + u[i + w];
        }
    }
    let (mut s, nonfinite) = (m[0], u[0]);
    for v in tail.remainder() {
        s = r.step(s, *v);
    }
    if Float::is_nan(nonfinite) && x.iter().fold(false, |b, v| b | Float::is_nan(v.wide())) {
        return <T::W as Float>::nan();
    }
    s
}

/// Integer maximum or minimum.
#[derive(Copy, Clone)]
struct ExtI<T, const MAX: bool>(T);
impl<T: Element + PartialOrd, const MAX: bool> Reducer for ExtI<T, MAX> {
    type In = T;
    type Acc = T;
    #[inline(always)]
    fn init(self) -> T {
        self.0
    }
    #[inline(always)]
    fn step(self, a: T, x: T) -> T {
        self.merge(a, x)
    }
    #[inline(always)]
    fn merge(self, a: T, x: T) -> T {
        if (MAX && x > a) || (!MAX && x < a) {
            x
        } else {
            a
        }
    }
}

/// `all` (`ALL`) or `any` of nonzero elements.
#[derive(Copy, Clone)]
struct Logic<T, const ALL: bool>(std::marker::PhantomData<T>);
impl<T: Element, const ALL: bool> Reducer for Logic<T, ALL> {
    type In = T;
    type Acc = bool;
    #[inline(always)]
    fn init(self) -> bool {
        ALL
    }
    #[inline(always)]
    fn step(self, a: bool, x: T) -> bool {
        if ALL {
            a & x.nonzero()
        } else {
            a | x.nonzero()
        }
    }
    #[inline(always)]
    fn merge(self, a: bool, b: bool) -> bool {
        if ALL {
            a & b
        } else {
            a | b
        }
    }
}

/// Number of nonzero elements.
#[derive(Copy, Clone)]
struct CountNz<T>(std::marker::PhantomData<T>);
impl<T: Element> Reducer for CountNz<T> {
    type In = T;
    type Acc = i64;
    #[inline(always)]
    fn init(self) -> i64 {
        0
    }
    #[inline(always)]
    fn step(self, a: i64, x: T) -> i64 {
        a + x.nonzero() as i64
    }
    #[inline(always)]
    fn merge(self, a: i64, b: i64) -> i64 {
        a + b
    }
    /// A plain `u32` sum of the compares, which the loop vectoriser turns into 32-bit lanes
    /// (the 64-bit accumulators of the tree halved the vector width: 0.5x NumPy at every
    /// size; 32 explicit lanes were vectorised across chunks, with gathers, 0.6x), in
    /// blocks short enough that no count overflows; an integer count is exact in any order.
    #[inline(always)]
    fn row_fast(self, x: &[T]) -> Option<i64> {
        Some(
            x.chunks(1 << 30)
                .map(|b| i64::from(b.iter().map(|v| u32::from(v.nonzero())).sum::<u32>()))
                .sum(),
        )
    }
}

fn pd<T>() -> std::marker::PhantomData<T> {
    std::marker::PhantomData
}

/// Lane-wise reduction of at most a few blocks (the leaf of the pairwise tree).
#[inline(always)]
fn leaf<R: Reducer>(r: R, x: &[R::In]) -> R::Acc {
    let mut acc = [r.init(); LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            acc[i] = r.step(acc[i], c[i]);
        }
    }
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] = r.merge(acc[i], acc[i + w]);
        }
    }
    let mut s = acc[0];
    for v in chunks.remainder() {
        s = r.step(s, *v);
    }
    s
}

/// A contiguous row: blocks reduced lane-wise, block partials combined pairwise (a
/// binary-counter cascade, iterative so that it inlines into the SIMD variant).
#[inline(always)]
pub(super) fn row<R: Reducer>(r: R, x: &[R::In]) -> R::Acc {
    if let Some(v) = r.row_fast(x) {
        return v;
    }
    if x.len() <= BLOCK {
        return leaf(r, x);
    }
    // stack[i] holds the partial of 2^levels[i] blocks; at most 64 levels.
    let mut stack = [r.init(); 64];
    let mut levels = [0u32; 64];
    let mut top = 0usize;
    for b in x.chunks(BLOCK) {
        let mut p = leaf(r, b);
        let mut lvl = 0u32;
        while top > 0 && levels[top - 1] == lvl {
            top -= 1;
            p = r.merge(stack[top], p);
            lvl += 1;
        }
        stack[top] = p;
        levels[top] = lvl;
        top += 1;
    }
    let mut s = stack[top - 1];
    for i in (0..top - 1).rev() {
        s = r.merge(stack[i], s);
    }
    s
}

simd::kernel! {
    /// [`row`], compiled for the CPU's vector unit.
    pub(super) fn row_k[R: Reducer](r: R, x: &[R::In]) -> R::Acc where [] {
        row(r, x)
    }
}

simd::kernel! {
    /// `out[i]` = the reduction of row `i` (rows of `l` elements).
    fn rows_k[R: Reducer](r: R, out: &mut [R::Acc], x: &[R::In], l: usize) where [] {
        for (slot, c) in out.iter_mut().zip(x.chunks_exact(l)) {
            *slot = row(r, c);
        }
    }
}

simd::kernel! {
    /// Adds the rows at `base + red[..]` (in rows of `l`), columns `c0..c1`, into `acc`.
    fn accumulate_k[R: Reducer](r: R, acc: &mut [R::Acc], x: &[R::In], red: &[usize], base: usize, l: usize, c0: usize, c1: usize) where [] {
        for &ro in red {
            let s = (base + ro) * l;
            accumulate(r, acc, &x[s + c0..s + c1]);
        }
    }
}

/// [`row`] with a long row split into fixed chunks across threads.
pub(super) fn row_par<R: Reducer>(r: R, x: &[R::In]) -> R::Acc {
    row_par_from(r, x, PAR_MIN_MEM)
}

/// [`row_par`] from `min` elements, in chunks of `min / 4` (fixed, so the partials and their
/// rounding do not depend on the thread count): a smaller `min` for compute-bound steps (an
/// exp-sum), so two threads share a row of a few hundred thousand elements.
pub(super) fn row_par_from<R: Reducer>(r: R, x: &[R::In], min: usize) -> R::Acc {
    if x.len() < min {
        return row_k(r, x);
    }
    let chunk = (min / 4).max(1);
    let mut parts = vec![r.init(); x.len().div_ceil(chunk)];
    par_rows(&mut parts, 1, x, chunk, 1, |_, o, xs| {
        for (p, c) in o.iter_mut().zip(xs.chunks(chunk)) {
            *p = row_k(r, c);
        }
    });
    row_k(Merge(r), &parts)
}

/// `acc[j] = step(acc[j], x[j])`.
#[inline(always)]
fn accumulate<R: Reducer>(r: R, acc: &mut [R::Acc], x: &[R::In]) {
    for (a, v) in acc.iter_mut().zip(x) {
        *a = r.step(*a, *v);
    }
}

/// Coalesced runs `(length, reduced)` of `shape` for reducing `axes` (sorted).
pub(super) fn runs(shape: &[usize], axes: &[usize]) -> Vec<(usize, bool)> {
    let mut v: Vec<(usize, bool)> = Vec::new();
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 {
            continue;
        }
        let red = axes.binary_search(&i).is_ok();
        match v.last_mut() {
            Some((n, r)) if *r == red => *n *= d,
            _ => v.push((d, red)),
        }
    }
    v
}

fn vec_of<T: Element>(n: usize, v: T, op: &str) -> Result<Vec<T>> {
    let mut out = alloc_for::<T>(n, op, &[n])?;
    out.resize(n, v);
    Ok(out)
}

/// Reduces a C-order buffer laid out as `runs` (with at least one reduced run) to its
/// accumulators, one per output element in C order.
fn reduce_runs<R: Reducer>(
    r: R,
    x: &[R::In],
    runs: &[(usize, bool)],
    op: &str,
) -> Result<Vec<R::Acc>>
where
    R::Acc: Element,
{
    let n = x.len();
    let out_n: usize = runs
        .iter()
        .filter(|(_, red)| !red)
        .map(|(d, _)| d)
        .product();
    if n == 0 {
        return vec_of(out_n, r.init(), op);
    }
    let Some(&(last, last_red)) = runs.last() else {
        // Every axis has size 1: one element.
        return vec_of(1, r.step(r.init(), x[0]), op);
    };
    if last_red {
        let nrows = n / last;
        let part = if nrows == 1 {
            vec_of(1, row_par(r, x), op)?
        } else if n >= PAR_MIN_MEM {
            let per = (PAR_MIN_MEM / last).max(1);
            let mut buf = vec_of(nrows, r.init(), op)?;
            par_rows(&mut buf, 1, x, last, per, |_, o, xs| rows_k(r, o, xs, last));
            buf
        } else {
            let mut part = vec_of(nrows, r.init(), op)?;
            rows_k(r, &mut part, x, last);
            part
        };
        let rest = &runs[..runs.len() - 1];
        if rest.iter().all(|(_, red)| !red) {
            return Ok(part);
        }
        return columns(Merge(r), &part, rest, op);
    }
    columns(r, x, runs, op)
}

/// The column kernel: `runs` ends in a kept run of length `l`; every reduced index adds
/// its row into the output row of its kept index.
fn columns<R: Reducer>(r: R, x: &[R::In], runs: &[(usize, bool)], op: &str) -> Result<Vec<R::Acc>>
where
    R::Acc: Element,
{
    let l = runs[runs.len() - 1].0;
    let outer = &runs[..runs.len() - 1];
    // Strides of the outer runs, in rows of length l.
    let mut strides = vec![0usize; outer.len()];
    let mut s = 1;
    for i in (0..outer.len()).rev() {
        strides[i] = s;
        s *= outer[i].0;
    }
    let offsets = |want_red: bool| -> Vec<usize> {
        let mut offs = vec![0usize];
        for (i, &(d, red)) in outer.iter().enumerate() {
            if red == want_red {
                let st = strides[i];
                offs = offs
                    .iter()
                    .flat_map(|o| (0..d).map(move |k| o + k * st))
                    .collect();
            }
        }
        offs
    };
    let (kept, red) = (offsets(false), offsets(true));
    let o_rows = kept.len();
    let mut out = vec_of(o_rows * l, r.init(), op)?;
    let work = x.len();
    let one_row = |acc: &mut [R::Acc], base: usize, c0: usize, c1: usize| {
        accumulate_k(r, acc, x, &red, base, l, c0, c1)
    };
    if work < PAR_MIN_MEM {
        for (o, acc) in out.chunks_mut(l).enumerate() {
            one_row(acc, kept[o], 0, l);
        }
    } else if o_rows >= 2 {
        // Output rows in groups of about PAR_MIN_MEM elements of work.
        let per = (PAR_MIN_MEM / (l * red.len()).max(1)).max(1);
        par_rows(&mut out, l, &kept, 1, per, |first, group, _| {
            for (i, acc) in group.chunks_mut(l).enumerate() {
                one_row(acc, kept[first + i], 0, l);
            }
        });
    } else if l >= 1024 {
        // One output row: split its columns into stripes.
        let w = (l / 8).next_multiple_of(64).max(256);
        out.par_chunks_mut(w).enumerate().for_each(|(ci, acc)| {
            let c0 = ci * w;
            one_row(acc, 0, c0, c0 + acc.len())
        });
    } else {
        // A narrow output row and many reduced rows: fixed blocks of rows, partial rows
        // merged in block order.
        let per = (PAR_MIN_MEM / l).max(1);
        let parts: Vec<Vec<R::Acc>> = red
            .par_chunks(per)
            .map(|rows| {
                let mut acc = vec![r.init(); l];
                accumulate_k(r, &mut acc, x, rows, 0, l, 0, l);
                acc
            })
            .collect();
        for p in parts {
            accumulate_k(Merge(r), &mut out, &p, &[0], 0, l, 0, l);
        }
    }
    Ok(out)
}

/// The input as a C-order slice (copied only if it is not one already).
fn c_order<'a, T: Clone>(a: &'a ArrayViewD<'_, T>) -> Cow<'a, [T]> {
    match a.as_slice() {
        Some(s) => Cow::Borrowed(s),
        None => Cow::Owned(a.iter().cloned().collect()),
    }
}

fn out_shape(shape: &[usize], axes: &[usize], keepdims: bool) -> Vec<usize> {
    (0..shape.len())
        .filter_map(|i| {
            if axes.contains(&i) {
                keepdims.then_some(1)
            } else {
                Some(shape[i])
            }
        })
        .collect()
}

/// Runs reducer `r` over `a` and maps each accumulator through `finish`.
fn run_reduce<R, U>(
    r: R,
    a: &ArrayViewD<'_, R::In>,
    axes: &[usize],
    keepdims: bool,
    op: &str,
    finish: impl Fn(R::Acc) -> U + Sync,
) -> Result<ArrayD<U>>
where
    R: Reducer,
    R::Acc: Element,
    U: Element,
{
    let x = c_order(a);
    let acc = reduce_runs(r, &x, &runs(a.shape(), axes), op)?;
    let shape = out_shape(a.shape(), axes, keepdims);
    let mut v = alloc_for::<U>(acc.len(), op, &shape)?;
    v.extend(acc.into_iter().map(finish));
    super::elementwise::shaped(&shape, v)
}

fn empty_extreme(op: ReduceOp) -> KilnError {
    KilnError::invalid(
        if op == ReduceOp::Max { "max" } else { "min" },
        "zero-size reduction has no identity; pass `initial` or reduce a non-empty axis",
    )
}

/// Whether reducing `axes` of `shape` reduces over an empty axis.
fn reduces_empty(shape: &[usize], axes: &[usize]) -> bool {
    axes.iter().any(|&a| shape[a] == 0)
}

fn float_reduce<T: FloatIn + Element + HostElement>(
    op: ReduceOp,
    a: &ArrayViewD<'_, T>,
    axes: &[usize],
    keepdims: bool,
) -> Result<Option<ArrayData>> {
    let name = "reduce";
    Ok(Some(match op {
        ReduceOp::Sum => T::wrap(run_reduce(
            SumF::<T>(pd()),
            a,
            axes,
            keepdims,
            "sum",
            T::round_f64,
        )?),
        ReduceOp::Max => T::wrap(run_reduce(
            ExtF::<T, true>(pd()),
            a,
            axes,
            keepdims,
            "max",
            T::narrow,
        )?),
        ReduceOp::Min => T::wrap(run_reduce(
            ExtF::<T, false>(pd()),
            a,
            axes,
            keepdims,
            "min",
            T::narrow,
        )?),
        ReduceOp::All => ArrayData::Bool(run_reduce(
            Logic::<T, true>(pd()),
            a,
            axes,
            keepdims,
            name,
            |b| b,
        )?),
        ReduceOp::Any => ArrayData::Bool(run_reduce(
            Logic::<T, false>(pd()),
            a,
            axes,
            keepdims,
            name,
            |b| b,
        )?),
        ReduceOp::Prod if matches!(T::DTYPE, DType::Float32 | DType::Float64) => T::wrap(
            run_reduce(Fold::<T, true>(pd()), a, axes, keepdims, "prod", |p| p)?,
        ),
        ReduceOp::Prod => return Ok(None),
    }))
}

macro_rules! int_reduce {
    ($a:expr, $T:ty, $op:expr, $axes:expr, $keep:expr) => {{
        let (a, axes, keep) = ($a, $axes, $keep);
        Some(match $op {
            ReduceOp::Sum => <$T>::wrap(run_reduce(
                Fold::<$T, false>(pd()),
                a,
                axes,
                keep,
                "sum",
                |p| p,
            )?),
            ReduceOp::Prod => <$T>::wrap(run_reduce(
                Fold::<$T, true>(pd()),
                a,
                axes,
                keep,
                "prod",
                |p| p,
            )?),
            ReduceOp::Max => <$T>::wrap(run_reduce(
                ExtI::<$T, true>(<$T>::MIN),
                a,
                axes,
                keep,
                "max",
                |p| p,
            )?),
            ReduceOp::Min => <$T>::wrap(run_reduce(
                ExtI::<$T, false>(<$T>::MAX),
                a,
                axes,
                keep,
                "min",
                |p| p,
            )?),
            ReduceOp::All => ArrayData::Bool(run_reduce(
                Logic::<$T, true>(pd()),
                a,
                axes,
                keep,
                "all",
                |b| b,
            )?),
            ReduceOp::Any => ArrayData::Bool(run_reduce(
                Logic::<$T, false>(pd()),
                a,
                axes,
                keep,
                "any",
                |b| b,
            )?),
        })
    }};
}

/// The fast kernels for `op` on `d`, or `None` where only the reference path has it
/// (complex, bool arithmetic, half-type products).
pub(super) fn reduce_fast(
    op: ReduceOp,
    d: &ArrView<'_>,
    axes: &[usize],
    keepdims: bool,
) -> Result<Option<ArrayData>> {
    if matches!(op, ReduceOp::Max | ReduceOp::Min)
        && reduces_empty(&super::with_view!(d, a, _T => a.shape().to_vec()), axes)
    {
        return Err(empty_extreme(op));
    }
    Ok(match d {
        ArrView::F32(a) => float_reduce(op, a, axes, keepdims)?,
        ArrView::F64(a) => float_reduce(op, a, axes, keepdims)?,
        ArrView::F16(a) => float_reduce(op, a, axes, keepdims)?,
        ArrView::BF16(a) => float_reduce(op, a, axes, keepdims)?,
        ArrView::I8(a) => int_reduce!(a, i8, op, axes, keepdims),
        ArrView::I16(a) => int_reduce!(a, i16, op, axes, keepdims),
        ArrView::I32(a) => int_reduce!(a, i32, op, axes, keepdims),
        ArrView::I64(a) => int_reduce!(a, i64, op, axes, keepdims),
        ArrView::U8(a) => int_reduce!(a, u8, op, axes, keepdims),
        ArrView::U16(a) => int_reduce!(a, u16, op, axes, keepdims),
        ArrView::U32(a) => int_reduce!(a, u32, op, axes, keepdims),
        ArrView::U64(a) => int_reduce!(a, u64, op, axes, keepdims),
        ArrView::Bool(a) => match op {
            ReduceOp::All => Some(ArrayData::Bool(run_reduce(
                Logic::<bool, true>(pd()),
                a,
                axes,
                keepdims,
                "all",
                |b| b,
            )?)),
            ReduceOp::Any => Some(ArrayData::Bool(run_reduce(
                Logic::<bool, false>(pd()),
                a,
                axes,
                keepdims,
                "any",
                |b| b,
            )?)),
            _ => None,
        },
        _ => None,
    })
}

/// The layouts the two-pass fused reductions (var, std, logsumexp) handle: every reduced
/// axis inside one run.
enum TwoPass {
    /// `[.., kept] + [reduced l]`: each row is one output element.
    Rows(usize),
    /// `[kept k?] + [reduced r] + [kept l]`.
    Cols { k: usize, r: usize, l: usize },
}

fn two_pass(runs: &[(usize, bool)]) -> Option<TwoPass> {
    match runs {
        [.., (l, true)] if runs[..runs.len() - 1].iter().all(|(_, red)| !red) => {
            Some(TwoPass::Rows(*l))
        }
        [(r, true), (l, false)] => Some(TwoPass::Cols { k: 1, r: *r, l: *l }),
        [(k, false), (r, true), (l, false)] => Some(TwoPass::Cols {
            k: *k,
            r: *r,
            l: *l,
        }),
        _ => None,
    }
}

simd::kernel! {
    /// Two-pass reductions of rows of `l` into `out` (one element per row).
    fn two_pass_rows[T: Copy, R1: Reducer<In = T>, R2: Reducer<In = T, Acc = f64>, S: Fn(R1::Acc) -> f64, M: Fn(f64) -> R2, F: Fn(f64, f64) -> T](out: &mut [T], x: &[T], l: usize, first: R1, stat: S, second: M, finish: F) where [] {
        for (slot, c) in out.iter_mut().zip(x.chunks_exact(l)) {
            let m = stat(row(first, c));
            *slot = finish(m, row(second(m), c));
        }
    }
}

simd::kernel! {
    /// Two-pass reductions over the rows (of `l`) of one block `x`, one output per column.
    /// Columns `c0..c0 + dst.len()` only (a stripe, where one block is split across threads).
    fn two_pass_cols[T: Copy, R1: Reducer<In = T>, R2: Reducer<In = T, Acc = f64>, S: Fn(R1::Acc) -> f64, M: Fn(f64) -> R2, F: Fn(f64, f64) -> T](dst: &mut [T], x: &[T], l: usize, c0: usize, first: R1, stat: S, second: M, finish: F) where [] {
        let w = dst.len();
        let mut acc1 = vec![first.init(); w];
        let mut acc2 = vec![0f64; w];
        for xr in x.chunks_exact(l) {
            accumulate(first, &mut acc1, &xr[c0..c0 + w]);
        }
        let m: Vec<f64> = acc1.iter().map(|a| stat(*a)).collect();
        let rs: Vec<R2> = m.iter().map(|mj| second(*mj)).collect();
        for xr in x.chunks_exact(l) {
            for ((a, v), rj) in acc2.iter_mut().zip(&xr[c0..c0 + w]).zip(&rs) {
                *a = rj.step(*a, *v);
            }
        }
        for ((d, s), mj) in dst.iter_mut().zip(&acc2).zip(&m) {
            *d = finish(*mj, *s);
        }
    }
}

/// Per output element: the first pass's statistic (mean, or max), then the second pass's
/// sum over `make(stat)`, finished by `finish(stat, sum)`.
#[allow(clippy::too_many_arguments)]
fn two_pass_run<T, R1, R2>(
    a: &ArrayViewD<'_, T>,
    axes: &[usize],
    keepdims: bool,
    op: &str,
    par_min: usize,
    first: R1,
    stat: impl Fn(R1::Acc) -> f64 + Sync + Copy,
    second: impl Fn(f64) -> R2 + Sync + Copy,
    finish: impl Fn(f64, f64) -> T + Sync + Copy,
) -> Result<Option<ArrayData>>
where
    T: Element + HostElement,
    R1: Reducer<In = T>,
    R1::Acc: Element,
    R2: Reducer<In = T, Acc = f64>,
{
    let rs = runs(a.shape(), axes);
    let n = a.len();
    let Some(layout) = two_pass(&rs) else {
        return Ok(None);
    };
    if n == 0 {
        return Ok(None);
    }
    let x = c_order(a);
    let shape = out_shape(a.shape(), axes, keepdims);
    let out = match layout {
        TwoPass::Rows(l) => {
            let rows = n / l;
            let mut v = vec_of(rows, T::zero(), op)?;
            if n >= par_min && rows >= 2 {
                let per = (par_min / l).max(1);
                par_rows(&mut v, 1, &x, l, per, |_, o, c| {
                    two_pass_rows(o, c, l, first, stat, second, finish)
                });
            } else if rows == 1 {
                let m = stat(row_par(first, &x));
                v[0] = finish(m, row_par_from(second(m), &x, par_min));
            } else {
                two_pass_rows(&mut v, &x, l, first, stat, second, finish);
            }
            v
        }
        TwoPass::Cols { k, r, l } => {
            let block = |o: usize, c0: usize, dst: &mut [T]| {
                let base = o * r * l;
                two_pass_cols(
                    dst,
                    &x[base..base + r * l],
                    l,
                    c0,
                    first,
                    stat,
                    second,
                    finish,
                )
            };
            let mut v = vec_of(k * l, T::zero(), op)?;
            if n >= par_min && k >= 2 {
                par_rows(&mut v, l, &x, r * l, 1, |first, d, _| {
                    for (i, di) in d.chunks_mut(l).enumerate() {
                        block(first + i, 0, di);
                    }
                });
            } else if n >= par_min && l >= 128 {
                // One block: its columns in stripes of whole 64-column groups.
                let w = crate::hostmem::balanced_chunk(l, l.div_ceil(2), 64);
                crate::hostmem::par_each(v.chunks_mut(w).collect(), |i, d| block(0, i * w, d));
            } else {
                for (o, d) in v.chunks_mut(l).enumerate() {
                    block(o, 0, d);
                }
            }
            v
        }
    };
    Ok(Some(T::wrap(super::elementwise::shaped(&shape, out)?)))
}

fn fused_float<T>(
    op: FusedReduce,
    a: &ArrayViewD<'_, T>,
    axes: &[usize],
    keepdims: bool,
) -> Result<Option<ArrayData>>
where
    T: FloatIn + Element + HostElement,
    T::W: super::arith::FloatMath,
{
    let count: f64 = axes.iter().map(|&i| a.shape()[i] as f64).product();
    let sum = SumF::<T>(pd());
    match op {
        FusedReduce::Mean => Ok(Some(T::wrap(run_reduce(
            sum,
            a,
            axes,
            keepdims,
            "mean",
            |s| T::round_f64(s / count),
        )?))),
        FusedReduce::Var | FusedReduce::Std => {
            let std = op == FusedReduce::Std;
            two_pass_run(
                a,
                axes,
                keepdims,
                if std { "std" } else { "var" },
                PAR_MIN_MEM,
                sum,
                move |s| s / count,
                |m| SqDev::<T>(m, pd()),
                move |_, s| {
                    let v = s / count;
                    T::round_f64(if std { v.sqrt() } else { v })
                },
            )
        }
        FusedReduce::LogSumExp => {
            let wide = |m: f64| -> T::W { num_traits::NumCast::from(m).unwrap_or(T::W::nan()) };
            two_pass_run(
                a,
                axes,
                keepdims,
                "logsumexp",
                // exp is compute-bound: threads pay from fewer elements.
                crate::hostmem::PAR_MIN,
                ExtF::<T, true>(pd()),
                |m: T::W| {
                    let m = num_traits::ToPrimitive::to_f64(&m).unwrap_or(f64::NAN);
                    // An all -inf (or +inf) slice would give inf - inf; shift by 0 there.
                    if m.is_infinite() {
                        0.0
                    } else {
                        m
                    }
                },
                move |m| SumExp::<T>(wide(m)),
                |m, s| T::round_f64(s.ln() + m),
            )
        }
        FusedReduce::CountNonzero => count_nonzero(a, axes, keepdims),
    }
}

fn count_nonzero<T: Element>(
    a: &ArrayViewD<'_, T>,
    axes: &[usize],
    keepdims: bool,
) -> Result<Option<ArrayData>> {
    Ok(Some(ArrayData::I64(run_reduce(
        CountNz::<T>(pd()),
        a,
        axes,
        keepdims,
        "count_nonzero",
        |c| c,
    )?)))
}

/// The fused reductions (`Ok(None)`: compose them from primitives instead).
pub(super) fn reduce_fused(
    op: FusedReduce,
    d: &ArrView<'_>,
    axes: &[usize],
    keepdims: bool,
) -> Result<Option<ArrayData>> {
    match d {
        ArrView::F32(a) => fused_float(op, a, axes, keepdims),
        ArrView::F64(a) => fused_float(op, a, axes, keepdims),
        ArrView::F16(a) => fused_float(op, a, axes, keepdims),
        ArrView::BF16(a) => fused_float(op, a, axes, keepdims),
        _ if op == FusedReduce::CountNonzero && !super::dtype_of(d).is_complex() => {
            super::with_view!(d, a, _T => count_nonzero(a, axes, keepdims))
        }
        _ => Ok(None),
    }
}

/// Index of the extreme value along `axis` (first occurrence; NaN wins), as int64.
pub(super) fn arg_fast(op: ArgOp, d: &ArrView<'_>, axis: usize) -> Result<Option<ArrayData>> {
    fn go<T: FloatIn + SimdArg>(
        op: ArgOp,
        a: &ArrayViewD<'_, T>,
        axis: usize,
    ) -> Result<ArrayData> {
        let key = |v: T| v.wide();
        let nan = |w: T::W| Float::is_nan(w);
        let fast = T::row_kernel(op == ArgOp::ArgMax);
        if op == ArgOp::ArgMax {
            let ext = ExtF::<T, true>(pd());
            arg_layout(a, axis, "argmax", ext, key, |x, b| x > b, nan, fast)
        } else {
            let ext = ExtF::<T, false>(pd());
            arg_layout(a, axis, "argmin", ext, key, |x, b| x < b, nan, fast)
        }
    }
    fn goi<T: Element + PartialOrd + num_traits::Bounded>(
        op: ArgOp,
        a: &ArrayViewD<'_, T>,
        axis: usize,
    ) -> Result<ArrayData> {
        let (key, nan) = (|v: T| v, |_: T| false);
        if op == ArgOp::ArgMax {
            let ext = ExtI::<T, true>(T::min_value());
            arg_layout(a, axis, "argmax", ext, key, |x: T, b: T| x > b, nan, None)
        } else {
            let ext = ExtI::<T, false>(T::max_value());
            arg_layout(a, axis, "argmin", ext, key, |x: T, b: T| x < b, nan, None)
        }
    }
    Ok(Some(match d {
        ArrView::F32(a) => go(op, a, axis)?,
        ArrView::F64(a) => go(op, a, axis)?,
        ArrView::F16(a) => go(op, a, axis)?,
        ArrView::BF16(a) => go(op, a, axis)?,
        ArrView::I8(a) => goi(op, a, axis)?,
        ArrView::I16(a) => goi(op, a, axis)?,
        ArrView::I32(a) => goi(op, a, axis)?,
        ArrView::I64(a) => goi(op, a, axis)?,
        ArrView::U8(a) => goi(op, a, axis)?,
        ArrView::U16(a) => goi(op, a, axis)?,
        ArrView::U32(a) => goi(op, a, axis)?,
        ArrView::U64(a) => goi(op, a, axis)?,
        _ => return Ok(None),
    }))
}

/// argmax/argmin of a row in one pass: the extreme of each `W`-element chunk by the
/// vectorised reducer `ext` (NaN-propagating), the chunk where the running extreme last
/// strictly improved (`gt`, so the first occurrence wins), then the first hit in that chunk
/// (in L1). A chunk whose extreme is NaN holds the answer: its first NaN (NumPy's rule).
/// The two-pass search read the row twice (0.43x NumPy's one-pass loop at [256, 784]); lanes
/// tracking their own index did it in one pass but only where LLVM's SLP vectoriser kept the
/// lanes in registers, which it did in a standalone build and not inside the engine (86 us
/// on one thread for that shape, scalar compares and `cmov`s). float32 and float64 rows
/// take the explicit AVX-512 kernel of [`super::arg_avx512`] where the CPU has it.
#[inline(always)]
fn arg_chunked<T: Copy, R: Reducer<In = T>>(
    ext: R,
    c: &[T],
    gt: impl Fn(R::Acc, R::Acc) -> bool,
    nan: impl Fn(R::Acc) -> bool,
    hit: impl Fn(T, R::Acc) -> bool + Copy,
) -> usize {
    const W: usize = 512;
    let chunks = c.chunks(W).enumerate().map(|(ci, ch)| (row(ext, ch), ci));
    let Some((m, ci)) = first_best(chunks, gt, nan) else {
        return 0;
    };
    let start = ci * W;
    let end = (start + W).min(c.len());
    start + arg_find(&c[start..end], m, hit).unwrap_or(0)
}

/// The first best of `(extreme, position)` candidates taken in order: a strictly greater
/// one (`gt`) replaces it, so a tie keeps the earlier; a NaN one ends the search (NumPy's
/// first NaN). Combines the chunks of a row and the threads' pieces of a long row alike.
#[inline(always)]
fn first_best<A: Copy>(
    mut candidates: impl Iterator<Item = (A, usize)>,
    gt: impl Fn(A, A) -> bool,
    nan: impl Fn(A) -> bool,
) -> Option<(A, usize)> {
    let mut best = candidates.next()?;
    if nan(best.0) {
        return Some(best);
    }
    for c in candidates {
        if nan(c.0) {
            return Some(c);
        }
        if gt(c.0, best.0) {
            best = c;
        }
    }
    Some(best)
}

/// The first position in `c` where `hit(v, m)`. Whether a 256-element chunk holds a hit is a
/// vectorised OR of compares; in the chunk that does, a bit per element of each 32 (one
/// compare and mask move) and the lowest set bit give the position.
#[inline(always)]
fn arg_find<T: Copy, A: Copy>(c: &[T], m: A, hit: impl Fn(T, A) -> bool) -> Option<usize> {
    const W: usize = 256;
    const B: usize = 32;
    for (ci, ch) in c.chunks(W).enumerate() {
        if ch.iter().fold(false, |b, v| b | hit(*v, m)) {
            for (bi, bl) in ch.chunks(B).enumerate() {
                let bits = bl
                    .iter()
                    .enumerate()
                    .fold(0u32, |b, (j, v)| b | (u32::from(hit(*v, m)) << j));
                if bits != 0 {
                    return Some(ci * W + bi * B + bits.trailing_zeros() as usize);
                }
            }
        }
    }
    None
}

/// Arg-reduction along one axis, ordering values by their `key` with the strict `gt` (the
/// first occurrence wins) and a `nan` key beating every other (NumPy's rule). Rows (the
/// axis innermost): one pass of chunk extremes by the vectorised reducer `ext`, then the
/// first hit in the winning chunk ([`arg_chunked`]), or the one-pass row kernel `fast`
/// where the CPU has one for `T` ([`super::arg_avx512`]). Columns: a running best value
/// and index per output column.
#[allow(clippy::too_many_arguments)]
fn arg_layout<T, R>(
    a: &ArrayViewD<'_, T>,
    axis: usize,
    name: &str,
    ext: R,
    key: impl Fn(T) -> R::Acc + Copy + Sync,
    gt: impl Fn(R::Acc, R::Acc) -> bool + Copy + Sync,
    nan: impl Fn(R::Acc) -> bool + Copy + Sync,
    fast: Option<RowArg<T>>,
) -> Result<ArrayData>
where
    T: Copy + Send + Sync,
    R: Reducer<In = T>,
    R::Acc: PartialEq,
{
    let better = move |x: R::Acc, b: R::Acc| gt(x, b) || (nan(x) && !nan(b));
    // Branch-free, so the search vectorises: equal to the extreme, or NaN when it is.
    let hit = move |v: T, m: R::Acc| {
        let w = key(v);
        (w == m) | (nan(m) & nan(w))
    };
    let shape = a.shape();
    let r = shape[axis];
    if r == 0 {
        return Err(KilnError::invalid(
            name,
            "attempt to get the arg-extreme of an empty axis",
        ));
    }
    let k: usize = shape[..axis].iter().product();
    let l: usize = shape[axis + 1..].iter().product();
    let oshape: Vec<usize> = shape
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != axis)
        .map(|(_, d)| *d)
        .collect();
    let x = c_order(a);
    let mut out = vec_of(k * l, 0i64, name)?;
    if k * l == 0 {
        return Ok(ArrayData::I64(super::elementwise::shaped(&oshape, out)?));
    }
    if l == 1 {
        simd::kernel! {
            fn arg_rows[T: Copy, R: Reducer<In = T>, H: Fn(T, R::Acc) -> bool + Copy, G: Fn(R::Acc, R::Acc) -> bool + Copy, N: Fn(R::Acc) -> bool + Copy](out: &mut [i64], x: &[T], r: usize, ext: R, hit: H, gt: G, nan: N) where [] {
                for (slot, c) in out.iter_mut().zip(x.chunks_exact(r)) {
                    *slot = arg_chunked(ext, c, gt, nan, hit) as i64;
                }
            }
        }
        let rows = |o: &mut [i64], xs: &[T]| match fast {
            Some(f) => {
                for (slot, c) in o.iter_mut().zip(xs.chunks_exact(r)) {
                    *slot = f(c) as i64;
                }
            }
            None => arg_rows(o, xs, r, ext, hit, gt, nan),
        };
        // The portable row kernel is compute-bound (a compare-select and a NaN check an
        // element); the one-pass kernel runs at memory speed, so threads pay later.
        let par_min = match fast {
            Some(_) => PAR_MIN_MEM,
            None => crate::hostmem::PAR_MIN,
        };
        if x.len() >= par_min && k >= 2 {
            let per = (par_min / r).max(1);
            par_rows(&mut out, 1, &x, r, per, |_, o, xs| rows(o, xs));
        } else if k == 1 && x.len() >= par_min {
            // One long row: each thread's pieces give (extreme, position), combined in order
            // by `first_best`. Equal pieces of a multiple of the chunk length, the calling
            // thread taking its share.
            simd::kernel! {
                fn arg_piece[T: Copy, R: Reducer<In = T>, H: Fn(T, R::Acc) -> bool + Copy, G: Fn(R::Acc, R::Acc) -> bool + Copy, N: Fn(R::Acc) -> bool + Copy](c: &[T], ext: R, hit: H, gt: G, nan: N) -> (R::Acc, usize) where [] {
                    let p = arg_chunked(ext, c, gt, nan, hit);
                    (ext.step(ext.init(), c[p]), p)
                }
            }
            let piece = crate::hostmem::balanced_chunk(x.len(), par_min, 512);
            // One entry per 32K+ input elements: small next to the input.
            let mut pieces = vec![(ext.init(), 0usize); x.len().div_ceil(piece)];
            par_rows(&mut pieces, 1, &x, piece, 1, |_, o, xs| {
                for (slot, c) in o.iter_mut().zip(xs.chunks(piece)) {
                    *slot = match fast {
                        Some(f) => {
                            let p = f(c);
                            (ext.step(ext.init(), c[p]), p)
                        }
                        None => arg_piece(c, ext, hit, gt, nan),
                    };
                }
            });
            let found = pieces
                .iter()
                .enumerate()
                .map(|(i, &(m, p))| (m, i * piece + p));
            out[0] = first_best(found, gt, nan).map_or(0, |b| b.1) as i64;
        } else {
            rows(&mut out, &x);
        }
    } else {
        simd::kernel! {
            fn arg_cols[T: Copy, K: Copy, KF: Fn(T) -> K, B: Fn(K, K) -> bool](idx: &mut [i64], x: &[T], l: usize, key: KF, better: B) where [] {
                let mut best: Vec<K> = x[..l].iter().map(|v| key(*v)).collect();
                for (i, xr) in x.chunks_exact(l).enumerate().skip(1) {
                    for ((b, ix), v) in best.iter_mut().zip(idx.iter_mut()).zip(xr) {
                        let kv = key(*v);
                        let t = better(kv, *b);
                        *b = if t { kv } else { *b };
                        *ix = if t { i as i64 } else { *ix };
                    }
                }
            }
        }
        let block = |o: usize, idx: &mut [i64]| {
            let base = o * r * l;
            arg_cols(idx, &x[base..base + r * l], l, key, better)
        };
        if x.len() >= PAR_MIN_MEM && k >= 2 {
            par_rows(&mut out, l, &x, r * l, 1, |first, d, _| {
                for (i, di) in d.chunks_mut(l).enumerate() {
                    block(first + i, di);
                }
            });
        } else {
            for (o, d) in out.chunks_mut(l).enumerate() {
                block(o, d);
            }
        }
    }
    Ok(ArrayData::I64(super::elementwise::shaped(&oshape, out)?))
}

/// Inclusive scan along `axis` into a fresh buffer (sequential along the axis, as NumPy's;
/// vectorised across the axes after it).
pub(super) fn scan_fast<T: Element + HostElement>(
    op: ScanOp,
    a: &ArrayViewD<'_, T>,
    axis: usize,
) -> Result<ArrayData> {
    let shape = a.shape();
    let r = shape[axis];
    let l: usize = shape[axis + 1..].iter().product();
    let n = a.len();
    let x = c_order(a);
    let name = if op == ScanOp::CumSum {
        "cumsum"
    } else {
        "cumprod"
    };
    let mut out = vec_of(n, T::zero(), name)?;
    if n > 0 {
        let f = move |acc: T, v: T| {
            if op == ScanOp::CumSum {
                acc.add(v)
            } else {
                acc.mul(v)
            }
        };
        simd::kernel! {
            fn scan_k[T: Copy, F: Fn(T, T) -> T](out: &mut [T], x: &[T], r: usize, l: usize, f: F) where [] {
            for (o, blk) in out.chunks_exact_mut(r * l).zip(x.chunks_exact(r * l)) {
                if l == 1 {
                    let mut acc = blk[0];
                    o[0] = acc;
                    for (d, v) in o[1..].iter_mut().zip(&blk[1..]) {
                        acc = f(acc, *v);
                        *d = acc;
                    }
                    continue;
                }
                o[..l].copy_from_slice(&blk[..l]);
                for i in 1..r {
                    let (done, rest) = o.split_at_mut(i * l);
                    let prev = &done[(i - 1) * l..];
                    for ((d, p), v) in rest[..l].iter_mut().zip(prev).zip(&blk[i * l..(i + 1) * l])
                    {
                        *d = f(*p, *v);
                    }
                }
            }
            }
        }
        scan_k(&mut out, &x, r, l, f);
    }
    Ok(T::wrap(super::elementwise::shaped(shape, out)?))
}

/// The reference implementations the kernels are tested against.
pub(super) mod reference {
    use super::super::arith::Arith;
    use super::*;
    use crate::element::cast_elem;

    /// Moves `axes` to the end and returns the data as `[outer, inner]` rows (C order),
    /// with the shape of the kept axes.
    fn rows<T: Clone>(a: &ArrayViewD<'_, T>, axes: &[usize]) -> (Vec<Vec<T>>, Vec<usize>) {
        let nd = a.ndim();
        let kept: Vec<usize> = (0..nd).filter(|i| !axes.contains(i)).collect();
        let mut perm = kept.clone();
        perm.extend_from_slice(axes);
        let p = a.view().permuted_axes(IxDyn(&perm));
        let inner: usize = axes.iter().map(|&i| a.shape()[i]).product();
        let v: Vec<T> = p.iter().cloned().collect();
        let outer: usize = kept.iter().map(|&i| a.shape()[i]).product();
        let rows = if inner == 0 {
            vec![Vec::new(); outer]
        } else {
            v.chunks(inner).map(|c| c.to_vec()).collect()
        };
        (rows, kept.iter().map(|&i| a.shape()[i]).collect())
    }

    /// Pairwise summation (as NumPy does) for accuracy on long rows.
    fn pairwise<T: Element>(x: &[T]) -> T {
        if x.len() <= 128 {
            x.iter().fold(T::zero(), |a, b| a.add(*b))
        } else {
            let mid = (x.len() / 2) & !7;
            pairwise(&x[..mid]).add(pairwise(&x[mid..]))
        }
    }

    fn reduce_row<T: Arith>(op: ReduceOp, r: &[T]) -> Result<Scalar> {
        Ok(match op {
            ReduceOp::Sum => match T::DTYPE {
                // Real floats of up to 32 bits accumulate in f64 (as the kernels do).
                DType::Float16 | DType::BFloat16 | DType::Float32 => {
                    let v: Vec<f64> = r.iter().map(|x| cast_elem::<T, f64>(*x)).collect();
                    Scalar::Float(pairwise(&v))
                }
                _ => pairwise(r).to_scalar(),
            },
            ReduceOp::Prod => r.iter().fold(T::one(), |a, b| a.mul(*b)).to_scalar(),
            ReduceOp::Max | ReduceOp::Min => {
                let first = *r.first().ok_or_else(|| empty_extreme(op))?;
                let f = if op == ReduceOp::Max {
                    T::nan_max
                } else {
                    T::nan_min
                };
                r.iter().fold(first, |a, b| f(a, *b)).to_scalar()
            }
            ReduceOp::All => Scalar::Bool(r.iter().all(|x| x.nonzero())),
            ReduceOp::Any => Scalar::Bool(r.iter().any(|x| x.nonzero())),
        })
    }

    pub(in super::super) fn reduce<T: Arith + HostElement>(
        op: ReduceOp,
        a: &ArrayViewD<'_, T>,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<ArrayData> {
        if matches!(op, ReduceOp::Max | ReduceOp::Min) && reduces_empty(a.shape(), axes) {
            return Err(empty_extreme(op));
        }
        let (m, _) = rows(a, axes);
        let out: Vec<Scalar> = m
            .iter()
            .map(|r| reduce_row::<T>(op, r))
            .collect::<Result<_>>()?;
        let shape = out_shape(a.shape(), axes, keepdims);
        let out_dtype = match op {
            ReduceOp::All | ReduceOp::Any => DType::Bool,
            _ => T::DTYPE,
        };
        Ok(
            crate::with_dtype!(out_dtype, U => U::wrap(super::super::elementwise::shaped(&shape, out.into_iter().map(U::from_scalar).collect())?)),
        )
    }

    pub(in super::super) fn arg<T: Arith>(
        op: ArgOp,
        a: &ArrayViewD<'_, T>,
        axis: usize,
    ) -> Result<ArrayData> {
        let (m, kept) = rows(a, &[axis]);
        if a.shape()[axis] == 0 {
            return Err(KilnError::invalid(
                if op == ArgOp::ArgMax {
                    "argmax"
                } else {
                    "argmin"
                },
                "attempt to get the arg-extreme of an empty axis",
            ));
        }
        let v: Vec<i64> = m
            .iter()
            .map(|r| {
                let mut best = 0usize;
                for (i, x) in r.iter().enumerate() {
                    let b = r[best];
                    if b.is_nan() {
                        break;
                    }
                    let better = x.is_nan()
                        || if op == ArgOp::ArgMax {
                            b.lt(*x)
                        } else {
                            x.lt(b)
                        };
                    if better {
                        best = i;
                    }
                }
                best as i64
            })
            .collect();
        Ok(ArrayData::I64(super::super::elementwise::shaped(&kept, v)?))
    }

    #[cfg(test)]
    pub(in super::super) fn scan<T: Arith + HostElement>(
        op: ScanOp,
        a: &ArrayViewD<'_, T>,
        axis: usize,
    ) -> ArrayData {
        let mut out = a.to_owned();
        for mut lane in out.lanes_mut(ndarray::Axis(axis)) {
            let mut acc = if op == ScanOp::CumSum {
                T::zero()
            } else {
                T::one()
            };
            for x in lane.iter_mut() {
                acc = if op == ScanOp::CumSum {
                    acc.add(*x)
                } else {
                    acc.mul(*x)
                };
                *x = acc;
            }
        }
        T::wrap(out)
    }
}
