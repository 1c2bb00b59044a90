//! Layout kernels of the ndarray engine: strided copies (slices, flips, broadcasts), the
//! cache-blocked permute, concatenation, gathers, padding and sorting. Every output is
//! fallibly allocated and written in C order.

use super::elementwise::{shaped, CHUNK};
use super::simd;
use super::sort_avx512::NETWORK_MAX;
use crate::element::Element;
use crate::error::{KilnError, Result};
// Reductions and copies are memory-bound: they split across threads from PAR_MIN_MEM.
use crate::hostmem::{alloc_for, PAR_MIN_MEM};
use half::{bf16, f16};
use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};
use rayon::prelude::*;

/// Copies any view (negative, zero or large strides) into a new C-order array, one
/// innermost row at a time (a memcpy where the row is contiguous, a fill where it is a
/// broadcast).
pub(super) fn strided_copy<T: Element>(v: &ArrayViewD<'_, T>, op: &str) -> Result<ArrayD<T>> {
    let n = v.len();
    let mut out = alloc_for::<T>(n, op, v.shape())?;
    if let Some(s) = v.as_slice() {
        out.extend_from_slice(s);
    } else if v.ndim() == 0 {
        out.extend(v.iter().copied());
    } else {
        for row in v.rows() {
            match row.as_slice() {
                Some(s) => out.extend_from_slice(s),
                None if row.strides()[0] == 0 && !row.is_empty() => {
                    out.extend(std::iter::repeat_n(row[0], row.len()))
                }
                None if row.strides()[0] == -1 && !row.is_empty() => {
                    // A reversed row (a flip): the same memory read backwards.
                    let len = row.len();
                    // SAFETY: a view of `len` elements with stride -1 starting at `as_ptr()`
                    // covers exactly [as_ptr() - (len - 1), as_ptr()].
                    let s = unsafe { std::slice::from_raw_parts(row.as_ptr().sub(len - 1), len) };
                    out.extend(s.iter().rev().copied());
                }
                None => out.extend(row.iter().copied()),
            }
        }
    }
    shaped(v.shape(), out)
}

/// `triu` (`upper`) or `tril` of the last two axes about diagonal `k`, in one pass: row `i`
/// of each matrix keeps columns `j` with `j - i >= k` (upper) or `j - i <= k` (lower), so
/// each row is a zero run and a copied run split at one column. (NumPy builds an `[m, n]`
/// bool mask and runs `where`: three streams where this reads and writes once.)
pub(super) fn triangle<T: Element>(
    v: &ArrayViewD<'_, T>,
    k: isize,
    upper: bool,
) -> Result<ArrayD<T>> {
    let op = if upper { "triu" } else { "tril" };
    let nd = v.ndim();
    let (m, n) = (v.shape()[nd - 2], v.shape()[nd - 1]);
    let mut out = alloc_for::<T>(v.len(), op, v.shape())?;
    for (r, row) in v.rows().into_iter().enumerate() {
        // Rows come in C order, so r % m is the row within its matrix (m > 0 here).
        let i = (r % m) as isize;
        let split = i
            .saturating_add(k)
            .saturating_add(if upper { 0 } else { 1 });
        let split = split.clamp(0, n as isize) as usize;
        if upper {
            out.extend(std::iter::repeat_n(T::zero(), split));
            extend_row(&mut out, &row.slice(ndarray::s![split..]));
        } else {
            extend_row(&mut out, &row.slice(ndarray::s![..split]));
            out.extend(std::iter::repeat_n(T::zero(), n - split));
        }
    }
    shaped(v.shape(), out)
}

fn extend_row<T: Element>(out: &mut Vec<T>, row: &ndarray::ArrayView1<'_, T>) {
    match row.as_slice() {
        Some(s) => out.extend_from_slice(s),
        None => out.extend(row.iter().copied()),
    }
}

/// The output dims `(len, input stride)` of a permuted C-order array, with size-1 dims
/// dropped and dims that stay adjacent in the input merged.
fn coalesce(shape: &[usize], strides: &[isize]) -> Vec<(usize, usize)> {
    let mut v: Vec<(usize, usize)> = Vec::new();
    for (&d, &s) in shape.iter().zip(strides) {
        if d == 1 {
            continue;
        }
        let s = s as usize;
        match v.last_mut() {
            Some((pd, ps)) if *ps == s * d => {
                *pd *= d;
                *ps = s;
            }
            _ => v.push((d, s)),
        }
    }
    v
}

/// Tile edge of the blocked transpose (a 32x32 tile of f32 is 4 KiB: source and
/// destination tiles both stay in L1).
const TILE: usize = 32;

/// `axes` permutation of a C-order view into a new C-order array. Where the innermost
/// output axis is not the innermost input axis, the copy runs in TILE x TILE blocks so
/// that reads and writes both stay in cache (a naive strided copy misses on every read).
pub(super) fn permute<T: Element>(a: &ArrayViewD<'_, T>, axes: &[usize]) -> Result<ArrayD<T>> {
    let p = a.clone().permuted_axes(IxDyn(axes));
    let Some(x) = a.as_slice() else {
        return strided_copy(&p, "transpose");
    };
    let dims = coalesce(p.shape(), p.strides());
    let n = x.len();
    let out_shape = p.shape().to_vec();
    // Innermost output dim contiguous in the input (or nothing to transpose): row copies.
    let contiguous_rows = dims.last().is_none_or(|&(_, s)| s == 1);
    let Some(pi) = dims.iter().position(|&(_, s)| s == 1) else {
        return strided_copy(&p, "transpose");
    };
    if contiguous_rows || n < 64 {
        return strided_copy(&p, "transpose");
    }
    let last = dims.len() - 1;
    let (lp, ll) = (dims[pi].0, dims[last].0);
    let sl = dims[last].1;
    // C-order strides of the output over the coalesced dims.
    let mut os = vec![0usize; dims.len()];
    let mut acc = 1;
    for i in (0..dims.len()).rev() {
        os[i] = acc;
        acc *= dims[i].0;
    }
    // Every index of the dims other than pi and last: (input base, output base).
    let mut bases = vec![(0usize, 0usize)];
    for (i, &(d, s)) in dims.iter().enumerate() {
        if i == pi || i == last {
            continue;
        }
        let osi = os[i];
        bases = bases
            .iter()
            .flat_map(|&(bi, bo)| (0..d).map(move |k| (bi + k * s, bo + k * osi)))
            .collect();
    }
    let osp = os[pi];
    let mut out = alloc_for::<T>(n, "transpose", &out_shape)?;
    let dst = out.spare_capacity_mut().as_mut_ptr() as usize;
    // The register-blocked kernel for this element size, if the CPU has one.
    let block = transpose_kernel::<T>();
    // One task: the tile row `ta` (TILE values of the input-contiguous dim) of one base.
    let tile_row = |&(bi, bo): &(usize, usize), ta: usize| {
        let a1 = (ta + TILE).min(lp);
        let mut tb = 0;
        while tb < ll {
            let b1 = (tb + TILE).min(ll);
            let mut ai = ta;
            if let Some((k, kern)) = block {
                // Full k x k blocks: src rows along b (stride sl), dst rows along a (stride
                // osp).
                while ai + k <= a1 {
                    let mut bj = tb;
                    while bj + k <= b1 {
                        // SAFETY: the k x k block at (ai, bj) lies inside both arrays: source
                        // elements bi + (ai..ai+k) + (bj..bj+k) * sl index `x` (in range as
                        // in the scalar loop below), destination elements
                        // bo + (ai..ai+k) * osp + (bj..bj+k) are output slots this task alone
                        // writes.
                        unsafe {
                            kern(
                                x.as_ptr().add(bi + ai + bj * sl) as *const u8,
                                sl,
                                (dst as *mut T).add(bo + ai * osp + bj) as *mut u8,
                                osp,
                            )
                        };
                        bj += k;
                    }
                    for a in ai..ai + k {
                        let o = bo + a * osp;
                        for b in bj..b1 {
                            // SAFETY: as below.
                            unsafe { (dst as *mut T).add(o + b).write(x[bi + a + b * sl]) };
                        }
                    }
                    ai += k;
                }
            }
            for a in ai..a1 {
                let o = bo + a * osp;
                for b in tb..b1 {
                    // SAFETY: o + b < n: the output index of (.., a, .., b) in C order of
                    // the output shape; every (base, a, b) is written exactly once by
                    // exactly one task, so the writes never overlap.
                    unsafe { (dst as *mut T).add(o + b).write(x[bi + a + b * sl]) };
                }
            }
            tb = b1;
        }
    };
    let tasks: Vec<(usize, usize)> = bases
        .iter()
        .enumerate()
        .flat_map(|(i, _)| (0..lp).step_by(TILE).map(move |ta| (i, ta)))
        .collect();
    if n >= PAR_MIN_MEM {
        crate::hostmem::par_each(tasks, |_, (i, ta)| simd::run(|| tile_row(&bases[i], ta)));
    } else {
        simd::run(|| {
            for &(i, ta) in &tasks {
                tile_row(&bases[i], ta)
            }
        });
    }
    // SAFETY: the tasks cover every (base, ai, bj), i.e. all n output slots.
    unsafe { out.set_len(n) };
    shaped(&out_shape, out)
}

/// A k x k block transpose for elements of `T`'s size: `dst[a * ds + b] = src[b * ss + a]`
/// for a, b < k (strides in elements). Block transposes move bits only, so one kernel per
/// element size serves every dtype of that size.
type BlockKernel = unsafe fn(*const u8, usize, *mut u8, usize);

fn transpose_kernel<T>() -> Option<(usize, BlockKernel)> {
    #[cfg(target_arch = "x86_64")]
    {
        // SSE2 is part of x86_64.
        if std::mem::size_of::<T>() == 2 {
            return Some((8, t8x8_16 as BlockKernel));
        }
        if super::simd::level() != super::simd::Level::Baseline {
            match std::mem::size_of::<T>() {
                4 => return Some((8, t8x8_32 as BlockKernel)),
                8 => return Some((4, t4x4_64 as BlockKernel)),
                _ => {}
            }
        }
    }
    None
}

/// 8 x 8 transpose of 4-byte elements in AVX registers (unpack, shuffle, lane permute).
///
/// # Safety
/// The CPU has AVX2; `src` is readable for 8 rows of 8 elements at stride `ss`, `dst`
/// writable for 8 rows of 8 at stride `ds` (strides in 4-byte elements).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn t8x8_32(src: *const u8, ss: usize, dst: *mut u8, ds: usize) {
    use std::arch::x86_64::*;
    let (s, d) = (src as *const f32, dst as *mut f32);
    // SAFETY (whole body): the caller's contract covers every load and store.
    unsafe {
        let r: [__m256; 8] = std::array::from_fn(|i| _mm256_loadu_ps(s.add(i * ss)));
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let u0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let u1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let u3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let u4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let u5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let u7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        let lo = [u0, u1, u2, u3];
        let hi = [u4, u5, u6, u7];
        for i in 0..4 {
            _mm256_storeu_ps(d.add(i * ds), _mm256_permute2f128_ps::<0x20>(lo[i], hi[i]));
            _mm256_storeu_ps(
                d.add((i + 4) * ds),
                _mm256_permute2f128_ps::<0x31>(lo[i], hi[i]),
            );
        }
    }
}

/// 8 x 8 transpose of 2-byte elements (float16, bfloat16, int16) in SSE2 registers: three
/// rounds of unpacks, 16-, 32- and 64-bit. Element by element these transposes ran at 0.25x
/// NumPy for float16 [256, 784].
///
/// # Safety
/// `src` is readable for 8 rows of 8 elements at stride `ss`, `dst` writable for 8 rows of 8
/// at stride `ds` (strides in 2-byte elements).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse2")]
unsafe fn t8x8_16(src: *const u8, ss: usize, dst: *mut u8, ds: usize) {
    use std::arch::x86_64::*;
    let (s, d) = (src as *const u16, dst as *mut u16);
    // SAFETY (whole body): the caller's contract covers every load and store.
    unsafe {
        let r: [__m128i; 8] =
            std::array::from_fn(|i| _mm_loadu_si128(s.add(i * ss) as *const __m128i));
        // b: pairs of rows interleaved by element; c: by pairs; d: by quads (whole columns).
        let b = [
            _mm_unpacklo_epi16(r[0], r[1]),
            _mm_unpackhi_epi16(r[0], r[1]),
            _mm_unpacklo_epi16(r[2], r[3]),
            _mm_unpackhi_epi16(r[2], r[3]),
            _mm_unpacklo_epi16(r[4], r[5]),
            _mm_unpackhi_epi16(r[4], r[5]),
            _mm_unpacklo_epi16(r[6], r[7]),
            _mm_unpackhi_epi16(r[6], r[7]),
        ];
        let c = [
            _mm_unpacklo_epi32(b[0], b[2]),
            _mm_unpackhi_epi32(b[0], b[2]),
            _mm_unpacklo_epi32(b[1], b[3]),
            _mm_unpackhi_epi32(b[1], b[3]),
            _mm_unpacklo_epi32(b[4], b[6]),
            _mm_unpackhi_epi32(b[4], b[6]),
            _mm_unpacklo_epi32(b[5], b[7]),
            _mm_unpackhi_epi32(b[5], b[7]),
        ];
        for i in 0..4 {
            let (lo, hi) = (c[i], c[i + 4]);
            _mm_storeu_si128(
                d.add(2 * i * ds) as *mut __m128i,
                _mm_unpacklo_epi64(lo, hi),
            );
            _mm_storeu_si128(
                d.add((2 * i + 1) * ds) as *mut __m128i,
                _mm_unpackhi_epi64(lo, hi),
            );
        }
    }
}

/// 4 x 4 transpose of 8-byte elements in AVX registers.
///
/// # Safety
/// As [`t8x8_32`], for 4 rows of 4 8-byte elements.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn t4x4_64(src: *const u8, ss: usize, dst: *mut u8, ds: usize) {
    use std::arch::x86_64::*;
    let (s, d) = (src as *const f64, dst as *mut f64);
    // SAFETY (whole body): the caller's contract covers every load and store.
    unsafe {
        let r0 = _mm256_loadu_pd(s);
        let r1 = _mm256_loadu_pd(s.add(ss));
        let r2 = _mm256_loadu_pd(s.add(2 * ss));
        let r3 = _mm256_loadu_pd(s.add(3 * ss));
        let t0 = _mm256_unpacklo_pd(r0, r1);
        let t1 = _mm256_unpackhi_pd(r0, r1);
        let t2 = _mm256_unpacklo_pd(r2, r3);
        let t3 = _mm256_unpackhi_pd(r2, r3);
        _mm256_storeu_pd(d, _mm256_permute2f128_pd::<0x20>(t0, t2));
        _mm256_storeu_pd(d.add(ds), _mm256_permute2f128_pd::<0x20>(t1, t3));
        _mm256_storeu_pd(d.add(2 * ds), _mm256_permute2f128_pd::<0x31>(t0, t2));
        _mm256_storeu_pd(d.add(3 * ds), _mm256_permute2f128_pd::<0x31>(t1, t3));
    }
}

/// Concatenation along `axis` of C-order views that agree off-axis.
pub(super) fn concat<T: Element>(parts: &[ArrayViewD<'_, T>], axis: usize) -> Result<ArrayD<T>> {
    let first = parts
        .first()
        .ok_or_else(|| KilnError::invalid("concatenate", "needs at least one tensor"))?;
    let nd = first.ndim();
    let mut shape = first.shape().to_vec();
    if axis >= nd {
        return Err(KilnError::invalid(
            "concatenate",
            format!("axis {axis} out of range for {nd} axes"),
        ));
    }
    shape[axis] = 0;
    for p in parts {
        let ok = p.ndim() == nd && (0..nd).all(|i| i == axis || p.shape()[i] == first.shape()[i]);
        if !ok {
            return Err(KilnError::shape(
                "concatenate",
                first.shape(),
                p.shape(),
                "shapes must agree except along the axis",
            ));
        }
        shape[axis] += p.shape()[axis];
    }
    let n: usize = shape.iter().product();
    let outer: usize = shape[..axis].iter().product();
    let slices: Vec<std::borrow::Cow<'_, [T]>> = parts
        .iter()
        .map(|p| match p.as_slice() {
            Some(s) => s.into(),
            None => p.iter().copied().collect::<Vec<_>>().into(),
        })
        .collect();
    let blocks: Vec<usize> = parts.iter().map(|p| p.len() / outer.max(1)).collect();
    let row: usize = blocks.iter().sum();
    // Output rows (one per outer index) in parallel chunks, each row the parts' blocks.
    let out = crate::hostmem::par_fill(
        n,
        (CHUNK / row.max(1)).max(1) * row.max(1),
        row.max(1),
        "concatenate",
        &shape,
        |off, o| {
            let first = off / row.max(1);
            for (i, orow) in o.chunks_mut(row.max(1)).enumerate() {
                let oi = first + i;
                let mut c = 0;
                for (s, &b) in slices.iter().zip(&blocks) {
                    for (d, v) in orow[c..c + b].iter_mut().zip(&s[oi * b..(oi + 1) * b]) {
                        d.write(*v);
                    }
                    c += b;
                }
            }
        },
    )?;
    shaped(&shape, out)
}

/// Rows `indices` (in range) along `axis`.
pub(super) fn index_select<T: Element>(
    a: &ArrayViewD<'_, T>,
    indices: &[usize],
    axis: usize,
) -> Result<ArrayD<T>> {
    let shape = a.shape();
    let len = shape[axis];
    if let Some(&bad) = indices.iter().find(|&&i| i >= len) {
        return Err(KilnError::invalid(
            "take",
            format!("index {bad} is out of bounds for an axis of size {len}"),
        ));
    }
    let mut oshape = shape.to_vec();
    oshape[axis] = indices.len();
    let n = crate::array::checked_numel(&oshape, "take")?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let x: std::borrow::Cow<'_, [T]> = match a.as_slice() {
        Some(s) => s.into(),
        None => a.iter().copied().collect::<Vec<_>>().into(),
    };
    let mut out = alloc_for::<T>(n, "take", &oshape)?;
    for o in 0..outer {
        let base = o * len * inner;
        if inner == 1 {
            out.extend(indices.iter().map(|&i| x[base + i]));
        } else {
            for &i in indices {
                out.extend_from_slice(&x[base + i * inner..base + (i + 1) * inner]);
            }
        }
    }
    shaped(&oshape, out)
}

/// The transpose of [`index_select`]: slice `j` of `a` along `axis` added at `indices[j]` of
/// a zero tensor whose `axis` has length `n`.
pub(super) fn index_add<T: Element>(
    a: &ArrayViewD<'_, T>,
    indices: &[usize],
    axis: usize,
    n: usize,
) -> Result<ArrayD<T>> {
    let shape = a.shape();
    let m = shape[axis];
    if indices.len() != m {
        return Err(KilnError::invalid(
            "index_add",
            format!("{} indices for an axis of size {m}", indices.len()),
        ));
    }
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        return Err(KilnError::invalid(
            "index_add",
            format!("index {bad} is out of bounds for an output axis of size {n}"),
        ));
    }
    let mut oshape = shape.to_vec();
    oshape[axis] = n;
    let total = crate::array::checked_numel(&oshape, "index_add")?;
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let x: std::borrow::Cow<'_, [T]> = match a.as_slice() {
        Some(s) => s.into(),
        None => a.iter().copied().collect::<Vec<_>>().into(),
    };
    let mut out = alloc_for::<T>(total, "index_add", &oshape)?;
    out.resize(total, T::zero());
    for o in 0..outer {
        let (src, dst) = (o * m * inner, o * n * inner);
        for (j, &i) in indices.iter().enumerate() {
            let (s0, d0) = (src + j * inner, dst + i * inner);
            for (d, s) in out[d0..d0 + inner].iter_mut().zip(&x[s0..s0 + inner]) {
                *d = d.add(*s);
            }
        }
    }
    shaped(&oshape, out)
}

/// NumPy `take_along_axis`: `idx` (int64, in range) has `a`'s rank; other axes of size 1
/// in `a` broadcast.
pub(super) fn gather<T: Element>(
    a: &ArrayViewD<'_, T>,
    idx: &ArrayViewD<'_, i64>,
    axis: usize,
) -> Result<ArrayD<T>> {
    let shape = idx.shape().to_vec();
    let nd = shape.len();
    if a.ndim() != nd || axis >= nd {
        return Err(KilnError::shape(
            "take_along_axis",
            a.shape(),
            idx.shape(),
            "indices must have the operand's rank",
        ));
    }
    let n = idx.len();
    let strides: Vec<isize> = a.strides().to_vec();
    let ashape = a.shape().to_vec();
    let mut out = alloc_for::<T>(n, "take_along_axis", &shape)?;
    let mut pos = vec![0usize; nd];
    for &i in idx.iter() {
        let mut off = 0isize;
        for d in 0..nd {
            let p = if d == axis { i as usize } else { pos[d] };
            let p = if ashape[d] == 1 { 0 } else { p };
            if p >= ashape[d] {
                return Err(KilnError::invalid(
                    "take_along_axis",
                    format!(
                        "index {p} is out of bounds for an axis of size {}",
                        ashape[d]
                    ),
                ));
            }
            off += p as isize * strides[d];
        }
        // SAFETY: every coordinate is checked in range of `a`'s shape just above, so `off`
        // addresses an element of the view.
        out.push(unsafe { *a.as_ptr().offset(off) });
        for d in (0..nd).rev() {
            pos[d] += 1;
            if pos[d] < shape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    shaped(&shape, out)
}

/// Constant padding.
pub(super) fn pad<T: Element>(
    a: &ArrayViewD<'_, T>,
    widths: &[(usize, usize)],
    value: T,
) -> Result<ArrayD<T>> {
    let nd = a.ndim();
    if widths.len() != nd {
        return Err(KilnError::invalid(
            "pad",
            format!("{} pad widths for {nd} axes", widths.len()),
        ));
    }
    let mut shape = Vec::with_capacity(nd);
    for (d, (l, r)) in a.shape().iter().zip(widths) {
        shape.push(
            d.checked_add(*l)
                .and_then(|v| v.checked_add(*r))
                .ok_or_else(|| {
                    KilnError::invalid("pad", format!("padded size of {d} + {l} + {r} overflows"))
                })?,
        );
    }
    let n = crate::array::checked_numel(&shape, "pad")?;
    let mut out = alloc_for::<T>(n, "pad", &shape)?;
    out.resize(n, value);
    if a.is_empty() {
        return shaped(&shape, out);
    }
    if nd == 0 {
        out[0] = a.iter().next().copied().unwrap_or(value);
        return shaped(&shape, out);
    }
    let mut os = vec![0usize; nd];
    let mut acc = 1;
    for i in (0..nd).rev() {
        os[i] = acc;
        acc *= shape[i];
    }
    let rshape = &a.shape()[..nd - 1];
    let mut pos = vec![0usize; nd - 1];
    for row in a.rows() {
        let mut off = widths[nd - 1].0;
        for d in 0..nd - 1 {
            off += (pos[d] + widths[d].0) * os[d];
        }
        for (o, v) in out[off..off + row.len()].iter_mut().zip(row.iter()) {
            *o = *v;
        }
        for d in (0..nd - 1).rev() {
            pos[d] += 1;
            if pos[d] < rshape[d] {
                break;
            }
            pos[d] = 0;
        }
    }
    shaped(&shape, out)
}

/// A sort key: an unsigned integer whose order is NumPy's order of the values (ascending,
/// NaN last; all NaNs equal, so they come out as one canonical NaN).
pub(super) trait SortKey: Copy + Send + Sync {
    type K: Copy + Ord + Send + Sync + Radix;
    fn key(self) -> Self::K;
    fn from_key(k: Self::K) -> Self;
    /// Whether the type has a -0.0 that shares 0.0's key.
    fn has_signed_zero() -> bool {
        false
    }
    /// The key of zero.
    fn zero_key() -> Self::K {
        Self::key_of_zero()
    }
    fn key_of_zero() -> Self::K;
}

/// Bytes of a radix key, least significant first.
pub(super) trait Radix: Sized {
    const BYTES: usize;
    fn byte(self, i: usize) -> usize;
    /// Sorts `v` with the AVX-512 network ([`super::sort_avx512`]) where it can (a short
    /// row, this CPU has it); `false` leaves `v` to the caller.
    fn network(v: &mut [Self]) -> bool;
    /// The key as the high half of a `key << 32 | index` pair the network sorts, where the
    /// key has 32 bits.
    fn high_half(self) -> Option<u64>;
}
impl Radix for u32 {
    const BYTES: usize = 4;
    #[inline(always)]
    fn byte(self, i: usize) -> usize {
        ((self >> (8 * i)) & 0xff) as usize
    }
    fn network(v: &mut [u32]) -> bool {
        super::sort_avx512::sort_u32(v)
    }
    #[inline(always)]
    fn high_half(self) -> Option<u64> {
        Some((self as u64) << 32)
    }
}
impl Radix for u64 {
    const BYTES: usize = 8;
    #[inline(always)]
    fn byte(self, i: usize) -> usize {
        ((self >> (8 * i)) & 0xff) as usize
    }
    fn network(v: &mut [u64]) -> bool {
        super::sort_avx512::sort_u64(v)
    }
    fn high_half(self) -> Option<u64> {
        None
    }
}

macro_rules! float_key {
    ($t:ty, $k:ty, $bits:expr, $to:expr, $from:expr) => {
        impl SortKey for $t {
            type K = $k;
            #[inline(always)]
            fn key(self) -> $k {
                let x = ($to)(self);
                if x.is_nan() {
                    return <$k>::MAX;
                }
                // -0.0 and 0.0 are equal in NumPy's order: one key (+0.0's).
                let b = if x == 0.0 { 0 } else { x.to_bits() };
                // Negative: flip all bits (larger magnitude sorts first); else set the sign.
                if b >> ($bits - 1) == 1 {
                    !b
                } else {
                    b | (1 << ($bits - 1))
                }
            }
            fn has_signed_zero() -> bool {
                true
            }
            fn key_of_zero() -> $k {
                1 << ($bits - 1)
            }
            #[inline(always)]
            fn from_key(k: $k) -> $t {
                if k == <$k>::MAX {
                    return ($from)(<$k>::MAX >> 1);
                }
                let b = if k >> ($bits - 1) == 1 {
                    k & !(1 << ($bits - 1))
                } else {
                    !k
                };
                ($from)(b)
            }
        }
    };
}
float_key!(f32, u32, 32, |x: f32| x, f32::from_bits);
float_key!(f64, u64, 64, |x: f64| x, f64::from_bits);
float_key!(
    f16,
    u32,
    32,
    |x: f16| super::half_conv::f16_to_f32(x),
    |b: u32| f16::from_f32(f32::from_bits(b))
);
float_key!(
    bf16,
    u32,
    32,
    |x: bf16| super::half_conv::bf16_to_f32(x),
    |b: u32| bf16::from_f32(f32::from_bits(b))
);

macro_rules! int_key {
    ($($t:ty => $k:ty, $flip:expr);*) => {$(
        impl SortKey for $t {
            type K = $k;
            #[inline(always)]
            fn key(self) -> $k {
                (self as $k) ^ $flip
            }
            #[inline(always)]
            fn from_key(k: $k) -> $t {
                (k ^ $flip) as $t
            }
            fn key_of_zero() -> $k {
                $flip
            }
        }
    )*};
}
int_key!(i8 => u32, 0xffff_ff80; i16 => u32, 0xffff_8000; i32 => u32, 0x8000_0000;
    i64 => u64, 0x8000_0000_0000_0000; u8 => u32, 0; u16 => u32, 0; u32 => u32, 0; u64 => u64, 0);
impl SortKey for bool {
    type K = u32;
    #[inline(always)]
    fn key(self) -> u32 {
        self as u32
    }
    #[inline(always)]
    fn from_key(k: u32) -> bool {
        k != 0
    }
    fn key_of_zero() -> u32 {
        0
    }
}

/// Stable LSD radix sort of `v` by `key`, skipping bytes every key shares.
fn radix_sort<E: Copy, K: Radix + Copy>(v: &mut [E], tmp: &mut Vec<E>, key: impl Fn(&E) -> K) {
    let n = v.len();
    let mut counts = vec![[0usize; 256]; K::BYTES];
    for e in v.iter() {
        let k = key(e);
        for (i, c) in counts.iter_mut().enumerate() {
            c[k.byte(i)] += 1;
        }
    }
    for (i, c) in counts.iter().enumerate() {
        if c.contains(&n) {
            continue;
        }
        let mut off = [0usize; 256];
        let mut s = 0;
        for (o, &x) in off.iter_mut().zip(c.iter()) {
            *o = s;
            s += x;
        }
        tmp.clear();
        tmp.extend_from_slice(v);
        for e in tmp.iter() {
            let d = key(e).byte(i);
            v[off[d]] = *e;
            off[d] += 1;
        }
    }
}

/// From this many elements a row of keys sorts by radix, below by comparison (pdqsort on
/// the integer keys); rows of up to `NETWORK_MAX` take the AVX-512 network where the CPU
/// has it. Measured on rows of random float32 keys (ns a row, pdqsort / radix): 3784 / 3303
/// at 512, 6119 / 4546 at 784, 1729 / 1918 at 256.
const RADIX_MIN: usize = 512;
/// The same for (key, index) pairs (argsort): 3009 / 2234 at 256, 1372 / 1855 at 128.
const PAIR_RADIX_MIN: usize = 192;

/// Sorts one lane's keys (values: `sort`; else stable argsort indices).
fn sort_lane<T: SortKey>(lane: &[T], out_vals: &mut [T], out_idx: &mut [i64], indices: bool) {
    let n = lane.len();
    if !indices {
        let mut k: Vec<T::K> = lane.iter().map(|v| v.key()).collect();
        // The network sorts short rows in registers where the CPU has AVX-512.
        if !(n <= NETWORK_MAX && T::K::network(&mut k)) {
            if n >= RADIX_MIN {
                let mut tmp = Vec::with_capacity(n);
                radix_sort(&mut k, &mut tmp, |x| *x);
            } else {
                k.sort_unstable();
            }
        }
        // Zeros share a key; a stable sort keeps them in input order, signs included. The
        // keys are sorted, so where the zeros start (if any) is a binary search, and rows
        // without a zero skip the pass over the input.
        let zero = T::zero_key();
        let start = k.partition_point(|x| *x < zero);
        let zeros = T::has_signed_zero() && k.get(start) == Some(&zero);
        for (o, kk) in out_vals.iter_mut().zip(k) {
            *o = T::from_key(kk);
        }
        if zeros {
            let signs = lane.iter().filter(|v| v.key() == zero).copied();
            for (o, v) in out_vals[start..].iter_mut().zip(signs) {
                *o = v;
            }
        }
    } else {
        // (key, index) pairs: sorting them by key stably is sorting them fully. Packed in
        // a u64 they sort by the network (the index breaks ties, so it is stable too).
        if n <= NETWORK_MAX {
            let packed: Option<Vec<u64>> = lane
                .iter()
                .enumerate()
                .map(|(i, v)| v.key().high_half().map(|h| h | i as u64))
                .collect();
            if let Some(mut p) = packed {
                if u64::network(&mut p) {
                    for (o, q) in out_idx.iter_mut().zip(p) {
                        *o = (q & 0xffff_ffff) as i64;
                    }
                    return;
                }
            }
        }
        let mut k: Vec<(T::K, u32)> = lane
            .iter()
            .enumerate()
            .map(|(i, v)| (v.key(), i as u32))
            .collect();
        if n >= PAIR_RADIX_MIN {
            let mut tmp = Vec::with_capacity(n);
            radix_sort(&mut k, &mut tmp, |x| x.0);
        } else {
            k.sort_unstable();
        }
        for (o, (_, i)) in out_idx.iter_mut().zip(k) {
            *o = i as i64;
        }
    }
}

/// A sort's result: the sorted values, or the argsort indices.
pub(super) type Sorted<T> = (Option<ArrayD<T>>, Option<ArrayD<i64>>);

/// Sorts along `axis` (values, or stable argsort indices as int64).
pub(super) fn sort<T: SortKey + Element>(
    a: &ArrayViewD<'_, T>,
    axis: usize,
    indices: bool,
) -> Result<Sorted<T>> {
    let shape = a.shape().to_vec();
    let r = shape[axis];
    if r > u32::MAX as usize {
        return Err(KilnError::invalid(
            "sort",
            format!("an axis of {r} elements is longer than sorting supports (2^32 - 1)"),
        ));
    }
    // Lanes along the last axis: move `axis` there, sort contiguous rows, move it back.
    let last = shape.len() - 1;
    let moved;
    let x = if axis == last {
        a.view()
    } else {
        let mut perm: Vec<usize> = (0..shape.len()).filter(|&i| i != axis).collect();
        perm.push(axis);
        moved = permute(a, &perm)?;
        moved.view()
    };
    let xs: std::borrow::Cow<'_, [T]> = match x.as_slice() {
        Some(s) => s.into(),
        None => x.iter().copied().collect::<Vec<_>>().into(),
    };
    let n = xs.len();
    let mshape = x.shape().to_vec();
    // Moves the last axis back to `axis`.
    let inv: Vec<usize> = (0..shape.len())
        .map(|i| {
            if i < axis {
                i
            } else if i == axis {
                last
            } else {
                i - 1
            }
        })
        .collect();
    let rows = n.checked_div(r).unwrap_or(0);
    // Sorting is compute-bound: threads from PAR_MIN elements, equal pieces of rows.
    let per = crate::hostmem::balanced_chunk(rows, CHUNK.checked_div(r).unwrap_or(1).max(1), 1);
    // Sorts every row of `xs` into `out` with `f`, rows in parallel when large.
    fn rows_into<T: Sync, E: Send>(
        out: &mut [E],
        xs: &[T],
        r: usize,
        par: bool,
        per: usize,
        f: impl Fn(&[T], &mut [E]) + Sync,
    ) {
        if r == 0 {
            return;
        }
        let g = |(o, xr): (&mut [E], &[T])| {
            for (oc, xc) in o.chunks_mut(r).zip(xr.chunks(r)) {
                f(xc, oc);
            }
        };
        if par {
            out.par_chunks_mut(per * r)
                .zip(xs.par_chunks(per * r))
                .for_each(g);
        } else {
            out.chunks_mut(per * r).zip(xs.chunks(per * r)).for_each(g);
        }
    }
    let par = n >= crate::hostmem::PAR_MIN && rows >= 2;
    // Moves the sorted (last) axis back where it was.
    fn back<E: Element>(arr: ArrayD<E>, inv: Option<&[usize]>) -> Result<ArrayD<E>> {
        match inv {
            None => Ok(arr),
            Some(p) => permute(&arr.view(), p),
        }
    }
    let inv = (axis != last).then_some(&inv[..]);
    if indices {
        let mut out = vec![0i64; n];
        rows_into(&mut out, &xs, r, par, per, |xc, oc| {
            sort_lane(xc, &mut [], oc, true)
        });
        Ok((None, Some(back(shaped(&mshape, out)?, inv)?)))
    } else {
        let mut out = alloc_for::<T>(n, "sort", &shape)?;
        out.extend_from_slice(&xs);
        rows_into(&mut out, &xs, r, par, per, |xc, oc| {
            sort_lane(xc, oc, &mut [], false)
        });
        Ok((Some(back(shaped(&mshape, out)?, inv)?), None))
    }
}

/// NumPy order for complex (lexicographic; NaN last), by comparison.
fn complex_order<T: Element>(a: &T, b: &T) -> std::cmp::Ordering {
    use std::cmp::Ordering::*;
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Equal,
        (true, false) => Greater,
        (false, true) => Less,
        _ => {
            if a.lt(*b) {
                Less
            } else if b.lt(*a) {
                Greater
            } else {
                Equal
            }
        }
    }
}

/// Sorting for complex dtypes (a stable comparison sort per lane).
pub(super) fn sort_complex<T: Element>(
    a: &ArrayViewD<'_, T>,
    axis: usize,
    indices: bool,
) -> Result<Sorted<T>> {
    let mut vals = strided_copy(a, "sort")?;
    let mut idx = ArrayD::<i64>::zeros(IxDyn(a.shape()));
    for (mut lane, mut il) in vals
        .lanes_mut(Axis(axis))
        .into_iter()
        .zip(idx.lanes_mut(Axis(axis)))
    {
        let v: Vec<T> = lane.iter().copied().collect();
        let mut order: Vec<usize> = (0..v.len()).collect();
        order.sort_by(|&i, &j| complex_order(&v[i], &v[j]));
        for ((o, oi), i) in lane.iter_mut().zip(il.iter_mut()).zip(order) {
            *o = v[i];
            *oi = i as i64;
        }
    }
    Ok(if indices {
        (None, Some(idx))
    } else {
        (Some(vals), None)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use super::super::test_arr as arr;

    proptest! {
        /// The blocked permute equals ndarray's own permuted copy, for every permutation.
        #[test]
        fn permute_equals_the_reference(shape in prop::collection::vec(1usize..40, 1..5), seed in any::<u64>()) {
            let a = arr(&shape, 7);
            let mut perm: Vec<usize> = (0..shape.len()).collect();
            let mut s = seed;
            for i in (1..perm.len()).rev() {
                perm.swap(i, (s % (i as u64 + 1)) as usize);
                s /= 7;
            }
            let got = permute(&a.view(), &perm).unwrap();
            let want = a.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned();
            prop_assert_eq!(got, want);
            // 8-byte (4x4 blocks) and 2-byte (8x8 SSE2 blocks) elements too.
            let d = a.mapv(|v| v as f64);
            prop_assert_eq!(permute(&d.view(), &perm).unwrap(), d.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned());
            let h = a.mapv(|v| (v * 100.0) as i16);
            prop_assert_eq!(permute(&h.view(), &perm).unwrap(), h.view().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned());
        }

        /// Key sorting equals a comparison sort in NumPy's order (NaN last), and argsort is
        /// stable.
        #[test]
        fn sort_equals_comparison_sort(v in prop::collection::vec(prop_oneof![any::<f32>(), Just(0.0f32), Just(-0.0f32), Just(1.0f32)], 0..3000)) {
            let a = ArrayD::from_shape_vec(IxDyn(&[v.len()]), v.clone()).unwrap();
            if v.is_empty() { return Ok(()); }
            let (s, _) = sort(&a.view(), 0, false).unwrap();
            let mut want = v.clone();
            want.sort_by(complex_order);
            // Bitwise: a stable sort keeps equal zeros in input order, signs included.
            for (g, w) in s.unwrap().iter().zip(&want) {
                prop_assert!(g.to_bits() == w.to_bits() || (g.is_nan() && w.is_nan()), "{g} vs {w}");
            }
            let (_, idx) = sort(&a.view(), 0, true).unwrap();
            let mut order: Vec<usize> = (0..v.len()).collect();
            order.sort_by(|&i, &j| {
                let (x, y) = (v[i], v[j]);
                // -0.0 and 0.0 are equal in NumPy's order: compare keys of the canonical value.
                let c = complex_order(&x, &y);
                if c == std::cmp::Ordering::Equal && x == y && x.to_bits() != y.to_bits() {
                    std::cmp::Ordering::Equal
                } else {
                    c
                }
            });
            let got: Vec<usize> = idx.unwrap().iter().map(|i| *i as usize).collect();
            // Stable, so equal values keep their order; zeros of both signs may interleave
            // by sign (the key separates -0.0 from 0.0), so compare the sorted values.
            let gv: Vec<f32> = got.iter().map(|&i| v[i]).collect();
            let wv: Vec<f32> = order.iter().map(|&i| v[i]).collect();
            for (g, w) in gv.iter().zip(&wv) {
                prop_assert!(g == w || (g.is_nan() && w.is_nan()));
            }
            for w in got.windows(2) {
                let (x, y) = (v[w[0]], v[w[1]]);
                if x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()) {
                    prop_assert!(w[0] < w[1], "not stable at {:?}", w);
                }
            }
        }
    }

    #[test]
    fn keys_order_like_numpy() {
        let xs = [
            f32::NEG_INFINITY,
            -3.5,
            -0.0,
            0.0,
            1e-40,
            2.0,
            f32::INFINITY,
            f32::NAN,
        ];
        for w in xs.windows(2) {
            assert!(w[0].key() <= w[1].key(), "{} {}", w[0], w[1]);
            assert!(w[0].key() < w[1].key() || w[0] == w[1]);
        }
        for x in xs {
            // -0.0 shares 0.0's key (NumPy orders them equal); sorting restores its sign.
            let y = f32::from_key(x.key());
            let want = if x == 0.0 { 0.0f32 } else { x };
            assert!(
                y.to_bits() == want.to_bits() || (x.is_nan() && y.is_nan()),
                "{x}"
            );
        }
        let (s, _) = sort(
            &ArrayD::from_shape_vec(IxDyn(&[4]), vec![0.0f32, -0.0, -1.0, -0.0])
                .unwrap()
                .view(),
            0,
            false,
        )
        .unwrap();
        let bits: Vec<u32> = s.unwrap().iter().map(|v| v.to_bits()).collect();
        assert_eq!(
            bits,
            vec![
                (-1.0f32).to_bits(),
                0.0f32.to_bits(),
                (-0.0f32).to_bits(),
                (-0.0f32).to_bits()
            ]
        );
        for x in [i32::MIN, -1, 0, 1, i32::MAX] {
            assert_eq!(i32::from_key(x.key()), x);
        }
        assert!((-1i8).key() < 0i8.key());
        assert!((-128i8).key() < (-1i8).key());
    }

    #[test]
    fn concat_take_pad_gather() {
        let a = arr(&[2, 3], 1);
        let b = arr(&[2, 2], 2);
        let c = concat(&[a.view(), b.view()], 1).unwrap();
        let want = ndarray::concatenate(Axis(1), &[a.view(), b.view()]).unwrap();
        assert_eq!(c, want);
        let t = index_select(&a.view(), &[2, 0, 2], 1).unwrap();
        assert_eq!(t, a.select(Axis(1), &[2, 0, 2]));
        let p = pad(&a.view(), &[(1, 0), (0, 2)], 9.0).unwrap();
        assert_eq!(p.shape(), &[3, 5]);
        assert_eq!(p[[0, 0]], 9.0);
        assert_eq!(p[[1, 0]], a[[0, 0]]);
        assert_eq!(p[[2, 4]], 9.0);
        let idx = ArrayD::from_shape_vec(IxDyn(&[2, 1]), vec![2i64, 0]).unwrap();
        let g = gather(&a.view(), &idx.view(), 1).unwrap();
        assert_eq!(
            g.iter().copied().collect::<Vec<_>>(),
            vec![a[[0, 2]], a[[1, 0]]]
        );
        let f = strided_copy(&a.slice(ndarray::s![.., ..;-1]).into_dyn(), "t").unwrap();
        assert_eq!(f, a.slice(ndarray::s![.., ..;-1]).to_owned().into_dyn());
    }
}
