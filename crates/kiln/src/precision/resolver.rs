//! The precision resolver: the one function that decides every dtype that reaches a device.
//!
//! Every site where a dtype could change calls [`resolve`]: conversion of host data
//! ([`crate::convert_to_tensor`]), [`crate::ops::cast`], creation ops, the result of every
//! op (promotion), and variables. Nothing else in kiln changes a dtype on its own.
//!
//! Rules, in order:
//! 1. An *implicit* dtype in x64-off mode (Keras's default) is narrowed to 32 bits
//!    (`float64 -> float32`) on every device: Keras's semantics, not an adaptation, so no
//!    warning. The rule is for dtypes entering kiln: a transfer of an existing tensor is not
//!    narrowed, and ops on a 64-bit operand ask under x64 semantics
//!    ([`Config::for_operands`](super::Config::for_operands)).
//! 2. If the device computes in the dtype, it is kept.
//! 3. Otherwise, by policy: `error` refuses; `downcast` substitutes the nearest supported
//!    dtype of the same kind for an implicit dtype (one warning per cause, a loss report,
//!    a range check for integers) and refuses an explicit one; `cpu-fallback` keeps the
//!    dtype and places the tensor on the CPU engine (counted, one warning per cause).

use super::config::{Config, Policy};
use super::report::ConversionReport;
use super::warnings;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use std::panic::Location;

/// Where a dtype decision is being made.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Site {
    /// Host data entering a device (`convert_to_tensor`, reading a file).
    Conversion,
    /// An explicit `cast`.
    Cast,
    /// A creation op (`zeros`, `arange`, random...).
    Creation,
    /// The result dtype of an op, from the promotion rules.
    Promotion,
    /// A variable's dtype.
    Variable,
    /// An existing tensor moving to another device or engine (`to_device`, `to_backend`):
    /// its dtype is kept where the target computes in it (no x64-off narrowing: the value
    /// already lives in kiln), else the policy applies as to any implicit dtype.
    Transfer,
}

/// One dtype question for the resolver.
#[derive(Clone, Debug)]
pub struct Request<'a> {
    /// The op asking (for messages).
    pub op: &'a str,
    /// Where.
    pub site: Site,
    /// The dtype the value has or would have: the host data's dtype, the promotion result,
    /// the creation default, or the explicitly requested dtype.
    pub dtype: DType,
    /// Whether the user named `dtype` explicitly (explicit requests are never changed).
    pub explicit: bool,
    /// The device the value is headed for.
    pub device: Device,
    /// The engine that will hold it (its kernels narrow the device's profile).
    pub engine: crate::backend::BackendKind,
    /// Where the value came from (the caller's `file:line`).
    pub origin: &'static Location<'static>,
}

/// What the resolver did.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Nothing: the dtype is supported as is.
    Keep,
    /// x64-off semantics narrowed an implicit 64-bit dtype (Keras's default; no warning).
    Narrow64 {
        /// The dtype before.
        from: DType,
    },
    /// The device lacks the dtype; an implicit dtype was substituted (warned once).
    Substitute {
        /// The dtype before.
        from: DType,
        /// Whether values can change (narrowing) rather than only widen.
        lossy: bool,
    },
    /// The device lacks the dtype; the tensor stays in it on the CPU engine.
    CpuFallback {
        /// The device that lacked it.
        wanted: Device,
    },
}

/// The resolver's answer: the dtype, the device that will hold the value, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Decision {
    /// The dtype the value gets.
    pub dtype: DType,
    /// The device the value is placed on (the CPU under `cpu-fallback`).
    pub device: Device,
    /// The engine that holds it (the reference ndarray engine for a CPU fallback).
    pub engine: crate::backend::BackendKind,
    /// What was done.
    pub action: Action,
    /// Whether the device could store the dtype but had no kernels for it.
    storage_only: bool,
    pub(crate) warn_mode: super::config::WarnMode,
    /// The op, kept only where a warning may name it (every op asks; most keep).
    pub(crate) op: String,
}

impl Decision {
    /// A sentence saying why (built on demand: every op result is decided, few are read).
    pub fn reason(&self) -> String {
        let so = if self.storage_only {
            " (it can store it but has no kernels for it)"
        } else {
            ""
        };
        match self.action {
            Action::Keep => format!("{} is supported on {}", self.dtype, self.device),
            Action::Narrow64 { from } => format!(
                "x64 mode is off (Keras's default): implicit {from} becomes {}",
                self.dtype
            ),
            Action::CpuFallback { wanted } => format!(
                "{wanted} has no {}{so}; policy cpu-fallback keeps {} on the cpu",
                self.dtype, self.dtype
            ),
            Action::Substitute { from, .. } => format!(
                "{} has no {from}{so}; the implicit {from} becomes the nearest supported {} (policy downcast)",
                self.device, self.dtype
            ),
        }
    }

    /// Whether the dtype changed.
    pub fn changed(&self) -> bool {
        !matches!(self.action, Action::Keep | Action::CpuFallback { .. })
    }

    /// Logs the decision's warning (once per cause) and counts fallbacks. Called by the
    /// site after the conversion, so a downcast's warning can carry its loss report.
    pub fn announce(&self, report: Option<&ConversionReport>) {
        match self.action {
            Action::Substitute { from, lossy } => {
                let cause = format!("substitute:{from}->{}@{}", self.dtype, self.device);
                let loss = match report {
                    Some(r) if lossy => format!(" Loss: {}.", r.summary()),
                    _ => String::new(),
                };
                let msg = format!(
                    "{}: {} has no {from}; the implicit {from} became {} ({}).{loss} \
                     This warning is shown once per cause; set KILN_PRECISION=error to make it an error, \
                     or pass an explicit dtype.",
                    self.op, self.device, self.dtype, if lossy { "lossy" } else { "lossless" }
                );
                warnings::warn(&cause, &msg, self.warn_mode);
            }
            Action::CpuFallback { wanted } => {
                let cause = format!("cpu-fallback:{}@{wanted}", self.dtype);
                warnings::count_fallback(&cause);
                let msg = format!(
                    "{}: {wanted} has no {}; computing on the cpu instead (policy cpu-fallback). \
                     kiln::precision::warnings::fallback_summary() counts every fallback.",
                    self.op, self.dtype
                );
                warnings::warn(&cause, &msg, self.warn_mode);
            }
            Action::Keep | Action::Narrow64 { .. } => {}
        }
    }
}

fn refuse(req: &Request<'_>, why: String, fix: String) -> KilnError {
    KilnError::UnsupportedDType {
        op: req.op.to_string(),
        dtype: req.dtype,
        device: req.device,
        why,
        origin: req.origin,
        fix,
    }
}

/// Decides the dtype and placement of one value. Pure: it logs nothing (see
/// [`Decision::announce`]).
///
/// ```
/// use kiln::precision::{resolve, Request, Site, Config, Action};
/// use kiln::{Device, DType};
/// let mps = Device::parse("sim:mps").unwrap();
/// let cfg = Config { x64: true, ..Config::default() };
/// let req = Request { op: "convert_to_tensor", site: Site::Conversion, dtype: DType::Float64,
///     explicit: false, device: mps, engine: kiln::backend::BackendKind::Ndarray,
///     origin: std::panic::Location::caller() };
/// let d = resolve(&req, &cfg).unwrap();
/// assert_eq!(d.dtype, DType::Float32);
/// assert!(matches!(d.action, Action::Substitute { lossy: true, .. }));
/// let explicit = Request { explicit: true, ..req };
/// assert!(resolve(&explicit, &cfg).is_err());
/// ```
pub fn resolve(req: &Request<'_>, cfg: &Config) -> Result<Decision> {
    let caps = crate::device::Capabilities::of_engine(req.device, req.engine);
    let mut dtype = req.dtype;
    let mut action = Action::Keep;
    if !req.explicit && !cfg.x64 && dtype.is_64bit() && req.site != Site::Transfer {
        dtype = dtype.to_32bit();
        action = Action::Narrow64 { from: req.dtype };
    }
    let so = caps.usage(dtype).storage && !caps.supports(dtype);
    let decision = |dtype, device, action: Action| Decision {
        dtype,
        device,
        engine: match action {
            Action::CpuFallback { .. } => crate::backend::BackendKind::Ndarray,
            _ => req.engine,
        },
        action,
        storage_only: so,
        warn_mode: cfg.warnings,
        op: match action {
            Action::Keep | Action::Narrow64 { .. } => String::new(),
            _ => req.op.to_string(),
        },
    };
    if caps.supports(dtype) {
        return Ok(decision(dtype, req.device, action));
    }
    let storage_only = if so {
        " (it can store it but has no kernels for it)"
    } else {
        ""
    };
    let fallback_fix =
        "set the policy to cpu-fallback (KILN_PRECISION=cpu-fallback) to compute it on the cpu";
    match cfg.policy {
        Policy::CpuFallback if cfg.strict_fallback => Err(refuse(
            &Request { dtype, ..req.clone() },
            format!("strict mode makes every cpu fallback an error{storage_only}"),
            "turn strict mode off (KILN_STRICT_FALLBACK=0) to allow the fallback, or convert to a supported dtype first".into(),
        )),
        Policy::CpuFallback => Ok(decision(
            dtype,
            Device::Cpu,
            Action::CpuFallback { wanted: req.device },
        )),
        Policy::Error => {
            let sub = caps.substitute(dtype);
            Err(refuse(
                &Request { dtype, ..req.clone() },
                format!("policy `error` refuses every unsupported dtype{storage_only}"),
                match sub {
                    Some(s) => format!(
                        "convert to {s} first (e.g. `dtype: Some(DType::{s:?})`), use the downcast policy, or {fallback_fix}"
                    ),
                    None => format!("{fallback_fix}, or use another device"),
                },
            ))
        }
        Policy::Downcast if req.explicit => {
            let sub = caps.substitute(dtype);
            Err(refuse(
                req,
                format!("{dtype} was requested explicitly, and kiln never changes an explicit dtype{storage_only}"),
                match sub {
                    Some(s) => format!(
                        "request {s} instead (widest float here: {}), drop the explicit dtype to let kiln adapt it, \
                         use device cpu, or {fallback_fix}",
                        caps.widest_float()
                    ),
                    None => format!("use device cpu, or {fallback_fix}"),
                },
            ))
        }
        Policy::Downcast => match caps.substitute(dtype) {
            Some(s) => {
                let lossy = s.itemsize() < dtype.itemsize()
                    || (dtype.is_float() && s.mantissa_bits() < dtype.mantissa_bits());
                Ok(decision(
                    s,
                    req.device,
                    Action::Substitute { from: dtype, lossy },
                ))
            }
            None => Err(refuse(
                &Request {
                    dtype,
                    ..req.clone()
                },
                format!(
                    "{} has no dtype of the same kind to stand in for {dtype}",
                    req.device
                ),
                format!("use device cpu, or {fallback_fix}"),
            )),
        },
    }
}
