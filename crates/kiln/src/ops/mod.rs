//! The ops API: Keras's names and semantics over any engine.
//!
//! Every op here is composed from the [`crate::backend::Backend`] primitives. Each one:
//! 1. works out its result dtype from Keras's rules ([`rules`]);
//! 2. asks the precision resolver whether that dtype may live on the operands' device
//!    (`Site::Promotion`), which may adapt it (downcast policy) or refuse it;
//! 3. casts the operands to the compute dtype and runs the primitives.
//!
//! Binary ops take anything that converts to an [`Operand`]: a `&Tensor`, or a Rust
//! number standing for a weakly-typed Python scalar (`ops::add(&x, 1.0)` keeps `x`'s
//! dtype, as `x + 1.0` does in Keras).

pub mod composed;
pub mod conv;
pub mod creation;
pub mod elementwise;
pub(crate) mod gradients;
pub mod linalg;
pub mod nn;
pub(crate) mod prim;
pub mod random;
pub mod reduce;
pub mod registry;
pub mod rules;
pub mod shape;
pub mod spec;

pub use creation::*;
pub use elementwise::*;
pub use linalg::*;
pub use nn::*;
pub use random::*;
pub use reduce::*;
pub use shape::*;
pub use spec::{output_spec, TensorSpec};

use crate::array::ArrayData;
use crate::backend::BackendKind;
use crate::device::Device;
use crate::dtype::promote::DTypeLike;
use crate::dtype::DType;
use crate::element::{Scalar, C128};
use crate::error::{KilnError, Result};
use crate::precision::{config, resolve, Config, Request, Site};
use crate::tensor::{engine_kind_for, Tensor};
use std::borrow::Cow;
use std::panic::Location;

/// An operand of a binary op: a tensor, or a weakly-typed scalar.
#[derive(Clone, Debug)]
pub enum Operand<'a> {
    /// A tensor.
    Tensor(&'a Tensor),
    /// A Python-style scalar: ints and floats are weak (they adapt to the tensor's dtype),
    /// bool is strong.
    Scalar(Scalar),
}

impl<'a> From<&'a Tensor> for Operand<'a> {
    fn from(t: &'a Tensor) -> Self {
        Operand::Tensor(t)
    }
}
macro_rules! operand_from {
    ($($t:ty),*) => {$( impl From<$t> for Operand<'_> { fn from(x: $t) -> Self { Operand::Scalar(Scalar::from(x)) } } )*};
}
operand_from!(i8, i16, i32, i64, isize, u8, u16, u32, u64, usize, f32, f64, bool, C128);

impl Operand<'_> {
    pub(crate) fn like(&self) -> DTypeLike {
        match self {
            Operand::Tensor(t) => DTypeLike::Strong(t.dtype()),
            Operand::Scalar(Scalar::Bool(_)) => DTypeLike::Strong(DType::Bool),
            Operand::Scalar(Scalar::Int(_) | Scalar::UInt(_)) => DTypeLike::WeakInt,
            Operand::Scalar(Scalar::Float(_)) => DTypeLike::WeakFloat,
            Operand::Scalar(Scalar::Complex(_)) => DTypeLike::WeakComplex,
        }
    }
    fn shape(&self) -> &[usize] {
        match self {
            Operand::Tensor(t) => t.shape(),
            Operand::Scalar(_) => &[],
        }
    }
}

pub use crate::shape::{broadcast_shapes, normalize_axes, normalize_axis};

/// Where an op's result lives: a device and the engine computing on it.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) struct Place {
    pub device: Device,
    pub engine: BackendKind,
}

/// The device and engine shared by the tensor operands (the configured ones if there are
/// none). Tensors on different devices or engines meet only through an explicit
/// `to_device`/`to_backend`, with one automatic rule: under the `cpu-fallback` policy (strict
/// mode off), where the policy itself puts values on the cpu, operands on the cpu and on one
/// GPU meet on the GPU (the resolver may still send the op to the cpu, as a counted fallback);
/// the cpu operands are moved there in the op's compute dtype.
pub(crate) fn common_place(ops: &[&Operand<'_>], op: &str, cfg: &Config) -> Result<Place> {
    let joins = cfg.policy == crate::precision::Policy::CpuFallback && !cfg.strict_fallback;
    let mut place: Option<Place> = None;
    for o in ops {
        if let Operand::Tensor(t) = o {
            let p = place_of(t);
            match place {
                None => place = Some(p),
                // (Joining: the GPU operand decides the place, whichever came first.)
                Some(q) if joins && q.device == Device::Cpu && p.device != Device::Cpu => {
                    place = Some(p)
                }
                Some(q) if joins && p.device == Device::Cpu && q.device != Device::Cpu => {}
                Some(q) if q.device != p.device => {
                    return Err(KilnError::DeviceMismatch { op: op.into(), lhs: q.device, rhs: p.device })
                }
                Some(q) if q.engine != p.engine => {
                    return Err(KilnError::invalid(
                        op,
                        format!(
                            "operands are computed by different engines ({} and {}) on {}; move one with `Tensor::to_backend` first",
                            q.engine, p.engine, p.device
                        ),
                    ))
                }
                _ => {}
            }
        }
    }
    Ok(place.unwrap_or(Place {
        device: cfg.device,
        engine: engine_kind_for(cfg.device, cfg),
    }))
}

impl Place {
    /// Where the resolver placed a value.
    pub(crate) fn of(d: &crate::precision::Decision) -> Place {
        Place {
            device: d.device,
            engine: d.engine,
        }
    }
}

/// Where a tensor lives.
pub(crate) fn place_of(t: &Tensor) -> Place {
    Place {
        device: t.device(),
        engine: t.backend_kind(),
    }
}

/// Asks the resolver about an op's result dtype at `place` (implicit: promotion).
#[track_caller]
pub(crate) fn resolve_result(
    op: &str,
    dtype: DType,
    place: Place,
    cfg: &Config,
) -> Result<(DType, Place)> {
    let d = resolve(
        &Request {
            op,
            site: Site::Promotion,
            dtype,
            explicit: false,
            device: place.device,
            engine: place.engine,
            origin: Location::caller(),
        },
        cfg,
    )?;
    d.announce(None);
    Ok((d.dtype, Place::of(&d)))
}

/// Asks the resolver about an explicit or default dtype for a creation op on `device`
/// (with the configured engine for it).
#[track_caller]
pub(crate) fn resolve_creation(
    op: &str,
    dtype: Option<DType>,
    default: DType,
    device: Device,
    cfg: &Config,
) -> Result<(DType, Place)> {
    resolve_creation_at(
        op,
        dtype,
        default,
        Place {
            device,
            engine: engine_kind_for(device, cfg),
        },
        cfg,
    )
}

/// As [`resolve_creation`], at a given device and engine (`*_like` ops).
#[track_caller]
pub(crate) fn resolve_creation_at(
    op: &str,
    dtype: Option<DType>,
    default: DType,
    place: Place,
    cfg: &Config,
) -> Result<(DType, Place)> {
    let d = resolve(
        &Request {
            op,
            site: Site::Creation,
            dtype: dtype.unwrap_or(default),
            explicit: dtype.is_some(),
            device: place.device,
            engine: place.engine,
            origin: Location::caller(),
        },
        cfg,
    )?;
    d.announce(None);
    Ok((d.dtype, Place::of(&d)))
}

/// Casts a tensor to `dtype` at `at` for `op`'s computation (the resolver already decided,
/// and counted any fallback). An implicit integer narrowing never wraps: where `dtype` cannot
/// hold every value of the tensor's integer dtype (uint32 into int32, which Keras's promotion
/// gives for `uint32 + int32` with x64 off), values outside it are an error, as at conversion.
#[track_caller]
pub(crate) fn to_compute(t: &Tensor, dtype: DType, at: Place, op: &str) -> Result<Tensor> {
    to_compute_ref(t, dtype, at, op).map(Cow::into_owned)
}

/// [`to_compute`], borrowing the tensor where it already is what the op needs (the common
/// case: an op's operands share the result's dtype and place), so nothing is copied.
#[track_caller]
pub(crate) fn to_compute_ref<'a>(
    t: &'a Tensor,
    dtype: DType,
    at: Place,
    op: &str,
) -> Result<Cow<'a, Tensor>> {
    let from = t.dtype();
    if from == dtype && t.device() == at.device && t.backend_kind() == at.engine {
        return Ok(Cow::Borrowed(t));
    }
    // (A meta tensor has no values to check: its spec is the cast's.)
    if from.is_integer() && dtype.is_integer() && !dtype.holds_every(from) && !t.is_meta() {
        let host = t.to_host()?;
        let (converted, report) = crate::precision::report::convert_with_report(&host, dtype);
        if report.integers_changed > 0 {
            return Err(KilnError::OutOfRange {
                op: op.into(),
                to: dtype,
                device: t.device(),
                count: report.integers_changed,
                example: crate::precision::report::first_changed(&host, &converted),
                origin: Location::caller(),
                fix: format!(
                    "{op} computes in {dtype} (the promotion of its operands' dtypes), which \
                     cannot hold these {from} values: turn x64 on (KILN_X64=1) so it computes \
                     in a 64-bit dtype, or cast the operands to a wider dtype first"
                ),
            });
        }
    }
    convert_at(t, dtype, at).map(Cow::Owned)
}

/// Casts a tensor to `dtype` at `at` with NumPy's `astype` semantics (integers wrap): for
/// explicit casts, and behind [`to_compute`]'s check. A tensor that must move is copied
/// through the host.
pub(crate) fn convert_at(t: &Tensor, dtype: DType, at: Place) -> Result<Tensor> {
    let Place { device, engine } = at;
    let cast = |t: &Tensor| -> Result<Tensor> {
        if t.dtype() == dtype {
            return Ok(t.clone());
        }
        prim::apply(prim::Prim::Cast(dtype), &[t])
    };
    // A move copies through the host, outside the engines: recorded, so that gradients go
    // back to where the value came from.
    let moved =
        |from: &Tensor, to: Tensor| crate::autodiff::record(prim::Prim::Transfer, &[from], to);
    if t.device() == device && t.backend_kind() == engine {
        return cast(t);
    }
    // Cast on whichever side surely has `dtype`: a move to the host casts there (the host
    // engines have every dtype); a move to a GPU casts first, since the GPU holds `dtype`
    // (the resolver decided that) but not necessarily the value's current one (int32 on CUDA).
    if device.runs_on_host() {
        cast(&moved(t, Tensor::upload_on(t.to_host()?, device, engine)?))
    } else {
        let c = cast(t)?;
        Ok(moved(&c, Tensor::upload_on(c.to_host()?, device, engine)?))
    }
}

/// Materialises an operand as a tensor of `dtype` at `place`. A weak integer scalar must
/// fit an integer `dtype` (JAX raises OverflowError; kiln never wraps silently).
#[track_caller]
pub(crate) fn operand_tensor<'a>(
    o: &Operand<'a>,
    dtype: DType,
    place: Place,
    op: &str,
) -> Result<Cow<'a, Tensor>> {
    match o {
        Operand::Tensor(t) => to_compute_ref(t, dtype, place, op),
        Operand::Scalar(s) => {
            let host = ArrayData::scalar(*s, dtype);
            if dtype.is_integer() {
                let back = host.to_scalars()[0];
                let fits = match (s, back) {
                    (Scalar::Int(a), Scalar::Int(b)) => *a == b,
                    (Scalar::Int(a), Scalar::UInt(b)) => *a >= 0 && *a as u64 == b,
                    (Scalar::UInt(a), Scalar::UInt(b)) => *a == b,
                    (Scalar::UInt(a), Scalar::Int(b)) => b >= 0 && *a == b as u64,
                    _ => true,
                };
                if !fits {
                    return Err(KilnError::invalid(
                        op,
                        format!("the Python int {s} does not fit {dtype} (the other operand's dtype); cast the tensor to a wider dtype first"),
                    ));
                }
            }
            Tensor::upload_on(host, place.device, place.engine).map(Cow::Owned)
        }
    }
}

pub(crate) fn cfg() -> Result<Config> {
    config::current()
}

/// The configuration for an op on these operands: deliberately 64-bit operands keep x64
/// semantics ([`Config::for_operands`]).
pub(crate) fn cfg_for(operands: &[&Operand<'_>]) -> Result<Config> {
    let mut c = config::current()?;
    for o in operands {
        if let Operand::Tensor(t) = o {
            c = with_operand(c, t);
        }
    }
    Ok(c)
}

/// [`cfg_for`] for tensor operands.
pub(crate) fn cfg_for_tensors(xs: &[&Tensor]) -> Result<Config> {
    let mut c = config::current()?;
    for t in xs {
        c = with_operand(c, t);
    }
    Ok(c)
}

/// [`Config::for_operands`] for one more operand (no allocation: every op calls this).
fn with_operand(c: Config, t: &Tensor) -> Config {
    if c.x64 || !t.dtype().is_64bit() {
        return c;
    }
    c.for_operands(&[(t.dtype(), t.device(), t.backend_kind())])
}

/// Casts `x` to `dtype` as an implicit decision of the resolver (a promotion, not an explicit
/// cast): the dtype policies' autocast. A 64-bit `dtype` is asked under x64 semantics.
#[track_caller]
pub(crate) fn autocast(x: &Tensor, dtype: DType, op: &str) -> Result<Tensor> {
    let mut cfg = cfg_for_tensors(&[x])?;
    cfg.x64 |= dtype.is_64bit();
    let (d, place) = resolve_result(op, dtype, place_of(x), &cfg)?;
    to_compute(x, d, place, op)
}
