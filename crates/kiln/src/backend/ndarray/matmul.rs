//! Batched matrix products of the ndarray engine. Operands are strided views: a transposed
//! operand (`transpose_a`/`transpose_b`) is the stored array with its last two axes
//! swapped, handed to the GEMM as strides, never copied. Float types run kiln's GEMM
//! (`gemm.rs`: AVX-512 microkernels, threaded; half types accumulate in float32 and round
//! once); other dtypes run the reference triple loop.

use super::ArrView;
use crate::array::{ArrayData, HostElement};
use crate::element::Element;
use crate::error::{KilnError, Result};
use crate::hostmem::alloc_for;
use ndarray::{ArrayD, ArrayView2, ArrayViewD, Axis, Dimension, IxDyn};

/// The GEMM signature of `gemm.rs` (C = A · B over strides, C overwritten).
type GemmFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    *const T,
    isize,
    isize,
    *const T,
    isize,
    isize,
    *mut T,
    isize,
    isize,
    usize,
);

/// The batched GEMM signature (uniform batch strides).
type BatchedFn<T> = unsafe fn(
    usize,
    usize,
    usize,
    usize,
    *const T,
    isize,
    isize,
    isize,
    *const T,
    isize,
    isize,
    isize,
    *mut T,
    isize,
    isize,
    isize,
    usize,
);

/// The common step (in elements) between consecutive views, if they are evenly spaced.
fn even_stride<T>(views: &[ArrayView2<'_, T>]) -> Option<isize> {
    let p: Vec<isize> = views.iter().map(|v| v.as_ptr() as isize).collect();
    let step = p.get(1).map_or(0, |x| x - p[0]);
    let size = std::mem::size_of::<T>() as isize;
    (step % size == 0 && p.windows(2).all(|w| w[1] - w[0] == step)).then_some(step / size)
}

/// `x`, or `x` with its last two axes swapped (a free view).
fn maybe_t<'s, T>(x: &'s ArrayViewD<'_, T>, t: bool) -> ArrayViewD<'s, T> {
    let mut v = x.view();
    if t {
        let n = v.ndim();
        v.swap_axes(n - 2, n - 1);
    }
    v
}

/// Batched GEMM through `gemm.rs` for one float type.
fn gemm_batched<'a, T: Element>(
    a: ArrayViewD<'a, T>,
    b: ArrayViewD<'a, T>,
    gemm: GemmFn<T>,
    batched: BatchedFn<T>,
) -> Result<ArrayD<T>> {
    let (out_shape, ab, bb) = batch_views(a, b)?;
    let m = ab.first().map_or(0, |v| v.nrows());
    let n = bb.first().map_or(0, |v| v.ncols());
    let k = ab.first().map_or(0, |v| v.ncols());
    let total: usize = out_shape.iter().product();
    // No zero fill: the GEMM writes every element of C without reading it.
    let mut out: Vec<T> = alloc_for(total, "matmul", &out_shape)?;
    let base = out.spare_capacity_mut().as_mut_ptr() as *mut T;
    let threads = rayon::current_num_threads();
    if m * n > 0 {
        if let (true, Some(sa), Some(sb)) = (ab.len() > 1, even_stride(&ab), even_stride(&bb)) {
            let (ars, bs) = (ab[0].strides(), bb[0].strides());
            // SAFETY: batch q of A/B starts q * sa / q * sb elements after the first view's
            // pointer (checked evenly spaced above) and is a live (m, k) / (k, n) view with
            // these strides; C batch q is [q*m*n, (q+1)*m*n) of the fresh buffer of `total`
            // elements, disjoint across q and from A and B. C is written, never read.
            unsafe {
                batched(
                    ab.len(),
                    m,
                    n,
                    k,
                    ab[0].as_ptr(),
                    sa,
                    ars[0],
                    ars[1],
                    bb[0].as_ptr(),
                    sb,
                    bs[0],
                    bs[1],
                    base,
                    (m * n) as isize,
                    n as isize,
                    1,
                    threads,
                )
            };
        } else {
            for (i, (av, bv)) in ab.iter().zip(bb.iter()).enumerate() {
                let (ars, bs) = (av.strides(), bv.strides());
                // SAFETY: A and B pointers/strides come from live ndarray views of shapes
                // (m,k) and (k,n) (strides may be those of transposed or broadcast views,
                // which the GEMM reads through); C is batch i of a fresh row-major [batch, m,
                // n] buffer of `total` elements, so [i*m*n, (i+1)*m*n) is in bounds and
                // disjoint from A and B. The GEMM writes C without reading it (zeros if
                // k == 0).
                unsafe {
                    gemm(
                        m,
                        n,
                        k,
                        av.as_ptr(),
                        ars[0],
                        ars[1],
                        bv.as_ptr(),
                        bs[0],
                        bs[1],
                        base.add(i * m * n),
                        n as isize,
                        1,
                        threads,
                    );
                }
            }
        }
    }
    // SAFETY: every batch wrote its m*n block (or total is 0).
    unsafe { out.set_len(total) };
    super::elementwise::shaped(&out_shape, out)
}

/// Broadcasts the batch dimensions of two stacks of matrices; returns the output shape and
/// one 2-d view per batch entry of each operand.
#[allow(clippy::type_complexity)]
fn batch_views<'a, T>(
    a: ArrayViewD<'a, T>,
    b: ArrayViewD<'a, T>,
) -> Result<(Vec<usize>, Vec<ArrayView2<'a, T>>, Vec<ArrayView2<'a, T>>)> {
    let (ad, bd) = (a.ndim(), b.ndim());
    if ad < 2 || bd < 2 {
        return Err(KilnError::shape(
            "matmul",
            a.shape(),
            b.shape(),
            "the engine's matmul takes operands of at least 2 axes",
        ));
    }
    let (m, k, k2, n) = (
        a.shape()[ad - 2],
        a.shape()[ad - 1],
        b.shape()[bd - 2],
        b.shape()[bd - 1],
    );
    if k != k2 {
        return Err(KilnError::shape(
            "matmul",
            a.shape(),
            b.shape(),
            format!("inner dimensions differ ({k} vs {k2})"),
        ));
    }
    let batch =
        crate::shape::broadcast_shapes(&a.shape()[..ad - 2], &b.shape()[..bd - 2], "matmul")?;
    // One 2-d view per batch entry: index the operand's own batch axes, right-aligned with
    // the broadcast batch shape (a size-1 axis is index 0 for every entry).
    let split = |v: ArrayViewD<'a, T>| -> Result<Vec<ArrayView2<'a, T>>> {
        let own = v.ndim() - 2;
        let skip = batch.len() - own;
        let dims: Vec<usize> = v.shape()[..own].to_vec();
        let mut out = Vec::new();
        let entries: Vec<Vec<usize>> = if batch.is_empty() {
            vec![Vec::new()]
        } else {
            ndarray::indices(IxDyn(&batch))
                .into_iter()
                .map(|i| i.slice().to_vec())
                .collect()
        };
        for idx in entries {
            let mut w = v.clone();
            for (d, &i) in dims.iter().zip(&idx[skip..]) {
                w.index_axis_inplace(Axis(0), if *d == 1 { 0 } else { i });
            }
            out.push(
                w.into_dimensionality::<ndarray::Ix2>()
                    .map_err(|e| KilnError::invalid("matmul", e.to_string()))?,
            );
        }
        Ok(out)
    };
    let mut out_shape = batch.clone();
    out_shape.extend([m, n]);
    Ok((out_shape, split(a)?, split(b)?))
}

/// The reference product: a triple loop in the element's own arithmetic (integers wrap).
pub(super) fn matmul_generic<'a, T: Element>(
    a: ArrayViewD<'a, T>,
    b: ArrayViewD<'a, T>,
) -> Result<ArrayD<T>> {
    let (out_shape, ab, bb) = batch_views(a, b)?;
    let total: usize = out_shape.iter().product();
    let mut out = alloc_for::<T>(total, "matmul", &out_shape)?;
    for (av, bv) in ab.iter().zip(bb.iter()) {
        for i in 0..av.nrows() {
            for j in 0..bv.ncols() {
                let mut acc = T::zero();
                for p in 0..av.ncols() {
                    acc = acc.add(av[[i, p]].mul(bv[[p, j]]));
                }
                out.push(acc);
            }
        }
    }
    super::elementwise::shaped(&out_shape, out)
}

/// `op(a) @ op(b)` where `op` transposes the last two axes when asked.
pub(super) fn matmul(da: &ArrView<'_>, db: &ArrView<'_>, ta: bool, tb: bool) -> Result<ArrayData> {
    use super::gemm;
    Ok(match (da, db) {
        (ArrView::F32(x), ArrView::F32(y)) => ArrayData::F32(gemm_batched(
            maybe_t(x, ta),
            maybe_t(y, tb),
            gemm::sgemm,
            gemm::sgemm_batched,
        )?),
        (ArrView::F64(x), ArrView::F64(y)) => ArrayData::F64(gemm_batched(
            maybe_t(x, ta),
            maybe_t(y, tb),
            gemm::dgemm,
            gemm::dgemm_batched,
        )?),
        (ArrView::F16(x), ArrView::F16(y)) => ArrayData::F16(gemm_batched(
            maybe_t(x, ta),
            maybe_t(y, tb),
            gemm::hgemm_f16,
            gemm::hgemm_f16_batched,
        )?),
        (ArrView::BF16(x), ArrView::BF16(y)) => ArrayData::BF16(gemm_batched(
            maybe_t(x, ta),
            maybe_t(y, tb),
            gemm::hgemm_bf16,
            gemm::hgemm_bf16_batched,
        )?),
        _ => super::with_view!(da, x, T => {
            let d = super::dtype_of(da);
            let y = <T as super::ViewElement>::of(db).ok_or_else(|| {
                super::backend_err(super::NAME, "matmul", d, format!("operands must share one dtype ({} and {})", d, super::dtype_of(db)))
            })?;
            T::wrap(matmul_generic(maybe_t(x, ta), maybe_t(y, tb))?)
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::test_arr as arr;

    #[test]
    fn batched_matmul_broadcasts_and_handles_empty_contractions() {
        let a = arr(&[2, 1, 3, 4], 1);
        let b = arr(&[5, 4, 2], 2);
        let c = gemm_batched(
            a.view(),
            b.view(),
            super::super::gemm::sgemm,
            super::super::gemm::sgemm_batched,
        )
        .unwrap();
        assert_eq!(c.shape(), &[2, 5, 3, 2]);
        let g = matmul_generic(a.view(), b.view()).unwrap();
        for (x, y) in c.iter().zip(g.iter()) {
            assert!((x - y).abs() <= 1e-4 * (1.0 + y.abs()));
        }
        let e = gemm_batched(
            arr(&[3, 0], 1).view(),
            arr(&[0, 2], 2).view(),
            super::super::gemm::sgemm,
            super::super::gemm::sgemm_batched,
        )
        .unwrap();
        assert_eq!(e, ArrayD::<f32>::zeros(IxDyn(&[3, 2])));
    }

    #[test]
    fn transposed_operands_equal_materialised_transposes() {
        for (ta, tb) in [(false, true), (true, false), (true, true)] {
            let a = if ta {
                arr(&[2, 5, 3], 1)
            } else {
                arr(&[2, 3, 5], 1)
            };
            let b = if tb { arr(&[4, 5], 2) } else { arr(&[5, 4], 2) };
            let got = matmul(&ArrView::F32(a.view()), &ArrView::F32(b.view()), ta, tb).unwrap();
            let at = maybe_t(&a.view(), ta).as_standard_layout().into_owned();
            let bt = maybe_t(&b.view(), tb).as_standard_layout().into_owned();
            let want = matmul_generic(at.view(), bt.view()).unwrap();
            let got = got.as_array::<f32>().unwrap();
            assert_eq!(got.shape(), want.shape());
            for (x, y) in got.iter().zip(want.iter()) {
                assert!(
                    (x - y).abs() <= 1e-4 * (1.0 + y.abs()),
                    "{ta} {tb}: {x} vs {y}"
                );
            }
        }
    }
}
