//! The seed scenario of the core issue: a random float64 [1, 2, 3] array from a .npy file
//! that NumPy wrote, `log10` on `sim:mps` and on `cpu`, in both x64 modes and both
//! policies, checked against NumPy's own `log10` (tests/data/npy/seed_log10.npy).

mod common;
use kiln::precision::{warnings, Policy, Scope};
use kiln::{convert_to_tensor, convert_to_tensor_with_report, ops, DType, Device, KilnError};
use std::sync::Mutex;

// Warnings are once per cause per process: the tests that count them take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn data(name: &str) -> String {
    format!("{}/tests/data/npy/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn mps() -> Device {
    Device::parse("sim:mps").unwrap()
}

fn numpy_log10() -> Vec<f64> {
    kiln::io::read_npy(data("seed_log10.npy"))
        .unwrap()
        .to_vec::<f64>()
        .unwrap()
}

#[test]
fn x64_off_float32_on_sim_mps_and_cpu_alike_no_warning() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warnings::reset();
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    assert_eq!(
        (x.dtype(), x.shape()),
        (DType::Float64, &[1usize, 2, 3][..])
    );
    let _g = Scope::new().x64(false).enter();
    let ((y_mps, y_cpu), w) = warnings::capture(|| {
        let a = ops::log10(&convert_to_tensor(&x, None, &mps()).unwrap()).unwrap();
        let b = ops::log10(&convert_to_tensor(&x, None, &Device::Cpu).unwrap()).unwrap();
        (a, b)
    });
    assert!(
        w.is_empty(),
        "x64 off narrows by Keras's rule, silently: {w:?}"
    );
    assert_eq!(y_mps.dtype(), DType::Float32);
    assert_eq!(y_mps.device(), mps());
    let (a, b) = (
        y_mps.to_vec::<f32>().unwrap(),
        y_cpu.to_vec::<f32>().unwrap(),
    );
    assert_eq!(a, b, "cpu and sim:mps agree exactly");
    for (got, want) in a.iter().zip(numpy_log10()) {
        assert!((*got as f64 - want).abs() <= 1e-6, "{got} vs {want}");
    }
}

#[test]
fn x64_on_sim_mps_downcasts_with_exactly_one_warning_and_a_report() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warnings::reset();
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    let _g = Scope::new().x64(true).policy(Policy::Downcast).enter();
    let ((y, report), w) = warnings::capture(|| {
        let (t, report) = convert_to_tensor_with_report(&x, None, &mps()).unwrap();
        // The same cause again: still one warning.
        let _ = convert_to_tensor(&x, None, &mps()).unwrap();
        (ops::log10(&t).unwrap(), report.unwrap())
    });
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].cause, "substitute:float64->float32@sim:mps");
    assert!(w[0].message.contains("sim:mps") && w[0].message.contains("float64"));
    assert_eq!(y.dtype(), DType::Float32);
    assert_eq!(report.elements, 6);
    assert!(
        report.max_rel_error > 0.0 && report.max_rel_error <= f32::EPSILON as f64 / 2.0,
        "{report:?}"
    );
    assert_eq!(
        (
            report.overflowed_to_inf,
            report.flushed_to_zero,
            report.nans_kept
        ),
        (0, 0, 0)
    );
    for (got, want) in y.to_vec::<f32>().unwrap().iter().zip(numpy_log10()) {
        assert!((*got as f64 - want).abs() <= 1e-6);
    }
}

#[test]
fn x64_on_error_policy_refuses_with_device_dtype_origin_and_fix() {
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    let _g = Scope::new().x64(true).policy(Policy::Error).enter();
    let e = convert_to_tensor(&x, None, &mps()).unwrap_err();
    match &e {
        KilnError::UnsupportedDType {
            dtype,
            device,
            origin,
            ..
        } => {
            assert_eq!(*dtype, DType::Float64);
            assert_eq!(*device, mps());
            assert!(origin.file().ends_with("seed_scenario.rs"), "{origin}");
        }
        other => panic!("{other:?}"),
    }
    let msg = e.to_string();
    for needle in [
        "convert_to_tensor",
        "float64",
        "sim:mps",
        "seed_scenario.rs:",
        "Fix:",
        "float32",
        "cpu-fallback",
    ] {
        assert!(msg.contains(needle), "{needle:?} missing from: {msg}");
    }
}

#[test]
fn explicit_float64_on_sim_mps_is_refused_never_changed() {
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    for x64 in [false, true] {
        let _g = Scope::new().x64(x64).policy(Policy::Downcast).enter();
        let line = line!() + 1;
        let e = convert_to_tensor(&x, Some(DType::Float64), &mps()).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains(&format!("seed_scenario.rs:{line}")), "{msg}");
        assert!(msg.contains("explicitly"), "{msg}");
    }
}

#[test]
fn x64_on_cpu_keeps_float64_and_matches_numpy_to_1e12() {
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    let _g = Scope::new().x64(true).enter();
    let (t, report) = convert_to_tensor_with_report(&x, None, &Device::Cpu).unwrap();
    assert!(report.is_none());
    let y = ops::log10(&t).unwrap();
    assert_eq!(y.dtype(), DType::Float64);
    for (got, want) in y.to_vec::<f64>().unwrap().iter().zip(numpy_log10()) {
        assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
    }
}

/// CUDA computes in float64: with x64 on, the data stays float64 on cuda:0 (the real GPU with
/// `--features cuda`, else the emulated one), with no warning, and matches NumPy like the cpu.
#[cfg(feature = "candle")]
#[test]
fn x64_on_cuda_keeps_float64_silently_and_matches_numpy_to_1e12() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warnings::reset();
    let cuda = common::targets()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| *d == Device::Cuda(0))
        .expect("cuda:0, real or emulated");
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    let _g = Scope::new().x64(true).policy(Policy::Error).enter();
    let ((t, report, y), w) = warnings::capture(|| {
        let (t, report) = convert_to_tensor_with_report(&x, None, &cuda).unwrap();
        let y = ops::log10(&t).unwrap();
        (t, report, y)
    });
    assert!(report.is_none() && w.is_empty(), "{report:?} {w:?}");
    assert_eq!((t.device(), t.dtype()), (cuda, DType::Float64));
    assert_eq!((y.device(), y.dtype()), (cuda, DType::Float64));
    for (got, want) in y.to_vec::<f64>().unwrap().iter().zip(numpy_log10()) {
        assert!((got - want).abs() <= 1e-12, "{got} vs {want}");
    }
}

#[test]
fn cpu_fallback_keeps_float64_on_the_cpu_counted_and_warned_once() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    warnings::reset();
    let x = kiln::io::read_npy(data("seed_x.npy")).unwrap();
    let _g = Scope::new().x64(true).policy(Policy::CpuFallback).enter();
    let (y, w) = warnings::capture(|| {
        let t = convert_to_tensor(&x, None, &mps()).unwrap();
        let _ = convert_to_tensor(&x, None, &mps()).unwrap();
        ops::log10(&t).unwrap()
    });
    assert_eq!(y.dtype(), DType::Float64);
    assert_eq!(y.device(), Device::Cpu);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(
        warnings::fallback_summary().get("cpu-fallback:float64@sim:mps"),
        Some(&2)
    );
}
