//! Per-element math for the ndarray engine, one impl per element family.
//!
//! Each op's element function is handed to a *visitor* (the kernel that loops over the
//! data) as its own closure type, so the kernel is monomorphised per op and dtype and the
//! loop body inlines and vectorises; a function pointer per element would do neither.
//! Half types compute through f32 with branch-free conversions that vectorise too (as
//! NumPy's float16 loops compute in float32).

use super::half_conv::{bf16_from_f32, bf16_to_f32, f16_from_f32, f16_to_f32};
use super::vmath;
use crate::backend::{BinaryOp, UnaryOp};
use crate::element::{Element, C128, C64};
use half::{bf16, f16};

/// A kernel that runs a unary element function over data.
pub(crate) trait UnaryVisitor<T> {
    /// What the kernel returns.
    type Out;
    /// Runs the kernel with `f` as the element function.
    fn visit<F: Fn(T) -> T + Copy + Send + Sync>(self, f: F) -> Self::Out;
}

/// A kernel that runs a binary element function over data.
pub(crate) trait BinaryVisitor<T> {
    /// What the kernel returns.
    type Out;
    /// Runs the kernel with `f` as the element function.
    fn visit<F: Fn(T, T) -> T + Copy + Send + Sync>(self, f: F) -> Self::Out;
}

/// Math an element type supports. `None` means "not defined for this dtype"; the engine
/// turns that into an error rather than a silent value.
pub(crate) trait Arith: Element {
    /// Runs `v` with the element function of `op`, if this dtype has one.
    fn unary<V: UnaryVisitor<Self>>(op: UnaryOp, v: V) -> Option<V::Out>;
    /// Runs `v` with the element function of `op`, if this dtype has one.
    fn binary<V: BinaryVisitor<Self>>(op: BinaryOp, v: V) -> Option<V::Out>;
    /// NaN-propagating maximum/minimum (NumPy `maximum`/`minimum`).
    #[inline(always)]
    fn nan_max(a: Self, b: Self) -> Self {
        if a.is_nan() || b.lt(a) {
            a
        } else {
            b
        }
    }
    #[inline(always)]
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
            fn unary<V: UnaryVisitor<Self>>(op: UnaryOp, v: V) -> Option<V::Out> {
                Some(match op {
                    UnaryOp::Neg => v.visit(|x: $t| x.wrapping_neg()),
                    UnaryOp::Abs => v.visit(|x: $t| if $signed && x < (0 as $t) { x.wrapping_neg() } else { x }),
                    UnaryOp::Sign => v.visit(|x: $t| if x > (0 as $t) { 1 } else if x == (0 as $t) { 0 } else { (0 as $t).wrapping_sub(1) }),
                    UnaryOp::Floor | UnaryOp::Ceil | UnaryOp::Round | UnaryOp::Conj | UnaryOp::Real => v.visit(|x: $t| x),
                    UnaryOp::Imag => v.visit(|_x: $t| 0),
                    _ => return None,
                })
            }
            fn binary<V: BinaryVisitor<Self>>(op: BinaryOp, v: V) -> Option<V::Out> {
                Some(match op {
                    BinaryOp::Add => v.visit(|a: $t, b: $t| a.wrapping_add(b)),
                    BinaryOp::Sub => v.visit(|a: $t, b: $t| a.wrapping_sub(b)),
                    BinaryOp::Mul => v.visit(|a: $t, b: $t| a.wrapping_mul(b)),
                    // NumPy: integer division by zero gives 0 (with a RuntimeWarning).
                    BinaryOp::FloorDiv => v.visit(|a: $t, b: $t| {
                        if b == 0 { return 0; }
                        let q = a.wrapping_div(b);
                        if $signed && (a.wrapping_rem(b) != 0) && ((a < (0 as $t)) != (b < (0 as $t))) { q.wrapping_sub(1) } else { q }
                    }),
                    BinaryOp::Mod => v.visit(|a: $t, b: $t| {
                        if b == 0 { return 0; }
                        let r = a.wrapping_rem(b);
                        if $signed && r != 0 && ((r < (0 as $t)) != (b < (0 as $t))) { r.wrapping_add(b) } else { r }
                    }),
                    // Negative exponents are refused before the loop (see ndarray engine).
                    BinaryOp::Pow => v.visit(|a: $t, b: $t| a.wrapping_pow(b as u32)),
                    BinaryOp::Max => v.visit(|a: $t, b: $t| if a > b { a } else { b }),
                    BinaryOp::Min => v.visit(|a: $t, b: $t| if a < b { a } else { b }),
                    _ => return None,
                })
            }
        }
    )*};
}
int_arith!(i8, true; i16, true; i32, true; i64, true; u8, false; u16, false; u32, false; u64, false);

impl Arith for bool {
    fn unary<V: UnaryVisitor<Self>>(op: UnaryOp, v: V) -> Option<V::Out> {
        Some(match op {
            UnaryOp::LogicalNot => v.visit(|x: bool| !x),
            UnaryOp::Abs
            | UnaryOp::Conj
            | UnaryOp::Real
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Round => v.visit(|x| x),
            UnaryOp::Imag => v.visit(|_| false),
            _ => return None,
        })
    }
    fn binary<V: BinaryVisitor<Self>>(op: BinaryOp, v: V) -> Option<V::Out> {
        Some(match op {
            BinaryOp::Add | BinaryOp::Or | BinaryOp::Max => v.visit(|a: bool, b: bool| a | b),
            BinaryOp::Mul | BinaryOp::And | BinaryOp::Min => v.visit(|a: bool, b: bool| a & b),
            BinaryOp::Xor => v.visit(|a: bool, b: bool| a ^ b),
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

/// The transcendental functions of a float family. f32's are the vectorisable bodies of
/// [`super::vmath`] (NumPy's float32 loops are SIMD too); f64's are std's (libm).
pub(crate) trait FloatMath: Copy {
    fn exp(self) -> Self;
    fn expm1(self) -> Self;
    fn ln(self) -> Self;
    fn ln_1p(self) -> Self;
    fn log2(self) -> Self;
    fn log10(self) -> Self;
    fn sin(self) -> Self;
    fn cos(self) -> Self;
    fn tan(self) -> Self;
    fn asin(self) -> Self;
    fn acos(self) -> Self;
    fn atan(self) -> Self;
    fn sinh(self) -> Self;
    fn cosh(self) -> Self;
    fn tanh(self) -> Self;
    fn erf(self) -> Self;
    fn powf(self, y: Self) -> Self;
    fn atan2(self, x: Self) -> Self;
}

impl FloatMath for f64 {
    #[inline(always)]
    fn exp(self) -> f64 {
        f64::exp(self)
    }
    #[inline(always)]
    fn expm1(self) -> f64 {
        f64::exp_m1(self)
    }
    #[inline(always)]
    fn ln(self) -> f64 {
        f64::ln(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> f64 {
        f64::ln_1p(self)
    }
    #[inline(always)]
    fn log2(self) -> f64 {
        f64::log2(self)
    }
    #[inline(always)]
    fn log10(self) -> f64 {
        f64::log10(self)
    }
    #[inline(always)]
    fn sin(self) -> f64 {
        f64::sin(self)
    }
    #[inline(always)]
    fn cos(self) -> f64 {
        f64::cos(self)
    }
    #[inline(always)]
    fn tan(self) -> f64 {
        f64::tan(self)
    }
    #[inline(always)]
    fn asin(self) -> f64 {
        f64::asin(self)
    }
    #[inline(always)]
    fn acos(self) -> f64 {
        f64::acos(self)
    }
    #[inline(always)]
    fn atan(self) -> f64 {
        f64::atan(self)
    }
    #[inline(always)]
    fn sinh(self) -> f64 {
        f64::sinh(self)
    }
    #[inline(always)]
    fn cosh(self) -> f64 {
        f64::cosh(self)
    }
    #[inline(always)]
    fn tanh(self) -> f64 {
        f64::tanh(self)
    }
    #[inline(always)]
    fn erf(self) -> f64 {
        libm::erf(self)
    }
    #[inline(always)]
    fn powf(self, y: f64) -> f64 {
        f64::powf(self, y)
    }
    #[inline(always)]
    fn atan2(self, x: f64) -> f64 {
        f64::atan2(self, x)
    }
}

impl FloatMath for f32 {
    #[inline(always)]
    fn exp(self) -> f32 {
        vmath::exp(self)
    }
    #[inline(always)]
    fn expm1(self) -> f32 {
        vmath::expm1(self)
    }
    #[inline(always)]
    fn ln(self) -> f32 {
        vmath::log(self)
    }
    #[inline(always)]
    fn ln_1p(self) -> f32 {
        vmath::log1p(self)
    }
    #[inline(always)]
    fn log2(self) -> f32 {
        vmath::log2(self)
    }
    #[inline(always)]
    fn log10(self) -> f32 {
        vmath::log10(self)
    }
    // The vector path is exact for |x| <= 2^30; larger lanes come back NaN and the engine
    // fixes them afterwards (`fix_huge_trig`).
    #[inline(always)]
    fn sin(self) -> f32 {
        vmath::sin(self)
    }
    #[inline(always)]
    fn cos(self) -> f32 {
        vmath::cos(self)
    }
    #[inline(always)]
    fn tan(self) -> f32 {
        vmath::tan(self)
    }
    #[inline(always)]
    fn asin(self) -> f32 {
        vmath::asin(self)
    }
    #[inline(always)]
    fn acos(self) -> f32 {
        vmath::acos(self)
    }
    #[inline(always)]
    fn atan(self) -> f32 {
        vmath::atan(self)
    }
    #[inline(always)]
    fn sinh(self) -> f32 {
        vmath::sinh(self)
    }
    #[inline(always)]
    fn cosh(self) -> f32 {
        vmath::cosh(self)
    }
    #[inline(always)]
    fn tanh(self) -> f32 {
        vmath::tanh(self)
    }
    #[inline(always)]
    fn erf(self) -> f32 {
        vmath::erf(self)
    }
    #[inline(always)]
    fn powf(self, y: f32) -> f32 {
        vmath::pow(self, y)
    }
    #[inline(always)]
    fn atan2(self, x: f32) -> f32 {
        vmath::atan2(self, x)
    }
}

/// -1, 0 or 1 with the sign of `x`; NaN and signed zeros pass through.
#[inline(always)]
fn signum0<F: num_traits::Float>(x: F) -> F {
    if x > F::zero() {
        F::one()
    } else if x < F::zero() {
        -F::one()
    } else {
        x
    }
}

/// NaN-propagating maximum of two floats (NumPy `maximum`): branch-free so it vectorises.
#[inline(always)]
fn fmax_nan<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || b < a {
        a
    } else {
        b
    }
}

#[inline(always)]
fn fmin_nan<F: num_traits::Float>(a: F, b: F) -> F {
    if a.is_nan() || a < b {
        a
    } else {
        b
    }
}

macro_rules! float_arith {
    ($($t:ty, $f:ty, $to:expr, $from:expr, $neg:expr, $abs:expr);*) => {$(
        impl Arith for $t {
            fn unary<V: UnaryVisitor<Self>>(op: UnaryOp, v: V) -> Option<V::Out> {
                // Half types compute through f32 (as NumPy's float16 loops do); f32 natively.
                // `inline(always)`: a closure LLVM leaves out of line is compiled for the
                // baseline ISA, not the kernel's AVX-512 (pow ran scalar, 14 ns an element).
                macro_rules! u { ($e:expr) => { v.visit(#[inline(always)] |x: $t| { let x: $f = ($to)(x); let y: $f = ($e)(x); ($from)(y) }) } }
                Some(match op {
                    UnaryOp::Neg => v.visit(#[inline(always)] |x: $t| ($neg)(x)),
                    UnaryOp::Abs => v.visit(#[inline(always)] |x: $t| ($abs)(x)),
                    UnaryOp::Sign => u!(signum0::<$f>),
                    UnaryOp::Sqrt => u!(|x: $f| x.sqrt()),
                    UnaryOp::Exp => u!(<$f as FloatMath>::exp),
                    UnaryOp::Expm1 => u!(<$f as FloatMath>::expm1),
                    UnaryOp::Log => u!(<$f as FloatMath>::ln),
                    UnaryOp::Log1p => u!(<$f as FloatMath>::ln_1p),
                    UnaryOp::Log2 => u!(<$f as FloatMath>::log2),
                    UnaryOp::Log10 => u!(<$f as FloatMath>::log10),
                    UnaryOp::Sin => u!(<$f as FloatMath>::sin),
                    UnaryOp::Cos => u!(<$f as FloatMath>::cos),
                    UnaryOp::Tan => u!(<$f as FloatMath>::tan),
                    UnaryOp::Asin => u!(<$f as FloatMath>::asin),
                    UnaryOp::Acos => u!(<$f as FloatMath>::acos),
                    UnaryOp::Atan => u!(<$f as FloatMath>::atan),
                    UnaryOp::Sinh => u!(<$f as FloatMath>::sinh),
                    UnaryOp::Cosh => u!(<$f as FloatMath>::cosh),
                    UnaryOp::Tanh => u!(<$f as FloatMath>::tanh),
                    UnaryOp::Erf => u!(<$f as FloatMath>::erf),
                    UnaryOp::Floor => u!(|x: $f| x.floor()),
                    UnaryOp::Ceil => u!(|x: $f| x.ceil()),
                    UnaryOp::Round => u!(|x: $f| x.round_ties_even()),
                    UnaryOp::Conj | UnaryOp::Real => v.visit(|x: $t| x),
                    UnaryOp::Imag => v.visit(|_x: $t| <$t as Element>::zero()),
                    _ => return None,
                })
            }
            fn binary<V: BinaryVisitor<Self>>(op: BinaryOp, v: V) -> Option<V::Out> {
                macro_rules! b { ($e:expr) => { v.visit(#[inline(always)] |a: $t, b: $t| { let a: $f = ($to)(a); let b: $f = ($to)(b); let y: $f = ($e)(a, b); ($from)(y) }) } }
                Some(match op {
                    BinaryOp::Add => b!(|a: $f, b: $f| a + b),
                    BinaryOp::Sub => b!(|a: $f, b: $f| a - b),
                    BinaryOp::Mul => b!(|a: $f, b: $f| a * b),
                    BinaryOp::Div => b!(|a: $f, b: $f| a / b),
                    BinaryOp::FloorDiv => b!(|a: $f, b: $f| divmod_f64(a as f64, b as f64).0 as $f),
                    BinaryOp::Mod => b!(|a: $f, b: $f| divmod_f64(a as f64, b as f64).1 as $f),
                    BinaryOp::Pow => b!(<$f as FloatMath>::powf),
                    BinaryOp::Max => b!(fmax_nan::<$f>),
                    BinaryOp::Min => b!(fmin_nan::<$f>),
                    BinaryOp::Atan2 => b!(<$f as FloatMath>::atan2),
                    BinaryOp::Hypot => b!(|a: $f, b: $f| a.hypot(b)),
                    _ => return None,
                })
            }
        }
    )*};
}

// Negation and `abs` flip or clear the sign bit, as NumPy's half loops do (`h ^ 0x8000`,
// `h & 0x7fff`): exact, NaN payloads kept, and a float16 `abs` no longer converts through f32
// (it ran at 0.22x NumPy on [256, 784]).
float_arith!(
    f32, f32, |x: f32| x, |y: f32| y, |x: f32| -x, |x: f32| x.abs();
    f64, f64, |x: f64| x, |y: f64| y, |x: f64| -x, |x: f64| x.abs();
    f16, f32, |x: f16| f16_to_f32(x), f16_from_f32,
        |x: f16| f16::from_bits(x.to_bits() ^ 0x8000), |x: f16| f16::from_bits(x.to_bits() & 0x7fff);
    bf16, f32, |x: bf16| bf16_to_f32(x), bf16_from_f32,
        |x: bf16| bf16::from_bits(x.to_bits() ^ 0x8000), |x: bf16| bf16::from_bits(x.to_bits() & 0x7fff)
);

macro_rules! complex_arith {
    ($($t:ty, $r:ty);*) => {$(
        impl Arith for $t {
            fn unary<V: UnaryVisitor<Self>>(op: UnaryOp, v: V) -> Option<V::Out> {
                Some(match op {
                    UnaryOp::Neg => v.visit(|z: $t| -z),
                    // NumPy 2: sign(z) = z / |z| (0 for 0).
                    UnaryOp::Sign => v.visit(|z: $t| { let n = z.norm(); if n == 0.0 { z * 0.0 } else if n.is_nan() { <$t>::new(<$r>::NAN, <$r>::NAN) } else { z / n } }),
                    UnaryOp::Sqrt => v.visit(|z: $t| z.sqrt()),
                    UnaryOp::Exp => v.visit(|z: $t| z.exp()),
                    UnaryOp::Expm1 => v.visit(|z: $t| z.exp() - 1.0),
                    UnaryOp::Log => v.visit(|z: $t| z.ln()),
                    UnaryOp::Log1p => v.visit(|z: $t| (z + 1.0).ln()),
                    UnaryOp::Log2 => v.visit(|z: $t| z.ln() / std::f64::consts::LN_2 as $r),
                    UnaryOp::Log10 => v.visit(|z: $t| z.ln() / std::f64::consts::LN_10 as $r),
                    UnaryOp::Sin => v.visit(|z: $t| z.sin()),
                    UnaryOp::Cos => v.visit(|z: $t| z.cos()),
                    UnaryOp::Tan => v.visit(|z: $t| z.tan()),
                    UnaryOp::Asin => v.visit(|z: $t| z.asin()),
                    UnaryOp::Acos => v.visit(|z: $t| z.acos()),
                    UnaryOp::Atan => v.visit(|z: $t| z.atan()),
                    UnaryOp::Sinh => v.visit(|z: $t| z.sinh()),
                    UnaryOp::Cosh => v.visit(|z: $t| z.cosh()),
                    UnaryOp::Tanh => v.visit(|z: $t| z.tanh()),
                    UnaryOp::Round => v.visit(|z: $t| <$t>::new(z.re.round_ties_even(), z.im.round_ties_even())),
                    UnaryOp::Conj => v.visit(|z: $t| z.conj()),
                    _ => return None,
                })
            }
            fn binary<V: BinaryVisitor<Self>>(op: BinaryOp, v: V) -> Option<V::Out> {
                Some(match op {
                    BinaryOp::Add => v.visit(|a: $t, b: $t| a + b),
                    BinaryOp::Sub => v.visit(|a: $t, b: $t| a - b),
                    BinaryOp::Mul => v.visit(|a: $t, b: $t| a * b),
                    BinaryOp::Div => v.visit(|a: $t, b: $t| a / b),
                    BinaryOp::Pow => v.visit(|a: $t, b: $t| if b == <$t>::new(0.0, 0.0) { <$t>::new(1.0, 0.0) } else if a == <$t>::new(0.0, 0.0) { <$t>::new(0.0, 0.0) } else { a.powc(b) }),
                    BinaryOp::Max => v.visit(|a, b| <$t as Arith>::nan_max(a, b)),
                    BinaryOp::Min => v.visit(|a, b| <$t as Arith>::nan_min(a, b)),
                    // JAX's complex atan2(y, x) = -i log((x + iy) / sqrt(x^2 + y^2)).
                    BinaryOp::Atan2 => v.visit(|y: $t, x: $t| {
                        let i = <$t>::new(0.0, 1.0);
                        -i * ((x + i * y) / (x * x + y * y).sqrt()).ln()
                    }),
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
        struct Apply(i32, i32);
        impl BinaryVisitor<i32> for Apply {
            type Out = i32;
            fn visit<F: Fn(i32, i32) -> i32>(self, f: F) -> i32 {
                f(self.0, self.1)
            }
        }
        let fd = |a, b| <i32 as Arith>::binary(BinaryOp::FloorDiv, Apply(a, b)).unwrap();
        let md = |a, b| <i32 as Arith>::binary(BinaryOp::Mod, Apply(a, b)).unwrap();
        assert_eq!(
            (fd(-7, 2), md(-7, 2), fd(7, -2), md(7, -2), fd(3, 0)),
            (-4, 1, -4, -1, 0)
        );
    }
}
