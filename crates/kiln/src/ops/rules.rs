//! Per-op result dtypes, following Keras 3 (`keras/src/backend/jax/numpy.py` and
//! `nn.py`), checked against `keras_op_dtypes.json` for every case it lists. Operand dtypes
//! here are a tensor's dtype or a weak scalar kind; `cfg` is the op's configuration, with x64
//! on where an operand is 64-bit ([`Config::for_operands`]).

use crate::dtype::promote::{result_type, DTypeLike};
use crate::dtype::{DType, DTypeKind};
use crate::error::{KilnError, Result};
use crate::precision::Config;

/// How an op's result dtype follows from its operand's.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum UnaryRule {
    /// Same dtype; bool is refused (negative, sign, round).
    SameNoBool,
    /// Same dtype; complex gives its real dtype (abs, real, imag).
    RealPart,
    /// `result_type(x, float)`: ints and bool become floatx-precision floats (sqrt, exp, ...).
    ToFloat,
    /// `result_type(x, float)`, complex refused (floor, ceil).
    ToFloatNoComplex,
    /// Bool becomes int32, else same (square, relu, cumsum, cumprod).
    BoolToInt,
    /// Always bool (isnan, logical_not, all, any).
    Bool,
    /// Real or complex floats only (sigmoid, silu, rsqrt).
    FloatOnly,
    /// Real floats only (erf).
    RealFloatOnly,
    /// Sums: bool and small ints widen to (u)int32 (sum, prod, trace).
    Sum,
    /// Same dtype (max, min, transpose, ...).
    Same,
    /// Index dtype; complex refused (argmax, argmin).
    IndexNoComplex,
    /// Index dtype (argsort, count_nonzero).
    Index,
    /// Float, complex gives its real dtype (std).
    RealFloat,
    /// Floats; bool refused (softmax, log_softmax).
    ToFloatNoBool,
}

fn weak_float(x: DType, cfg: &Config) -> Result<DType> {
    result_type(
        &[DTypeLike::Strong(x), DTypeLike::WeakFloat],
        cfg.floatx,
        cfg.x64,
    )
}

/// The index dtype: int32 in x64-off mode (Keras), int64 with x64 on (JAX).
pub fn index_dtype(cfg: &Config) -> DType {
    if cfg.x64 {
        DType::Int64
    } else {
        DType::Int32
    }
}

/// The result dtype of a unary op, or Keras's refusal.
pub fn unary(op: &str, rule: UnaryRule, x: DType, cfg: &Config) -> Result<DType> {
    let refuse = |why: &str| Err(KilnError::not_allowed(op, &[x], why.to_string()));
    let canon = |d: DType| if cfg.x64 { d } else { d.to_32bit() };
    let x = canon(x);
    match rule {
        UnaryRule::SameNoBool if x == DType::Bool => {
            refuse("not defined for bool (Keras raises); cast to an integer or float dtype first")
        }
        UnaryRule::SameNoBool | UnaryRule::Same => Ok(x),
        UnaryRule::RealPart => Ok(x.real_dtype()),
        UnaryRule::ToFloat => weak_float(x, cfg),
        UnaryRule::ToFloatNoComplex if x.is_complex() => {
            refuse("not defined for complex dtypes (Keras raises)")
        }
        UnaryRule::ToFloatNoComplex => weak_float(x, cfg),
        UnaryRule::BoolToInt if x == DType::Bool => Ok(index_dtype(cfg)),
        UnaryRule::BoolToInt => Ok(x),
        UnaryRule::Bool => Ok(DType::Bool),
        UnaryRule::FloatOnly if !x.is_inexact() => {
            refuse("defined for float and complex dtypes only (Keras raises); cast to floatx first")
        }
        UnaryRule::FloatOnly => Ok(x),
        UnaryRule::RealFloatOnly if !x.is_float() => {
            refuse("defined for real float dtypes only (Keras raises); cast to floatx first")
        }
        UnaryRule::RealFloatOnly => Ok(x),
        UnaryRule::Sum => Ok(match (x.kind(), cfg.x64) {
            (DTypeKind::Bool | DTypeKind::Int, false) => DType::Int32,
            (DTypeKind::Bool | DTypeKind::Int, true) => DType::Int64,
            (DTypeKind::UInt, false) => DType::UInt32,
            (DTypeKind::UInt, true) => DType::UInt64,
            _ => x,
        }),
        UnaryRule::IndexNoComplex if x.is_complex() => {
            refuse("complex values have no order here (Keras raises)")
        }
        UnaryRule::IndexNoComplex | UnaryRule::Index => Ok(index_dtype(cfg)),
        UnaryRule::RealFloat => Ok(weak_float(x, cfg)?.real_dtype()),
        UnaryRule::ToFloatNoBool if x == DType::Bool => {
            refuse("not defined for bool (Keras raises)")
        }
        UnaryRule::ToFloatNoBool => weak_float(x, cfg),
    }
}

/// How a binary op's dtype follows from its operands'.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum BinaryRule {
    /// `result_type(a, b)` (add, multiply, maximum, minimum).
    Promote,
    /// As `Promote`, bool - bool refused (subtract).
    PromoteNoBool,
    /// As `Promote`, bool result becomes int32 (power).
    PromoteBoolToInt,
    /// As `PromoteBoolToInt`, complex refused (floor_divide, mod).
    IntegerDivision,
    /// `result_type(a, b, float)` (divide).
    ToFloat,
    /// `result_type(a, b, float)`, complex refused (hypot).
    ToFloatNoComplex,
    /// Scalars become strong tensors first, then `result_type(a, b, float)` (arctan2).
    StrongToFloat,
    /// Computed in `result_type(a, b)`, result bool (comparisons).
    Compare,
    /// Operands read as bool, result bool (logical_and/or/xor).
    Logical,
}

/// The strong dtype a weak scalar becomes when converted to a tensor (Keras's
/// `convert_to_tensor` of a Python scalar: `result_type` of its type alone).
pub fn strong(d: DTypeLike, cfg: &Config) -> DType {
    match d {
        DTypeLike::Strong(d) => d,
        w => result_type(&[w], cfg.floatx, cfg.x64).unwrap_or(cfg.floatx),
    }
}

fn names(ds: &[DTypeLike]) -> Vec<DType> {
    ds.iter()
        .filter_map(|d| {
            if let DTypeLike::Strong(d) = d {
                Some(*d)
            } else {
                None
            }
        })
        .collect()
}

/// The dtype a binary op computes in, and the dtype of its result.
pub fn binary(
    op: &str,
    rule: BinaryRule,
    a: DTypeLike,
    b: DTypeLike,
    cfg: &Config,
) -> Result<(DType, DType)> {
    let rt = |xs: &[DTypeLike]| result_type(xs, cfg.floatx, cfg.x64);
    let d = rt(&[a, b])?;
    let refuse = |why: &str| Err(KilnError::not_allowed(op, &names(&[a, b]), why.to_string()));
    match rule {
        BinaryRule::Promote => Ok((d, d)),
        BinaryRule::PromoteNoBool if d == DType::Bool => {
            refuse("subtracting booleans is not supported (Keras raises); use logical_xor, or cast to an integer dtype")
        }
        BinaryRule::PromoteNoBool => Ok((d, d)),
        BinaryRule::PromoteBoolToInt | BinaryRule::IntegerDivision => {
            if rule == BinaryRule::IntegerDivision && d.is_complex() {
                return refuse("not defined for complex dtypes (Keras raises)");
            }
            let d = if d == DType::Bool { index_dtype(cfg) } else { d };
            Ok((d, d))
        }
        BinaryRule::ToFloat => {
            let d = rt(&[a, b, DTypeLike::WeakFloat])?;
            Ok((d, d))
        }
        BinaryRule::ToFloatNoComplex => {
            let d = rt(&[a, b, DTypeLike::WeakFloat])?;
            if d.is_complex() {
                return refuse("not defined for complex dtypes (Keras raises)");
            }
            Ok((d, d))
        }
        BinaryRule::StrongToFloat => {
            let d = rt(&[strong(a, cfg).into(), strong(b, cfg).into(), DTypeLike::WeakFloat])?;
            Ok((d, d))
        }
        BinaryRule::Compare => Ok((d, DType::Bool)),
        BinaryRule::Logical => Ok((DType::Bool, DType::Bool)),
    }
}

/// `matmul`: rank-0 operands are refused; int8 @ int8 accumulates into int32.
pub fn matmul(a: DTypeLike, b: DTypeLike, cfg: &Config) -> Result<DType> {
    if !matches!(a, DTypeLike::Strong(_)) || !matches!(b, DTypeLike::Strong(_)) {
        return Err(KilnError::not_allowed(
            "matmul",
            &names(&[a, b]),
            "matmul does not take scalars (Keras raises); use multiply",
        ));
    }
    if a == DTypeLike::Strong(DType::Int8) && b == DTypeLike::Strong(DType::Int8) {
        return Ok(DType::Int32);
    }
    result_type(&[a, b], cfg.floatx, cfg.x64)
}

/// `dot`: as `multiply` for scalars, except that JAX refuses a weak int with an 8/16-bit
/// integer tensor; otherwise as `matmul`.
pub fn dot(a: DTypeLike, b: DTypeLike, cfg: &Config) -> Result<DType> {
    let narrow =
        |d: DTypeLike| matches!(d, DTypeLike::Strong(d) if d.is_integer() && d.itemsize() <= 2);
    if (a == DTypeLike::WeakInt && narrow(b)) || (b == DTypeLike::WeakInt && narrow(a)) {
        return Err(KilnError::not_allowed(
            "dot",
            &names(&[a, b]),
            "dot of an 8/16-bit integer tensor with a Python int is refused by Keras/JAX; cast the tensor to int32",
        ));
    }
    result_type(&[a, b], cfg.floatx, cfg.x64)
}
