//! Branch-free float16/bfloat16 <-> float32 conversions that vectorise inside a kernel loop.
//!
//! The `half` crate's scalar `to_f32`/`from_f32` detect F16C at run time on every call (a
//! branch per element that keeps loops scalar); these compute the same bits with integer
//! and float operations only, so a loop over them runs 16 lanes wide under AVX-512. Tests
//! compare them with `half` over every 16-bit pattern and a sweep of f32 inputs.

use half::{bf16, f16};

/// Exact float16 -> float32 (NaNs quieted, as the F16C instruction does).
#[inline(always)]
pub(crate) fn f16_to_f32(h: f16) -> f32 {
    let h = h.to_bits() as u32;
    let sign = (h & 0x8000) << 16;
    let em = h & 0x7fff;
    // Normal and subnormal halves: place the bits in an f32 and rescale by 2^112 (exact;
    // a subnormal half lands on an f32 subnormal first, which the multiply normalises).
    let finite = (f32::from_bits(em << 13) * f32::from_bits(0x7780_0000)).to_bits();
    let special = if em > 0x7c00 {
        0x7fc0_0000 | ((em & 0x3ff) << 13)
    } else {
        0x7f80_0000
    };
    f32::from_bits(if em >= 0x7c00 { special } else { finite } | sign)
}

/// float32 -> float16, round to nearest even; overflow to inf, NaN to a quiet NaN.
/// (F. Giesen's `float_to_half_fast3_rtne`, with its branches turned into selects.)
#[inline(always)]
pub(crate) fn f16_from_f32(x: f32) -> f16 {
    let u = x.to_bits();
    let sign = (u >> 16) & 0x8000;
    let a = u & 0x7fff_ffff;
    // Inf or NaN, or too large (>= 65520 rounds to inf).
    let big = if a > 0x7f80_0000 {
        0x7e00 | ((a >> 13) & 0x3ff)
    } else {
        0x7c00
    };
    // Subnormal or zero result: let the FPU round by adding a magic number.
    let denorm_magic = ((127 - 15) + (23 - 10) + 1) << 23;
    let sub = (f32::from_bits(a) + f32::from_bits(denorm_magic))
        .to_bits()
        .wrapping_sub(denorm_magic);
    // Normal result: rebias the exponent, round to nearest even on the dropped 13 bits.
    let odd = (a >> 13) & 1;
    let norm = (a
        .wrapping_add(((15u32.wrapping_sub(127)) << 23).wrapping_add(0xfff))
        .wrapping_add(odd))
        >> 13;
    let r = if a >= (127 + 16) << 23 {
        big
    } else if a < 113 << 23 {
        sub
    } else {
        norm
    };
    f16::from_bits((r | sign) as u16)
}

/// Exact bfloat16 -> float32.
#[inline(always)]
pub(crate) fn bf16_to_f32(h: bf16) -> f32 {
    f32::from_bits((h.to_bits() as u32) << 16)
}

/// float32 -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
#[inline(always)]
pub(crate) fn bf16_from_f32(x: f32) -> bf16 {
    let u = x.to_bits();
    let rounded = (u.wrapping_add(0x7fff + ((u >> 16) & 1)) >> 16) as u16;
    let nan = ((u >> 16) as u16) | 0x40;
    bf16::from_bits(if x.is_nan() { nan } else { rounded })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    #[test]
    fn every_half_pattern_widens_exactly() {
        for bits in 0..=u16::MAX {
            let (h, b) = (f16::from_bits(bits), bf16::from_bits(bits));
            assert!(same(f16_to_f32(h), h.to_f32()), "f16 {bits:#06x}");
            assert!(same(bf16_to_f32(b), b.to_f32()), "bf16 {bits:#06x}");
        }
    }

    #[test]
    fn narrowing_rounds_like_half() {
        let check = |x: f32| {
            let (a, b) = (f16_from_f32(x), f16::from_f32(x));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "f16({x:e}): {:#06x} vs {:#06x}",
                a.to_bits(),
                b.to_bits()
            );
            let (a, b) = (bf16_from_f32(x), bf16::from_f32(x));
            assert!(
                a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan()),
                "bf16({x:e}): {:#06x} vs {:#06x}",
                a.to_bits(),
                b.to_bits()
            );
        };
        // Every 97th f32 bit pattern, plus the halfway points around every half value.
        for bits in (0u32..=u32::MAX).step_by(97) {
            check(f32::from_bits(bits));
        }
        for bits in 0..=u16::MAX {
            let x = f16::from_bits(bits).to_f32();
            let up = f16::from_bits(bits.wrapping_add(1)).to_f32();
            if x.is_finite() && up.is_finite() {
                let mid = (x as f64 + up as f64) / 2.0;
                for m in [mid as f32, (mid as f32).next_up(), (mid as f32).next_down()] {
                    check(m);
                }
            }
        }
        for x in [
            0.0,
            -0.0,
            65504.0,
            65519.99,
            65520.0,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MAX,
            f32::MIN_POSITIVE,
            5.96e-8,
            2.98e-8,
            2.99e-8,
        ] {
            check(x);
        }
    }
}
