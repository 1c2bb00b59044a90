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

/// Runs `f` compiled for the widest vector unit this CPU has. `f` should be a loop over
/// slices whose body inlines (it is monomorphised into each variant).
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
