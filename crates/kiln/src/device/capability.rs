//! Capability profiles: for each (device, dtype), whether the device can store it, compute
//! in it, and compute in it at full speed. Modelled on burn's `DTypeUsage`
//! (Storage / Arithmetic / Accelerated), but enforced: the precision resolver consults these
//! profiles at every point a dtype reaches a device.

use super::{Device, SimProfile};
use crate::dtype::{DType, DTypeKind};
use serde::Serialize;
use std::fmt;

/// How a device can use one dtype.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize, Default)]
pub struct DTypeUsage {
    /// Tensors of this dtype can be held in device memory.
    pub storage: bool,
    /// Kernels exist that compute in this dtype.
    pub arithmetic: bool,
    /// The device has fast paths (tensor cores, BLAS, SIMD) for it.
    pub accelerated: bool,
}

impl DTypeUsage {
    const NONE: DTypeUsage = DTypeUsage {
        storage: false,
        arithmetic: false,
        accelerated: false,
    };
    const STORE: DTypeUsage = DTypeUsage {
        storage: true,
        arithmetic: false,
        accelerated: false,
    };
    const ARITH: DTypeUsage = DTypeUsage {
        storage: true,
        arithmetic: true,
        accelerated: false,
    };
    const FAST: DTypeUsage = DTypeUsage {
        storage: true,
        arithmetic: true,
        accelerated: true,
    };

    /// A one-word summary: `accelerated`, `arithmetic`, `storage` or `none`.
    pub fn level(&self) -> &'static str {
        if self.accelerated {
            "accelerated"
        } else if self.arithmetic {
            "arithmetic"
        } else if self.storage {
            "storage"
        } else {
            "none"
        }
    }
}

impl fmt::Display for DTypeUsage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.level())
    }
}

/// The capability profile of one device.
#[derive(Copy, Clone, Debug, PartialEq, Serialize)]
pub struct Capabilities {
    /// The device described.
    pub device: Device,
    usage: [(DType, DTypeUsage); 15],
    /// The public source this profile follows.
    pub source: &'static str,
}

fn profile(only: &[DType], fast: &[DType], store_only: &[DType]) -> [(DType, DTypeUsage); 15] {
    DType::ALL.map(|d| {
        let u = if fast.contains(&d) {
            DTypeUsage::FAST
        } else if only.contains(&d) {
            DTypeUsage::ARITH
        } else if store_only.contains(&d) {
            DTypeUsage::STORE
        } else {
            DTypeUsage::NONE
        };
        (d, u)
    })
}

fn all_but(excluded: &[DType]) -> Vec<DType> {
    DType::ALL
        .iter()
        .copied()
        .filter(|d| !excluded.contains(d))
        .collect()
}

use DType::*;

/// CPU: the reference ndarray engine computes in every dtype; float32/float64 matmul and
/// elementwise kernels are accelerated (kiln's AVX-512 GEMM, SIMD kernels, rayon).
const CPU_SOURCE: &str =
    "kiln's ndarray engine: every dtype has kernels; f32/f64 use kiln's SIMD GEMM and kernels";

/// candle-core's CUDA backend (`candle-core/src/cuda_backend`): u8, u32, i64, bf16, f16,
/// f32, f64; no bool, int8/16, uint16/64 or complex.
const CUDA_SOURCE: &str = "candle-core CUDA backend dtypes (U8, U32, I64, BF16, F16, F32, F64; bool as U8 masks), https://github.com/huggingface/candle/blob/main/candle-core/src/dtype.rs";

/// candle-core's Metal backend stores float64 but has no float64 kernels.
const METAL_SOURCE: &str = "candle-core Metal backend: kernels for U8, U32, I64, BF16, F16, F32; F64 storage only, https://github.com/huggingface/candle/tree/main/candle-metal-kernels";

/// PyTorch MPS: "MPS framework doesn't support float64" and complex128 is absent; bfloat16
/// and complex64 need macOS 14 (https://pytorch.org/docs/stable/notes/mps.html,
/// https://github.com/pytorch/pytorch/issues/77764).
const MPS_SOURCE: &str = "PyTorch MPS notes and pytorch/pytorch#77764: no float64 or complex128 on MPS; bfloat16 and complex64 from macOS 14";

/// macOS 13 MPS: no bfloat16 (MPSGraph gained it in macOS 14) and no complex types.
const MPS13_SOURCE: &str =
    "PyTorch MPS on macOS 13: 'MPS BFloat16 is only supported on MacOS 14 or newer', no complex";

/// JAX on TPU: 64-bit types are not supported by the hardware
/// (https://cloud.google.com/tpu/docs/troubleshooting/trouble-tf and JAX's sharp bits:
/// x64 on TPU falls back to slow emulation or is refused).
const TPU_SOURCE: &str =
    "Cloud TPU docs / JAX sharp bits: TPUs have no float64, int64, uint64 or complex128 arithmetic";

/// WGSL scalar types: bool, i32, u32, f32 and (with `shader-f16`) f16
/// (https://www.w3.org/TR/WGSL/#types).
const WEBGPU_SOURCE: &str = "WGSL spec (w3.org/TR/WGSL/#scalar-types): bool, i32, u32, f32, f16 with the shader-f16 extension";

/// candle-core 0.11's CPU backend: kernels for U8, U32, I16, I32, I64, BF16, F16, F32, F64
/// (`candle-core/src/dtype.rs`, `cpu_backend`). kiln stores bool as U8 masks (what candle's
/// comparisons return); int8, uint16, uint64 and complex have no candle dtype. BF16/F16 CPU
/// kernels convert per element (not accelerated).
const CANDLE_CPU_SOURCE: &str = "candle-core 0.11 CPU backend dtypes U8, U32, I16, I32, I64, BF16, F16, F32, F64 (bool stored as U8 masks by kiln; int8, uint16 and uint64 carried in I16, U32 and I64 and computed by kiln's reference kernels); no complex";

impl Capabilities {
    /// The profile of `device` as computed by `engine`: the device's own limits, further
    /// narrowed by what the engine implements. Simulated devices keep their profile on
    /// either CPU engine.
    pub fn of_engine(device: Device, engine: crate::backend::BackendKind) -> Capabilities {
        // Every op asks this several times; the profiles never change, so each thread
        // remembers the ones it asked for.
        thread_local! {
            static SEEN: std::cell::RefCell<Vec<(Device, crate::backend::BackendKind, Capabilities)>> =
                const { std::cell::RefCell::new(Vec::new()) };
        }
        if let Some(c) = SEEN.with(|s| {
            s.borrow()
                .iter()
                .find(|(d, e, _)| *d == device && *e == engine)
                .map(|(_, _, c)| *c)
        }) {
            return c;
        }
        let c = Self::of_engine_uncached(device, engine);
        SEEN.with(|s| s.borrow_mut().push((device, engine, c)));
        c
    }

    fn of_engine_uncached(device: Device, engine: crate::backend::BackendKind) -> Capabilities {
        use crate::backend::BackendKind;
        let base = Capabilities::of(device);
        match (engine, device) {
            (BackendKind::Candle, Device::Cpu | Device::Sim(_)) => {
                let candle = profile(
                    &[
                        Bool, Int8, UInt8, UInt16, UInt32, UInt64, Int16, Int32, Int64, BFloat16,
                        Float16, Float32, Float64,
                    ],
                    &[Float32, Float64],
                    &[],
                );
                let mut usage = base.usage;
                for ((_, u), (_, c)) in usage.iter_mut().zip(candle) {
                    *u = DTypeUsage {
                        storage: u.storage && c.storage,
                        arithmetic: u.arithmetic && c.arithmetic,
                        accelerated: u.accelerated && c.accelerated,
                    };
                }
                let source = if device == Device::Cpu {
                    CANDLE_CPU_SOURCE
                } else {
                    base.source
                };
                Capabilities {
                    device,
                    usage,
                    source,
                }
            }
            _ => base,
        }
    }

    /// The profile of `device`.
    pub fn of(device: Device) -> Capabilities {
        let (usage, source) = match device {
            Device::Cpu => (profile(&DType::ALL, &[Float32, Float64], &[]), CPU_SOURCE),
            Device::Cuda(_) => (
                profile(
                    &[
                        Bool, UInt8, UInt32, Int64, BFloat16, Float16, Float32, Float64,
                    ],
                    &[BFloat16, Float16, Float32],
                    &[],
                ),
                CUDA_SOURCE,
            ),
            Device::Metal(_) => (
                profile(
                    &[Bool, UInt8, UInt32, Int64, BFloat16, Float16, Float32],
                    &[BFloat16, Float16, Float32],
                    &[Float64],
                ),
                METAL_SOURCE,
            ),
            Device::Sim(SimProfile::Mps) => (
                profile(
                    &all_but(&[Float64, Complex128]),
                    &[BFloat16, Float16, Float32],
                    &[],
                ),
                MPS_SOURCE,
            ),
            Device::Sim(SimProfile::MpsMacos13) => (
                profile(
                    &all_but(&[Float64, Complex128, BFloat16, Complex64]),
                    &[Float16, Float32],
                    &[],
                ),
                MPS13_SOURCE,
            ),
            Device::Sim(SimProfile::Tpu) => (
                profile(
                    &all_but(&[Float64, Int64, UInt64, Complex128]),
                    &[BFloat16, Float32],
                    &[],
                ),
                TPU_SOURCE,
            ),
            Device::Sim(SimProfile::WebGpu) => (
                profile(
                    &[Float32, Float16, Int32, UInt32, Bool],
                    &[Float32, Float16],
                    &[],
                ),
                WEBGPU_SOURCE,
            ),
        };
        Capabilities {
            device,
            usage,
            source,
        }
    }

    /// How this device can use `dtype`.
    pub fn usage(&self, dtype: DType) -> DTypeUsage {
        self.usage
            .iter()
            .find(|(d, _)| *d == dtype)
            .map(|(_, u)| *u)
            .unwrap_or_default()
    }

    /// Whether the device can compute in `dtype` (storage alone does not count: a tensor
    /// that cannot be computed with is of no use to an op).
    pub fn supports(&self, dtype: DType) -> bool {
        self.usage(dtype).arithmetic
    }

    /// The widest real float type the device computes in.
    pub fn widest_float(&self) -> DType {
        [Float64, Float32, Float16, BFloat16]
            .into_iter()
            .find(|d| self.supports(*d))
            .unwrap_or(Float32)
    }

    /// Supported dtypes, in [`DType::ALL`] order.
    pub fn supported(&self) -> Vec<DType> {
        DType::ALL
            .iter()
            .copied()
            .filter(|d| self.supports(*d))
            .collect()
    }

    /// The supported dtype that best stands in for an unsupported `dtype` of the same kind:
    /// the narrowest wider type that holds every value (lossless), else the widest narrower
    /// one (lossy: the caller must report the loss or check the range). `None` if the
    /// device has no type of that kind at all.
    ///
    /// ```
    /// use kiln::{Device, DType};
    /// let mps = Device::parse("sim:mps").unwrap().capabilities();
    /// assert_eq!(mps.substitute(DType::Float64), Some(DType::Float32));
    /// let webgpu = Device::parse("sim:webgpu").unwrap().capabilities();
    /// assert_eq!(webgpu.substitute(DType::Int8), Some(DType::Int32));
    /// assert_eq!(webgpu.substitute(DType::BFloat16), Some(DType::Float32));
    /// assert_eq!(webgpu.substitute(DType::Complex64), None);
    /// ```
    pub fn substitute(&self, dtype: DType) -> Option<DType> {
        let same_kind: Vec<DType> = DType::ALL
            .iter()
            .copied()
            .filter(|d| d.kind() == dtype.kind() && self.supports(*d))
            .collect();
        let holds = |d: &DType| match dtype.kind() {
            // float16 does not hold bfloat16's range, nor bfloat16 float16's precision.
            DTypeKind::Float => {
                d.itemsize() > dtype.itemsize() && d.mantissa_bits() >= dtype.mantissa_bits()
            }
            _ => d.itemsize() > dtype.itemsize(),
        };
        if let Some(d) = same_kind
            .iter()
            .filter(|d| holds(d))
            .min_by_key(|d| d.itemsize())
        {
            return Some(*d);
        }
        // Unsigned ints may widen into a larger signed type too.
        if dtype.kind() == DTypeKind::UInt {
            if let Some(d) = DType::ALL
                .iter()
                .filter(|d| {
                    d.kind() == DTypeKind::Int
                        && self.supports(**d)
                        && d.itemsize() > dtype.itemsize()
                })
                .min_by_key(|d| d.itemsize())
            {
                return Some(*d);
            }
        }
        same_kind
            .iter()
            .filter(|d| d.itemsize() < dtype.itemsize())
            .max_by_key(|d| (d.itemsize(), d.mantissa_bits()))
            .copied()
    }
}
