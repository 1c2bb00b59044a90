//! Runtime SIMD dispatch for the engine's kernel loops.
//!
//! kiln is compiled for the baseline of its target (SSE2 on x86-64), so a plain loop
//! vectorises 4 float32 lanes wide. [`run`] calls a closure from inside a function compiled
//! with AVX-512 (or AVX2 + FMA) enabled when the CPU has it; the closure's loop is inlined
//! there and vectorises 16 (or 8) lanes wide, as NumPy's runtime-dispatched loops do. The
//! same source runs everywhere; only the instructions differ.

/// Which vector unit [`run`] uses on this CPU (detected once).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub(crate) enum Level {
    /// The compilation target's baseline.
    Baseline,
    /// AVX2 with FMA (x86-64).
    Avx2,
    /// AVX-512 F/BW/DQ/VL (x86-64).
    Avx512,
}

pub(crate) fn level() -> Level {
    use std::sync::OnceLock;
    static L: OnceLock<Level> = OnceLock::new();
    *L.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512dq")
                && std::arch::is_x86_feature_detected!("avx512vl")
            {
                return Level::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Level::Avx2;
            }
        }
        Level::Baseline
    })
}

/// Runs `f` compiled for the widest vector unit this CPU has, if LLVM inlines it into the
/// variant: dependable for a short loop; a kernel of any size belongs in [`kernel!`].
#[inline(always)]
pub(crate) fn run<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
        unsafe fn avx512<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn avx2<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        match level() {
            // SAFETY: the CPU has the features these functions are compiled for (checked
            // once in `level`).
            Level::Avx512 => return unsafe { avx512(f) },
            Level::Avx2 => return unsafe { avx2(f) },
            Level::Baseline => {}
        }
    }
    f()
}

/// Defines a kernel function whose body is compiled three times, for AVX-512, for AVX2 + FMA
/// and for the baseline, and dispatched on the CPU's level at each call. The body is pasted
/// into each `#[target_feature]` variant, so nothing depends on LLVM inlining it there (a
/// large closure handed to [`run`] may be left outside, compiled 4 lanes wide); helpers it
/// calls should be `#[inline(always)]`. Generic parameters go in `[..]` (they must be
/// inferable from the arguments), bounds in `where [..]`.
macro_rules! kernel {
    (
        $(#[$attr:meta])*
        $vis:vis fn $name:ident [$($gen:tt)*] ($($arg:ident : $ty:ty),* $(,)?) $(-> $ret:ty)?
        where [$($wc:tt)*]
        $body:block
    ) => {
        $(#[$attr])*
        #[allow(clippy::too_many_arguments)]
        $vis fn $name<$($gen)*>($($arg: $ty),*) $(-> $ret)? where $($wc)* {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx512<$($gen)*>($($arg: $ty),*) $(-> $ret)? where $($wc)* $body
                #[target_feature(enable = "avx2,fma")]
                #[allow(clippy::too_many_arguments)]
                unsafe fn avx2<$($gen)*>($($arg: $ty),*) $(-> $ret)? where $($wc)* $body
                match $crate::backend::ndarray::simd::level() {
                    // SAFETY: the CPU has the features these variants are compiled for.
                    $crate::backend::ndarray::simd::Level::Avx512 => return unsafe { avx512($($arg),*) },
                    $crate::backend::ndarray::simd::Level::Avx2 => return unsafe { avx2($($arg),*) },
                    $crate::backend::ndarray::simd::Level::Baseline => {}
                }
            }
            $body
        }
    };
}
pub(crate) use kernel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dispatch_runs_the_closure_once_with_its_result() {
        let mut calls = 0;
        let r = run(|| {
            calls += 1;
            (0..100).map(|i| i as f32).sum::<f32>()
        });
        assert_eq!((r, calls), (4950.0, 1));
        let _ = level();
    }
}
