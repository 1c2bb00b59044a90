//! # kiln
//!
//! Keras-style tensors for Rust where dtype and device never surprise you.
//!
//! * [`DType`] and [`dtype::promote::result_type`]: Keras 3's dtypes and promotion lattice,
//!   with an x64 mode.
//! * [`Device`] and [`device::Capabilities`]: what each device (real or simulated: `sim:mps`,
//!   `sim:tpu`, ...) can store and compute, per dtype.
//! * [`precision`]: the one resolver that decides every dtype reaching a device, the
//!   policies (`error`, `downcast`, `cpu-fallback`), the loss report and warnings.
//! * [`backend`]: the primitive contract and the reference ndarray engine.
//! * [`ops`]: 100+ NumPy/Keras ops composed from the primitives.
//! * [`mod@io`]: `.npy` and `.npz` files.
//!
//! ```
//! use kiln::{convert_to_tensor, ops, ArrayData, Device, DType};
//! let x = ArrayData::from_shape_vec(&[1, 2, 3], vec![0.5f64, 1.0, 2.0, 4.0, 8.0, 16.0]).unwrap();
//! let mps = Device::parse("sim:mps").unwrap();
//! let t = convert_to_tensor(&x, None, &mps).unwrap();     // x64 off: float32, as in Keras
//! let y = ops::log10(&t).unwrap();
//! assert_eq!(y.dtype(), DType::Float32);
//! ```
#![warn(missing_docs)]

pub mod array;
pub mod autodiff;
pub mod backend;
pub mod datasets;
pub mod device;
pub mod doctor;
pub mod dtype;
pub mod element;
pub mod error;
mod hostmem;
pub mod io;
pub mod nn;
pub mod ops;
pub mod precision;
pub mod shape;
pub mod tensor;

pub use array::ArrayData;
pub use device::{Device, SimProfile};
pub use dtype::DType;
pub use element::Scalar;
pub use error::{KilnError, Result};
pub use precision::{Config, ConversionReport, Policy};
pub use tensor::{convert_to_tensor, convert_to_tensor_with_report, Tensor, Variable};
