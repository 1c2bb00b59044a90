//! The Rust scalar type behind each dtype, and the per-element semantics every kernel
//! shares (NumPy's casting, wrapping integer arithmetic, NaN-propagating comparisons).

use crate::dtype::DType;
use half::{bf16, f16};
use num_complex::Complex;

/// `complex64`'s element.
pub type C64 = Complex<f32>;
/// `complex128`'s element.
pub type C128 = Complex<f64>;

/// A dynamically typed scalar: what a Python scalar or a single element is on the host.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Scalar {
    /// A boolean.
    Bool(bool),
    /// A signed integer (Python `int`).
    Int(i64),
    /// An unsigned integer that does not fit `i64`.
    UInt(u64),
    /// A real number (Python `float`).
    Float(f64),
    /// A complex number (Python `complex`).
    Complex(C128),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::UInt(u) => write!(f, "{u}"),
            Scalar::Float(x) => write!(f, "{x}"),
            Scalar::Complex(c) => write!(f, "{}{:+}j", c.re, c.im),
        }
    }
}

impl Scalar {
    /// As f64 (real part for complex).
    pub fn as_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => b as u8 as f64,
            Scalar::Int(i) => i as f64,
            Scalar::UInt(u) => u as f64,
            Scalar::Float(f) => f,
            Scalar::Complex(c) => c.re,
        }
    }
    /// As complex128.
    pub fn as_c128(self) -> C128 {
        match self {
            Scalar::Complex(c) => c,
            s => C128::new(s.as_f64(), 0.0),
        }
    }
}

macro_rules! scalar_from {
    ($($t:ty => $v:ident as $u:ty),*) => {$(
        impl From<$t> for Scalar { fn from(x: $t) -> Scalar { Scalar::$v(x as $u) } }
    )*};
}
scalar_from!(i8 => Int as i64, i16 => Int as i64, i32 => Int as i64, i64 => Int as i64,
    u8 => Int as i64, u16 => Int as i64, u32 => Int as i64, u64 => UInt as u64,
    f32 => Float as f64, f64 => Float as f64);
impl From<isize> for Scalar {
    fn from(x: isize) -> Scalar {
        Scalar::Int(x as i64)
    }
}
impl From<usize> for Scalar {
    fn from(x: usize) -> Scalar {
        i64::try_from(x)
            .map(Scalar::Int)
            .unwrap_or(Scalar::UInt(x as u64))
    }
}
impl From<bool> for Scalar {
    fn from(x: bool) -> Scalar {
        Scalar::Bool(x)
    }
}
impl From<C128> for Scalar {
    fn from(x: C128) -> Scalar {
        Scalar::Complex(x)
    }
}

/// The element type of one dtype. Implemented for exactly the fifteen scalar types.
pub trait Element: Copy + Send + Sync + std::fmt::Debug + PartialEq + 'static {
    /// The dtype whose elements these are.
    const DTYPE: DType;
    /// Additive identity.
    fn zero() -> Self;
    /// Multiplicative identity.
    fn one() -> Self;
    /// This element as a dynamically typed scalar, losslessly.
    fn to_scalar(self) -> Scalar;
    /// NumPy `astype(..., casting="unsafe")` from a scalar: floats to ints truncate toward
    /// zero and saturate (NaN becomes 0; NumPy leaves this undefined, we make it defined),
    /// ints wrap, complex to real drops the imaginary part, nonzero to bool is `true`.
    fn from_scalar(s: Scalar) -> Self;
    /// `a + b` (integers wrap; bool is `or`).
    fn add(self, o: Self) -> Self;
    /// `a - b` (integers wrap).
    fn sub(self, o: Self) -> Self;
    /// `a * b` (integers wrap; bool is `and`).
    fn mul(self, o: Self) -> Self;
    /// NumPy ordering: NaN compares false; complex is ordered lexicographically.
    fn lt(self, o: Self) -> bool;
    /// Whether this is NaN (never for exact types).
    fn is_nan(self) -> bool;
    /// Whether this is nonzero.
    fn nonzero(self) -> bool;
}

macro_rules! int_element {
    ($($t:ty => $d:ident, $signed:expr);*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline] fn zero() -> Self { 0 }
            #[inline] fn one() -> Self { 1 }
            #[inline] fn to_scalar(self) -> Scalar {
                if $signed { Scalar::Int(self as i64) } else { Scalar::UInt(self as u64) }
            }
            #[inline] fn from_scalar(s: Scalar) -> Self {
                match s {
                    Scalar::Bool(b) => b as $t,
                    Scalar::Int(i) => i as $t,
                    Scalar::UInt(u) => u as $t,
                    Scalar::Float(f) => f as $t,
                    Scalar::Complex(c) => c.re as $t,
                }
            }
            #[inline] fn add(self, o: Self) -> Self { self.wrapping_add(o) }
            #[inline] fn sub(self, o: Self) -> Self { self.wrapping_sub(o) }
            #[inline] fn mul(self, o: Self) -> Self { self.wrapping_mul(o) }
            #[inline] fn lt(self, o: Self) -> bool { self < o }
            #[inline] fn is_nan(self) -> bool { false }
            #[inline] fn nonzero(self) -> bool { self != 0 }
        }
    )*};
}
int_element!(i8 => Int8, true; i16 => Int16, true; i32 => Int32, true; i64 => Int64, true;
    u8 => UInt8, false; u16 => UInt16, false; u32 => UInt32, false; u64 => UInt64, false);

impl Element for bool {
    const DTYPE: DType = DType::Bool;
    fn zero() -> Self {
        false
    }
    fn one() -> Self {
        true
    }
    fn to_scalar(self) -> Scalar {
        Scalar::Bool(self)
    }
    fn from_scalar(s: Scalar) -> Self {
        match s {
            Scalar::Bool(b) => b,
            Scalar::Int(i) => i != 0,
            Scalar::UInt(u) => u != 0,
            Scalar::Float(f) => f != 0.0,
            Scalar::Complex(c) => c.re != 0.0 || c.im != 0.0,
        }
    }
    fn add(self, o: Self) -> Self {
        self | o
    }
    fn sub(self, o: Self) -> Self {
        self ^ o
    }
    fn mul(self, o: Self) -> Self {
        self & o
    }
    fn lt(self, o: Self) -> bool {
        !self & o
    }
    fn is_nan(self) -> bool {
        false
    }
    fn nonzero(self) -> bool {
        self
    }
}

macro_rules! float_element {
    ($($t:ty => $d:ident, $from:expr, $to:expr);*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline] fn zero() -> Self { <$t as num_traits::Zero>::zero() }
            #[inline] fn one() -> Self { <$t as num_traits::One>::one() }
            #[inline] fn to_scalar(self) -> Scalar { Scalar::Float(($to)(self)) }
            #[inline] fn from_scalar(s: Scalar) -> Self {
                let f: f64 = match s {
                    Scalar::Bool(b) => b as u8 as f64,
                    Scalar::Int(i) => i as f64,
                    Scalar::UInt(u) => u as f64,
                    Scalar::Float(f) => f,
                    Scalar::Complex(c) => c.re,
                };
                ($from)(f)
            }
            #[inline] fn add(self, o: Self) -> Self { self + o }
            #[inline] fn sub(self, o: Self) -> Self { self - o }
            #[inline] fn mul(self, o: Self) -> Self { self * o }
            #[inline] fn lt(self, o: Self) -> bool { self < o }
            #[inline] fn is_nan(self) -> bool { self != self }
            #[inline] fn nonzero(self) -> bool { self != Self::zero() }
        }
    )*};
}
float_element!(
    f32 => Float32, |f: f64| f as f32, |x: f32| x as f64;
    f64 => Float64, |f: f64| f, |x: f64| x;
    f16 => Float16, f16_from_f64, |x: f16| x.to_f64();
    bf16 => BFloat16, bf16_from_f64, |x: bf16| x.to_f64()
);

/// `x` rounded to f32 *to odd*: truncated toward zero, with the last bit set if anything
/// was cut off. Rounding that to a format at least two bits narrower (f16, bf16) with
/// round-to-nearest-even gives the correctly rounded result of `x` itself: no double
/// rounding.
fn f32_round_odd(x: f64) -> f32 {
    let f = x as f32;
    if !f.is_finite() || f as f64 == x {
        return f;
    }
    // `as` rounded to nearest; step back toward zero if it rounded away.
    let t = if (f as f64).abs() > x.abs() {
        f32::from_bits(f.to_bits() - 1)
    } else {
        f
    };
    f32::from_bits(t.to_bits() | 1)
}

/// f64 -> float16 with one rounding (to nearest even). `half` 2.7's `f16::from_f64` drops
/// the low 32 bits of the f64 before rounding, so values just above a halfway point round
/// down (tested below).
pub(crate) fn f16_from_f64(x: f64) -> f16 {
    f16::from_f32(f32_round_odd(x))
}

/// f64 -> bfloat16 with one rounding (to nearest even); see [`f16_from_f64`].
pub(crate) fn bf16_from_f64(x: f64) -> bf16 {
    bf16::from_f32(f32_round_odd(x))
}

macro_rules! complex_element {
    ($($t:ty => $d:ident, $r:ty);*) => {$(
        impl Element for $t {
            const DTYPE: DType = DType::$d;
            #[inline] fn zero() -> Self { Complex::new(0.0, 0.0) }
            #[inline] fn one() -> Self { Complex::new(1.0, 0.0) }
            #[inline] fn to_scalar(self) -> Scalar { Scalar::Complex(C128::new(self.re as f64, self.im as f64)) }
            #[inline] fn from_scalar(s: Scalar) -> Self {
                let c = s.as_c128();
                Complex::new(c.re as $r, c.im as $r)
            }
            #[inline] fn add(self, o: Self) -> Self { self + o }
            #[inline] fn sub(self, o: Self) -> Self { self - o }
            #[inline] fn mul(self, o: Self) -> Self { self * o }
            #[inline] fn lt(self, o: Self) -> bool { self.re < o.re || (self.re == o.re && self.im < o.im) }
            #[inline] fn is_nan(self) -> bool { self.re.is_nan() || self.im.is_nan() }
            #[inline] fn nonzero(self) -> bool { self.re != 0.0 || self.im != 0.0 }
        }
    )*};
}
complex_element!(C64 => Complex64, f32; C128 => Complex128, f64);

/// Casts one element to another element type with NumPy's unsafe-casting semantics.
#[inline]
pub fn cast_elem<A: Element, B: Element>(a: A) -> B {
    B::from_scalar(a.to_scalar())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The correctly rounded value of `x` among the finite values of a 16-bit format
    /// (`decode` of every pattern), ties to even, overflow to inf past the halfway point
    /// above the largest finite value: an exact oracle (f64 holds every such value and
    /// midpoint exactly).
    fn nearest(x: f64, decode: impl Fn(u16) -> f64) -> f64 {
        // Positive patterns are ordered like their values: binary-search the largest one
        // not above |x|, then pick the nearer of it and the next (ties to the even one).
        let a = x.abs();
        // hi: the format's +inf pattern (f16 0x7c00, bf16 0x7f80).
        let mut lo = 0u16;
        let mut hi = if decode(0x7c00).is_infinite() {
            0x7c00
        } else {
            0x7f80
        };
        while lo + 1 < hi {
            let mid = lo + (hi - lo) / 2;
            if decode(mid) <= a {
                lo = mid;
            } else {
                hi = mid;
            }
        }
        let (v0, v1) = (decode(lo), decode(lo + 1));
        let v = if (a - v0) < (v1 - a) || ((a - v0) == (v1 - a) && lo.is_multiple_of(2)) {
            v0
        } else {
            v1
        };
        v.copysign(x)
    }

    #[test]
    fn f64_to_half_rounds_once() {
        // Values just above halfway points (the sticky bits sit in the f64's low word):
        // half 2.7's from_f64 rounds these down.
        let x = 1.1902253e-31f32 as f64;
        assert_eq!(bf16_from_f64(x).to_f64(), 1.1940765655200862e-31);
        let mut seed = 0x1234_5678_9abc_def0u64;
        for _ in 0..3000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            // Spread over the normal range of both formats.
            let e = (seed >> 52) % 40;
            let m = f64::from_bits((seed & 0x000f_ffff_ffff_ffff) | 0x3ff0_0000_0000_0000);
            let x = m * 2f64.powi(e as i32 - 20) * if seed & 1 == 0 { 1.0 } else { -1.0 };
            let want = nearest(x, |b| f16::from_bits(b).to_f64());
            if x.abs() < 65504.0 {
                assert_eq!(f16_from_f64(x).to_f64(), want, "f16({x:e})");
            }
            let want = nearest(x, |b| bf16::from_bits(b).to_f64());
            assert_eq!(bf16_from_f64(x).to_f64(), want, "bf16({x:e})");
        }
    }
}
