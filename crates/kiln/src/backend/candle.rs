//! The candle engine (`candle-core`): a second, independent implementation of the primitive
//! set, on candle's CPU backend (and CUDA/Metal with those cargo features).
//!
//! What candle really implements decides what this engine claims (see
//! `Capabilities::of_engine`): candle has no bool, int8, uint16, uint64 or complex dtype.
//! kiln stores bool as candle `U8` masks (what candle's comparisons return). On the host,
//! int8, uint16 and uint64 are *carried* in a candle dtype that holds every value exactly
//! (`I16`, `U32`, and `I64` bit for bit): layout primitives (reshape, permute, slice,
//! concatenation, broadcasting, take) run on candle, everything that computes on the values
//! runs on the reference kernels, so int8 wraps as int8 and `int8 @ int8` gives int32 as on
//! the ndarray engine. On a GPU the resolver substitutes or refuses them before they reach
//! this engine; complex is never held.
//!
//! Primitives candle has no kernel for (some math functions, integer division, sorting with
//! NumPy's NaN order, ...) are computed by kiln's reference kernels on the host copy. On the
//! CPU that is simply another CPU kernel; it is counted (`host_kernel_counts`) so the matrix
//! shows how much of the work candle itself did. On a GPU the same path is a CPU fallback:
//! it runs only under the `cpu-fallback` policy (not in strict mode), counted and warned
//! once per cause; otherwise the primitive is refused with an error that says so.
//!
//! candle panics on some inputs (`exp` on u8, integer division by zero); every call into
//! candle is wrapped so that a panic becomes an error, and kiln never sends those inputs.

use super::guarded;
use super::ndarray::NdarrayBackend;
use super::{
    backend_err, ArgOp, Backend, BackendKind, BinaryOp, CmpOp, ReduceOp, ScanOp, SliceSpec,
    Storage, UnaryOp,
};
use crate::array::ArrayData;
use crate::device::Device;
use crate::dtype::DType;
use crate::element::Scalar;
use crate::error::{KilnError, Result};
use candle_core as cc;
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, OnceLock};

const NAME: &str = "candle";

/// The candle engine for one device.
#[derive(Debug)]
pub struct CandleBackend {
    device: cc::Device,
    host: bool,
    label: Device,
}

struct CStore {
    t: cc::Tensor,
    dtype: DType,
}

static HOST_KERNELS: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// How often each primitive was computed by kiln's reference kernels instead of candle's,
/// by `op:dtype`.
pub fn host_kernel_counts() -> BTreeMap<String, usize> {
    HOST_KERNELS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone()
}

/// The candle engine for `device` (cpu and the simulated devices share candle's CPU
/// backend; `cuda:N` and `metal:N` need those features).
pub fn engine(device: Device) -> Result<Arc<dyn Backend>> {
    static CPU: OnceLock<Arc<dyn Backend>> = OnceLock::new();
    if device.runs_on_host() {
        return Ok(CPU
            .get_or_init(|| {
                Arc::new(CandleBackend {
                    device: cc::Device::Cpu,
                    host: true,
                    label: Device::Cpu,
                })
            })
            .clone());
    }
    // One candle device per GPU for the whole process: candle gives every `new_cuda` /
    // `new_metal` its own id (and CUDA stream and cuBLAS handle), and refuses binary ops
    // between tensors of two ids, so tensors placed on `cuda:0` at different times must share
    // the engine that opened it. A failed open is not cached (the next call tries again).
    static GPUS: Mutex<Vec<(Device, Arc<dyn Backend>)>> = Mutex::new(Vec::new());
    let mut gpus = GPUS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((_, e)) = gpus.iter().find(|(d, _)| *d == device) {
        return Ok(e.clone());
    }
    let dev = open(device)?;
    let e: Arc<dyn Backend> = Arc::new(CandleBackend {
        device: dev,
        host: false,
        label: device,
    });
    gpus.push((device, e.clone()));
    Ok(e)
}

static EMULATED: Mutex<Vec<Device>> = Mutex::new(Vec::new());

/// Test support: from now on `device` (a `cuda:N` or `metal:N`) opens as candle's CPU
/// device while staying a GPU in every other respect: its capability profile, tensor
/// placement, transfers, and the rule that a primitive candle has no kernel for is a
/// policy-governed CPU fallback there. It lets the suite exercise kiln's GPU code paths on
/// a machine without one (the test suite does this when no GPU opens); the kernels are candle's CPU kernels,
/// so it says nothing about candle's CUDA or Metal kernels themselves.
#[doc(hidden)]
pub fn emulate_gpu_on_cpu(device: Device) -> Result<()> {
    if device.runs_on_host() {
        return Err(KilnError::invalid(
            "emulate_gpu_on_cpu",
            format!("{device} is not a GPU; pass cuda:N or metal:N"),
        ));
    }
    let mut v = EMULATED.lock().unwrap_or_else(|e| e.into_inner());
    if !v.contains(&device) {
        v.push(device);
    }
    Ok(())
}

/// Whether `device` is emulated on the cpu (see [`emulate_gpu_on_cpu`]).
#[doc(hidden)]
pub fn is_emulated(device: Device) -> bool {
    EMULATED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .contains(&device)
}

/// Opens candle's device for a GPU.
#[allow(unreachable_code, unused_variables)]
fn open(device: Device) -> Result<cc::Device> {
    if is_emulated(device) {
        return Ok(cc::Device::Cpu);
    }
    let opened: cc::Result<cc::Device> = match device {
        #[cfg(feature = "cuda")]
        Device::Cuda(n) => cc::Device::new_cuda(n),
        #[cfg(feature = "metal")]
        Device::Metal(n) => cc::Device::new_metal(n),
        other => {
            return Err(KilnError::Device {
                device: other.to_string(),
                message: "this build of kiln has no candle support for it; build with `--features cuda` (NVIDIA) or `--features metal` (Apple), or use cpu, or a simulated profile such as sim:mps to test its dtype limits".into(),
            })
        }
    };
    opened.map_err(|e| KilnError::Device {
        device: device.to_string(),
        message: format!(
            "candle could not open it: {}; check that the driver sees the GPU (nvidia-smi for CUDA), or use cpu, or a simulated profile such as sim:mps to test its dtype limits",
            candle_message(&e)
        ),
    })
}

/// The candle dtype that stores a kiln dtype, if any.
pub fn physical(d: DType) -> Option<cc::DType> {
    Some(match d {
        DType::Bool | DType::UInt8 => cc::DType::U8,
        DType::UInt32 => cc::DType::U32,
        DType::Int16 => cc::DType::I16,
        DType::Int32 => cc::DType::I32,
        DType::Int64 => cc::DType::I64,
        DType::BFloat16 => cc::DType::BF16,
        DType::Float16 => cc::DType::F16,
        DType::Float32 => cc::DType::F32,
        DType::Float64 => cc::DType::F64,
        _ => return None,
    })
}

/// Whether `d` is carried (see the module docs): held in a wider candle dtype by `upload` /
/// `download`, touched on candle only by layout primitives.
fn is_carried(d: DType) -> bool {
    matches!(d, DType::Int8 | DType::UInt16 | DType::UInt64)
}

fn store(s: &Storage) -> Result<&CStore> {
    s.0.downcast_ref::<CStore>().ok_or_else(|| {
        KilnError::invalid(
            "candle backend",
            "storage belongs to another backend; transfer it with Tensor::to_backend first",
        )
    })
}

fn wrap(t: cc::Tensor, dtype: DType) -> Storage {
    Storage(Arc::new(CStore { t, dtype }))
}

/// A candle error's message without the stack trace candle attaches when `RUST_BACKTRACE`
/// is set (an error message names the problem and its fix; a trace belongs in a debugger).
fn candle_message(e: &cc::Error) -> String {
    match e {
        cc::Error::WithBacktrace { inner, .. } => candle_message(inner),
        e => e.to_string(),
    }
}

/// Runs a candle call, turning both its errors and its panics into kiln errors.
fn call<T>(op: &str, dtype: DType, f: impl FnOnce() -> cc::Result<T>) -> Result<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(backend_err(NAME, op, dtype, candle_message(&e))),
        Err(p) => Err(backend_err(
            NAME,
            op,
            dtype,
            format!("candle panicked: {}", crate::backend::panic_message(&*p)),
        )),
    }
}

fn is_float(d: DType) -> bool {
    d.is_float()
}

fn shape_of(t: &cc::Tensor) -> Vec<usize> {
    t.dims().to_vec()
}

/// `expm1`, `log1p`, `sign` and round-half-to-even composed from candle kernels, for GPUs
/// (candle has no kernel for the first two, rounds half away from zero, and its `sign`
/// drops NaN). `expm1` and `log1p` use Kahan's formulas (Goldberg, "What every computer
/// scientist should know about floating-point arithmetic", theorem 4): accurate to a few
/// ulps near zero, where `exp(x) - 1` and `log(1 + x)` lose every digit. Half precisions
/// are computed in float32.
fn gpu_unary(op: UnaryOp, x: &cc::Tensor) -> cc::Result<cc::Tensor> {
    let dt = x.dtype();
    let x = if matches!(dt, cc::DType::F16 | cc::DType::BF16) {
        x.to_dtype(cc::DType::F32)?
    } else {
        x.clone()
    };
    let r = match op {
        UnaryOp::Expm1 => {
            // u = e^x; u == 1: x; u - 1 == -1: -1; u == inf: inf; else (u - 1) * x / ln(u).
            let u = x.exp()?;
            let um1 = u.affine(1.0, -1.0)?;
            let body = um1.mul(&x.div(&u.log()?)?)?;
            let r = um1.eq(-1.0)?.where_cond(&um1, &body)?;
            let r = u.eq(1.0)?.where_cond(&x, &r)?;
            u.eq(f64::INFINITY)?.where_cond(&u, &r)?
        }
        UnaryOp::Log1p => {
            // u = 1 + x; u == 1: x; u == inf: inf; else ln(u) * x / (u - 1).
            let u = x.affine(1.0, 1.0)?;
            let body = u.log()?.mul(&x.div(&u.affine(1.0, -1.0)?)?)?;
            let r = u.eq(1.0)?.where_cond(&x, &body)?;
            u.eq(f64::INFINITY)?.where_cond(&u, &r)?
        }
        UnaryOp::Sign => {
            // (x > 0) - (x < 0), NaN kept (NumPy's sign).
            let s = x
                .gt(0.0)?
                .to_dtype(x.dtype())?
                .sub(&x.lt(0.0)?.to_dtype(x.dtype())?)?;
            x.ne(&x)?.where_cond(&x, &s)?
        }
        UnaryOp::Round => {
            // candle rounds ties away from zero; NumPy to even: a tie (x - floor(x) == 0.5,
            // exact) goes to 2 * round(x / 2), the even neighbour.
            let tie = x.sub(&x.floor()?)?.eq(0.5)?;
            let even = x.affine(0.5, 0.0)?.round()?.affine(2.0, 0.0)?;
            tie.where_cond(&even, &x.round()?)?
        }
        other => return Err(cc::Error::Msg(format!("no GPU composition for {other:?}"))),
    };
    r.to_dtype(dt)
}

/// The index of the first maximum (minimum) along `axis`, NumPy's argmax (argmin): the first
/// NaN wins when `nan_first`. Built from reductions whose result does not depend on the
/// order a GPU combines partial results in (max/min of values, then the smallest index that
/// holds it), so ties resolve to the first index on every device.
fn first_extreme(
    t: &cc::Tensor,
    op: ArgOp,
    axis: usize,
    nan_first: bool,
) -> cc::Result<cc::Tensor> {
    let dims = t.dims().to_vec();
    let n = dims[axis];
    let m = if op == ArgOp::ArgMax {
        t.max_keepdim(axis)?
    } else {
        t.min_keepdim(axis)?
    };
    let mut hit = t.broadcast_eq(&m)?;
    if nan_first {
        let nan = t.ne(t)?;
        let any = nan.max_keepdim(axis)?.broadcast_as(dims.clone())?;
        hit = any.where_cond(&nan, &hit)?;
    }
    let mut ishape = vec![1usize; dims.len()];
    ishape[axis] = n;
    let idx = cc::Tensor::arange(0i64, n as i64, t.device())?
        .reshape(ishape)?
        .broadcast_as(dims.clone())?;
    let none = cc::Tensor::full(n as i64, dims, t.device())?;
    hit.where_cond(&idx, &none)?
        .min_keepdim(axis)?
        .squeeze(axis)
}

/// NaN-propagating maximum/minimum in one pass over candle's CPU storage (NumPy's
/// semantics: NaN from either side wins), for contiguous operands of the output's shape or a
/// single value on one side.
struct NanExtreme {
    max: bool,
}

impl NanExtreme {
    fn fits(a: &cc::Tensor, b: &cc::Tensor, shape: &[usize]) -> bool {
        let whole = |t: &cc::Tensor| t.dims() == shape && t.is_contiguous();
        let one = |t: &cc::Tensor| t.elem_count() == 1;
        (whole(a) && (whole(b) || one(b))) || (one(a) && whole(b))
    }
}

impl cc::CustomOp2 for NanExtreme {
    fn name(&self) -> &'static str {
        "kiln-nan-extreme"
    }

    fn cpu_fwd(
        &self,
        s1: &cc::CpuStorage,
        l1: &cc::Layout,
        s2: &cc::CpuStorage,
        l2: &cc::Layout,
    ) -> cc::Result<(cc::CpuStorage, cc::Shape)> {
        fn run<T: Copy + PartialOrd>(
            x: &[T],
            l1: &cc::Layout,
            y: &[T],
            l2: &cc::Layout,
            max: bool,
        ) -> cc::Result<(Vec<T>, cc::Shape)> {
            fn span<'a, T>(l: &cc::Layout, v: &'a [T]) -> cc::Result<&'a [T]> {
                let o = l.start_offset();
                if l.shape().elem_count() == 1 {
                    return Ok(&v[o..o + 1]);
                }
                match l.contiguous_offsets() {
                    Some((a, b)) => Ok(&v[a..b]),
                    None => Err(cc::Error::Msg("kiln-nan-extreme: strided operand".into())),
                }
            }
            // NaN wins from either side (NaN is the one value unequal to itself); ties give
            // `b`, as NumPy's float32/float64 loops and the reference engine do
            // (np.maximum(-0., 0.) is 0.).
            #[allow(clippy::eq_op)]
            let f = move |a: T, b: T| {
                let keep_a = if max { b < a } else { a < b };
                if keep_a || a != a {
                    a
                } else {
                    b
                }
            };
            let (xs, ys) = (span(l1, x)?, span(l2, y)?);
            let (shape, out) = match (xs.len(), ys.len()) {
                (n, m) if n == m => (
                    l1.shape(),
                    xs.iter().zip(ys).map(|(a, b)| f(*a, *b)).collect(),
                ),
                (_, 1) => (l1.shape(), xs.iter().map(|a| f(*a, ys[0])).collect()),
                _ => (l2.shape(), ys.iter().map(|b| f(xs[0], *b)).collect()),
            };
            Ok((out, shape.clone()))
        }
        use cc::CpuStorage as S;
        macro_rules! each {
            ($($v:ident),*) => {
                match (s1, s2) {
                    $((S::$v(x), S::$v(y)) => {
                        let (v, sh) = run(x, l1, y, l2, self.max)?;
                        return Ok((S::$v(v), sh));
                    })*
                    _ => {}
                }
            };
        }
        each!(F32, F64, F16, BF16);
        Err(cc::Error::Msg(
            "kiln-nan-extreme: float operands of one dtype".into(),
        ))
    }
}

impl CandleBackend {
    /// Computes a primitive with kiln's reference kernels on the host copy (see the module
    /// docs for when this is allowed).
    fn host(
        &self,
        op: &str,
        dtype: DType,
        ins: &[&Storage],
        f: impl FnOnce(&NdarrayBackend, &[Storage]) -> Result<Storage>,
    ) -> Result<Storage> {
        let cause = format!("{op}:{dtype}");
        // Zero-element inputs carry no data to compute on: the reference kernels only give
        // the result's shape (or NumPy's error), so no fallback is involved.
        let empty = ins
            .iter()
            .all(|s| store(s).is_ok_and(|st| st.t.elem_count() == 0));
        if !self.host && !empty {
            super::host_fallback_allowed(NAME, op, dtype, self.label)?;
        }
        *HOST_KERNELS
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(cause)
            .or_default() += 1;
        let nd = NdarrayBackend;
        let ups = ins
            .iter()
            .map(|s| nd.upload(self.download(s)?))
            .collect::<Result<Vec<_>>>()?;
        let r = f(&nd, &ups)?;
        self.upload(nd.download(&r)?)
    }

    /// Computes `f` on the reference kernels when an input is a carried dtype (see the
    /// module docs); `None` when candle computes it.
    fn carried(
        &self,
        op: &str,
        ins: &[&Storage],
        f: impl FnOnce(&NdarrayBackend, &[Storage]) -> Result<Storage>,
    ) -> Result<Option<Storage>> {
        let held = ins
            .iter()
            .filter_map(|s| store(s).ok())
            .map(|st| st.dtype)
            .find(|d| is_carried(*d));
        match held {
            Some(d) => self.host(op, d, ins, f).map(Some),
            None => Ok(None),
        }
    }

    fn scalar_like(
        &self,
        value: f64,
        like: &cc::Tensor,
        op: &str,
        dtype: DType,
    ) -> Result<cc::Tensor> {
        call(op, dtype, || {
            cc::Tensor::full(value, like.dims(), &self.device)?.to_dtype(like.dtype())
        })
    }

    fn bcast(&self, t: &cc::Tensor, shape: &[usize], op: &str, dtype: DType) -> Result<cc::Tensor> {
        if t.dims() == shape {
            return Ok(t.clone());
        }
        call(op, dtype, || t.broadcast_as(shape))
    }

    /// Reduces `t` over `axes` one axis at a time with `f` (kept as size-1 axes).
    fn fold_axes(
        &self,
        t: &cc::Tensor,
        axes: &[usize],
        op: &str,
        dtype: DType,
        f: impl Fn(&cc::Tensor, usize) -> cc::Result<cc::Tensor>,
    ) -> Result<cc::Tensor> {
        let mut t = t.clone();
        for &a in axes {
            t = call(op, dtype, || f(&t, a))?;
        }
        Ok(t)
    }
}

impl Backend for CandleBackend {
    fn name(&self) -> &'static str {
        NAME
    }

    fn kind(&self) -> BackendKind {
        BackendKind::Candle
    }

    fn describe(&self, s: &Storage) -> Result<(DType, Vec<usize>)> {
        let st = store(s)?;
        Ok((st.dtype, shape_of(&st.t)))
    }

    fn synchronize(&self) -> Result<()> {
        call("synchronize", DType::Float32, || self.device.synchronize())
    }

    fn upload(&self, data: ArrayData) -> Result<Storage> {
        let dtype = data.dtype();
        let shape = data.shape().to_vec();
        macro_rules! up {
            ($a:expr) => {
                call("upload", dtype, || {
                    cc::Tensor::from_vec(
                        $a.iter().copied().collect::<Vec<_>>(),
                        shape.clone(),
                        &self.device,
                    )
                })?
            };
        }
        let t = match &data {
            ArrayData::Bool(a) => call("upload", dtype, || cc::Tensor::from_vec(a.iter().map(|b| *b as u8).collect::<Vec<u8>>(), shape.clone(), &self.device))?,
            ArrayData::U8(a) => up!(a),
            ArrayData::U32(a) => up!(a),
            ArrayData::I8(a) => call("upload", dtype, || cc::Tensor::from_vec(a.iter().map(|v| i16::from(*v)).collect::<Vec<i16>>(), shape.clone(), &self.device))?,
            ArrayData::U16(a) => call("upload", dtype, || cc::Tensor::from_vec(a.iter().map(|v| u32::from(*v)).collect::<Vec<u32>>(), shape.clone(), &self.device))?,
            // Bit for bit: only layout primitives touch a carried dtype on candle.
            ArrayData::U64(a) => call("upload", dtype, || cc::Tensor::from_vec(a.iter().map(|v| *v as i64).collect::<Vec<i64>>(), shape.clone(), &self.device))?,
            ArrayData::I16(a) => up!(a),
            ArrayData::I32(a) => up!(a),
            ArrayData::I64(a) => up!(a),
            ArrayData::BF16(a) => up!(a),
            ArrayData::F16(a) => up!(a),
            ArrayData::F32(a) => up!(a),
            ArrayData::F64(a) => up!(a),
            _ => {
                return Err(backend_err(
                    NAME,
                    "upload",
                    dtype,
                    "candle has no such dtype; the precision resolver substitutes or refuses it before it reaches this engine",
                ))
            }
        };
        Ok(wrap(t, dtype))
    }

    fn download(&self, s: &Storage) -> Result<ArrayData> {
        let st = store(s)?;
        let shape = shape_of(&st.t);
        let flat = call("download", st.dtype, || st.t.flatten_all())?;
        macro_rules! down {
            ($t:ty) => {
                ArrayData::from_shape_vec(
                    &shape,
                    call("download", st.dtype, || flat.to_vec1::<$t>())?,
                )?
            };
        }
        // Carried dtypes hold only values of their own range (every value-changing
        // primitive on them runs on the reference kernels), so the narrowing is exact.
        macro_rules! narrow {
            ($c:ty => $t:ty) => {
                ArrayData::from_shape_vec(
                    &shape,
                    call("download", st.dtype, || flat.to_vec1::<$c>())?
                        .into_iter()
                        .map(|v| v as $t)
                        .collect(),
                )?
            };
        }
        Ok(match st.dtype {
            DType::Bool => ArrayData::from_shape_vec(
                &shape,
                call("download", st.dtype, || flat.to_vec1::<u8>())?
                    .into_iter()
                    .map(|v| v != 0)
                    .collect(),
            )?,
            DType::UInt8 => down!(u8),
            DType::UInt32 => down!(u32),
            DType::Int8 => narrow!(i16 => i8),
            DType::UInt16 => narrow!(u32 => u16),
            DType::UInt64 => narrow!(i64 => u64),
            DType::Int16 => down!(i16),
            DType::Int32 => down!(i32),
            DType::Int64 => down!(i64),
            DType::BFloat16 => down!(half::bf16),
            DType::Float16 => down!(half::f16),
            DType::Float32 => down!(f32),
            DType::Float64 => down!(f64),
            d => return Err(backend_err(NAME, "download", d, "not a candle dtype")),
        })
    }

    fn cast(&self, s: &Storage, to: DType) -> Result<Storage> {
        guarded("cast", || {
            let st = store(s)?;
            if st.dtype == to {
                return Ok(wrap(st.t.clone(), to));
            }
            if is_carried(st.dtype) || is_carried(to) {
                return self.host("cast", to, &[s], |nd, v| nd.cast(&v[0], to));
            }
            let Some(p) = physical(to) else {
                return Err(backend_err(
                    NAME,
                    "cast",
                    to,
                    "candle has no such dtype; the resolver keeps it off this engine",
                ));
            };
            let t = if to == DType::Bool {
                call("cast", to, || st.t.ne(0f64))?
            } else {
                call("cast", to, || st.t.to_dtype(p))?
            };
            Ok(wrap(t, to))
        })
    }

    fn unary(&self, op: UnaryOp, s: &Storage) -> Result<Storage> {
        guarded("unary", || {
            if let Some(r) = self.carried(&format!("{op:?}"), &[s], |nd, v| nd.unary(op, &v[0]))? {
                return Ok(r);
            }
            let st = store(s)?;
            let (t, d) = (&st.t, st.dtype);
            let name = format!("{op:?}");
            let c = |f: &dyn Fn() -> cc::Result<cc::Tensor>| call(&name, d, f);
            use UnaryOp::*;
            if !self.host && is_float(d) && matches!(op, Expm1 | Log1p | Sign | Round) {
                // On a GPU, accurate compositions of candle kernels instead of a host round
                // trip (on the cpu the reference kernels are as fast and exact).
                return Ok(wrap(c(&|| gpu_unary(op, t))?, d));
            }
            let out = match op {
                IsNan | IsInf | IsFinite | LogicalNot if d == DType::Bool || d.is_integer() => {
                    match op {
                        IsNan | IsInf => c(&|| t.zeros_like()?.to_dtype(cc::DType::U8))?,
                        IsFinite => c(&|| t.ones_like()?.to_dtype(cc::DType::U8))?,
                        _ => c(&|| t.eq(0f64))?,
                    }
                }
                IsNan => c(&|| t.ne(t))?,
                IsInf => c(&|| t.abs()?.eq(f64::INFINITY))?,
                IsFinite => c(&|| t.abs()?.lt(f64::INFINITY))?,
                LogicalNot => c(&|| t.eq(0f64))?,
                Real | Conj => t.clone(),
                Imag => c(&|| t.zeros_like())?,
                Floor | Ceil | Round if d == DType::Bool || d.is_integer() => t.clone(),
                Abs if d == DType::Bool || d.kind() == crate::dtype::DTypeKind::UInt => t.clone(),
                // candle's GPU unary kernels are float-only, so |x| of a signed integer is
                // composed, on every device (one path, which the cpu runs too).
                Abs if d.is_integer() => {
                    c(&|| t.lt(0f64)?.where_cond(&t.zeros_like()?.sub(t)?, t))?
                }
                Abs if is_float(d) => c(&|| t.abs())?,
                Neg if d.is_integer() => c(&|| t.zeros_like()?.sub(t))?,
                Neg if is_float(d) => c(&|| t.neg())?,
                Sqrt if is_float(d) => c(&|| t.sqrt())?,
                Exp if is_float(d) => c(&|| t.exp())?,
                Log if is_float(d) => c(&|| t.log())?,
                Log2 if is_float(d) => c(&|| t.log()?.affine(std::f64::consts::LOG2_E, 0.0))?,
                Log10 if is_float(d) => c(&|| t.log()?.affine(std::f64::consts::LOG10_E, 0.0))?,
                Sin if is_float(d) => c(&|| t.sin())?,
                Cos if is_float(d) => c(&|| t.cos())?,
                Tan if is_float(d) => c(&|| t.sin()?.div(&t.cos()?))?,
                Tanh if is_float(d) => c(&|| t.tanh())?,
                Erf if is_float(d) => c(&|| t.erf())?,
                Floor if is_float(d) => c(&|| t.floor())?,
                Ceil if is_float(d) => c(&|| t.ceil())?,
                // Round (candle rounds half away from zero; NumPy to even), Sign (NaN), the
                // inverse trigonometric and hyperbolic functions, expm1/log1p (cancellation):
                // the reference kernels.
                _ => return self.host(&name, d, &[s], |nd, v| nd.unary(op, &v[0])),
            };
            let dtype = if out.dtype() == cc::DType::U8
                && matches!(op, IsNan | IsInf | IsFinite | LogicalNot)
            {
                DType::Bool
            } else {
                d
            };
            Ok(wrap(out, dtype))
        })
    }

    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("binary", || {
            if let Some(r) = self.carried(&format!("{op:?}"), &[a, b], |nd, v| {
                nd.binary(op, &v[0], &v[1], shape)
            })? {
                return Ok(r);
            }
            let (sa, sb) = (store(a)?, store(b)?);
            let d = sa.dtype;
            let name = format!("{op:?}");
            let (x, y) = (
                self.bcast(&sa.t, shape, &name, d)?,
                self.bcast(&sb.t, shape, &name, d)?,
            );
            let c = |f: &dyn Fn() -> cc::Result<cc::Tensor>| call(&name, d, f);
            use BinaryOp::*;
            let out = match op {
                Add | Or | Max if d == DType::Bool => c(&|| x.maximum(&y))?,
                Mul | And | Min if d == DType::Bool => c(&|| x.minimum(&y))?,
                Xor if d == DType::Bool => c(&|| x.ne(&y))?,
                Add if d != DType::Bool => c(&|| x.add(&y))?,
                Sub if d != DType::Bool => c(&|| x.sub(&y))?,
                Mul if d != DType::Bool => c(&|| x.mul(&y))?,
                Div if is_float(d) => c(&|| x.div(&y))?,
                // A float raised to one exponent (`x ** 2`, `x ** 0.5`): candle's `powf` kernel
                // is C's `pow` (NumPy's semantics, negative bases with integral exponents
                // included). Exponent tensors still go to the reference kernel on the host.
                Pow if !self.host && is_float(d) && sb.t.elem_count() == 1 => {
                    let e = c(&|| sb.t.flatten_all()?.to_dtype(cc::DType::F64))?;
                    let e = call(&name, d, || e.to_vec1::<f64>())?[0];
                    c(&|| x.powf(e))?
                }
                Max | Min if d.is_integer() => c(&|| {
                    if op == Max {
                        x.maximum(&y)
                    } else {
                        x.minimum(&y)
                    }
                })?,
                // NumPy's maximum/minimum propagate NaN from either side. On the cpu, one
                // pass (`NanExtreme`) where the operands are whole or one a single value;
                // elsewhere five candle kernels (candle's own keeps the first operand when
                // the second is NaN).
                Max | Min if self.host && is_float(d) && NanExtreme::fits(&sa.t, &sb.t, shape) => {
                    c(&|| sa.t.apply_op2_no_bwd(&sb.t, &NanExtreme { max: op == Max }))?
                }
                Max | Min if is_float(d) => c(&|| {
                    // candle keeps its first operand on ties; kiln gives the second.
                    let m = if op == Max {
                        y.maximum(&x)?
                    } else {
                        y.minimum(&x)?
                    };
                    let m = y.ne(&y)?.where_cond(&y, &m)?;
                    x.ne(&x)?.where_cond(&x, &m)
                })?,
                _ => {
                    return self.host(&name, d, &[a, b], |nd, v| {
                        nd.binary(op, &v[0], &v[1], shape)
                    })
                }
            };
            Ok(wrap(out, d))
        })
    }

    fn compare(&self, op: CmpOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("compare", || {
            if let Some(r) = self.carried(&format!("{op:?}"), &[a, b], |nd, v| {
                nd.compare(op, &v[0], &v[1], shape)
            })? {
                return Ok(r);
            }
            let (sa, sb) = (store(a)?, store(b)?);
            let name = format!("{op:?}");
            let (x, y) = (
                self.bcast(&sa.t, shape, &name, sa.dtype)?,
                self.bcast(&sb.t, shape, &name, sa.dtype)?,
            );
            let cop = match op {
                CmpOp::Eq => cc::op::CmpOp::Eq,
                CmpOp::Ne => cc::op::CmpOp::Ne,
                CmpOp::Lt => cc::op::CmpOp::Lt,
                CmpOp::Le => cc::op::CmpOp::Le,
                CmpOp::Gt => cc::op::CmpOp::Gt,
                CmpOp::Ge => cc::op::CmpOp::Ge,
            };
            Ok(wrap(call(&name, sa.dtype, || x.cmp(&y, cop))?, DType::Bool))
        })
    }

    fn select(&self, cond: &Storage, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("select", || {
            if let Some(r) = self.carried("where", &[cond, a, b], |nd, v| {
                nd.select(&v[0], &v[1], &v[2], shape)
            })? {
                return Ok(r);
            }
            let (sc, sa, sb) = (store(cond)?, store(a)?, store(b)?);
            let d = sa.dtype;
            let (c, x, y) = (
                self.bcast(&sc.t, shape, "where", d)?,
                self.bcast(&sa.t, shape, "where", d)?,
                self.bcast(&sb.t, shape, "where", d)?,
            );
            Ok(wrap(call("where", d, || c.where_cond(&x, &y))?, d))
        })
    }

    fn reduce(&self, op: ReduceOp, s: &Storage, axes: &[usize], keepdims: bool) -> Result<Storage> {
        guarded("reduce", || {
            if let Some(r) = self.carried(&format!("{op:?}"), &[s], |nd, v| {
                nd.reduce(op, &v[0], axes, keepdims)
            })? {
                return Ok(r);
            }
            let st = store(s)?;
            let (t, d) = (&st.t, st.dtype);
            let dims = shape_of(t);
            let name = format!("{op:?}");
            let empty = axes.iter().any(|a| dims[*a] == 0);
            // candle has no product, and its float64 sum is sequential: NumPy's (and the
            // reference engine's) pairwise sum keeps ill-conditioned sums accurate.
            // (CUDA's sum is a parallel tree reduction, as accurate as a pairwise one.)
            if axes.is_empty()
                || empty
                || op == ReduceOp::Prod
                || (op == ReduceOp::Sum && d == DType::Float64 && self.host)
            {
                return self.host(&name, d, &[s], |nd, v| nd.reduce(op, &v[0], axes, keepdims));
            }
            let (r, dtype) = match op {
                // Half and single floats accumulate in f64, as the reference engine does.
                ReduceOp::Sum if matches!(d, DType::Float16 | DType::BFloat16 | DType::Float32) => {
                    (
                        call(&name, d, || {
                            t.to_dtype(cc::DType::F64)?
                                .sum_keepdim(axes.to_vec())?
                                .to_dtype(t.dtype())
                        })?,
                        d,
                    )
                }
                ReduceOp::Sum => (call(&name, d, || t.sum_keepdim(axes.to_vec()))?, d),
                ReduceOp::Max | ReduceOp::Min => {
                    let f = |x: &cc::Tensor, a: usize| {
                        if op == ReduceOp::Max {
                            x.max_keepdim(a)
                        } else {
                            x.min_keepdim(a)
                        }
                    };
                    let m = self.fold_axes(t, axes, &name, d, f)?;
                    if is_float(d) {
                        // NumPy propagates NaN through max/min.
                        let nan = self.fold_axes(
                            &call(&name, d, || t.ne(t))?,
                            axes,
                            &name,
                            d,
                            |x, a| x.max_keepdim(a),
                        )?;
                        let fill = self.scalar_like(f64::NAN, &m, &name, d)?;
                        (call(&name, d, || nan.where_cond(&fill, &m))?, d)
                    } else {
                        (m, d)
                    }
                }
                ReduceOp::All | ReduceOp::Any => {
                    let b = if d == DType::Bool {
                        t.clone()
                    } else {
                        call(&name, d, || t.ne(0f64))?
                    };
                    let f = |x: &cc::Tensor, a: usize| {
                        if op == ReduceOp::All {
                            x.min_keepdim(a)
                        } else {
                            x.max_keepdim(a)
                        }
                    };
                    (self.fold_axes(&b, axes, &name, d, f)?, DType::Bool)
                }
                ReduceOp::Prod => unreachable!("handled by the host path above"),
            };
            let r = if keepdims {
                r
            } else {
                let kept: Vec<usize> = (0..dims.len())
                    .filter(|i| !axes.contains(i))
                    .map(|i| dims[i])
                    .collect();
                call(&name, d, || r.reshape(kept.clone()))?
            };
            Ok(wrap(r, dtype))
        })
    }

    fn arg_reduce(&self, op: ArgOp, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("arg_reduce", || {
            if let Some(r) = self.carried(&format!("{op:?}"), &[s], |nd, v| {
                nd.arg_reduce(op, &v[0], axis)
            })? {
                return Ok(r);
            }
            let st = store(s)?;
            let name = format!("{op:?}");
            if !self.host && st.t.dims()[axis] > 0 {
                let r = call(&name, st.dtype, || {
                    first_extreme(&st.t, op, axis, is_float(st.dtype))
                })?;
                return Ok(wrap(r, DType::Int64));
            }
            if is_float(st.dtype) || st.t.dims()[axis] == 0 {
                // NumPy's argmax returns the first NaN; candle's comparisons skip it.
                return self.host(&name, st.dtype, &[s], |nd, v| {
                    nd.arg_reduce(op, &v[0], axis)
                });
            }
            let r = call(&name, st.dtype, || {
                let i = if op == ArgOp::ArgMax {
                    st.t.argmax(axis)?
                } else {
                    st.t.argmin(axis)?
                };
                i.to_dtype(cc::DType::I64)
            })?;
            Ok(wrap(r, DType::Int64))
        })
    }

    fn scan(&self, op: ScanOp, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("scan", || {
            // candle's cumsum is a triangular matmul (float only, O(n^2)): the reference scan.
            let d = store(s)?.dtype;
            self.host(&format!("{op:?}"), d, &[s], |nd, v| {
                nd.scan(op, &v[0], axis)
            })
        })
    }

    fn matmul(&self, a: &Storage, b: &Storage, ta: bool, tb: bool) -> Result<Storage> {
        guarded("matmul", || {
            let (sa, sb) = (store(a)?, store(b)?);
            let d = sa.dtype;
            if !is_float(d) {
                return self.host("matmul", d, &[a, b], |nd, v| {
                    nd.matmul(&v[0], &v[1], ta, tb)
                });
            }
            // candle's `t()` swaps the last two axes as a strided view (no copy).
            let at = if ta {
                call("matmul", d, || sa.t.t())?
            } else {
                sa.t.clone()
            };
            let bt = if tb {
                call("matmul", d, || sb.t.t())?
            } else {
                sb.t.clone()
            };
            let (da, db) = (shape_of(&at), shape_of(&bt));
            let batch =
                crate::shape::broadcast_shapes(&da[..da.len() - 2], &db[..db.len() - 2], "matmul")?;
            let mut sha = batch.clone();
            sha.extend_from_slice(&da[da.len() - 2..]);
            let mut shb = batch.clone();
            shb.extend_from_slice(&db[db.len() - 2..]);
            let r = call("matmul", d, || {
                let x = if da == sha {
                    at.clone()
                } else {
                    at.broadcast_as(sha.clone())?.contiguous()?
                };
                let y = if db == shb {
                    bt.clone()
                } else {
                    bt.broadcast_as(shb.clone())?.contiguous()?
                };
                x.matmul(&y)
            })?;
            Ok(wrap(r, d))
        })
    }

    fn reshape(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("reshape", || {
            let st = store(s)?;
            Ok(wrap(
                call("reshape", st.dtype, || st.t.reshape(shape.to_vec()))?,
                st.dtype,
            ))
        })
    }

    fn permute(&self, s: &Storage, axes: &[usize]) -> Result<Storage> {
        guarded("permute", || {
            let st = store(s)?;
            Ok(wrap(
                call("transpose", st.dtype, || {
                    st.t.permute(axes.to_vec())?.contiguous()
                })?,
                st.dtype,
            ))
        })
    }

    fn broadcast_to(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        guarded("broadcast_to", || {
            let st = store(s)?;
            Ok(wrap(
                call("broadcast_to", st.dtype, || {
                    st.t.broadcast_as(shape.to_vec())?.contiguous()
                })?,
                st.dtype,
            ))
        })
    }

    fn slice(&self, s: &Storage, specs: &[SliceSpec]) -> Result<Storage> {
        guarded("slice", || {
            let st = store(s)?;
            let mut t = st.t.clone();
            for (axis, sp) in specs.iter().enumerate() {
                let len = sp.end.saturating_sub(sp.start);
                if sp.step == 1 {
                    if len != t.dims()[axis] {
                        t = call("slice", st.dtype, || t.narrow(axis, sp.start, len))?;
                    }
                } else {
                    let step = sp.step.unsigned_abs();
                    let idx: Vec<u32> = if sp.step > 0 {
                        (sp.start..sp.end).step_by(step).map(|i| i as u32).collect()
                    } else {
                        (sp.start..sp.end)
                            .rev()
                            .step_by(step)
                            .map(|i| i as u32)
                            .collect()
                    };
                    let n = idx.len();
                    let ids = call("slice", st.dtype, || {
                        cc::Tensor::from_vec(idx.clone(), n, &self.device)
                    })?;
                    t = call("slice", st.dtype, || t.index_select(&ids, axis))?;
                }
            }
            Ok(wrap(call("slice", st.dtype, || t.contiguous())?, st.dtype))
        })
    }

    fn concat(&self, parts: &[&Storage], axis: usize) -> Result<Storage> {
        guarded("concat", || {
            let ts = parts
                .iter()
                .map(|p| store(p).map(|s| s.t.clone()))
                .collect::<Result<Vec<_>>>()?;
            let d =
                store(parts.first().ok_or_else(|| {
                    KilnError::invalid("concatenate", "needs at least one tensor")
                })?)?
                .dtype;
            Ok(wrap(
                call("concatenate", d, || cc::Tensor::cat(&ts, axis))?,
                d,
            ))
        })
    }

    fn index_select(&self, s: &Storage, indices: &[usize], axis: usize) -> Result<Storage> {
        guarded("index_select", || {
            let st = store(s)?;
            if indices.is_empty() || indices.iter().any(|i| *i > u32::MAX as usize) {
                return self.host("take", st.dtype, &[s], |nd, v| {
                    nd.index_select(&v[0], indices, axis)
                });
            }
            let ids: Vec<u32> = indices.iter().map(|i| *i as u32).collect();
            let n = ids.len();
            let r = call("take", st.dtype, || {
                st.t.index_select(&cc::Tensor::from_vec(ids.clone(), n, &self.device)?, axis)
            })?;
            Ok(wrap(r, st.dtype))
        })
    }

    fn index_add(&self, s: &Storage, indices: &[usize], axis: usize, n: usize) -> Result<Storage> {
        guarded("index_add", || {
            let st = store(s)?;
            let host = |be: &Self| {
                be.host("index_add", st.dtype, &[s], |nd, v| {
                    nd.index_add(&v[0], indices, axis, n)
                })
            };
            // candle's index_add is for float gradients here; integers (and carried dtypes,
            // which would wrap in their container's width) take the reference kernel.
            if !st.dtype.is_float()
                || indices.is_empty()
                || n > u32::MAX as usize
                || st.t.dims().get(axis) != Some(&indices.len())
                || indices.iter().any(|i| *i >= n)
            {
                return host(self);
            }
            let ids: Vec<u32> = indices.iter().map(|i| *i as u32).collect();
            let m = ids.len();
            let mut oshape = st.t.dims().to_vec();
            oshape[axis] = n;
            let r = call("index_add", st.dtype, || {
                let ids = cc::Tensor::from_vec(ids.clone(), m, &self.device)?;
                cc::Tensor::zeros(oshape.as_slice(), st.t.dtype(), &self.device)?.index_add(
                    &ids,
                    &st.t.contiguous()?,
                    axis,
                )
            })?;
            Ok(wrap(r, st.dtype))
        })
    }

    fn gather(&self, s: &Storage, indices: &Storage, axis: usize) -> Result<Storage> {
        guarded("gather", || {
            let d = store(s)?.dtype;
            self.host("take_along_axis", d, &[s, indices], |nd, v| {
                nd.gather(&v[0], &v[1], axis)
            })
        })
    }

    fn pad(&self, s: &Storage, widths: &[(usize, usize)], value: Scalar) -> Result<Storage> {
        guarded("pad", || {
            let d = store(s)?.dtype;
            self.host("pad", d, &[s], |nd, v| nd.pad(&v[0], widths, value))
        })
    }

    fn sort(&self, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("sort", || {
            // NumPy's order puts NaN last and is stable; candle's sort is neither for floats.
            let d = store(s)?.dtype;
            self.host("sort", d, &[s], |nd, v| nd.sort(&v[0], axis))
        })
    }

    fn argsort(&self, s: &Storage, axis: usize) -> Result<Storage> {
        guarded("argsort", || {
            let d = store(s)?.dtype;
            self.host("argsort", d, &[s], |nd, v| nd.argsort(&v[0], axis))
        })
    }
}
