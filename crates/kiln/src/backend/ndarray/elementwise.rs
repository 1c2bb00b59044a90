//! Elementwise kernels of the ndarray engine: maps, broadcasting zips, selects and casts.
//!
//! The layouts that dominate real work have fast paths that write straight into a fresh
//! (fallibly allocated, huge-page advised) buffer, in parallel chunks when large, each chunk
//! compiled for the CPU's widest vector unit (`simd::kernel!`):
//! * contiguous operands of one shape;
//! * a contiguous operand with a broadcast *trailing* block (a bias row `[n]` against
//!   `[m, n]`, a scalar);
//! * a contiguous operand with a broadcast *leading* block (a column `[m, 1]` against
//!   `[m, n]`, what `x - max(x, axis=-1, keepdims=True)` is).
//!
//! Every other layout takes the general path (logical-order iteration over ndarray's
//! broadcast views), which stays the reference: tests compare the two.

use super::arith::{Arith, BinaryVisitor, UnaryVisitor};
use super::half_conv::{bf16_from_f32, bf16_to_f32, f16_from_f32, f16_to_f32};
use super::simd;
use super::{with_view, ArrView};
use crate::array::{ArrayData, HostElement};
use crate::dtype::DType;
use crate::element::{cast_elem, Element};
use crate::error::{KilnError, Result};
use crate::hostmem::{alloc_for, par_fill, par_fill_from};
use crate::with_dtype;
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use std::mem::MaybeUninit;

/// Elements per parallel task (a multiple of every SIMD width).
pub(super) const CHUNK: usize = 1 << 16;

simd::kernel! {
    /// `o[i] = f(x[i])`.
    fn map_chunk[T: Copy, U, F: Fn(T) -> U](o: &mut [MaybeUninit<U>], x: &[T], f: F) where [] {
        for (slot, v) in o.iter_mut().zip(x) {
            slot.write(f(*v));
        }
    }
}

simd::kernel! {
    /// `o[i] = f(a[i], b[i])`.
    fn zip_chunk[T: Copy, U, F: Fn(T, T) -> U](o: &mut [MaybeUninit<U>], a: &[T], b: &[T], f: F) where [] {
        for ((slot, x), y) in o.iter_mut().zip(a).zip(b) {
            slot.write(f(*x, *y));
        }
    }
}

simd::kernel! {
    /// Each row of `l` of `full` against the row `part`: `o[i][j] = f(full[i][j], part[j])`.
    fn rows_chunk[T: Copy, U, F: Fn(T, T) -> U](o: &mut [MaybeUninit<U>], full: &[T], part: &[T], l: usize, f: F) where [] {
        for (ob, xb) in o.chunks_mut(l).zip(full.chunks(l)) {
            for ((slot, x), y) in ob.iter_mut().zip(xb).zip(part) {
                slot.write(f(*x, *y));
            }
        }
    }
}

simd::kernel! {
    /// Each row of `l` of `full` against one element of `col`: `o[i][j] = f(full[i][j], col[i])`.
    fn cols_chunk[T: Copy, U, F: Fn(T, T) -> U](o: &mut [MaybeUninit<U>], full: &[T], col: &[T], l: usize, f: F) where [] {
        for ((ob, xb), y) in o.chunks_mut(l).zip(full.chunks(l)).zip(col) {
            for (slot, x) in ob.iter_mut().zip(xb) {
                slot.write(f(*x, *y));
            }
        }
    }
}

simd::kernel! {
    /// `o[i] = c[i] ? a[i] : b[i]`.
    fn select_chunk[T: Copy](o: &mut [MaybeUninit<T>], c: &[bool], a: &[T], b: &[T]) where [] {
        for (((slot, c), x), y) in o.iter_mut().zip(c).zip(a).zip(b) {
            slot.write(if *c { *x } else { *y });
        }
    }
}

/// Wraps a freshly filled C-order buffer of `shape`.
///
/// Every kernel output passes here, so where the buffer's length is the shape's size the
/// checks of ndarray's general constructor are skipped (about 9% of a 1-element `add`'s
/// profile): such a buffer is a valid C-order array by construction.
pub(super) fn shaped<T>(shape: &[usize], v: Vec<T>) -> Result<ArrayD<T>> {
    let size = crate::array::checked_numel(shape, "shaped").ok();
    if std::mem::size_of::<T>() > 0 && !shape.contains(&0) && size == Some(v.len()) {
        // SAFETY: the unchecked constructor needs the default strides of `shape` to address
        // exactly `v.len()` elements (the length is the shape's size, and no axis is empty)
        // and that size to fit an isize (a Vec of sized elements holds at most isize::MAX).
        return Ok(unsafe { ArrayD::from_shape_vec_unchecked(IxDyn(shape), v) });
    }
    ArrayD::from_shape_vec(IxDyn(shape), v)
        .map_err(|e| KilnError::invalid("ndarray engine", e.to_string()))
}

/// `f` over every element of `a`, into a new C-order array.
pub(super) fn map<T, U>(
    a: &ArrayViewD<'_, T>,
    op: &str,
    f: impl Fn(T) -> U + Copy + Sync,
) -> Result<ArrayD<U>>
where
    T: Copy + Sync,
    U: Element,
{
    map_from(crate::hostmem::PAR_MIN_MEM, a, op, f)
}

/// [`map`] that goes parallel from `min` elements (lower for compute-bound `f`).
fn map_from<T, U>(
    min: usize,
    a: &ArrayViewD<'_, T>,
    op: &str,
    f: impl Fn(T) -> U + Copy + Sync,
) -> Result<ArrayD<U>>
where
    T: Copy + Sync,
    U: Element,
{
    let n = a.len();
    let v = match a.as_slice() {
        Some(s) => crate::hostmem::par_fill_from(
            min,
            n,
            CHUNK,
            64,
            op,
            a.shape(),
            |off, o: &mut [MaybeUninit<U>]| map_chunk(o, &s[off..], f),
        )?,
        None => {
            let mut v = alloc_for::<U>(n, op, a.shape())?;
            v.extend(a.iter().map(|x| f(*x)));
            v
        }
    };
    shaped(a.shape(), v)
}

simd::kernel! {
    /// `o[i] = fast(x[i])`, then, in a block holding a lane where `rare`, `full` on those
    /// lanes (the block is still in L1).
    fn map_rare_chunk[F: Fn(f32) -> f32, P: Fn(f32) -> bool, G: Fn(f32) -> f32](o: &mut [MaybeUninit<f32>], x: &[f32], fast: F, rare: P, full: G) where [] {
        const B: usize = 512;
        for (ob, xb) in o.chunks_mut(B).zip(x.chunks(B)) {
            for (slot, v) in ob.iter_mut().zip(xb) {
                slot.write(fast(*v));
            }
            if xb.iter().fold(false, |a, v| a | rare(*v)) {
                for (slot, v) in ob.iter_mut().zip(xb) {
                    if rare(*v) {
                        slot.write(full(*v));
                    }
                }
            }
        }
    }
}

/// float32 `op` by a fast element function without the special cases, the rare special
/// lanes recomputed by the full one (bit-identical to mapping the full function; the
/// logarithms' special cases were a third of their instructions, and sin/cos/tan reduce in
/// f32 lanes up to 2^17 where the full path reduces in f64). Trig lanes beyond 2^30 take
/// std's f64 function, as `fix_huge_trig` does on the other paths. `None` for other ops.
pub(super) fn unary_f32_rare(
    op: crate::backend::UnaryOp,
    a: &ArrayViewD<'_, f32>,
) -> Result<Option<ArrayD<f32>>> {
    use super::vmath;
    use crate::backend::UnaryOp::*;
    if !matches!(op, Log | Log2 | Log10 | Log1p | Sin | Cos | Tan) {
        return Ok(None);
    }
    let Some(s) = a.as_slice() else {
        return Ok(None);
    };
    // Each op its own closures (a function pointer would not inline into the kernel).
    macro_rules! go {
        ($fast:path, $rare:path, $full:path) => {
            crate::hostmem::par_fill_from(
                crate::hostmem::PAR_MIN,
                s.len(),
                CHUNK,
                64,
                "unary",
                a.shape(),
                |off, o: &mut [MaybeUninit<f32>]| {
                    map_rare_chunk(
                        o,
                        &s[off..],
                        #[inline(always)]
                        |x| $fast(x),
                        #[inline(always)]
                        |x| $rare(x),
                        #[inline(always)]
                        |x| $full(x),
                    )
                },
            )?
        };
    }
    let v = match op {
        Log => go!(vmath::log_fast, vmath::log_rare, vmath::log),
        Log2 => go!(vmath::log2_fast, vmath::log_rare, vmath::log2),
        Log10 => go!(vmath::log10_fast, vmath::log_rare, vmath::log10),
        Log1p => go!(vmath::log1p_fast, vmath::log1p_rare, vmath::log1p),
        Sin => go!(vmath::sin_fast, vmath::trig_rare, sin_full),
        Cos => go!(vmath::cos_fast, vmath::trig_rare, cos_full),
        _ => go!(vmath::tan_fast, vmath::trig_rare, tan_full),
    };
    Ok(Some(shaped(a.shape(), v)?))
}

/// The rare trig lanes: `vmath`'s f64 reduction, std's f64 function beyond 2^30.
macro_rules! trig_full {
    ($name:ident, $f:ident) => {
        #[inline(always)]
        fn $name(x: f32) -> f32 {
            if super::vmath::needs_scalar_trig(x) {
                (x as f64).$f() as f32
            } else {
                super::vmath::$f(x)
            }
        }
    };
}
trig_full!(sin_full, sin);
trig_full!(cos_full, cos);
trig_full!(tan_full, tan);

/// float32 `power` of two contiguous operands of the output's size: the AVX-512 kernel
/// (`pow_avx512`) where the CPU has it, else the map of `vmath::pow` (the same bits either
/// way); `None` for other layouts.
pub(super) fn pow_f32_contiguous(
    x: &ArrayViewD<'_, f32>,
    y: &ArrayViewD<'_, f32>,
    shape: &[usize],
) -> Result<Option<ArrayD<f32>>> {
    let n = crate::array::checked_numel(shape, "power")?;
    let (Some(sx), Some(sy)) = (x.as_slice(), y.as_slice()) else {
        return Ok(None);
    };
    if sx.len() != n || sy.len() != n {
        return Ok(None);
    }
    let v = par_fill_from(
        crate::hostmem::PAR_MIN,
        n,
        CHUNK,
        64,
        "power",
        shape,
        |off, o: &mut [MaybeUninit<f32>]| {
            let end = off + o.len();
            let (xs, ys) = (&sx[off..end], &sy[off..end]);
            if !super::pow_avx512::pow_f32(o, xs, ys) {
                zip_chunk(o, xs, ys, super::vmath::pow);
            }
        },
    )?;
    Ok(Some(shaped(shape, v)?))
}

/// Runs a unary element function of [`Arith`] over an array.
pub(super) struct MapV<'a, 'v, T> {
    pub a: &'a ArrayViewD<'v, T>,
    pub op: &'a str,
    /// Elements from which the map splits across threads.
    pub par_min: usize,
}

impl<T: Element> UnaryVisitor<T> for MapV<'_, '_, T> {
    type Out = Result<ArrayD<T>>;
    fn visit<F: Fn(T) -> T + Copy + Send + Sync>(self, f: F) -> Result<ArrayD<T>> {
        map_from(self.par_min, self.a, self.op, f)
    }
}

/// Runs a binary element function of [`Arith`] over two broadcasting arrays.
pub(super) struct ZipV<'a, 'v, T> {
    pub a: &'a ArrayViewD<'v, T>,
    pub b: &'a ArrayViewD<'v, T>,
    pub shape: &'a [usize],
    pub op: &'a str,
    /// Elements from which the zip splits across threads.
    pub par_min: usize,
}

impl<T: Element> BinaryVisitor<T> for ZipV<'_, '_, T> {
    type Out = Result<ArrayD<T>>;
    fn visit<F: Fn(T, T) -> T + Copy + Send + Sync>(self, f: F) -> Result<ArrayD<T>> {
        zip2_from(self.par_min, self.a, self.b, self.shape, self.op, f)
    }
}

/// Unary `op` of `T`, or an error if the dtype has none.
pub(super) fn unary_arith<T: Arith + HostElement>(
    op: crate::backend::UnaryOp,
    a: &ArrayViewD<'_, T>,
) -> Result<ArrayData> {
    use crate::backend::UnaryOp::*;
    // Transcendental functions are compute-bound: threads pay off from fewer elements.
    let par_min = match op {
        Neg | Abs | Sign | Sqrt | Floor | Ceil | Round | Conj | Real | Imag => {
            crate::hostmem::PAR_MIN_MEM
        }
        _ => crate::hostmem::PAR_MIN,
    };
    match T::unary(
        op,
        MapV {
            a,
            op: "unary",
            par_min,
        },
    ) {
        Some(r) => Ok(T::wrap(r?)),
        None => Err(super::backend_err(
            super::NAME,
            &format!("{op:?}"),
            T::DTYPE,
            "not defined for this dtype",
        )),
    }
}

/// Binary `op` of `T`, or an error if the dtype has none.
pub(super) fn binary_arith<'v, T: Arith + HostElement>(
    op: crate::backend::BinaryOp,
    a: &ArrayViewD<'v, T>,
    b: &ArrayViewD<'v, T>,
    shape: &[usize],
) -> Result<ArrayData> {
    let name = op.name();
    // pow and arctan2 are compute-bound (tens of instructions an element): threads pay off
    // from PAR_MIN, as for the unary transcendentals; at [256, 784] they ran on one thread.
    let par_min = match op {
        crate::backend::BinaryOp::Pow | crate::backend::BinaryOp::Atan2 => crate::hostmem::PAR_MIN,
        _ => crate::hostmem::PAR_MIN_MEM,
    };
    match T::binary(
        op,
        ZipV {
            a,
            b,
            shape,
            op: name,
            par_min,
        },
    ) {
        Some(r) => Ok(T::wrap(r?)),
        None => Err(super::backend_err(
            super::NAME,
            name,
            T::DTYPE,
            "not defined for this dtype",
        )),
    }
}

/// Length of `b`'s repeating block if `b` broadcasts to `shape` as a contiguous trailing
/// block (`[1, .., 1, shape[k..]]`), else `None`.
pub(super) fn trailing_block(b: &[usize], shape: &[usize]) -> Option<usize> {
    if b.len() > shape.len() {
        return None;
    }
    let mut full = vec![1; shape.len() - b.len()];
    full.extend_from_slice(b);
    let k = (0..=shape.len())
        .find(|&k| full[k..] == shape[k..] && full[..k].iter().all(|d| *d == 1))?;
    Some(shape[k..].iter().product())
}

/// Length of the run each element of `b` repeats over if `b` broadcasts to `shape` as a
/// leading block (`shape[..k] + [1, .., 1]`, `k < ndim`), else `None`.
pub(super) fn leading_block(b: &[usize], shape: &[usize]) -> Option<usize> {
    if b.len() != shape.len() {
        return None;
    }
    let k = (0..shape.len())
        .rev()
        .find(|&k| b[..k] == shape[..k] && b[k..].iter().all(|d| *d == 1))?;
    let run: usize = shape[k..].iter().product();
    (run > 1).then_some(run)
}

/// `f(a, b)` elementwise into a new array of `shape`, if the layout has a fast path; in
/// parallel from `min` elements.
pub(super) fn zip2_fast<T, U>(
    min: usize,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
    op: &str,
    f: impl Fn(T, T) -> U + Copy + Sync,
) -> Option<Result<ArrayD<U>>>
where
    T: Copy + Send + Sync,
    U: Element,
{
    let n: usize = shape.iter().product();
    let (sa, sb) = (a.as_slice()?, b.as_slice()?);
    let v = if sa.len() == n && sb.len() == n {
        par_fill_from(
            min,
            n,
            CHUNK,
            64,
            op,
            shape,
            |off, o: &mut [MaybeUninit<U>]| zip_chunk(o, &sa[off..], &sb[off..], f),
        )
    } else if sa.len() == n || sb.len() == n {
        // One operand is full; the other repeats as a trailing or a leading block.
        let swap = sb.len() == n;
        let (full, part, part_shape) = if swap {
            (sb, sa, a.shape())
        } else {
            (sa, sb, b.shape())
        };
        let g = move |x: T, y: T| if swap { f(y, x) } else { f(x, y) };
        if let Some(l) = trailing_block(part_shape, shape) {
            if l == 1 {
                let y = part[0];
                par_fill_from(
                    min,
                    n,
                    CHUNK,
                    64,
                    op,
                    shape,
                    |off, o: &mut [MaybeUninit<U>]| map_chunk(o, &full[off..], move |x| g(x, y)),
                )
            } else {
                block_fill(min, n, l, op, shape, |off, o| {
                    rows_chunk(o, &full[off..], part, l, g)
                })
            }
        } else if let Some(l) = leading_block(part_shape, shape) {
            block_fill(min, n, l, op, shape, |off, o| {
                cols_chunk(o, &full[off..], &part[off / l..], l, g)
            })
        } else {
            return None;
        }
    } else {
        return None;
    };
    Some(v.and_then(|v| shaped(shape, v)))
}

/// `par_fill` with chunks that are whole multiples of the block length `l`.
fn block_fill<U: Element>(
    min: usize,
    n: usize,
    l: usize,
    op: &str,
    shape: &[usize],
    f: impl Fn(usize, &mut [MaybeUninit<U>]) + Sync,
) -> Result<Vec<U>> {
    let l = l.max(1);
    let chunk = CHUNK.div_ceil(l) * l;
    par_fill_from(min, n, chunk, l, op, shape, f)
}

/// `f(a, b)` elementwise with broadcasting to `shape`: the fast paths, else the general
/// path.
pub(super) fn zip2<T, U>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
    op: &str,
    f: impl Fn(T, T) -> U + Copy + Sync,
) -> Result<ArrayD<U>>
where
    T: Copy + Send + Sync,
    U: Element,
{
    zip2_from(crate::hostmem::PAR_MIN_MEM, a, b, shape, op, f)
}

/// [`zip2`] whose fast paths go parallel from `min` elements.
fn zip2_from<T, U>(
    min: usize,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
    op: &str,
    f: impl Fn(T, T) -> U + Copy + Sync,
) -> Result<ArrayD<U>>
where
    T: Copy + Send + Sync,
    U: Element,
{
    if let Some(r) = zip2_fast(min, a, b, shape, op, f) {
        return r;
    }
    zip2_general(a, b, shape, op, f)
}

/// The reference path: ndarray's broadcast views, iterated in logical (C) order.
pub(super) fn zip2_general<T, U>(
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
    op: &str,
    f: impl Fn(T, T) -> U,
) -> Result<ArrayD<U>>
where
    T: Copy,
    U: Element,
{
    let bad = || KilnError::shape(op, a.shape(), b.shape(), "operands do not broadcast");
    let av = a.broadcast(IxDyn(shape)).ok_or_else(bad)?;
    let bv = b.broadcast(IxDyn(shape)).ok_or_else(bad)?;
    let mut v = alloc_for::<U>(av.len(), op, shape)?;
    v.extend(av.iter().zip(bv.iter()).map(|(x, y)| f(*x, *y)));
    shaped(shape, v)
}

/// `cond ? a : b` with broadcasting.
pub(super) fn select<T: Element>(
    c: &ArrayViewD<'_, bool>,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayD<T>> {
    let n: usize = shape.iter().product();
    if let (Some(sc), Some(sa), Some(sb)) = (c.as_slice(), a.as_slice(), b.as_slice()) {
        if sc.len() == n && sa.len() == n && sb.len() == n {
            let v = par_fill(
                n,
                CHUNK,
                64,
                "where",
                shape,
                |off, o: &mut [MaybeUninit<T>]| select_chunk(o, &sc[off..], &sa[off..], &sb[off..]),
            )?;
            return shaped(shape, v);
        }
    }
    let bad = || {
        KilnError::shape(
            "where",
            a.shape(),
            b.shape(),
            "condition and operands do not broadcast",
        )
    };
    if let Some(v) = select_periodic(c, a, b, shape)? {
        return shaped(shape, v);
    }
    let (cv, xv, yv) = (
        c.broadcast(IxDyn(shape)).ok_or_else(bad)?,
        a.broadcast(IxDyn(shape)).ok_or_else(bad)?,
        b.broadcast(IxDyn(shape)).ok_or_else(bad)?,
    );
    let mut v = alloc_for::<T>(n, "where", shape)?;
    v.extend(
        cv.iter()
            .zip(xv.iter())
            .zip(yv.iter())
            .map(|((c, x), y)| if *c { *x } else { *y }),
    );
    shaped(shape, v)
}

/// How a `where` operand covers the output: all of it, one value, or a contiguous block
/// repeated over leading axes (a `[m, n]` mask against `[b, m, n]` values).
#[derive(Clone, Copy)]
enum Src<'a, T> {
    Slice(&'a [T], bool),
    One(T),
}

fn src_of<'a, T: Copy>(a: &'a ArrayViewD<'_, T>, shape: &[usize]) -> Option<(Src<'a, T>, usize)> {
    let n: usize = shape.iter().product();
    if a.len() == 1 {
        return a.iter().next().map(|v| (Src::One(*v), 0));
    }
    let s = a.to_slice()?;
    // Leading size-1 axes aside, its shape must be a suffix of the output's.
    let own: Vec<usize> = a.shape().iter().copied().skip_while(|d| *d == 1).collect();
    if own.len() > shape.len() || shape[shape.len() - own.len()..] != own[..] {
        return None;
    }
    Some((Src::Slice(s, s.len() == n), s.len()))
}

/// `where` over operands that are whole, scalar or periodic (see [`Src`]), in blocks of the
/// period with one vectorised kernel per combination; `None` for other broadcasts.
fn select_periodic<T: Element>(
    c: &ArrayViewD<'_, bool>,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<Option<Vec<T>>> {
    let n: usize = shape.iter().product();
    let (Some((sc, pc)), Some((sa, pa)), Some((sb, pb))) =
        (src_of(c, shape), src_of(a, shape), src_of(b, shape))
    else {
        return Ok(None);
    };
    // The block: the shortest period that is not the whole (all periods must agree).
    let periods: Vec<usize> = [
        (sc.is_periodic(), pc),
        (sa.is_periodic(), pa),
        (sb.is_periodic(), pb),
    ]
    .iter()
    .filter(|(p, _)| *p)
    .map(|(_, l)| *l)
    .collect();
    let p = periods.first().copied().unwrap_or(n.max(1));
    if periods.iter().any(|q| *q != p) || p == 0 || !n.is_multiple_of(p) {
        return Ok(None);
    }
    let mut v = alloc_for::<T>(n, "where", shape)?;
    let out = v.spare_capacity_mut();
    for (bi, o) in out[..n].chunks_mut(p).enumerate() {
        let off = bi * p;
        select_block(o, sc.block(off, p), sa.block(off, p), sb.block(off, p));
    }
    // SAFETY: every one of the first n slots was written by `select_block`.
    unsafe { v.set_len(n) };
    Ok(Some(v))
}

impl<'a, T: Copy> Src<'a, T> {
    fn is_periodic(&self) -> bool {
        matches!(self, Src::Slice(_, false))
    }
    /// The part of a whole operand under the output block at `off`; the rest as they are.
    fn block(self, off: usize, p: usize) -> Src<'a, T> {
        match self {
            Src::Slice(x, true) => Src::Slice(&x[off..off + p], true),
            other => other,
        }
    }
}

simd::kernel! {
    fn sel_k[T: Copy, C: Fn(usize) -> bool, A: Fn(usize) -> T, B: Fn(usize) -> T](o: &mut [MaybeUninit<T>], c: C, a: A, b: B) where [] {
        for (i, slot) in o.iter_mut().enumerate() {
            slot.write(if c(i) { a(i) } else { b(i) });
        }
    }
}

/// One block of `where`: each operand a slice as long as the block, or one value.
fn select_block<T: Copy>(o: &mut [MaybeUninit<T>], c: Src<'_, bool>, a: Src<'_, T>, b: Src<'_, T>) {
    let n = o.len();
    macro_rules! get {
        ($s:expr) => {
            match $s {
                Src::Slice(x, _) => {
                    let x = &x[..n];
                    Ok(move |i: usize| x[i])
                }
                Src::One(v) => Err(move |_: usize| v),
            }
        };
    }
    match (get!(c), get!(a), get!(b)) {
        (Ok(c), Ok(a), Ok(b)) => sel_k(o, c, a, b),
        (Ok(c), Ok(a), Err(b)) => sel_k(o, c, a, b),
        (Ok(c), Err(a), Ok(b)) => sel_k(o, c, a, b),
        (Ok(c), Err(a), Err(b)) => sel_k(o, c, a, b),
        (Err(c), Ok(a), Ok(b)) => sel_k(o, c, a, b),
        (Err(c), Ok(a), Err(b)) => sel_k(o, c, a, b),
        (Err(c), Err(a), Ok(b)) => sel_k(o, c, a, b),
        (Err(c), Err(a), Err(b)) => sel_k(o, c, a, b),
    }
}

/// NumPy `astype` of a whole array. The pairs training converts between have direct,
/// vectorised element functions; every other pair goes through [`cast_elem`].
pub(super) fn cast(d: &ArrView<'_>, to: DType) -> Result<ArrayData> {
    if super::dtype_of(d) == to {
        return Ok(with_view!(d, a, T => T::wrap(super::layout::strided_copy(a, "cast")?)));
    }
    Ok(match (d, to) {
        (ArrView::F32(a), DType::Float64) => ArrayData::F64(map(a, "cast", |x| x as f64)?),
        (ArrView::F64(a), DType::Float32) => ArrayData::F32(map(a, "cast", |x| x as f32)?),
        (ArrView::F32(a), DType::Float16) => ArrayData::F16(map(a, "cast", f16_from_f32)?),
        (ArrView::F32(a), DType::BFloat16) => ArrayData::BF16(map(a, "cast", bf16_from_f32)?),
        (ArrView::F16(a), DType::Float32) => ArrayData::F32(map(a, "cast", f16_to_f32)?),
        (ArrView::BF16(a), DType::Float32) => ArrayData::F32(map(a, "cast", bf16_to_f32)?),
        (ArrView::F16(a), DType::BFloat16) => {
            ArrayData::BF16(map(a, "cast", |x| bf16_from_f32(f16_to_f32(x)))?)
        }
        (ArrView::BF16(a), DType::Float16) => {
            ArrayData::F16(map(a, "cast", |x| f16_from_f32(bf16_to_f32(x)))?)
        }
        (ArrView::I32(a), DType::Float32) => ArrayData::F32(map(a, "cast", |x| x as f32)?),
        (ArrView::I64(a), DType::Float32) => ArrayData::F32(map(a, "cast", |x| x as f32)?),
        (ArrView::Bool(a), DType::Float32) => ArrayData::F32(map(a, "cast", |x| x as u8 as f32)?),
        (ArrView::F32(a), DType::Bool) => ArrayData::Bool(map(a, "cast", |x| x != 0.0)?),
        _ => {
            with_view!(d, a, S => with_dtype!(to, D => D::wrap(map(a, "cast", |x: S| cast_elem::<S, D>(x))?)))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use super::super::test_arr as arr;

    fn shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        // A target shape, and an operand shape that broadcasts to it (some axes set to 1,
        // some leading axes dropped).
        (
            prop::collection::vec(1usize..5, 0..4),
            any::<u32>(),
            0usize..4,
        )
            .prop_map(|(out, mask, drop)| {
                let b: Vec<usize> = out
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if mask >> i & 1 == 1 { 1 } else { *d })
                    .collect();
                let drop = drop.min(b.len());
                (out, b[drop..].to_vec())
            })
    }

    proptest! {
        /// The fast paths agree with the general broadcasting path, for every layout.
        #[test]
        fn fast_binary_equals_general((out, bshape) in shapes(), swap in any::<bool>()) {
            let a = arr(&out, 1);
            let b = arr(&bshape, 2);
            let (x, y) = if swap { (&b, &a) } else { (&a, &b) };
            let f = |p: f32, q: f32| p * 3.0 - q;
            let want = zip2_general(&x.view(), &y.view(), &out, "t", f).unwrap();
            let got = zip2(&x.view(), &y.view(), &out, "t", f).unwrap();
            prop_assert_eq!(got, want);
        }

        /// `where` over whole, scalar and periodic operands (the blocked kernels) agrees with
        /// the element-by-element broadcast, for every layout of every operand.
        #[test]
        fn select_equals_broadcast_reference((out, cshape) in shapes(), amask in any::<u32>(), pick in 0u8..3) {
            // The condition and `a` broadcast to `out` (`a` with its own size-1 axes), `b`
            // whole, scalar or in the condition's layout.
            let ashape: Vec<usize> = out.iter().enumerate().map(|(i, d)| if amask >> i & 1 == 1 { 1 } else { *d }).collect();
            let cv = arr(&cshape, 5).mapv(|x| x > 0.3);
            let a = arr(&ashape, 6);
            let b = match pick { 0 => arr(&out, 7), 1 => arr(&[], 8), _ => arr(&cshape, 9) };
            let got = select(&cv.view(), &a.view(), &b.view(), &out).unwrap();
            let n: usize = out.iter().product();
            let (c2, a2, b2) = (
                cv.broadcast(IxDyn(&out)).unwrap().to_owned(),
                a.broadcast(IxDyn(&out)).unwrap().to_owned(),
                b.broadcast(IxDyn(&out)).unwrap().to_owned(),
            );
            let want: Vec<f32> = c2.iter().zip(a2.iter()).zip(b2.iter()).map(|((c, x), y)| if *c { *x } else { *y }).collect();
            prop_assert_eq!(got.len(), n);
            prop_assert_eq!(got.iter().copied().collect::<Vec<f32>>(), want);
        }

        /// Casts through the vectorised pairs agree with the per-element reference.
        #[test]
        fn fast_casts_equal_cast_elem(v in prop::collection::vec(any::<f32>(), 0..300)) {
            let a = ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.clone()).unwrap();
            for to in [DType::Float64, DType::Float16, DType::BFloat16, DType::Bool] {
                let got = cast(&ArrView::F32(a.view()), to).unwrap();
                let want = with_dtype!(to, D => D::wrap(a.map(|x| cast_elem::<f32, D>(*x))));
                for (g, w) in got.to_scalars().iter().zip(want.to_scalars()) {
                    prop_assert!(g == &w || (g.as_f64().is_nan() && w.as_f64().is_nan()), "{to}: {g:?} vs {w:?}");
                }
                let back = crate::with_array!(&got, x, S => {
                    let _ = cast_elem::<S, f32>;
                    cast(&<S as super::super::IntoView>::into_view(x.view()), DType::Float32).unwrap()
                });
                let want_back: Vec<f64> = got.to_scalars().iter().map(|s| f32::from_scalar(*s) as f64).collect();
                for (g, w) in back.to_f64_vec().iter().zip(&want_back) {
                    prop_assert!(g == w || (g.is_nan() && w.is_nan()));
                }
            }
        }
    }

    #[test]
    fn the_fast_path_is_taken_for_rows_columns_and_scalars() {
        let a = arr(&[300, 7], 1);
        let add = |p: f32, q: f32| p + q;
        let fast = |x: &ArrayD<f32>, y: &ArrayD<f32>| {
            zip2_fast(
                crate::hostmem::PAR_MIN_MEM,
                &x.view(),
                &y.view(),
                &[300, 7],
                "t",
                add,
            )
            .is_some()
        };
        assert!(fast(&a, &arr(&[7], 2)));
        assert!(fast(&arr(&[], 3), &a));
        assert!(fast(&a, &arr(&[300, 1], 2)));
        assert!(fast(&a, &arr(&[1, 7], 2)));
        assert!(!fast(&arr(&[300, 1], 1), &arr(&[1, 7], 2)));
    }

    #[test]
    fn blocks() {
        assert_eq!(trailing_block(&[1000], &[10, 1000]), Some(1000));
        assert_eq!(trailing_block(&[1, 3, 4], &[2, 3, 4]), Some(12));
        assert_eq!(trailing_block(&[], &[2, 3]), Some(1));
        assert_eq!(trailing_block(&[1, 1], &[2, 3]), Some(1));
        assert_eq!(trailing_block(&[3, 1], &[3, 4]), None);
        assert_eq!(trailing_block(&[2, 3], &[2, 3]), Some(6));
        assert_eq!(leading_block(&[3, 1], &[3, 4]), Some(4));
        assert_eq!(leading_block(&[3, 1, 1], &[3, 4, 5]), Some(20));
        assert_eq!(leading_block(&[3, 4, 1], &[3, 4, 5]), Some(5));
        assert_eq!(leading_block(&[1, 4], &[3, 4]), None);
        assert_eq!(leading_block(&[3, 4], &[3, 4]), None);
    }

    #[test]
    fn threaded_contiguous_pow_equals_mapping_vmath_pow() {
        // Past PAR_MIN (two threads, several chunks, a ragged tail), against the portable
        // element function the broadcasting paths map.
        let n = 3 * crate::hostmem::PAR_MIN + 13;
        let x: Vec<f32> = (0..n).map(|i| (i % 1999) as f32 * 0.0071 - 3.0).collect();
        let y: Vec<f32> = (0..n).map(|i| (i % 211) as f32 * 0.37 - 40.0).collect();
        let (xa, ya) = (
            ArrayD::from_shape_vec(IxDyn(&[n]), x.clone()).unwrap(),
            ArrayD::from_shape_vec(IxDyn(&[n]), y.clone()).unwrap(),
        );
        let got = pow_f32_contiguous(&xa.view(), &ya.view(), &[n])
            .unwrap()
            .expect("contiguous operands take the contiguous path");
        for (i, g) in got.iter().enumerate() {
            let want = super::super::vmath::pow(x[i], y[i]);
            assert!(
                g.to_bits() == want.to_bits() || (g.is_nan() && want.is_nan()),
                "pow({}, {}) at {i}: {g:e} vs {want:e}",
                x[i],
                y[i]
            );
        }
        // A broadcast exponent is not contiguous at the output's size: the portable path.
        let y1 = ArrayD::from_shape_vec(IxDyn(&[1]), vec![2.5f32]).unwrap();
        assert!(pow_f32_contiguous(&xa.view(), &y1.view(), &[n])
            .unwrap()
            .is_none());
    }
}
