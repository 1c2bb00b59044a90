//! Elementwise ops: unary math, binary arithmetic, comparisons, logic, `where`, `clip`,
//! `cast`.

use super::prim::{apply, Prim as P};
use super::registry::{diff_flag, keras_name, BinaryEntry, UnaryEntry};
use super::rules::{self, BinaryRule, UnaryRule};
use super::{
    broadcast_shapes, cfg, cfg_for, cfg_for_tensors, common_place, convert_at, operand_tensor,
    resolve_result, to_compute, Operand,
};
use crate::backend::{BinaryOp, CmpOp, UnaryOp};
use crate::dtype::DType;
use crate::error::Result;
use crate::precision::{resolve, Request, Site};
use crate::tensor::Tensor;
use std::panic::Location;

/// Runs a unary primitive after the dtype rule and the resolver.
#[track_caller]
pub(crate) fn unary_op(op: &str, rule: UnaryRule, x: &Tensor, prim: UnaryOp) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary(op, rule, x.dtype(), &cfg)?;
    // Predicates and real-part ops read the input in its own dtype.
    let reads_input = matches!(rule, UnaryRule::Bool | UnaryRule::RealPart);
    let (dtype, device) = resolve_result(op, out, super::place_of(x), &cfg)?;
    let input = if reads_input {
        super::to_compute_ref(x, x.dtype(), device, op)?
    } else {
        super::to_compute_ref(x, dtype, device, op)?
    };
    // The real part and the conjugate of a real tensor are the tensor (NumPy returns the
    // array itself): share its storage rather than copy it; the graph still records the op.
    if matches!(prim, UnaryOp::Real | UnaryOp::Conj)
        && !input.dtype().is_complex()
        && input.dtype() == dtype
    {
        let mut same = input.as_ref().clone();
        same.node = None;
        return Ok(crate::autodiff::record(P::Unary(prim), &[&input], same));
    }
    let t = apply(P::Unary(prim), &[&input])?;
    if t.dtype() != dtype {
        return to_compute(&t, dtype, device, op);
    }
    Ok(t)
}

/// Declares unary ops that are one primitive behind a dtype rule, and their registry rows
/// (`diff` or `nodiff`: whether the op has a gradient): the op is named here only.
macro_rules! unary_ops {
    ($($(#[$m:meta])* $name:ident => $rule:ident, $prim:ident, $d:ident;)*) => {
        $(
            $(#[$m])*
            #[track_caller]
            pub fn $name(x: &Tensor) -> Result<Tensor> {
                unary_op(stringify!($name), UnaryRule::$rule, x, UnaryOp::$prim)
            }
        )*
        /// The registry rows of the ops above.
        pub(crate) const FAMILY_UNARY: &[UnaryEntry] = &[$(
            UnaryEntry::new(stringify!($name), diff_flag!($d), |x| $name(x)),
        )*];
    };
}

unary_ops! {
    /// `-x`. Refused for bool (Keras raises).
    negative => SameNoBool, Neg, diff;
    /// `|x|`; complex gives its real dtype.
    abs => RealPart, Abs, diff;
    /// -1, 0 or 1 (NaN stays NaN; complex: `z/|z|`).
    sign => SameNoBool, Sign, nodiff;
    /// Square root; ints become floats.
    sqrt => ToFloat, Sqrt, diff;
    /// `e^x`.
    exp => ToFloat, Exp, diff;
    /// `e^x - 1`, accurate near 0.
    expm1 => ToFloat, Expm1, diff;
    /// Natural logarithm.
    log => ToFloat, Log, diff;
    /// `ln(1 + x)`, accurate near 0.
    log1p => ToFloat, Log1p, diff;
    /// Base-2 logarithm.
    log2 => ToFloat, Log2, diff;
    /// Base-10 logarithm.
    ///
    /// ```
    /// use kiln::{convert_to_tensor, ArrayData, Device};
    /// let x = convert_to_tensor(&ArrayData::from(vec![1.0f64, 10.0, 1000.0]), None, &Device::Cpu).unwrap();
    /// assert_eq!(kiln::ops::log10(&x).unwrap().to_vec::<f32>().unwrap(), vec![0.0, 1.0, 3.0]);
    /// ```
    log10 => ToFloat, Log10, diff;
    /// Sine.
    sin => ToFloat, Sin, diff;
    /// Cosine.
    cos => ToFloat, Cos, diff;
    /// Tangent.
    tan => ToFloat, Tan, diff;
    /// Inverse sine.
    arcsin => ToFloat, Asin, diff;
    /// Inverse cosine.
    arccos => ToFloat, Acos, diff;
    /// Inverse tangent.
    arctan => ToFloat, Atan, diff;
    /// Hyperbolic sine.
    sinh => ToFloat, Sinh, diff;
    /// Hyperbolic cosine.
    cosh => ToFloat, Cosh, diff;
    /// Hyperbolic tangent.
    tanh => ToFloat, Tanh, diff;
    /// Error function (real floats only, as in Keras).
    erf => RealFloatOnly, Erf, diff;
    /// Floor (ints become floats, as in Keras; complex refused).
    floor => ToFloatNoComplex, Floor, nodiff;
    /// Ceiling (ints become floats, as in Keras; complex refused).
    ceil => ToFloatNoComplex, Ceil, nodiff;
    /// Round half to even (NumPy's rule).
    round => SameNoBool, Round, nodiff;
    /// NaN test.
    isnan => Bool, IsNan, nodiff;
    /// Infinity test.
    isinf => Bool, IsInf, nodiff;
    /// Finite test.
    isfinite => Bool, IsFinite, nodiff;
    /// Logical not (nonzero is true).
    logical_not => Bool, LogicalNot, nodiff;
    /// Real part (real dtype).
    real => RealPart, Real, nodiff;
    /// Imaginary part (real dtype; zeros for real input).
    imag => RealPart, Imag, nodiff;
    /// Complex conjugate (identity for real input).
    conj => Same, Conj, nodiff;
}

/// `x * x`; bool becomes int32.
#[track_caller]
pub fn square(x: &Tensor) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("square", UnaryRule::BoolToInt, x.dtype(), &cfg)?;
    if out == x.dtype() {
        // multiply's own rule gives this dtype and passes the resolver: no cast to run
        // first (it doubled the op's cost at [32, 128]).
        return multiply(x, x);
    }
    let x = cast_internal(x, out, "square")?;
    multiply(&x, &x)
}

/// `1 / x` (ints become floats).
#[track_caller]
pub fn reciprocal(x: &Tensor) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("reciprocal", UnaryRule::ToFloat, x.dtype(), &cfg)?;
    let x = cast_internal(x, out, "reciprocal")?;
    divide(1.0, &x)
}

/// `1 / sqrt(x)` (float and complex inputs only, as in Keras).
#[track_caller]
pub fn rsqrt(x: &Tensor) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    rules::unary("rsqrt", UnaryRule::FloatOnly, x.dtype(), &cfg)?;
    divide(1.0, &sqrt(x)?)
}

/// An implicit cast inside a composed op: goes through the resolver as a promotion.
#[track_caller]
pub(crate) fn cast_internal(x: &Tensor, dtype: DType, op: &str) -> Result<Tensor> {
    // No shortcut when the dtype already matches: an engine-internal intermediate (int64
    // indices on sim:tpu, say) must still pass the resolver before it is returned.
    let cfg = cfg_for_tensors(&[x])?;
    let (d, dev) = resolve_result(op, dtype, super::place_of(x), &cfg)?;
    to_compute(x, d, dev, op)
}

/// Primitive behind a binary op.
#[derive(Copy, Clone)]
pub(crate) enum Prim {
    Bin(BinaryOp),
    Cmp(CmpOp),
}

#[track_caller]
pub(crate) fn binary_op(
    op: &str,
    rule: BinaryRule,
    a: Operand<'_>,
    b: Operand<'_>,
    prim: Prim,
) -> Result<Tensor> {
    let cfg = cfg_for(&[&a, &b])?;
    let device = common_place(&[&a, &b], op, &cfg)?;
    let (compute, _out) = rules::binary(op, rule, a.like(), b.like(), &cfg)?;
    let (compute, device) = resolve_result(op, compute, device, &cfg)?;
    let shape = broadcast_shapes(a.shape(), b.shape(), op)?;
    let ta = operand_tensor(&a, compute, device, op)?;
    let tb = operand_tensor(&b, compute, device, op)?;
    let p = match prim {
        Prim::Bin(p) => P::Binary(p, shape),
        Prim::Cmp(p) => P::Compare(p, shape),
    };
    apply(p, &[&ta, &tb])
}

/// Declares binary ops that are one primitive behind a promotion rule, and their registry
/// rows: the op is named here only.
macro_rules! binary_ops {
    ($($(#[$m:meta])* $name:ident => $rule:ident, $prim:expr, $d:ident;)*) => {
        $(
            $(#[$m])*
            #[track_caller]
            pub fn $name<'a, 'b>(a: impl Into<Operand<'a>>, b: impl Into<Operand<'b>>) -> Result<Tensor> {
                binary_op(keras_name(stringify!($name)), BinaryRule::$rule, a.into(), b.into(), $prim)
            }
        )*
        /// The registry rows of the ops above.
        pub(crate) const FAMILY_BINARY: &[BinaryEntry] = &[$(
            BinaryEntry::new(keras_name(stringify!($name)), diff_flag!($d), |a, b| $name(a, b)),
        )*];
    };
}

binary_ops! {
    /// `a + b` with Keras promotion; Rust numbers are weak scalars.
    ///
    /// ```
    /// use kiln::{ops, ArrayData, Device, DType, convert_to_tensor};
    /// let x = convert_to_tensor(&ArrayData::from(vec![1i8, 2]), None, &Device::Cpu).unwrap();
    /// assert_eq!(ops::add(&x, 1).unwrap().dtype(), DType::Int8);      // weak int adapts
    /// assert_eq!(ops::add(&x, 1.5).unwrap().dtype(), DType::Float32); // weak float: floatx
    /// ```
    add => Promote, Prim::Bin(BinaryOp::Add), diff;
    /// `a - b` (bool - bool refused, as in Keras).
    subtract => PromoteNoBool, Prim::Bin(BinaryOp::Sub), diff;
    /// `a * b`.
    multiply => Promote, Prim::Bin(BinaryOp::Mul), diff;
    /// True division: ints become floats.
    divide => ToFloat, Prim::Bin(BinaryOp::Div), diff;
    /// Alias of [`divide`].
    true_divide => ToFloat, Prim::Bin(BinaryOp::Div), diff;
    /// Floor division (Python semantics; integer division by zero gives 0 as in NumPy).
    floor_divide => IntegerDivision, Prim::Bin(BinaryOp::FloorDiv), nodiff;
    /// Remainder with the divisor's sign (Python's `%`).
    r#mod => IntegerDivision, Prim::Bin(BinaryOp::Mod), diff;
    /// `a ** b` (integers to negative integer powers are refused, as in NumPy).
    power => PromoteBoolToInt, Prim::Bin(BinaryOp::Pow), diff;
    /// Elementwise maximum, NaN-propagating.
    maximum => Promote, Prim::Bin(BinaryOp::Max), diff;
    /// Elementwise minimum, NaN-propagating.
    minimum => Promote, Prim::Bin(BinaryOp::Min), diff;
    /// Quadrant-aware `atan(a / b)`.
    arctan2 => StrongToFloat, Prim::Bin(BinaryOp::Atan2), diff;
    /// `sqrt(a^2 + b^2)` without overflow.
    hypot => ToFloatNoComplex, Prim::Bin(BinaryOp::Hypot), diff;
    /// `a == b`.
    equal => Compare, Prim::Cmp(CmpOp::Eq), nodiff;
    /// `a != b`.
    not_equal => Compare, Prim::Cmp(CmpOp::Ne), nodiff;
    /// `a < b`.
    less => Compare, Prim::Cmp(CmpOp::Lt), nodiff;
    /// `a <= b`.
    less_equal => Compare, Prim::Cmp(CmpOp::Le), nodiff;
    /// `a > b`.
    greater => Compare, Prim::Cmp(CmpOp::Gt), nodiff;
    /// `a >= b`.
    greater_equal => Compare, Prim::Cmp(CmpOp::Ge), nodiff;
    /// Logical and (nonzero is true).
    logical_and => Logical, Prim::Bin(BinaryOp::And), nodiff;
    /// Logical or.
    logical_or => Logical, Prim::Bin(BinaryOp::Or), nodiff;
    /// Logical xor.
    logical_xor => Logical, Prim::Bin(BinaryOp::Xor), nodiff;
}

/// `cond ? a : b` elementwise, with broadcasting; `a` and `b` promote as in `add`.
#[track_caller]
pub fn r#where<'a, 'b>(
    cond: &Tensor,
    a: impl Into<Operand<'a>>,
    b: impl Into<Operand<'b>>,
) -> Result<Tensor> {
    let (a, b) = (a.into(), b.into());
    let cfg = cfg_for(&[&a, &b])?;
    let c = Operand::Tensor(cond);
    let device = common_place(&[&c, &a, &b], "where", &cfg)?;
    let (compute, _) = rules::binary("where", BinaryRule::Promote, a.like(), b.like(), &cfg)?;
    let (compute, device) = resolve_result("where", compute, device, &cfg)?;
    let shape = broadcast_shapes(
        &broadcast_shapes(cond.shape(), a.shape(), "where")?,
        b.shape(),
        "where",
    )?;
    let tc = super::to_compute_ref(cond, DType::Bool, device, "where")?;
    let ta = operand_tensor(&a, compute, device, "where")?;
    let tb = operand_tensor(&b, compute, device, "where")?;
    apply(P::Select(shape), &[&tc, &ta, &tb])
}

/// Limits values to `[lo, hi]`; bool becomes int32 (Keras).
#[track_caller]
pub fn clip<'a, 'b>(
    x: &Tensor,
    lo: impl Into<Operand<'a>>,
    hi: impl Into<Operand<'b>>,
) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let x = if x.dtype() == DType::Bool {
        cast_internal(x, rules::index_dtype(&cfg), "clip")?
    } else {
        x.clone()
    };
    let (lo, hi) = (lo.into(), hi.into());
    // Weak numeric bounds leave a real float tensor's dtype as it is (Keras's promotion):
    // one fused pass where the engine has it, each bound rounded to the dtype as the
    // composition's weak scalars are.
    if x.dtype().is_float() {
        let weak = |o: &Operand<'_>| match o {
            Operand::Scalar(crate::element::Scalar::Int(i)) => Some(*i as f64),
            Operand::Scalar(crate::element::Scalar::Float(f)) => Some(*f),
            _ => None,
        };
        if let (Some(l), Some(h)) = (weak(&lo), weak(&hi)) {
            let r = |v: f64| {
                crate::array::ArrayData::scalar(crate::element::Scalar::Float(v), x.dtype())
                    .to_f64_vec()[0]
            };
            let (lo, hi) = (r(l), r(h));
            let act = crate::backend::Activation::Clip { lo, hi };
            return super::prim::apply_fused(P::Activation(act), &x, |x| {
                super::composed::clip(x, lo, hi)
            });
        }
    }
    super::composed::clip(&x, lo, hi)
}

/// Explicit cast: honoured, or refused where the device lacks `dtype` (never changed into
/// another dtype). Values convert with NumPy's `astype` semantics: floats to ints truncate
/// toward zero (saturating; NaN becomes 0), ints wrap, complex to real drops the imaginary
/// part.
///
/// ```
/// use kiln::{ops, ArrayData, Device, DType, convert_to_tensor};
/// let x = convert_to_tensor(&ArrayData::from(vec![1.7f32, -1.7]), None, &Device::Cpu).unwrap();
/// assert_eq!(ops::cast(&x, DType::Int32).unwrap().to_vec::<i32>().unwrap(), vec![1, -1]);
/// let mps = Device::parse("sim:mps").unwrap();
/// let y = x.to_device(mps).unwrap();
/// assert!(ops::cast(&y, DType::Float64).is_err());
/// ```
#[track_caller]
pub fn cast(x: &Tensor, dtype: DType) -> Result<Tensor> {
    let cfg = cfg()?;
    let d = resolve(
        &Request {
            op: "cast",
            site: Site::Cast,
            dtype,
            explicit: true,
            device: x.device(),
            engine: x.backend_kind(),
            origin: Location::caller(),
        },
        &cfg,
    )?;
    d.announce(None);
    convert_at(x, d.dtype, super::Place::of(&d))
}
