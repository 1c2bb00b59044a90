//! The loss report of a dtype conversion, computed in the same pass as the conversion.

use crate::array::{ArrayData, HostElement};
use crate::dtype::DType;
use crate::element::{cast_elem, Scalar};
use ndarray::{ArrayD, IxDyn};
use rayon::prelude::*;
use serde::Serialize;
use std::mem::MaybeUninit;

/// What a conversion did to the values.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ConversionReport {
    /// Source dtype.
    pub from: Option<DType>,
    /// Target dtype.
    pub to: Option<DType>,
    /// Elements converted (complex: each counts once; its parts are checked separately).
    pub elements: usize,
    /// Finite values that became infinite.
    pub overflowed_to_inf: usize,
    /// Nonzero values that became zero.
    pub flushed_to_zero: usize,
    /// Values that became subnormal in the target (precision is lost there).
    pub became_subnormal: usize,
    /// Integer-valued values that changed (floats beyond 2^24 for float32, 2^11 for
    /// float16; integers out of the target's range).
    pub integers_changed: usize,
    /// NaNs carried over (NaN stays NaN).
    pub nans_kept: usize,
    /// Largest absolute error over the values that stayed finite.
    pub max_abs_error: f64,
    /// Largest relative error over the nonzero values that stayed finite.
    pub max_rel_error: f64,
}

impl ConversionReport {
    /// Whether nothing was lost.
    pub fn is_exact(&self) -> bool {
        self.overflowed_to_inf == 0
            && self.flushed_to_zero == 0
            && self.integers_changed == 0
            && self.max_abs_error == 0.0
    }

    /// One line for warnings and logs.
    pub fn summary(&self) -> String {
        format!(
            "{} elements, max abs error {:.3e}, max rel error {:.3e}, {} overflowed to inf, {} flushed to zero, \
             {} subnormal, {} integer values changed, {} NaN kept",
            self.elements,
            self.max_abs_error,
            self.max_rel_error,
            self.overflowed_to_inf,
            self.flushed_to_zero,
            self.became_subnormal,
            self.integers_changed,
            self.nans_kept
        )
    }

    fn merge(mut self, o: ConversionReport) -> ConversionReport {
        self.elements += o.elements;
        self.overflowed_to_inf += o.overflowed_to_inf;
        self.flushed_to_zero += o.flushed_to_zero;
        self.became_subnormal += o.became_subnormal;
        self.integers_changed += o.integers_changed;
        self.nans_kept += o.nans_kept;
        self.max_abs_error = self.max_abs_error.max(o.max_abs_error);
        self.max_rel_error = self.max_rel_error.max(o.max_rel_error);
        self
    }
}

const CHUNK: usize = 1 << 16;
/// 2^52: adding and subtracting it rounds a smaller non-negative f64 to an integer.
const TWO52: f64 = 4503599627370496.0;

fn min_normal(d: DType) -> f64 {
    match d.real_dtype() {
        DType::Float16 => 6.103515625e-05,
        DType::BFloat16 | DType::Float32 => f32::MIN_POSITIVE as f64,
        _ => f64::MIN_POSITIVE,
    }
}

#[inline(always)]
fn real_stats(x: f64, y: f64, tiny: f64, r: &mut ConversionReport) {
    let ax = x.abs();
    let ay = y.abs();
    let yfin = y.is_finite();
    r.nans_kept += x.is_nan() as usize;
    r.overflowed_to_inf += (x.is_finite() & !yfin) as usize;
    r.flushed_to_zero += ((y == 0.0) & (x != 0.0)) as usize;
    r.became_subnormal += ((ay < tiny) & (y != 0.0)) as usize;
    let is_int = ax >= TWO52 || (ax + TWO52) - TWO52 == ax;
    r.integers_changed += (is_int & x.is_finite() & yfin & (x != y)) as usize;
    let err = if yfin { (x - y).abs() } else { 0.0 };
    r.max_abs_error = r.max_abs_error.max(err);
    r.max_rel_error = r.max_rel_error.max(if ax > 0.0 { err / ax } else { 0.0 });
}

/// Fills `out` from `src` with `f`, in parallel chunks, each chunk also producing a report.
fn convert_slices<S: Sync, D: Send>(
    src: &[S],
    f: impl Fn(&[S], &mut [MaybeUninit<D>]) -> ConversionReport + Sync,
) -> (Vec<D>, ConversionReport) {
    let n = src.len();
    let mut out: Vec<D> = crate::hostmem::alloc_uninit(n);
    let report = out.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .map(|(o, s)| f(s, o))
        .reduce(ConversionReport::default, ConversionReport::merge);
    // SAFETY: every chunk of the first n slots was written by `f` (the zip covers all of
    // them and each `f` writes its whole output chunk).
    unsafe { out.set_len(n) };
    (out, report)
}

fn contiguous<T: Clone>(a: &ArrayD<T>) -> std::borrow::Cow<'_, [T]> {
    match a.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(a.iter().cloned().collect()),
    }
}

fn generic<S: HostElement, D: HostElement>(a: &ArrayD<S>) -> (ArrayData, ConversionReport) {
    let tiny = min_normal(D::DTYPE);
    let src = contiguous(a);
    let (v, r) = convert_slices::<S, D>(&src, |s, o| {
        let mut r = ConversionReport::default();
        for (x, slot) in s.iter().zip(o.iter_mut()) {
            let y: D = cast_elem(*x);
            slot.write(y);
            match (x.to_scalar(), y.to_scalar()) {
                (Scalar::Complex(a), Scalar::Complex(b)) => {
                    real_stats(a.re, b.re, tiny, &mut r);
                    real_stats(a.im, b.im, tiny, &mut r);
                    // A NaN complex counts once.
                    if a.re.is_nan() && a.im.is_nan() {
                        r.nans_kept -= 1;
                    }
                }
                (Scalar::Float(a), Scalar::Float(b)) => real_stats(a, b, tiny, &mut r),
                (xa, yb) => {
                    let (xa, yb) = (as_i128(xa), as_i128(yb));
                    if xa != yb {
                        r.integers_changed += 1;
                        let err = (xa.unwrap_or(0) - yb.unwrap_or(0)).unsigned_abs() as f64;
                        r.max_abs_error = r.max_abs_error.max(err);
                        if let Some(x) = xa.filter(|x| *x != 0) {
                            r.max_rel_error = r.max_rel_error.max(err / x.unsigned_abs() as f64);
                        }
                    }
                }
            }
            r.elements += 1;
        }
        r
    });
    let arr =
        ArrayD::from_shape_vec(IxDyn(a.shape()), v).expect("same element count as the source");
    (D::wrap(arr), r)
}

fn as_i128(s: Scalar) -> Option<i128> {
    match s {
        Scalar::Bool(b) => Some(b as i128),
        Scalar::Int(i) => Some(i as i128),
        Scalar::UInt(u) => Some(u as i128),
        _ => None,
    }
}

/// One chunk of the hot path (float64 data entering a float32 device): the fastest kernel
/// this CPU has. All three give identical reports.
fn f64_to_f32_chunk(s: &[f64], o: &mut [MaybeUninit<f32>]) -> ConversionReport {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU supports AVX-512F (checked just above).
            return unsafe { simd::f64_to_f32_avx512(s, o) };
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2 (checked just above).
            return unsafe { simd::f64_to_f32_avx2(s, o) };
        }
    }
    f64_to_f32_scalar(s, o)
}

/// The reference kernel: every element through [`real_stats`].
fn f64_to_f32_scalar(s: &[f64], o: &mut [MaybeUninit<f32>]) -> ConversionReport {
    let mut r = ConversionReport::default();
    let tiny = f32::MIN_POSITIVE as f64;
    for (&x, slot) in s.iter().zip(o.iter_mut()) {
        let y = x as f32;
        slot.write(y);
        real_stats(x, y as f64, tiny, &mut r);
    }
    r.elements = s.len();
    r
}

/// SIMD kernels. Lanes whose result is a normal, finite float32 and that are not integers
/// beyond 2^24 (the common case) only feed the two error maxima; any other lane (NaN, inf,
/// overflow, flush to zero, subnormal, large integer) sends its group of lanes through the
/// scalar [`real_stats`], so the counts are exactly the reference kernel's.
#[cfg(target_arch = "x86_64")]
mod simd {
    use super::{real_stats, ConversionReport};
    use std::arch::x86_64::*;
    use std::mem::MaybeUninit;

    const TINY: f64 = f32::MIN_POSITIVE as f64;
    const EXACT_INT: f64 = 16777216.0; // 2^24: every integer up to here is exact in f32

    fn slow_lanes(s: &[f64], r: &mut ConversionReport) {
        for &x in s {
            real_stats(x, x as f32 as f64, TINY, r);
        }
    }

    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn f64_to_f32_avx512(
        s: &[f64],
        o: &mut [MaybeUninit<f32>],
    ) -> ConversionReport {
        let n = s.len().min(o.len()) / 8 * 8;
        let inf = _mm512_set1_pd(f64::INFINITY);
        let tiny = _mm512_set1_pd(TINY);
        let big = _mm512_set1_pd(EXACT_INT);
        let (mut mabs, mut mrel) = (_mm512_setzero_pd(), _mm512_setzero_pd());
        let mut r = ConversionReport::default();
        let mut i = 0;
        while i < n {
            // SAFETY: i + 8 <= n <= both lengths; unaligned loads/stores.
            let x = _mm512_loadu_pd(s.as_ptr().add(i));
            let y8 = _mm512_cvtpd_ps(x);
            _mm256_storeu_ps(o.as_mut_ptr().add(i) as *mut f32, y8);
            let y = _mm512_cvtps_pd(y8);
            let ax = _mm512_abs_pd(x);
            let ay = _mm512_abs_pd(y);
            let normal =
                _mm512_cmp_pd_mask(ay, tiny, _CMP_GE_OQ) & _mm512_cmp_pd_mask(ay, inf, _CMP_LT_OQ);
            let bigint =
                _mm512_cmp_pd_mask(ax, big, _CMP_GT_OQ) & _mm512_cmp_pd_mask(x, y, _CMP_NEQ_UQ);
            if normal == 0xff && bigint == 0 {
                let err = _mm512_abs_pd(_mm512_sub_pd(x, y));
                mabs = _mm512_max_pd(mabs, err);
                mrel = _mm512_max_pd(mrel, _mm512_div_pd(err, ax));
            } else {
                slow_lanes(&s[i..i + 8], &mut r);
            }
            i += 8;
        }
        r.max_abs_error = r.max_abs_error.max(_mm512_reduce_max_pd(mabs));
        r.max_rel_error = r.max_rel_error.max(_mm512_reduce_max_pd(mrel));
        for j in n..s.len() {
            o[j].write(s[j] as f32);
        }
        slow_lanes(&s[n..], &mut r);
        r.elements = s.len();
        r
    }

    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn f64_to_f32_avx2(
        s: &[f64],
        o: &mut [MaybeUninit<f32>],
    ) -> ConversionReport {
        let n = s.len().min(o.len()) / 4 * 4;
        let sign = _mm256_set1_pd(-0.0);
        let inf = _mm256_set1_pd(f64::INFINITY);
        let tiny = _mm256_set1_pd(TINY);
        let big = _mm256_set1_pd(EXACT_INT);
        let (mut mabs, mut mrel) = (_mm256_setzero_pd(), _mm256_setzero_pd());
        let mut r = ConversionReport::default();
        let mut i = 0;
        while i < n {
            // SAFETY: i + 4 <= n <= both lengths; unaligned loads/stores.
            let x = _mm256_loadu_pd(s.as_ptr().add(i));
            let y4 = _mm256_cvtpd_ps(x);
            _mm_storeu_ps(o.as_mut_ptr().add(i) as *mut f32, y4);
            let y = _mm256_cvtps_pd(y4);
            let ax = _mm256_andnot_pd(sign, x);
            let ay = _mm256_andnot_pd(sign, y);
            let normal = _mm256_and_pd(
                _mm256_cmp_pd(ay, tiny, _CMP_GE_OQ),
                _mm256_cmp_pd(ay, inf, _CMP_LT_OQ),
            );
            let bigint = _mm256_and_pd(
                _mm256_cmp_pd(ax, big, _CMP_GT_OQ),
                _mm256_cmp_pd(x, y, _CMP_NEQ_UQ),
            );
            if _mm256_movemask_pd(normal) == 0xf && _mm256_movemask_pd(bigint) == 0 {
                let err = _mm256_andnot_pd(sign, _mm256_sub_pd(x, y));
                mabs = _mm256_max_pd(mabs, err);
                mrel = _mm256_max_pd(mrel, _mm256_div_pd(err, ax));
            } else {
                slow_lanes(&s[i..i + 4], &mut r);
            }
            i += 4;
        }
        let mut lanes = [0f64; 4];
        _mm256_storeu_pd(lanes.as_mut_ptr(), mabs);
        r.max_abs_error = lanes.iter().fold(r.max_abs_error, |m, v| m.max(*v));
        _mm256_storeu_pd(lanes.as_mut_ptr(), mrel);
        r.max_rel_error = lanes.iter().fold(r.max_rel_error, |m, v| m.max(*v));
        for j in n..s.len() {
            o[j].write(s[j] as f32);
        }
        slow_lanes(&s[n..], &mut r);
        r.elements = s.len();
        r
    }
}

fn f64_to_f32(a: &ArrayD<f64>) -> (ArrayData, ConversionReport) {
    let src = contiguous(a);
    let (v, r) = convert_slices::<f64, f32>(&src, f64_to_f32_chunk);
    let arr =
        ArrayD::from_shape_vec(IxDyn(a.shape()), v).expect("same element count as the source");
    (ArrayData::F32(arr), r)
}

/// Converts float64 values into a ready float32 buffer, reporting what was lost, in one
/// parallel pass (the slice form of [`convert_with_report`], for callers that reuse
/// buffers).
///
/// ```
/// let src = [1.0f64, 0.1, 1e300];
/// let mut out = [0f32; 3];
/// let r = kiln::precision::report::convert_f64_to_f32_into(&src, &mut out).unwrap();
/// assert_eq!(r.overflowed_to_inf, 1);
/// assert_eq!(out[0], 1.0);
/// ```
pub fn convert_f64_to_f32_into(
    src: &[f64],
    out: &mut [f32],
) -> crate::error::Result<ConversionReport> {
    if src.len() != out.len() {
        return Err(crate::error::KilnError::shape(
            "convert_f64_to_f32_into",
            &[src.len()],
            &[out.len()],
            "source and output must have the same length",
        ));
    }
    // SAFETY: `f32` and `MaybeUninit<f32>` have the same layout, and every kernel only
    // writes initialised values.
    let o: &mut [MaybeUninit<f32>] =
        unsafe { &mut *(out as *mut [f32] as *mut [MaybeUninit<f32>]) };
    let mut r = o
        .par_chunks_mut(CHUNK)
        .zip(src.par_chunks(CHUNK))
        .map(|(o, s)| f64_to_f32_chunk(s, o))
        .reduce(ConversionReport::default, ConversionReport::merge);
    r.from = Some(DType::Float64);
    r.to = Some(DType::Float32);
    Ok(r)
}

/// The first value of `src` that `converted` does not hold exactly, printed (for errors
/// about integers that would change).
pub(crate) fn first_changed(src: &ArrayData, converted: &ArrayData) -> String {
    src.to_scalars()
        .into_iter()
        .zip(converted.to_scalars())
        .find(|(a, b)| Scalar::Float(a.as_f64()) != Scalar::Float(b.as_f64()))
        .map(|(a, _)| a.to_string())
        .unwrap_or_default()
}

/// Converts host data to `to`, reporting what was lost, in one pass.
///
/// ```
/// use kiln::{ArrayData, DType};
/// let a = ArrayData::from(vec![1.0f64, 1e-50, 1e40, 16777217.0, f64::NAN]);
/// let (b, r) = kiln::precision::report::convert_with_report(&a, DType::Float32);
/// assert_eq!(b.dtype(), DType::Float32);
/// assert_eq!((r.flushed_to_zero, r.overflowed_to_inf, r.integers_changed, r.nans_kept), (1, 1, 1, 1));
/// ```
pub fn convert_with_report(src: &ArrayData, to: DType) -> (ArrayData, ConversionReport) {
    let (data, mut r) = match src {
        ArrayData::F64(a) if to == DType::Float32 => f64_to_f32(a),
        _ => crate::with_array!(src, a, S => crate::with_dtype!(to, D => generic::<S, D>(a))),
    };
    r.from = Some(src.dtype());
    r.to = Some(to);
    (data, r)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The SIMD kernels must report exactly what the scalar reference reports.
    #[test]
    fn simd_kernels_agree_with_the_reference() {
        let mut v: Vec<f64> = (0..5003)
            .map(|i| ((i as f64) * 0.618_033_988_749_895).fract() * 2e3 - 1e3)
            .collect();
        let specials = [
            f64::NAN,
            f64::INFINITY,
            -f64::INFINITY,
            0.0,
            -0.0,
            1e-40,
            -1e-44,
            1e-50,
            3.5e38,
            -1e39,
            16777217.0,
            -33554433.0,
            1e17,
            2.0f64.powi(60) + 1.0,
            f64::MIN_POSITIVE,
            123456789.0,
            0.1,
        ];
        for (k, x) in specials.iter().enumerate() {
            v[k * 97 + 3] = *x;
        }
        let mut o_ref = vec![MaybeUninit::new(0f32); v.len()];
        let want = f64_to_f32_scalar(&v, &mut o_ref);
        let got = {
            let mut o = vec![MaybeUninit::new(0f32); v.len()];
            let r = f64_to_f32_chunk(&v, &mut o);
            for (a, b) in o.iter().zip(&o_ref) {
                // SAFETY: both fully written by the kernels.
                let (a, b) = unsafe { (a.assume_init(), b.assume_init()) };
                assert!(a == b || (a.is_nan() && b.is_nan()));
            }
            r
        };
        assert_eq!(got, want);
        #[cfg(target_arch = "x86_64")]
        {
            let mut o = vec![MaybeUninit::new(0f32); v.len()];
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: feature checked.
                assert_eq!(unsafe { simd::f64_to_f32_avx2(&v, &mut o) }, want, "avx2");
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: feature checked.
                assert_eq!(
                    unsafe { simd::f64_to_f32_avx512(&v, &mut o) },
                    want,
                    "avx512"
                );
            }
        }
        assert_eq!(want.nans_kept, 1);
        assert_eq!(want.overflowed_to_inf, 2); // 3.5e38 and -1e39
        assert!(
            want.flushed_to_zero >= 1 && want.became_subnormal >= 2 && want.integers_changed >= 4,
            "{want:?}"
        );
        let mut out = vec![0f32; v.len()];
        let mut r = convert_f64_to_f32_into(&v, &mut out).unwrap();
        r.from = None;
        r.to = None;
        assert_eq!(r, want);
    }
}
