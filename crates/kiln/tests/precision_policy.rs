//! The resolver, the three policies, the loss report and the warnings, end to end: every
//! site (conversion, cast, creation, promotion) on the simulated devices.

use half::{bf16, f16};
use kiln::element::C128;
use kiln::precision::report::convert_with_report;
use kiln::precision::{warnings, Action, Policy, Scope, WarnMode};
use kiln::{
    convert_to_tensor, convert_to_tensor_with_report, ops, ArrayData, DType, Device, KilnError,
};
use std::sync::Mutex;

// Warnings are once per cause per process, and the logger is global: tests that warn take turns.
static SERIAL: Mutex<()> = Mutex::new(());

fn dev(s: &str) -> Device {
    Device::parse(s).unwrap()
}

/// Captures every log record, to prove warnings go through the `log` facade.
struct Recorder;
static RECORDS: Mutex<Vec<String>> = Mutex::new(Vec::new());
impl log::Log for Recorder {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        RECORDS
            .lock()
            .unwrap()
            .push(format!("{} {} {}", r.level(), r.target(), r.args()));
    }
    fn flush(&self) {}
}

#[test]
fn warnings_go_through_log_once_per_cause_and_are_configurable() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    static LOGGER: Recorder = Recorder;
    let _ = log::set_logger(&LOGGER).map(|()| log::set_max_level(log::LevelFilter::Trace));
    warnings::reset();
    RECORDS.lock().unwrap().clear();
    let x = ArrayData::from(vec![1.0f64, 2.0]);
    let tpu = dev("sim:tpu");
    {
        let _g = Scope::new().x64(true).enter();
        for _ in 0..3 {
            convert_to_tensor(&x, None, &tpu).unwrap();
        }
        // A second cause (another device) warns once too.
        convert_to_tensor(&x, None, &dev("sim:mps")).unwrap();
    }
    let recs: Vec<String> = RECORDS
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.contains("kiln::precision"))
        .cloned()
        .collect();
    assert_eq!(recs.len(), 2, "{recs:?}");
    assert!(recs[0].starts_with("WARN kiln::precision") && recs[0].contains("sim:tpu"));
    // Off: counted, never logged.
    warnings::reset();
    RECORDS.lock().unwrap().clear();
    {
        let _g = Scope::new().x64(true).warnings(WarnMode::Off).enter();
        convert_to_tensor(&x, None, &tpu).unwrap();
    }
    assert!(RECORDS.lock().unwrap().is_empty());
    // Always: every time.
    {
        let _g = Scope::new().x64(true).warnings(WarnMode::Always).enter();
        let (_, w) = warnings::capture(|| {
            convert_to_tensor(&x, None, &tpu).unwrap();
            convert_to_tensor(&x, None, &tpu).unwrap();
        });
        assert_eq!(w.len(), 2);
    }
}

#[test]
fn integer_narrowing_checks_the_range() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let tpu = dev("sim:tpu");
    let _g = Scope::new().x64(true).enter();
    // int64 values that fit become int32 on a TPU...
    let ok = convert_to_tensor(&ArrayData::from(vec![1i64, -5, 1 << 30]), None, &tpu).unwrap();
    assert_eq!(ok.dtype(), DType::Int32);
    assert_eq!(ok.to_vec::<i32>().unwrap(), vec![1, -5, 1 << 30]);
    // ...values that do not are an error naming the count, an example, the device, and a fix.
    let e = convert_to_tensor(
        &ArrayData::from(vec![1i64, 1 << 40, -(1 << 41)]),
        None,
        &tpu,
    )
    .unwrap_err();
    match &e {
        KilnError::OutOfRange {
            count, to, device, ..
        } => assert_eq!((*count, *to, *device), (2, DType::Int32, tpu)),
        other => panic!("{other:?}"),
    }
    assert!(e.to_string().contains("1099511627776"), "{e}");
    // x64 off narrows by Keras's rule but still never wraps silently.
    let _h = Scope::new().x64(false).enter();
    assert!(convert_to_tensor(&ArrayData::from(vec![u64::MAX]), None, &Device::Cpu).is_err());
}

#[test]
fn lossless_widening_on_webgpu_and_refusal_without_a_stand_in() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let web = dev("sim:webgpu");
    let (t, r) =
        convert_to_tensor_with_report(&ArrayData::from(vec![-3i8, 7]), None, &web).unwrap();
    assert_eq!(
        (t.dtype(), t.to_vec::<i32>().unwrap()),
        (DType::Int32, vec![-3, 7])
    );
    assert!(r.unwrap().is_exact());
    let (t, r) =
        convert_to_tensor_with_report(&ArrayData::from(vec![bf16::from_f32(1.5)]), None, &web)
            .unwrap();
    assert_eq!(t.dtype(), DType::Float32);
    assert!(r.unwrap().is_exact());
    let c = ArrayData::from(vec![C128::new(1.0, 2.0)]);
    let e = convert_to_tensor(&c, None, &web).unwrap_err();
    assert!(
        matches!(e, KilnError::UnsupportedDType { .. }) && e.to_string().contains("cpu-fallback"),
        "{e}"
    );
    // ...unless the policy allows the cpu.
    let _g = Scope::new().policy(Policy::CpuFallback).enter();
    let t = convert_to_tensor(&c, None, &web).unwrap();
    assert_eq!((t.device(), t.dtype()), (Device::Cpu, DType::Complex64));
}

#[test]
fn every_site_goes_through_the_resolver() {
    let _s = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mps = dev("sim:mps");
    let x = convert_to_tensor(&ArrayData::from(vec![1.0f32, 4.0]), None, &mps).unwrap();
    // cast: explicit, refused under every policy but cpu-fallback
    for p in [Policy::Downcast, Policy::Error] {
        let _g = Scope::new().policy(p).enter();
        assert!(matches!(
            ops::cast(&x, DType::Float64),
            Err(KilnError::UnsupportedDType { .. })
        ));
    }
    // creation: explicit refused, implicit floatx=float64 adapted under downcast
    assert!(ops::ones(&[2], Some(DType::Float64), Some(mps)).is_err());
    {
        let _g = Scope::new().floatx(DType::Float64).x64(true).enter();
        assert_eq!(
            ops::ones(&[2], None, Some(mps)).unwrap().dtype(),
            DType::Float32
        );
        assert_eq!(
            ops::ones(&[2], None, Some(Device::Cpu)).unwrap().dtype(),
            DType::Float64
        );
    }
    // promotion: with x64 on, int32 / int32 would be float64; sim:mps computes in float32
    {
        let _g = Scope::new().x64(true).enter();
        let i = convert_to_tensor(&ArrayData::from(vec![1i32, 2]), None, &mps).unwrap();
        let q = ops::divide(&i, &i).unwrap();
        assert_eq!(q.dtype(), DType::Float32);
        let _e = Scope::new().policy(Policy::Error).enter();
        assert!(matches!(
            ops::divide(&i, &i),
            Err(KilnError::UnsupportedDType { .. })
        ));
    }
}

#[test]
fn the_resolver_reports_its_reason() {
    let cfg = kiln::Config {
        x64: true,
        ..Default::default()
    };
    let req = kiln::precision::Request {
        op: "convert_to_tensor",
        site: kiln::precision::Site::Conversion,
        dtype: DType::Complex128,
        explicit: false,
        device: dev("sim:mps"),
        engine: kiln::backend::BackendKind::Ndarray,
        origin: std::panic::Location::caller(),
    };
    let d = kiln::precision::resolve(&req, &cfg).unwrap();
    assert_eq!(d.dtype, DType::Complex64);
    assert_eq!(
        d.action,
        Action::Substitute {
            from: DType::Complex128,
            lossy: true
        }
    );
    assert!(
        d.reason().contains("sim:mps") && d.reason().contains("complex128"),
        "{}",
        d.reason()
    );
    let off = kiln::precision::resolve(&req, &kiln::Config::default()).unwrap();
    assert_eq!(
        off.action,
        Action::Narrow64 {
            from: DType::Complex128
        }
    );
    let metal = kiln::precision::Request {
        dtype: DType::Float64,
        device: dev("metal:0"),
        ..req
    };
    let e = kiln::precision::resolve(
        &metal,
        &kiln::Config {
            x64: true,
            policy: Policy::Error,
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("can store it but has no kernels"),
        "{e}"
    );
}

#[test]
fn loss_reports_for_every_narrowing() {
    // float64 -> float16: 70000 overflows, 1e-8 flushes, 1e-5 is subnormal, 2049 changes.
    let a = ArrayData::from(vec![70000.0f64, 1e-8, 1e-5, 2049.0, 0.5, f64::NAN]);
    let (b, r) = convert_with_report(&a, DType::Float16);
    assert_eq!(b.to_vec::<f16>().unwrap()[4], f16::from_f32(0.5));
    assert_eq!(
        (
            r.overflowed_to_inf,
            r.flushed_to_zero,
            r.became_subnormal,
            r.integers_changed,
            r.nans_kept
        ),
        (1, 1, 1, 1, 1)
    );
    assert_eq!(r.elements, 6);
    // complex128 -> complex64: each part checked.
    let c = ArrayData::from(vec![C128::new(1e300, 0.1), C128::new(f64::NAN, f64::NAN)]);
    let (_, r) = convert_with_report(&c, DType::Complex64);
    assert_eq!((r.overflowed_to_inf, r.nans_kept, r.elements), (1, 1, 2));
    assert!(r.max_rel_error > 0.0 && r.max_rel_error < 1e-7);
    // bfloat16 keeps float32's range but only 8 bits: 257 changes.
    let (_, r) = convert_with_report(&ArrayData::from(vec![257.0f32, 1e38]), DType::BFloat16);
    assert_eq!((r.integers_changed, r.overflowed_to_inf), (2, 0));
    // Exact conversions report nothing lost.
    let (_, r) = convert_with_report(&ArrayData::from(vec![1.5f64, -2.0]), DType::Float32);
    assert!(r.is_exact() && r.summary().contains("2 elements"));
}

#[test]
fn capabilities_match_the_documented_profiles() {
    use DType::*;
    let sup = |d: &str| dev(d).capabilities().supported();
    assert_eq!(
        sup("sim:webgpu"),
        vec![Bool, UInt32, Int32, Float16, Float32]
    );
    assert!(
        !sup("sim:mps").contains(&Float64)
            && !sup("sim:mps").contains(&Complex128)
            && sup("sim:mps").contains(&BFloat16)
    );
    let m13 = sup("sim:mps-macos13");
    assert!(!m13.contains(&BFloat16) && !m13.contains(&Complex64));
    let tpu = sup("sim:tpu");
    for d in [Float64, Int64, UInt64, Complex128] {
        assert!(!tpu.contains(&d));
    }
    assert_eq!(sup("cpu").len(), 15);
    let metal = dev("metal:0").capabilities();
    assert!(metal.usage(Float64).storage && !metal.supports(Float64));
    assert_eq!(metal.widest_float(), Float32);
    assert_eq!(dev("cuda:1").capabilities().widest_float(), Float64);
    for d in Device::catalogue() {
        assert!(!d.capabilities().source.is_empty());
        assert_eq!(Device::parse(&d.to_string()).unwrap(), d);
    }
    assert!(Device::parse("sim:nope").is_err() && Device::parse("tpu:x").is_err());
}
