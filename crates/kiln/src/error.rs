//! One error type for the whole crate. Every variant names the op, and where a dtype or a
//! device is involved, those too; messages end with how to fix the problem.

use crate::device::Device;
use crate::dtype::DType;
use thiserror::Error;

/// The result type used throughout kiln.
pub type Result<T, E = KilnError> = std::result::Result<T, E>;

/// Everything that can go wrong in kiln.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum KilnError {
    /// A dtype the device cannot hold or compute in, refused by the precision resolver.
    #[error("{op}: {dtype} is not supported on {device} ({why}); value from {origin}. Fix: {fix}")]
    UnsupportedDType {
        /// The operation (e.g. `convert_to_tensor`, `cast`, `zeros`, `add`).
        op: String,
        /// The dtype that was refused.
        dtype: DType,
        /// The device that refused it.
        device: Device,
        /// Why: explicit request, policy `error`, no same-kind substitute...
        why: String,
        /// Where the value came from (the caller's file and line, via `#[track_caller]`).
        origin: &'static std::panic::Location<'static>,
        /// The ways out.
        fix: String,
    },
    /// Keras raises for these operand dtypes (e.g. `subtract` on bool, `erf` on complex).
    #[error("{op}: not defined for dtype(s) {dtypes}: {message}")]
    DTypeNotAllowed {
        /// The operation.
        op: String,
        /// The operand dtypes, comma separated.
        dtypes: String,
        /// What Keras/NumPy say and what to do instead.
        message: String,
    },
    /// Values that do not fit the dtype they must be converted to (integer narrowing).
    #[error("{op}: {count} value(s) do not fit {to} on {device} (e.g. {example}); value from {origin}. Fix: {fix}")]
    OutOfRange {
        /// The operation.
        op: String,
        /// Target dtype.
        to: DType,
        /// Device.
        device: Device,
        /// How many elements overflowed.
        count: usize,
        /// One offending value, printed.
        example: String,
        /// Where the value came from (the caller's file and line).
        origin: &'static std::panic::Location<'static>,
        /// How to fix it.
        fix: String,
    },
    /// Operand shapes do not fit together.
    #[error("{op}: incompatible shapes {lhs:?} and {rhs:?}: {message}")]
    Shape {
        /// The operation.
        op: String,
        /// First operand's shape.
        lhs: Vec<usize>,
        /// Second operand's shape (empty when there is none).
        rhs: Vec<usize>,
        /// Detail and fix.
        message: String,
    },
    /// Tensors on different devices met in one op.
    #[error("{op}: operands live on different devices ({lhs} and {rhs}). Fix: move one with `Tensor::to_device` first")]
    DeviceMismatch {
        /// The operation.
        op: String,
        /// First operand's device.
        lhs: Device,
        /// Second operand's device.
        rhs: Device,
    },
    /// A device that this build has no engine for, or a malformed device name.
    #[error("device {device}: {message}")]
    Device {
        /// The device as written.
        device: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A bad argument (axis out of range, negative size, ...).
    #[error("{op}: {message}")]
    InvalidArgument {
        /// The operation.
        op: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// A malformed or unsupported .npy/.npz file.
    #[error("{path}: {message}")]
    Format {
        /// The file (or `<memory>`).
        path: String,
        /// What is wrong.
        message: String,
    },
    /// An operating-system I/O error.
    #[error("{path}: {message}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        message: String,
    },
    /// A configuration value (environment variable or config file) that does not parse.
    #[error("configuration {source_name}: {message}")]
    Config {
        /// `KILN_DEVICE`, the config file path, ...
        source_name: String,
        /// What is wrong.
        message: String,
    },
    /// An engine has no kernel for this op and dtype on this device, and the policy does not
    /// allow computing it on the cpu.
    #[error("{op}: the {backend} engine has no {dtype} kernel on {device}. Fix: {fix}")]
    UnsupportedOp {
        /// The engine.
        backend: String,
        /// The primitive.
        op: String,
        /// The dtype.
        dtype: DType,
        /// The device.
        device: Device,
        /// The ways out.
        fix: String,
    },
    /// An output larger than the allocator can give (or than `usize` can count).
    #[error("{op}: cannot allocate {bytes} bytes for a {dtype} array of shape {shape:?}. Fix: ask for a smaller shape (or a narrower dtype); check sizes computed from data before passing them")]
    OutOfMemory {
        /// The operation.
        op: String,
        /// The element dtype.
        dtype: DType,
        /// The shape asked for.
        shape: Vec<usize>,
        /// The bytes that could not be allocated.
        bytes: u128,
    },
    /// Training met a NaN or an infinity.
    #[error("fit: a non-finite value in epoch {} batch {batch}: {what}. Fix: lower the learning rate, clip gradients (clipnorm), check the data and the loss's inputs (log of 0, division by 0)", epoch + 1)]
    NonFinite {
        /// The epoch (from 0; printed from 1, as Keras's progress does).
        epoch: usize,
        /// The batch within the epoch (from 0).
        batch: usize,
        /// Where it appeared first: the loss, or the gradient of which variable.
        what: String,
    },
    /// A backend cannot run this primitive for this dtype.
    #[error("{backend} backend: {op} is not implemented for {dtype}: {message}")]
    Backend {
        /// Backend name.
        backend: String,
        /// Primitive.
        op: String,
        /// Dtype.
        dtype: DType,
        /// Detail.
        message: String,
    },
}

impl KilnError {
    pub(crate) fn invalid(op: &str, message: impl Into<String>) -> Self {
        KilnError::InvalidArgument {
            op: op.to_string(),
            message: message.into(),
        }
    }

    pub(crate) fn not_allowed(op: &str, dtypes: &[DType], message: impl Into<String>) -> Self {
        KilnError::DTypeNotAllowed {
            op: op.to_string(),
            dtypes: dtypes
                .iter()
                .map(|d| d.name())
                .collect::<Vec<_>>()
                .join(", "),
            message: message.into(),
        }
    }

    pub(crate) fn shape(
        op: &str,
        lhs: &[usize],
        rhs: &[usize],
        message: impl Into<String>,
    ) -> Self {
        KilnError::Shape {
            op: op.to_string(),
            lhs: lhs.to_vec(),
            rhs: rhs.to_vec(),
            message: message.into(),
        }
    }

    /// A short, stable name for the kind of error (used by the matrix test and the CLI).
    pub fn kind_name(&self) -> &'static str {
        match self {
            KilnError::UnsupportedDType { .. } => "unsupported-dtype",
            KilnError::DTypeNotAllowed { .. } => "dtype-not-allowed",
            KilnError::OutOfRange { .. } => "out-of-range",
            KilnError::Shape { .. } => "shape",
            KilnError::DeviceMismatch { .. } => "device-mismatch",
            KilnError::Device { .. } => "device",
            KilnError::InvalidArgument { .. } => "invalid-argument",
            KilnError::Format { .. } => "format",
            KilnError::Io { .. } => "io",
            KilnError::Config { .. } => "config",
            KilnError::Backend { .. } => "backend",
            KilnError::UnsupportedOp { .. } => "unsupported-op",
            KilnError::OutOfMemory { .. } => "out-of-memory",
            KilnError::NonFinite { .. } => "non-finite",
        }
    }
}
