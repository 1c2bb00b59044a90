//! Host buffers for large outputs.
//!
//! A fresh 100 MB output costs about as much in first-touch page faults as the kernel that
//! fills it. On Linux, large buffers are advised as transparent huge pages
//! (`MADV_HUGEPAGE`, as PyTorch's CPU allocator does), which cuts the faults 512-fold where
//! the system allows it (`/sys/kernel/mm/transparent_hugepage/enabled` = `madvise` or
//! `always`); elsewhere this is a plain allocation.

use std::mem::MaybeUninit;

/// Buffers at least this large are advised as huge pages.
const HUGE_MIN_BYTES: usize = 4 << 20;

/// A vector with capacity for `n` elements, uninitialised, advised for huge pages when large.
/// Fallible: a size beyond what the allocator can give returns the bytes asked for instead
/// of aborting the process (sizes come from users and files).
pub(crate) fn try_alloc_uninit<T>(n: usize) -> std::result::Result<Vec<T>, u128> {
    let bytes = n as u128 * std::mem::size_of::<T>() as u128;
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| bytes)?;
    if bytes >= HUGE_MIN_BYTES as u128 {
        advise_huge(v.spare_capacity_mut().as_mut_ptr() as usize, bytes as usize);
    }
    Ok(v)
}

/// [`try_alloc_uninit`] for a copy of data already in memory (the conversion report's
/// output is no larger than its input's element count), where the input's existence bounds
/// the size.
pub(crate) fn alloc_uninit<T>(n: usize) -> Vec<T> {
    try_alloc_uninit(n).unwrap_or_else(|bytes| {
        std::alloc::handle_alloc_error(
            std::alloc::Layout::from_size_align(bytes.min(isize::MAX as u128) as usize, 1)
                .unwrap_or(std::alloc::Layout::new::<u8>()),
        )
    })
}

/// [`try_alloc_uninit`] with the error a kernel returns: it names the op, the dtype, the
/// shape and the bytes (as PyTorch's "you tried to allocate N bytes" does).
pub(crate) fn alloc_for<T: crate::element::Element>(
    n: usize,
    op: &str,
    shape: &[usize],
) -> crate::error::Result<Vec<T>> {
    try_alloc_uninit::<T>(n).map_err(|bytes| crate::error::KilnError::OutOfMemory {
        op: op.to_string(),
        dtype: T::DTYPE,
        shape: shape.to_vec(),
        bytes,
    })
}

#[cfg(target_os = "linux")]
fn advise_huge(addr: usize, len: usize) {
    const HUGE: usize = 2 << 20;
    let start = (addr + HUGE - 1) & !(HUGE - 1);
    let end = (addr + len) & !(HUGE - 1);
    if end > start {
        // SAFETY: [start, end) lies inside the allocation just made; MADV_HUGEPAGE only
        // changes how the kernel backs those pages, never their contents or validity. A
        // failure (THP disabled) is harmless and ignored.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_HUGEPAGE);
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn advise_huge(_addr: usize, _len: usize) {}

/// The first `n` items of `iter` collected into a fallibly allocated vector (host buffers of
/// creation ops, whose sizes come from users).
pub(crate) fn collect_for<T: crate::element::Element>(
    n: usize,
    op: &str,
    shape: &[usize],
    iter: impl Iterator<Item = T>,
) -> crate::error::Result<Vec<T>> {
    let mut v = alloc_for::<T>(n, op, shape)?;
    v.extend(iter.take(n));
    Ok(v)
}

/// Checks, before any work, that an output of `shape` in `dtype` can be allocated: the
/// element and byte counts must not overflow, and a large buffer is asked of the allocator
/// once (and given back) so that an engine whose own allocations abort on failure (candle's)
/// is never handed a size that cannot be met. Returns the element count.
pub(crate) fn check_output(
    op: &str,
    shape: &[usize],
    dtype: crate::DType,
) -> crate::error::Result<usize> {
    let oom = |bytes: u128| crate::error::KilnError::OutOfMemory {
        op: op.to_string(),
        dtype,
        shape: shape.to_vec(),
        bytes,
    };
    let n = shape
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
        .ok_or_else(|| oom(u128::MAX))?;
    let bytes = n.saturating_mul(dtype.itemsize() as u128);
    if bytes > isize::MAX as u128 {
        return Err(oom(bytes));
    }
    if bytes >= 64 << 20 {
        // An untouched reservation costs an mmap and an munmap, not the memory itself.
        let mut probe: Vec<u8> = Vec::new();
        probe
            .try_reserve_exact(bytes as usize)
            .map_err(|_| oom(bytes))?;
    }
    Ok(n as usize)
}

/// A vector of `n` zeros, allocated fallibly with `alloc_zeroed`: a large one maps fresh
/// zero pages that the kernel fills on first touch (as NumPy's `zeros` does), instead of
/// writing every byte up front. Only for element types whose all-zero bit pattern is their
/// zero (every kiln element: bool, integers, IEEE floats, complex).
pub(crate) fn zeroed_for<T: crate::element::Element>(
    n: usize,
    op: &str,
    shape: &[usize],
) -> crate::error::Result<Vec<T>> {
    let err = || crate::error::KilnError::OutOfMemory {
        op: op.to_string(),
        dtype: T::DTYPE,
        shape: shape.to_vec(),
        bytes: n as u128 * std::mem::size_of::<T>() as u128,
    };
    if n == 0 || std::mem::size_of::<T>() == 0 {
        return Ok(Vec::new());
    }
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| err())?;
    // SAFETY: the layout has a non-zero size (checked above).
    let p = unsafe { std::alloc::alloc_zeroed(layout) } as *mut T;
    if p.is_null() {
        return Err(err());
    }
    // SAFETY: `p` was allocated by the global allocator with the layout of `n` T's (what
    // Vec uses for capacity n); all-zero bytes are a valid T (see the doc above), so all n
    // elements are initialised.
    Ok(unsafe { Vec::from_raw_parts(p, n, n) })
}

/// Below this many elements of compute-bound work (transcendental maps, row softmax) a
/// kernel runs on the calling thread: rayon's hand-off costs more than it saves.
pub(crate) const PAR_MIN: usize = 1 << 15;

/// The same for memory-bound work (copies, arithmetic, comparisons, reductions): waking a
/// worker costs 10-15 us on the 2-core machine, and a [256, 784] float32 negate took 35 us on
/// two threads against 21 us on one (NumPy: 22 us), so only buffers beyond the L2 cache split.
pub(crate) const PAR_MIN_MEM: usize = 1 << 18;

/// Fills a fresh `n`-element vector (allocated fallibly, see [`alloc_for`]) in chunks of at
/// most `chunk` elements, each a whole multiple of `unit` (the last may be shorter), in
/// parallel from [`PAR_MIN_MEM`] elements: `f(offset, chunk)` must initialise every slot of
/// its chunk.
pub(crate) fn par_fill<T: crate::element::Element>(
    n: usize,
    chunk: usize,
    unit: usize,
    op: &str,
    shape: &[usize],
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> crate::error::Result<Vec<T>> {
    par_fill_from(PAR_MIN_MEM, n, chunk, unit, op, shape, f)
}

/// The chunk length that splits `n` elements into pieces of at most `chunk` (a multiple of
/// `unit`), as equal as `unit` allows and in whole rounds of the pool's threads. Fixed-size
/// chunks left one thread with twice the other's work: [256, 784] is three chunks of 65536
/// and a tail, and a float32 `log` of it took 106 us on two threads against 137 us on one.
pub(crate) fn balanced_chunk(n: usize, chunk: usize, unit: usize) -> usize {
    let unit = unit.max(1);
    let chunk = chunk.max(unit);
    let threads = rayon::current_num_threads().max(1);
    let pieces = n.div_ceil(chunk).div_ceil(threads) * threads;
    n.div_ceil(pieces.max(1)).div_ceil(unit).max(1) * unit
}

/// [`par_fill`] that goes parallel from `min` elements ([`PAR_MIN`] for compute-bound `f`).
pub(crate) fn par_fill_from<T: crate::element::Element>(
    min: usize,
    n: usize,
    chunk: usize,
    unit: usize,
    op: &str,
    shape: &[usize],
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> crate::error::Result<Vec<T>> {
    let mut v = alloc_for::<T>(n, op, shape)?;
    let slots = &mut v.spare_capacity_mut()[..n];
    if n < min || rayon::current_num_threads() < 2 {
        for (i, c) in slots.chunks_mut(chunk.max(1)).enumerate() {
            f(i * chunk, c);
        }
    } else {
        let chunk = balanced_chunk(n, chunk, unit);
        par_each(slots.chunks_mut(chunk).collect(), |i, c| f(i * chunk, c));
    }
    // SAFETY: the chunks cover all n slots and `f` initialises each slot of its chunk
    // (a contract of this crate-private function, kept by every caller).
    unsafe { v.set_len(n) };
    Ok(v)
}

/// Runs `f(first_row, out_rows, in_rows)` over `out` and `x` split into pieces of whole rows
/// (a row is `ow` elements of `out` and `iw` of `x`), about `per` rows a piece and as equal
/// as [`balanced_chunk`] makes them, on the calling thread and the pool together
/// ([`par_each`]). Row-wise kernels (softmax rows, a reduction's output rows) split this way.
pub(crate) fn par_rows<O: Send, X: Sync>(
    out: &mut [O],
    ow: usize,
    x: &[X],
    iw: usize,
    per: usize,
    f: impl Fn(usize, &mut [O], &[X]) + Sync,
) {
    let (ow, iw) = (ow.max(1), iw.max(1));
    let rows = out.len() / ow;
    let pr = balanced_chunk(rows, per, 1);
    let items: Vec<(&mut [O], &[X])> = out.chunks_mut(pr * ow).zip(x.chunks(pr * iw)).collect();
    par_each(items, |i, (o, xs)| f(i * pr, o, xs));
}

/// Runs `f(i, item)` once for every item, on the calling thread and the pool's threads
/// together. Called from outside the pool (an op called by the user's thread), a plain
/// `par_iter` hands all the work to the pool and puts the caller to sleep until it is done:
/// a [256, 784] float32 `exp` spent a third of its time in that hand-off (futex wake-ups and
/// `sched_yield`, measured with `perf`) even on a one-thread pool. Here the caller takes
/// items itself while `threads - 1` pool jobs take the rest from a shared counter, so a
/// worker that wakes late costs nothing but its share. Inside the pool (a nested op) this
/// is rayon's work-stealing `par_iter`.
pub(crate) fn par_each<I: Send>(items: Vec<I>, f: impl Fn(usize, I) + Sync) {
    use rayon::prelude::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let threads = rayon::current_num_threads().min(items.len());
    if threads < 2 {
        for (i, it) in items.into_iter().enumerate() {
            f(i, it);
        }
        return;
    }
    if rayon::current_thread_index().is_some() {
        items
            .into_par_iter()
            .enumerate()
            .for_each(|(i, it)| f(i, it));
        return;
    }
    let cells: Vec<Mutex<Option<I>>> = items.into_iter().map(|it| Mutex::new(Some(it))).collect();
    let next = AtomicUsize::new(0);
    let work = || loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        let Some(cell) = cells.get(i) else { break };
        // Each index is claimed once, so the lock is never contended; a poisoned lock (a
        // panic in another item's `f`) still holds this item.
        let item = cell.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(it) = item {
            f(i, it);
        }
    };
    rayon::in_place_scope(|s| {
        for _ in 1..threads {
            s.spawn(|_| work());
        }
        work();
    });
}
