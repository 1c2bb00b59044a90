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
pub(crate) fn alloc_uninit<T>(n: usize) -> Vec<T> {
    let mut v: Vec<T> = Vec::with_capacity(n);
    let bytes = n.saturating_mul(std::mem::size_of::<T>());
    if bytes >= HUGE_MIN_BYTES {
        advise_huge(v.spare_capacity_mut().as_mut_ptr() as usize, bytes);
    }
    v
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

/// Fills a fresh `n`-element vector in parallel chunks: `f(offset, chunk)` must initialise
/// every slot of its chunk.
pub(crate) fn par_fill<T: Send>(
    n: usize,
    chunk: usize,
    f: impl Fn(usize, &mut [MaybeUninit<T>]) + Sync,
) -> Vec<T> {
    use rayon::prelude::*;
    let mut v = alloc_uninit::<T>(n);
    v.spare_capacity_mut()[..n]
        .par_chunks_mut(chunk)
        .enumerate()
        .for_each(|(i, c)| f(i * chunk, c));
    // SAFETY: the chunks cover all n slots and `f` initialises each slot of its chunk
    // (a contract of this crate-private function, kept by every caller).
    unsafe { v.set_len(n) };
    v
}
