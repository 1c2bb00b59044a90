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
    let mut out: Vec<D> = Vec::with_capacity(n);
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

/// The hot path (float64 data entering a float32 device): written so the loop vectorises.
fn f64_to_f32(a: &ArrayD<f64>) -> (ArrayData, ConversionReport) {
    let src = contiguous(a);
    let (v, r) = convert_slices::<f64, f32>(&src, |s, o| {
        let mut r = ConversionReport {
            elements: s.len(),
            ..Default::default()
        };
        let tiny = f32::MIN_POSITIVE as f64;
        for (&x, slot) in s.iter().zip(o.iter_mut()) {
            let y = x as f32;
            slot.write(y);
            real_stats(x, y as f64, tiny, &mut r);
        }
        r
    });
    let arr =
        ArrayD::from_shape_vec(IxDyn(a.shape()), v).expect("same element count as the source");
    (ArrayData::F32(arr), r)
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
