//! Helpers shared by the integration tests: decoding the JSON oracles written by
//! scripts/gen_value_oracles.py.
#![allow(dead_code)]

use half::{bf16, f16};
use kiln::element::{C128, C64};
use kiln::{ArrayData, DType};
use serde_json::Value;

pub fn load_cases(name: &str) -> Vec<Value> {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(p).expect("oracle file")).expect("json");
    v["cases"].as_array().expect("cases").clone()
}

/// A whole fixture file of tests/data.
pub fn fixture(name: &str) -> Value {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(p).expect("fixture file")).expect("json")
}

/// A JSON array of numbers.
pub fn f64s(v: &Value) -> Vec<f64> {
    v.as_array()
        .expect("an array")
        .iter()
        .map(|x| x.as_f64().expect("a number"))
        .collect()
}

/// The dtypes of an oracle case's inputs.
pub fn case_dtypes(c: &Value) -> Vec<DType> {
    c["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| DType::parse(v["dtype"].as_str().unwrap()).unwrap())
        .collect()
}

/// An oracle case's inputs as tensors on `device`, converted as NumPy data is (implicitly).
pub fn case_inputs(c: &Value, device: kiln::Device) -> Vec<kiln::Tensor> {
    c["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| kiln::convert_to_tensor(&decode(v), None, &device).unwrap())
        .collect()
}

pub fn num(v: &Value) -> f64 {
    match v {
        Value::String(s) if s == "nan" => f64::NAN,
        Value::String(s) if s == "inf" => f64::INFINITY,
        Value::String(s) if s == "-inf" => f64::NEG_INFINITY,
        v => v.as_f64().expect("number"),
    }
}

/// Decodes `{"dtype", "shape", "data"}` into host data of exactly that dtype.
pub fn decode(v: &Value) -> ArrayData {
    let dtype = DType::parse(v["dtype"].as_str().unwrap()).unwrap();
    let shape: Vec<usize> = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"].as_array().unwrap();
    macro_rules! ints {
        ($t:ty) => {
            ArrayData::from_shape_vec(
                &shape,
                data.iter()
                    .map(|x| {
                        x.as_i64()
                            .map(|i| i as $t)
                            .unwrap_or_else(|| x.as_u64().unwrap() as $t)
                    })
                    .collect::<Vec<$t>>(),
            )
            .unwrap()
        };
    }
    match dtype {
        DType::Bool => ArrayData::from_shape_vec(
            &shape,
            data.iter()
                .map(|x| x.as_bool().unwrap())
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        DType::Int8 => ints!(i8),
        DType::Int16 => ints!(i16),
        DType::Int32 => ints!(i32),
        DType::Int64 => ints!(i64),
        DType::UInt8 => ints!(u8),
        DType::UInt16 => ints!(u16),
        DType::UInt32 => ints!(u32),
        DType::UInt64 => ints!(u64),
        DType::BFloat16 => ArrayData::from_shape_vec(
            &shape,
            data.iter()
                .map(|x| bf16::from_f64(num(x)))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        DType::Float16 => ArrayData::from_shape_vec(
            &shape,
            data.iter()
                .map(|x| f16::from_f64(num(x)))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        DType::Float32 => ArrayData::from_shape_vec(
            &shape,
            data.iter().map(|x| num(x) as f32).collect::<Vec<_>>(),
        )
        .unwrap(),
        DType::Float64 => {
            ArrayData::from_shape_vec(&shape, data.iter().map(num).collect::<Vec<_>>()).unwrap()
        }
        DType::Complex64 => ArrayData::from_shape_vec(
            &shape,
            data.iter()
                .map(|x| C64::new(num(&x[0]) as f32, num(&x[1]) as f32))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
        DType::Complex128 => ArrayData::from_shape_vec(
            &shape,
            data.iter()
                .map(|x| C128::new(num(&x[0]), num(&x[1])))
                .collect::<Vec<_>>(),
        )
        .unwrap(),
    }
}

/// (re, im) of every element, as f64 (im = 0 for real types).
pub fn parts(a: &ArrayData) -> Vec<(f64, f64)> {
    a.to_scalars()
        .into_iter()
        .map(|s| {
            let c = s.as_c128();
            (c.re, c.im)
        })
        .collect()
}

/// Whether `got` matches `want` within `tol` (relative, with `tol` as absolute floor);
/// NaN must match NaN and infinities must match exactly.
pub fn close(got: f64, want: f64, tol: f64) -> bool {
    if want.is_nan() || got.is_nan() {
        return want.is_nan() && got.is_nan();
    }
    if want.is_infinite() || got.is_infinite() {
        return got == want;
    }
    (got - want).abs() <= tol * (want.abs() + 1.0)
}

/// Compares a result with an oracle array: dtype, shape, then every element (exactly, or
/// within `tol` when `tol > 0`). `None` when they match, else what differs.
pub fn mismatch(got: &kiln::Tensor, want: &ArrayData, tol: f64) -> Option<String> {
    if got.dtype() != want.dtype() || got.shape() != want.shape() {
        return Some(format!(
            "got {} {:?}, want {} {:?}",
            got.dtype(),
            got.shape(),
            want.dtype(),
            want.shape()
        ));
    }
    let same = |g: f64, w: f64| {
        if tol > 0.0 {
            close(g, w, tol)
        } else {
            g == w || (g.is_nan() && w.is_nan())
        }
    };
    parts(&got.to_host().unwrap())
        .iter()
        .zip(parts(want))
        .enumerate()
        .find_map(|(i, ((gr, gi), (wr, wi)))| {
            (!(same(*gr, wr) && same(*gi, wi)))
                .then(|| format!("[{i}]: got ({gr}, {gi}), numpy ({wr}, {wi})"))
        })
}

/// Every engine in this build.
pub fn engines() -> Vec<kiln::backend::BackendKind> {
    kiln::backend::BackendKind::available()
}

/// Whether `engine` computes in `dtype` on `device` once x64 mode has narrowed it.
pub fn engine_supports(
    engine: kiln::backend::BackendKind,
    device: kiln::Device,
    dtype: DType,
    x64: bool,
) -> bool {
    let d = if x64 { dtype } else { dtype.to_32bit() };
    kiln::device::Capabilities::of_engine(device, engine).supports(d)
}

/// Every (engine, device) pair the suite runs on in this build and on this machine: each
/// engine on the cpu, and candle on `cuda:0` / `metal:0` when kiln was built with that
/// feature (`cargo test --features cuda`) and the device opens.
///
/// `KILN_TEST_REQUIRE_GPU=1` makes a missing GPU a failure instead of a silent CPU-only run,
/// so a GPU job cannot pass without having run there. Without a GPU, `cuda:0` is emulated
/// (candle's CPU kernels behind the GPU's profile and placement rules; see
/// `kiln::backend::candle::emulate_gpu_on_cpu`), so every run exercises the GPU code paths.
pub fn targets() -> Vec<(kiln::backend::BackendKind, kiln::Device)> {
    use kiln::backend::BackendKind;
    let mut v: Vec<_> = engines()
        .into_iter()
        .map(|e| (e, kiln::Device::Cpu))
        .collect();
    let real: Vec<_> = kiln::doctor::devices_here()
        .into_iter()
        .filter(|d| !d.runs_on_host())
        .collect();
    if real.is_empty() && std::env::var("KILN_TEST_REQUIRE_GPU").is_ok_and(|v| v == "1") {
        panic!(
            "KILN_TEST_REQUIRE_GPU=1 but no GPU opened: cuda:0: {:?}; metal:0: {:?}",
            kiln::doctor::available(BackendKind::Candle, kiln::Device::Cuda(0)),
            kiln::doctor::available(BackendKind::Candle, kiln::Device::Metal(0))
        );
    }
    #[cfg(feature = "candle")]
    if real.is_empty() {
        // No GPU here: an emulated cuda:0 keeps kiln's GPU code paths under test.
        kiln::backend::candle::emulate_gpu_on_cpu(kiln::Device::Cuda(0)).unwrap();
    }
    v.extend(
        kiln::doctor::devices_here()
            .into_iter()
            .filter(|d| !d.runs_on_host())
            .map(|d| (BackendKind::Candle, d)),
    );
    v
}

/// Whether `device` is a GPU that is only emulated on the cpu (see [`targets`]).
pub fn emulated(device: kiln::Device) -> bool {
    #[cfg(feature = "candle")]
    {
        kiln::backend::candle::is_emulated(device)
    }
    #[cfg(not(feature = "candle"))]
    {
        let _ = device;
        false
    }
}

/// The configuration a target runs the value suites under. On a GPU the policy is
/// `cpu-fallback`, so that primitives candle has no GPU kernel for are computed on the host
/// (counted in `kiln::backend::candle::host_kernel_counts`) and their values checked too,
/// instead of being refused.
pub fn target_scope(
    engine: kiln::backend::BackendKind,
    device: kiln::Device,
    x64: bool,
) -> kiln::precision::ScopeGuard {
    let s = kiln::precision::Scope::new()
        .x64(x64)
        .backend(Some(engine))
        .device(device);
    if device.runs_on_host() {
        s.enter()
    } else {
        s.policy(kiln::precision::Policy::CpuFallback)
            .strict_fallback(false)
            .enter()
    }
}

/// Where a result of `dtype` computed on a target must be: on the target's device, or, for
/// a dtype the device lacks, on the cpu (a GPU target runs under `cpu-fallback`, which keeps
/// the dtype and places the tensor on the cpu).
pub fn expected_device(
    engine: kiln::backend::BackendKind,
    device: kiln::Device,
    dtype: DType,
) -> kiln::Device {
    if kiln::device::Capabilities::of_engine(device, engine).supports(dtype) {
        device
    } else {
        kiln::Device::Cpu
    }
}

/// A target's result against the oracle: the values (see [`mismatch`]), then where the result
/// was placed (see [`expected_device`]). `None` when both are right.
pub fn check(
    got: &kiln::Tensor,
    want: &ArrayData,
    tol: f64,
    engine: kiln::backend::BackendKind,
    device: kiln::Device,
) -> Option<String> {
    mismatch(got, want, tol).or_else(|| {
        (got.device() != expected_device(engine, device, got.dtype()))
            .then(|| format!("result placed on {}", got.device()))
    })
}

/// Asserts that a target ran at least `floor` cases and says how many (with `--nocapture`).
pub fn ran_enough(
    engine: kiln::backend::BackendKind,
    device: kiln::Device,
    ran: usize,
    floor: usize,
) {
    assert!(ran > floor, "{engine}@{device} ran only {ran} cases");
    let how = if emulated(device) { " (emulated)" } else { "" };
    eprintln!("{engine}@{device}{how}: {ran} cases");
}

/// Fails with every differing case listed (not just the first), so one run shows the whole
/// extent of a regression.
pub fn assert_none_differ(failures: &[String], cases: usize) {
    assert!(
        failures.is_empty(),
        "{} of {cases} cases differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
