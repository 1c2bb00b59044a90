//! Devices and what they can do with each dtype.
//!
//! A [`Device`] names where tensors live: the host CPU, a CUDA or Metal GPU, or a simulated
//! profile (`sim:mps`, `sim:tpu`, ...) that computes on the CPU engine but enforces the limits
//! of the real hardware, so MPS-like failures are testable on Linux.

pub mod capability;

pub use capability::{Capabilities, DTypeUsage};

use crate::error::{KilnError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A simulated hardware profile.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SimProfile {
    /// Apple MPS on macOS 14 and later.
    Mps,
    /// Apple MPS on macOS 13.
    MpsMacos13,
    /// Google TPU (via XLA).
    Tpu,
    /// WebGPU (WGSL with the `shader-f16` extension).
    WebGpu,
}

impl SimProfile {
    /// All simulated profiles.
    pub const ALL: [SimProfile; 4] = [
        SimProfile::Mps,
        SimProfile::MpsMacos13,
        SimProfile::Tpu,
        SimProfile::WebGpu,
    ];
    fn name(self) -> &'static str {
        match self {
            SimProfile::Mps => "mps",
            SimProfile::MpsMacos13 => "mps-macos13",
            SimProfile::Tpu => "tpu",
            SimProfile::WebGpu => "webgpu",
        }
    }
}

/// Where a tensor lives.
///
/// ```
/// use kiln::Device;
/// let d = Device::parse("sim:mps").unwrap();
/// assert!(!d.capabilities().supports(kiln::DType::Float64));
/// assert_eq!(d.capabilities().widest_float(), kiln::DType::Float32);
/// assert_eq!(Device::parse("cpu").unwrap().capabilities().widest_float(), kiln::DType::Float64);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Device {
    /// The host CPU (the reference ndarray engine).
    Cpu,
    /// NVIDIA GPU `N`.
    Cuda(usize),
    /// Apple GPU `N` (Metal).
    Metal(usize),
    /// A simulated profile running on the CPU engine.
    Sim(SimProfile),
}

impl Device {
    /// Every device kiln knows how to describe, for the capability matrix.
    pub fn catalogue() -> Vec<Device> {
        let mut v = vec![Device::Cpu, Device::Cuda(0), Device::Metal(0)];
        v.extend(SimProfile::ALL.iter().map(|p| Device::Sim(*p)));
        v
    }

    /// Parses `cpu`, `cuda`, `cuda:N`, `metal`, `metal:N`, `sim:mps`, `sim:mps-macos13`,
    /// `sim:tpu`, `sim:webgpu`.
    pub fn parse(s: &str) -> Result<Device> {
        let bad = |m: &str| {
            KilnError::Device {
            device: s.to_string(),
            message: format!(
                "{m}; expected cpu, cuda[:N], metal[:N], sim:mps, sim:mps-macos13, sim:tpu or sim:webgpu"
            ),
        }
        };
        let t = s.trim().to_ascii_lowercase();
        let (kind, rest) = match t.split_once(':') {
            Some((k, r)) => (k.to_string(), Some(r.to_string())),
            None => (t.clone(), None),
        };
        let ordinal = |r: Option<String>| -> Result<usize> {
            match r {
                None => Ok(0),
                Some(r) => r
                    .parse::<usize>()
                    .map_err(|_| bad("the device index is not a number")),
            }
        };
        match kind.as_str() {
            "cpu" if rest.is_none() => Ok(Device::Cpu),
            "cuda" | "gpu" => Ok(Device::Cuda(ordinal(rest)?)),
            "metal" | "mps" if rest.as_deref().is_none_or(|r| r.parse::<usize>().is_ok()) => {
                Ok(Device::Metal(ordinal(rest)?))
            }
            "sim" => {
                let r = rest.unwrap_or_default();
                SimProfile::ALL
                    .iter()
                    .find(|p| p.name() == r)
                    .map(|p| Device::Sim(*p))
                    .ok_or_else(|| bad("unknown simulated profile"))
            }
            _ => Err(bad("unknown device")),
        }
    }

    /// What this device can do with each dtype.
    pub fn capabilities(&self) -> Capabilities {
        Capabilities::of(*self)
    }

    /// Whether tensors on this device are computed by the host CPU engine (cpu and sim:*).
    pub fn runs_on_host(&self) -> bool {
        matches!(self, Device::Cpu | Device::Sim(_))
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => f.write_str("cpu"),
            Device::Cuda(n) => write!(f, "cuda:{n}"),
            Device::Metal(n) => write!(f, "metal:{n}"),
            Device::Sim(p) => write!(f, "sim:{}", p.name()),
        }
    }
}

impl FromStr for Device {
    type Err = KilnError;
    fn from_str(s: &str) -> Result<Device> {
        Device::parse(s)
    }
}

impl TryFrom<String> for Device {
    type Error = KilnError;
    fn try_from(s: String) -> Result<Device> {
        Device::parse(&s)
    }
}

impl From<Device> for String {
    fn from(d: Device) -> String {
        d.to_string()
    }
}
