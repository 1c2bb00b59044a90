//! Dense matrix multiplication (GEMM) for kiln's CPU engine.
//!
//! `C[m×n] = A[m×k] · B[k×n]` for f32, f64, and f16/bf16 with f32 accumulation, over arbitrary
//! element strides, overwriting C. On x86-64 with AVX-512 (F/BW/VL) this is BLIS-style:
//!
//! * The microkernel keeps an `MR × NR` tile of C in registers (f32: 8 × 48, f64: 8 × 24: 8
//!   rows × 3 vectors = 24 accumulators, enough to hide FMA latency on both FMA ports) and per
//!   step of k broadcasts one A element per row against 3 vectors of a row of B. Vectors run
//!   along n because kiln's C is row-major, so tiles are written with plain vector stores (C
//!   closer to column-major is handled by computing `C^T = B^T A^T`).
//! * B is packed into `KC × NR` row panels forming a `KC × NC` block that stays in L2
//!   (f32: 512 × 528, f64: 256 × 528, about 1 MiB of the 2 MiB L2); A into one `MR × KC`
//!   micro-panel at a time (16 KiB), which stays in L1 while every B panel of the block streams
//!   past it with software prefetch. Packing is a copy on the contiguous side of each layout,
//!   and a 16×16 / 8×8 register transpose for B stored transposed (`a @ b.T`); f16/bf16 are
//!   widened to f32 while packing, and rounded once when the last k block is stored.
//! * Small single-threaded problems (k ≤ KC) read B in place when its rows are contiguous and
//!   only copy A (a few KiB), so no time goes into packing B.
//! * Threads share one packed B block. The work is a sequence of tasks (pack one B panel;
//!   multiply one strip of MR rows by the block) claimed from an atomic counter, and a task
//!   starts once the previous phase is complete. A thread only ever waits for tasks that a
//!   running thread has claimed, so helpers are detached rayon jobs: one that starts late (or
//!   only after the call) takes less or nothing, and a core slowed by other processes simply
//!   claims fewer tasks.
//!
//! Summation order: every element of C is one FMA chain over k in increasing order, restarted
//! at each KC block boundary and then added to C. The boundaries depend only on k, so results
//! are bit-identical for every thread count, tile position and path (packed or not).
//!
//! CPUs without AVX-512 use `matrixmultiply` (f16/bf16 widened to f32 around it); its
//! summation order differs from the AVX-512 path.

use half::{bf16, f16};

macro_rules! gemm_entry {
    ($(#[$doc:meta])* $name:ident, $(#[$bdoc:meta])* $batched:ident, $t:ty) => {
        $(#[$doc])*
        ///
        /// # Safety
        /// For every `i < m`, `p < k`, `j < n`: `a.offset(i*rsa + p*csa)` and
        /// `b.offset(p*rsb + j*csb)` must be readable and `c.offset(i*rsc + j*csc)` writable
        /// (offsets computed in `isize` without overflow); the C elements must be pairwise
        /// distinct and must not overlap A or B. C is only written, never read, so it may be
        /// uninitialised. A and B strides may be any value, zero and negative included.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $name(
            m: usize,
            n: usize,
            k: usize,
            a: *const $t,
            rsa: isize,
            csa: isize,
            b: *const $t,
            rsb: isize,
            csb: isize,
            c: *mut $t,
            rsc: isize,
            csc: isize,
            threads: usize,
        ) {
            gemm::<$t>(m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc, threads, &Tune::DEFAULT);
        }

        $(#[$bdoc])*
        ///
        /// # Safety
        /// As for the single product, for every batch index `q < batch` with A, B and C
        /// starting at `a.offset(q*sa)`, `b.offset(q*sb)`, `c.offset(q*sc)` (`sa`/`sb` may be 0
        /// to share an operand); the C blocks of different `q` must not overlap.
        #[allow(clippy::too_many_arguments)]
        pub unsafe fn $batched(
            batch: usize,
            m: usize,
            n: usize,
            k: usize,
            a: *const $t,
            sa: isize,
            rsa: isize,
            csa: isize,
            b: *const $t,
            sb: isize,
            rsb: isize,
            csb: isize,
            c: *mut $t,
            sc: isize,
            rsc: isize,
            csc: isize,
            threads: usize,
        ) {
            let ops = Operands { m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc };
            gemm_batched::<$t>(batch, ops, [sa, sb, sc], threads, &Tune::DEFAULT);
        }
    };
}

gemm_entry!(
    /// `C = A · B` in f32, overwriting C (beta = 0): see the module docs. `threads` is how
    /// many threads may be used (kiln passes rayon's pool size); small problems use one.
    sgemm,
    /// `C[q] = A[q] · B[q]` in f32 for `q < batch`, where operand q starts `q * stride`
    /// elements after the given pointer. Products too small to split run one per thread.
    sgemm_batched,
    f32
);
gemm_entry!(
    /// `C = A · B` in f64, overwriting C (beta = 0); see [`sgemm`].
    dgemm,
    /// Batched [`dgemm`]; see [`sgemm_batched`].
    dgemm_batched,
    f64
);
gemm_entry!(
    /// `C = A · B` for f16, accumulating in f32 and rounding once (to nearest even) into C;
    /// see [`sgemm`].
    hgemm_f16,
    /// Batched [`hgemm_f16`]; see [`sgemm_batched`].
    hgemm_f16_batched,
    f16
);
gemm_entry!(
    /// `C = A · B` for bf16, accumulating in f32 and rounding once (to nearest even, NaN kept
    /// NaN) into C; see [`sgemm`].
    hgemm_bf16,
    /// Batched [`hgemm_bf16`]; see [`sgemm_batched`].
    hgemm_bf16_batched,
    bf16
);

/// One product's shape and operands (C = A · B, m × n, depth k).
#[derive(Clone, Copy)]
struct Operands<T> {
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    csb: isize,
    c: *mut T,
    rsc: isize,
    csc: isize,
}

/// Claims batch items from a counter, each a single-threaded product; see [`gemm_batched`].
struct Batch<T> {
    ops: Operands<T>,
    strides: [isize; 3],
    batch: usize,
    tune: Tune,
    next: std::sync::atomic::AtomicUsize,
    done: std::sync::atomic::AtomicUsize,
}

// SAFETY: items are claimed once each (fetch_add), write disjoint C blocks, and the caller
// returns only when every item is done; a thread that claims past the end touches only the
// Batch itself, which an Arc keeps alive.
unsafe impl<T> Sync for Batch<T> {}
// SAFETY: as above; moved to helpers only inside an Arc.
unsafe impl<T> Send for Batch<T> {}

impl<T: Elem> Batch<T> {
    unsafe fn work(&self) {
        use std::sync::atomic::Ordering;
        loop {
            let q = self.next.fetch_add(1, Ordering::Relaxed);
            if q >= self.batch {
                return;
            }
            let o = self.ops;
            let [sa, sb, sc] = self.strides.map(|s| s * q as isize);
            let (a, b, c) = (o.a.offset(sa), o.b.offset(sb), o.c.offset(sc));
            gemm::<T>(
                o.m, o.n, o.k, a, o.rsa, o.csa, b, o.rsb, o.csb, c, o.rsc, o.csc, 1, &self.tune,
            );
            self.done.fetch_add(1, Ordering::AcqRel);
        }
    }
}

/// Batched products: when one product is too small to split between threads, whole
/// products are handed out instead (the same per-element arithmetic either way).
///
/// # Safety
/// As for the batched entries.
unsafe fn gemm_batched<T: Elem>(
    batch: usize,
    ops: Operands<T>,
    strides: [isize; 3],
    threads: usize,
    tune: &Tune,
) {
    let work = ops.m.saturating_mul(ops.n).saturating_mul(ops.k);
    let t = threads
        .min(batch)
        .min(work.saturating_mul(batch) / tune.par_min.max(1));
    if t <= 1 || work >= tune.par_min {
        for q in 0..batch as isize {
            let o = ops;
            let (a, b, c) = (
                o.a.offset(q * strides[0]),
                o.b.offset(q * strides[1]),
                o.c.offset(q * strides[2]),
            );
            gemm::<T>(
                o.m, o.n, o.k, a, o.rsa, o.csa, b, o.rsb, o.csb, c, o.rsc, o.csc, threads, tune,
            );
        }
        return;
    }
    let job = std::sync::Arc::new(Batch {
        ops,
        strides,
        batch,
        tune: *tune,
        next: Default::default(),
        done: Default::default(),
    });
    for _ in 1..t {
        let job = job.clone();
        // SAFETY: each item is one product under the caller's contract (checked per item
        // by `gemm`); see the Sync impl of Batch for the sharing.
        rayon::spawn(move || unsafe { job.work() });
    }
    job.work();
    wait_for(&job.done, batch);
}

/// Spins (then yields, in case the thread being waited on was preempted) until `count`
/// reaches `target`.
fn wait_for(count: &std::sync::atomic::AtomicUsize, target: usize) {
    let mut spins = 0u32;
    while count.load(std::sync::atomic::Ordering::Acquire) < target {
        spins += 1;
        if spins < 1 << 12 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Path selection thresholds; tests override them to reach every path with small shapes.
/// (Only the AVX-512 path reads them, hence the allow on other targets.)
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tune {
    /// Multiply-adds per thread below which fewer threads are used. Measured on the 2-core
    /// target: a second thread (rayon wake-up, packing B, the shared block) breaks even near
    /// 2.5M multiply-adds (128×128×128 is 0.97× with 2 threads, 128×256×128 1.27×).
    par_min: usize,
    /// With k ≤ KC and at most this many multiply-adds (single-threaded), B is not packed:
    /// measured faster up to ~2M (32×64×128: 3.0 µs vs 4.4 µs packed; 128³: 24 vs 27 µs),
    /// even at 4M.
    direct_max: usize,
    /// Use the non-AVX-512 path even where AVX-512 is available.
    fallback: bool,
}

impl Tune {
    const DEFAULT: Tune = Tune {
        par_min: 3 << 19,
        direct_max: 1 << 21,
        fallback: false,
    };
}

/// The four element types. C has the input type; f16/bf16 accumulate in f32.
trait Elem: Copy + Send + Sync + 'static {
    type Acc: Copy + Send + Sync + 'static;
    const ZERO: Self;
    fn to_acc(self) -> Self::Acc;
    /// Rounds to nearest even (NaN stays NaN).
    fn from_acc(x: Self::Acc) -> Self;
    /// The GEMM for CPUs without AVX-512 (contract of [`sgemm`]).
    #[allow(clippy::too_many_arguments)]
    unsafe fn fallback(
        m: usize,
        n: usize,
        k: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
        rsc: isize,
        csc: isize,
    );
    /// The AVX-512 GEMM (contract of [`sgemm`], AVX-512F/BW/VL present, m, n, k > 0).
    #[cfg(target_arch = "x86_64")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn avx512(
        m: usize,
        n: usize,
        k: usize,
        a: *const Self,
        rsa: isize,
        csa: isize,
        b: *const Self,
        rsb: isize,
        csb: isize,
        c: *mut Self,
        rsc: isize,
        csc: isize,
        threads: usize,
        tune: &Tune,
    );
}

macro_rules! elem_impl {
    ($t:ty, $acc:ty, $zero:expr, |$x:ident| $to:expr, |$y:ident| $from:expr, $fallback:path) => {
        impl Elem for $t {
            type Acc = $acc;
            const ZERO: $t = $zero;
            fn to_acc(self) -> $acc {
                let $x = self;
                $to
            }
            fn from_acc($y: $acc) -> $t {
                $from
            }
            unsafe fn fallback(
                m: usize,
                n: usize,
                k: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                c: *mut $t,
                rsc: isize,
                csc: isize,
            ) {
                $fallback(m, k, n, a, rsa, csa, b, rsb, csb, c, rsc, csc)
            }
            #[cfg(target_arch = "x86_64")]
            unsafe fn avx512(
                m: usize,
                n: usize,
                k: usize,
                a: *const $t,
                rsa: isize,
                csa: isize,
                b: *const $t,
                rsb: isize,
                csb: isize,
                c: *mut $t,
                rsc: isize,
                csc: isize,
                threads: usize,
                tune: &Tune,
            ) {
                avx512::run::<$t>(
                    m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc, threads, tune,
                )
            }
        }
    };
}
elem_impl!(f32, f32, 0.0, |x| x, |y| y, fallback::sgemm);
elem_impl!(f64, f64, 0.0, |x| x, |y| y, fallback::dgemm);
elem_impl!(
    f16,
    f32,
    f16::ZERO,
    |x| x.to_f32(),
    |y| f16::from_f32(y),
    fallback::hgemm
);
elem_impl!(
    bf16,
    f32,
    bf16::ZERO,
    |x| x.to_f32(),
    |y| bf16::from_f32(y),
    fallback::hgemm
);

/// Shared entry: empty shapes, orientation, k == 0, then the CPU-specific path.
///
/// # Safety
/// As for [`sgemm`].
#[allow(clippy::too_many_arguments)]
unsafe fn gemm<T: Elem>(
    m: usize,
    n: usize,
    k: usize,
    a: *const T,
    rsa: isize,
    csa: isize,
    b: *const T,
    rsb: isize,
    csb: isize,
    c: *mut T,
    rsc: isize,
    csc: isize,
    threads: usize,
    tune: &Tune,
) {
    if m == 0 || n == 0 {
        return;
    }
    // The kernels store rows of C as vectors: when C is closer to column-major, compute
    // C^T = B^T · A^T instead, which swaps m with n and A with B.
    if csc.unsigned_abs() > rsc.unsigned_abs() {
        return gemm::<T>(
            n, m, k, b, csb, rsb, a, csa, rsa, c, csc, rsc, threads, tune,
        );
    }
    if k == 0 {
        for i in 0..m as isize {
            for j in 0..n as isize {
                c.offset(i * rsc + j * csc).write(T::ZERO);
            }
        }
        return;
    }
    #[cfg(target_arch = "x86_64")]
    {
        if !tune.fallback && avx512::available() {
            return T::avx512(
                m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc, threads, tune,
            );
        }
    }
    // matrixmultiply picks its own thread count; the thresholds are for the AVX-512 path.
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (threads, tune);
    T::fallback(m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc);
}

/// Used when AVX-512 is missing: matrixmultiply's kernels (AVX2/FMA where present).
/// Arguments in matrixmultiply's order (m, k, n); beta = 0, so C is never read.
mod fallback {
    use super::Elem;
    use matrixmultiply::{dgemm as mm_dgemm, sgemm as mm_sgemm};

    /// # Safety
    /// As for [`super::sgemm`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn sgemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f32,
        rsa: isize,
        csa: isize,
        b: *const f32,
        rsb: isize,
        csb: isize,
        c: *mut f32,
        rsc: isize,
        csc: isize,
    ) {
        mm_sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc);
    }

    /// # Safety
    /// As for [`super::sgemm`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn dgemm(
        m: usize,
        k: usize,
        n: usize,
        a: *const f64,
        rsa: isize,
        csa: isize,
        b: *const f64,
        rsb: isize,
        csb: isize,
        c: *mut f64,
        rsc: isize,
        csc: isize,
    ) {
        mm_dgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, 0.0, c, rsc, csc);
    }

    /// Half types: widen to contiguous f32 copies, multiply, round once into C.
    ///
    /// # Safety
    /// As for [`super::sgemm`].
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn hgemm<T: Elem<Acc = f32>>(
        m: usize,
        k: usize,
        n: usize,
        a: *const T,
        rsa: isize,
        csa: isize,
        b: *const T,
        rsb: isize,
        csb: isize,
        c: *mut T,
        rsc: isize,
        csc: isize,
    ) {
        let widen = |r: usize, cl: usize, p: *const T, rs: isize, cs: isize| -> Vec<f32> {
            let mut out = Vec::with_capacity(r * cl);
            for i in 0..r as isize {
                for j in 0..cl as isize {
                    out.push(p.offset(i * rs + j * cs).read().to_acc());
                }
            }
            out
        };
        let (wa, wb) = (widen(m, k, a, rsa, csa), widen(k, n, b, rsb, csb));
        let mut wc = vec![0f32; m * n];
        let (ni, ki) = (n as isize, k as isize);
        let (pa, pb, pc) = (wa.as_ptr(), wb.as_ptr(), wc.as_mut_ptr());
        mm_sgemm(m, k, n, 1.0, pa, ki, 1, pb, ni, 1, 0.0, pc, ni, 1);
        for i in 0..m {
            for j in 0..n {
                let p = c.offset(i as isize * rsc + j as isize * csc);
                p.write(T::from_acc(wc[i * n + j]));
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{bf16, f16, wait_for, Elem, Tune};
    use core::arch::x86_64::*;
    use core::cell::Cell;
    use core::sync::atomic::{AtomicUsize, Ordering};

    /// Whether this path can run: F for the kernels, BW/VL for 16-bit masked loads and
    /// stores (every AVX-512 CPU since Skylake-SP has all three).
    pub(super) fn available() -> bool {
        std::is_x86_feature_detected!("avx512f")
            && std::is_x86_feature_detected!("avx512bw")
            && std::is_x86_feature_detected!("avx512vl")
    }

    /// A microkernel; see [`kernel`] for the arguments.
    type KernFn<T> = unsafe fn(usize, *const T, *const T, isize, *mut T, isize, usize, bool, Ahead);

    /// Lines for a kernel to prefetch into L2, one per step of k: `n` lines `step` bytes
    /// apart from `p`. Packing A otherwise waits on memory for every line it reads; spread
    /// over the kernel loops of the previous row block the prefetches cost a load slot each
    /// (measured: packing A went from 6% to 2% of a 1024³ product with A row-major; with A
    /// column-major packing stays near 8%, bound by a TLB miss per column instead).
    #[derive(Clone, Copy)]
    pub(super) struct Ahead {
        p: *const i8,
        step: isize,
        n: usize,
    }

    const NO_AHEAD: Ahead = Ahead {
        p: core::ptr::null(),
        step: 0,
        n: 0,
    };

    /// Rows of B the kernel prefetches ahead (B streams from L2; the hardware prefetchers
    /// alone left the kernel at about half speed).
    const PF_ROWS: isize = 8;

    /// SIMD operations and blocking parameters of one accumulation type.
    pub(super) trait Lane: Copy + Send + Sync + 'static {
        type V: Copy;
        /// Lanes per vector.
        const L: usize;
        /// Microkernel rows, and vectors per row (NR = NV * L).
        const MR: usize;
        const NV: usize;
        /// Depth of a block: the A micro-panel (MR × KC) stays in L1.
        const KC: usize;
        /// Width of a block, a multiple of NR: the B block (KC × NC) stays in L2.
        const NC: usize;
        const ZERO: Self;
        unsafe fn zero() -> Self::V;
        unsafe fn loadu(p: *const Self) -> Self::V;
        /// The first `n ≤ L` lanes from `p`, the rest zero.
        unsafe fn load_n(p: *const Self, n: usize) -> Self::V;
        unsafe fn bcast(p: *const Self) -> Self::V;
        unsafe fn fmadd(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
        unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
        unsafe fn storeu(p: *mut Self, v: Self::V);
        unsafe fn store_n(p: *mut Self, v: Self::V, n: usize);
        /// Transposes the `L × L` block in `r[0..L]` (row i becomes column i).
        unsafe fn transpose(r: &mut [Self::V; 16]);
        /// Row stride of an A micro-panel packed by rows: KC padded so the MR rows fall in
        /// different L1 sets.
        const KCP: usize;
        /// The microkernel for an `mr × (nv*L)` tile (1 ≤ mr ≤ MR, 1 ≤ nv ≤ NV), reading A
        /// packed by columns (`cols`) or by rows; see [`kernel`].
        /// `prefetch`: whether B streams from L2 (packed blocks; see [`kernel`]).
        fn kernel(mr: usize, nv: usize, cols: bool, prefetch: bool) -> KernFn<Self>;
    }

    #[inline(always)]
    fn mask(n: usize) -> u32 {
        (1u32 << n) - 1
    }

    /// Index vector for stage `d` of the block-swap transpose of `l × l` lanes (see
    /// [`Lane::transpose`]): for row `i` (bit d clear, `hi` false) its own lanes where lane bit
    /// d is clear and row `i + d`'s lower lanes elsewhere; for row `i + d` (`hi`) the rest.
    const fn tidx(l: usize, d: usize, hi: bool) -> [i32; 16] {
        let mut out = [0i32; 16];
        let mut j = 0;
        while j < l {
            let upper = j & d != 0;
            out[j] = match (hi, upper) {
                (false, false) => j,
                (false, true) => l + j - d,
                (true, false) => j + d,
                (true, true) => l + j,
            } as i32;
            j += 1;
        }
        out
    }

    /// One transpose stage over pairs (i, i + D).
    #[inline(always)]
    unsafe fn stage<V: Copy, const D: usize>(
        r: &mut [V; 16],
        n: usize,
        f: impl Fn(V, V, bool) -> V,
    ) {
        for g in (0..n).step_by(2 * D) {
            for i in g..g + D {
                let (x, y) = (r[i], r[i + D]);
                r[i] = f(x, y, false);
                r[i + D] = f(x, y, true);
            }
        }
    }

    impl Lane for f32 {
        type V = __m512;
        const L: usize = 16;
        const MR: usize = 8;
        const NV: usize = 3;
        const KC: usize = 512;
        const NC: usize = 528;
        const ZERO: f32 = 0.0;
        #[inline(always)]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline(always)]
        unsafe fn loadu(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
            _mm512_maskz_loadu_ps(mask(n) as u16, p)
        }
        #[inline(always)]
        unsafe fn bcast(p: *const f32) -> __m512 {
            _mm512_set1_ps(*p)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline(always)]
        unsafe fn storeu(p: *mut f32, v: __m512) {
            _mm512_storeu_ps(p, v)
        }
        #[inline(always)]
        unsafe fn store_n(p: *mut f32, v: __m512, n: usize) {
            _mm512_mask_storeu_ps(p, mask(n) as u16, v)
        }
        #[inline(always)]
        unsafe fn transpose(r: &mut [__m512; 16]) {
            // Swap the off-diagonal d×d blocks of every 2d×2d block for d = 8, 4, 2, 1.
            macro_rules! st {
                ($d:literal) => {{
                    const LO: [i32; 16] = tidx(16, $d, false);
                    const HI: [i32; 16] = tidx(16, $d, true);
                    let lo = _mm512_loadu_si512(LO.as_ptr().cast());
                    let hi = _mm512_loadu_si512(HI.as_ptr().cast());
                    stage::<_, $d>(r, 16, |x, y, h| {
                        _mm512_permutex2var_ps(x, if h { hi } else { lo }, y)
                    });
                }};
            }
            st!(8);
            st!(4);
            st!(2);
            st!(1);
        }
        const KCP: usize = 512 + 16;
        fn kernel(mr: usize, nv: usize, cols: bool, prefetch: bool) -> KernFn<f32> {
            F32_KERNELS[prefetch as usize][cols as usize][mr - 1][nv - 1]
        }
    }

    impl Lane for f64 {
        type V = __m512d;
        const L: usize = 8;
        const MR: usize = 8;
        const NV: usize = 3;
        const KC: usize = 256;
        const NC: usize = 528;
        const ZERO: f64 = 0.0;
        #[inline(always)]
        unsafe fn zero() -> __m512d {
            _mm512_setzero_pd()
        }
        #[inline(always)]
        unsafe fn loadu(p: *const f64) -> __m512d {
            _mm512_loadu_pd(p)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f64, n: usize) -> __m512d {
            _mm512_maskz_loadu_pd(mask(n) as u8, p)
        }
        #[inline(always)]
        unsafe fn bcast(p: *const f64) -> __m512d {
            _mm512_set1_pd(*p)
        }
        #[inline(always)]
        unsafe fn fmadd(a: __m512d, b: __m512d, c: __m512d) -> __m512d {
            _mm512_fmadd_pd(a, b, c)
        }
        #[inline(always)]
        unsafe fn add(a: __m512d, b: __m512d) -> __m512d {
            _mm512_add_pd(a, b)
        }
        #[inline(always)]
        unsafe fn storeu(p: *mut f64, v: __m512d) {
            _mm512_storeu_pd(p, v)
        }
        #[inline(always)]
        unsafe fn store_n(p: *mut f64, v: __m512d, n: usize) {
            _mm512_mask_storeu_pd(p, mask(n) as u8, v)
        }
        #[inline(always)]
        unsafe fn transpose(r: &mut [__m512d; 16]) {
            // As for f32, on r[0..8].
            macro_rules! st {
                ($d:literal) => {{
                    const LO: [i32; 16] = tidx(8, $d, false);
                    const HI: [i32; 16] = tidx(8, $d, true);
                    let lo = _mm512_cvtepi32_epi64(_mm256_loadu_si256(LO.as_ptr().cast()));
                    let hi = _mm512_cvtepi32_epi64(_mm256_loadu_si256(HI.as_ptr().cast()));
                    stage::<_, $d>(r, 8, |x, y, h| {
                        _mm512_permutex2var_pd(x, if h { hi } else { lo }, y)
                    });
                }};
            }
            st!(4);
            st!(2);
            st!(1);
        }
        const KCP: usize = 256 + 8;
        fn kernel(mr: usize, nv: usize, cols: bool, prefetch: bool) -> KernFn<f64> {
            F64_KERNELS[prefetch as usize][cols as usize][mr - 1][nv - 1]
        }
    }

    macro_rules! kernel_row {
        ($t:ty, $pf:literal, $cols:literal, $mr:literal, [$($nv:literal),*]) => {
            [$(kernel::<$t, $mr, $nv, $cols, $pf> as KernFn<$t>),*]
        };
    }
    macro_rules! kernel_table {
        ($t:ty, $pf:literal, $cols:literal) => {
            [
                kernel_row!($t, $pf, $cols, 1, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 2, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 3, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 4, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 5, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 6, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 7, [1, 2, 3]),
                kernel_row!($t, $pf, $cols, 8, [1, 2, 3]),
            ]
        };
    }
    /// Kernels by [prefetch][cols][mr - 1][nv - 1].
    type Table<T> = [[[[KernFn<T>; 3]; 8]; 2]; 2];
    static F32_KERNELS: Table<f32> = [
        [
            kernel_table!(f32, false, false),
            kernel_table!(f32, false, true),
        ],
        [
            kernel_table!(f32, true, false),
            kernel_table!(f32, true, true),
        ],
    ];
    static F64_KERNELS: Table<f64> = [
        [
            kernel_table!(f64, false, false),
            kernel_table!(f64, false, true),
        ],
        [
            kernel_table!(f64, true, false),
            kernel_table!(f64, true, true),
        ],
    ];

    /// `C[0..MR, 0..nr] (+)= A · B` over `k` steps.
    ///
    /// A is a packed micro-panel: element (i, p) at `a + p*MR + i` when `COLS`, else at
    /// `a + i*KCP + p` (compile-time offsets, so the loop does no address arithmetic beyond
    /// two pointer bumps). Row p of B is `NV*L` contiguous values at `b + p*rsb`; row i of C is
    /// contiguous at `c + i*rsc` (see [`with_tile`] for other C layouts). With `accumulate` C
    /// is read and added to, otherwise only written; `nr ≤ NV*L` columns are stored.
    ///
    /// # Safety
    /// AVX-512F/BW/VL present; all those elements readable / writable.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    #[allow(clippy::too_many_arguments)]
    unsafe fn kernel<
        T: Lane,
        const MR: usize,
        const NV: usize,
        const COLS: bool,
        const PF: bool,
    >(
        k: usize,
        a: *const T,
        b: *const T,
        rsb: isize,
        c: *mut T,
        rsc: isize,
        nr: usize,
        accumulate: bool,
        ahead: Ahead,
    ) {
        if accumulate {
            // The tile is read at the end; start fetching it now.
            for i in 0..MR {
                for v in 0..NV {
                    let p = c.wrapping_offset(i as isize * rsc).wrapping_add(v * T::L);
                    _mm_prefetch::<_MM_HINT_T0>(p.cast());
                }
            }
        }
        let (ai, ap) = if COLS { (1, MR) } else { (T::KCP, 1) };
        let mut acc = [[T::zero(); NV]; MR];
        let (mut a, mut b) = (a, b);
        macro_rules! step {
            () => {
                let mut bv = [T::zero(); NV];
                for (v, x) in bv.iter_mut().enumerate() {
                    *x = T::loadu(b.add(v * T::L));
                    if PF {
                        let pf = b.wrapping_offset(PF_ROWS * rsb).wrapping_add(v * T::L);
                        _mm_prefetch::<_MM_HINT_T0>(pf.cast());
                    }
                }
                for (i, row) in acc.iter_mut().enumerate() {
                    let x = T::bcast(a.add(i * ai));
                    for (s, y) in row.iter_mut().zip(&bv) {
                        *s = T::fmadd(x, *y, *s);
                    }
                }
                a = a.add(ap);
                b = b.offset(rsb);
            };
        }
        // The first steps also pull lines of the next A block towards L2 (see [`Ahead`]).
        let head = ahead.n.min(k);
        let mut pa = ahead.p;
        for _ in 0..head {
            step!();
            _mm_prefetch::<_MM_HINT_T1>(pa);
            pa = pa.wrapping_offset(ahead.step);
        }
        for _ in head..k {
            step!();
        }
        store_tile::<T, MR, NV>(acc, c, rsc, nr, accumulate);
    }

    /// Writes (or adds) a register tile to rows of C.
    #[inline(always)]
    unsafe fn store_tile<T: Lane, const MR: usize, const NV: usize>(
        acc: [[T::V; NV]; MR],
        c: *mut T,
        rsc: isize,
        nr: usize,
        accumulate: bool,
    ) {
        for (i, row) in acc.iter().enumerate() {
            let cr = c.offset(i as isize * rsc);
            for (v, &x) in row.iter().enumerate() {
                let j = v * T::L;
                if j + T::L <= nr {
                    let x = if accumulate {
                        T::add(x, T::loadu(cr.add(j)))
                    } else {
                        x
                    };
                    T::storeu(cr.add(j), x);
                } else if j < nr {
                    let w = nr - j;
                    let x = if accumulate {
                        T::add(x, T::load_n(cr.add(j), w))
                    } else {
                        x
                    };
                    T::store_n(cr.add(j), x, w);
                }
            }
        }
    }

    /// Elements of the largest register tile.
    const TILE: usize = 8 * 48;

    /// Runs `kern` on an `mr × nr` tile of C at `c` with strides (rsc, csc): in place when rows
    /// are contiguous, else through a contiguous copy.
    #[inline(always)]
    #[allow(clippy::too_many_arguments)]
    unsafe fn with_tile<T: Lane>(
        kern: KernFn<T>,
        k: usize,
        a: *const T,
        b: *const T,
        rsb: isize,
        c: *mut T,
        rsc: isize,
        csc: isize,
        mr: usize,
        nr: usize,
        accumulate: bool,
        ahead: Ahead,
    ) {
        if csc == 1 {
            return kern(k, a, b, rsb, c, rsc, nr, accumulate, ahead);
        }
        let mut tile = [T::ZERO; TILE];
        let w = T::NV * T::L;
        debug_assert!(T::MR * w <= TILE);
        let at = |i: usize, j: usize| c.offset(i as isize * rsc + j as isize * csc);
        if accumulate {
            for i in 0..mr {
                for j in 0..nr {
                    tile[i * w + j] = *at(i, j);
                }
            }
        }
        kern(
            k,
            a,
            b,
            rsb,
            tile.as_mut_ptr(),
            w as isize,
            nr,
            accumulate,
            ahead,
        );
        for i in 0..mr {
            for j in 0..nr {
                *at(i, j) = tile[i * w + j];
            }
        }
    }

    /// Element types on the AVX-512 path: loading as accumulation vectors, rounding back.
    pub(super) trait Simd: Elem {
        type A: Lane;
        /// Whether the type is its own accumulation type (so A and B can be used in place
        /// and C written by the kernel).
        const SAME: bool;
        fn to_lane(self) -> Self::A;
        fn from_lane(x: Self::A) -> Self;
        /// `L` contiguous elements, widened.
        unsafe fn load(p: *const Self) -> <Self::A as Lane>::V;
        /// The first `n ≤ L` contiguous elements, widened; the rest zero.
        unsafe fn load_n(p: *const Self, n: usize) -> <Self::A as Lane>::V;
        /// Rounds and stores `n ≤ L` lanes of `v` at `p` (contiguous).
        unsafe fn store(p: *mut Self, v: <Self::A as Lane>::V, n: usize);
    }

    impl Simd for f32 {
        type A = f32;
        const SAME: bool = true;
        fn to_lane(self) -> f32 {
            self
        }
        fn from_lane(x: f32) -> f32 {
            x
        }
        #[inline(always)]
        unsafe fn load(p: *const f32) -> __m512 {
            _mm512_loadu_ps(p)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
            <f32 as Lane>::load_n(p, n)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512, n: usize) {
            f32::store_n(p, v, n)
        }
    }

    impl Simd for f64 {
        type A = f64;
        const SAME: bool = true;
        fn to_lane(self) -> f64 {
            self
        }
        fn from_lane(x: f64) -> f64 {
            x
        }
        #[inline(always)]
        unsafe fn load(p: *const f64) -> __m512d {
            _mm512_loadu_pd(p)
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f64, n: usize) -> __m512d {
            <f64 as Lane>::load_n(p, n)
        }
        #[inline(always)]
        unsafe fn store(p: *mut f64, v: __m512d, n: usize) {
            f64::store_n(p, v, n)
        }
    }

    impl Simd for f16 {
        type A = f32;
        const SAME: bool = false;
        fn to_lane(self) -> f32 {
            self.to_f32()
        }
        fn from_lane(x: f32) -> f16 {
            f16::from_f32(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const f16) -> __m512 {
            _mm512_cvtph_ps(_mm256_loadu_si256(p.cast()))
        }
        #[inline(always)]
        unsafe fn load_n(p: *const f16, n: usize) -> __m512 {
            _mm512_cvtph_ps(load_u16(p.cast(), n))
        }
        #[inline(always)]
        unsafe fn store(p: *mut f16, v: __m512, n: usize) {
            let h = _mm512_cvtps_ph::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v);
            store_u16(p.cast(), h, n);
        }
    }

    impl Simd for bf16 {
        type A = f32;
        const SAME: bool = false;
        fn to_lane(self) -> f32 {
            self.to_f32()
        }
        fn from_lane(x: f32) -> bf16 {
            bf16::from_f32(x)
        }
        #[inline(always)]
        unsafe fn load(p: *const bf16) -> __m512 {
            widen_bf16(_mm256_loadu_si256(p.cast()))
        }
        #[inline(always)]
        unsafe fn load_n(p: *const bf16, n: usize) -> __m512 {
            widen_bf16(load_u16(p.cast(), n))
        }
        #[inline(always)]
        unsafe fn store(p: *mut bf16, v: __m512, n: usize) {
            // Round to nearest even on the bit pattern. NaN keeps its top bits and is made
            // quiet (as half::bf16::from_f32 does), so rounding cannot carry it into infinity.
            let x = _mm512_castps_si512(v);
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(1));
            let r = _mm512_add_epi32(x, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), odd));
            let r = _mm512_srli_epi32::<16>(r);
            let nan = _mm512_or_si512(_mm512_srli_epi32::<16>(x), _mm512_set1_epi32(0x40));
            let is_nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            let r = _mm512_mask_blend_epi32(is_nan, r, nan);
            store_u16(p.cast(), _mm512_cvtepi32_epi16(r), n);
        }
    }

    /// bf16 is the top half of an f32.
    #[inline(always)]
    unsafe fn widen_bf16(h: __m256i) -> __m512 {
        _mm512_castsi512_ps(_mm512_slli_epi32::<16>(_mm512_cvtepu16_epi32(h)))
    }

    /// Loads `n ≤ 16` 16-bit values (the rest zero) without touching memory past them.
    #[inline(always)]
    unsafe fn load_u16(p: *const u16, n: usize) -> __m256i {
        _mm256_maskz_loadu_epi16(mask(n) as u16, p.cast())
    }

    /// Stores the first `n ≤ 16` 16-bit lanes of `h`.
    #[inline(always)]
    unsafe fn store_u16(p: *mut u16, h: __m256i, n: usize) {
        _mm256_mask_storeu_epi16(p.cast(), mask(n) as u16, h)
    }

    /// A per-thread, 64-byte aligned scratch buffer, reused across calls. Two slots: the
    /// caller's shared buffers (B block, workspace) and each worker's A micro-panels, which
    /// the calling thread needs at the same time.
    struct Scratch {
        buf: Vec<Align64>,
        slot: usize,
    }

    #[derive(Clone, Copy)]
    #[repr(align(64))]
    struct Align64 {
        _bytes: [u8; 64],
    }

    const SHARED: usize = 0;
    const PANELS: usize = 1;

    thread_local! {
        static SCRATCH: [Cell<Vec<Align64>>; 2] = const { [Cell::new(Vec::new()), Cell::new(Vec::new())] };
    }

    impl Scratch {
        /// Takes this thread's buffer of a slot (empty when a nested call, a rayon task run
        /// while this thread waits, holds it).
        fn take(slot: usize) -> Scratch {
            Scratch {
                buf: SCRATCH.with(|s| s[slot].take()),
                slot,
            }
        }
        /// Returns the buffer for reuse, unless it is very large (then it is freed).
        fn give_back(self) {
            if self.buf.capacity() * 64 <= 64 << 20 {
                SCRATCH.with(|s| s[self.slot].set(self.buf));
            }
        }
        /// At least `bytes` bytes, 64-byte aligned; contents unspecified (callers write
        /// before they read).
        fn get(&mut self, bytes: usize) -> *mut u8 {
            let n = bytes.div_ceil(64);
            if self.buf.capacity() < n {
                self.buf = Vec::with_capacity(n);
            }
            self.buf.as_mut_ptr().cast()
        }
    }

    /// Rows per call for f16/bf16 outputs (their f32 workspace is at most HALF_ROWS × NC).
    const HALF_ROWS: usize = 2048;

    /// # Safety
    /// As for [`super::sgemm`], with AVX-512F/BW/VL present, m, n, k > 0 and |csc| ≤ |rsc|.
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn run<I: Simd>(
        m: usize,
        n: usize,
        k: usize,
        a: *const I,
        rsa: isize,
        csa: isize,
        b: *const I,
        rsb: isize,
        csb: isize,
        c: *mut I,
        rsc: isize,
        csc: isize,
        threads: usize,
        tune: &Tune,
    ) {
        let (mrx, nrx) = (I::A::MR, I::A::NV * I::A::L);
        let work = m.saturating_mul(n).saturating_mul(k);
        // More threads than tiles of C cannot help.
        let tiles = m.div_ceil(mrx) * n.div_ceil(nrx);
        let t = threads.min(work / tune.par_min.max(1)).min(tiles).max(1);
        if t == 1 && I::SAME && k <= I::A::KC && work <= tune.direct_max {
            return direct::<I>(m, n, k, a, rsa, csa, b, rsb, csb, c, rsc, csc);
        }
        if !I::SAME && m > HALF_ROWS {
            // Rounded outputs keep f32 sums of m × NC in a workspace: bound it by taking the
            // rows in slices (B is packed again per slice, a small cost at this size).
            for i in (0..m).step_by(HALF_ROWS) {
                let (ai, ci) = (a.offset(i as isize * rsa), c.offset(i as isize * rsc));
                let mi = HALF_ROWS.min(m - i);
                run::<I>(
                    mi, n, k, ai, rsa, csa, b, rsb, csb, ci, rsc, csc, threads, tune,
                );
            }
            return;
        }
        let mut scratch = Scratch::take(SHARED);
        let job = Job::<I>::new(
            m,
            n,
            k,
            a,
            rsa,
            csa,
            b,
            rsb,
            csb,
            c,
            rsc,
            csc,
            t,
            &mut scratch,
        );
        if t == 1 {
            job.work();
        } else {
            // The calling thread works too. Helpers are detached: one that starts late finds
            // less (or nothing) left to claim, and the caller never waits for it to start,
            // only for tasks it has claimed.
            let job = std::sync::Arc::new(job);
            for _ in 1..t {
                let job = job.clone();
                // SAFETY: AVX-512 was detected before `run` (and the helper runs on the same
                // machine); the job's pointers are only used under the task protocol, see the
                // Sync impl of Job.
                rayon::spawn(move || unsafe { job.work() });
            }
            job.work();
            job.wait_all();
        }
        scratch.give_back();
    }

    /// Single-threaded multiply with k ≤ KC for A and B of the accumulation type: B rows are
    /// read in place when contiguous (B is only packed when its rows are strided), A is packed
    /// one micro-panel at a time (a cheap copy that lets the kernel use fixed offsets).
    #[allow(clippy::too_many_arguments)]
    unsafe fn direct<I: Simd>(
        m: usize,
        n: usize,
        k: usize,
        a: *const I,
        rsa: isize,
        csa: isize,
        b: *const I,
        rsb: isize,
        csb: isize,
        c: *mut I,
        rsc: isize,
        csc: isize,
    ) {
        let (mrx, l) = (I::A::MR, I::A::L);
        let nrx = I::A::NV * l;
        let sz = size_of::<I::A>();
        let c = c as *mut I::A;
        let mut scratch = Scratch::take(PANELS);
        let abytes = (mrx * I::A::KCP * sz).div_ceil(64) * 64;
        let base = scratch.get(abytes + k * n.div_ceil(nrx) * nrx * sz);
        let (abuf, bbuf) = (base as *mut I::A, base.add(abytes) as *mut I::A);
        // Panels that cannot be read in place: all when B's rows are strided, else only a
        // last panel that ends inside a vector.
        let panels = n.div_ceil(nrx);
        // Every strip of A streams all of B: prefetch unless B stays in L1 (48 KiB).
        let prefetch = k * n * sz > 40 << 10;
        for q in 0..panels {
            let nr = nrx.min(n - q * nrx);
            if csb != 1 || nr % l != 0 {
                let src = b.offset((q * nrx) as isize * csb);
                pack_b::<I>(k, nr, src, rsb, csb, bbuf.add(q * k * nrx));
            }
        }
        for i in (0..m).step_by(mrx) {
            let mr = mrx.min(m - i);
            let cols = pack_a::<I>(mr, k, a.offset(i as isize * rsa), rsa, csa, abuf);
            for q in 0..panels {
                let j = q * nrx;
                let nr = nrx.min(n - j);
                let (bp, bs) = if csb == 1 && nr % l == 0 {
                    (b.add(j) as *const I::A, rsb)
                } else {
                    (bbuf.add(q * k * nrx) as *const I::A, nrx as isize)
                };
                let kern = I::A::kernel(mr, nr.div_ceil(l), cols, prefetch);
                let cp = c.offset(i as isize * rsc + j as isize * csc);
                with_tile(kern, k, abuf, bp, bs, cp, rsc, csc, mr, nr, false, NO_AHEAD);
            }
        }
        scratch.give_back();
    }

    /// One packed multiply, shared by the threads working on it.
    ///
    /// Blocks (jc over n by NC, then pc over k by KC) are processed in order; each has a pack
    /// phase (one task per B panel) and a compute phase (one task per strip of MR rows × a
    /// range of panels). Task ids are claimed in increasing order from `next`; `done` counts
    /// finished tasks, so a phase may start once `done` reaches the phase's first id.
    struct Job<I: Simd> {
        m: usize,
        n: usize,
        k: usize,
        a: *const I,
        rsa: isize,
        csa: isize,
        b: *const I,
        rsb: isize,
        csb: isize,
        c: *mut I,
        rsc: isize,
        csc: isize,
        /// Block depth and width (the last ones may be smaller).
        kc: usize,
        nc: usize,
        /// Rows per compute task (a multiple of MR): several micro-panels when A is
        /// column-contiguous, so packing reads whole cache lines of it.
        rows: usize,
        /// Panel ranges per compute task (1 unless there are too few row blocks to share).
        chunks: usize,
        /// Packed B block (kc × nc as nc/NR panels) and, for rounded outputs, the f32 sums of
        /// the current n block (m × nc).
        bbuf: *mut I::A,
        ws: *mut I::A,
        /// Number of tasks, and of threads sharing them.
        total: usize,
        threads: usize,
        next: AtomicUsize,
        done: AtomicUsize,
    }

    // SAFETY: the pointers are only dereferenced under the task protocol above: pack tasks of
    // a block write disjoint panels of `bbuf`, compute tasks read `bbuf` only after every pack
    // task of the block is done and write disjoint tiles of C / `ws`, and a block's pack tasks
    // start only after every compute task of the previous block is done (Acquire/Release on
    // `done`). The caller returns only once every task is done, and a thread that claims an
    // id past the last task touches nothing but the job's own fields (kept alive by an Arc).
    unsafe impl<I: Simd> Sync for Job<I> {}
    // SAFETY: as for Sync; the job is moved to helper threads only inside an Arc.
    unsafe impl<I: Simd> Send for Job<I> {}

    /// Where a thread is in the task sequence.
    struct Cursor {
        /// n block, k block (as offsets), and whether in the compute phase.
        j0: usize,
        p0: usize,
        compute: bool,
        /// First task id of the current phase and its number of tasks.
        start: usize,
        len: usize,
    }

    impl<I: Simd> Job<I> {
        #[allow(clippy::too_many_arguments)]
        unsafe fn new(
            m: usize,
            n: usize,
            k: usize,
            a: *const I,
            rsa: isize,
            csa: isize,
            b: *const I,
            rsb: isize,
            csb: isize,
            c: *mut I,
            rsc: isize,
            csc: isize,
            threads: usize,
            scratch: &mut Scratch,
        ) -> Job<I> {
            let nrx = I::A::NV * I::A::L;
            // Balanced blocks; the k split depends on k only (see the module docs).
            let kc = k.div_ceil(k.div_ceil(I::A::KC));
            let nc = n.div_ceil(n.div_ceil(I::A::NC)).div_ceil(nrx) * nrx;
            let rows = I::A::MR * if rsa == 1 && csa != 1 { 4 } else { 1 };
            let strips = m.div_ceil(rows);
            let chunks = if strips >= 4 * threads {
                1
            } else {
                (4 * threads).div_ceil(strips)
            };
            let chunks = chunks.min(nc / nrx);
            let sz = size_of::<I::A>();
            let bbytes = (kc * nc * sz).div_ceil(64) * 64;
            let wbytes = if I::SAME { 0 } else { m * nc * sz };
            let base = scratch.get(bbytes + wbytes);
            Job {
                m,
                n,
                k,
                a,
                rsa,
                csa,
                b,
                rsb,
                csb,
                c,
                rsc,
                csc,
                kc,
                nc,
                rows,
                chunks,
                bbuf: base.cast(),
                ws: base.add(bbytes).cast(),
                total: 0,
                threads,
                next: AtomicUsize::new(0),
                done: AtomicUsize::new(0),
            }
            .counted()
        }

        fn counted(mut self) -> Job<I> {
            let per_n_block = |j0| self.phase_len(j0, false) + self.phase_len(j0, true);
            let k_blocks = self.k.div_ceil(self.kc);
            self.total = (0..self.n)
                .step_by(self.nc)
                .map(|j0| per_n_block(j0) * k_blocks)
                .sum();
            self
        }

        /// Waits until every task is done (claimed ones are being run by live threads).
        fn wait_all(&self) {
            wait_for(&self.done, self.total);
        }

        /// Number of tasks in a phase.
        fn phase_len(&self, j0: usize, compute: bool) -> usize {
            let panels = self.nc.min(self.n - j0).div_ceil(I::A::NV * I::A::L);
            if compute {
                self.m.div_ceil(self.rows) * self.chunks.min(panels)
            } else {
                panels
            }
        }

        /// Claims and runs tasks until none are left.
        unsafe fn work(&self) {
            let mut scratch = Scratch::take(PANELS);
            let abuf = scratch.get(I::A::KCP * self.rows * size_of::<I::A>()) as *mut I::A;
            let mut cur = Cursor {
                j0: 0,
                p0: 0,
                compute: false,
                start: 0,
                len: self.phase_len(0, false),
            };
            'claim: loop {
                let id = self.next.fetch_add(1, Ordering::Relaxed);
                while id >= cur.start + cur.len {
                    cur.start += cur.len;
                    if !cur.compute {
                        cur.compute = true;
                    } else {
                        cur.compute = false;
                        cur.p0 += self.kc;
                        if cur.p0 >= self.k {
                            cur.p0 = 0;
                            cur.j0 += self.nc;
                            if cur.j0 >= self.n {
                                debug_assert_eq!(cur.start, self.total);
                                break 'claim;
                            }
                        }
                    }
                    cur.len = self.phase_len(cur.j0, cur.compute);
                }
                // Wait for the previous phase: only for tasks already claimed by threads
                // that are running them.
                wait_for(&self.done, cur.start);
                if cur.compute {
                    self.compute(&cur, id - cur.start, abuf);
                } else {
                    self.pack(&cur, id - cur.start);
                }
                self.done.fetch_add(1, Ordering::AcqRel);
            }
            scratch.give_back();
        }

        /// Slice `part` of `parts` of the A lines that row block `r0` reads for k block
        /// `p0..p0 + kc` (contiguous rows or columns of A only), as one strided run.
        fn ahead(&self, r0: usize, p0: usize, kc: usize, part: usize, parts: usize) -> Ahead {
            let per_line = 64 / size_of::<I>();
            let rows = self.rows.min(self.m - r0);
            let base = self
                .a
                .wrapping_offset(r0 as isize * self.rsa + p0 as isize * self.csa);
            let (len, runs, step) = if self.csa == 1 {
                (kc.div_ceil(per_line), rows, self.rsa)
            } else if self.rsa == 1 {
                (rows.div_ceil(per_line), kc, self.csa)
            } else {
                return NO_AHEAD;
            };
            // The region is `runs` runs of `len` lines, `step` elements apart. A call takes
            // one run (rows of A: 8 runs, the calls at least as many), or with many short
            // runs (columns of A) one line of each run in a range.
            let (row, ln, n) = if len >= runs {
                (part, 0, len)
            } else {
                let per = (parts / len).max(1);
                let (col, slice) = (part / per, part % per);
                let r0 = runs * slice / per;
                (r0, col, runs * (slice + 1) / per - r0)
            };
            if row >= runs || ln >= len {
                return NO_AHEAD;
            }
            let p = base
                .wrapping_offset(row as isize * step)
                .wrapping_add(ln * per_line);
            let step = if len >= runs {
                64
            } else {
                step * size_of::<I>() as isize
            };
            Ahead {
                p: p.cast(),
                step,
                n,
            }
        }

        /// Packs B panel `t` of the block at `cur`.
        unsafe fn pack(&self, cur: &Cursor, t: usize) {
            let nrx = I::A::NV * I::A::L;
            let kcur = self.kc.min(self.k - cur.p0);
            let j = t * nrx;
            let nr = nrx.min(self.nc.min(self.n - cur.j0) - j);
            let src = self
                .b
                .offset(cur.p0 as isize * self.rsb + (cur.j0 + j) as isize * self.csb);
            pack_b::<I>(
                kcur,
                nr,
                src,
                self.rsb,
                self.csb,
                self.bbuf.add(t * self.kc * nrx),
            );
        }

        /// Multiplies row strip `t / chunks` by panel range `t % chunks` of the block at `cur`.
        unsafe fn compute(&self, cur: &Cursor, t: usize, abuf: *mut I::A) {
            let (mrx, l) = (I::A::MR, I::A::L);
            let nrx = I::A::NV * l;
            let ncur = self.nc.min(self.n - cur.j0);
            let kcur = self.kc.min(self.k - cur.p0);
            let panels = ncur.div_ceil(nrx);
            let chunks = self.chunks.min(panels);
            let (block, chunk) = (t / chunks, t % chunks);
            let (q0, q1) = (panels * chunk / chunks, panels * (chunk + 1) / chunks);
            let r0 = block * self.rows;
            let rows = self.rows.min(self.m - r0);
            let (first, last) = (cur.p0 == 0, cur.p0 + kcur == self.k);
            let asrc = self
                .a
                .offset(r0 as isize * self.rsa + cur.p0 as isize * self.csa);
            let cols = pack_a::<I>(rows, kcur, asrc, self.rsa, self.csa, abuf);
            // Each kernel call prefetches a slice of the A block this thread will likely take
            // next (threads claim in turn).
            let next = r0 + self.rows * self.threads;
            let calls = rows.div_ceil(mrx) * (q1 - q0);
            let mut call = 0;
            for s in (0..rows).step_by(mrx) {
                let (i0, mr) = (r0 + s, mrx.min(rows - s));
                let ap = abuf.add(s * I::A::KCP);
                for q in q0..q1 {
                    let ahead = if next < self.m {
                        self.ahead(next, cur.p0, kcur, call, calls)
                    } else {
                        NO_AHEAD
                    };
                    call += 1;
                    let jp = q * nrx;
                    let nr = nrx.min(ncur - jp);
                    let kern = I::A::kernel(mr, nr.div_ceil(l), cols, true);
                    let (bp, bs) = (self.bbuf.add(q * self.kc * nrx), nrx as isize);
                    let col = (cur.j0 + jp) as isize * self.csc;
                    if I::SAME {
                        let cp = (self.c as *mut I::A).offset(i0 as isize * self.rsc + col);
                        let (rsc, csc) = (self.rsc, self.csc);
                        with_tile(kern, kcur, ap, bp, bs, cp, rsc, csc, mr, nr, !first, ahead);
                    } else {
                        let wp = self.ws.add(i0 * self.nc + jp);
                        kern(kcur, ap, bp, bs, wp, self.nc as isize, nr, !first, ahead);
                        if last {
                            let cp = self.c.offset(i0 as isize * self.rsc + col);
                            round_tile::<I>(mr, nr, wp, self.nc, cp, self.rsc, self.csc);
                        }
                    }
                }
            }
        }
    }

    /// Rounds an `mr × nr` tile of sums (row stride `ws`) into C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn round_tile<O: Simd>(
        mr: usize,
        nr: usize,
        w: *const O::A,
        ws: usize,
        c: *mut O,
        rsc: isize,
        csc: isize,
    ) {
        for i in 0..mr {
            let wr = w.add(i * ws);
            if csc == 1 {
                let cr = c.offset(i as isize * rsc);
                for j in (0..nr).step_by(O::A::L) {
                    O::store(cr.add(j), O::A::loadu(wr.add(j)), O::A::L.min(nr - j));
                }
            } else {
                for j in 0..nr {
                    *c.offset(i as isize * rsc + j as isize * csc) = O::from_lane(*wr.add(j));
                }
            }
        }
    }

    /// Packs `kc × nr` of B (nr ≤ NR) as kc rows of NR values, zero from nr up to the next
    /// vector boundary.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn pack_b<I: Simd>(
        kc: usize,
        nr: usize,
        b: *const I,
        rsb: isize,
        csb: isize,
        out: *mut I::A,
    ) {
        let l = I::A::L;
        let nrx = I::A::NV * l;
        let nvl = nr.div_ceil(l) * l;
        if csb == 1 {
            for p in 0..kc {
                let src = b.offset(p as isize * rsb);
                let dst = out.add(p * nrx);
                // Rows of B are far apart: fetch a few rows ahead (the hardware prefetchers
                // follow one stream per page).
                let ahead = src.wrapping_offset(8 * rsb);
                for j in (0..nr * size_of::<I>()).step_by(64) {
                    _mm_prefetch::<_MM_HINT_T0>(ahead.cast::<i8>().wrapping_add(j));
                }
                for j in (0..nvl).step_by(l) {
                    let x = if j + l <= nr {
                        I::load(src.add(j))
                    } else {
                        I::load_n(src.add(j), nr - j)
                    };
                    I::A::storeu(dst.add(j), x);
                }
            }
        } else if rsb == 1 {
            // Columns of B are contiguous: transpose L×L blocks in registers.
            let mut r = [I::A::zero(); 16];
            let mut p = 0;
            while p + l <= kc {
                for j in (0..nvl).step_by(l) {
                    let w = l.min(nr - j);
                    for (q, x) in r.iter_mut().enumerate().take(l) {
                        let col = b.offset((j + q) as isize * csb + p as isize);
                        *x = if q < w { I::load(col) } else { I::A::zero() };
                        _mm_prefetch::<_MM_HINT_T0>(col.wrapping_add(4 * l).cast());
                    }
                    I::A::transpose(&mut r);
                    for (q, &x) in r.iter().enumerate().take(l) {
                        I::A::storeu(out.add((p + q) * nrx + j), x);
                    }
                }
                p += l;
            }
            pack_b_scalar::<I>(p..kc, nr, nvl, b, rsb, csb, out);
        } else {
            pack_b_scalar::<I>(0..kc, nr, nvl, b, rsb, csb, out);
        }
    }

    /// Rows `ps` of [`pack_b`], one element at a time.
    unsafe fn pack_b_scalar<I: Simd>(
        ps: core::ops::Range<usize>,
        nr: usize,
        nvl: usize,
        b: *const I,
        rsb: isize,
        csb: isize,
        out: *mut I::A,
    ) {
        let nrx = I::A::NV * I::A::L;
        for p in ps {
            let dst = out.add(p * nrx);
            for j in 0..nvl {
                let x = if j < nr {
                    (*b.offset(p as isize * rsb + j as isize * csb)).to_lane()
                } else {
                    I::A::ZERO
                };
                *dst.add(j) = x;
            }
        }
    }

    /// Packs `rows × kc` of A (kc ≤ KC) as consecutive micro-panels of MR rows, each in a
    /// slot of MR × KCP elements: by rows (row stride KCP) when rows of A are contiguous,
    /// else by columns (column stride = the panel's row count). Returns whether it packed by
    /// columns. Column-contiguous A is read one column of all `rows` at a time, so a block of
    /// several panels touches each cache line and page of A once.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl")]
    unsafe fn pack_a<I: Simd>(
        rows: usize,
        kc: usize,
        a: *const I,
        rsa: isize,
        csa: isize,
        out: *mut I::A,
    ) -> bool {
        let (l, mrx, slot) = (I::A::L, I::A::MR, I::A::MR * I::A::KCP);
        if csa == 1 {
            for i in 0..rows {
                let src = a.offset(i as isize * rsa);
                let dst = out.add(i / mrx * slot + i % mrx * I::A::KCP);
                for p in (0..kc).step_by(l) {
                    let w = l.min(kc - p);
                    let x = if w == l {
                        I::load(src.add(p))
                    } else {
                        I::load_n(src.add(p), w)
                    };
                    I::A::store_n(dst.add(p), x, w);
                }
            }
            false
        } else if rsa == 1 {
            // MR ≤ L: one partial vector per panel and step of k.
            for p in 0..kc {
                let src = a.offset(p as isize * csa);
                for i in (0..rows).step_by(mrx) {
                    let mr = mrx.min(rows - i);
                    let x = I::load_n(src.add(i), mr);
                    I::A::store_n(out.add(i / mrx * slot + p * mr), x, mr);
                }
            }
            true
        } else {
            for p in 0..kc {
                let src = a.offset(p as isize * csa);
                for i in 0..rows {
                    let mr = mrx.min(rows - i / mrx * mrx);
                    let dst = out.add(i / mrx * slot + p * mr + i % mrx);
                    *dst = (*src.offset(i as isize * rsa)).to_lane();
                }
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Test-side view of an element type.
    trait TestElem: Elem + PartialEq + core::fmt::Debug {
        /// Unit roundoff of the accumulation type and relative rounding of the output.
        const U_ACC: f64;
        const U_OUT: f64;
        /// Spacing of the output type's subnormals (absolute rounding floor).
        const TINY: f64;
        fn from_f64(x: f64) -> Self;
        fn to_f64(self) -> f64;
        fn is_nan(self) -> bool {
            self.to_f64().is_nan()
        }
    }
    impl TestElem for f32 {
        const U_ACC: f64 = f32::EPSILON as f64 / 2.0;
        const U_OUT: f64 = 0.0;
        const TINY: f64 = 1e-45;
        fn from_f64(x: f64) -> f32 {
            x as f32
        }
        fn to_f64(self) -> f64 {
            self as f64
        }
    }
    impl TestElem for f64 {
        const U_ACC: f64 = f64::EPSILON / 2.0;
        const U_OUT: f64 = 0.0;
        const TINY: f64 = 0.0;
        fn from_f64(x: f64) -> f64 {
            x
        }
        fn to_f64(self) -> f64 {
            self
        }
    }
    impl TestElem for f16 {
        const U_ACC: f64 = f32::EPSILON as f64 / 2.0;
        const U_OUT: f64 = 1.0 / 2048.0;
        const TINY: f64 = 1.0 / 16777216.0;
        fn from_f64(x: f64) -> f16 {
            f16::from_f64(x)
        }
        fn to_f64(self) -> f64 {
            f16::to_f64(self)
        }
    }
    impl TestElem for bf16 {
        const U_ACC: f64 = f32::EPSILON as f64 / 2.0;
        const U_OUT: f64 = 1.0 / 256.0;
        const TINY: f64 = 1e-40;
        fn from_f64(x: f64) -> bf16 {
            bf16::from_f64(x)
        }
        fn to_f64(self) -> f64 {
            bf16::to_f64(self)
        }
    }

    /// How a `rows × cols` operand is laid out in its buffer.
    #[derive(Clone, Copy, Debug)]
    enum Layout {
        Row,
        Col,
        RowPad,
        ColPad,
        /// Neither stride is 1.
        Strided,
    }
    use Layout::*;
    const LAYOUTS: [Layout; 5] = [Row, Col, RowPad, ColPad, Strided];

    impl Layout {
        fn strides(self, rows: usize, cols: usize) -> (isize, isize) {
            let (r, c) = (rows as isize, cols as isize);
            match self {
                Row => (c, 1),
                Col => (1, r),
                RowPad => (c + 3, 1),
                ColPad => (1, r + 2),
                Strided => (2, 2 * r + 1),
            }
        }
    }

    /// A strided matrix in a buffer whose other elements hold `fill`.
    struct Mat<T> {
        buf: Vec<T>,
        rows: usize,
        cols: usize,
        rs: isize,
        cs: isize,
    }

    impl<T: TestElem> Mat<T> {
        fn new(rows: usize, cols: usize, l: Layout, fill: T) -> Mat<T> {
            let (rs, cs) = l.strides(rows, cols);
            let len = if rows * cols == 0 {
                1
            } else {
                (rows - 1) * rs as usize + (cols - 1) * cs as usize + 1
            };
            Mat {
                buf: vec![fill; len],
                rows,
                cols,
                rs,
                cs,
            }
        }
        fn idx(&self, i: usize, j: usize) -> usize {
            (i as isize * self.rs + j as isize * self.cs) as usize
        }
        fn get(&self, i: usize, j: usize) -> T {
            self.buf[self.idx(i, j)]
        }
        fn set(&mut self, i: usize, j: usize, x: T) {
            let q = self.idx(i, j);
            self.buf[q] = x;
        }
        /// Values in [-1, 1) from a fixed-seed generator, rounded to T.
        fn random(rows: usize, cols: usize, l: Layout, seed: u64) -> Mat<T> {
            // The padding holds NaN, so a read outside the view poisons the result.
            let mut mat = Mat::new(rows, cols, l, T::from_f64(f64::NAN));
            let mut s = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            for i in 0..rows {
                for j in 0..cols {
                    s ^= s << 13;
                    s ^= s >> 7;
                    s ^= s << 17;
                    let x = (s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0;
                    mat.set(i, j, T::from_f64(x));
                }
            }
            mat
        }
    }

    /// Naive product in f64 of the stored values, and per element a bound on Σ_p |a_ip·b_pj|
    /// (Σ_p |a_ip| · max_p |b_pj|, cheap to form and at most about twice the sum here).
    fn reference<T: TestElem>(a: &Mat<T>, b: &Mat<T>) -> (Vec<f64>, Vec<f64>) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        let av: Vec<f64> = (0..m * k).map(|q| a.get(q / k, q % k).to_f64()).collect();
        let bv: Vec<f64> = (0..k * n).map(|q| b.get(q / n, q % n).to_f64()).collect();
        let mut c = vec![0.0; m * n];
        for i in 0..m {
            for p in 0..k {
                let x = av[i * k + p];
                for j in 0..n {
                    c[i * n + j] += x * bv[p * n + j];
                }
            }
        }
        let row: Vec<f64> = (0..m)
            .map(|i| (0..k).map(|p| av[i * k + p].abs()).sum())
            .collect();
        let col: Vec<f64> = (0..n)
            .map(|j| (0..k).map(|p| bv[p * n + j].abs()).fold(0.0, f64::max))
            .collect();
        let abs = (0..m * n).map(|q| row[q / n] * col[q % n]).collect();
        (c, abs)
    }

    fn run<T: TestElem>(a: &Mat<T>, b: &Mat<T>, c: &mut Mat<T>, threads: usize, tune: &Tune) {
        let (m, k, n) = (a.rows, a.cols, b.cols);
        // SAFETY: every operand view lies inside its buffer (Mat::new sizes it), and C's
        // elements are distinct (its layouts have distinct offsets).
        unsafe {
            gemm::<T>(
                m,
                n,
                k,
                a.buf.as_ptr(),
                a.rs,
                a.cs,
                b.buf.as_ptr(),
                b.rs,
                b.cs,
                c.buf.as_mut_ptr(),
                c.rs,
                c.cs,
                threads,
                tune,
            )
        };
    }

    const DIRECT: Tune = Tune::DEFAULT;
    const PACKED: Tune = Tune {
        par_min: usize::MAX,
        direct_max: 0,
        fallback: false,
    };
    const PARALLEL: Tune = Tune {
        par_min: 1,
        direct_max: 0,
        fallback: false,
    };
    const FALLBACK: Tune = Tune {
        par_min: 1,
        direct_max: 0,
        fallback: true,
    };
    /// (tune, threads) pairs that between them reach every path: unpacked (small shapes),
    /// packed on one thread (shapes with a single tile, or PACKED), and packed shared by 2 or
    /// 3 threads.
    const PATHS: [(Tune, usize); 3] = [(DIRECT, 1), (PARALLEL, 2), (PARALLEL, 3)];

    /// Multiplies with each (tune, threads) and checks against the naive product, that C's
    /// padding is untouched, and that all AVX-512 runs agree bit for bit.
    fn check<T: TestElem>(m: usize, k: usize, n: usize, l: [Layout; 3], paths: &[(Tune, usize)]) {
        let seed = (m * 1_000_003 + k * 1009 + n) as u64;
        let a = Mat::<T>::random(m, k, l[0], seed);
        let b = Mat::<T>::random(k, n, l[1], seed + 1);
        let (want, abs) = reference(&a, &b);
        let sentinel = T::from_f64(-7.0);
        let mut first: Option<Vec<u64>> = None;
        for (tune, threads) in paths {
            let mut c = Mat::<T>::new(m, n, l[2], sentinel);
            // Elements of the view start as NaN: beta = 0 must not read them.
            for i in 0..m {
                for j in 0..n {
                    c.set(i, j, T::from_f64(f64::NAN));
                }
            }
            run(&a, &b, &mut c, *threads, tune);
            let ctx = || {
                format!(
                    "{m}x{k}x{n} {l:?} threads={threads} fallback={}",
                    tune.fallback
                )
            };
            let mut vals = Vec::with_capacity(m * n);
            for i in 0..m {
                for j in 0..n {
                    let (got, w, s) = (c.get(i, j).to_f64(), want[i * n + j], abs[i * n + j]);
                    let tol = T::U_OUT * w.abs() + 2.0 * (k as f64 + 2.0) * T::U_ACC * s + T::TINY;
                    assert!(
                        (got - w).abs() <= tol,
                        "{}: C[{i},{j}] = {got}, want {w} (tol {tol})",
                        ctx()
                    );
                    vals.push(got.to_bits());
                    c.set(i, j, sentinel);
                }
            }
            assert!(
                c.buf.iter().all(|&x| x == sentinel),
                "{}: wrote outside C",
                ctx()
            );
            if !tune.fallback {
                match &first {
                    None => first = Some(vals),
                    Some(f) => assert!(f == &vals, "{}: differs from the first path", ctx()),
                }
            }
        }
    }

    const NN: [Layout; 3] = [Row, Row, Row];

    #[test]
    fn every_small_shape_f32_f64() {
        let paths = &PATHS[..2];
        for m in 1..=40 {
            for n in 1..=40 {
                check::<f32>(m, 0, n, NN, &PATHS[..1]);
                for k in [1, 17] {
                    check::<f32>(m, k, n, NN, paths);
                    check::<f64>(m, k, n, NN, paths);
                }
            }
        }
        let sizes = [
            1, 2, 7, 8, 9, 15, 16, 17, 23, 24, 25, 31, 33, 40, 47, 48, 49,
        ];
        for &m in &sizes {
            for &n in &sizes {
                check::<f32>(m, 300, n, NN, paths);
                check::<f64>(m, 300, n, NN, paths);
            }
        }
    }

    #[test]
    fn small_shapes_half() {
        let sizes = [1, 3, 8, 9, 15, 16, 17, 31, 33, 40, 48, 49];
        for &m in &sizes {
            for &n in &sizes {
                for k in [1, 17, 300] {
                    check::<f16>(m, k, n, NN, &PATHS);
                    check::<bf16>(m, k, n, NN, &PATHS);
                }
            }
        }
    }

    #[test]
    fn every_layout() {
        for la in LAYOUTS {
            for lb in LAYOUTS {
                for lc in LAYOUTS {
                    for (m, k, n) in [(9, 17, 50), (33, 40, 20)] {
                        check::<f32>(m, k, n, [la, lb, lc], &PATHS);
                        check::<f64>(m, k, n, [la, lb, lc], &PATHS);
                        check::<f16>(m, k, n, [la, lb, lc], &PATHS);
                        check::<bf16>(m, k, n, [la, lb, lc], &PATHS);
                    }
                }
            }
        }
    }

    #[test]
    fn block_boundaries() {
        // f32 blocks are 512 deep and 528 wide, f64 256 and 528.
        for k in [255, 256, 257, 511, 512, 513, 1025] {
            check::<f32>(9, k, 50, NN, &PATHS);
            check::<f64>(9, k, 26, [Col, Row, Row], &PATHS);
            check::<bf16>(17, k, 20, [Row, Col, Row], &PATHS);
        }
        // f16/bf16 outputs are computed in slices of 2048 rows.
        check::<bf16>(2050, 3, 5, NN, &PATHS);
        check::<f16>(4097, 20, 3, [Col, Row, Row], &PATHS);
        for n in [527, 528, 529, 1057] {
            check::<f32>(10, 20, n, [Row, Col, Row], &PATHS);
            check::<f64>(3, 300, n, NN, &PATHS);
            check::<f16>(5, 40, n, NN, &PATHS);
        }
    }

    #[test]
    fn large_shapes() {
        let p2: [(Tune, usize); 2] = [(DIRECT, 1), (DIRECT, 2)];
        check::<f32>(513, 1031, 257, NN, &p2);
        check::<f32>(200, 300, 301, [Col, Col, Row], &p2);
        check::<f64>(129, 520, 300, [Row, Col, Row], &p2);
        check::<f16>(100, 700, 90, [Col, Row, Row], &p2);
        check::<bf16>(90, 600, 130, NN, &p2);
    }

    #[test]
    fn fallback_path() {
        for (la, lb, lc) in [(Row, Row, Row), (Col, Strided, Row), (RowPad, Col, Col)] {
            for (m, k, n) in [(1, 1, 1), (9, 17, 50), (33, 300, 20)] {
                let p = [(FALLBACK, 2)];
                check::<f32>(m, k, n, [la, lb, lc], &p);
                check::<f64>(m, k, n, [la, lb, lc], &p);
                check::<f16>(m, k, n, [la, lb, lc], &p);
                check::<bf16>(m, k, n, [la, lb, lc], &p);
            }
        }
    }

    /// Zero strides (a broadcast row) and negative strides (reversed views).
    fn odd_strides<T: TestElem>() {
        let (m, k, n) = (19, 33, 57);
        let a = Mat::<T>::random(1, k, Row, 1);
        let b = Mat::<T>::random(k, n, Row, 2);
        let want = reference(&Mat::<T>::random(1, k, Row, 1), &b).0;
        for (tune, threads) in PATHS.iter().chain([(FALLBACK, 1)].iter()) {
            // Every row of A is row 0 (rsa = 0); B is read bottom-up and right-to-left
            // through negative strides and C written the same way.
            let mut c = vec![T::from_f64(f64::NAN); m * n];
            let last_b = (k - 1) * n + (n - 1);
            // SAFETY: offsets stay inside the buffers: A row 0 only; B from its last element
            // backwards by -n and -1; C likewise.
            unsafe {
                gemm::<T>(
                    m,
                    n,
                    k,
                    a.buf.as_ptr(),
                    0,
                    1,
                    b.buf.as_ptr().add(last_b),
                    -(n as isize),
                    -1,
                    c.as_mut_ptr().add(m * n - 1),
                    -(n as isize),
                    -1,
                    *threads,
                    tune,
                )
            };
            // C[i][j] (stored reversed) = Σ_p A[0][p] · B[k-1-p][n-1-j].
            let rb: Vec<f64> = (0..k * n).map(|q| b.buf[last_b - q].to_f64()).collect();
            for j in 0..n {
                let w: f64 = (0..k).map(|p| a.buf[p].to_f64() * rb[p * n + j]).sum();
                let abs: f64 = (0..k)
                    .map(|p| (a.buf[p].to_f64() * rb[p * n + j]).abs())
                    .sum();
                let tol = T::U_OUT * w.abs() + 2.0 * (k as f64 + 2.0) * T::U_ACC * abs + T::TINY;
                for i in 0..m {
                    let got = c[m * n - 1 - (i * n + j)].to_f64();
                    assert!((got - w).abs() <= tol, "C[{i},{j}] = {got}, want {w}");
                }
            }
            let _ = &want;
        }
    }

    #[test]
    fn zero_and_negative_strides() {
        odd_strides::<f32>();
        odd_strides::<f64>();
        odd_strides::<f16>();
        odd_strides::<bf16>();
    }

    fn nan_inf<T: TestElem>() {
        let (m, k, n) = (21, 40, 53);
        for (tune, threads) in PATHS.iter().chain([(FALLBACK, 1)].iter()) {
            let mut a = Mat::<T>::random(m, k, Row, 3);
            let mut b = Mat::<T>::random(k, n, Row, 4);
            a.set(5, 7, T::from_f64(f64::NAN));
            b.set(11, 20, T::from_f64(f64::INFINITY));
            b.set(12, 31, T::from_f64(f64::NEG_INFINITY));
            b.set(13, 31, T::from_f64(f64::INFINITY));
            for i in 0..m {
                a.set(i, 12, T::from_f64(0.5));
                a.set(i, 13, T::from_f64(0.25));
            }
            let mut c = Mat::<T>::new(m, n, Row, T::ZERO);
            run(&a, &b, &mut c, *threads, tune);
            let (want, _) = reference(&a, &b);
            for i in 0..m {
                for j in 0..n {
                    let (got, w) = (c.get(i, j).to_f64(), want[i * n + j]);
                    if w.is_nan() || w.is_infinite() {
                        assert!(
                            got.is_nan() == w.is_nan() && (w.is_nan() || got == w),
                            "C[{i},{j}] = {got}, want {w}"
                        );
                    } else {
                        assert!(got.is_finite(), "C[{i},{j}] = {got}, want {w}");
                    }
                }
            }
            // A NaN in A poisons its row; ∞ and -∞ meeting in one column give NaN there.
            assert!((0..n).all(|j| c.get(5, j).is_nan()));
            assert!((0..m).all(|i| c.get(i, 31).is_nan()));
        }
    }

    #[test]
    fn nan_and_inf_propagate() {
        nan_inf::<f32>();
        nan_inf::<f64>();
        nan_inf::<f16>();
        nan_inf::<bf16>();
    }

    fn deterministic<T: TestElem>(m: usize, k: usize, n: usize) {
        let a = Mat::<T>::random(m, k, Row, 5);
        let b = Mat::<T>::random(k, n, Col, 6);
        let mut outs = vec![];
        for (tune, threads) in [
            (DIRECT, 1),
            (PACKED, 1),
            (PARALLEL, 2),
            (PARALLEL, 3),
            (DIRECT, 2),
        ] {
            let mut c = Mat::<T>::new(m, n, Row, T::ZERO);
            run(&a, &b, &mut c, threads, &tune);
            outs.push(c.buf);
        }
        assert!(
            outs.iter().all(|o| o == &outs[0]),
            "{m}x{k}x{n}: results depend on the path"
        );
    }

    #[test]
    fn same_bits_for_any_thread_count() {
        deterministic::<f32>(70, 400, 150);
        deterministic::<f32>(64, 1100, 100);
        deterministic::<f64>(50, 600, 70);
        deterministic::<bf16>(40, 700, 60);
        deterministic::<f16>(30, 100, 200);
    }

    /// Batched products equal the single products bit for bit, with B shared (stride 0).
    fn batched_for<T: TestElem>(batch: usize, m: usize, k: usize, n: usize) {
        let a = Mat::<T>::random(batch * m, k, Row, 7);
        let b = Mat::<T>::random(k, n, Col, 8);
        for (tune, threads) in PATHS {
            let mut c = vec![T::from_f64(f64::NAN); batch * m * n];
            let ops = Operands {
                m,
                n,
                k,
                a: a.buf.as_ptr(),
                rsa: a.rs,
                csa: a.cs,
                b: b.buf.as_ptr(),
                rsb: b.rs,
                csb: b.cs,
                c: c.as_mut_ptr(),
                rsc: n as isize,
                csc: 1,
            };
            // SAFETY: item q reads rows q*m..(q+1)*m of A and all of B, and writes its own
            // m × n block of C.
            unsafe {
                gemm_batched::<T>(
                    batch,
                    ops,
                    [(m * k) as isize, 0, (m * n) as isize],
                    threads,
                    &tune,
                )
            };
            for q in 0..batch {
                let aq = Mat::<T>::new(m, k, Row, T::ZERO);
                let aq = Mat {
                    buf: a.buf[q * m * k..(q + 1) * m * k].to_vec(),
                    ..aq
                };
                let mut cq = Mat::<T>::new(m, n, Row, T::ZERO);
                run(&aq, &b, &mut cq, 1, &tune);
                let got = &c[q * m * n..(q + 1) * m * n];
                assert!(
                    got.iter()
                        .zip(&cq.buf)
                        .all(|(x, y)| x.to_f64().to_bits() == y.to_f64().to_bits()),
                    "batch item {q}"
                );
            }
        }
    }

    #[test]
    fn batched_matches_single() {
        batched_for::<f32>(37, 9, 20, 30);
        batched_for::<f64>(5, 17, 33, 8);
        batched_for::<bf16>(12, 3, 40, 50);
        batched_for::<f16>(3, 40, 30, 20);
    }

    fn k_zero_and_empty_for<T: TestElem>() {
        let (m, n) = (5, 7);
        let mut c = Mat::<T>::new(m, n, RowPad, T::from_f64(f64::NAN));
        let (a, b) = (
            Mat::<T>::new(m, 0, Row, T::ZERO),
            Mat::<T>::new(0, n, Row, T::ZERO),
        );
        run(&a, &b, &mut c, 2, &DIRECT);
        for i in 0..m {
            for j in 0..n {
                assert!(c.get(i, j) == T::ZERO);
            }
        }
        // m == 0 or n == 0: nothing is written.
        let mut c = Mat::<T>::new(1, 1, Row, T::from_f64(3.0));
        let (a0, b3) = (
            Mat::<T>::new(0, 3, Row, T::ZERO),
            Mat::<T>::new(3, 1, Row, T::ZERO),
        );
        run(
            &a0,
            &b3,
            &mut Mat {
                buf: c.buf.clone(),
                rows: 0,
                cols: 1,
                rs: 1,
                cs: 1,
            },
            1,
            &DIRECT,
        );
        let (a3, b0) = (
            Mat::<T>::new(1, 3, Row, T::ZERO),
            Mat::<T>::new(3, 0, Row, T::ZERO),
        );
        c.cols = 0;
        run(&a3, &b0, &mut c, 1, &DIRECT);
        assert!(c.buf[0] == T::from_f64(3.0));
    }

    #[test]
    fn k_zero_writes_zeros_and_empty_is_a_no_op() {
        k_zero_and_empty_for::<f32>();
        k_zero_and_empty_for::<f64>();
        k_zero_and_empty_for::<f16>();
        k_zero_and_empty_for::<bf16>();
    }

    /// The vector rounding of f16/bf16 outputs matches `half`'s scalar conversions bit for
    /// bit, specials and ties included.
    #[test]
    #[cfg(target_arch = "x86_64")]
    fn output_rounding_matches_half() {
        use avx512::Simd;
        if !avx512::available() {
            return;
        }
        let mut bits: Vec<u32> = vec![
            0,
            0x8000_0000,
            0x7f80_0000,
            0xff80_0000,
            0x7fc0_0000,
            0x7f80_0001,
            0xff81_2345,
            0x7fff_ffff,
            0x0000_0001,
            0x0080_0000,
            0x3f80_8000,
            0x3f81_8000,
            0x3f80_8001,
            0x477f_f000,
            0x477f_efff,
            0x7f7f_ffff,
            0x3380_0000,
            0x3300_0001,
            0x387f_e000,
        ];
        let mut s = 0x1234_5678_9abc_def0u64;
        for _ in 0..20000 {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            bits.push((s >> 32) as u32);
        }
        bits.resize(bits.len().div_ceil(16) * 16, 0);
        for chunk in bits.chunks(16) {
            let x: Vec<f32> = chunk.iter().map(|&b| f32::from_bits(b)).collect();
            let (mut h, mut g) = ([f16::ZERO; 16], [bf16::ZERO; 16]);
            // SAFETY: AVX-512F/BW/VL checked above; 16 lanes read from and written to 16-element arrays.
            unsafe {
                let v = core::arch::x86_64::_mm512_loadu_ps(x.as_ptr());
                f16::store(h.as_mut_ptr(), v, 16);
                bf16::store(g.as_mut_ptr(), v, 16);
            }
            for (q, &xf) in x.iter().enumerate() {
                let (wh, wg) = (f16::from_f32(xf), bf16::from_f32(xf));
                assert!(
                    h[q].to_bits() == wh.to_bits() || (wh.is_nan() && h[q].is_nan()),
                    "f16({xf:e})"
                );
                assert!(
                    g[q].to_bits() == wg.to_bits() || (wg.is_nan() && g[q].is_nan()),
                    "bf16({xf:e})"
                );
            }
        }
    }
}
