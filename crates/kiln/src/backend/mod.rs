//! The backend contract: a small, object-safe set of primitives that every engine
//! implements. Backends own storage and kernels only; dtype semantics, device limits,
//! broadcasting rules and every composed op live in the frontend ([`crate::ops`]), so all
//! engines behave the same.
//!
//! Contract for implementers: the frontend only calls a primitive with operands of one
//! dtype (it casts first), with shapes already checked (binary/select operands broadcast
//! to each other, matmul operands at least 2-d with matching inner dimensions), and with
//! axes in range. A primitive that cannot run a dtype returns [`KilnError::Backend`]; it
//! never panics and never returns a silently wrong value.

#[cfg(feature = "candle")]
pub mod candle;
pub mod meta;
pub mod ndarray;

/// Which engine computes a tensor.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BackendKind {
    /// The reference engine on `ndarray` (host CPU; also runs the simulated devices).
    Ndarray,
    /// The candle engine (`candle-core`): CPU, and CUDA/Metal with those cargo features.
    Candle,
}

impl BackendKind {
    /// Parses `ndarray` or `candle`.
    pub fn parse(s: &str) -> Result<BackendKind> {
        match s.trim() {
            "ndarray" => Ok(BackendKind::Ndarray),
            "candle" => Ok(BackendKind::Candle),
            other => Err(KilnError::Config {
                source_name: "backend".into(),
                message: format!("{other:?} is not a backend; use ndarray or candle"),
            }),
        }
    }
    /// The name as parsed.
    pub fn name(self) -> &'static str {
        match self {
            BackendKind::Ndarray => "ndarray",
            BackendKind::Candle => "candle",
        }
    }
    /// Every engine compiled into this build.
    pub fn available() -> Vec<BackendKind> {
        let mut v = vec![BackendKind::Ndarray];
        if cfg!(feature = "candle") {
            v.push(BackendKind::Candle);
        }
        v
    }
}

impl std::fmt::Display for BackendKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

use crate::array::ArrayData;
use crate::dtype::DType;
use crate::element::Scalar;
use crate::error::{KilnError, Result};
use std::any::Any;
use std::sync::Arc;

/// Elementwise unary primitives (same dtype out, except the predicates, which give bool,
/// and `Abs`/`Real`/`Imag` of complex, which give the real dtype).
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sign,
    Sqrt,
    Exp,
    Expm1,
    Log,
    Log1p,
    Log2,
    Log10,
    Sin,
    Cos,
    Tan,
    Asin,
    Acos,
    Atan,
    Sinh,
    Cosh,
    Tanh,
    Erf,
    Floor,
    Ceil,
    Round,
    IsNan,
    IsInf,
    IsFinite,
    LogicalNot,
    Real,
    Imag,
    Conj,
}

/// Elementwise binary primitives on two operands of one dtype (broadcast).
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    Max,
    Min,
    Atan2,
    Hypot,
    And,
    Or,
    Xor,
}

impl BinaryOp {
    /// The Keras name of the op (for errors; no allocation on the op's path).
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "subtract",
            BinaryOp::Mul => "multiply",
            BinaryOp::Div => "divide",
            BinaryOp::FloorDiv => "floor_divide",
            BinaryOp::Mod => "mod",
            BinaryOp::Pow => "power",
            BinaryOp::Max => "maximum",
            BinaryOp::Min => "minimum",
            BinaryOp::Atan2 => "arctan2",
            BinaryOp::Hypot => "hypot",
            BinaryOp::And => "logical_and",
            BinaryOp::Or => "logical_or",
            BinaryOp::Xor => "logical_xor",
        }
    }
}

/// Comparisons (result bool). NaN compares unequal to everything; complex orders
/// lexicographically, as NumPy does.
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

/// Reductions over a set of axes.
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReduceOp {
    Sum,
    Prod,
    Max,
    Min,
    All,
    Any,
}

/// Index of the extreme value along one axis (first occurrence; NaN wins, as in NumPy).
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ArgOp {
    ArgMax,
    ArgMin,
}

/// Inclusive scans along one axis.
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum ScanOp {
    CumSum,
    CumProd,
}

/// Reductions an engine may run as one fused kernel. Where an engine answers `Ok(None)`,
/// the frontend composes them from primitives (those compositions stay the reference the
/// fused kernels are tested against). Input: a real float dtype (the frontend casts first),
/// except `CountNonzero` (any non-complex dtype, giving int64); output: the input's dtype.
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum FusedReduce {
    Mean,
    /// Population variance (two passes).
    Var,
    /// Population standard deviation.
    Std,
    /// `log(sum(exp(x)))`, shifted by the maximum (0 where the maximum is infinite).
    LogSumExp,
    CountNonzero,
}

/// Activations (and `clip`) an engine may run as one elementwise kernel (real float dtypes;
/// `Ok(None)` composes them). Keras's formulas: see `ops::composed`.
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Activation {
    Relu,
    Relu6,
    Sigmoid,
    Silu,
    Softplus,
    /// `approximate`: the tanh form (Keras's default); else the erf form.
    Gelu {
        approximate: bool,
    },
    Elu {
        alpha: f64,
    },
    LeakyRelu {
        negative_slope: f64,
    },
    /// `minimum(maximum(x, lo), hi)`, with bounds already in the input's dtype (relu6 is
    /// `Clip { lo: 0, hi: 6 }`).
    Clip {
        lo: f64,
        hi: f64,
    },
}

/// Row normalisations along one axis an engine may fuse (real float dtypes).
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum Normalize {
    Softmax,
    LogSoftmax,
}

/// One optimizer update an engine may run as a single pass over a variable, its gradient and
/// its slots (Keras 3's formulas, in the variable's dtype, in the order the composed update in
/// `nn::optimizers` computes them, so both give the same bits). `decay` is the decoupled
/// weight decay `weight_decay * lr`, applied first: `w -= w * decay`.
#[allow(missing_docs)]
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum OptimizerStep {
    /// No slots: `w - g * lr`.
    Sgd { lr: f64, decay: f64 },
    /// Slot `[m]`: `m' = g * -lr + m * momentum`; `w + m'`, or with Nesterov
    /// `w + (g * -lr + m' * momentum)`.
    SgdMomentum {
        lr: f64,
        momentum: f64,
        nesterov: bool,
        decay: f64,
    },
    /// Slots `[m, v]` (and `[v_hat]` with AMSGrad): `m' = m + (g - m)(1 - b1)`,
    /// `v' = v + (g^2 - v)(1 - b2)`, `w - m' alpha / (sqrt(v') + eps)` with
    /// `alpha = lr sqrt(1 - b2^t) / (1 - b1^t)`.
    Adam {
        alpha: f64,
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
        amsgrad: bool,
        decay: f64,
    },
    /// Slots `[v]`, then `[mom]` with momentum, then `[avg]` when centered:
    /// `v' = v rho + g^2 (1 - rho)`, `avg' = avg rho + g (1 - rho)`,
    /// `inc = g lr / sqrt(v' (- avg'^2) + eps)`, `mom' = mom momentum + inc`, `w - (mom' | inc)`.
    RmsProp {
        lr: f64,
        rho: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
        decay: f64,
    },
    /// Slot `[acc]`: `acc' = acc + g^2`, `w - g lr / sqrt(acc' + eps)`.
    Adagrad { lr: f64, epsilon: f64, decay: f64 },
    /// Slots `[m, u]`: `m' = m + (g - m)(1 - b1)`, `u' = max(u b2, |g|)`,
    /// `w - m' lr / ((u' + eps) bias)` with `bias = 1 - b1^t`.
    Adamax {
        lr: f64,
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
        bias: f64,
        decay: f64,
    },
    /// Slots `[m, v]`: Adam's moments, `m_hat = m' k_m + g k_g`, `v_hat = v' / k_v`,
    /// `w - m_hat lr / (sqrt(v_hat) + eps)` (the `k` from Keras's momentum schedule).
    Nadam {
        lr: f64,
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
        k_m: f64,
        k_g: f64,
        k_v: f64,
        decay: f64,
    },
    /// Slot `[m]`: `w - sign(m b1 + g (1 - b1)) lr`, `m' = m b2 + g (1 - b2)`.
    Lion {
        lr: f64,
        beta_1: f64,
        beta_2: f64,
        decay: f64,
    },
}

/// One axis of a strided slice: `start..end` by `step` (`step` may be negative, as in
/// NumPy's `a[::-1]`; bounds are already clamped by the frontend).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SliceSpec {
    /// First index (inclusive), counted from the start even when `step < 0`.
    pub start: usize,
    /// End (exclusive).
    pub end: usize,
    /// Step; never 0.
    pub step: isize,
}

/// Backend-owned tensor storage, opaque to the frontend. Each engine downcasts to its own
/// type; handing one engine's storage to another is a [`KilnError::Backend`] error.
#[derive(Clone)]
pub struct Storage(pub(crate) Arc<dyn Any + Send + Sync>);

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Storage(..)")
    }
}

/// The primitives an engine implements. Object-safe: the frontend holds `Arc<dyn Backend>`.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Short name (`ndarray`, `candle`).
    fn name(&self) -> &'static str;
    /// Which engine this is.
    fn kind(&self) -> BackendKind;
    /// The dtype and shape of a storage.
    fn describe(&self, s: &Storage) -> Result<(DType, Vec<usize>)>;
    /// Waits until every kernel queued on this engine has finished (GPU engines queue work
    /// asynchronously; timing a GPU op needs this). Host engines compute eagerly.
    fn synchronize(&self) -> Result<()> {
        Ok(())
    }
    /// Moves host data into engine storage.
    fn upload(&self, data: ArrayData) -> Result<Storage>;
    /// Copies storage back to the host.
    fn download(&self, s: &Storage) -> Result<ArrayData>;
    /// Elementwise conversion with NumPy's unsafe-casting semantics (the resolver has
    /// already decided that this cast is wanted).
    fn cast(&self, s: &Storage, to: DType) -> Result<Storage>;
    /// Elementwise unary primitive.
    fn unary(&self, op: UnaryOp, s: &Storage) -> Result<Storage>;
    /// Elementwise binary primitive; operands have one dtype and broadcast to `shape`.
    fn binary(&self, op: BinaryOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage>;
    /// Elementwise comparison to bool; operands have one dtype and broadcast to `shape`.
    fn compare(&self, op: CmpOp, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage>;
    /// `cond ? a : b` elementwise; `cond` is bool, `a` and `b` share a dtype; all broadcast.
    fn select(&self, cond: &Storage, a: &Storage, b: &Storage, shape: &[usize]) -> Result<Storage>;
    /// Reduction over `axes` (sorted, unique).
    fn reduce(&self, op: ReduceOp, s: &Storage, axes: &[usize], keepdims: bool) -> Result<Storage>;
    /// Arg-reduction along `axis`, giving int64 indices with `axis` removed.
    fn arg_reduce(&self, op: ArgOp, s: &Storage, axis: usize) -> Result<Storage>;
    /// Inclusive scan along `axis`.
    fn scan(&self, op: ScanOp, s: &Storage, axis: usize) -> Result<Storage>;
    /// Batched matrix product of `op(a)` `[..., m, k]` and `op(b)` `[..., k, n]`, batch dims
    /// broadcast, where `op` swaps the last two axes of an operand whose `transpose_*` flag
    /// is set (engines pass the transposed operand to their GEMM as strides, uncopied).
    fn matmul(
        &self,
        a: &Storage,
        b: &Storage,
        transpose_a: bool,
        transpose_b: bool,
    ) -> Result<Storage>;
    /// Reshape (C order).
    fn reshape(&self, s: &Storage, shape: &[usize]) -> Result<Storage>;
    /// Axis permutation.
    fn permute(&self, s: &Storage, axes: &[usize]) -> Result<Storage>;
    /// Broadcast to a larger shape (materialised).
    fn broadcast_to(&self, s: &Storage, shape: &[usize]) -> Result<Storage>;
    /// Strided slice, one spec per axis.
    fn slice(&self, s: &Storage, specs: &[SliceSpec]) -> Result<Storage>;
    /// Concatenation along `axis` (same dtype, shapes equal off-axis).
    fn concat(&self, parts: &[&Storage], axis: usize) -> Result<Storage>;
    /// Picks `indices` (in range) along `axis`.
    fn index_select(&self, s: &Storage, indices: &[usize], axis: usize) -> Result<Storage>;
    /// The transpose of [`index_select`](Backend::index_select): a zero tensor like `s` whose
    /// `axis` has length `n`, with slice `j` of `s` along `axis` added at `indices[j]`
    /// (repeated indices accumulate). `indices.len()` is `s`'s length on `axis`, each index
    /// below `n`.
    fn index_add(&self, s: &Storage, indices: &[usize], axis: usize, n: usize) -> Result<Storage>;
    /// NumPy `take_along_axis` with int64 `indices` of the same rank, already in range.
    fn gather(&self, s: &Storage, indices: &Storage, axis: usize) -> Result<Storage>;
    /// Constant padding.
    fn pad(&self, s: &Storage, widths: &[(usize, usize)], value: Scalar) -> Result<Storage>;
    /// Stable ascending sort along `axis` (NaN last).
    fn sort(&self, s: &Storage, axis: usize) -> Result<Storage>;
    /// Stable ascending argsort along `axis` (int64).
    fn argsort(&self, s: &Storage, axis: usize) -> Result<Storage>;

    /// A fused reduction over `axes` (sorted, unique), or `Ok(None)` to have the frontend
    /// compose it.
    fn reduce_fused(
        &self,
        _op: FusedReduce,
        _s: &Storage,
        _axes: &[usize],
        _keepdims: bool,
    ) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// A fused activation, or `Ok(None)` to have the frontend compose it.
    fn activation(&self, _act: Activation, _s: &Storage) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// One-hot encoding of integer `indices` along a new last axis of `num_classes`, in
    /// `dtype` (out-of-range indices give all-zero rows, as in Keras), or `Ok(None)` to have
    /// the frontend compose it (`equal` against the classes, then a cast).
    fn one_hot(
        &self,
        _indices: &Storage,
        _num_classes: usize,
        _dtype: DType,
    ) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// `triu` (`upper`: elements with `j - i < k` zeroed) or `tril` (`j - i > k` zeroed) of
    /// the last two axes (the input has at least two), or `Ok(None)` to have the frontend
    /// compose it (`where` with a triangular mask).
    fn triangle(&self, _s: &Storage, _k: isize, _upper: bool) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// Fused softmax / log_softmax along `axis`, or `Ok(None)` to have the frontend compose
    /// it.
    fn normalize(&self, _op: Normalize, _s: &Storage, _axis: usize) -> Result<Option<Storage>> {
        Ok(None)
    }
    /// One optimizer update in one pass: the new variable followed by the new slots, or
    /// `Ok(None)` to have the frontend compose it. Operands share one real float dtype and
    /// one shape.
    fn optimizer_step(
        &self,
        _step: OptimizerStep,
        _w: &Storage,
        _g: &Storage,
        _slots: &[&Storage],
    ) -> Result<Option<Vec<Storage>>> {
        Ok(None)
    }
}

/// The text of a caught panic's payload.
pub(crate) fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<String>()
        .cloned()
        .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

/// Runs a primitive so that a contract violation by a direct caller of the public
/// `Backend` API (bad axes, out-of-range indices) is an error rather than a panic. The
/// frontend never violates the contract; this guards everyone else.
pub(crate) fn guarded<T>(op: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|p| {
        Err(KilnError::invalid(
            op,
            format!(
                "the engine rejected its arguments ({}); see the Backend contract in kiln::backend",
                panic_message(&*p)
            ),
        ))
    })
}

pub(crate) fn backend_err(
    backend: &str,
    op: &str,
    dtype: DType,
    message: impl Into<String>,
) -> KilnError {
    KilnError::Backend {
        backend: backend.into(),
        op: op.into(),
        dtype,
        message: message.into(),
    }
}

/// Decides whether an engine may compute a primitive on the host for a device that lacks
/// the kernel (`backend` computing `op` in `dtype` for `device`): `Ok(())` to go ahead, or the
/// error to return.
/// Backends do not know the precision policy; the frontend installs the gate that asks it
/// (see [`set_host_fallback_gate`]). Until one is installed every such fallback is refused.
pub type HostFallbackGate =
    fn(backend: &str, op: &str, dtype: DType, device: crate::device::Device) -> Result<()>;

static HOST_FALLBACK_GATE: std::sync::OnceLock<HostFallbackGate> = std::sync::OnceLock::new();

/// Installs the gate asked before any host fallback (the first installation wins; kiln's
/// frontend installs the precision policy's when it first hands out an engine).
pub fn set_host_fallback_gate(gate: HostFallbackGate) {
    let _ = HOST_FALLBACK_GATE.set(gate);
}

/// Asks the installed gate; refuses when none is installed.
#[cfg_attr(not(feature = "candle"), allow(dead_code))]
pub(crate) fn host_fallback_allowed(
    backend: &str,
    op: &str,
    dtype: DType,
    device: crate::device::Device,
) -> Result<()> {
    match HOST_FALLBACK_GATE.get() {
        Some(gate) => gate(backend, op, dtype, device),
        None => Err(KilnError::UnsupportedOp {
            backend: backend.into(),
            op: op.into(),
            dtype,
            device,
            fix: "no host-fallback gate is installed (kiln's frontend installs one when it hands out an engine); move the tensor to the cpu".into(),
        }),
    }
}
