//! The reference CPU engine, built on `ndarray`: every dtype, rayon-parallel elementwise
//! kernels above a size threshold, and `matrixmultiply`'s threaded SIMD GEMM for float
//! matmul (half types accumulate in float32 through it).

mod arith;

use super::guarded;
mod fast;

use self::arith::Arith;
use super::{
    backend_err, ArgOp, Backend, BinaryOp, CmpOp, ReduceOp, ScanOp, SliceSpec, Storage, UnaryOp,
};
use crate::array::{ArrayData, HostElement};
use crate::dtype::DType;
use crate::element::{cast_elem, Element, Scalar, C128, C64};
use crate::error::{KilnError, Result};
use crate::{with_array, with_dtype};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, Axis, Dimension, IxDyn, Slice, Zip};
use std::sync::Arc;

/// Below this many elements the rayon split costs more than it saves.
const PAR_MIN: usize = 1 << 15;

/// The ndarray engine. Stateless; storage is `Arc<ArrayData>`.
#[derive(Debug, Default, Clone, Copy)]
pub struct NdarrayBackend;

const NAME: &str = "ndarray";

fn data(s: &Storage) -> Result<&ArrayData> {
    s.0.downcast_ref::<ArrayData>().ok_or_else(|| {
        KilnError::invalid(
            "ndarray backend",
            "storage belongs to another backend; transfer it first",
        )
    })
}

fn wrap(d: ArrayData) -> Storage {
    Storage(Arc::new(d))
}

fn typed<'a, T: HostElement>(s: &'a Storage, op: &str) -> Result<&'a ArrayD<T>> {
    let d = data(s)?;
    T::view(d).ok_or_else(|| {
        backend_err(
            NAME,
            op,
            d.dtype(),
            format!("operands must share one dtype ({} expected)", T::DTYPE),
        )
    })
}

/// Elementwise map, parallel for large arrays.
fn map<T: Copy + Send + Sync, U: Send + Sync>(
    a: &ArrayD<T>,
    f: impl Fn(T) -> U + Sync + Send,
) -> ArrayD<U> {
    if a.len() >= PAR_MIN {
        Zip::from(a).par_map_collect(|x| f(*x))
    } else {
        a.map(|x| f(*x))
    }
}

fn zip2<T: Copy + Send + Sync, U: Send + Sync>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    shape: &[usize],
    f: impl Fn(T, T) -> U + Sync + Send,
) -> Result<ArrayD<U>> {
    if let Some(out) = fast::binary(a, b, shape, &f) {
        return Ok(out);
    }
    zip2_general(a, b, shape, f)
}

/// The reference path: ndarray's broadcasting `Zip`, any layout.
fn zip2_general<T: Copy + Send + Sync, U: Send + Sync>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    shape: &[usize],
    f: impl Fn(T, T) -> U + Sync + Send,
) -> Result<ArrayD<U>> {
    let bad = || KilnError::shape("binary", a.shape(), b.shape(), "operands do not broadcast");
    let av = a.broadcast(IxDyn(shape)).ok_or_else(bad)?;
    let bv = b.broadcast(IxDyn(shape)).ok_or_else(bad)?;
    let z = Zip::from(&av).and(&bv);
    Ok(if av.len() >= PAR_MIN {
        z.par_map_collect(|x, y| f(*x, *y))
    } else {
        z.map_collect(|x, y| f(*x, *y))
    })
}

fn unary_typed<T: Arith + HostElement>(op: UnaryOp, a: &ArrayD<T>) -> Result<ArrayData> {
    let f = T::unary_fn(op).ok_or_else(|| {
        backend_err(
            NAME,
            &format!("{op:?}"),
            T::DTYPE,
            "not defined for this dtype",
        )
    })?;
    Ok(T::wrap(map(a, f)))
}

fn predicate<T: Element>(op: UnaryOp, a: &ArrayD<T>) -> Option<ArrayData> {
    let is_inf = |x: T| match x.to_scalar() {
        Scalar::Float(f) => f.is_infinite(),
        Scalar::Complex(c) => c.re.is_infinite() || c.im.is_infinite(),
        _ => false,
    };
    Some(ArrayData::Bool(match op {
        UnaryOp::IsNan => map(a, |x| x.is_nan()),
        UnaryOp::IsInf => map(a, is_inf),
        UnaryOp::IsFinite => map(a, move |x| !x.is_nan() && !is_inf(x)),
        UnaryOp::LogicalNot => map(a, |x| !x.nonzero()),
        _ => return None,
    }))
}

fn complex_to_real(op: UnaryOp, d: &ArrayData) -> Option<ArrayData> {
    Some(match (op, d) {
        (UnaryOp::Abs, ArrayData::C64(a)) => ArrayData::F32(map(a, |z| z.norm())),
        (UnaryOp::Abs, ArrayData::C128(a)) => ArrayData::F64(map(a, |z| z.norm())),
        (UnaryOp::Real, ArrayData::C64(a)) => ArrayData::F32(map(a, |z| z.re)),
        (UnaryOp::Real, ArrayData::C128(a)) => ArrayData::F64(map(a, |z| z.re)),
        (UnaryOp::Imag, ArrayData::C64(a)) => ArrayData::F32(map(a, |z| z.im)),
        (UnaryOp::Imag, ArrayData::C128(a)) => ArrayData::F64(map(a, |z| z.im)),
        _ => return None,
    })
}

macro_rules! arith_dispatch {
    ($d:expr, $a:ident, $T:ident => $body:expr) => {
        with_array!($d, $a, $T => $body)
    };
}

fn binary_typed<T: Arith + HostElement>(
    op: BinaryOp,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    shape: &[usize],
) -> Result<ArrayData> {
    // The hot ops go through Element's inlinable methods rather than a function pointer.
    let out = match op {
        BinaryOp::Add => zip2(a, b, shape, |x, y| x.add(y))?,
        BinaryOp::Sub => zip2(a, b, shape, |x, y| x.sub(y))?,
        BinaryOp::Mul => zip2(a, b, shape, |x, y| x.mul(y))?,
        _ => {
            if op == BinaryOp::Pow
                && T::DTYPE.kind() == crate::dtype::DTypeKind::Int
                && b.iter().any(|x| x.lt(T::zero()))
            {
                return Err(KilnError::not_allowed(
                    "power",
                    &[T::DTYPE],
                    "integers to negative integer powers are not allowed (as in NumPy); cast the base to a float dtype first",
                ));
            }
            let f = T::binary_fn(op).ok_or_else(|| {
                backend_err(
                    NAME,
                    &format!("{op:?}"),
                    T::DTYPE,
                    "not defined for this dtype",
                )
            })?;
            zip2(a, b, shape, f)?
        }
    };
    Ok(T::wrap(out))
}

fn compare_typed<T: Element>(
    op: CmpOp,
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    shape: &[usize],
) -> Result<ArrayD<bool>> {
    Ok(match op {
        CmpOp::Eq => zip2(a, b, shape, |x, y| x == y)?,
        CmpOp::Ne => zip2(a, b, shape, |x, y| x != y)?,
        CmpOp::Lt => zip2(a, b, shape, |x, y| x.lt(y))?,
        CmpOp::Gt => zip2(a, b, shape, |x, y| y.lt(x))?,
        CmpOp::Le => zip2(a, b, shape, |x, y| x.lt(y) || x == y)?,
        CmpOp::Ge => zip2(a, b, shape, |x, y| y.lt(x) || x == y)?,
    })
}

/// Moves `axes` to the end and returns the data as `[outer, inner]` rows (C order), with
/// the shape of the kept axes.
fn rows<T: Clone>(a: &ArrayD<T>, axes: &[usize]) -> (ndarray::Array2<T>, Vec<usize>) {
    let nd = a.ndim();
    let kept: Vec<usize> = (0..nd).filter(|i| !axes.contains(i)).collect();
    let mut perm = kept.clone();
    perm.extend_from_slice(axes);
    let p = a.view().permuted_axes(IxDyn(&perm));
    let outer: usize = kept.iter().map(|&i| a.shape()[i]).product();
    let inner: usize = axes.iter().map(|&i| a.shape()[i]).product();
    let v: Vec<T> = p.iter().cloned().collect();
    let arr = ndarray::Array2::from_shape_vec((outer, inner), v).expect("element count preserved");
    (arr, kept.iter().map(|&i| a.shape()[i]).collect())
}

/// Pairwise summation (as NumPy does) for accuracy on long rows.
fn pairwise<T: Element>(x: &[T]) -> T {
    if x.len() <= 128 {
        let mut acc = [T::zero(); 8];
        let chunks = x.chunks_exact(8);
        let rem = chunks.remainder();
        for c in chunks {
            for i in 0..8 {
                acc[i] = acc[i].add(c[i]);
            }
        }
        let mut s = ((acc[0].add(acc[1])).add(acc[2].add(acc[3])))
            .add((acc[4].add(acc[5])).add(acc[6].add(acc[7])));
        for v in rem {
            s = s.add(*v);
        }
        s
    } else {
        let mid = (x.len() / 2) & !7;
        pairwise(&x[..mid]).add(pairwise(&x[mid..]))
    }
}

fn reduce_row<T: Arith>(op: ReduceOp, r: &[T]) -> Result<Scalar> {
    Ok(match op {
        ReduceOp::Sum => {
            // Half types accumulate in f32, as NumPy's float16 loops do.
            // Real floats of up to 32 bits accumulate in f64 (memory-bound either way, and
            // it keeps e.g. the mean of large int32 values exact where a float32 running
            // sum cancels); half types do so too, as NumPy's float16 loops use float32.
            match T::DTYPE {
                DType::Float16 | DType::BFloat16 | DType::Float32 => {
                    let v: Vec<f64> = r.iter().map(|x| cast_elem::<T, f64>(*x)).collect();
                    Scalar::Float(pairwise(&v))
                }
                _ => pairwise(r).to_scalar(),
            }
        }
        ReduceOp::Prod => r.iter().fold(T::one(), |a, b| a.mul(*b)).to_scalar(),
        ReduceOp::Max | ReduceOp::Min => {
            let first = *r.first().ok_or_else(|| {
                KilnError::invalid(
                    if op == ReduceOp::Max { "max" } else { "min" },
                    "zero-size reduction has no identity; pass `initial` or reduce a non-empty axis",
                )
            })?;
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

fn reduce_typed<T: Arith + HostElement>(
    op: ReduceOp,
    a: &ArrayD<T>,
    axes: &[usize],
    keepdims: bool,
) -> Result<ArrayData> {
    let (m, kept_shape) = rows(a, axes);
    let out: Vec<Scalar> = if m.nrows() > 1 && a.len() >= PAR_MIN {
        use rayon::prelude::*;
        let rs: Vec<_> = m.outer_iter().collect();
        rs.par_iter()
            .map(|r| reduce_row::<T>(op, r.as_slice().expect("rows are contiguous")))
            .collect::<Result<_>>()?
    } else {
        m.outer_iter()
            .map(|r| reduce_row::<T>(op, r.as_slice().expect("rows are contiguous")))
            .collect::<Result<_>>()?
    };
    let shape: Vec<usize> = if keepdims {
        (0..a.ndim())
            .map(|i| if axes.contains(&i) { 1 } else { a.shape()[i] })
            .collect()
    } else {
        kept_shape
    };
    let out_dtype = match op {
        ReduceOp::All | ReduceOp::Any => DType::Bool,
        _ => T::DTYPE,
    };
    Ok(
        with_dtype!(out_dtype, U => U::wrap(ArrayD::from_shape_vec(IxDyn(&shape), out.into_iter().map(U::from_scalar).collect()).expect("shape matches"))),
    )
}

fn arg_typed<T: Arith>(op: ArgOp, a: &ArrayD<T>, axis: usize) -> Result<ArrayData> {
    let (m, kept) = rows(a, &[axis]);
    if m.ncols() == 0 {
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
        .outer_iter()
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
    Ok(ArrayData::I64(
        ArrayD::from_shape_vec(IxDyn(&kept), v).expect("shape matches"),
    ))
}

fn scan_typed<T: Arith + HostElement>(op: ScanOp, a: &ArrayD<T>, axis: usize) -> ArrayData {
    let mut out = a.to_owned();
    for mut lane in out.lanes_mut(Axis(axis)) {
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

/// NumPy sort order: ascending, NaN last, complex lexicographic.
fn sort_key<T: Element>(a: &T, b: &T) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            if a.lt(*b) {
                Less
            } else if b.lt(*a) {
                Greater
            } else {
                Equal
            }
        }
    }
}

fn sort_typed<T: Element + HostElement>(a: &ArrayD<T>, axis: usize, indices: bool) -> ArrayData {
    if indices {
        let mut out = ArrayD::<i64>::zeros(a.raw_dim());
        for (lane, mut o) in a
            .lanes(Axis(axis))
            .into_iter()
            .zip(out.lanes_mut(Axis(axis)))
        {
            let v: Vec<T> = lane.iter().copied().collect();
            let mut idx: Vec<usize> = (0..v.len()).collect();
            idx.sort_by(|&i, &j| sort_key(&v[i], &v[j]));
            for (o, i) in o.iter_mut().zip(idx) {
                *o = i as i64;
            }
        }
        ArrayData::I64(out)
    } else {
        let mut out = a.to_owned();
        for mut lane in out.lanes_mut(Axis(axis)) {
            let mut v: Vec<T> = lane.iter().copied().collect();
            v.sort_by(sort_key);
            for (o, x) in lane.iter_mut().zip(v) {
                *o = x;
            }
        }
        T::wrap(out)
    }
}

/// matrixmultiply's `sgemm`/`dgemm` signature.
type GemmFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    T,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    T,
    *mut T,
    isize,
    isize,
);

/// Batched GEMM through matrixmultiply for f32/f64.
fn gemm_batched<T: Element>(a: &ArrayD<T>, b: &ArrayD<T>, gemm: GemmFn<T>) -> Result<ArrayD<T>> {
    let (out_shape, ab, bb) = batch_views(a, b)?;
    let (m, k, n) = (
        a.shape()[a.ndim() - 2],
        a.shape()[a.ndim() - 1],
        b.shape()[b.ndim() - 1],
    );
    let total: usize = out_shape.iter().product();
    // No zero fill: with beta = 0 matrixmultiply writes every element of C without reading it.
    let mut out: Vec<T> = crate::hostmem::alloc_uninit(total);
    let base = out.spare_capacity_mut().as_mut_ptr() as *mut T;
    for (i, (av, bv)) in ab.iter().zip(bb.iter()).enumerate() {
        let (ars, bs) = (av.strides(), bv.strides());
        if m * n == 0 {
            break;
        }
        // SAFETY: A and B pointers/strides come from live ndarray views of shapes (m,k) and
        // (k,n); C is batch i of a fresh row-major [batch, m, n] buffer of `total` elements,
        // so [i*m*n, (i+1)*m*n) is in bounds. matrixmultiply accesses only those bounds and,
        // with beta = 0, writes C without reading it (zeros when k == 0).
        unsafe {
            gemm(
                m,
                k,
                n,
                T::one(),
                av.as_ptr(),
                ars[0],
                ars[1],
                bv.as_ptr(),
                bs[0],
                bs[1],
                T::zero(),
                base.add(i * m * n),
                n as isize,
                1,
            );
        }
    }
    // SAFETY: every batch wrote its m*n block (or total is 0).
    unsafe { out.set_len(total) };
    Ok(ArrayD::from_shape_vec(IxDyn(&out_shape), out).expect("shape matches the buffer"))
}

trait BatchIter<T> {
    fn outer_iter_batches(&mut self, nd: usize) -> Vec<ndarray::ArrayViewMut2<'_, T>>;
}
impl<T> BatchIter<T> for ArrayD<T> {
    fn outer_iter_batches(&mut self, nd: usize) -> Vec<ndarray::ArrayViewMut2<'_, T>> {
        let (m, n) = (self.shape()[nd - 2], self.shape()[nd - 1]);
        let batch: usize = self.shape()[..nd - 2].iter().product();
        let mut rest = self
            .view_mut()
            .into_shape_with_order((batch, m, n))
            .expect("fresh array is contiguous");
        let mut out = Vec::with_capacity(batch);
        for _ in 0..batch {
            let (head, tail) = rest.split_at(Axis(0), 1);
            out.push(head.index_axis_move(Axis(0), 0));
            rest = tail;
        }
        out
    }
}

/// Broadcasts the batch dimensions of two stacks of matrices; returns the output shape and
/// one 2-d view per batch entry of each operand.
#[allow(clippy::type_complexity)]
fn batch_views<'a, T>(
    a: &'a ArrayD<T>,
    b: &'a ArrayD<T>,
) -> Result<(
    Vec<usize>,
    Vec<ndarray::ArrayView2<'a, T>>,
    Vec<ndarray::ArrayView2<'a, T>>,
)> {
    let (ad, bd) = (a.ndim(), b.ndim());
    let (m, k, k2, n) = (
        a.shape()[ad - 2],
        a.shape()[ad - 1],
        b.shape()[bd - 2],
        b.shape()[bd - 1],
    );
    if k != k2 {
        return Err(KilnError::shape(
            "matmul",
            a.shape(),
            b.shape(),
            format!("inner dimensions differ ({k} vs {k2})"),
        ));
    }
    let batch = crate::ops::broadcast_shapes(&a.shape()[..ad - 2], &b.shape()[..bd - 2], "matmul")?;
    let mut ash = batch.clone();
    ash.extend([m, k]);
    let mut bsh = batch.clone();
    bsh.extend([k, n]);
    let av = a
        .broadcast(IxDyn(&ash))
        .ok_or_else(|| KilnError::shape("matmul", a.shape(), b.shape(), "batch dims"))?;
    let bv = b
        .broadcast(IxDyn(&bsh))
        .ok_or_else(|| KilnError::shape("matmul", a.shape(), b.shape(), "batch dims"))?;
    let split = |v: ArrayViewD<'a, T>, r: usize, c: usize| -> Vec<ndarray::ArrayView2<'a, T>> {
        let nb: usize = batch.iter().product();
        let mut out = Vec::with_capacity(nb);
        if batch.is_empty() {
            out.push(v.into_dimensionality::<ndarray::Ix2>().expect("2-d"));
            return out;
        }
        for idx in ndarray::indices(IxDyn(&batch)) {
            out.push(sub2(&v, idx.slice(), r, c));
        }
        out
    };
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    Ok((out_shape, split(av, m, k), split(bv, k, n)))
}

fn sub2<'a, T>(
    v: &ArrayViewD<'a, T>,
    idx: &[usize],
    _r: usize,
    _c: usize,
) -> ndarray::ArrayView2<'a, T> {
    let mut w = v.clone();
    for &i in idx.iter() {
        w.index_axis_inplace(Axis(0), i);
    }
    w.into_dimensionality::<ndarray::Ix2>()
        .expect("2-d after indexing the batch axes")
}

fn matmul_generic<T: Element + HostElement>(a: &ArrayD<T>, b: &ArrayD<T>) -> Result<ArrayD<T>> {
    let (out_shape, ab, bb) = batch_views(a, b)?;
    let nd = out_shape.len();
    let mut out = ArrayD::<T>::from_elem(IxDyn(&out_shape), T::zero());
    for ((av, bv), mut ov) in ab.iter().zip(bb.iter()).zip(out.outer_iter_batches(nd)) {
        for i in 0..av.nrows() {
            for j in 0..bv.ncols() {
                let mut acc = T::zero();
                for p in 0..av.ncols() {
                    acc = acc.add(av[[i, p]].mul(bv[[p, j]]));
                }
                ov[[i, j]] = acc;
            }
        }
    }
    Ok(out)
}

fn cast_data(d: &ArrayData, to: DType) -> ArrayData {
    if d.dtype() == to {
        return d.clone();
    }
    with_array!(d, a, S => with_dtype!(to, D => D::wrap(map(a, |x: S| cast_elem::<S, D>(x)))))
}

impl Backend for NdarrayBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> super::BackendKind {
        super::BackendKind::Ndarray
    }

    fn describe(&self, s: &Storage) -> Result<(DType, Vec<usize>)> {
        let d = data(s)?;
        Ok((d.dtype(), d.shape().to_vec()))
    }

    fn upload(&self, data: ArrayData) -> Result<Storage> {
        Ok(wrap(data))
    }

    fn download(&self, s: &Storage) -> Result<ArrayData> {
        Ok(data(s)?.clone())
    }

    fn cast(&self, s: &Storage, to: DType) -> Result<Storage> {
        guarded("cast", || Ok(wrap(cast_data(data(s)?, to))))
    }

    fn unary(&self, op: UnaryOp, s: &Storage) -> Result<Storage> {
        guarded("unary", || {
            let d = data(s)?;
            if let Some(r) = with_array!(d, a, _T => predicate(op, a)) {
                return Ok(wrap(r));
            }
            if let Some(r) = complex_to_real(op, d) {
                return Ok(wrap(r));
            }
            if let (UnaryOp::Exp, ArrayData::F32(a)) = (op, d) {
                if let Some(out) = fast::unary(a, fast::exp_f32) {
                    return Ok(wrap(ArrayData::F32(out)));
                }
            }
            Ok(wrap(arith_dispatch!(d, a, T => unary_typed::<T>(op, a)?)))
        })
    }

    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("binary", || {
            let da = data(a)?;
            Ok(wrap(
                arith_dispatch!(da, x, T => binary_typed::<T>(op, x, typed::<T>(b, "binary")?, shape)?),
            ))
        })
    }

    fn compare(&self, op: CmpOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("compare", || {
            let da = data(a)?;
            Ok(wrap(ArrayData::Bool(
                with_array!(da, x, T => compare_typed::<T>(op, x, typed::<T>(b, "compare")?, shape)?),
            )))
        })
    }

    fn select(&self, cond: &Storage, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("select", || {
            let c = typed::<bool>(cond, "where")?;
            let da = data(a)?;
            let out = with_array!(da, x, T => {
                let y = typed::<T>(b, "where")?;
                let bad = || KilnError::shape("where", x.shape(), y.shape(), "condition and operands do not broadcast");
                let (cv, xv, yv) = (c.broadcast(IxDyn(shape)).ok_or_else(bad)?, x.broadcast(IxDyn(shape)).ok_or_else(bad)?, y.broadcast(IxDyn(shape)).ok_or_else(bad)?);
                T::wrap(Zip::from(&cv).and(&xv).and(&yv).map_collect(|c, x, y| if *c { *x } else { *y }))
            });
            Ok(wrap(out))
        })
    }

    fn reduce(&self, op: ReduceOp, s: &Storage, axes: &[usize], keepdims: bool) -> Result<Storage> {
        guarded("reduce", || {
            let d = data(s)?;
            Ok(wrap(
                arith_dispatch!(d, a, T => reduce_typed::<T>(op, a, axes, keepdims)?),
            ))
        })
    }

    fn arg_reduce(&self, op: ArgOp, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("arg_reduce", || {
            let d = data(s)?;
            Ok(wrap(
                arith_dispatch!(d, a, T => arg_typed::<T>(op, a, axis)?),
            ))
        })
    }

    fn scan(&self, op: ScanOp, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("scan", || {
            let d = data(s)?;
            Ok(wrap(
                arith_dispatch!(d, a, T => scan_typed::<T>(op, a, axis)),
            ))
        })
    }

    fn matmul(&self, a: &Storage, b: &Storage) -> Result<Storage> {
        guarded("matmul", || {
            let (da, db) = (data(a)?, data(b)?);
            let out = match (da, db) {
                (ArrayData::F32(x), ArrayData::F32(y)) => {
                    ArrayData::F32(gemm_batched(x, y, matrixmultiply::sgemm)?)
                }
                (ArrayData::F64(x), ArrayData::F64(y)) => {
                    ArrayData::F64(gemm_batched(x, y, matrixmultiply::dgemm)?)
                }
                (ArrayData::F16(_), ArrayData::F16(_))
                | (ArrayData::BF16(_), ArrayData::BF16(_)) => {
                    // Accumulate in f32, round once at the end.
                    let (x, y) = (cast_data(da, DType::Float32), cast_data(db, DType::Float32));
                    let r = self.matmul(&wrap(x), &wrap(y))?;
                    cast_data(data(&r)?, da.dtype())
                }
                _ => {
                    with_array!(da, x, T => T::wrap(matmul_generic::<T>(x, typed::<T>(b, "matmul")?)?))
                }
            };
            Ok(wrap(out))
        })
    }

    fn reshape(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("reshape", || {
            let d = data(s)?;
            Ok(wrap(with_array!(d, a, T => {
                let v: Vec<T> = a.iter().copied().collect();
                T::wrap(ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| KilnError::shape("reshape", a.shape(), shape, e.to_string()))?)
            })))
        })
    }

    fn permute(&self, s: &Storage, axes: &[usize]) -> Result<Storage> {
        guarded("permute", || {
            let d = data(s)?;
            Ok(wrap(
                with_array!(d, a, T => T::wrap(a.view().permuted_axes(IxDyn(axes)).as_standard_layout().into_owned())),
            ))
        })
    }

    fn broadcast_to(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("broadcast_to", || {
            let d = data(s)?;
            Ok(wrap(
                with_array!(d, a, T => T::wrap(a.broadcast(IxDyn(shape)).ok_or_else(|| KilnError::shape("broadcast_to", a.shape(), shape, "cannot broadcast"))?.to_owned())),
            ))
        })
    }

    fn slice(&self, s: &Storage, specs: &[SliceSpec]) -> Result<Storage> {
        guarded("slice", || {
            let d = data(s)?;
            Ok(wrap(with_array!(d, a, T => {
                let v = a.slice_each_axis(|ax| {
                    let sp = specs[ax.axis.0];
                    Slice::new(sp.start as isize, Some(sp.end as isize), sp.step)
                });
                T::wrap(v.as_standard_layout().into_owned())
            })))
        })
    }

    fn concat(&self, parts: &[&Storage], axis: usize) -> Result<Storage> {
        guarded("concat", || {
            let first =
                data(parts.first().ok_or_else(|| {
                    KilnError::invalid("concatenate", "needs at least one tensor")
                })?)?;
            Ok(wrap(with_array!(first, _a, T => {
                let views: Vec<ArrayViewD<'_, T>> = parts.iter().map(|p| typed::<T>(p, "concatenate").map(|x| x.view())).collect::<Result<_>>()?;
                T::wrap(ndarray::concatenate(Axis(axis), &views).map_err(|e| KilnError::invalid("concatenate", e.to_string()))?)
            })))
        })
    }

    fn index_select(&self, s: &Storage, indices: &[usize], axis: usize) -> Result<Storage> {
        guarded("index_select", || {
            let d = data(s)?;
            Ok(wrap(
                with_array!(d, a, T => T::wrap(a.select(Axis(axis), indices))),
            ))
        })
    }

    fn gather(&self, s: &Storage, indices: &Storage, axis: usize) -> Result<Storage> {
        guarded("gather", || {
            let d = data(s)?;
            let idx = typed::<i64>(indices, "take_along_axis")?;
            Ok(wrap(with_array!(d, a, T => {
                let mut out = ArrayD::<T>::from_elem(idx.raw_dim(), T::zero());
                for (pos, o) in out.indexed_iter_mut() {
                    let mut p = pos.slice().to_vec();
                    p[axis] = idx[&pos] as usize;
                    for (k, v) in p.iter_mut().enumerate() {
                        if a.shape()[k] == 1 { *v = 0; }
                    }
                    *o = a[IxDyn(&p)];
                }
                T::wrap(out)
            })))
        })
    }

    fn pad(&self, s: &Storage, widths: &[(usize, usize)], value: Scalar) -> Result<Storage> {
        guarded("pad", || {
            let d = data(s)?;
            Ok(wrap(with_array!(d, a, T => {
                let shape: Vec<usize> = a.shape().iter().zip(widths).map(|(n, (l, r))| n + l + r).collect();
                let mut out = ArrayD::<T>::from_elem(IxDyn(&shape), T::from_scalar(value));
                out.slice_each_axis_mut(|ax| {
                    let (l, _) = widths[ax.axis.0];
                    Slice::new(l as isize, Some((l + a.shape()[ax.axis.0]) as isize), 1)
                })
                .assign(a);
                T::wrap(out)
            })))
        })
    }

    fn sort(&self, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("sort", || {
            let d = data(s)?;
            Ok(wrap(
                with_array!(d, a, T => sort_typed::<T>(a, axis, false)),
            ))
        })
    }

    fn argsort(&self, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("argsort", || {
            let d = data(s)?;
            Ok(wrap(with_array!(d, a, T => sort_typed::<T>(a, axis, true))))
        })
    }
}

// Keep the half and complex imports used by macros visible to the compiler.
#[allow(dead_code)]
fn _types(_: f16, _: bf16, _: C64, _: C128) {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn arr(shape: &[usize], seed: u64) -> ArrayD<f32> {
        let n: usize = shape.iter().product();
        ArrayD::from_shape_vec(
            IxDyn(shape),
            (0..n)
                .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 * 0.01 - 5.0)
                .collect(),
        )
        .unwrap()
    }

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
        /// The fast paths agree with ndarray's general broadcasting Zip, for every layout.
        #[test]
        fn fast_binary_equals_general_zip((out, bshape) in shapes(), swap in any::<bool>()) {
            let a = arr(&out, 1);
            let b = arr(&bshape, 2);
            let (x, y) = if swap { (&b, &a) } else { (&a, &b) };
            let f = |p: f32, q: f32| p * 3.0 - q;
            let want = zip2_general(x, y, &out, f).unwrap();
            let got = zip2(x, y, &out, f).unwrap();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn the_fast_path_is_taken_for_rows_and_scalars() {
        let a = arr(&[300, 7], 1);
        assert!(fast::binary(&a, &arr(&[7], 2), &[300, 7], |p: f32, q: f32| p + q).is_some());
        assert!(fast::binary(&arr(&[], 3), &a, &[300, 7], |p: f32, q: f32| p + q).is_some());
        assert!(fast::binary(&a, &arr(&[300, 1], 2), &[300, 7], |p: f32, q: f32| p + q).is_none());
    }

    #[test]
    fn batched_matmul_broadcasts_and_handles_empty_contractions() {
        let a = arr(&[2, 1, 3, 4], 1);
        let b = arr(&[5, 4, 2], 2);
        let c = gemm_batched(&a, &b, matrixmultiply::sgemm).unwrap();
        assert_eq!(c.shape(), &[2, 5, 3, 2]);
        let g = matmul_generic(&a, &b).unwrap();
        for (x, y) in c.iter().zip(g.iter()) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()));
        }
        let e = gemm_batched(&arr(&[3, 0], 1), &arr(&[0, 2], 2), matrixmultiply::sgemm).unwrap();
        assert_eq!(e, ArrayD::<f32>::zeros(IxDyn(&[3, 2])));
    }
}
