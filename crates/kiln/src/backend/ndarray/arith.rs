//! Per-element math for the ndarray engine, one impl per element family. Function
//! pointers are returned for the less common ops; the hot ones (add/sub/mul) are inlined
//! through [`Element`] instead.

use crate::backend::{BinaryOp, UnaryOp};
use crate::element::{Element, C128, C64};
use half::{bf16, f16};

/// Math an element type supports. `None` means "not defined for this dtype"; the engine
/// turns that into an error rather than a silent value.
pub(crate) trait Arith: Element {
    fn unary_fn(op: UnaryOp) -> Option<fn(Self) -> Self>;
    fn binary_fn(op: BinaryOp) -> Option<fn(Self, Self) -> Self>;
    /// NaN-propagating maximum/minimum (NumPy `maximum`/`minimum`).
    #[inline]
    fn nan_max(a: Self, b: Self) -> Self {
        if a.is_nan() || b.lt(a) {
            a
        } else {
            b
        }
    }
    #[inline]
    fn nan_min(a: Self, b: Self) -> Self {
        if a.is_nan() || a.lt(b) {
            a
        } else {
            b
        }
    }
}

macro_rules! int_arith {
    ($($t:ty, $signed:expr);*) => {$(
        impl Arith for $t {
            fn unary_fn(op: UnaryOp) -> Option<fn(Self) -> Self> {
                Some(match op {
                    UnaryOp::Neg => |x: $t| x.wrapping_neg(),
                    UnaryOp::Abs => |x: $t| if $signed && x < (0 as $t) { x.wrapping_neg() } else { x },
                    UnaryOp::Sign => |x: $t| if x > (0 as $t) { 1 } else if x == (0 as $t) { 0 } else { (0 as $t).wrapping_sub(1) },
                    UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round | UnaryOp::Conj | UnaryOp::Real => |x: $t| x,
                    UnaryOp::Imag => |_x: $t| 0,
                    _ => return None,
                })
            }
            fn binary_fn(op: BinaryOp) -> Option<fn(Self, Self) -> Self> {
                Some(match op {
                    BinaryOp::Add => |a: $t, b: $t| a.wrapping_add(b),
                    BinaryOp::Sub => |a: $t, b: $t| a.wrapping_sub(b),
                    BinaryOp::Mul => |a: $t, b: $t| a.wrapping_mul(b),
                    // NumPy: integer division by zero gives 0 (with a RuntimeWarning).
                    BinaryOp::FloorDiv => |a: $t, b: $t| {
                        if b == 0 { return 0; }
                        let q = a.wrapping_div(b);
                        if $signed && (a.wrapping_rem(b) != 0) && ((a < (0 as $t)) != (b < (0 as $t))) { q.wrapping_sub(1) } else { q }
                    },
                    BinaryOp::Mod => |a: $t, b: $t| {
                        if b == 0 { return 0; }
                        let r = a.wrapping_rem(b);
                        if $signed && r != 0 && ((r < (0 as $t)) != (b < (0 as $t))) { r.wrapping_add(b) } else { r }
                    },
                    // Negative exponents are refused before the loop (see ndarray engine).
                    BinaryOp::Pow => |a: $t, b: $t| a.wrapping_pow(b as u32),
                    BinaryOp::Max => |a: $t, b: $t| if a > b { a } else { b },
                    BinaryOp::Min => |a: $t, b: $t| if a < b { a } else { b },
                    _ => return None,
                })
            }
        }
    )*};
}
int_arith!(i8, true; i16, true; i32, true; i64, true; u8, false; u16, false; u32, false; u64, false);

impl Arith for bool {
    fn unary_fn(op: UnaryOp) -> Option<fn(Self) -> Self> {
        Some(match op {
            UnaryOp::LogicalNot => |x: bool| !x,
            UnaryOp::Abs
            | UnaryOp::Conj
            | UnaryOp::Real
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round => |x| x,
            UnaryOp::Imag => |_| false,
            _ => return None,
        })
    }
    fn binary_fn(op: BinaryOp) -> Option<fn(Self, Self) -> Self> {
        Some(match op {
            BinaryOp::Add | BinaryOp::Or | BinaryOp::Max => |a: bool, b: bool| a | b,
            BinaryOp::Mul | BinaryOp::And | BinaryOp::Min => |a: bool, b: bool| a & b,
            BinaryOp::Xor => |a: bool, b: bool| a ^ b,
            _ => return None,
        })
    }
}

/// NumPy's `npy_divmod` for floats: the floor quotient and the modulus with the divisor's sign.
#[inline]
pub(crate) fn divmod_f64(a: f64, b: f64) -> (f64, f64) {
    let m = a % b;
    if b == 0.0 {
        return (a / b, m);
    }
    let mut div = (a - m) / b;
    let mut m = m;
    if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m += b;
            div -= 1.0;
        }
    } else {
        m = 0f64.copysign(b);
    }
    let fd = if div != 0.0 {
        let f = div.floor();
        if div - f > 0.5 {
            f + 1.0
        } else {
            f
        }
    } else {
        0f64.copysign(a / b)
    };
    (fd, m)
}

#[inline]
fn sign_f64(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

macro_rules! float_arith {
    ($($t:ty, $f:ty, $to:expr, $from:expr);*) => {$(
        impl Arith for $t {
            fn unary_fn(op: UnaryOp) -> Option<fn(Self) -> Self> {
                // Half types compute through f32 (as NumPy's float16 loops do); f32 natively.
                macro_rules! u { ($e:expr) => { |x: $t| { let x: $f = ($to)(x); let y: $f = ($e)(x); ($from)(y) } } }
                Some(match op {
                    UnaryOp::Neg => u!(|x: $f| -x),
                    UnaryOp::Abs => u!(|x: $f| x.abs()),
                    UnaryOp::Sign => u!(|x: $f| sign_f64(x as f64) as $f),
                    UnaryOp::Sqrt => u!(|x: $f| x.sqrt()),
                    UnaryOp::Exp => u!(|x: $f| x.exp()),
                    UnaryOp::Expm1 => u!(|x: $f| x.exp_m1()),
                    UnaryOp::Log => u!(|x: $f| x.ln()),
                    UnaryOp::Log1p => u!(|x: $f| x.ln_1p()),
                    UnaryOp::Log2 => u!(|x: $f| x.log2()),
                    UnaryOp::Log10 => u!(|x: $f| x.log10()),
                    UnaryOp::Sin => u!(|x: $f| x.sin()),
                    UnaryOp::Cos => u!(|x: $f| x.cos()),
                    UnaryOp::Tan => u!(|x: $f| x.tan()),
                    UnaryOp::Asin => u!(|x: $f| x.asin()),
                    UnaryOp::Acos => u!(|x: $f| x.acos()),
                    UnaryOp::Atan => u!(|x: $f| x.atan()),
                    UnaryOp::Sinh => u!(|x: $f| x.sinh()),
                    UnaryOp::Cosh => u!(|x: $f| x.cosh()),
                    UnaryOp::Tanh => u!(|x: $f| x.tanh()),
                    UnaryOp::Erf => u!(|x: $f| erf(x)),
                    UnaryOp::Floor => u!(|x: $f| x.floor()),
                    UnaryOp::Ceil => u!(|x: $f| x.ceil()),
                    UnaryOp::Round => u!(|x: $f| x.round_ties_even()),
                    UnaryOp::Conj | UnaryOp::Real => |x| x,
                    UnaryOp::Imag => |_x| <$t as Element>::zero(),
                    _ => return None,
                })
            }
            fn binary_fn(op: BinaryOp) -> Option<fn(Self, Self) -> Self> {
                macro_rules! b { ($e:expr) => { |a: $t, b: $t| { let a: $f = ($to)(a); let b: $f = ($to)(b); let y: $f = ($e)(a, b); ($from)(y) } } }
                Some(match op {
                    BinaryOp::Add => b!(|a: $f, b: $f| a + b),
                    BinaryOp::Sub => b!(|a: $f, b: $f| a - b),
                    BinaryOp::Mul => b!(|a: $f, b: $f| a * b),
                    BinaryOp::Div => b!(|a: $f, b: $f| a / b),
                    BinaryOp::FloorDiv => b!(|a: $f, b: $f| divmod_f64(a as f64, b as f64).0 as $f),
                    BinaryOp::Mod => b!(|a: $f, b: $f| divmod_f64(a as f64, b as f64).1 as $f),
                    BinaryOp::Pow => b!(|a: $f, b: $f| a.powf(b)),
                    BinaryOp::Max => |a, b| <$t as Arith>::nan_max(a, b),
                    BinaryOp::Min => |a, b| <$t as Arith>::nan_min(a, b),
                    BinaryOp::Atan2 => b!(|a: $f, b: $f| a.atan2(b)),
                    BinaryOp::Hypot => b!(|a: $f, b: $f| a.hypot(b)),
                    _ => return None,
                })
            }
        }
    )*};
}

trait Erf {
    fn erf_(self) -> Self;
}
impl Erf for f32 {
    fn erf_(self) -> f32 {
        libm::erff(self)
    }
}
impl Erf for f64 {
    fn erf_(self) -> f64 {
        libm::erf(self)
    }
}
fn erf<T: Erf>(x: T) -> T {
    x.erf_()
}

float_arith!(
    f32, f32, |x: f32| x, |y: f32| y;
    f64, f64, |x: f64| x, |y: f64| y;
    f16, f32, |x: f16| x.to_f32(), f16::from_f32;
    bf16, f32, |x: bf16| x.to_f32(), bf16::from_f32
);

macro_rules! complex_arith {
    ($($t:ty, $r:ty);*) => {$(
        impl Arith for $t {
            fn unary_fn(op: UnaryOp) -> Option<fn(Self) -> Self> {
                Some(match op {
                    UnaryOp::Neg => |z: $t| -z,
                    // NumPy 2: sign(z) = z / |z| (0 for 0).
                    UnaryOp::Sign => |z: $t| { let n = z.norm(); if n == 0.0 { z * 0.0 } else if n.is_nan() { <$t>::new(<$r>::NAN, <$r>::NAN) } else { z / n } },
                    UnaryOp::Sqrt => |z: $t| z.sqrt(),
                    UnaryOp::Exp => |z: $t| z.exp(),
                    UnaryOp::Expm1 => |z: $t| z.exp() - 1.0,
                    UnaryOp::Log => |z: $t| z.ln(),
                    UnaryOp::Log1p => |z: $t| (z + 1.0).ln(),
                    UnaryOp::Log2 => |z: $t| z.ln() / std::f64::consts::LN_2 as $r,
                    UnaryOp::Log10 => |z: $t| z.ln() / std::f64::consts::LN_10 as $r,
                    UnaryOp::Sin => |z: $t| z.sin(),
                    UnaryOp::Cos => |z: $t| z.cos(),
                    UnaryOp::Tan => |z: $t| z.tan(),
                    UnaryOp::Asin => |z: $t| z.asin(),
                    UnaryOp::Acos => |z: $t| z.acos(),
                    UnaryOp::Atan => |z: $t| z.atan(),
                    UnaryOp::Sinh => |z: $t| z.sinh(),
                    UnaryOp::Cosh => |z: $t| z.cosh(),
                    UnaryOp::Tanh => |z: $t| z.tanh(),
                    UnaryOp::Round => |z: $t| <$t>::new(z.re.round_ties_even(), z.im.round_ties_even()),
                    UnaryOp::Conj => |z: $t| z.conj(),
                    _ => return None,
                })
            }
            fn binary_fn(op: BinaryOp) -> Option<fn(Self, Self) -> Self> {
                Some(match op {
                    BinaryOp::Add => |a: $t, b: $t| a + b,
                    BinaryOp::Sub => |a: $t, b: $t| a - b,
                    BinaryOp::Mul => |a: $t, b: $t| a * b,
                    BinaryOp::Div => |a: $t, b: $t| a / b,
                    BinaryOp::Pow => |a: $t, b: $t| if b == <$t>::new(0.0, 0.0) { <$t>::new(1.0, 0.0) } else if a == <$t>::new(0.0, 0.0) { <$t>::new(0.0, 0.0) } else { a.powc(b) },
                    BinaryOp::Max => |a, b| <$t as Arith>::nan_max(a, b),
                    BinaryOp::Min => |a, b| <$t as Arith>::nan_min(a, b),
                    // JAX's complex atan2(y, x) = -i log((x + iy) / sqrt(x^2 + y^2)).
                    BinaryOp::Atan2 => |y: $t, x: $t| {
                        let i = <$t>::new(0.0, 1.0);
                        -i * ((x + i * y) / (x * x + y * y).sqrt()).ln()
                    },
                    _ => return None,
                })
            }
        }
    )*};
}
complex_arith!(C64, f32; C128, f64);

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn divmod_matches_python() {
        // Python: -7.0 // 2.0 == -4.0, -7.0 % 2.0 == 1.0, 7.0 % -2.0 == -1.0
        assert_eq!(divmod_f64(-7.0, 2.0), (-4.0, 1.0));
        assert_eq!(divmod_f64(7.0, -2.0), (-4.0, -1.0));
        assert!(divmod_f64(1.0, 0.0).0.is_infinite());
        let fd = <i32 as Arith>::binary_fn(BinaryOp::FloorDiv).unwrap();
        let md = <i32 as Arith>::binary_fn(BinaryOp::Mod).unwrap();
        assert_eq!(
            (fd(-7, 2), md(-7, 2), fd(7, -2), md(7, -2), fd(3, 0)),
            (-4, 1, -4, -1, 0)
        );
    }
}
