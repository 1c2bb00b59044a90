//! Keras 3's type-promotion lattice (`keras/src/backend/common/dtypes.py`), as data. Its
//! edges are JAX's (`jax/_src/dtypes.py`, `_type_promotion_lattice`): weak `float` sits
//! below weak `complex`, so `int8 + 1j` is a weak complex that resolves to complex128 in
//! x64 mode, as JAX does.
//!
//! The lattice is the same on every backend and device: it is the frontend's, and backends
//! never promote. Weak types are Python's scalar types (`int`, `float`, `complex`): a weak
//! operand adapts to the strong one (`int8 + 1 -> int8`).

use super::DType;
use crate::error::{KilnError, Result};

/// An operand of a promotion: a dtype, or a weakly-typed Python-style scalar kind.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DTypeLike {
    /// A tensor's (strong) dtype.
    Strong(DType),
    /// A Python `int` scalar.
    WeakInt,
    /// A Python `float` scalar.
    WeakFloat,
    /// A Python `complex` scalar.
    WeakComplex,
}

impl From<DType> for DTypeLike {
    fn from(d: DType) -> Self {
        DTypeLike::Strong(d)
    }
}

impl DTypeLike {
    /// Parses a dtype name or one of the weak names `int`, `float`, `complex`.
    pub fn parse(s: &str) -> Result<DTypeLike> {
        Ok(match s {
            "int" => DTypeLike::WeakInt,
            "float" => DTypeLike::WeakFloat,
            "complex" => DTypeLike::WeakComplex,
            other => DTypeLike::Strong(DType::parse(other)?),
        })
    }
}

/// Lattice nodes: the fifteen dtypes plus the three weak kinds.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
enum Node {
    D(DType),
    I,
    F,
    C,
}

const NODES: [Node; 18] = {
    let mut out = [Node::I; 18];
    let mut i = 0;
    while i < 15 {
        out[i] = Node::D(DType::ALL[i]);
        i += 1;
    }
    out[15] = Node::I;
    out[16] = Node::F;
    out[17] = Node::C;
    out
};

fn index(n: Node) -> usize {
    NODES.iter().position(|m| *m == n).unwrap_or(0)
}

/// The direct successors in Keras's `_type_promotion_lattice`.
fn successors(n: Node) -> &'static [Node] {
    use DType::*;
    use Node::*;
    match n {
        D(Bool) => &[I],
        D(UInt8) => &[D(Int16), D(UInt16)],
        D(UInt16) => &[D(Int32), D(UInt32)],
        D(UInt32) => &[D(Int64), D(UInt64)],
        D(UInt64) => &[F],
        I => &[D(UInt8), D(Int8)],
        D(Int8) => &[D(Int16)],
        D(Int16) => &[D(Int32)],
        D(Int32) => &[D(Int64)],
        D(Int64) => &[F],
        F => &[D(BFloat16), D(Float16), C],
        D(BFloat16) => &[D(Float32)],
        D(Float16) => &[D(Float32)],
        D(Float32) => &[D(Float64), D(Complex64)],
        D(Float64) => &[D(Complex128)],
        C => &[D(Complex64)],
        D(Complex64) => &[D(Complex128)],
        D(Complex128) => &[],
    }
}

/// Bit set of every node reachable from `n`, `n` included (computed once per node: every
/// op's dtype rule asks).
fn upper_bounds(n: Node) -> u32 {
    static TABLE: std::sync::OnceLock<[u32; 18]> = std::sync::OnceLock::new();
    TABLE.get_or_init(|| NODES.map(upper_bounds_of))[index(n)]
}

fn upper_bounds_of(n: Node) -> u32 {
    let mut seen = 0u32;
    let mut stack = vec![n];
    while let Some(m) = stack.pop() {
        let bit = 1 << index(m);
        if seen & bit != 0 {
            continue;
        }
        seen |= bit;
        stack.extend_from_slice(successors(m));
    }
    seen
}

fn least_upper_bound(nodes: impl Iterator<Item = Node> + Clone) -> Result<Node> {
    let common = nodes.clone().fold(u32::MAX, |acc, n| acc & upper_bounds(n));
    // The join is the member of `common` whose own upper bounds are exactly `common`.
    NODES
        .iter()
        .copied()
        .find(|n| common & (1 << index(*n)) != 0 && upper_bounds(*n) == common & ((1 << 18) - 1))
        .ok_or_else(|| KilnError::InvalidArgument {
            op: "result_type".into(),
            message: format!(
                "{:?} have no least upper bound in the promotion lattice",
                nodes.collect::<Vec<_>>()
            ),
        })
}

/// Keras `_resolve_weak_type`: a weak kind becomes a concrete dtype of the given precision.
fn resolve_weak(n: Node, precision: u32) -> DType {
    let (int, float, complex) = match precision {
        16 => (DType::Int16, DType::Float16, DType::Complex64),
        64 => (DType::Int64, DType::Float64, DType::Complex128),
        _ => (DType::Int32, DType::Float32, DType::Complex64),
    };
    match n {
        Node::D(d) => match d.kind() {
            crate::dtype::DTypeKind::Bool => DType::Bool,
            crate::dtype::DTypeKind::Int => int,
            crate::dtype::DTypeKind::UInt => match precision {
                16 => DType::UInt16,
                64 => DType::UInt64,
                _ => DType::UInt32,
            },
            crate::dtype::DTypeKind::Float => float,
            crate::dtype::DTypeKind::Complex => complex,
        },
        Node::I => int,
        Node::F => float,
        Node::C => complex,
    }
}

/// Keras's `result_type(*dtypes)`.
///
/// * `floatx`: the default float; it gives the precision weak scalars resolve to
///   (`float16`/`bfloat16` -> 16-bit, `float32` -> 32, `float64` -> 64 then truncated).
/// * `x64 == false` is Keras's default: every 64-bit result becomes 32-bit.
/// * `x64 == true` is JAX's `jax_enable_x64`: no truncation, weak scalars resolve to 64-bit.
///
/// ```
/// use kiln::dtype::promote::{result_type, DTypeLike::*};
/// use kiln::DType::*;
/// assert_eq!(result_type(&[Strong(Int8), WeakInt], Float32, false).unwrap(), Int8);
/// assert_eq!(result_type(&[Strong(UInt8), Strong(Int8)], Float32, false).unwrap(), Int16);
/// assert_eq!(result_type(&[Strong(Int32), Strong(Float64)], Float32, false).unwrap(), Float32);
/// assert_eq!(result_type(&[Strong(Int32), Strong(Float64)], Float32, true).unwrap(), Float64);
/// ```
pub fn result_type(inputs: &[DTypeLike], floatx: DType, x64: bool) -> Result<DType> {
    if inputs.is_empty() {
        return Ok(floatx);
    }
    let node = |d: &DTypeLike| match d {
        DTypeLike::Strong(d) => (Node::D(*d), false),
        DTypeLike::WeakInt => (Node::I, true),
        DTypeLike::WeakFloat => (Node::F, true),
        DTypeLike::WeakComplex => (Node::C, true),
    };
    let first = node(&inputs[0]);
    let all_weak = inputs.iter().all(|d| node(d).1);
    let (out, weak) = if inputs.len() == 1 {
        first
    } else if !all_weak && inputs.iter().all(|d| node(d).0 == first.0) {
        (first.0, false)
    } else {
        let lub = least_upper_bound(inputs.iter().map(|d| node(d).0))?;
        let weak = all_weak || matches!(lub, Node::I | Node::F | Node::C);
        (lub, weak)
    };
    let weak = weak && out != Node::D(DType::Bool);
    let precision = if x64 {
        64
    } else {
        match floatx {
            DType::Float16 | DType::BFloat16 => 16,
            DType::Float64 => 64,
            _ => 32,
        }
    };
    let dtype = match (out, weak) {
        (Node::D(d), false) => d,
        (n, _) => resolve_weak(n, precision),
    };
    Ok(if x64 { dtype } else { dtype.to_32bit() })
}

/// Convenience: promotion of strong dtypes only.
pub fn promote_types(a: DType, b: DType, floatx: DType, x64: bool) -> Result<DType> {
    result_type(&[a.into(), b.into()], floatx, x64)
}
