//! The [`Tensor`]: a handle to backend storage with its dtype, shape and device, plus the
//! conversion boundary ([`convert_to_tensor`]) where host data meets a device.

mod variable;

pub use variable::Variable;

use crate::array::{ArrayData, HostElement};
use crate::backend::{Backend, BackendKind, Storage};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::precision::report::{convert_with_report, ConversionReport};
use crate::precision::{config, resolve, Action, Request, Site};
use std::fmt;
use std::panic::Location;
use std::sync::{Arc, OnceLock};

/// An n-dimensional array on a device. Cheap to clone (storage is shared and immutable).
#[derive(Clone)]
pub struct Tensor {
    pub(crate) storage: Storage,
    pub(crate) dtype: DType,
    pub(crate) shape: Vec<usize>,
    pub(crate) device: Device,
    pub(crate) backend: Arc<dyn Backend>,
    /// Where the value sits in an autodiff graph (`None`: a constant to every gradient).
    pub(crate) node: Option<Arc<crate::autodiff::Node>>,
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Tensor(shape={:?}, dtype={}, device={})",
            self.shape, self.dtype, self.device
        )
    }
}

/// The engine new tensors on `device` get under `cfg`: the configured backend, or the
/// default for the device (ndarray for the cpu and the simulated devices, where it measured
/// faster; candle for CUDA and Metal, which only candle drives).
pub fn engine_kind_for(device: Device, cfg: &crate::precision::Config) -> BackendKind {
    cfg.backend.unwrap_or(if device.runs_on_host() {
        BackendKind::Ndarray
    } else {
        BackendKind::Candle
    })
}

/// The engine of `kind` for `device`.
pub fn engine(kind: BackendKind, device: Device) -> Result<Arc<dyn Backend>> {
    static NDARRAY: OnceLock<Arc<dyn Backend>> = OnceLock::new();
    // Engines ask the precision policy, through this gate, before computing a primitive on
    // the host for a device that lacks its kernel.
    crate::backend::set_host_fallback_gate(crate::precision::host_fallback_gate);
    match kind {
        BackendKind::Ndarray if device.runs_on_host() => {
            Ok(NDARRAY.get_or_init(|| Arc::new(crate::backend::ndarray::NdarrayBackend)).clone())
        }
        BackendKind::Ndarray => Err(KilnError::Device {
            device: device.to_string(),
            message: "the ndarray engine runs on the host only; use the candle backend (KILN_BACKEND=candle) for GPUs".into(),
        }),
        #[cfg(feature = "candle")]
        BackendKind::Candle => crate::backend::candle::engine(device),
        #[cfg(not(feature = "candle"))]
        BackendKind::Candle => Err(KilnError::Device {
            device: device.to_string(),
            message: "this build has no candle engine, which GPUs need; build kiln with the `candle` feature (and `cuda` or `metal`), or use cpu, or a simulated profile such as sim:mps to test its dtype limits".into(),
        }),
    }
}

/// The engine that computes new tensors on `device` under the current configuration.
pub fn engine_for(device: Device) -> Result<Arc<dyn Backend>> {
    let cfg = config::current()?;
    engine(engine_kind_for(device, &cfg), device)
}

impl Tensor {
    pub(crate) fn from_storage(
        storage: Storage,
        backend: Arc<dyn Backend>,
        device: Device,
    ) -> Result<Tensor> {
        let (dtype, shape) = backend.describe(&storage)?;
        Ok(Tensor {
            storage,
            dtype,
            shape,
            device,
            backend,
            node: None,
        })
    }

    /// Uploads host data that the resolver has already decided on (no dtype change here)
    /// to a given engine.
    pub(crate) fn upload_on(data: ArrayData, device: Device, kind: BackendKind) -> Result<Tensor> {
        let backend = engine(kind, device)?;
        let storage = backend.upload(data)?;
        Tensor::from_storage(storage, backend, device)
    }

    /// Uploads host data to the same device and engine as `self` (for internal index
    /// buffers and scalars that must meet `self`).
    pub(crate) fn upload_like(&self, data: ArrayData) -> Result<Tensor> {
        let storage = self.backend.upload(data)?;
        Tensor::from_storage(storage, self.backend.clone(), self.device)
    }

    /// Whether this is a meta tensor (a dtype and a shape without values, from
    /// `ops::output_spec`).
    pub fn is_meta(&self) -> bool {
        self.backend.name() == "meta"
    }

    /// The element dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }
    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }
    /// Number of elements.
    pub fn size(&self) -> usize {
        self.shape.iter().product()
    }
    /// The device holding the tensor.
    pub fn device(&self) -> Device {
        self.device
    }
    /// The engine computing it.
    pub fn backend_name(&self) -> &'static str {
        self.backend.name()
    }

    /// Waits until the kernels queued on this tensor's engine have finished (a no-op on the
    /// cpu; on a GPU, what a benchmark needs before it stops the clock).
    pub fn synchronize(&self) -> Result<()> {
        self.backend.synchronize()
    }

    /// Which engine computes it.
    pub fn backend_kind(&self) -> BackendKind {
        self.backend.kind()
    }

    /// Moves the tensor to another engine on the same device: the explicit transfer
    /// between backends (the resolver decides the dtype against that engine's profile).
    #[track_caller]
    pub fn to_backend(&self, kind: BackendKind) -> Result<Tensor> {
        if kind == self.backend_kind() {
            return Ok(self.clone());
        }
        let origin = Location::caller();
        convert_at(
            &self.to_host()?,
            None,
            self.device,
            kind,
            Site::Transfer,
            "to_backend",
            origin,
        )
        .map(|(t, _)| t)
    }

    /// Copies the tensor to host memory.
    pub fn to_host(&self) -> Result<ArrayData> {
        self.backend.download(&self.storage)
    }

    /// The elements in C order as `T`, which must be the tensor's element type.
    pub fn to_vec<T: HostElement>(&self) -> Result<Vec<T>> {
        self.to_host()?.to_vec::<T>()
    }

    /// The elements as f64 (real part of complex). For printing and tests.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        Ok(self.to_host()?.to_f64_vec())
    }

    /// Moves the tensor to another device, keeping its dtype where the device computes in it
    /// (the resolver's transfer site: no x64-off narrowing); where it does not, the policy
    /// adapts or refuses it, as for host data.
    #[track_caller]
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device {
            return Ok(self.clone());
        }
        let cfg = config::current()?;
        let origin = Location::caller();
        let engine = engine_kind_for(device, &cfg);
        convert_at(
            &self.to_host()?,
            None,
            device,
            engine,
            Site::Transfer,
            "to_device",
            origin,
        )
        .map(|(t, _)| t)
    }
}

/// Converts host data to a tensor on `device`: the conversion boundary.
///
/// * `dtype: None` (implicit): in x64-off mode (the default, Keras's semantics) 64-bit data
///   becomes 32-bit on every device; with x64 on it is kept where the device has it and
///   otherwise adapted by the policy (default `downcast`: nearest supported dtype, one
///   warning per cause, a loss report).
/// * `dtype: Some(d)` (explicit): honoured, or refused with an error that names the device,
///   the dtype, the caller's file and line, and the ways out. Never silently changed.
///
/// ```
/// use kiln::{convert_to_tensor, ArrayData, Device, DType};
/// let x = ArrayData::from_shape_vec(&[1, 3], vec![1.0f64, 10.0, 100.0]).unwrap();
/// let mps = Device::parse("sim:mps").unwrap();
/// let t = convert_to_tensor(&x, None, &mps).unwrap();
/// assert_eq!(t.dtype(), DType::Float32);
/// let err = convert_to_tensor(&x, Some(DType::Float64), &mps).unwrap_err();
/// assert!(err.to_string().contains("sim:mps"));
/// ```
#[track_caller]
pub fn convert_to_tensor(
    data: &ArrayData,
    dtype: Option<DType>,
    device: &Device,
) -> Result<Tensor> {
    convert_to_tensor_with_report(data, dtype, device).map(|(t, _)| t)
}

/// [`convert_to_tensor`], also returning the loss report when the dtype changed.
#[track_caller]
pub fn convert_to_tensor_with_report(
    data: &ArrayData,
    dtype: Option<DType>,
    device: &Device,
) -> Result<(Tensor, Option<ConversionReport>)> {
    let cfg = config::current()?;
    let engine = engine_kind_for(*device, &cfg);
    let origin = Location::caller();
    let op = "convert_to_tensor";
    convert_at(data, dtype, *device, engine, Site::Conversion, op, origin)
}

/// Host data onto `device`/`engine` through the resolver at `site`: the conversion boundary
/// shared by `convert_to_tensor` and the transfers.
fn convert_at(
    data: &ArrayData,
    dtype: Option<DType>,
    device: Device,
    engine: BackendKind,
    site: Site,
    op: &str,
    origin: &'static Location<'static>,
) -> Result<(Tensor, Option<ConversionReport>)> {
    let cfg = config::current()?;
    let src = data.dtype();
    let req = Request {
        op,
        site,
        dtype: dtype.unwrap_or(src),
        explicit: dtype.is_some(),
        device,
        engine,
        origin,
    };
    let decision = resolve(&req, &cfg)?;
    let (host, report) = if decision.dtype == src {
        (data.clone(), None)
    } else {
        let (converted, report) = convert_with_report(data, decision.dtype);
        if decision.dtype.is_integer() && report.integers_changed > 0 {
            let example = crate::precision::report::first_changed(data, &converted);
            return Err(KilnError::OutOfRange {
                op: op.into(),
                to: decision.dtype,
                device,
                count: report.integers_changed,
                example,
                origin,
                fix: match decision.action {
                    Action::Keep => format!("the explicit {} cannot hold these values; pick a wider dtype", decision.dtype),
                    _ => format!(
                        "{} integers narrowed to {} would change; turn x64 on (KILN_X64=1) on a device with {src}, \
                         cast to a float dtype first, or use the cpu-fallback policy",
                        src, decision.dtype
                    ),
                },
            });
        }
        (converted, Some(report))
    };
    decision.announce(report.as_ref());
    Ok((
        Tensor::upload_on(host, decision.device, decision.engine)?,
        report,
    ))
}
