//! Precision: the configuration (device, policy, floatx, x64), the one resolver that decides
//! every dtype reaching a device, the loss report of a downcast, and the warning registry.

pub mod config;
pub mod report;
pub mod resolver;
pub mod warnings;

pub use config::{Config, Policy, Scope, ScopeGuard, WarnMode};
pub use report::ConversionReport;
pub use resolver::{resolve, Action, Decision, Request, Site};

/// The precision policy's answer to an engine that would compute a primitive on the host for
/// a device that lacks its kernel (installed as the engines' [`crate::backend::HostFallbackGate`]):
/// allowed under `cpu-fallback` outside strict mode, counted and warned once per cause;
/// refused otherwise, with the fix.
pub(crate) fn host_fallback_gate(
    backend: &str,
    op: &str,
    dtype: crate::dtype::DType,
    device: crate::device::Device,
) -> crate::error::Result<()> {
    let cfg = config::current()?;
    if cfg.policy != Policy::CpuFallback || cfg.strict_fallback {
        return Err(crate::error::KilnError::UnsupportedOp {
            backend: backend.into(),
            op: op.into(),
            dtype,
            device,
            fix: "set the policy to cpu-fallback (KILN_PRECISION=cpu-fallback) with strict mode off to compute it on the cpu, or move the tensor to the cpu".into(),
        });
    }
    let key = format!("cpu-fallback:{op}:{dtype}@{device}");
    warnings::count_fallback(&key);
    warnings::warn(
        &key,
        &format!("{op}: {backend} has no {dtype} kernel on {device}; computing it on the cpu (policy cpu-fallback)"),
        cfg.warnings,
    );
    Ok(())
}
