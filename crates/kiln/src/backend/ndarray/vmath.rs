//! Branch-free float32 elementwise math whose bodies auto-vectorise.
//!
//! Every function here is `#[inline(always)]` and free of calls, early returns, data-dependent
//! loops and table lookups: special cases are handled with `if c { a } else { b }` on values
//! (blends), bit tricks go through `to_bits`/`from_bits`, and rounding to an integer uses the
//! `1.5 * 2^k` magic-number trick (no `round`/`floor`, which are libm calls without SSE4.1).
//! Mapped over a slice inside an `#[target_feature(enable = "avx512f,...")]` or
//! `#[target_feature(enable = "avx2,fma")]` function, LLVM turns each into zmm/ymm code; without
//! target features they still vectorise with SSE2. `pow`'s f64 core, the logarithms
//! (`log`, `log2`, `log10`) and the f32 trigonometric reduction use `mul_add` (a fused multiply-add is exactly defined, so results
//! stay bit-identical on every instruction set; without the `fma` feature it is a libm call,
//! correct but slow, and only the baseline variant pays it); elsewhere plain `a * b + c`,
//! which rustc never contracts.
//!
//! Accuracy is measured against the correctly rounded result (std's f64 function, libm's for
//! erf/erfc, rounded to f32) by the tests at the bottom. The worst case stated on each function
//! is over all 2^32 bit patterns for the one-argument functions and over 10^7+ random and
//! structured pairs for `atan2` and `pow` (`VMATH_STRIDE=1 VMATH_DENSE=2000000 cargo test
//! --release`, about 40 minutes on 2 cores); the default run samples every 1021st bit pattern
//! plus dense sweeps of the interesting ranges. Everything is within 1 ulp except `sin` and
//! `cos` (2 ulp, from their f32 polynomials), with relative accuracy kept near 0 (no
//! cancellation: `tanh(1e-7)`, `expm1(1e-7)`, `sin(1e-20)` are correctly rounded) and subnormal
//! inputs and outputs handled. Where a few f64 operations buy accuracy cheaply the body works in
//! f64 with one rounding at the end; elsewhere it is f32 throughout (FreeBSD/musl/Cephes
//! algorithms).
//!
//! Trigonometric arguments: up to |x| = 2^17 `sin`, `cos` and `tan` reduce modulo pi/2 in f32
//! lanes (an exact fused multiply-add and TwoSum leave r as rh + rl), above it in f64 with a
//! three-part pi/2 (Cody-Waite, 23 + 23 + 53 bits), exact enough for |x| <= 2^30 (every f32 in
//! that range is within the stated ulp bound); the contiguous kernels map the f32 path and
//! recompute the lanes above 2^17 (`trig_rare`). Above 2^30 the vector path returns NaN;
//! [`needs_scalar_trig`] says which lanes those are, so a caller fixes them afterwards with
//! `(x as f64).sin() as f32` (std's f64 functions reduce any f32 exactly):
//!
//! ```ignore
//! for (o, &x) in out.iter_mut().zip(xs) { *o = vmath::sin(x); }   // vectorised
//! if xs.iter().fold(false, |a, &x| a | vmath::needs_scalar_trig(x)) { // vectorised, rare
//!     for (o, &x) in out.iter_mut().zip(xs) {
//!         if vmath::needs_scalar_trig(x) { *o = (x as f64).sin() as f32; }
//!     }
//! }
//! ```
//!
//! Polynomial sources: FreeBSD/musl (log1pf, atanf, the asinf/acosf reduction and the
//! `__sindf`/`__cosdf` kernels), Cephes (the existing kiln `exp`), and minimax fits
//! computed with a Remez exchange in mpmath (50 digits) where a polynomial is evaluated in f64
//! and for the logarithms and asin (`scripts/vmath/`); each states its interval and error.

// ---------------------------------------------------------------------------------------------
// Shared pieces
// ---------------------------------------------------------------------------------------------

/// Horner evaluation `c0 + x * (c1 + x * (c2 + ...))`; `$x` must be a plain variable.
macro_rules! horner {
    ($x:expr; $c:expr) => { $c };
    ($x:expr; $c:expr, $($rest:expr),+) => { $c + $x * horner!($x; $($rest),+) };
}

/// [`horner!`] with a fused multiply-add a step (one rounding a step; bit-identical on every
/// instruction set, a libm call where the CPU has no FMA).
macro_rules! horner_fma {
    ($x:expr; $c:expr) => { $c };
    ($x:expr; $c:expr, $($rest:expr),+) => { horner_fma!($x; $($rest),+).mul_add($x, $c) };
}

/// 1.5 * 2^52: adding it rounds an f64 of magnitude < 2^51 to an integer (ties to even), and the
/// integer then sits in the low mantissa bits.
const MAGIC52: f64 = 6_755_399_441_055_744.0;
const LOG2_E: f64 = std::f64::consts::LOG2_E;
/// fdlibm's ln2 split: the high part has 32 bits, so n * LN2_HI is exact for |n| < 2^21.
const LN2_HI: f64 = f64::from_bits(0x3FE6_2E42_FEE0_0000);
const LN2_LO: f64 = f64::from_bits(0x3DEA_39EF_3579_3C76);

/// Nearest integer to `v` (|v| < 2^51) as an f64 and as an i64, without a float-to-int
/// conversion (AVX2 has no packed f64 -> i64).
#[inline(always)]
fn round_magic(v: f64) -> (f64, i64) {
    let t = v + MAGIC52;
    let n = t - MAGIC52;
    let ni = (t.to_bits() as i64).wrapping_sub(MAGIC52.to_bits() as i64);
    (n, ni)
}

/// 2^n for integer n in [-1022, 1023].
#[inline(always)]
fn pow2(n: i64) -> f64 {
    f64::from_bits((n.wrapping_add(1023) as u64) << 52)
}

/// expm1(r) for |r| <= ln2/2: r + r^2 * P(r), a degree-8 minimax fit of expm1 with relative
/// error < 2^-37.4 (Remez, weight 1/expm1(r)).
#[inline(always)]
fn expm1_poly(r: f64) -> f64 {
    const E2: f64 = 0.500_000_000_010_489_7;
    const E3: f64 = 0.166_666_667_538_717_42;
    const E4: f64 = 0.041_666_665_954_978_95;
    const E5: f64 = 0.008_333_289_142_537_859;
    const E6: f64 = 0.001_388_898_508_987_548;
    const E7: f64 = 0.000_199_048_455_866_922_91;
    const E8: f64 = 2.479_638_268_232_041_7e-5;
    r + r * r * horner!(r; E2, E3, E4, E5, E6, E7, E8)
}

/// e^x in f64 with relative error < 2^-37 (ample for f32 results); x is clamped to
/// [-708, 709], so tiny results flush towards 0 and large ones overflow f32 as they should.
#[inline(always)]
fn exp_f64(x: f64) -> f64 {
    let xc = x.clamp(-708.0, 709.0);
    let (n, ni) = round_magic(xc * LOG2_E);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    pow2(ni) * (1.0 + expm1_poly(r))
}

/// Sets the sign bit of `v` where `neg` (works for zeros, infinities and NaN).
#[inline(always)]
fn flip_sign(v: f32, neg: u32) -> f32 {
    f32::from_bits(v.to_bits() ^ (neg & 0x8000_0000))
}

// ---------------------------------------------------------------------------------------------
// Exponentials
// ---------------------------------------------------------------------------------------------

/// The Cody-Waite split x = n ln2 + r, |r| <= ln2/2 (+ a hair), for |x| <= 104: (r, n).
/// ln2's high part has few bits, so n * LN2_HI is exact and r is exact to ~2^-35.
#[inline(always)]
fn split_ln2(x: f32) -> (f32, i32) {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375 exactly
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds a float to an integer (ties to even).
    const MAGIC: f32 = 12_582_912.0;
    let t = x * LOG2E + MAGIC;
    let n = t - MAGIC;
    // The integer n sits in t's low mantissa bits (bit trick: no float-to-int conversion).
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    ((x - n * LN2_HI) - n * LN2_LO, ni)
}

/// Cephes `expf`'s polynomial p, lowest degree first: e^r = 1 + r + r^2 p(r), |r| <= ln2/2.
const EXP_P: [f32; 6] = [
    0.5,
    1.666_666_6e-1,
    4.166_579_6e-2,
    8.333_452e-3,
    1.398_199_9e-3,
    1.987_569_1e-4,
];

#[inline(always)]
fn exp_poly(r: f32) -> f32 {
    let c = EXP_P;
    horner!(r; c[0], c[1], c[2], c[3], c[4], c[5])
}

/// 2^n for integer n in [-126, 127] (built from its exponent bits).
#[inline(always)]
fn pow2_f32(n: i32) -> f32 {
    f32::from_bits((n.wrapping_add(127) as u32) << 23)
}

/// e^x. Cephes-style f32 evaluation, clamped so that n in [-150, 128].
/// Worst case measured: 1 ulp (first at x = 5.9604645e-8).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    // clamp (unlike f32::max/min) passes NaN through unchanged.
    let xc = x.clamp(-104.0, 88.8);
    let (r, ni) = split_ln2(xc);
    let p = exp_poly(r);
    let y = p * r * r + r + 1.0;
    // 2^n in two halves so that n in [-150, 128] never leaves the normal range.
    let n1 = ni >> 1;
    y * pow2_f32(n1) * pow2_f32(ni.wrapping_sub(n1))
}

/// e^x - 1 in f32 lanes (16 per zmm): x = n ln2 + r as in [`exp`], and
/// e^x - 1 = 2 h ((h - 1/2) + h r + h q) with h = 2^(n-1) (normal for every n of the clamped
/// range, 128 included, so no split scale) and q = e^r - 1 - r from [`exp`]'s polynomial. The
/// first two terms are exact and summed by Fast2Sum (|h - 1/2| >= |h r| for n != 0; at n = 0
/// the sum is h r itself), so the result carries one rounding plus q's error: no cancellation
/// near 0 (n = 0 gives r + q) nor near -1. Worst case measured: 1 ulp over every 1021st bit
/// pattern and the dense sweeps; the test's bound is 2.
#[inline(always)]
pub(crate) fn expm1(x: f32) -> f32 {
    // expm1 rounds to -1 below -17.4; 88.8 overflows (n <= 128). clamp passes NaN.
    let xc = x.clamp(-80.0, 88.8);
    let (r, ni) = split_ln2(xc);
    let p = exp_poly(r);
    let q = p * (r * r);
    let h = pow2_f32(ni.wrapping_sub(1));
    let a = h - 0.5;
    let b = h * r;
    let hi = a + b;
    let lo = b - (hi - a);
    let v = (hi + (lo + h * q)) * 2.0;
    // Below 2^-25 expm1(x) rounds to x: this keeps -0 (the sum gives +0) and the subnormals
    // (h r with h = 1/2 would round them).
    if x.abs() < 2.980_232_2e-8 {
        x
    } else {
        v
    }
}

/// Shared by [`sinh`] and [`cosh`] for a = |x| clamped to [0, 90], in f32 lanes (16 per zmm,
/// twice the f64 width): a = n ln2 + r with |r| <= ln2/2 (the Cody-Waite split of [`exp`],
/// exact for n <= 130), u = e^r - 1 and v = e^-r - 1 from one even/odd split of [`exp`]'s
/// polynomial (shared r^2 terms), and the scale 2^(n-1) as two factors (n - 1 <= 129 leaves
/// the normal range) with w = 2^-2n (clamped at 2^-126, negligible long before).
/// Returns (u, v, w, s1, s2): e^a / 2 = s1 s2 (1 + u), e^-a / 2 = s1 s2 w (1 + v).
#[inline(always)]
fn exp_pm_f32(a: f32) -> (f32, f32, f32, f32, f32) {
    let (r, ni) = split_ln2(a);
    let z = r * r;
    // exp's p(r) = E(z) + r O(z).
    let c = EXP_P;
    let e = horner!(z; c[0], c[2], c[4]);
    let o = horner!(z; c[1], c[3], c[5]);
    let ro = r * o;
    let u = z * (e + ro) + r;
    let v = z * (e - ro) - r;
    let m = ni.wrapping_sub(1);
    let m1 = m >> 1;
    let w = pow2_f32(-(ni.wrapping_add(ni)).clamp(0, 126));
    (u, v, w, pow2_f32(m1), pow2_f32(m.wrapping_sub(m1)))
}

/// sinh(x) in f32 lanes: a + a^3 P(a^2) (Taylor to a^11, truncation < 2^-32 relative) below
/// 1, and s1 s2 (1 + (u - w (1 + v))) from [`exp_pm_f32`] above, where n >= 1 keeps the
/// bracket above 0.6 (no cancellation). Worst case measured: 1 ulp over every 1021st bit
/// pattern and the dense sweeps; the test's bound is 2.
#[inline(always)]
pub(crate) fn sinh(x: f32) -> f32 {
    // sinh(90) overflows f32; clamp passes NaN.
    let a = x.abs().clamp(0.0, 90.0);
    let z = a * a;
    let p = horner!(z; 1.0 / 6.0, 1.0 / 120.0, 1.0 / 5040.0, 1.0 / 362_880.0, 1.0 / 39_916_800.0);
    let small = a + a * (z * p);
    let (u, v, w, s1, s2) = exp_pm_f32(a);
    let large = (1.0 + (u - (w + w * v))) * s1 * s2;
    let r = if a < 1.0 { small } else { large };
    r.copysign(x)
}

/// cosh(x) in f32 lanes: s1 s2 (1 + (u + w (1 + v))) from [`exp_pm_f32`] on all of [0, 90]:
/// both halves are positive (no cancellation), and at n = 0 (w = 1, s1 s2 = 1/2) it is
/// 1 + z E(z), exp's even part, so no separate branch near 0. Worst case measured: 1 ulp over
/// every 1021st bit pattern and the dense sweeps; the test's bound is 2.
#[inline(always)]
pub(crate) fn cosh(x: f32) -> f32 {
    let a = x.abs().clamp(0.0, 90.0);
    let (u, v, w, s1, s2) = exp_pm_f32(a);
    (1.0 + (u + (w + w * v))) * s1 * s2
}

/// tanh(x) in f32 lanes (16 per zmm: twice the f64 width, and an f32 division): an odd
/// minimax polynomial below 9/16, where tanh < 0.51, and 1 - 2 / (e^(2a) + 1) above (no
/// cancellation there: the result is above 1/2). The polynomial's relative error is < 2^-28.6
/// (Remez on [0, (9/16)^2] in z = a^2, weight z a / tanh a: scripts/vmath/fits.py).
/// Worst case measured: 1 ulp (x = 4.5739906e-3) over every 97th bit pattern and the dense
/// sweeps at `VMATH_DENSE=2000000`; the test's bound is 2 (the error analysis of the upper
/// branch: the f32 exp's 1 ulp, the division, the subtraction).
#[inline(always)]
pub(crate) fn tanh(x: f32) -> f32 {
    const T0: f32 = -0.333_333_2;
    const T1: f32 = 0.133_325;
    const T2: f32 = -0.053_836_706;
    const T3: f32 = 0.020_990_47;
    const T4: f32 = -0.006_143_543_6;
    let a = x.abs();
    let z = a * a;
    let small = a + a * (z * horner!(z; T0, T1, T2, T3, T4));
    // exp saturates to inf above 88.8 (so 1 - 0 = 1) and passes NaN.
    let e = exp(a + a);
    let large = 1.0 - 2.0 / (e + 1.0);
    let v = if a < 0.5625 { small } else { large };
    v.copysign(x)
}

/// 1 / (1 + e^-x), computed as e/(1+e) or 1/(1+e) with e = e^-|x| (never overflows, never
/// NaN for finite x, exactly 0.5 at 0). e comes from the f32 `exp` (its <= 1 ulp error is
/// not amplified: d/de of both quotients is below 1), the quotient is one f64 division.
/// Worst case measured: 1 ulp (first at x = 8.9406974e-8).
#[inline(always)]
pub(crate) fn sigmoid(x: f32) -> f32 {
    let e = exp(-x.abs()) as f64;
    let num = if x < 0.0 { e } else { 1.0 };
    (num / (1.0 + e)) as f32
}

/// log(1 + e^x) = max(x, 0) + log1p(e^-|x|), in f64. Worst case
/// measured: 1 ulp (first at x = 2.840748e-2).
#[inline(always)]
pub(crate) fn softplus(x: f32) -> f32 {
    let e = exp_f64(-(x.abs() as f64));
    // log1p(e) for e in [0, 1]: 1 + e is 2 (1 + f) with f = (e - 1) / 2 exact above sqrt2 - 1,
    // and f = e exactly below, so no rounding happens before the kernel.
    let big = e > std::f64::consts::SQRT_2 - 1.0;
    let f = if big { (e - 1.0) * 0.5 } else { e };
    let k = if big { std::f64::consts::LN_2 } else { 0.0 };
    let l = k + log1p_kernel_f64(f);
    let base = if x > 0.0 { x as f64 } else { 0.0 };
    // x + 0 keeps NaN.
    let base = if x.is_nan() { x as f64 } else { base };
    (base + l) as f32
}

// ---------------------------------------------------------------------------------------------
// Logarithms
// ---------------------------------------------------------------------------------------------

/// FreeBSD/musl `__log1pf` coefficients: |(log(1+s)-log(1-s))/s - 2 - R(s^2)| < 2^-34.24 on
/// |s| <= 0.1716 (s = f/(2+f), f in [sqrt(1/2)-1, sqrt(2)-1]).
const LG1: f32 = 6.666_666e-1; // 0xaaaaaa.0p-24
const LG2: f32 = 4.000_097_2e-1; // 0xccce13.0p-25
const LG3: f32 = 2.849_878_7e-1; // 0x91e9ee.0p-25
const LG4: f32 = 2.427_907_9e-1; // 0xf89e26.0p-26
const LN2_HI_F: f32 = f32::from_bits(0x3F31_7180); // 6.9313812256e-01
const LN2_LO_F: f32 = f32::from_bits(0x3717_F7D1); // 9.0580006145e-06

/// Splits x > 0 (subnormals included) into x = 2^k (1 + f), f in [sqrt(1/2)-1, sqrt(2)-1).
/// Garbage for x <= 0, inf and NaN: the callers select their special values.
#[inline(always)]
fn log_reduce(x: f32) -> (f32, f32) {
    const TWO25: f32 = 33_554_432.0;
    let sub = x < f32::MIN_POSITIVE;
    let xs = if sub { x * TWO25 } else { x };
    // Offsetting by sqrt(1/2)'s bits puts the exponent step at sqrt(1/2) instead of 1.
    let ix = xs.to_bits().wrapping_sub(0x3F35_04F3);
    let k = ((ix as i32) >> 23).wrapping_sub(if sub { 25 } else { 0 });
    let m = f32::from_bits((ix & 0x007F_FFFF).wrapping_add(0x3F35_04F3));
    (k as f32, m - 1.0)
}

/// FreeBSD `k_log1pf`: returns (f^2/2, s (f^2/2 + R)) so that log(1+f) = f - hfsq + that.
#[inline(always)]
fn k_log1pf(f: f32) -> (f32, f32) {
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * LG4);
    let t2 = z * (LG1 + w * LG3);
    let hfsq = 0.5 * f * f;
    (hfsq, s * (hfsq + t2 + t1))
}

/// log(1+f) in f64 for f in [sqrt(1/2)-1, sqrt(2)-1]: the same series,
/// log(1+f) = 2s + s R(s^2), s = f/(2+f), evaluated in f64 (the division is exact to 2^-53, so
/// f32's f - f^2/2 + s (f^2/2 + R) arrangement is not needed). Absolute error < 2^-36.8.
#[inline(always)]
fn log1p_kernel_f64(f: f64) -> f64 {
    let s = f / (2.0 + f);
    let z = s * s;
    let r = z * horner!(z; LG1 as f64, LG2 as f64, LG3 as f64, LG4 as f64);
    s * (2.0 + r)
}

/// Special values shared by log, log2, log10: +inf -> +inf, +-0 -> -inf, x < 0 or NaN -> NaN.
#[inline(always)]
fn log_special(x: f32, v: f32) -> f32 {
    let v = if x == f32::INFINITY { x } else { v };
    let v = if x == 0.0 { f32::NEG_INFINITY } else { v };
    // `x >= 0` is false for NaN as well as for negatives.
    if x >= 0.0 {
        v
    } else {
        f32::NAN
    }
}

/// Splits a positive normal finite x as [`log_reduce`] does, without its subnormal scaling
/// (identical results there): the `*_fast` logarithms' reduction.
#[inline(always)]
fn log_reduce_normal(x: f32) -> (f32, f32) {
    let ix = x.to_bits().wrapping_sub(0x3F35_04F3);
    let k = (ix as i32) >> 23;
    let m = f32::from_bits((ix & 0x007F_FFFF).wrapping_add(0x3F35_04F3));
    (k as f32, m - 1.0)
}

/// True where x is not positive, normal and finite: the lanes where [`log_fast`],
/// [`log2_fast`] and [`log10_fast`] differ from [`log`], [`log2`] and [`log10`] (zeros,
/// subnormals, negatives, infinities, NaN). A caller maps the fast function over a block,
/// then recomputes these rare lanes with the full one (the special cases and the subnormal
/// scaling are a third of the full functions' instructions).
#[inline(always)]
pub(crate) fn log_rare(x: f32) -> bool {
    x.to_bits().wrapping_sub(0x0080_0000) >= 0x7F00_0000
}

/// log_b(1 + f) = f C + f^2 Q(f) on [sqrt(1/2) - 1, sqrt(2) - 1): C = log_b(e) as an f32
/// head and tail, Q of degree 9 (Remez fit from `scripts/vmath/log_fits.py`, error 2^-30.4
/// relative to log_b(1 + f)). Returns f C + f^2 Q rounded once by a fused multiply-add
/// (f C_hi exact inside it), plus `tail`, which the caller uses for k log_b(2)'s low part.
#[inline(always)]
fn log_b_1p(f: f32, c_hi: f32, c_lo: f32, q: &[f32; 10], tail: f32) -> f32 {
    let p = horner_fma!(f; q[0], q[1], q[2], q[3], q[4], q[5], q[6], q[7], q[8], q[9]);
    f.mul_add(c_hi, f.mul_add(p, c_lo).mul_add(f, tail))
}

const LOG2_Q: [f32; 10] = [
    -0.721_347_5,
    0.480_898_02,
    -0.360_674_14,
    0.288_571_06,
    -0.240_463_94,
    0.205_117_3,
    -0.178_999_41,
    0.171_697_6,
    -0.168_455_56,
    0.097_022_11,
];
const LOG10_Q: [f32; 10] = [
    -0.217_147_25,
    0.144_764_74,
    -0.108_573_735,
    0.086_868_55,
    -0.072_386_86,
    0.061_746_46,
    -0.053_884_19,
    0.051_686_13,
    -0.050_710_175,
    0.029_206_565,
];

const LN_Q: [f32; 10] = [
    -0.5,
    0.333_333_1,
    -0.250_000_27,
    0.200_022_22,
    -0.166_676_9,
    0.142_176_48,
    -0.124_072_93,
    0.119_011_71,
    -0.116_764_49,
    0.067_250_6,
];

#[inline(always)]
fn log_body(k: f32, f: f32) -> f32 {
    // k LN2_HI_F is exact for |k| <= 128; the low part rides in the polynomial's tail.
    k.mul_add(LN2_HI_F, log_b_1p(f, 1.0, 0.0, &LN_Q, k * LN2_LO_F))
}

/// Natural logarithm (f32: musl's `logf` reduction, then log(1+f) = f + f^2 Q(f) and
/// k ln 2 by fused multiply-adds, no division). Worst case measured: 1 ulp.
#[inline(always)]
pub(crate) fn log(x: f32) -> f32 {
    let (k, f) = log_reduce(x);
    log_special(x, log_body(k, f))
}

/// [`log`] where not [`log_rare`] (bit-identical there); garbage elsewhere.
#[inline(always)]
pub(crate) fn log_fast(x: f32) -> f32 {
    let (k, f) = log_reduce_normal(x);
    log_body(k, f)
}

#[inline(always)]
fn log2_body(k: f32, f: f32) -> f32 {
    const C_HI: f32 = std::f32::consts::LOG2_E; // log2(e) rounded to f32
    const C_LO: f32 = 1.925_963e-8; // log2(e) - C_HI
                                    // |log2(1 + f)| <= 1/2 and k is an integer: one rounding of its own, then the add's.
    k + log_b_1p(f, C_HI, C_LO, &LOG2_Q, 0.0)
}

/// Base-2 logarithm (f32: as [`log`], with log2(e) split in two; exact for powers of two).
/// Worst case measured: 1 ulp.
#[inline(always)]
pub(crate) fn log2(x: f32) -> f32 {
    let (k, f) = log_reduce(x);
    log_special(x, log2_body(k, f))
}

/// [`log2`] where not [`log_rare`] (bit-identical there); garbage elsewhere.
#[inline(always)]
pub(crate) fn log2_fast(x: f32) -> f32 {
    let (k, f) = log_reduce_normal(x);
    log2_body(k, f)
}

#[inline(always)]
fn log10_body(k: f32, f: f32) -> f32 {
    const C_HI: f32 = std::f32::consts::LOG10_E; // log10(e) rounded to f32
    const C_LO: f32 = -1.010_305e-8; // log10(e) - C_HI
    const LOG10_2HI: f32 = f32::from_bits(0x3E9A_2080); // 3.0102920532e-01, 17 bits
    const LOG10_2LO: f32 = f32::from_bits(0x3554_27DB); // 7.9034151668e-07
                                                        // k LOG10_2HI is exact for |k| <= 128; the low part rides in the polynomial's tail.
    k.mul_add(LOG10_2HI, log_b_1p(f, C_HI, C_LO, &LOG10_Q, k * LOG10_2LO))
}

/// Base-10 logarithm (f32: as [`log`], with log10(e) and log10(2) split in two; exact at
/// 10^0..10^10). Worst case measured: 1 ulp.
#[inline(always)]
pub(crate) fn log10(x: f32) -> f32 {
    let (k, f) = log_reduce(x);
    log_special(x, log10_body(k, f))
}

/// [`log10`] where not [`log_rare`] (bit-identical there); garbage elsewhere.
#[inline(always)]
pub(crate) fn log10_fast(x: f32) -> f32 {
    let (k, f) = log_reduce_normal(x);
    log10_body(k, f)
}

/// log(1 + x) (musl `log1pf`, f32, its branches turned into selects). Worst case measured:
/// 1 ulp (first at x = 3.7697293e-7).
#[inline(always)]
pub(crate) fn log1p(x: f32) -> f32 {
    let v = log1p_fast(x);
    // |x| < 2^-24: log1p(x) rounds to x (keeps -0 and subnormals exact).
    let v = if x.abs() < 5.960_464_5e-8 { x } else { v };
    let v = if x == f32::INFINITY { x } else { v };
    let v = if x == -1.0 { f32::NEG_INFINITY } else { v };
    // false for NaN too
    if x >= -1.0 {
        v
    } else {
        f32::NAN
    }
}

/// True where [`log1p_fast`] differs from [`log1p`]: x <= -1, +inf, NaN and |x| < 2^-24.
#[inline(always)]
pub(crate) fn log1p_rare(x: f32) -> bool {
    // Every comparison is false for NaN.
    !(x.abs() >= 5.960_464_5e-8 && x > -1.0 && x < f32::INFINITY)
}

/// [`log1p`] where not [`log1p_rare`] (bit-identical there); garbage elsewhere.
#[inline(always)]
pub(crate) fn log1p_fast(x: f32) -> f32 {
    // 1 + x in [sqrt(2)/2, sqrt(2)): use f = x itself (exact), k = 0.
    const NEAR_LO: f32 = f32::from_bits(0xBE95_F619); // -0.29289320
    const NEAR_HI: f32 = f32::from_bits(0x3ED4_13D0); // 0.41421354
    let u = 1.0 + x;
    let iu = u.to_bits().wrapping_add(0x3F80_0000 - 0x3F35_04F3);
    let ku = ((iu >> 23) as i32).wrapping_sub(0x7F);
    // Correction term c/u ~ log(1+x) - log(u) for the rounding of 1 + x.
    let c = if ku >= 2 {
        1.0 - (u - x)
    } else {
        x - (u - 1.0)
    };
    let c = if ku < 25 { c / u } else { 0.0 };
    let fu = f32::from_bits((iu & 0x007F_FFFF).wrapping_add(0x3F35_04F3)) - 1.0;
    let near = (NEAR_LO..NEAR_HI).contains(&x);
    let f = if near { x } else { fu };
    let c = if near { 0.0 } else { c };
    let k = if near { 0.0 } else { ku as f32 };
    let (hfsq, r) = k_log1pf(f);
    r + (k * LN2_LO_F + c) - hfsq + f + k * LN2_HI_F
}

// ---------------------------------------------------------------------------------------------
// Trigonometric
// ---------------------------------------------------------------------------------------------

/// Above this the three-part f64 reduction is no longer exact enough; see
/// [`needs_scalar_trig`].
const TRIG_BOUND: f32 = 1_073_741_824.0; // 2^30

/// Up to this the f32-lane reduction [`reduce_pio2_f32`] keeps `sin`, `cos` and `tan` within
/// their ulp bounds (measured over every float up to it; at 2^18 tan reaches 2 ulp, because
/// n = round(a 2/pi) from an f32 product lets |r| pass pi/4 by more than the fits cover).
const TRIG_FAST_BOUND: f32 = 131_072.0; // 2^17

/// True where `sin`, `cos` or `tan` of `x` must be recomputed by the caller with std's f64
/// function (`(x as f64).sin() as f32`): |x| > 2^30 (the vector path returns NaN there).
/// False for NaN, whose result is already NaN.
#[inline(always)]
pub(crate) fn needs_scalar_trig(x: f32) -> bool {
    x.abs() > TRIG_BOUND
}

/// True where [`sin_fast`], [`cos_fast`] and [`tan_fast`] differ from [`sin`], [`cos`] and
/// [`tan`]: |x| > 2^17, infinities and NaN. A caller maps the fast function over a block and
/// recomputes these lanes with the full one (and std's f64 function where
/// [`needs_scalar_trig`]).
#[inline(always)]
pub(crate) fn trig_rare(x: f32) -> bool {
    // On the magnitude's bits: infinities and NaN sort above every finite float.
    (x.to_bits() & 0x7FFF_FFFF) > TRIG_FAST_BOUND.to_bits()
}

/// Reduces a = |x| <= 2^30 modulo pi/2 in f64: a = n pi/2 + r, |r| <= pi/4 (+ a hair),
/// q = n mod 4 in the low bits. pi/2 is split 23 + 23 + 53 bits, so n * PIO2_1 and n * PIO2_2
/// are exact for n < 2^30 and the remaining error is < 2^-70 (absolute). NaN for a > 2^30,
/// inf, NaN. The reduction of the lanes above [`TRIG_FAST_BOUND`].
#[inline(always)]
fn reduce_pio2(a: f32) -> (f64, u32) {
    const PIO2_1: f64 = f64::from_bits(0x3FF9_21FB_4000_0000); // 1.5707962513
    const PIO2_2: f64 = f64::from_bits(0x3E74_442D_0000_0000); // 7.5497894159e-08
    const PIO2_3: f64 = f64::from_bits(0x3CF8_4698_98CC_5170); // 5.3903028582e-15
    let xd = if a <= TRIG_BOUND { a as f64 } else { f64::NAN };
    let (n, ni) = round_magic(xd * std::f64::consts::FRAC_2_PI);
    let r = ((xd - n * PIO2_1) - n * PIO2_2) - n * PIO2_3;
    (r, ni as u32)
}

/// Reduces a = |x| <= 2^17 modulo pi/2 in f32 lanes: a = n pi/2 + rh + rl with rl below half
/// an ulp of rh, q = n mod 4. pi/2 = P1 + P2 + P3 (each the f32 nearest to what is left,
/// 10^-23 short): a - n P1 is exact in one fused multiply-add (both sides lie on the 2^-23
/// grid, or 2^-24 below a = 1, and the difference is below 1), n P2 is split exactly by a
/// second, the subtraction is an exact TwoSum, and n P3 only reaches rl.
#[inline(always)]
fn reduce_pio2_f32(a: f32) -> (f32, f32, u32) {
    const P1: f32 = f32::from_bits(0x3FC9_0FDB); // 1.5707964
    const P2: f32 = f32::from_bits(0xB33B_BD2E); // -4.371139e-8
    const P3: f32 = f32::from_bits(0xA6F7_2CED); // -1.7151245e-15
                                                 // 1.5 * 2^23: adding it rounds to an integer (ties to even), which lands in the low bits.
    const MAGIC: f32 = 12_582_912.0;
    let t = a * std::f32::consts::FRAC_2_PI + MAGIC;
    let n = t - MAGIC;
    let q = t.to_bits().wrapping_sub(0x4B40_0000);
    let t1 = (-n).mul_add(P1, a);
    let uh = n * P2;
    let ul = n.mul_add(P2, -uh);
    let rh = t1 - uh;
    let bb = rh - t1;
    let e = (t1 - (rh - bb)) + (-uh - bb);
    let rl = (-n).mul_add(P3, e - ul);
    (rh, rl, q)
}

/// musl `__sindf` coefficients (|sin(x)/x - s(x)| < 2^-37.5 on [-pi/4, pi/4]).
const S1: f64 = -0.166_666_666_416_265_24;
const S2: f64 = 0.008_333_329_385_889_463;
const S3: f64 = -0.000_198_393_348_360_966_32;
const S4: f64 = 2.718_311_493_989_822e-6;
/// musl `__cosdf` coefficients (|cos(x) - c(x)| < 2^-34.1 on [-pi/4, pi/4]).
const C0: f64 = -0.499_999_997_251_031;
const C1: f64 = 0.041_666_623_323_739_06;
const C2: f64 = -0.001_388_676_377_460_993;
const C3: f64 = 2.439_044_879_627_741e-5;

/// sin(r) for r = rh + rl, |r| <= pi/4, in f32 (musl `__sindf` coefficients rounded to f32);
/// rl enters the linear term as rl cos(rh) ~ rl (1 - z/2).
#[inline(always)]
fn sin_poly_f32(rh: f32, rl: f32) -> f32 {
    let z = rh * rh;
    let p = z * rh * horner!(z; S1 as f32, S2 as f32, S3 as f32, S4 as f32);
    rh + rl.mul_add((-0.5f32).mul_add(z, 1.0), p)
}

/// cos(r) for r = rh + rl, |r| <= pi/4, in f32 (musl `__cosdf` coefficients rounded to f32);
/// rl enters as -rl sin(rh) ~ -rl rh.
#[inline(always)]
fn cos_poly_f32(rh: f32, rl: f32) -> f32 {
    let z = rh * rh;
    (-rh).mul_add(rl, 1.0 + z * C0 as f32) + z * z * horner!(z; C1 as f32, C2 as f32, C3 as f32)
}

/// sin (q even) or cos (q odd) of the reduced argument, the sign of quadrants 2 and 3 put on
/// with `sign`'s bit.
#[inline(always)]
fn sin_cos_quadrant(rh: f32, rl: f32, q: u32, sign: u32) -> f32 {
    let v = if q & 1 == 0 {
        sin_poly_f32(rh, rl)
    } else {
        cos_poly_f32(rh, rl)
    };
    flip_sign(v, sign ^ (q << 30))
}

/// [`sin`] where not [`trig_rare`] (bit-identical there): f32 reduction and polynomials, 16
/// lanes a zmm; garbage elsewhere.
#[inline(always)]
pub(crate) fn sin_fast(x: f32) -> f32 {
    // sin is odd: reduce |x| and put the sign back, which also keeps sin(-0) = -0.
    let (rh, rl, q) = reduce_pio2_f32(x.abs());
    sin_cos_quadrant(rh, rl, q, x.to_bits())
}

/// [`cos`] where not [`trig_rare`] (bit-identical there); garbage elsewhere.
#[inline(always)]
pub(crate) fn cos_fast(x: f32) -> f32 {
    let (rh, rl, q) = reduce_pio2_f32(x.abs());
    sin_cos_quadrant(rh, rl, q.wrapping_add(1), 0)
}

/// tan(r) = r + r^3 P(r^2) on [0, pi/4 + 10^-3]: a degree-6 Remez fit in f32, relative error
/// 2^-28.6 before rounding the coefficients (`scripts/vmath/fits.py`).
const TAN_P: [f32; 7] = [
    0.333_333_43,
    0.133_327_68,
    0.054_055_214,
    0.021_280_032,
    0.010_891_345,
    -2.798_874_8e-5,
    0.004_451_832_3,
];

/// tan of the reduced argument rh + rl (as th + tl, rl carried by tan's derivative 1 + t^2)
/// or, in the odd quadrants, -1 / (th + tl): one f32 division refined by a Newton step that
/// sees tl. The sign of `x` put back.
#[inline(always)]
fn tan_quadrant(rh: f32, rl: f32, q: u32, x: f32) -> f32 {
    let z = rh * rh;
    let c = TAN_P;
    let p = rh * z * horner!(z; c[0], c[1], c[2], c[3], c[4], c[5], c[6]);
    let t0 = rh + p;
    let tail = rl.mul_add(t0.mul_add(t0, 1.0), p);
    let th = rh + tail;
    // Fast2Sum (|rh| >= |tail|): th + tl = rh + tail exactly.
    let tl = tail - (th - rh);
    let y = 1.0 / th;
    let e = (-y).mul_add(th, 1.0);
    let e = (-y).mul_add(tl, e);
    let inv = y.mul_add(e, y);
    let v = if q & 1 != 0 { -inv } else { th };
    flip_sign(v, x.to_bits())
}

/// [`tan`] where not [`trig_rare`] (bit-identical there); garbage elsewhere.
#[inline(always)]
pub(crate) fn tan_fast(x: f32) -> f32 {
    let (rh, rl, q) = reduce_pio2_f32(x.abs());
    tan_quadrant(rh, rl, q, x)
}

/// The reduction of every lane: [`reduce_pio2_f32`] up to [`TRIG_FAST_BOUND`], above it the
/// f64 one with r split into f32 head and tail, so both feed the same polynomials. A blend:
/// vectorised, it computes both (the contiguous float32 kernels map the fast functions and
/// recompute only the rare lanes with this).
#[inline(always)]
fn reduce_pio2_any(a: f32) -> (f32, f32, u32) {
    let (fh, fl, fq) = reduce_pio2_f32(a);
    let (r, wq) = reduce_pio2(a);
    let wh = r as f32;
    let wl = (r - wh as f64) as f32;
    if a <= TRIG_FAST_BOUND {
        (fh, fl, fq)
    } else {
        (wh, wl, wq)
    }
}

/// sin(x). |x| > 2^30 gives NaN: see [`needs_scalar_trig`]. Worst case measured: 2 ulp
/// (first at x = 14.845197), every float up to 2^30.
#[inline(always)]
pub(crate) fn sin(x: f32) -> f32 {
    let (rh, rl, q) = reduce_pio2_any(x.abs());
    sin_cos_quadrant(rh, rl, q, x.to_bits())
}

/// cos(x): as `sin`, one quadrant on. |x| > 2^30 gives NaN: see [`needs_scalar_trig`].
/// Worst case measured: 2 ulp (first at x = 2.356215), every float up to 2^30.
#[inline(always)]
pub(crate) fn cos(x: f32) -> f32 {
    let (rh, rl, q) = reduce_pio2_any(x.abs());
    sin_cos_quadrant(rh, rl, q.wrapping_add(1), 0)
}

/// tan(x) in f32 lanes (the f64 reduction above 2^17 aside). |x| > 2^30 gives NaN: see
/// [`needs_scalar_trig`]. Worst case measured: 1 ulp (first at x = 3.5211167e-4), every
/// float up to 2^30.
#[inline(always)]
pub(crate) fn tan(x: f32) -> f32 {
    let (rh, rl, q) = reduce_pio2_any(x.abs());
    tan_quadrant(rh, rl, q, x)
}

/// asin(s) / s - 1 = z P(z), z = s^2 <= 1/4: a degree-5 fit in z (`scripts/vmath/fits.py`,
/// 2^-30.9 relative to asin), so no division (musl's rational had one).
const ASIN_P: [f32; 6] = [
    0.166_666_63,
    0.075_004_295,
    0.044_523_615,
    0.031_799_506,
    0.014_335_053,
    0.037_806_362,
];

/// The shared reduction of asin/acos in f32 lanes: for |x| < 0.5, z = x^2; else
/// z = (1 - |x|) / 2 (exact) and asin(|x|) = pi/2 - 2 asin(sqrt z). Returns z P(z) and
/// q = 2 sqrt(z) (NaN for |x| > 1). The rounding error of sqrt needs no correction term:
/// without one, every float in [0.5, 1] stays within 1 ulp (`inverse_trig_accuracy`).
#[inline(always)]
fn asin_reduce(a: f32) -> (bool, f32, f32) {
    let big = a >= 0.5;
    let z = if big { (1.0 - a) * 0.5 } else { a * a };
    let c = ASIN_P;
    let p = z * horner!(z; c[0], c[1], c[2], c[3], c[4], c[5]);
    let s = z.sqrt();
    (big, p, s + s)
}

/// pi/2 and pi as f32 head + tail.
const PIO2_HI: f32 = f32::from_bits(0x3FC9_0FDB);
const PIO2_LO: f32 = f32::from_bits(0xB33B_BD2E);
const PI_HI: f32 = f32::from_bits(0x4049_0FDB);
const PI_LO: f32 = f32::from_bits(0xB3BB_BD2E);

/// hi - v + lo - t with hi - v by Fast2Sum (|hi| >= |v|), so the cancellation is exact.
#[inline(always)]
fn reflect(hi: f32, lo: f32, v: f32, t: f32) -> f32 {
    let h = hi - v;
    let e = (hi - h) - v;
    h + ((e + lo) - t)
}

/// asin(x) in f32 lanes (musl `asinf`'s reduction; the reflection for |x| >= 0.5 kept exact
/// by Fast2Sum). Worst case measured: 1 ulp (first at x = 4.4363295e-4).
#[inline(always)]
pub(crate) fn asin(x: f32) -> f32 {
    let a = x.abs();
    let (big, p, q) = asin_reduce(a);
    let small = a.mul_add(p, a);
    let large = reflect(PIO2_HI, PIO2_LO, q, q * p);
    let v = if big { large } else { small };
    v.copysign(x)
}

/// acos(x) in f32 lanes: pi/2 - asin(x) for |x| < 0.5, 2 asin(sqrt z) (reflected about pi
/// for x < 0) above. Worst case measured: 1 ulp (first at x = 2.4880568e-4).
#[inline(always)]
pub(crate) fn acos(x: f32) -> f32 {
    let (big, p, q) = asin_reduce(x.abs());
    let small = reflect(PIO2_HI, PIO2_LO, x, x * p);
    let large = if x > 0.0 {
        q.mul_add(p, q)
    } else {
        reflect(PI_HI, PI_LO, q, q * p)
    };
    if big {
        large
    } else {
        small
    }
}

/// atan(x) (musl `atanf`, f32: five ranges selected branch-free, one division).
/// Worst case measured: 1 ulp (first at x = 7.586018e-4).
#[inline(always)]
pub(crate) fn atan(x: f32) -> f32 {
    const AT0: f32 = 3.333_332_8e-1;
    const AT1: f32 = -1.999_915_8e-1;
    const AT2: f32 = 1.425_363_6e-1;
    const AT3: f32 = -1.064_801_74e-1;
    const AT4: f32 = 6.168_760_7e-2;
    let a = x.abs();
    // Ranges [0, 7/16), [7/16, 11/16), [11/16, 19/16), [19/16, 39/16), [39/16, inf] map to
    // |t| <= 7/16 with atan(a) = atan(c) + atan(t); inf and NaN land in the last.
    let r0 = a < 0.4375;
    let r1 = a < 0.6875;
    let r2 = a < 1.1875;
    let r3 = a < 2.4375;
    let (num, den, hi, lo) = if r0 {
        (a, 1.0, 0.0, 0.0)
    } else if r1 {
        (
            2.0 * a - 1.0,
            2.0 + a,
            f32::from_bits(0x3EED_6338),
            f32::from_bits(0x31AC_3769),
        )
    } else if r2 {
        (
            a - 1.0,
            a + 1.0,
            f32::from_bits(0x3F49_0FDA),
            f32::from_bits(0x3322_2168),
        )
    } else if r3 {
        (
            a - 1.5,
            1.0 + 1.5 * a,
            f32::from_bits(0x3F7B_985E),
            f32::from_bits(0x3314_0FB4),
        )
    } else {
        (
            -1.0,
            a,
            f32::from_bits(0x3FC9_0FDA),
            f32::from_bits(0x33A2_2168),
        )
    };
    let t = num / den;
    let z = t * t;
    let w = z * z;
    let s1 = z * (AT0 + w * (AT2 + w * AT4));
    let s2 = w * (AT1 + w * AT3);
    // hi = lo = 0 reduces to t - t (s1 + s2) exactly.
    let v = hi - ((t * (s1 + s2) - lo) - t);
    v.copysign(x)
}

/// atan(t)/t = 1 + u Q(u), u = t^2 <= tan^2(pi/8): degree-6 minimax fit of Q, relative error
/// < 2^-34.5 (Remez, weight t/atan(t)).
#[inline(always)]
fn atan_poly_f64(t: f64) -> f64 {
    const A1: f64 = -0.333_333_327_282_579_2;
    const A2: f64 = 0.199_999_136_549_861_84;
    const A3: f64 = -0.142_820_895_038_979_3;
    const A4: f64 = 0.110_440_397_750_573_34;
    const A5: f64 = -0.084_660_453_424_447_25;
    const A6: f64 = 0.047_129_966_679_584_66;
    let u = t * t;
    t + t * u * horner!(u; A1, A2, A3, A4, A5, A6)
}

/// atan2(y, x) with all C99 special cases, in f64 (one division).
/// Worst case measured: 1 ulp over 10^7 random and structured pairs
/// (first at (y, x) = (-1.2172737, -4.82764)).
#[inline(always)]
pub(crate) fn atan2(y: f32, x: f32) -> f32 {
    const TAN_PI_8: f64 = 0.414_213_562_373_095_03;
    const TAN_3PI_8: f64 = 2.414_213_562_373_095;
    let ax = x.abs() as f64;
    let ay = y.abs() as f64;
    // Choose the reduction from the ratio without dividing: angle in [0, pi/8], [pi/8, 3pi/8]
    // or [3pi/8, pi/2]; f32 inputs make ay - ax and ay + ax exact in f64.
    let (num, den, base) = if ay <= TAN_PI_8 * ax {
        (ay, ax, 0.0)
    } else if ay >= TAN_3PI_8 * ax {
        (-ax, ay, std::f64::consts::FRAC_PI_2)
    } else {
        (ay - ax, ay + ax, std::f64::consts::FRAC_PI_4)
    };
    let th = base + atan_poly_f64(num / den);
    // 0/0 and inf/inf: atan2(+-0, +-0) base 0, atan2(+-inf, +-inf) base pi/4.
    let th = if ax == 0.0 && ay == 0.0 { 0.0 } else { th };
    let th = if ax == f64::INFINITY && ay == f64::INFINITY {
        std::f64::consts::FRAC_PI_4
    } else {
        th
    };
    // x < 0 or x = -0: reflect.
    let th = if x.is_sign_negative() {
        std::f64::consts::PI - th
    } else {
        th
    };
    (th as f32).copysign(y)
}

// ---------------------------------------------------------------------------------------------
// erf and GELU
// ---------------------------------------------------------------------------------------------

/// erfc(z) for z in [0, 10.5] with relative error < 2^-32: erfc(z) = t exp(-z^2 + P(t)),
/// t = 1 / (1 + z/2) (the Numerical Recipes `erfcc` form), P a degree-12 minimax fit of
/// log(erfc(z)/t) + z^2 on t in [1/6.25, 1] (Remez, absolute error < 2^-32.5).
#[inline(always)]
fn erfc_pos(z: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.5 * z);
    let p = horner!(t;
        -1.265_505_977_673_311_5,
        0.999_777_186_586_788_7,
        0.378_585_684_703_541,
        0.049_454_887_716_429_016,
        0.123_393_743_854_213_05,
        -1.034_356_222_970_439_3,
        2.577_419_551_626_706_4,
        -5.615_412_906_368_375,
        8.381_768_466_942_704,
        -7.758_070_193_686_333,
        4.334_233_954_084_494,
        -1.354_626_919_732_057,
        0.183_338_745_071_552_62
    );
    t * exp_f64(p - z * z)
}

/// erf(x): x P(x^2) for |x| < 1 (degree-7 minimax fit of erf(x)/x in x^2 on [0, 1], relative
/// error < 2^-34.8), 1 - erfc(|x|) above; in f64. Worst case measured: 1 ulp
/// (first at x = 4.44182e-40).
#[inline(always)]
pub(crate) fn erf(x: f32) -> f32 {
    let a = x.abs() as f64;
    let u = a * a;
    let small = a * horner!(u;
        1.128_379_167_058_023_4,
        -0.376_126_384_346_525,
        0.112_837_819_740_982_14,
        -0.026_865_400_041_338_795,
        0.005_220_945_430_447_293,
        -0.000_848_282_881_236_093_3,
        0.000_112_569_476_830_322_69,
        -9.641_515_466_224_246e-6
    );
    // erf(4) rounds to 1 in f32; clamp passes NaN.
    let large = 1.0 - erfc_pos(a.clamp(0.0, 4.0));
    let v = if a < 1.0 { small } else { large };
    (v as f32).copysign(x)
}

/// GELU, erf form: 0.5 x (1 + erf(x/sqrt2)) = 0.5 x erfc(-x/sqrt2), in f64 (no cancellation for
/// x < 0: the tail is 0.5 x erfc(|x|/sqrt2), tiny and negative, then -0).
/// Worst case measured: 1 ulp against the f64 value (first at x = 4e-45).
#[inline(always)]
pub(crate) fn gelu_erf(x: f32) -> f32 {
    let xd = x as f64;
    // Outside [-14.8, 15] the erfc term is far below f32 resolution (0.5 x erfc rounds to
    // -0 below, x - 0.5 x erfc to x above); the clamp keeps inf * 0 out.
    let xc = xd.clamp(-14.8, 15.0);
    let h = 0.5 * xc * erfc_pos(xc.abs() * std::f64::consts::FRAC_1_SQRT_2);
    // x <= 0 keeps gelu(-0) = -0.
    let v = if x <= 0.0 { h } else { xd - h };
    v as f32
}

/// GELU, tanh form: 0.5 x (1 + tanh(u)) = x / (1 + e^(-2u)), u = sqrt(2/pi) (x + 0.044715 x^3),
/// in f64 (stable at both ends: x for large x, tiny negative then -0 for very negative x).
/// Worst case measured: 1 ulp against the f64 value (first at x = 1.9025084e-2).
#[inline(always)]
pub(crate) fn gelu_tanh(x: f32) -> f32 {
    const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
    let xd = x as f64;
    let xc = xd.clamp(-20.0, 20.0);
    let u = SQRT_2_OVER_PI * (xc + 0.044_715 * xc * xc * xc);
    // sigmoid(2u) as in `sigmoid`: e = e^-|2u| keeps the quotient's divisor in [1, 2].
    let e = exp_f64(-2.0 * u.abs());
    let sig = (if u < 0.0 { e } else { 1.0 }) / (1.0 + e);
    // Below -20 the product underflows f32 anyway; clamping x avoids -inf * 0.
    let m = if xd < -20.0 { -20.0 } else { xd };
    (m * sig) as f32
}

// ---------------------------------------------------------------------------------------------
// pow
// ---------------------------------------------------------------------------------------------

// pow's tables (scripts/vmath/pow_tables.py; the shape of ARM optimized-routines' powf).
// The log2 side splits |x| (as f64) into 2^k z, z in [OFF, 2 OFF), OFF = 0.69921875; the top
// four bits of bits(z) - bits(OFF) pick subinterval i, POW_INVC[i] ~ 1 / its centre (1.0 for
// the one holding 1, so the log2 of a power of two is exact) and POW_LOGC[i] = -log2(invc).
pub(crate) const POW_OFF: u64 = 0x3FE6_6000_0000_0000;
#[rustfmt::skip]
pub(crate) const POW_INVC: [u64; 16] = [
    0x3FF661EC6A5122F9, 0x3FF571ED3C506B3A, 0x3FF49539E3B2D067, 0x3FF3C995A47BABE7,
    0x3FF30D190130D190, 0x3FF25E22708092F1, 0x3FF1BB4A4046ED29, 0x3FF12358E75D3033,
    0x3FF0953F39010954, 0x3FF0000000000000, 0x3FEE573AC901E574, 0x3FECA4B3055EE191,
    0x3FEB2036406C80D9, 0x3FE9C2D14EE4A102, 0x3FE886E5F0ABB04A, 0x3FE767DCE434A9B1,
];
#[rustfmt::skip]
pub(crate) const POW_LOGC: [u64; 16] = [
    0xBFDEFEC61B011F85, 0xBFDB0B67F4F46812, 0xBFD7418ACEBBF18F, 0xBFD39DE8E1559F6E,
    0xBFD01D9BBCFA61D4, 0xBFC97C1CB13C7EC0, 0xBFC2F9E32D5BFDD1, 0xBFB960CAF9ABB7C1,
    0xBFAA6F9C377DD31D, 0x0000000000000000, 0x3FB3AA2FDD27F1BF, 0x3FC476A9F983F74D,
    0x3FCE840BE74E6A4D, 0x3FD406463B1B0448, 0x3FD88E9C72E0B224, 0x3FDCE0A4923A587D,
];
/// 2^(j/16), j = 0..16, rounded to f64.
#[rustfmt::skip]
pub(crate) const POW_EXP2: [u64; 16] = [
    0x3FF0000000000000, 0x3FF0B5586CF9890F, 0x3FF172B83C7D517B, 0x3FF2387A6E756238,
    0x3FF306FE0A31B715, 0x3FF3DEA64C123422, 0x3FF4BFDAD5362A27, 0x3FF5AB07DD485429,
    0x3FF6A09E667F3BCD, 0x3FF7A11473EB0187, 0x3FF8ACE5422AA0DB, 0x3FF9C49182A3F090,
    0x3FFAE89F995AD3AD, 0x3FFC199BDD85529C, 0x3FFD5818DCFBA487, 0x3FFEA4AFA2A490DA,
];
/// log2(1 + r) = r P(r), |r| <= 0.02963 (Remez, relative error < 2^-38.2).
pub(crate) const POW_L: [f64; 6] = [
    1.442_695_040_893_352_8,
    -0.721_347_520_456_554_7,
    0.480_898_257_158_013_65,
    -0.360_673_644_207_713_75,
    0.288_811_174_532_019_54,
    -0.240_721_366_950_357_56,
];
/// 2^r = 1 + r Q(r), |r| <= 1/32 (Remez, relative error < 2^-37.6).
pub(crate) const POW_E: [f64; 4] = [
    0.693_147_179_924_141_1,
    0.240_226_506_885_650_03,
    0.055_506_061_848_209_11,
    0.009_618_354_747_486_308,
];
/// 1.5 * 2^48: adding it rounds an f64 of magnitude < 2^47 to a multiple of 1/16.
pub(crate) const POW_SHIFT: f64 = 422_212_465_065_984.0;

/// log2(a) in f64 for f32 a >= 0: k + logc + r P(r) by the table above (absolute error
/// < 2^-38 near 1, relative < 2^-37 elsewhere); exact for powers of two. -inf at 0, +inf at
/// inf, NaN for NaN. Fused multiply-adds (`mul_add`): the AVX-512 kernel
/// (`pow_avx512.rs`) runs the same operations in the same order, so both give the same bits.
#[inline(always)]
fn pow_log2(a: f32) -> f64 {
    let ix = (a as f64).to_bits();
    let tmp = ix.wrapping_sub(POW_OFF);
    let i = ((tmp >> 48) & 15) as usize;
    let k = ((tmp as i64) >> 52) as f64;
    let z = f64::from_bits(ix.wrapping_sub(tmp & 0xFFF0_0000_0000_0000));
    let r = z.mul_add(f64::from_bits(POW_INVC[i]), -1.0);
    let y0 = f64::from_bits(POW_LOGC[i]) + k;
    let r2 = r * r;
    let p01 = r.mul_add(POW_L[1], POW_L[0]);
    let p23 = r.mul_add(POW_L[3], POW_L[2]);
    let p45 = r.mul_add(POW_L[5], POW_L[4]);
    let p = r2.mul_add(r2.mul_add(p45, p23), p01);
    let l = r.mul_add(p, y0);
    let l = if a == 0.0 { f64::NEG_INFINITY } else { l };
    let l = if a == f32::INFINITY { f64::INFINITY } else { l };
    if a.is_nan() {
        f64::NAN
    } else {
        l
    }
}

/// 2^t in f64 for the f32 results of `pow`: t clamped to [-200, 200] (NaN kept), t = K/16 + r
/// with K = round(16 t), 2^(K/16) from the table, 2^r by Q (relative error < 2^-37).
#[inline(always)]
fn pow_exp2(t: f64) -> f64 {
    let t = if t < -200.0 { -200.0 } else { t };
    let t = if t > 200.0 { 200.0 } else { t };
    let s = t + POW_SHIFT;
    // Same exponent as POW_SHIFT for |t| <= 200: the bit difference is K.
    let kk = s.to_bits().wrapping_sub(POW_SHIFT.to_bits());
    let r = t - (s - POW_SHIFT);
    let n = ((kk as i64) >> 4) as u64;
    let sc = f64::from_bits(POW_EXP2[(kk & 15) as usize].wrapping_add(n << 52));
    let r2 = r * r;
    let q = r * r2.mul_add(r.mul_add(POW_E[3], POW_E[2]), r.mul_add(POW_E[1], POW_E[0]));
    sc.mul_add(q, sc)
}

/// x^y with C99/NumPy `powf` semantics: 2^(y log2|x|) in f64 ([`pow_log2`], [`pow_exp2`]:
/// relative error < 2^-36 before over/underflow), sign from odd integer y, and all special
/// cases: pow(x, +-0) = 1 and pow(1, y) = 1 even for NaN, pow(-1, +-inf) = 1, NaN for
/// negative finite x with non-integer finite y, the signed zeros and infinities of
/// pow(+-0, y) and pow(-inf, y). Worst case measured: 1 ulp over 2.4 * 10^7 random and
/// structured pairs (`VMATH_DENSE=4000000`; first at (x, y) = (0.9970536, 17936.084)).
#[inline(always)]
pub(crate) fn pow(x: f32, y: f32) -> f32 {
    pow_finish(x, y, pow_core(x.abs(), y))
}

/// |x|^y before the sign and the special cases: `pow_exp2(y log2 |x|)` rounded to f32. The
/// AVX-512 kernel computes this part with intrinsics (same operations) and then runs
/// [`pow_finish`] itself.
#[inline(always)]
pub(crate) fn pow_core(ax: f32, y: f32) -> f32 {
    pow_exp2(y as f64 * pow_log2(ax)) as f32
}

/// [`pow`] from `m` = [`pow_core`]`(|x|, y)`: the sign of odd integer powers and the special
/// cases.
#[inline(always)]
pub(crate) fn pow_finish(x: f32, y: f32, m: f32) -> f32 {
    const TWO23: f32 = 8_388_608.0;
    let ax = x.abs();
    let ay = y.abs();
    // |y| >= 2^23 (inf included) is an integer; below, adding 2^23 rounds to one.
    let yr = ay + TWO23;
    let yint = ay >= TWO23 || yr - TWO23 == ay;
    // Parity: the last mantissa bit of |y| + 2^23 below 2^23, of |y| up to 2^24, even beyond.
    let par = if ay < TWO23 {
        yr.to_bits()
    } else {
        ay.to_bits()
    } & 1;
    let yodd = yint && ay < 16_777_216.0 && par == 1;
    // Negative x (or -0, -inf) with odd integer y: negative result.
    let neg = if yodd { x.to_bits() } else { 0 };
    let v = flip_sign(m, neg);
    let v = if x < 0.0 && x > f32::NEG_INFINITY && !yint {
        f32::NAN
    } else {
        v
    };
    // These three override NaN: pow(1, y), pow(x, 0), pow(-1, +-inf).
    let one = x == 1.0 || y == 0.0 || (ax == 1.0 && ay == f32::INFINITY);
    if one {
        1.0
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Distance in ulps along the ordered f32 line, with -0 one step below +0 (so a wrong zero
    /// sign counts as 1 ulp); 0 when both are NaN, u64::MAX when only one is.
    fn ulps(a: f32, b: f32) -> u64 {
        if a.is_nan() || b.is_nan() {
            return if a.is_nan() && b.is_nan() {
                0
            } else {
                u64::MAX
            };
        }
        fn key(v: f32) -> i64 {
            let b = v.to_bits();
            if b >> 31 == 1 {
                -((b & 0x7FFF_FFFF) as i64) - 1
            } else {
                b as i64
            }
        }
        (key(a) - key(b)).unsigned_abs()
    }

    /// Stride of the whole-range sweeps: every STRIDE-th bit pattern. The default keeps the
    /// whole suite near 10 s unoptimised (kiln builds only its dependencies at opt-level 2 in
    /// tests) and 3 s at opt-level 2; `VMATH_STRIDE=1 VMATH_DENSE=2000000 cargo test --release`
    /// is the exhaustive run behind the documented worst cases.
    fn stride() -> usize {
        std::env::var("VMATH_STRIDE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(1021)
    }

    /// Scale of the dense range sweeps (points per range).
    fn dense() -> u32 {
        std::env::var("VMATH_DENSE")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(200_000)
    }

    /// Every `stride()`-th f32 bit pattern, NaNs and both signs included.
    fn all_bits() -> impl Iterator<Item = f32> {
        (0..=u32::MAX).step_by(stride()).map(f32::from_bits)
    }

    /// About `dense()` values evenly spaced in bit pattern (so log-uniform) over [lo, hi],
    /// 0 <= lo < hi, and their negatives.
    fn span(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
        let (a, b) = (lo.to_bits(), hi.to_bits());
        let step = ((b - a) / dense()).max(1) as usize;
        (a..=b)
            .step_by(step)
            .map(f32::from_bits)
            .flat_map(|x| [x, -x])
    }

    /// About `dense()` values evenly spaced in value over [lo, hi].
    fn linear(lo: f32, hi: f32) -> impl Iterator<Item = f32> {
        let n = dense();
        (0..=n).map(move |i| lo + (hi - lo) * (i as f32 / n as f32))
    }

    /// Worst ulp error of `f` against `reference` (f64, rounded to f32) over `xs`; panics
    /// above `bound`, naming the input.
    fn check(
        name: &str,
        f: impl Fn(f32) -> f32,
        reference: impl Fn(f64) -> f64,
        xs: impl Iterator<Item = f32>,
        bound: u64,
    ) -> (u64, f32) {
        let mut worst = (0, 0.0);
        for x in xs {
            let (got, want) = (f(x), reference(x as f64) as f32);
            let u = ulps(got, want);
            assert!(
                u <= bound,
                "{name}({x:e}) = {got:e}, want {want:e} ({u} ulp)"
            );
            if u > worst.0 {
                worst = (u, x);
            }
        }
        println!("{name}: worst {} ulp at x = {:e}", worst.0, worst.1);
        worst
    }

    /// Two-argument version of `check`.
    fn check2(
        name: &str,
        f: impl Fn(f32, f32) -> f32,
        reference: impl Fn(f64, f64) -> f64,
        xs: impl Iterator<Item = (f32, f32)>,
        bound: u64,
    ) -> (u64, f32, f32) {
        let mut worst = (0, 0.0, 0.0);
        for (x, y) in xs {
            let (got, want) = (f(x, y), reference(x as f64, y as f64) as f32);
            let u = ulps(got, want);
            assert!(
                u <= bound,
                "{name}({x:e}, {y:e}) = {got:e}, want {want:e} ({u} ulp)"
            );
            if u > worst.0 {
                worst = (u, x, y);
            }
        }
        println!(
            "{name}: worst {} ulp at ({:e}, {:e})",
            worst.0, worst.1, worst.2
        );
        worst
    }

    /// Exact expectations (bitwise, any NaN matching any NaN).
    fn exact(name: &str, f: impl Fn(f32) -> f32, cases: &[(f32, f32)]) {
        for &(x, want) in cases {
            let got = f(x);
            let same = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
            assert!(same, "{name}({x:e}) = {got:e}, want {want:e}");
        }
    }

    fn exact2(name: &str, f: impl Fn(f32, f32) -> f32, cases: &[(f32, f32, f32)]) {
        for &(x, y, want) in cases {
            let got = f(x, y);
            let same = got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan());
            assert!(same, "{name}({x:e}, {y:e}) = {got:e}, want {want:e}");
        }
    }

    /// Deterministic pseudo-random f32s: mixes of bit patterns and of uniform values.
    fn lcg(seed: u64) -> impl FnMut() -> u64 {
        let mut s = seed;
        move || {
            s = s
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            s >> 32
        }
    }

    const INF: f32 = f32::INFINITY;
    const NAN: f32 = f32::NAN;
    const TINY: f32 = 1.0e-45; // smallest subnormal

    #[test]
    fn ulps_helper() {
        assert_eq!(ulps(1.0, 1.0), 0);
        assert_eq!(ulps(1.0, f32::from_bits(1.0f32.to_bits() + 1)), 1);
        assert_eq!(ulps(f32::from_bits(1.0f32.to_bits() + 1), 1.0), 1);
        assert_eq!(ulps(1.0, 2.0), 1 << 23);
        assert_eq!(ulps(-1.0, -2.0), 1 << 23);
        assert_eq!(ulps(0.0, -0.0), 1);
        assert_eq!(ulps(TINY, -TINY), 3);
        assert_eq!(ulps(-1.0, 1.0), 2 * 0x3F80_0000 + 1);
        assert_eq!(ulps(f32::MAX, INF), 1);
        assert_eq!(ulps(-f32::MAX, -INF), 1);
        assert_eq!(ulps(NAN, NAN), 0);
        assert_eq!(ulps(NAN, 1.0), u64::MAX);
        assert_eq!(ulps(INF, NAN), u64::MAX);
        assert_eq!(ulps(-INF, INF), 2 * 0x7F80_0000 + 1);
    }

    #[test]
    #[should_panic(expected = "3 ulp")]
    fn check_catches_errors() {
        // An exp that is 3 ulp off must fail a 2-ulp bound.
        let off = |x: f32| f32::from_bits(exp(x).to_bits() + 3);
        check("exp + 3 ulp", off, f64::exp, linear(0.5, 1.0), 2);
    }

    #[test]
    fn exp_accuracy() {
        check("exp", exp, f64::exp, all_bits(), 1);
        check("exp", exp, f64::exp, linear(-104.0, 89.0), 1);
        check("exp", exp, f64::exp, span(1e-10, 1.0), 1);
        exact(
            "exp",
            exp,
            &[(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, 0.0), (NAN, NAN)],
        );
        exact(
            "exp",
            exp,
            &[(89.0, INF), (88.8, INF), (-104.0, 0.0), (TINY, 1.0)],
        );
        assert!(exp(-100.0) > 0.0 && exp(-100.0) < f32::MIN_POSITIVE); // subnormal output
    }

    #[test]
    fn expm1_accuracy() {
        check("expm1", expm1, f64::exp_m1, all_bits(), 2);
        check("expm1", expm1, f64::exp_m1, linear(-20.0, 89.0), 2);
        check("expm1", expm1, f64::exp_m1, span(TINY, 2.0), 2);
        exact(
            "expm1",
            expm1,
            &[
                (0.0, 0.0),
                (-0.0, -0.0),
                (INF, INF),
                (-INF, -1.0),
                (NAN, NAN),
            ],
        );
        exact(
            "expm1",
            expm1,
            &[(89.0, INF), (-30.0, -1.0), (TINY, TINY), (-TINY, -TINY)],
        );
        exact("expm1", expm1, &[(1e-7, 1.000_000_1e-7)]);
    }

    #[test]
    fn sinh_cosh_tanh_accuracy() {
        for (name, f, r) in [
            ("sinh", sinh as fn(f32) -> f32, f64::sinh as fn(f64) -> f64),
            ("cosh", cosh, f64::cosh),
            ("tanh", tanh, f64::tanh),
        ] {
            check(name, f, r, all_bits(), 2);
            check(name, f, r, linear(-12.0, 12.0), 2);
            check(name, f, r, span(TINY, 100.0), 2);
        }
        for f in [sinh as fn(f32) -> f32, tanh] {
            exact(
                "odd",
                f,
                &[
                    (0.0, 0.0),
                    (-0.0, -0.0),
                    (NAN, NAN),
                    (TINY, TINY),
                    (-TINY, -TINY),
                ],
            );
        }
        exact(
            "sinh",
            sinh,
            &[(INF, INF), (-INF, -INF), (90.0, INF), (-90.0, -INF)],
        );
        exact(
            "cosh",
            cosh,
            &[(0.0, 1.0), (-0.0, 1.0), (INF, INF), (-INF, INF), (NAN, NAN)],
        );
        exact("cosh", cosh, &[(90.0, INF), (-90.0, INF)]);
        exact(
            "tanh",
            tanh,
            &[(INF, 1.0), (-INF, -1.0), (20.0, 1.0), (-1e30, -1.0)],
        );
        exact("tanh", tanh, &[(1e-7, 1e-7), (-1e-7, -1e-7)]);
    }

    #[test]
    fn sigmoid_softplus_accuracy() {
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let sp = |x: f64| x.max(0.0) + (-x.abs()).exp().ln_1p();
        check("sigmoid", sigmoid, sig, all_bits(), 2);
        check("sigmoid", sigmoid, sig, linear(-110.0, 110.0), 2);
        check("sigmoid", sigmoid, sig, span(TINY, 120.0), 2);
        check("softplus", softplus, sp, all_bits(), 2);
        check("softplus", softplus, sp, linear(-110.0, 110.0), 2);
        check("softplus", softplus, sp, span(TINY, 120.0), 2);
        exact(
            "sigmoid",
            sigmoid,
            &[(0.0, 0.5), (-0.0, 0.5), (INF, 1.0), (-INF, 0.0)],
        );
        exact(
            "sigmoid",
            sigmoid,
            &[(NAN, NAN), (20.0, 1.0), (-200.0, 0.0), (1e30, 1.0)],
        );
        exact(
            "softplus",
            softplus,
            &[(INF, INF), (-INF, 0.0), (NAN, NAN), (1e30, 1e30)],
        );
        exact(
            "softplus",
            softplus,
            &[(0.0, std::f32::consts::LN_2), (-200.0, 0.0)],
        );
        // Never NaN for finite x.
        for x in all_bits().filter(|x| x.is_finite()) {
            assert!(!sigmoid(x).is_nan() && !softplus(x).is_nan(), "{x:e}");
        }
    }

    /// The fast logarithms and trig functions equal the full ones, bit for bit, on every
    /// lane their rare predicate lets through (every 1021st bit pattern, the values near 1
    /// that log1p's branches split on, the edges of the normal range and of the f32 trig
    /// reduction), and the predicate flags every special input.
    #[test]
    fn fast_functions_equal_the_full_ones_off_the_rare_lanes() {
        type F = fn(f32) -> f32;
        type Rare = fn(f32) -> bool;
        let pairs: [(&str, F, F, Rare); 7] = [
            ("log", log, log_fast, log_rare),
            ("log2", log2, log2_fast, log_rare),
            ("log10", log10, log10_fast, log_rare),
            ("log1p", log1p, log1p_fast, log1p_rare),
            ("sin", sin, sin_fast, trig_rare),
            ("cos", cos, cos_fast, trig_rare),
            ("tan", tan, tan_fast, trig_rare),
        ];
        let edges = [
            f32::MIN_POSITIVE,
            f32::MAX,
            1.0,
            -0.292_893_2,
            0.414_213_54,
            5.960_464_5e-8,
            -0.999_999_94,
            TRIG_FAST_BOUND,
        ];
        let xs = all_bits()
            .chain(span(1e-8, 1.0))
            .chain(edges.iter().flat_map(|&e| {
                let b = e.to_bits();
                [f32::from_bits(b - 1), e, f32::from_bits(b + 1), -e]
            }));
        let mut n = 0usize;
        for x in xs {
            for (name, full, fast, rare) in pairs {
                if !rare(x) {
                    n += 1;
                    assert_eq!(fast(x).to_bits(), full(x).to_bits(), "{name}({x:e})");
                }
            }
        }
        assert!(n > 4_000_000, "{n} lanes compared");
        for x in [
            0.0,
            -0.0,
            -1.0,
            1e-40,
            -1e-40,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
        ] {
            assert!(log_rare(x), "log_rare({x:e})");
        }
        for x in [-1.0, -2.0, 0.0, -0.0, 1e-40, 1e-8, f32::INFINITY, f32::NAN] {
            assert!(log1p_rare(x), "log1p_rare({x:e})");
        }
    }

    #[test]
    fn log_accuracy() {
        for (name, f, r) in [
            ("log", log as fn(f32) -> f32, f64::ln as fn(f64) -> f64),
            ("log2", log2, f64::log2),
            ("log10", log10, f64::log10),
        ] {
            check(name, f, r, all_bits(), 2);
            check(name, f, r, linear(0.5, 2.0), 2);
            check(name, f, r, linear(0.999, 1.001), 2);
            check(name, f, r, span(TINY, f32::MAX).filter(|x| *x > 0.0), 2);
            let special = [
                (0.0, -INF),
                (-0.0, -INF),
                (INF, INF),
                (-INF, NAN),
                (NAN, NAN),
            ];
            exact(name, f, &special);
            exact(name, f, &[(-1.0, NAN), (-TINY, NAN), (1.0, 0.0)]);
        }
        for k in -149..128 {
            let x = f32::from_bits(if k < -126 {
                1 << (k + 149)
            } else {
                ((k + 127) as u32) << 23
            });
            assert_eq!(log2(x), k as f32, "log2(2^{k})");
        }
        for k in 0..=10 {
            assert_eq!(log10(10f32.powi(k)), k as f32, "log10(1e{k})");
        }
        exact("log", log, &[(TINY, -103.278_93), (f32::MAX, 88.722_84)]);
    }

    #[test]
    fn log1p_accuracy() {
        check("log1p", log1p, f64::ln_1p, all_bits(), 2);
        check("log1p", log1p, f64::ln_1p, linear(-1.0, 1.0), 2);
        check("log1p", log1p, f64::ln_1p, linear(-1.0, -0.999), 2);
        check(
            "log1p",
            log1p,
            f64::ln_1p,
            span(TINY, 1.0).filter(|x| *x > -1.0),
            2,
        );
        check(
            "log1p",
            log1p,
            f64::ln_1p,
            span(1.0, f32::MAX).filter(|x| *x > 0.0),
            2,
        );
        let special = [
            (0.0, 0.0),
            (-0.0, -0.0),
            (-1.0, -INF),
            (INF, INF),
            (-INF, NAN),
        ];
        exact("log1p", log1p, &special);
        exact(
            "log1p",
            log1p,
            &[(NAN, NAN), (-1.000_000_1, NAN), (-2.0, NAN), (TINY, TINY)],
        );
        exact("log1p", log1p, &[(-TINY, -TINY), (1e-7, 9.999_999_5e-8)]);
    }

    /// Checks a trig function: accurate up to the bound, and above it flagged by
    /// `needs_scalar_trig` and NaN (so a forgotten fix-up is loud).
    fn trig(name: &str, f: fn(f32) -> f32, r: fn(f64) -> f64, bound: u64) {
        let below = all_bits().filter(|x| !needs_scalar_trig(*x));
        check(name, f, r, below, bound);
        check(name, f, r, linear(-10.0, 10.0), bound);
        check(name, f, r, span(TINY, TRIG_BOUND), bound);
        // The top of the f32-lane reduction's range, where its n is least accurate, and the
        // split between the two paths.
        check(name, f, r, span(65_536.0, TRIG_FAST_BOUND), bound);
        let above = f32::from_bits(TRIG_FAST_BOUND.to_bits() + 1);
        assert!(!trig_rare(TRIG_FAST_BOUND) && !trig_rare(-TRIG_FAST_BOUND) && !trig_rare(0.0));
        assert!(trig_rare(above) && trig_rare(-above) && trig_rare(INF) && trig_rare(NAN));
        // Floats nearest to multiples of pi/2 (the hardest reductions; the poles of tan).
        let near: Vec<f32> = (1..20_000)
            .flat_map(|k| {
                let c = (k as f64 * std::f64::consts::FRAC_PI_2) as f32;
                let b = c.to_bits();
                [f32::from_bits(b - 1), c, f32::from_bits(b + 1)]
            })
            .collect();
        check(name, f, r, near.iter().copied(), bound);
        // The documented boundary: exact up to 2^30 inclusive, flagged above (inf too).
        let next = f32::from_bits(TRIG_BOUND.to_bits() + 1);
        assert!(!needs_scalar_trig(TRIG_BOUND) && !needs_scalar_trig(-TRIG_BOUND));
        assert!(needs_scalar_trig(next) && needs_scalar_trig(-next) && needs_scalar_trig(INF));
        assert!(!needs_scalar_trig(NAN));
        for x in span(next, f32::MAX) {
            assert!(needs_scalar_trig(x) && f(x).is_nan(), "{name}({x:e})");
        }
        exact(name, f, &[(INF, NAN), (-INF, NAN), (NAN, NAN), (1e10, NAN)]);
        // The fix-up the module documents gives correctly rounded results there.
        let fixed = |x: f32| {
            if needs_scalar_trig(x) {
                r(x as f64) as f32
            } else {
                f(x)
            }
        };
        check(name, fixed, r, span(next, f32::MAX), 0);
    }

    #[test]
    fn sin_accuracy() {
        trig("sin", sin, f64::sin, 2);
        exact(
            "sin",
            sin,
            &[(0.0, 0.0), (-0.0, -0.0), (TINY, TINY), (-TINY, -TINY)],
        );
        exact("sin", sin, &[(1e-7, 1e-7), (-1e-20, -1e-20)]);
    }

    #[test]
    fn cos_accuracy() {
        trig("cos", cos, f64::cos, 2);
        exact(
            "cos",
            cos,
            &[(0.0, 1.0), (-0.0, 1.0), (TINY, 1.0), (1e-5, 1.0)],
        );
    }

    #[test]
    fn tan_accuracy() {
        trig("tan", tan, f64::tan, 1);
        exact(
            "tan",
            tan,
            &[(0.0, 0.0), (-0.0, -0.0), (TINY, TINY), (-TINY, -TINY)],
        );
        exact("tan", tan, &[(1e-7, 1e-7)]);
        // Nearest floats to pi/2: huge, opposite signs.
        let c = std::f32::consts::FRAC_PI_2;
        assert!(tan(c) < -2.2e7 && tan(f32::from_bits(c.to_bits() - 1)) > 1e7);
    }

    #[test]
    fn inverse_trig_accuracy() {
        for (name, f, r) in [
            ("asin", asin as fn(f32) -> f32, f64::asin as fn(f64) -> f64),
            ("acos", acos, f64::acos),
            ("atan", atan, f64::atan),
        ] {
            check(name, f, r, all_bits(), 1);
            check(name, f, r, linear(-1.0, 1.0), 1);
            check(name, f, r, span(TINY, 1.0), 1);
            exact(name, f, &[(NAN, NAN)]);
        }
        // The reflection's cancellation is worst next to |x| = 1/2; every float of the
        // reflected range [0.5, 1] at VMATH_DENSE >= 2^23.
        check("asin", asin, f64::asin, linear(0.49, 0.51), 1);
        check("acos", acos, f64::acos, linear(-0.51, -0.49), 1);
        check("acos", acos, f64::acos, linear(0.49, 0.51), 1);
        check("asin", asin, f64::asin, span(0.5, 1.0), 1);
        check("acos", acos, f64::acos, span(0.5, 1.0), 1);
        check("atan", atan, f64::atan, span(1.0, f32::MAX), 1);
        check("atan", atan, f64::atan, linear(-10.0, 10.0), 1);
        let pio2 = std::f32::consts::FRAC_PI_2;
        exact(
            "asin",
            asin,
            &[(0.0, 0.0), (-0.0, -0.0), (1.0, pio2), (-1.0, -pio2)],
        );
        exact(
            "asin",
            asin,
            &[
                (1.000_000_1, NAN),
                (-1.000_000_1, NAN),
                (INF, NAN),
                (TINY, TINY),
            ],
        );
        exact("asin", asin, &[(-TINY, -TINY), (1e-7, 1e-7)]);
        exact(
            "acos",
            acos,
            &[
                (1.0, 0.0),
                (-1.0, std::f32::consts::PI),
                (0.0, pio2),
                (-0.0, pio2),
            ],
        );
        exact(
            "acos",
            acos,
            &[(1.000_000_1, NAN), (-1.000_000_1, NAN), (-INF, NAN)],
        );
        exact(
            "atan",
            atan,
            &[
                (0.0, 0.0),
                (-0.0, -0.0),
                (INF, pio2),
                (-INF, -pio2),
                (TINY, TINY),
            ],
        );
        exact("atan", atan, &[(-TINY, -TINY), (1e-7, 1e-7), (1e30, pio2)]);
    }

    #[test]
    fn atan2_accuracy() {
        let mut rnd = lcg(1);
        let pairs: Vec<(f32, f32)> = (0..(dense() * 4))
            .map(|i| {
                let (a, b) = (rnd() as u32, rnd() as u32);
                if i % 2 == 0 {
                    (f32::from_bits(a), f32::from_bits(b))
                } else {
                    let u = |v: u32| (v as f32 / u32::MAX as f32) * 20.0 - 10.0;
                    (u(a), u(b))
                }
            })
            .collect();
        check2("atan2", atan2, f64::atan2, pairs.into_iter(), 4);
        // y/x close to the reduction boundaries and to +-1.
        let ring = (0..dense()).map(|i| {
            let t = i as f64 / dense() as f64 * std::f64::consts::TAU;
            ((3.0 * t.sin()) as f32, (3.0 * t.cos()) as f32)
        });
        check2("atan2", atan2, f64::atan2, ring, 4);
        let (pi, pio2, pio4) = (
            std::f32::consts::PI,
            std::f32::consts::FRAC_PI_2,
            std::f32::consts::FRAC_PI_4,
        );
        #[rustfmt::skip]
        exact2("atan2", atan2, &[
            (0.0, 0.0, 0.0), (-0.0, 0.0, -0.0), (0.0, -0.0, pi), (-0.0, -0.0, -pi),
            (0.0, 1.0, 0.0), (-0.0, 1.0, -0.0), (0.0, -1.0, pi), (-0.0, -1.0, -pi),
            (1.0, 0.0, pio2), (1.0, -0.0, pio2), (-1.0, 0.0, -pio2), (-1.0, -0.0, -pio2),
            (INF, INF, pio4), (-INF, INF, -pio4), (INF, -INF, 3.0 * pio4), (-INF, -INF, -3.0 * pio4),
            (1.0, INF, 0.0), (-1.0, INF, -0.0), (1.0, -INF, pi), (-1.0, -INF, -pi),
            (INF, 1.0, pio2), (-INF, 1.0, -pio2), (INF, -1.0, pio2), (-INF, -5.0, -pio2),
            (NAN, 1.0, NAN), (1.0, NAN, NAN), (NAN, NAN, NAN), (INF, NAN, NAN), (0.0, NAN, NAN),
            (1.0, 1.0, pio4), (1.0, -1.0, 3.0 * pio4), (-1.0, -1.0, -3.0 * pio4),
            (TINY, 1e30, 0.0), (-TINY, -1e30, -pi), (1e30, TINY, pio2), (TINY, TINY, pio4),
        ]);
        assert_eq!(atan2(1e-30, 1.0), 1e-30);
    }

    #[test]
    fn erf_accuracy() {
        check("erf", erf, libm::erf, all_bits(), 4);
        check("erf", erf, libm::erf, linear(-5.0, 5.0), 4);
        check("erf", erf, libm::erf, span(TINY, 10.0), 4);
        exact(
            "erf",
            erf,
            &[
                (0.0, 0.0),
                (-0.0, -0.0),
                (INF, 1.0),
                (-INF, -1.0),
                (NAN, NAN),
            ],
        );
        exact("erf", erf, &[(4.0, 1.0), (-10.0, -1.0), (-TINY, -TINY)]);
    }

    #[test]
    fn gelu_accuracy() {
        let g_erf = |x: f64| 0.5 * x * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
        let g_tanh = |x: f64| {
            let u = (2.0 / std::f64::consts::PI).sqrt() * (x + 0.044715 * x * x * x);
            x / (1.0 + (-2.0 * u).exp())
        };
        for (name, f, r) in [
            (
                "gelu_erf",
                gelu_erf as fn(f32) -> f32,
                &g_erf as &dyn Fn(f64) -> f64,
            ),
            ("gelu_tanh", gelu_tanh, &g_tanh),
        ] {
            check(name, f, r, all_bits().filter(|x| x.is_finite()), 4);
            check(name, f, r, linear(-20.0, 20.0), 4);
            check(name, f, r, span(TINY, 30.0), 4);
            exact(
                name,
                f,
                &[
                    (0.0, 0.0),
                    (-0.0, -0.0),
                    (INF, INF),
                    (-INF, -0.0),
                    (NAN, NAN),
                ],
            );
            exact(
                name,
                f,
                &[(-30.0, -0.0), (-1e30, -0.0), (30.0, 30.0), (1e30, 1e30)],
            );
            for x in all_bits().filter(|x| x.is_finite()) {
                let v = f(x);
                assert!(
                    !v.is_nan() && (x >= 0.0 || v <= 0.0),
                    "{name}({x:e}) = {v:e}"
                );
            }
        }
    }

    #[test]
    fn pow_accuracy() {
        let mut rnd = lcg(2);
        let pairs: Vec<(f32, f32)> = (0..(dense() * 4))
            .map(|i| {
                let (a, b) = (rnd() as u32, rnd() as u32);
                let unit = |v: u32| v as f32 / u32::MAX as f32;
                match i % 4 {
                    // arbitrary bit patterns
                    0 => (f32::from_bits(a), f32::from_bits(b)),
                    // moderate x and y, both signs of x, integer y often
                    1 => (unit(a) * 20.0 - 10.0, (unit(b) * 40.0 - 20.0).round()),
                    2 => (unit(a) * 10.0, unit(b) * 60.0 - 30.0),
                    // x near 1, large y: overflow and underflow edges
                    _ => (1.0 + (unit(a) - 0.5) * 0.01, (unit(b) - 0.5) * 40_000.0),
                }
            })
            .collect();
        check2("pow", pow, f64::powf, pairs.into_iter(), 4);
        // Integer powers of negative numbers, and results around the subnormal range.
        let ints =
            (0..dense()).map(|i| (-1.0 - (i % 1000) as f32 * 0.0173, (i / 1000) as f32 - 50.0));
        check2("pow", pow, f64::powf, ints, 4);
        let subn = (0..dense()).map(|i| {
            (
                0.5 + (i % 997) as f32 * 1e-4,
                126.0 + (i / 997) as f32 * 0.25,
            )
        });
        check2("pow", pow, f64::powf, subn, 4);
        #[rustfmt::skip]
        exact2("pow", pow, &[
            // pow(x, +-0) = 1 for any x, even NaN; pow(1, y) = 1 for any y, even NaN.
            (NAN, 0.0, 1.0), (NAN, -0.0, 1.0), (INF, 0.0, 1.0), (-INF, -0.0, 1.0), (0.0, 0.0, 1.0),
            (1.0, NAN, 1.0), (1.0, INF, 1.0), (1.0, -INF, 1.0), (1.0, 1e30, 1.0),
            // pow(-1, +-inf) = 1
            (-1.0, INF, 1.0), (-1.0, -INF, 1.0),
            // NaN
            (NAN, 1.0, NAN), (2.0, NAN, NAN), (-1.0, NAN, NAN), (-2.0, 0.5, NAN), (-8.0, 1.0 / 3.0, NAN),
            (-1.0, 0.5, NAN), (-TINY, 1.5, NAN),
            // pow(+-0, y)
            (0.0, -3.0, INF), (-0.0, -3.0, -INF), (0.0, -2.0, INF), (-0.0, -2.0, INF), (-0.0, -0.5, INF),
            (0.0, -INF, INF), (-0.0, -INF, INF), (0.0, 3.0, 0.0), (-0.0, 3.0, -0.0), (-0.0, 2.0, 0.0),
            (-0.0, 0.5, 0.0), (0.0, INF, 0.0), (-0.0, INF, 0.0), (-0.0, 1e30, 0.0),
            // pow(x, +-inf)
            (0.5, -INF, INF), (-0.5, -INF, INF), (2.0, -INF, 0.0), (-2.0, -INF, 0.0),
            (0.5, INF, 0.0), (-0.5, INF, 0.0), (2.0, INF, INF), (-2.0, INF, INF),
            // pow(-inf, y)
            (-INF, -3.0, -0.0), (-INF, -2.0, 0.0), (-INF, -0.5, 0.0), (-INF, 3.0, -INF), (-INF, 2.0, INF),
            (-INF, 0.5, INF),
            // pow(+inf, y)
            (INF, -1.0, 0.0), (INF, -0.5, 0.0), (INF, 0.5, INF), (INF, 3.0, INF),
            // negative base with integer exponent, exact results
            (-2.0, 3.0, -8.0), (-2.0, 2.0, 4.0), (-2.0, -1.0, -0.5), (-3.0, 16_777_215.0, -INF), (-3.0, 16_777_216.0, INF),
            (-1.0, 16_777_215.0, -1.0), (-1.0, 16_777_216.0, 1.0), (-1.0, 1e30, 1.0), (-1.0, -1e30, 1.0),
            (2.0, 0.5, std::f32::consts::SQRT_2), (4.0, 0.5, 2.0), (10.0, 10.0, 1e10),
            // overflow and underflow
            (2.0, 128.0, INF), (-2.0, 129.0, -INF), (2.0, -149.0, TINY), (2.0, -151.0, 0.0),
            (-2.0, -149.0, -TINY), (1e30, 2.0, INF), (1e-30, 2.0, 0.0), (TINY, 1.0, TINY),
            (TINY, 0.5, (TINY as f64).sqrt() as f32),
        ]);
    }
}
