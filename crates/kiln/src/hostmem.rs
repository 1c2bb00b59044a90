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

/// Fills a fresh `n`-element vector (allocated fallibly, see [`alloc_for`]) in chunks, in
/// parallel from [`PAR_MIN_MEM`] elements: `f(offset, chunk)` must initialise every slot of
/// its chunk.
pub(crate) fn par_fill<T: crate::element::Element>(
    n: usize,
    chunk: usize,
    op: &str,
    shape: &[usize],
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> crate::error::Result<Vec<T>> {
    par_fill_from(PAR_MIN_MEM, n, chunk, op, shape, f)
}

/// [`par_fill`] that goes parallel from `min` elements ([`PAR_MIN`] for compute-bound `f`).
pub(crate) fn par_fill_from<T: crate::element::Element>(
    min: usize,
    n: usize,
    chunk: usize,
    op: &str,
    shape: &[usize],
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> crate::error::Result<Vec<T>> {
    use rayon::prelude::*;
    let mut v = alloc_for::<T>(n, op, shape)?;
    let slots = &mut v.spare_capacity_mut()[..n];
    if n < min {
        for (i, c) in slots.chunks_mut(chunk.max(1)).enumerate() {
            f(i * chunk, c);
        }
    } else {
        slots
            .par_chunks_mut(chunk.max(1))
            .enumerate()
            .for_each(|(i, c)| f(i * chunk, c));
    }
    // SAFETY: the chunks cover all n slots and `f` initialises each slot of its chunk
    // (a contract of this crate-private function, kept by every caller).
    unsafe { v.set_len(n) };
    Ok(v)
}
