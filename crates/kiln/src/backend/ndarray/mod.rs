//! The reference CPU engine, built on `ndarray`: every dtype, kernels that vectorise with
//! runtime SIMD dispatch (`simd`), rayon-parallel above a size threshold, fused reductions,
//! activations and softmax, and a threaded GEMM for float matmul (half types accumulate in
//! float32).
//!
//! Storage is a C-order buffer shared behind an `Arc` plus the shape it is viewed with, so
//! a reshape shares the buffer instead of copying it (as NumPy's does). Kernels read
//! operands as `ndarray` views and write fresh, fallibly allocated C-order outputs.
//!
//! Modules: `arith` (per-element math per dtype), `vmath` (vectorisable float32
//! transcendentals), `half_conv` (vectorisable half <-> f32), `elementwise` (maps, zips,
//! selects, casts), `reduce`, `nn`, `matmul`, `layout` (copies, permutes, gathers, sorts).

mod arg_avx512;
mod arith;
mod elementwise;
mod gemm;
mod half_conv;
mod layout;
mod matmul;
mod nn;
mod optim;
mod pow_avx512;
mod reduce;
mod simd;
mod sort_avx512;
pub(crate) mod vmath;

use super::{
    backend_err, guarded, Activation, ArgOp, Backend, BinaryOp, CmpOp, FusedReduce, Normalize,
    ReduceOp, ScanOp, SliceSpec, Storage, UnaryOp,
};
use crate::array::{ArrayData, HostElement};
use crate::dtype::DType;
use crate::element::{Element, Scalar};
use crate::error::{KilnError, Result};
use ndarray::{ArrayD, ArrayViewD, IxDyn, Slice};
use std::sync::Arc;

/// The ndarray engine. Stateless.
#[derive(Debug, Default, Clone, Copy)]
pub struct NdarrayBackend;

const NAME: &str = "ndarray";

/// The engine's storage: a C-order (standard layout) buffer and the shape it is viewed
/// with (equal element counts; a reshape changes only the shape). `shape: None` is the
/// buffer's own shape (a kernel's output: no second copy of the shape).
struct NdStore {
    data: Buf,
    reshaped: Option<Vec<usize>>,
}

/// A store's buffer: its own (a kernel's output, one allocation with the store) or that of
/// the store it reshapes (shared, never copied).
enum Buf {
    Own(ArrayData),
    Shared(Arc<NdStore>),
}

impl std::ops::Deref for Buf {
    type Target = ArrayData;
    fn deref(&self) -> &ArrayData {
        match self {
            Buf::Own(d) => d,
            Buf::Shared(st) => &st.data,
        }
    }
}

fn store(s: &Storage) -> Result<&NdStore> {
    s.0.downcast_ref::<NdStore>().ok_or_else(|| {
        KilnError::invalid(
            "ndarray backend",
            "storage belongs to another backend; transfer it first",
        )
    })
}

/// Wraps a kernel's output (always standard layout).
fn wrap(d: ArrayData) -> Storage {
    Storage(Arc::new(NdStore {
        data: Buf::Own(d),
        reshaped: None,
    }))
}

/// A borrowed, shaped view of a store, one variant per dtype.
#[allow(missing_docs)]
enum ArrView<'a> {
    Bool(ArrayViewD<'a, bool>),
    I8(ArrayViewD<'a, i8>),
    I16(ArrayViewD<'a, i16>),
    I32(ArrayViewD<'a, i32>),
    I64(ArrayViewD<'a, i64>),
    U8(ArrayViewD<'a, u8>),
    U16(ArrayViewD<'a, u16>),
    U32(ArrayViewD<'a, u32>),
    U64(ArrayViewD<'a, u64>),
    BF16(ArrayViewD<'a, half::bf16>),
    F16(ArrayViewD<'a, half::f16>),
    F32(ArrayViewD<'a, f32>),
    F64(ArrayViewD<'a, f64>),
    C64(ArrayViewD<'a, crate::element::C64>),
    C128(ArrayViewD<'a, crate::element::C128>),
}

/// Runs `$body` with `$a` bound to the typed view inside an [`ArrView`] and `$T` to its
/// element type.
macro_rules! with_view {
    ($v:expr, $a:ident, $T:ident => $body:expr) => {
        match $v {
            ArrView::Bool($a) => {
                type $T = bool;
                $body
            }
            ArrView::I8($a) => {
                type $T = i8;
                $body
            }
            ArrView::I16($a) => {
                type $T = i16;
                $body
            }
            ArrView::I32($a) => {
                type $T = i32;
                $body
            }
            ArrView::I64($a) => {
                type $T = i64;
                $body
            }
            ArrView::U8($a) => {
                type $T = u8;
                $body
            }
            ArrView::U16($a) => {
                type $T = u16;
                $body
            }
            ArrView::U32($a) => {
                type $T = u32;
                $body
            }
            ArrView::U64($a) => {
                type $T = u64;
                $body
            }
            ArrView::BF16($a) => {
                type $T = half::bf16;
                $body
            }
            ArrView::F16($a) => {
                type $T = half::f16;
                $body
            }
            ArrView::F32($a) => {
                type $T = f32;
                $body
            }
            ArrView::F64($a) => {
                type $T = f64;
                $body
            }
            ArrView::C64($a) => {
                type $T = crate::element::C64;
                $body
            }
            ArrView::C128($a) => {
                type $T = crate::element::C128;
                $body
            }
        }
    };
}
pub(crate) use with_view;

/// Typed views: the element types with an [`ArrView`] variant.
trait ViewElement: HostElement {
    fn of<'a, 'b>(v: &'b ArrView<'a>) -> Option<&'b ArrayViewD<'a, Self>>;
}
macro_rules! view_element {
    ($($t:ty => $v:ident),*) => {$(
        impl ViewElement for $t {
            fn of<'a, 'b>(v: &'b ArrView<'a>) -> Option<&'b ArrayViewD<'a, Self>> {
                if let ArrView::$v(a) = v { Some(a) } else { None }
            }
        }
    )*};
}
view_element!(bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
    u32 => U32, u64 => U64, half::bf16 => BF16, half::f16 => F16, f32 => F32, f64 => F64,
    crate::element::C64 => C64, crate::element::C128 => C128);

impl NdStore {
    fn dtype(&self) -> DType {
        self.data.dtype()
    }
    fn shape(&self) -> &[usize] {
        self.reshaped
            .as_deref()
            .unwrap_or_else(|| self.data.shape())
    }
    fn view(&self) -> Result<ArrView<'_>> {
        let bad = |e: ndarray::ShapeError| KilnError::invalid("ndarray backend", e.to_string());
        Ok(crate::with_array!(&*self.data, a, T => {
            let v = match &self.reshaped {
                None => a.view(),
                Some(s) => a.view().into_shape_with_order(IxDyn(s)).map_err(bad)?,
            };
            <T as IntoView>::into_view(v)
        }))
    }
}

/// An [`ArrView`] from a typed view.
trait IntoView: Sized {
    fn into_view(v: ArrayViewD<'_, Self>) -> ArrView<'_>;
}
macro_rules! into_view {
    ($($t:ty => $v:ident),*) => {$(
        impl IntoView for $t {
            fn into_view(v: ArrayViewD<'_, Self>) -> ArrView<'_> { ArrView::$v(v) }
        }
    )*};
}
into_view!(bool => Bool, i8 => I8, i16 => I16, i32 => I32, i64 => I64, u8 => U8, u16 => U16,
    u32 => U32, u64 => U64, half::bf16 => BF16, half::f16 => F16, f32 => F32, f64 => F64,
    crate::element::C64 => C64, crate::element::C128 => C128);

/// The typed view of a second operand, which must have the first one's dtype.
fn same<'a, T: ViewElement>(
    v: &'a ArrView<'a>,
    op: &str,
    want: DType,
) -> Result<&'a ArrayViewD<'a, T>> {
    T::of(v).ok_or_else(|| {
        backend_err(
            NAME,
            op,
            want,
            format!("operands must share one dtype ({} expected)", T::DTYPE),
        )
    })
}

fn dtype_of(v: &ArrView<'_>) -> DType {
    with_view!(v, _a, T => <T as Element>::DTYPE)
}

fn predicate<T: Element>(op: UnaryOp, a: &ArrayViewD<'_, T>) -> Result<Option<ArrayData>> {
    use elementwise::map;
    let is_inf = |x: T| match x.to_scalar() {
        Scalar::Float(f) => f.is_infinite(),
        Scalar::Complex(c) => c.re.is_infinite() || c.im.is_infinite(),
        _ => false,
    };
    Ok(Some(ArrayData::Bool(match op {
        UnaryOp::IsNan => map(a, "isnan", |x| x.is_nan())?,
        UnaryOp::IsInf => map(a, "isinf", is_inf)?,
        UnaryOp::IsFinite => map(a, "isfinite", move |x| !x.is_nan() && !is_inf(x))?,
        UnaryOp::LogicalNot => map(a, "logical_not", |x| !x.nonzero())?,
        _ => return Ok(None),
    })))
}

/// Float predicates without the trip through [`Scalar`] (they vectorise).
fn float_predicate<F: num_traits::Float + Element>(
    op: UnaryOp,
    a: &ArrayViewD<'_, F>,
) -> Result<Option<ArrayData>> {
    use elementwise::map;
    Ok(Some(ArrayData::Bool(match op {
        UnaryOp::IsNan => map(a, "isnan", |x: F| num_traits::Float::is_nan(x))?,
        UnaryOp::IsInf => map(a, "isinf", |x: F| x.is_infinite())?,
        UnaryOp::IsFinite => map(a, "isfinite", |x: F| x.is_finite())?,
        UnaryOp::LogicalNot => map(a, "logical_not", |x: F| {
            x == <F as num_traits::Zero>::zero()
        })?,
        _ => return Ok(None),
    })))
}

fn complex_to_real(op: UnaryOp, d: &ArrView<'_>) -> Result<Option<ArrayData>> {
    use elementwise::map;
    Ok(Some(match (op, d) {
        (UnaryOp::Abs, ArrView::C64(a)) => ArrayData::F32(map(a, "abs", |z| z.norm())?),
        (UnaryOp::Abs, ArrView::C128(a)) => ArrayData::F64(map(a, "abs", |z| z.norm())?),
        (UnaryOp::Real, ArrView::C64(a)) => ArrayData::F32(map(a, "real", |z| z.re)?),
        (UnaryOp::Real, ArrView::C128(a)) => ArrayData::F64(map(a, "real", |z| z.re)?),
        (UnaryOp::Imag, ArrView::C64(a)) => ArrayData::F32(map(a, "imag", |z| z.im)?),
        (UnaryOp::Imag, ArrView::C128(a)) => ArrayData::F64(map(a, "imag", |z| z.im)?),
        _ => return Ok(None),
    }))
}

fn compare_typed<T: Element>(
    op: CmpOp,
    a: &ArrayViewD<'_, T>,
    b: &ArrayViewD<'_, T>,
    shape: &[usize],
) -> Result<ArrayD<bool>> {
    use elementwise::zip2;
    let n = "compare";
    match op {
        CmpOp::Eq => zip2(a, b, shape, n, |x, y| x == y),
        CmpOp::Ne => zip2(a, b, shape, n, |x, y| x != y),
        CmpOp::Lt => zip2(a, b, shape, n, |x, y| x.lt(y)),
        CmpOp::Gt => zip2(a, b, shape, n, |x, y| y.lt(x)),
        CmpOp::Le => zip2(a, b, shape, n, |x, y| x.lt(y) || x == y),
        CmpOp::Ge => zip2(a, b, shape, n, |x, y| y.lt(x) || x == y),
    }
}

/// Comparisons of half types in f32 (the `half` crate's `PartialOrd` converts with a run-time
/// feature check per element).
fn compare_half<H: Copy + Send + Sync>(
    op: CmpOp,
    a: &ArrayViewD<'_, H>,
    b: &ArrayViewD<'_, H>,
    shape: &[usize],
    w: impl Fn(H) -> f32 + Copy + Sync,
) -> Result<ArrayD<bool>> {
    use elementwise::zip2;
    let n = "compare";
    match op {
        CmpOp::Eq => zip2(a, b, shape, n, move |x, y| w(x) == w(y)),
        CmpOp::Ne => zip2(a, b, shape, n, move |x, y| w(x) != w(y)),
        CmpOp::Lt => zip2(a, b, shape, n, move |x, y| w(x) < w(y)),
        CmpOp::Gt => zip2(a, b, shape, n, move |x, y| w(x) > w(y)),
        CmpOp::Le => zip2(a, b, shape, n, move |x, y| w(x) <= w(y)),
        CmpOp::Ge => zip2(a, b, shape, n, move |x, y| w(x) >= w(y)),
    }
}

/// An error unless `axes` are sorted, unique and below `ndim` (the contract; direct callers
/// of the `Backend` API can break it).
fn check_axes(op: &str, ndim: usize, axes: &[usize]) -> Result<()> {
    let ok = axes.iter().all(|&a| a < ndim) && axes.windows(2).all(|w| w[0] < w[1]);
    if ok {
        Ok(())
    } else {
        Err(KilnError::invalid(
            op,
            format!(
                "axes {axes:?} must be sorted, unique and below the {ndim} axes of the operand"
            ),
        ))
    }
}

/// An error unless `axes` is a permutation of `0..ndim`.
fn check_perm(ndim: usize, axes: &[usize]) -> Result<()> {
    let mut seen = vec![false; ndim];
    for &a in axes {
        if a >= ndim || std::mem::replace(&mut seen[a], true) {
            return Err(KilnError::invalid(
                "transpose",
                format!("{axes:?} is not a permutation of the {ndim} axes"),
            ));
        }
    }
    if axes.len() != ndim {
        return Err(KilnError::invalid(
            "transpose",
            format!("{axes:?} is not a permutation of the {ndim} axes"),
        ));
    }
    Ok(())
}

/// Runs `f` on the store's view.
fn on<R>(s: &Storage, f: impl FnOnce(&NdStore, ArrView<'_>) -> Result<R>) -> Result<R> {
    let st = store(s)?;
    let v = st.view()?;
    f(st, v)
}

impl Backend for NdarrayBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> super::BackendKind {
        super::BackendKind::Ndarray
    }

    fn describe(&self, s: &Storage) -> Result<(DType, Vec<usize>)> {
        let st = store(s)?;
        Ok((st.dtype(), st.shape().to_vec()))
    }

    fn upload(&self, data: ArrayData) -> Result<Storage> {
        // Kernels read C-order buffers: a Fortran-order (or otherwise strided) array is
        // copied into C order once, here.
        let standard = crate::with_array!(&data, a, _T => a.is_standard_layout());
        if standard {
            return Ok(wrap(data));
        }
        let c =
            crate::with_array!(&data, a, T => T::wrap(layout::strided_copy(&a.view(), "upload")?));
        Ok(wrap(c))
    }

    fn download(&self, s: &Storage) -> Result<ArrayData> {
        let st = store(s)?;
        if st.reshaped.is_none() {
            return Ok((*st.data).clone());
        }
        let v = st.view()?;
        Ok(with_view!(&v, a, T => T::wrap(layout::strided_copy(a, "download")?)))
    }

    fn cast(&self, s: &Storage, to: DType) -> Result<Storage> {
        guarded("cast", || {
            on(s, |st, v| {
                if st.dtype() == to {
                    return Ok(s.clone());
                }
                Ok(wrap(elementwise::cast(&v, to)?))
            })
        })
    }

    fn unary(&self, op: UnaryOp, s: &Storage) -> Result<Storage> {
        guarded("unary", || {
            on(s, |st, v| {
                // Identity ops of real dtypes share the buffer (NumPy's `real(x)` is `x`), and
                // their imaginary part is lazily zeroed memory.
                if matches!(op, UnaryOp::Real | UnaryOp::Conj) && !st.dtype().is_complex() {
                    return Ok(s.clone());
                }
                if op == UnaryOp::Imag && !st.dtype().is_complex() {
                    let shape = st.shape().to_vec();
                    let n = st.data.len();
                    return Ok(wrap(
                        crate::with_dtype!(st.dtype(), T => T::wrap(elementwise::shaped(&shape, crate::hostmem::zeroed_for::<T>(n, "imag", &shape)?)?)),
                    ));
                }
                let r = match &v {
                    ArrView::F32(a) => float_predicate(op, a)?,
                    ArrView::F64(a) => float_predicate(op, a)?,
                    _ => with_view!(&v, a, _T => predicate(op, a)?),
                };
                if let Some(r) = r {
                    return Ok(wrap(r));
                }
                if let Some(r) = complex_to_real(op, &v)? {
                    return Ok(wrap(r));
                }
                if let ArrView::F32(a) = &v {
                    if let Some(r) = elementwise::unary_f32_rare(op, a)? {
                        return Ok(wrap(ArrayData::F32(r)));
                    }
                }
                let mut r = with_view!(&v, a, T => elementwise::unary_arith::<T>(op, a)?);
                if matches!(op, UnaryOp::Sin | UnaryOp::Cos | UnaryOp::Tan) {
                    fix_huge_trig(op, &v, &mut r);
                }
                Ok(wrap(r))
            })
        })
    }

    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("binary", || {
            let (va, vb) = (store(a)?.view()?, store(b)?.view()?);
            let d = dtype_of(&va);
            if op == BinaryOp::Pow && d.kind() == crate::dtype::DTypeKind::Int {
                let neg = with_view!(&vb, y, T => y.iter().any(|x| Element::lt(*x, <T as Element>::zero())));
                if neg {
                    return Err(KilnError::not_allowed(
                        "power",
                        &[d],
                        "integers to negative integer powers are not allowed (as in NumPy); cast the base to a float dtype first",
                    ));
                }
            }
            if let (BinaryOp::Pow, ArrView::F32(x), ArrView::F32(y)) = (op, &va, &vb) {
                if let Some(r) = elementwise::pow_f32_contiguous(x, y, shape)? {
                    return Ok(wrap(ArrayData::F32(r)));
                }
            }
            Ok(wrap(with_view!(&va, x, T => {
                let y = same::<T>(&vb, "binary", d)?;
                elementwise::binary_arith::<T>(op, x, y, shape)?
            })))
        })
    }

    fn compare(&self, op: CmpOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("compare", || {
            let (va, vb) = (store(a)?.view()?, store(b)?.view()?);
            let d = dtype_of(&va);
            let out = match &va {
                ArrView::F16(x) => compare_half(
                    op,
                    x,
                    same(&vb, "compare", d)?,
                    shape,
                    half_conv::f16_to_f32,
                )?,
                ArrView::BF16(x) => compare_half(
                    op,
                    x,
                    same(&vb, "compare", d)?,
                    shape,
                    half_conv::bf16_to_f32,
                )?,
                _ => {
                    with_view!(&va, x, T => compare_typed::<T>(op, x, same::<T>(&vb, "compare", d)?, shape)?)
                }
            };
            Ok(wrap(ArrayData::Bool(out)))
        })
    }

    fn select(&self, cond: &Storage, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("select", || {
            let vc = store(cond)?.view()?;
            let c = same::<bool>(&vc, "where", DType::Bool)?;
            let (va, vb) = (store(a)?.view()?, store(b)?.view()?);
            let d = dtype_of(&va);
            Ok(wrap(with_view!(&va, x, T => {
                T::wrap(elementwise::select(c, x, same::<T>(&vb, "where", d)?, shape)?)
            })))
        })
    }

    fn reduce(&self, op: ReduceOp, s: &Storage, axes: &[usize], keepdims: bool) -> Result<Storage> {
        guarded("reduce", || {
            on(s, |st, v| {
                check_axes("reduce", st.shape().len(), axes)?;
                if let Some(r) = reduce::reduce_fast(op, &v, axes, keepdims)? {
                    return Ok(wrap(r));
                }
                Ok(wrap(
                    with_view!(&v, a, T => reduce::reference::reduce::<T>(op, a, axes, keepdims)?),
                ))
            })
        })
    }

    fn reduce_fused(
        &self,
        op: FusedReduce,
        s: &Storage,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<Option<Storage>> {
        guarded("reduce", || {
            on(s, |st, v| {
                check_axes("reduce", st.shape().len(), axes)?;
                Ok(reduce::reduce_fused(op, &v, axes, keepdims)?.map(wrap))
            })
        })
    }

    fn arg_reduce(&self, op: ArgOp, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("arg_reduce", || {
            on(s, |st, v| {
                check_axes("arg_reduce", st.shape().len(), &[axis])?;
                if let Some(r) = reduce::arg_fast(op, &v, axis)? {
                    return Ok(wrap(r));
                }
                Ok(wrap(
                    with_view!(&v, a, T => reduce::reference::arg::<T>(op, a, axis)?),
                ))
            })
        })
    }

    fn scan(&self, op: ScanOp, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("scan", || {
            on(s, |st, v| {
                check_axes("scan", st.shape().len(), &[axis])?;
                Ok(wrap(
                    with_view!(&v, a, T => reduce::scan_fast::<T>(op, a, axis)?),
                ))
            })
        })
    }

    fn activation(&self, act: Activation, s: &Storage) -> Result<Option<Storage>> {
        guarded("activation", || {
            on(s, |_, v| Ok(nn::activation(act, &v)?.map(wrap)))
        })
    }

    fn normalize(&self, op: Normalize, s: &Storage, axis: usize) -> Result<Option<Storage>> {
        guarded("normalize", || {
            on(s, |st, v| {
                check_axes("softmax", st.shape().len(), &[axis])?;
                Ok(nn::normalize(op, &v, axis)?.map(wrap))
            })
        })
    }

    fn optimizer_step(
        &self,
        step: super::OptimizerStep,
        w: &Storage,
        g: &Storage,
        slots: &[&Storage],
    ) -> Result<Option<Vec<Storage>>> {
        guarded("optimizer_step", || {
            let views = std::iter::once(w)
                .chain(std::iter::once(g))
                .chain(slots.iter().copied())
                .map(|s| store(s).and_then(|st| st.view()))
                .collect::<Result<Vec<_>>>()?;
            Ok(optim::step(step, &views)?.map(|v| v.into_iter().map(wrap).collect()))
        })
    }

    fn one_hot(&self, indices: &Storage, classes: usize, dtype: DType) -> Result<Option<Storage>> {
        guarded("one_hot", || {
            on(indices, |st, v| {
                let mut shape = st.shape().to_vec();
                shape.push(classes);
                let n = crate::array::checked_numel(&shape, "one_hot")?;
                let idx: Vec<i64> = match &v {
                    ArrView::I8(a) => a.iter().map(|i| *i as i64).collect(),
                    ArrView::I16(a) => a.iter().map(|i| *i as i64).collect(),
                    ArrView::I32(a) => a.iter().map(|i| *i as i64).collect(),
                    ArrView::I64(a) => a.iter().copied().collect(),
                    ArrView::U8(a) => a.iter().map(|i| *i as i64).collect(),
                    ArrView::U16(a) => a.iter().map(|i| *i as i64).collect(),
                    ArrView::U32(a) => a.iter().map(|i| *i as i64).collect(),
                    // Beyond i64::MAX is beyond any class count.
                    ArrView::U64(a) => a.iter().map(|i| i64::try_from(*i).unwrap_or(-1)).collect(),
                    _ => return Ok(None),
                };
                let out = crate::with_dtype!(dtype, T => {
                    // Zeroed pages, then one store per row (as NumPy's `zeros` + assignment).
                    let mut buf = crate::hostmem::zeroed_for::<T>(n, "one_hot", &shape)?;
                    for (row, &i) in buf.chunks_mut(classes.max(1)).zip(&idx) {
                        if i >= 0 && (i as u64) < classes as u64 {
                            row[i as usize] = T::one();
                        }
                    }
                    T::wrap(elementwise::shaped(&shape, buf)?)
                });
                Ok(Some(wrap(out)))
            })
        })
    }

    fn triangle(&self, s: &Storage, k: isize, upper: bool) -> Result<Option<Storage>> {
        guarded("triangle", || {
            on(s, |st, v| {
                if st.shape().len() < 2 {
                    return Ok(None);
                }
                Ok(Some(wrap(with_view!(&v, a, T => {
                    T::wrap(layout::triangle(a, k, upper)?)
                }))))
            })
        })
    }

    fn matmul(&self, a: &Storage, b: &Storage, ta: bool, tb: bool) -> Result<Storage> {
        guarded("matmul", || {
            let (va, vb) = (store(a)?.view()?, store(b)?.view()?);
            Ok(wrap(matmul::matmul(&va, &vb, ta, tb)?))
        })
    }

    fn reshape(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        let st = store(s)?;
        let n = crate::array::checked_numel(shape, "reshape")?;
        if n != st.data.len() {
            return Err(KilnError::shape(
                "reshape",
                st.shape(),
                shape,
                format!("cannot reshape {} elements into {shape:?}", st.data.len()),
            ));
        }
        // (A reshape of a reshape shares the first store's buffer: one hop at most.)
        let base = match &st.data {
            Buf::Own(_) => Arc::clone(&s.0)
                .downcast::<NdStore>()
                .map_err(|_| KilnError::invalid("reshape", "storage belongs to another backend"))?,
            Buf::Shared(b) => Arc::clone(b),
        };
        Ok(Storage(Arc::new(NdStore {
            reshaped: (shape != base.data.shape()).then(|| shape.to_vec()),
            data: Buf::Shared(base),
        })))
    }

    fn permute(&self, s: &Storage, axes: &[usize]) -> Result<Storage> {
        guarded("permute", || {
            on(s, |st, v| {
                check_perm(st.shape().len(), axes)?;
                Ok(wrap(
                    with_view!(&v, a, T => T::wrap(layout::permute(a, axes)?)),
                ))
            })
        })
    }

    fn broadcast_to(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("broadcast_to", || {
            on(s, |_, v| {
                Ok(wrap(with_view!(&v, a, T => {
                    let b = a.broadcast(IxDyn(shape)).ok_or_else(|| KilnError::shape("broadcast_to", a.shape(), shape, "cannot broadcast"))?;
                    T::wrap(layout::strided_copy(&b, "broadcast_to")?)
                })))
            })
        })
    }

    fn slice(&self, s: &Storage, specs: &[SliceSpec]) -> Result<Storage> {
        guarded("slice", || {
            on(s, |_, v| {
                Ok(wrap(with_view!(&v, a, T => {
                    let w = a.slice_each_axis(|ax| {
                        let sp = specs[ax.axis.0];
                        Slice::new(sp.start as isize, Some(sp.end as isize), sp.step)
                    });
                    T::wrap(layout::strided_copy(&w, "slice")?)
                })))
            })
        })
    }

    fn concat(&self, parts: &[&Storage], axis: usize) -> Result<Storage> {
        guarded("concat", || {
            let views: Vec<ArrView<'_>> = parts
                .iter()
                .map(|p| store(p)?.view())
                .collect::<Result<_>>()?;
            let first = views
                .first()
                .ok_or_else(|| KilnError::invalid("concatenate", "needs at least one tensor"))?;
            let d = dtype_of(first);
            Ok(wrap(with_view!(first, _a, T => {
                let typed: Vec<ArrayViewD<'_, T>> = views.iter().map(|v| same::<T>(v, "concatenate", d).cloned()).collect::<Result<_>>()?;
                T::wrap(layout::concat(&typed, axis)?)
            })))
        })
    }

    fn index_select(&self, s: &Storage, indices: &[usize], axis: usize) -> Result<Storage> {
        guarded("index_select", || {
            on(s, |st, v| {
                check_axes("take", st.shape().len(), &[axis])?;
                Ok(wrap(
                    with_view!(&v, a, T => T::wrap(layout::index_select(a, indices, axis)?)),
                ))
            })
        })
    }

    fn index_add(&self, s: &Storage, indices: &[usize], axis: usize, n: usize) -> Result<Storage> {
        guarded("index_add", || {
            on(s, |st, v| {
                check_axes("index_add", st.shape().len(), &[axis])?;
                Ok(wrap(
                    with_view!(&v, a, T => T::wrap(layout::index_add(a, indices, axis, n)?)),
                ))
            })
        })
    }

    fn gather(&self, s: &Storage, indices: &Storage, axis: usize) -> Result<Storage> {
        guarded("gather", || {
            let vi = store(indices)?.view()?;
            let idx = same::<i64>(&vi, "take_along_axis", DType::Int64)?;
            on(s, |_, v| {
                Ok(wrap(
                    with_view!(&v, a, T => T::wrap(layout::gather(a, idx, axis)?)),
                ))
            })
        })
    }

    fn pad(&self, s: &Storage, widths: &[(usize, usize)], value: Scalar) -> Result<Storage> {
        guarded("pad", || {
            on(s, |_, v| {
                Ok(wrap(
                    with_view!(&v, a, T => T::wrap(layout::pad(a, widths, T::from_scalar(value))?)),
                ))
            })
        })
    }

    fn sort(&self, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("sort", || {
            on(s, |st, v| {
                check_axes("sort", st.shape().len(), &[axis])?;
                let (vals, _) = sort_any(&v, axis, false)?;
                vals.map(wrap)
                    .ok_or_else(|| KilnError::invalid("sort", "no values"))
            })
        })
    }

    fn argsort(&self, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("argsort", || {
            on(s, |st, v| {
                check_axes("argsort", st.shape().len(), &[axis])?;
                let (_, idx) = sort_any(&v, axis, true)?;
                idx.map(wrap)
                    .ok_or_else(|| KilnError::invalid("argsort", "no indices"))
            })
        })
    }
}

/// The vectorised float32 sin/cos/tan reduce arguments exactly only up to |x| = 2^30 (and
/// return NaN beyond); those rare lanes are recomputed here with f64's functions, which
/// reduce any float exactly.
fn fix_huge_trig(op: UnaryOp, v: &ArrView<'_>, out: &mut ArrayData) {
    let f = |x: f32| -> f32 {
        let x = x as f64;
        (match op {
            UnaryOp::Sin => x.sin(),
            UnaryOp::Cos => x.cos(),
            _ => x.tan(),
        }) as f32
    };
    match (v, out) {
        (ArrView::F32(a), ArrayData::F32(o)) => {
            let (Some(xs), Some(os)) = (a.as_slice(), o.as_slice_mut()) else {
                return;
            };
            let any = simd::run(|| {
                xs.iter()
                    .fold(false, |h, &x| h | vmath::needs_scalar_trig(x))
            });
            if any {
                for (o, &x) in os.iter_mut().zip(xs) {
                    if vmath::needs_scalar_trig(x) {
                        *o = f(x);
                    }
                }
            }
        }
        (ArrView::BF16(a), ArrayData::BF16(o)) => {
            let (Some(xs), Some(os)) = (a.as_slice(), o.as_slice_mut()) else {
                return;
            };
            for (o, &x) in os.iter_mut().zip(xs) {
                let w = half_conv::bf16_to_f32(x);
                if vmath::needs_scalar_trig(w) {
                    *o = half_conv::bf16_from_f32(f(w));
                }
            }
        }
        _ => {}
    }
}

/// Sorts any dtype: integer keys for real dtypes, a comparison sort for complex.
fn sort_any(
    v: &ArrView<'_>,
    axis: usize,
    indices: bool,
) -> Result<(Option<ArrayData>, Option<ArrayData>)> {
    macro_rules! keyed {
        ($a:expr, $T:ty) => {{
            let (vals, idx) = layout::sort::<$T>($a, axis, indices)?;
            (vals.map(<$T>::wrap), idx.map(ArrayData::I64))
        }};
    }
    Ok(match v {
        ArrView::Bool(a) => keyed!(a, bool),
        ArrView::I8(a) => keyed!(a, i8),
        ArrView::I16(a) => keyed!(a, i16),
        ArrView::I32(a) => keyed!(a, i32),
        ArrView::I64(a) => keyed!(a, i64),
        ArrView::U8(a) => keyed!(a, u8),
        ArrView::U16(a) => keyed!(a, u16),
        ArrView::U32(a) => keyed!(a, u32),
        ArrView::U64(a) => keyed!(a, u64),
        ArrView::BF16(a) => keyed!(a, half::bf16),
        ArrView::F16(a) => keyed!(a, half::f16),
        ArrView::F32(a) => keyed!(a, f32),
        ArrView::F64(a) => keyed!(a, f64),
        ArrView::C64(a) => {
            let (vals, idx) = layout::sort_complex(a, axis, indices)?;
            (vals.map(ArrayData::C64), idx.map(ArrayData::I64))
        }
        ArrView::C128(a) => {
            let (vals, idx) = layout::sort_complex(a, axis, indices)?;
            (vals.map(ArrayData::C128), idx.map(ArrayData::I64))
        }
    })
}

/// A xorshift64 generator for the kernel tests (deterministic, no dependency).
#[cfg(test)]
fn xorshift(mut s: u64) -> impl FnMut() -> u64 {
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// A deterministic float32 test array with values in [-5, 5).
#[cfg(test)]
fn test_arr(shape: &[usize], seed: u64) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    ArrayD::from_shape_vec(
        IxDyn(shape),
        (0..n)
            .map(|i| ((i as u64 * 2654435761 + seed) % 1000) as f32 * 0.01 - 5.0)
            .collect(),
    )
    .unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// `v` of `shape` cast to `dt`, held as the engine holds a tensor.
    fn stored(v: Vec<f32>, shape: &[usize], dt: DType) -> NdStore {
        let x = NdStore {
            reshaped: None,
            data: Buf::Own(ArrayData::from_shape_vec(shape, v).unwrap()),
        };
        NdStore {
            reshaped: None,
            data: Buf::Own(elementwise::cast(&x.view().unwrap(), dt).unwrap()),
        }
    }

    fn up(v: Vec<f32>, shape: &[usize]) -> Storage {
        NdarrayBackend
            .upload(ArrayData::from_shape_vec(shape, v).unwrap())
            .unwrap()
    }

    fn shapes_and_axes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
        prop::collection::vec(0usize..6, 0..5).prop_flat_map(|shape| {
            let nd = shape.len();
            (Just(shape), prop::collection::vec(any::<bool>(), nd)).prop_map(|(s, m)| {
                let axes = (0..s.len()).filter(|&i| m[i]).collect();
                (s, axes)
            })
        })
    }

    fn values(n: usize, seed: u64) -> Vec<f32> {
        (0..n)
            .map(|i| {
                let h = (i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 40;
                match h % 97 {
                    0 => f32::NAN,
                    1 => f32::INFINITY,
                    2 => -0.0,
                    _ => (h % 2001) as f32 * 0.01 - 10.0,
                }
            })
            .collect()
    }

    fn close(a: &ArrayData, b: &ArrayData, rel: f64) -> bool {
        a.shape() == b.shape()
            && a.dtype() == b.dtype()
            && a.to_f64_vec().iter().zip(b.to_f64_vec()).all(|(x, y)| {
                (x.is_nan() && y.is_nan()) || x == &y || (x - y).abs() <= rel * (1.0 + y.abs())
            })
    }

    /// The float max/min/argmax/argmin row kernels (vector lanes, a NaN found by a second
    /// pass, the hit searched by chunks; argmax/argmin's chunk extremes, over one row and
    /// over several, and per thread's piece of one long row) equal the reference on rows
    /// long enough for every lane width, with a NaN, an infinity or a repeated extreme at
    /// the start, the middle, the lane remainder and the end.
    #[test]
    fn float_extremes_of_long_rows_equal_the_reference() {
        // 270,000 elements split across threads (a parallel max, then a parallel search;
        // argmax/argmin by pieces combined in order).
        for len in [
            1usize, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65, 79, 80, 127, 128, 129, 200, 784, 2047,
            2048, 2049, 5000, 270_000,
        ] {
            let base: Vec<f32> = (0..len)
                .map(|i| ((i * 7919) % 1009) as f32 * 0.01 - 5.0)
                .collect();
            for pos in [0, len / 2, len.saturating_sub(3), len - 1] {
                for special in [
                    f32::NAN,
                    f32::INFINITY,
                    f32::NEG_INFINITY,
                    50.0,
                    -50.0,
                    -0.0,
                ] {
                    let mut v = base.clone();
                    v[pos] = special;
                    if special == 50.0 && len > 2 {
                        v[len - 1] = 50.0; // a tie: the first occurrence wins
                    }
                    for dt in [DType::Float32, DType::Float64, DType::Float16] {
                        let st = stored(v.clone(), &[1, len], dt);
                        let w = st.view().unwrap();
                        for axes in [vec![1], vec![0, 1]] {
                            for op in [ReduceOp::Max, ReduceOp::Min] {
                                let want = with_view!(&w, a, T => reduce::reference::reduce::<T>(op, a, &axes, false)).unwrap();
                                let got =
                                    reduce::reduce_fast(op, &w, &axes, false).unwrap().unwrap();
                                assert!(
                                    close(&got, &want, 0.0),
                                    "{op:?} {dt} len {len} pos {pos} {special}"
                                );
                            }
                        }
                        // Two rows (the row and its reverse) take the several-rows kernel.
                        let two: Vec<f32> = v.iter().chain(v.iter().rev()).copied().collect();
                        let two = stored(two, &[2, len], dt);
                        for w in [st.view().unwrap(), two.view().unwrap()] {
                            for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
                                let want =
                                    with_view!(&w, a, T => reduce::reference::arg::<T>(op, a, 1))
                                        .unwrap();
                                let got = reduce::arg_fast(op, &w, 1).unwrap().unwrap();
                                assert_eq!(
                                    got.to_f64_vec(),
                                    want.to_f64_vec(),
                                    "{op:?} {dt} len {len} pos {pos} {special}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Every fast reduction agrees with the reference path, for every set of axes of
        /// every small shape (NaN, inf and signed zeros included), in several dtypes.
        #[test]
        fn fast_reductions_equal_the_reference((shape, axes) in shapes_and_axes(), seed in any::<u64>(), keep in any::<bool>()) {
            let n: usize = shape.iter().product();
            let x = ArrayData::from_shape_vec(&shape, values(n, seed)).unwrap();
            for dt in [DType::Float32, DType::Float64, DType::BFloat16, DType::Int32, DType::UInt8, DType::Int64] {
                let d = elementwise::cast(&NdStore { reshaped: None, data: Buf::Own(x.clone()) }.view().unwrap(), dt).unwrap();
                let st = NdStore { reshaped: None, data: Buf::Own(d) };
                let v = st.view().unwrap();
                for op in [ReduceOp::Sum, ReduceOp::Prod, ReduceOp::Max, ReduceOp::Min, ReduceOp::All, ReduceOp::Any] {
                    let want = with_view!(&v, a, T => reduce::reference::reduce::<T>(op, a, &axes, keep));
                    let got = reduce::reduce_fast(op, &v, &axes, keep);
                    match (got, want) {
                        (Ok(Some(g)), Ok(w)) => prop_assert!(close(&g, &w, 1e-5), "{op:?} {dt} {shape:?} {axes:?}: {:?} vs {:?}", g.to_f64_vec(), w.to_f64_vec()),
                        (Ok(None), _) => {}
                        (Err(_), Err(_)) => {}
                        (g, w) => prop_assert!(false, "{op:?} {dt} {shape:?} {axes:?}: {:?} vs {:?}", g.map(|o| o.map(|d| d.to_f64_vec())), w.map(|d| d.to_f64_vec())),
                    }
                }
                if axes.len() == 1 {
                    for op in [ArgOp::ArgMax, ArgOp::ArgMin] {
                        let want = with_view!(&v, a, T => reduce::reference::arg::<T>(op, a, axes[0]));
                        let got = reduce::arg_fast(op, &v, axes[0]);
                        match (got, want) {
                            (Ok(Some(g)), Ok(w)) => prop_assert_eq!(g.to_f64_vec(), w.to_f64_vec()),
                            (Ok(None), _) | (Err(_), Err(_)) => {}
                            (g, w) => prop_assert!(false, "{op:?} {dt}: {:?} vs {:?}", g.is_ok(), w.is_ok()),
                        }
                    }
                    let want = with_view!(&v, a, T => reduce::reference::scan::<T>(ScanOp::CumSum, a, axes[0]));
                    let got = with_view!(&v, a, T => reduce::scan_fast::<T>(ScanOp::CumSum, a, axes[0]).unwrap());
                    prop_assert!(close(&got, &want, 0.0));
                }
            }
        }
    }

    /// float32 log, log2, log10, log1p, sin, cos and tan (fast lanes, rare special lanes
    /// recomputed per block) equal the full element function bit for bit, contiguous and transposed, with
    /// special values in some blocks (across threads: 40,000 elements) and none in others.
    #[test]
    fn f32_ops_with_rare_lanes_equal_the_element_function() {
        let n = 40_000usize;
        let mut v: Vec<f32> = (0..n)
            .map(|i| ((i * 7919) % 4001) as f32 * 1e-3 - 0.9)
            .collect();
        let specials = [
            0.0,
            -0.0,
            -1.0,
            -3.0,
            1e-40,
            1e-9,
            f32::INFINITY,
            f32::NAN,
            f32::NEG_INFINITY,
            // Trig lanes past the f32 reduction (2^17) and past the f64 one (2^30).
            2.0e5,
            -1.0e10,
            3.0e38,
        ];
        for (j, x) in specials.iter().enumerate() {
            v[j * 3001 + 17] = *x;
        }
        v[n - 1] = f32::NAN;
        type F = fn(f32) -> f32;
        // The trig functions as fix_huge_trig completes them beyond 2^30.
        fn huge(x: f32, f: fn(f32) -> f32, g: fn(f64) -> f64) -> f32 {
            if vmath::needs_scalar_trig(x) {
                g(x as f64) as f32
            } else {
                f(x)
            }
        }
        let full: [(UnaryOp, F); 7] = [
            (UnaryOp::Log, vmath::log),
            (UnaryOp::Log2, vmath::log2),
            (UnaryOp::Log10, vmath::log10),
            (UnaryOp::Log1p, vmath::log1p),
            (UnaryOp::Sin, |x| huge(x, vmath::sin, f64::sin)),
            (UnaryOp::Cos, |x| huge(x, vmath::cos, f64::cos)),
            (UnaryOp::Tan, |x| huge(x, vmath::tan, f64::tan)),
        ];
        let s = up(v.clone(), &[200, 200]);
        let t = NdarrayBackend.permute(&s, &[1, 0]).unwrap();
        let vt: Vec<f32> = (0..n).map(|i| v[(i % 200) * 200 + i / 200]).collect();
        for (op, f) in full {
            for (st, xs) in [(&s, &v), (&t, &vt)] {
                let got = NdarrayBackend
                    .download(&NdarrayBackend.unary(op, st).unwrap())
                    .unwrap();
                let ArrayData::F32(g) = got else {
                    panic!("{op:?}: not float32")
                };
                for (i, (y, x)) in g.iter().zip(xs.iter()).enumerate() {
                    assert_eq!(y.to_bits(), f(*x).to_bits(), "{op:?}({x:e}) at {i}");
                }
            }
        }
    }

    /// count_nonzero's 32-lane row kernel counts long rows exactly (every lane width and
    /// remainder, over one row, over rows and over all axes across threads), with -0.0,
    /// NaN and zeros in runs, in float and integer dtypes.
    #[test]
    fn count_nonzero_of_long_rows_is_exact() {
        for len in [1usize, 31, 32, 33, 100, 1000, 270_000] {
            let v: Vec<f32> = (0..len)
                .map(|i| match i % 7 {
                    0 | 3 => 0.0,
                    1 => -0.0,
                    5 if i % 11 == 0 => f32::NAN,
                    _ => (i % 13) as f32 - 6.0,
                })
                .collect();
            let rows = if len % 2 == 0 { 2 } else { 1 };
            let want_rows: Vec<f64> = v
                .chunks(len / rows)
                .map(|r| r.iter().filter(|x| **x != 0.0).count() as f64)
                .collect();
            let want_all = want_rows.iter().sum::<f64>();
            for dt in [
                DType::Float32,
                DType::Float64,
                DType::Float16,
                DType::Int8,
                DType::Int64,
            ] {
                let st = stored(v.clone(), &[rows, len / rows], dt);
                let w = st.view().unwrap();
                // Casting NaN to an integer gives 0 (NumPy's cast is undefined there).
                let nan_zero = dt.kind() == crate::dtype::DTypeKind::Int;
                let adj = |want: f64, r: &[f32]| {
                    want - if nan_zero {
                        r.iter().filter(|x| x.is_nan()).count() as f64
                    } else {
                        0.0
                    }
                };
                let got = reduce::reduce_fused(FusedReduce::CountNonzero, &w, &[1], false)
                    .unwrap()
                    .unwrap();
                let want: Vec<f64> = want_rows
                    .iter()
                    .zip(v.chunks(len / rows))
                    .map(|(w, r)| adj(*w, r))
                    .collect();
                assert_eq!(got.to_f64_vec(), want, "{dt} len {len} axis 1");
                let got = reduce::reduce_fused(FusedReduce::CountNonzero, &w, &[0, 1], false)
                    .unwrap()
                    .unwrap();
                assert_eq!(
                    got.to_f64_vec(),
                    vec![adj(want_all, &v)],
                    "{dt} len {len} all axes"
                );
            }
        }
    }

    #[test]
    fn reshape_shares_the_buffer_and_checks_the_count() {
        let s = up(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]);
        let r = NdarrayBackend.reshape(&s, &[3, 2]).unwrap();
        assert!(std::ptr::eq(
            &*store(&s).unwrap().data,
            &*store(&r).unwrap().data
        ));
        // A reshape of the reshape still shares it (one hop, not a chain).
        let r2 = NdarrayBackend.reshape(&r, &[6]).unwrap();
        assert!(std::ptr::eq(
            &*store(&s).unwrap().data,
            &*store(&r2).unwrap().data
        ));
        assert!(matches!(&store(&r2).unwrap().data, Buf::Shared(b) if b.reshaped.is_none()));
        assert_eq!(NdarrayBackend.describe(&r).unwrap().1, vec![3, 2]);
        let t = NdarrayBackend.permute(&r, &[1, 0]).unwrap();
        assert_eq!(
            NdarrayBackend
                .download(&t)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
        );
        assert!(NdarrayBackend.reshape(&s, &[4, 2]).is_err());
        // A Fortran-order upload is stored in C order, with the same logical values.
        let f = ArrayD::from_shape_vec(
            ndarray::ShapeBuilder::f(IxDyn(&[2, 3])),
            vec![1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0],
        )
        .unwrap();
        let s = NdarrayBackend.upload(ArrayData::F32(f)).unwrap();
        assert_eq!(
            NdarrayBackend
                .download(&s)
                .unwrap()
                .to_vec::<f32>()
                .unwrap(),
            vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
        );
    }
}
