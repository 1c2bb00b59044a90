//! float32 `pow` of two equal-length slices with AVX-512 (`std::arch`): the f64 core of
//! [`vmath::pow`] (`vmath::pow_core`: log2 by a 16-entry table, 2^t by another) with its
//! three table lookups as register permutes (`vpermt2pd`), eight lanes a step, then
//! `vmath::pow_finish` (signs and special cases) over the block in portable code.
//!
//! The portable core is the same arithmetic in the same order (`mul_add` for every fused
//! step), so this kernel and `vmath::pow` agree bit for bit (NaN payloads aside); the test at
//! the bottom checks it. Auto-vectorised, the portable core loads its tables with gathers,
//! which this avoids. Used where both operands are contiguous and the CPU has AVX-512; the
//! broadcasting paths and other CPUs map `vmath::pow`.

use super::vmath;
use std::mem::MaybeUninit;

/// `o[i] = vmath::pow(x[i], y[i])` for every `i`; `false` (and `o` untouched) where the CPU
/// lacks AVX-512 F/DQ/VL and FMA.
pub(super) fn pow_f32(o: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        if super::simd::level() == super::simd::Level::Avx512 {
            let n = o.len().min(x.len()).min(y.len());
            // SAFETY: the CPU has the features `imp::block` is compiled for.
            unsafe { imp::block(&mut o[..n], &x[..n], &y[..n]) };
            return true;
        }
    }
    let _ = (o, x, y);
    false
}

#[cfg(target_arch = "x86_64")]
mod imp {
    use super::vmath;
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    /// A 16-entry f64 table as the two registers `vpermt2pd` indexes.
    #[inline(always)]
    unsafe fn table(t: &[u64; 16]) -> (__m512d, __m512d) {
        (
            _mm512_castsi512_pd(_mm512_loadu_si512(t.as_ptr().cast())),
            _mm512_castsi512_pd(_mm512_loadu_si512(t[8..].as_ptr().cast())),
        )
    }

    /// `vmath::pow_core(ax, y)` for eight lanes, ax = |x|.
    #[inline(always)]
    unsafe fn core8(
        ax: __m256,
        y: __m256,
        invc: (__m512d, __m512d),
        logc: (__m512d, __m512d),
        exp2: (__m512d, __m512d),
    ) -> __m256 {
        let c = _mm512_set1_pd;
        let l = vmath::POW_L;
        let e = vmath::POW_E;
        // pow_log2
        let xd = _mm512_cvtps_pd(ax);
        let ix = _mm512_castpd_si512(xd);
        let tmp = _mm512_sub_epi64(ix, _mm512_set1_epi64(vmath::POW_OFF as i64));
        let i = _mm512_srli_epi64::<48>(tmp);
        let k = _mm512_cvtepi64_pd(_mm512_srai_epi64::<52>(tmp));
        let top = _mm512_and_si512(tmp, _mm512_set1_epi64(0xFFF0_0000_0000_0000_u64 as i64));
        let z = _mm512_castsi512_pd(_mm512_sub_epi64(ix, top));
        let inv = _mm512_permutex2var_pd(invc.0, i, invc.1);
        let lc = _mm512_permutex2var_pd(logc.0, i, logc.1);
        let r = _mm512_fmadd_pd(z, inv, c(-1.0));
        let y0 = _mm512_add_pd(lc, k);
        let r2 = _mm512_mul_pd(r, r);
        let p01 = _mm512_fmadd_pd(r, c(l[1]), c(l[0]));
        let p23 = _mm512_fmadd_pd(r, c(l[3]), c(l[2]));
        let p45 = _mm512_fmadd_pd(r, c(l[5]), c(l[4]));
        let p = _mm512_fmadd_pd(r2, _mm512_fmadd_pd(r2, p45, p23), p01);
        let lg = _mm512_fmadd_pd(r, p, y0);
        let lg = _mm512_mask_blend_pd(
            _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(xd, c(0.0)),
            lg,
            c(f64::NEG_INFINITY),
        );
        let lg = _mm512_mask_blend_pd(
            _mm512_cmp_pd_mask::<_CMP_EQ_OQ>(xd, c(f64::INFINITY)),
            lg,
            c(f64::INFINITY),
        );
        let lg = _mm512_mask_blend_pd(_mm512_cmp_pd_mask::<_CMP_UNORD_Q>(xd, xd), lg, c(f64::NAN));
        // pow_exp2; vmaxpd/vminpd return their second operand when either is NaN, as the
        // portable `if t < -200 { -200 } else { t }` keeps NaN.
        let t = _mm512_mul_pd(_mm512_cvtps_pd(y), lg);
        let t = _mm512_max_pd(c(-200.0), t);
        let t = _mm512_min_pd(c(200.0), t);
        let s = _mm512_add_pd(t, c(vmath::POW_SHIFT));
        let kk = _mm512_sub_epi64(
            _mm512_castpd_si512(s),
            _mm512_set1_epi64(vmath::POW_SHIFT.to_bits() as i64),
        );
        let r = _mm512_sub_pd(t, _mm512_sub_pd(s, c(vmath::POW_SHIFT)));
        let tab = _mm512_permutex2var_pd(exp2.0, kk, exp2.1);
        let n = _mm512_slli_epi64::<52>(_mm512_srai_epi64::<4>(kk));
        let sc = _mm512_castsi512_pd(_mm512_add_epi64(_mm512_castpd_si512(tab), n));
        let r2 = _mm512_mul_pd(r, r);
        let q = _mm512_mul_pd(
            r,
            _mm512_fmadd_pd(
                r2,
                _mm512_fmadd_pd(r, c(e[3]), c(e[2])),
                _mm512_fmadd_pd(r, c(e[1]), c(e[0])),
            ),
        );
        _mm512_cvtpd_ps(_mm512_fmadd_pd(sc, q, sc))
    }

    /// The kernel: cores eight lanes a step (the tail masked), then the finish pass.
    #[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2,fma")]
    pub(super) unsafe fn block(o: &mut [MaybeUninit<f32>], x: &[f32], y: &[f32]) {
        let n = o.len();
        let (invc, logc, exp2) = (
            table(&vmath::POW_INVC),
            table(&vmath::POW_LOGC),
            table(&vmath::POW_EXP2),
        );
        let abs = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFF_FFFF));
        let op = o.as_mut_ptr().cast::<f32>();
        let mut i = 0;
        while i + 8 <= n {
            let ax = _mm256_and_ps(_mm256_loadu_ps(x.as_ptr().add(i)), abs);
            let m = core8(ax, _mm256_loadu_ps(y.as_ptr().add(i)), invc, logc, exp2);
            _mm256_storeu_ps(op.add(i), m);
            i += 8;
        }
        if i < n {
            let k: __mmask8 = (1u16 << (n - i)) as u8 - 1;
            let ax = _mm256_and_ps(_mm256_maskz_loadu_ps(k, x.as_ptr().add(i)), abs);
            let yv = _mm256_maskz_loadu_ps(k, y.as_ptr().add(i));
            _mm256_mask_storeu_ps(op.add(i), k, core8(ax, yv, invc, logc, exp2));
        }
        for ((slot, &xv), &yv) in o.iter_mut().zip(x).zip(y) {
            // SAFETY: every slot was written by the core pass above.
            let m = slot.assume_init();
            slot.write(vmath::pow_finish(xv, yv, m));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_equals_vmath_pow_bit_for_bit() {
        let mut rnd = super::super::xorshift(0x2545_F491_4F6C_DD1D);
        let specials = [
            0.0,
            -0.0,
            1.0,
            -1.0,
            2.0,
            0.5,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::NAN,
            f32::MIN_POSITIVE,
            1e-45,
            3.0,
            -3.0,
            1e30,
        ];
        let mut x = Vec::new();
        let mut y = Vec::new();
        for &a in &specials {
            for &b in &specials {
                x.push(a);
                y.push(b);
            }
        }
        for i in 0..200_000u32 {
            let (a, b) = (rnd(), rnd());
            let unit = |v: u64| (v >> 40) as f32 / (1u64 << 24) as f32;
            let (xa, yb) = match i % 4 {
                0 => (f32::from_bits(a as u32), f32::from_bits(b as u32)),
                1 => (unit(a) * 20.0 - 10.0, (unit(b) * 40.0 - 20.0).round()),
                2 => (unit(a) * 10.0, unit(b) * 300.0 - 150.0),
                _ => (1.0 + (unit(a) - 0.5) * 0.01, (unit(b) - 0.5) * 40_000.0),
            };
            x.push(xa);
            y.push(yb);
        }
        // Lengths that leave every tail length.
        for n in [x.len(), x.len() - 1, x.len() - 7, 5, 1, 0] {
            let mut o = vec![MaybeUninit::new(0.0f32); n];
            if !pow_f32(&mut o, &x[..n], &y[..n]) {
                eprintln!("no AVX-512 on this CPU: the kernel is not used here");
                return;
            }
            for i in 0..n {
                // SAFETY: written by pow_f32.
                let got = unsafe { o[i].assume_init() };
                let want = vmath::pow(x[i], y[i]);
                assert!(
                    got.to_bits() == want.to_bits() || (got.is_nan() && want.is_nan()),
                    "pow({:e}, {:e}): kernel {got:e}, vmath {want:e}",
                    x[i],
                    y[i]
                );
            }
        }
    }
}
