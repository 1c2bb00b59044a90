//! Creation ops. The dtype of each new tensor goes through the resolver (`Site::Creation`):
//! an explicit dtype is honoured or refused; the default (floatx, or the type of the given
//! Python-style numbers) may be adapted by the policy.

use super::{cfg, resolve_creation, resolve_creation_at, Place};
use crate::array::ArrayData;
use crate::device::Device;
use crate::dtype::promote::{result_type, DTypeLike};
use crate::dtype::DType;
use crate::element::Scalar;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

fn like(s: Scalar) -> DTypeLike {
    match s {
        Scalar::Bool(_) => DTypeLike::Strong(DType::Bool),
        Scalar::Int(_) | Scalar::UInt(_) => DTypeLike::WeakInt,
        Scalar::Float(_) => DTypeLike::WeakFloat,
        Scalar::Complex(_) => DTypeLike::WeakComplex,
    }
}

fn upload(data: ArrayData, at: Place) -> Result<Tensor> {
    Tensor::upload_on(data, at.device, at.engine)
}

/// Whether an integer target changed a value by more than truncation toward zero (NumPy's
/// float-to-int rule): a wrap or saturation, which kiln refuses rather than hides.
fn wrapped(from: Scalar, to: Scalar) -> bool {
    match (from, to) {
        (Scalar::Int(a), Scalar::Int(b)) => a != b,
        (Scalar::Int(a), Scalar::UInt(b)) => a < 0 || a as u64 != b,
        (Scalar::UInt(a), Scalar::UInt(b)) => a != b,
        (Scalar::UInt(a), Scalar::Int(b)) => b < 0 || a != b as u64,
        (a, b) => a.as_f64().is_finite() && a.as_f64().trunc() != b.as_f64(),
    }
}

/// Converts values computed on the host (in f64 or i64) to the resolved dtype `d` and
/// uploads them: the one place creation ops change a dtype after the resolver decided it.
/// An integer dtype must hold every value (NumPy 2 raises for `np.full(3, 300, np.int8)`).
pub(crate) fn materialize(op: &str, host: &ArrayData, d: DType, at: Place) -> Result<Tensor> {
    let (conv, _) = crate::precision::report::convert_with_report(host, d);
    if d.is_integer() {
        for (a, b) in host.to_scalars().into_iter().zip(conv.to_scalars()) {
            if wrapped(a, b) {
                return Err(unfit(op, a, d));
            }
        }
    }
    upload(conv, at)
}

fn unfit(op: &str, value: Scalar, d: DType) -> KilnError {
    KilnError::invalid(
        op,
        format!("the value {value} does not fit {d}; pick a wider dtype"),
    )
}

/// Refuses a fill value that an integer `d` cannot hold (see [`wrapped`]).
pub(crate) fn fits(op: &str, value: Scalar, d: DType) -> Result<()> {
    if d.is_integer() && wrapped(value, ArrayData::scalar(value, d).to_scalars()[0]) {
        return Err(unfit(op, value, d));
    }
    Ok(())
}

/// A tensor filled with `value` (`dtype` defaults to the value's Keras dtype: Python int
/// -> int32, float -> floatx).
#[track_caller]
pub fn full(
    shape: &[usize],
    value: impl Into<Scalar>,
    dtype: Option<DType>,
    device: Option<Device>,
) -> Result<Tensor> {
    let cfg = cfg()?;
    let value = value.into();
    let default = result_type(&[like(value)], cfg.floatx, cfg.x64)?;
    let (d, dev) = resolve_creation("full", dtype, default, device.unwrap_or(cfg.device), &cfg)?;
    crate::hostmem::check_output("full", shape, d)?;
    fits("full", value, d)?;
    upload(ArrayData::full(shape, value, d)?, dev)
}

/// Zeros (`dtype` defaults to floatx).
///
/// ```
/// use kiln::{ops, Device, DType};
/// let z = ops::zeros(&[2, 3], None, None).unwrap();
/// assert_eq!((z.shape(), z.dtype()), (&[2usize, 3][..], DType::Float32));
/// // An explicit float64 on a device without it is refused, never changed:
/// assert!(ops::zeros(&[2], Some(DType::Float64), Some(Device::parse("sim:mps").unwrap())).is_err());
/// ```
#[track_caller]
pub fn zeros(shape: &[usize], dtype: Option<DType>, device: Option<Device>) -> Result<Tensor> {
    let cfg = cfg()?;
    let (d, dev) = resolve_creation(
        "zeros",
        dtype,
        cfg.floatx,
        device.unwrap_or(cfg.device),
        &cfg,
    )?;
    crate::hostmem::check_output("zeros", shape, d)?;
    upload(ArrayData::full(shape, Scalar::Int(0), d)?, dev)
}

/// Ones (`dtype` defaults to floatx).
#[track_caller]
pub fn ones(shape: &[usize], dtype: Option<DType>, device: Option<Device>) -> Result<Tensor> {
    let cfg = cfg()?;
    let (d, dev) = resolve_creation(
        "ones",
        dtype,
        cfg.floatx,
        device.unwrap_or(cfg.device),
        &cfg,
    )?;
    crate::hostmem::check_output("ones", shape, d)?;
    upload(ArrayData::full(shape, Scalar::Int(1), d)?, dev)
}

/// Zeros shaped and typed like `x` (on `x`'s device).
#[track_caller]
pub fn zeros_like(x: &Tensor, dtype: Option<DType>) -> Result<Tensor> {
    full_like(x, 0, dtype)
}

/// Ones shaped and typed like `x`.
#[track_caller]
pub fn ones_like(x: &Tensor, dtype: Option<DType>) -> Result<Tensor> {
    full_like(x, 1, dtype)
}

/// `value` shaped and typed like `x`.
#[track_caller]
pub fn full_like(x: &Tensor, value: impl Into<Scalar>, dtype: Option<DType>) -> Result<Tensor> {
    let cfg = super::cfg_for_tensors(&[x])?;
    let at = super::place_of(x);
    let (d, dev) = resolve_creation_at("full_like", dtype, x.dtype(), at, &cfg)?;
    let value = value.into();
    fits("full_like", value, d)?;
    upload(ArrayData::full(x.shape(), value, d)?, dev)
}

/// `start, start + step, ...` below `stop`, as float64 host data.
pub(crate) fn arange_host(start: f64, stop: f64, step: f64) -> Result<ArrayData> {
    let n = ((stop - start) / step).ceil().max(0.0) as usize;
    Ok(ArrayData::from(crate::hostmem::collect_for(
        n,
        "arange",
        &[n],
        (0..n).map(|i| start + i as f64 * step),
    )?))
}

/// Evenly spaced values in `[start, stop)`. Without a dtype, Python ints give int32 and
/// any float gives floatx (Keras).
///
/// ```
/// use kiln::ops;
/// let r = ops::arange(0, 10, 3, None, None).unwrap();
/// assert_eq!(r.to_vec::<i32>().unwrap(), vec![0, 3, 6, 9]);
/// ```
#[track_caller]
pub fn arange(
    start: impl Into<Scalar>,
    stop: impl Into<Scalar>,
    step: impl Into<Scalar>,
    dtype: Option<DType>,
    device: Option<Device>,
) -> Result<Tensor> {
    let cfg = cfg()?;
    let (start, stop, step) = (start.into(), stop.into(), step.into());
    if step.as_f64() == 0.0 || !step.as_f64().is_finite() {
        return Err(KilnError::invalid(
            "arange",
            "step must be finite and nonzero",
        ));
    }
    let default = result_type(&[like(start), like(stop), like(step)], cfg.floatx, cfg.x64)?;
    let (d, dev) = resolve_creation("arange", dtype, default, device.unwrap_or(cfg.device), &cfg)?;
    let n = ((stop.as_f64() - start.as_f64()) / step.as_f64()).ceil();
    if !(n.is_finite()) || n > 1e12 {
        return Err(KilnError::invalid(
            "arange",
            format!("{n} elements is not a valid size"),
        ));
    }
    let count = n.max(0.0) as usize;
    // The host buffer is 8-byte numbers, converted once to `d`.
    let widest = if d.itemsize() > 8 { d } else { DType::Float64 };
    crate::hostmem::check_output("arange", &[count], widest)?;
    if let (Scalar::Int(a), Scalar::Int(s)) = (start, step) {
        // Exact integer steps (no float accumulation).
        let v = crate::hostmem::collect_for(
            count,
            "arange",
            &[count],
            (0..count as i64).map(|i| a + i * s),
        )?;
        return materialize("arange", &ArrayData::from(v), d, dev);
    }
    materialize(
        "arange",
        &arange_host(start.as_f64(), stop.as_f64(), step.as_f64())?,
        d,
        dev,
    )
}

/// `num` evenly spaced values from `start` to `stop` (inclusive when `endpoint`), floatx
/// by default.
#[track_caller]
pub fn linspace(
    start: f64,
    stop: f64,
    num: usize,
    endpoint: bool,
    dtype: Option<DType>,
    device: Option<Device>,
) -> Result<Tensor> {
    let cfg = cfg()?;
    let (d, dev) = resolve_creation(
        "linspace",
        dtype,
        cfg.floatx,
        device.unwrap_or(cfg.device),
        &cfg,
    )?;
    let div = if endpoint { num.saturating_sub(1) } else { num } as f64;
    let step = if div > 0.0 { (stop - start) / div } else { 0.0 };
    crate::hostmem::check_output("linspace", &[num], DType::Float64)?;
    let mut v = crate::hostmem::collect_for(
        num,
        "linspace",
        &[num],
        (0..num).map(|i| start + i as f64 * step),
    )?;
    if endpoint && num > 1 {
        v[num - 1] = stop;
    }
    materialize("linspace", &ArrayData::from(v), d, dev)
}

/// Identity-like matrix `n x m` with ones on diagonal `k`.
#[track_caller]
pub fn eye(
    n: usize,
    m: Option<usize>,
    k: isize,
    dtype: Option<DType>,
    device: Option<Device>,
) -> Result<Tensor> {
    let cfg = cfg()?;
    let (d, dev) = resolve_creation("eye", dtype, cfg.floatx, device.unwrap_or(cfg.device), &cfg)?;
    let m = m.unwrap_or(n);
    let total = crate::array::checked_numel(&[n, m], "eye")?;
    crate::hostmem::check_output("eye", &[n, m], d)?;
    let mut v = crate::hostmem::zeroed_for::<bool>(total, "eye", &[n, m])?;
    for i in 0..n as isize {
        let j = i + k;
        if (0..m as isize).contains(&j) {
            v[(i * m as isize + j) as usize] = true;
        }
    }
    materialize("eye", &ArrayData::from_shape_vec(&[n, m], v)?, d, dev)
}
