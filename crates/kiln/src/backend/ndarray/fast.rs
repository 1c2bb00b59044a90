//! Fast paths of the ndarray engine for the layouts that dominate real work: contiguous
//! operands of one shape, and a contiguous operand with a broadcast trailing block (a bias
//! row, a scalar). They write straight into a fresh (huge-page advised) buffer in parallel
//! chunks. Every other layout takes ndarray's general `Zip`, which stays the reference:
//! tests compare the two.

use crate::hostmem::par_fill;
use ndarray::{ArrayD, IxDyn};
use std::mem::MaybeUninit;

/// Elements per parallel task (a multiple of every SIMD width).
const CHUNK: usize = 1 << 16;

/// Length of `b`'s repeating block if `b` broadcasts to `shape` as a contiguous trailing
/// block (`[1, .., 1, shape[k..]]`), else `None`.
fn trailing_block(b: &[usize], shape: &[usize]) -> Option<usize> {
    if b.len() > shape.len() {
        return None;
    }
    let mut full = vec![1; shape.len() - b.len()];
    full.extend_from_slice(b);
    let k = (0..=shape.len())
        .find(|&k| full[k..] == shape[k..] && full[..k].iter().all(|d| *d == 1))?;
    Some(shape[k..].iter().product())
}

/// `f(a, b)` elementwise into a new array of `shape`, if the layout has a fast path.
pub(super) fn binary<T, U>(
    a: &ArrayD<T>,
    b: &ArrayD<T>,
    shape: &[usize],
    f: impl Fn(T, T) -> U + Sync,
) -> Option<ArrayD<U>>
where
    T: Copy + Send + Sync,
    U: Send,
{
    let n: usize = shape.iter().product();
    let (sa, sb) = (a.as_slice()?, b.as_slice()?);
    let v = if sa.len() == n && sb.len() == n {
        par_fill(n, CHUNK, |off, o: &mut [MaybeUninit<U>]| {
            for ((slot, x), y) in o.iter_mut().zip(&sa[off..]).zip(&sb[off..]) {
                slot.write(f(*x, *y));
            }
        })
    } else if sa.len() == n {
        let l = trailing_block(b.shape(), shape)?;
        block_fill(n, l, |off, o| {
            for (ob, ab) in o.chunks_mut(l).zip(sa[off..].chunks(l)) {
                for ((slot, x), y) in ob.iter_mut().zip(ab).zip(sb) {
                    slot.write(f(*x, *y));
                }
            }
        })
    } else if sb.len() == n {
        let l = trailing_block(a.shape(), shape)?;
        block_fill(n, l, |off, o| {
            for (ob, bb) in o.chunks_mut(l).zip(sb[off..].chunks(l)) {
                for ((slot, x), y) in ob.iter_mut().zip(sa).zip(bb) {
                    slot.write(f(*x, *y));
                }
            }
        })
    } else {
        return None;
    };
    ArrayD::from_shape_vec(IxDyn(shape), v).ok()
}

/// `par_fill` with chunks that are whole multiples of the block length `l`.
fn block_fill<U: Send>(
    n: usize,
    l: usize,
    f: impl Fn(usize, &mut [MaybeUninit<U>]) + Sync,
) -> Vec<U> {
    let l = l.max(1);
    let chunk = CHUNK.div_ceil(l) * l;
    par_fill(n, chunk, f)
}

/// `f(x)` elementwise into a new array, for contiguous `a`.
pub(super) fn unary<T: Copy + Sync, U: Send>(
    a: &ArrayD<T>,
    f: impl Fn(&[T], &mut [MaybeUninit<U>]) + Sync,
) -> Option<ArrayD<U>> {
    let s = a.as_slice()?;
    let v = par_fill(s.len(), CHUNK, |off, o| f(&s[off..off + o.len()], o));
    ArrayD::from_shape_vec(a.raw_dim(), v).ok()
}

/// `exp` for float32 with a vectorisable body (Cephes' `expf` polynomial with an exact
/// power-of-two scaling), within 1 ulp of the correctly rounded result over the whole range
/// (tested against f64 `exp`), including overflow to inf, gradual underflow through the
/// subnormals to 0, NaN and +-inf. std's `expf` is a scalar libm call; this body compiles
/// to AVX-512/AVX2 code where the CPU has it (see [`exp_f32`]).
#[inline(always)]
pub(crate) fn expf(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const LN2_HI: f32 = 0.693_359_4; // 0.693359375 exactly: few bits, so n * LN2_HI is exact
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5 * 2^23: adding it rounds a float to an integer (ties to even).
    const MAGIC: f32 = 12_582_912.0;
    // clamp (unlike f32::max/min) passes NaN through unchanged.
    let xc = x.clamp(-104.0, 88.8);
    let t = xc * LOG2E + MAGIC;
    let n = t - MAGIC;
    // The integer n sits in t's low mantissa bits (bit trick: no float-to-int conversion).
    let ni = (t.to_bits() as i32).wrapping_sub(0x4B40_0000);
    let r = (xc - n * LN2_HI) - n * LN2_LO;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_6e-1;
    p = p * r + 0.5; // Cephes: 5.0000001201e-1, which rounds to 0.5 in f32
    let y = p * r * r + r + 1.0;
    // 2^n in two halves so that n in [-150, 128] never leaves the normal range.
    let n1 = ni >> 1;
    let n2 = ni.wrapping_sub(n1);
    let s1 = f32::from_bits((n1.wrapping_add(127) as u32) << 23);
    let s2 = f32::from_bits((n2.wrapping_add(127) as u32) << 23);
    y * s1 * s2
}

#[inline(always)]
fn exp_body(s: &[f32], o: &mut [MaybeUninit<f32>]) {
    for (slot, x) in o.iter_mut().zip(s) {
        slot.write(expf(*x));
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn exp_avx512(s: &[f32], o: &mut [MaybeUninit<f32>]) {
    exp_body(s, o)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn exp_avx2(s: &[f32], o: &mut [MaybeUninit<f32>]) {
    exp_body(s, o)
}

/// `exp` over a slice with the widest vector unit this CPU has.
pub(super) fn exp_f32(s: &[f32], o: &mut [MaybeUninit<f32>]) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: feature checked.
            return unsafe { exp_avx512(s, o) };
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: features checked.
            return unsafe { exp_avx2(s, o) };
        }
    }
    exp_body(s, o)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(a: f32, b: f32) -> u32 {
        if a == b || (a.is_nan() && b.is_nan()) {
            return 0;
        }
        let (x, y) = (a.to_bits() as i64, b.to_bits() as i64);
        (x - y).unsigned_abs() as u32
    }

    #[test]
    fn expf_within_one_ulp_over_the_whole_range() {
        let mut worst = (0u32, 0f32);
        // Every 61st bit pattern of the positive and negative floats (about 140M values
        // would be exhaustive; this visits 70M of them at a prime stride).
        for bits in (0u32..=u32::MAX).step_by(61) {
            let x = f32::from_bits(bits);
            let want = (x as f64).exp() as f32;
            let u = ulps(expf(x), want);
            if u > worst.0 {
                worst = (u, x);
            }
        }
        assert!(worst.0 <= 1, "worst {} ulps at {:e}", worst.0, worst.1);
        for (x, want) in [
            (f32::NAN, f32::NAN),
            (f32::INFINITY, f32::INFINITY),
            (f32::NEG_INFINITY, 0.0),
            (0.0, 1.0),
            (-0.0, 1.0),
            (88.72284, f32::INFINITY),
            (88.7228, (88.7228f32 as f64).exp() as f32),
            (-103.97, 1.4e-45),
            (-104.0, 0.0),
        ] {
            let got = expf(x);
            assert!(
                ulps(got, want) <= 1 || (got - want).abs() < 1e-45,
                "exp({x}) = {got}, want {want}"
            );
        }
    }

    #[test]
    fn the_simd_dispatch_matches_the_scalar_body() {
        let s: Vec<f32> = (0..1000).map(|i| (i as f32 - 500.0) * 0.23).collect();
        let mut a = vec![MaybeUninit::new(0f32); s.len()];
        let mut b = vec![MaybeUninit::new(0f32); s.len()];
        exp_f32(&s, &mut a);
        exp_body(&s, &mut b);
        for (x, y) in a.iter().zip(&b) {
            // SAFETY: both fully written.
            let (x, y) = unsafe { (x.assume_init(), y.assume_init()) };
            assert!(ulps(x, y) <= 1, "{x} vs {y}");
        }
    }

    #[test]
    fn trailing_blocks() {
        assert_eq!(trailing_block(&[1000], &[10, 1000]), Some(1000));
        assert_eq!(trailing_block(&[1, 3, 4], &[2, 3, 4]), Some(12));
        assert_eq!(trailing_block(&[], &[2, 3]), Some(1));
        assert_eq!(trailing_block(&[1, 1], &[2, 3]), Some(1));
        assert_eq!(trailing_block(&[3, 1], &[3, 4]), None);
        assert_eq!(trailing_block(&[2, 3], &[2, 3]), Some(6));
    }
}
