//! Data types: the fifteen dtypes kiln knows, spelled exactly as NumPy and Keras spell them,
//! and (in [`promote`]) Keras 3's promotion lattice.

pub mod promote;

use crate::error::{KilnError, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// An element type. Names print and parse exactly as NumPy/Keras spell them (`"float32"`,
/// `"bfloat16"`, `"complex128"`, ...).
///
/// ```
/// use kiln::DType;
/// let d: DType = "float64".parse().unwrap();
/// assert_eq!(d, DType::Float64);
/// assert_eq!(d.to_string(), "float64");
/// assert_eq!(d.itemsize(), 8);
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DType {
    /// `bool`
    Bool,
    /// `int8`
    Int8,
    /// `int16`
    Int16,
    /// `int32`
    Int32,
    /// `int64`
    Int64,
    /// `uint8`
    UInt8,
    /// `uint16`
    UInt16,
    /// `uint32`
    UInt32,
    /// `uint64`
    UInt64,
    /// `bfloat16` (Google brain float: float32's exponent, 8-bit mantissa)
    BFloat16,
    /// `float16` (IEEE half)
    Float16,
    /// `float32`
    Float32,
    /// `float64`
    Float64,
    /// `complex64` (two float32)
    Complex64,
    /// `complex128` (two float64)
    Complex128,
}

/// The broad family of a dtype.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
pub enum DTypeKind {
    /// `bool`
    Bool,
    /// signed integers
    Int,
    /// unsigned integers
    UInt,
    /// real floating point
    Float,
    /// complex floating point
    Complex,
}

impl DType {
    /// Every dtype, in NumPy's order of kinds.
    pub const ALL: [DType; 15] = [
        DType::Bool,
        DType::UInt8,
        DType::UInt16,
        DType::UInt32,
        DType::UInt64,
        DType::Int8,
        DType::Int16,
        DType::Int32,
        DType::Int64,
        DType::BFloat16,
        DType::Float16,
        DType::Float32,
        DType::Float64,
        DType::Complex64,
        DType::Complex128,
    ];

    /// The NumPy/Keras name.
    pub const fn name(self) -> &'static str {
        match self {
            DType::Bool => "bool",
            DType::Int8 => "int8",
            DType::Int16 => "int16",
            DType::Int32 => "int32",
            DType::Int64 => "int64",
            DType::UInt8 => "uint8",
            DType::UInt16 => "uint16",
            DType::UInt32 => "uint32",
            DType::UInt64 => "uint64",
            DType::BFloat16 => "bfloat16",
            DType::Float16 => "float16",
            DType::Float32 => "float32",
            DType::Float64 => "float64",
            DType::Complex64 => "complex64",
            DType::Complex128 => "complex128",
        }
    }

    /// Parses a NumPy/Keras dtype name. Only the canonical names are accepted, so a typo
    /// never silently picks another type.
    pub fn parse(name: &str) -> Result<DType> {
        DType::ALL
            .iter()
            .copied()
            .find(|d| d.name() == name)
            .ok_or_else(|| KilnError::InvalidArgument {
                op: "DType::parse".into(),
                message: format!(
                    "unknown dtype name {name:?}; expected one of: {}",
                    DType::ALL.map(|d| d.name()).join(", ")
                ),
            })
    }

    /// Bytes per element.
    pub const fn itemsize(self) -> usize {
        match self {
            DType::Bool | DType::Int8 | DType::UInt8 => 1,
            DType::Int16 | DType::UInt16 | DType::BFloat16 | DType::Float16 => 2,
            DType::Int32 | DType::UInt32 | DType::Float32 => 4,
            DType::Int64 | DType::UInt64 | DType::Float64 | DType::Complex64 => 8,
            DType::Complex128 => 16,
        }
    }

    /// The family of this dtype.
    pub const fn kind(self) -> DTypeKind {
        match self {
            DType::Bool => DTypeKind::Bool,
            DType::Int8 | DType::Int16 | DType::Int32 | DType::Int64 => DTypeKind::Int,
            DType::UInt8 | DType::UInt16 | DType::UInt32 | DType::UInt64 => DTypeKind::UInt,
            DType::BFloat16 | DType::Float16 | DType::Float32 | DType::Float64 => DTypeKind::Float,
            DType::Complex64 | DType::Complex128 => DTypeKind::Complex,
        }
    }

    /// `true` for the real floating types.
    pub const fn is_float(self) -> bool {
        matches!(self.kind(), DTypeKind::Float)
    }
    /// `true` for the complex types.
    pub const fn is_complex(self) -> bool {
        matches!(self.kind(), DTypeKind::Complex)
    }
    /// `true` for signed and unsigned integers (not bool).
    pub const fn is_integer(self) -> bool {
        matches!(self.kind(), DTypeKind::Int | DTypeKind::UInt)
    }
    /// `true` for real or complex floating types.
    pub const fn is_inexact(self) -> bool {
        self.is_float() || self.is_complex()
    }

    /// Whether this is a 64-bit type that Keras's default (x64 off) mode narrows.
    pub const fn is_64bit(self) -> bool {
        matches!(
            self,
            DType::Int64 | DType::UInt64 | DType::Float64 | DType::Complex128
        )
    }

    /// Whether every value of the integer (or bool) dtype `other` is a value of `self`.
    ///
    /// ```
    /// use kiln::DType;
    /// assert!(DType::Int64.holds_every(DType::UInt32));
    /// assert!(!DType::Int32.holds_every(DType::UInt32));
    /// ```
    pub const fn holds_every(self, other: DType) -> bool {
        match (self.kind(), other.kind()) {
            (_, DTypeKind::Bool) => true,
            (DTypeKind::Int, DTypeKind::Int) | (DTypeKind::UInt, DTypeKind::UInt) => {
                self.itemsize() >= other.itemsize()
            }
            (DTypeKind::Int, DTypeKind::UInt) => self.itemsize() > other.itemsize(),
            _ => false,
        }
    }

    /// Keras's `BIT64_TO_BIT32_DTYPE` map: what x64-off mode makes of a 64-bit dtype.
    pub const fn to_32bit(self) -> DType {
        match self {
            DType::Int64 => DType::Int32,
            DType::UInt64 => DType::UInt32,
            DType::Float64 => DType::Float32,
            DType::Complex128 => DType::Complex64,
            d => d,
        }
    }

    /// The real type of a complex type's parts (identity for real types).
    pub const fn real_dtype(self) -> DType {
        match self {
            DType::Complex64 => DType::Float32,
            DType::Complex128 => DType::Float64,
            d => d,
        }
    }

    /// Significand bits including the implicit one (for floats and complex parts); used
    /// to derive tolerances and to decide when integer-valued floats stop being exact.
    pub const fn mantissa_bits(self) -> u32 {
        match self.real_dtype() {
            DType::BFloat16 => 8,
            DType::Float16 => 11,
            DType::Float32 => 24,
            DType::Float64 => 53,
            _ => 0,
        }
    }

    /// Machine epsilon of the (real part of the) type, `2^(1 - mantissa_bits)`; 0 for exact types.
    pub fn eps(self) -> f64 {
        match self.mantissa_bits() {
            0 => 0.0,
            m => 2f64.powi(1 - m as i32),
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DType {
    type Err = KilnError;
    fn from_str(s: &str) -> Result<DType> {
        DType::parse(s)
    }
}

impl TryFrom<String> for DType {
    type Error = KilnError;
    fn try_from(s: String) -> Result<DType> {
        DType::parse(&s)
    }
}

impl From<DType> for String {
    fn from(d: DType) -> String {
        d.name().to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_reject_aliases() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()).unwrap(), d);
        }
        assert!(DType::parse("float").is_err());
        assert!(DType::parse("f4").is_err());
        assert!(DType::parse("Float32").is_err());
    }
}
