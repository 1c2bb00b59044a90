//! The two engines side by side: the candle profile entry by entry, same answers on the
//! same seeded random inputs, switching and transfers, the CPU fallback and strict mode.
#![cfg(feature = "candle")]

use crate::common;

use kiln::backend::BackendKind;
use kiln::device::Capabilities;
use kiln::ops::registry::{call_binary, call_unary, BINARY, UNARY};
use kiln::ops::{self, Operand};
use kiln::precision::{warnings, Policy, Scope};
use kiln::{convert_to_tensor, ArrayData, DType, Device, KilnError, Scalar, Tensor};

fn on(engine: BackendKind) -> kiln::precision::ScopeGuard {
    Scope::new().backend(Some(engine)).enter()
}

#[test]
fn every_candle_profile_entry_is_true() {
    let caps = Capabilities::of_engine(Device::Cpu, BackendKind::Candle);
    let _g = Scope::new()
        .backend(Some(BackendKind::Candle))
        .x64(true)
        .policy(Policy::Downcast)
        .enter();
    for d in DType::ALL {
        let host = ArrayData::full(&[2, 2], Scalar::Int(1), d).unwrap();
        let explicit = convert_to_tensor(&host, Some(d), &Device::Cpu);
        if caps.supports(d) {
            // Held and computed by candle, values intact.
            let t = explicit.unwrap_or_else(|e| panic!("{d}: {e}"));
            assert_eq!((t.dtype(), t.backend_kind()), (d, BackendKind::Candle));
            assert_eq!(t.to_host().unwrap(), host, "{d} round trip");
            let s = ops::add(&t, &t);
            assert!(s.is_ok() || d == DType::Bool, "{d}: {s:?}");
        } else {
            // Refused when explicit, never changed...
            assert!(
                matches!(explicit, Err(KilnError::UnsupportedDType { .. })),
                "{d}: {explicit:?}"
            );
            // ...and mapped by the resolver when implicit: widened where lossless, refused
            // where candle has no dtype of that kind.
            let implicit = convert_to_tensor(&host, None, &Device::Cpu);
            match d {
                DType::Int8 => assert_eq!(implicit.unwrap().dtype(), DType::Int16),
                DType::UInt16 => assert_eq!(implicit.unwrap().dtype(), DType::UInt32),
                DType::UInt64 => assert_eq!(
                    implicit.unwrap().dtype(),
                    DType::UInt32 /* lossy narrowing, range-checked */
                ),
                DType::Complex64 | DType::Complex128 => assert!(implicit.is_err()),
                other => panic!("unexpected unsupported dtype {other}"),
            }
        }
        let usage = caps.usage(d);
        assert_eq!(
            usage.accelerated,
            matches!(d, DType::Float32 | DType::Float64),
            "{d}: {usage:?}"
        );
    }
    // bfloat16 on candle's CPU: arithmetic, not accelerated (documented in the profile).
    assert_eq!(caps.usage(DType::BFloat16).level(), "arithmetic");
}

/// The same seeded random inputs through every registry op on every target (candle on the
/// cpu and on cuda:0) and on the reference: identical dtypes, values within 64 ulps of the
/// result dtype (exact for integers and bools), identical error kinds.
#[test]
fn same_answers_on_seeded_random_inputs() {
    let mut compared = 0;
    for dtype in [
        DType::Float32,
        DType::Float64,
        DType::Int32,
        DType::Int64,
        DType::Float16,
        DType::Bool,
        DType::UInt8,
    ] {
        for x64 in [false, true] {
            let _s = Scope::new().x64(x64).enter();
            let mk = |seed: u64, shape: &[usize]| -> ArrayData {
                let t = ops::random_normal(
                    shape,
                    0.5,
                    2.0,
                    Some(DType::Float64),
                    seed,
                    Some(Device::Cpu),
                )
                .unwrap();
                let h = t.to_host().unwrap();
                kiln::precision::report::convert_with_report(&h, dtype).0
            };
            let (a, b, bt) = (mk(1, &[3, 4]), mk(2, &[3, 4]), mk(3, &[4, 3]));
            let run = |(engine, device): (BackendKind, Device),
                       op: &str,
                       binary: bool|
             -> kiln::Result<Tensor> {
                let _g = common::target_scope(engine, device, x64);
                let x = convert_to_tensor(&a, None, &device)?;
                if !binary {
                    return call_unary(op, &x);
                }
                let y = convert_to_tensor(
                    if op == "matmul" || op == "dot" {
                        &bt
                    } else {
                        &b
                    },
                    None,
                    &device,
                )?;
                call_binary(op, Operand::Tensor(&x), Operand::Tensor(&y))
            };
            // Every target against the reference (ndarray on the cpu); a GPU target runs
            // under cpu-fallback (`common::target_scope`) and skips the dtypes it lacks.
            let others = common::targets()
                .into_iter()
                .filter(|t| *t != (BackendKind::Ndarray, Device::Cpu));
            for (target, (op, binary)) in others
                .filter(|(e, d)| common::engine_supports(*e, *d, dtype, x64))
                .flat_map(|t| {
                    UNARY
                        .iter()
                        .map(|o| (*o, false))
                        .chain(BINARY.iter().map(|o| (*o, true)))
                        .map(move |o| (t, o))
                })
            {
                let (r, c) = (
                    run((BackendKind::Ndarray, Device::Cpu), op, binary),
                    run(target, op, binary),
                );
                match (r, c) {
                    (Ok(r), Ok(c)) => {
                        // Where the reference's result dtype is one candle lacks (uint64 sums
                        // with x64 on), candle's is the resolver's documented stand-in.
                        // (A GPU target runs under cpu-fallback, which keeps such a dtype and
                        // places the result on the cpu.)
                        let caps = Capabilities::of_engine(target.1, target.0);
                        let want = if caps.supports(r.dtype()) || !target.1.runs_on_host() {
                            Some(r.dtype())
                        } else {
                            caps.substitute(r.dtype())
                        };
                        let (engine, device) = target;
                        assert_eq!(
                            Some(c.dtype()),
                            want,
                            "{engine}@{device}: {op}({dtype}) x64={x64}"
                        );
                        let r = if r.dtype() != c.dtype() {
                            ops::cast(&r, c.dtype()).unwrap()
                        } else {
                            r
                        };
                        // On its device with its engine, or fallen back to the cpu's reference.
                        let at = common::expected_device(engine, device, c.dtype());
                        let by = if at == device {
                            engine
                        } else {
                            BackendKind::Ndarray
                        };
                        assert_eq!((c.device(), c.backend_kind()), (at, by), "{op}({dtype})");
                        let tol = 64.0 * r.dtype().eps();
                        let (rv, cv) = (
                            r.to_host().unwrap().to_scalars(),
                            c.to_host().unwrap().to_scalars(),
                        );
                        for (p, q) in rv.iter().zip(&cv) {
                            let (p, q) = (p.as_c128().re, q.as_c128().re);
                            let ok = p == q
                                || (p.is_nan() && q.is_nan())
                                || (p - q).abs() <= tol * (p.abs() + 1.0);
                            assert!(
                                ok,
                                "{op}({dtype}) x64={x64}: ndarray {p}, {engine}@{device} {q}"
                            );
                        }
                        compared += 1;
                    }
                    (Err(r), Err(c)) => {
                        assert_eq!(
                            r.kind_name(),
                            c.kind_name(),
                            "{op}({dtype}) on {target:?}: {r} vs {c}"
                        )
                    }
                    (r, c) => panic!("{op}({dtype}) x64={x64}: ndarray {r:?}, {target:?} {c:?}"),
                }
            }
        }
    }
    assert!(compared > 1500, "{compared}");
}

#[test]
fn switching_transfers_and_mixing() {
    let h = ArrayData::from(vec![1.0f32, 2.0, 3.0]);
    let a = {
        let _g = on(BackendKind::Ndarray);
        convert_to_tensor(&h, None, &Device::Cpu).unwrap()
    };
    let c = {
        let _g = on(BackendKind::Candle);
        convert_to_tensor(&h, None, &Device::Cpu).unwrap()
    };
    assert_eq!(
        (a.backend_kind(), c.backend_kind()),
        (BackendKind::Ndarray, BackendKind::Candle)
    );
    // Results stay on their operands' engine, whatever the configuration says now.
    {
        let _g = on(BackendKind::Ndarray);
        assert_eq!(ops::exp(&c).unwrap().backend_kind(), BackendKind::Candle);
    }
    // Mixing engines is an error with the fix; an explicit transfer makes it work.
    let e = ops::add(&a, &c).unwrap_err().to_string();
    assert!(
        e.contains("different engines") && e.contains("to_backend"),
        "{e}"
    );
    let moved = c.to_backend(BackendKind::Ndarray).unwrap();
    assert_eq!(
        ops::add(&a, &moved).unwrap().to_vec::<f32>().unwrap(),
        vec![2.0, 4.0, 6.0]
    );
    // The simulated devices keep their limits on candle too.
    let _g = Scope::new()
        .backend(Some(BackendKind::Candle))
        .x64(true)
        .enter();
    let mps = Device::parse("sim:mps").unwrap();
    let t = convert_to_tensor(&ArrayData::from(vec![1.0f64]), None, &mps).unwrap();
    assert_eq!(
        (t.dtype(), t.backend_kind()),
        (DType::Float32, BackendKind::Candle)
    );
    assert!(convert_to_tensor(&ArrayData::from(vec![1.0f64]), Some(DType::Float64), &mps).is_err());
}

#[test]
fn cpu_fallback_is_counted_and_strict_mode_refuses_it() {
    let z = ArrayData::from(vec![kiln::element::C128::new(1.0, 2.0)]);
    let _g = Scope::new()
        .backend(Some(BackendKind::Candle))
        .policy(Policy::CpuFallback)
        .enter();
    let before = warnings::fallback_summary()
        .get("cpu-fallback:complex64@cpu")
        .copied()
        .unwrap_or(0);
    // candle has no complex: the tensor falls back to the reference engine on the cpu.
    let t = convert_to_tensor(&z, None, &Device::Cpu).unwrap();
    assert_eq!(
        (t.dtype(), t.backend_kind()),
        (DType::Complex64, BackendKind::Ndarray)
    );
    assert_eq!(
        ops::abs(&t).unwrap().to_vec::<f32>().unwrap()[0],
        5f32.sqrt()
    );
    assert!(
        warnings::fallback_summary()
            .get("cpu-fallback:complex64@cpu")
            .copied()
            .unwrap_or(0)
            > before
    );
    let _s = Scope::new().strict_fallback(true).enter();
    let e = convert_to_tensor(&z, None, &Device::Cpu).unwrap_err();
    assert!(e.to_string().contains("strict"), "{e}");
}

#[test]
fn seed_scenario_on_candle() {
    let x = kiln::io::read_npy(format!(
        "{}/tests/data/npy/seed_x.npy",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap();
    let want = kiln::io::read_npy(format!(
        "{}/tests/data/npy/seed_log10.npy",
        env!("CARGO_MANIFEST_DIR")
    ))
    .unwrap()
    .to_vec::<f64>()
    .unwrap();
    let mps = Device::parse("sim:mps").unwrap();
    let _g = on(BackendKind::Candle);
    let y = ops::log10(&convert_to_tensor(&x, None, &mps).unwrap()).unwrap();
    assert_eq!(
        (y.dtype(), y.backend_kind()),
        (DType::Float32, BackendKind::Candle)
    );
    for (g, w) in y.to_vec::<f32>().unwrap().iter().zip(&want) {
        assert!((*g as f64 - w).abs() <= 1e-6);
    }
    let _x = Scope::new().x64(true).enter();
    let y = ops::log10(&convert_to_tensor(&x, None, &Device::Cpu).unwrap()).unwrap();
    assert_eq!(y.dtype(), DType::Float64);
    for (g, w) in y.to_vec::<f64>().unwrap().iter().zip(&want) {
        assert!((g - w).abs() <= 1e-12);
    }
    assert!(matches!(
        convert_to_tensor(&x, Some(DType::Float64), &mps),
        Err(KilnError::UnsupportedDType { .. })
    ));
}

/// The GPU target of this run: the real cuda:0 when built with `--features cuda` on a
/// machine with one, else the emulated one (see `common::targets`).
fn gpu() -> Device {
    common::targets()
        .into_iter()
        .map(|(_, d)| d)
        .find(|d| !d.runs_on_host())
        .expect("targets always include a GPU (emulated when none opens)")
}

/// What candle lacks on a GPU is composed from its kernels (`expm1`/`log1p` by Kahan's
/// formulas, NumPy's round-half-even and NaN-keeping sign, first-index argmax/argmin, `power`
/// with one exponent through candle's `powf`): these
/// stay on the device under the default policy, with no fallback, and are accurate to a few
/// ulps *relative* to the value even near zero, where `exp(x) - 1` would lose every digit
/// (the value oracles' tolerance, relative to |value| + 1, cannot see that).
#[test]
fn gpu_compositions_are_accurate_and_stay_on_the_device() {
    let dev = gpu();
    let _g = Scope::new()
        .backend(Some(BackendKind::Candle))
        .device(dev)
        .x64(true)
        .policy(Policy::Error)
        .enter();
    let xs = [
        1e-30,
        -1e-12,
        3e-8,
        -2e-7,
        1e-5,
        -4e-4,
        0.3,
        -0.7,
        1.0,
        5.0,
        -20.0,
        80.0,
        700.0,
        -1.0,
        -0.999,
        0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::NAN,
    ];
    let f = |d: DType, f: fn(f64) -> f64, op: fn(&Tensor) -> kiln::Result<Tensor>, name: &str| {
        let host = ArrayData::from(xs.to_vec());
        let t = convert_to_tensor(&host, Some(d), &dev).unwrap();
        let y = op(&t).unwrap();
        assert_eq!((y.device(), y.dtype()), (dev, d), "{name} {d}");
        let input = t.to_host().unwrap().to_f64_vec();
        for (x, got) in input.iter().zip(y.to_host().unwrap().to_f64_vec()) {
            // The reference in f64, and rounded to the dtype.
            let want = f(*x);
            let want_d =
                kiln::precision::report::convert_with_report(&ArrayData::from(vec![want]), d)
                    .0
                    .to_f64_vec()[0];
            let ok = if want_d.is_nan() {
                got.is_nan()
            } else if want_d.is_infinite() || want_d == 0.0 {
                got == want_d
            } else {
                ((got - want) / want).abs() <= 8.0 * d.eps()
            };
            assert!(ok, "{name}({x}) {d} on {dev}: got {got}, want {want}");
        }
    };
    for d in [DType::Float32, DType::Float64] {
        f(d, f64::exp_m1, ops::expm1, "expm1");
        f(d, f64::ln_1p, ops::log1p, "log1p");
    }
    // round: ties to even, as NumPy; sign: NaN kept.
    let x = ArrayData::from(vec![
        -2.5f32,
        -1.5,
        -0.5,
        0.5,
        1.5,
        2.5,
        3.5,
        0.49999997,
        2.5000002,
        -7.0,
        f32::NAN,
    ]);
    let t = convert_to_tensor(&x, None, &dev).unwrap();
    let r = ops::round(&t).unwrap();
    assert_eq!(r.device(), dev);
    let got = r.to_host().unwrap().to_f64_vec();
    assert_eq!(
        &got[..10],
        &[-2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 4.0, 0.0, 3.0, -7.0]
    );
    assert!(got[10].is_nan());
    let s = ops::sign(&t).unwrap().to_host().unwrap().to_f64_vec();
    assert_eq!(
        &s[..10],
        &[-1.0, -1.0, -1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, -1.0]
    );
    assert!(s[10].is_nan());
    // argmax/argmin: the first of equal extremes, and the first NaN, along either axis.
    let m = ArrayData::from_shape_vec(
        &[3, 5],
        vec![
            1.0f32,
            3.0,
            3.0,
            0.0,
            0.0, //
            f32::NAN,
            2.0,
            f32::NAN,
            -1.0,
            -1.0, //
            5.0,
            5.0,
            5.0,
            5.0,
            5.0,
        ],
    )
    .unwrap();
    let t = convert_to_tensor(&m, None, &dev).unwrap();
    let idx = |y: Tensor| {
        assert_eq!(y.device(), dev);
        y.to_host().unwrap().to_f64_vec()
    };
    assert_eq!(
        idx(ops::argmax(&t, Some(1), false).unwrap()),
        [1.0, 0.0, 0.0]
    );
    assert_eq!(
        idx(ops::argmin(&t, Some(1), false).unwrap()),
        [3.0, 0.0, 0.0]
    );
    assert_eq!(
        idx(ops::argmax(&t, Some(0), false).unwrap()),
        [1.0, 2.0, 1.0, 2.0, 2.0]
    );
    assert_eq!(
        idx(ops::argmin(&t, Some(0), false).unwrap()),
        [1.0, 1.0, 1.0, 1.0, 1.0]
    );
    let ints =
        convert_to_tensor(&ArrayData::from(vec![2i64, 9, 9, -4, 9, -4]), None, &dev).unwrap();
    assert_eq!(idx(ops::argmax(&ints, None, false).unwrap()), [1.0]);
    assert_eq!(idx(ops::argmin(&ints, None, false).unwrap()), [3.0]);
    // power with one exponent: C's pow on the device (negative bases, integral exponents).
    let b = convert_to_tensor(
        &ArrayData::from(vec![-2.0f32, -0.5, 0.0, 3.0, 1e10, f32::NAN]),
        None,
        &dev,
    )
    .unwrap();
    let p = |e: f64| {
        let y = ops::power(&b, e).unwrap();
        assert_eq!((y.device(), y.dtype()), (dev, DType::Float32));
        y.to_host().unwrap().to_f64_vec()
    };
    let (sq, cube, root) = (p(2.0), p(3.0), p(0.5));
    assert_eq!(&sq[..4], &[4.0, 0.25, 0.0, 9.0]);
    assert_eq!(sq[4], (1e10f32 * 1e10f32) as f64);
    assert_eq!(&cube[..4], &[-8.0, -0.125, 0.0, 27.0]);
    assert!(root[0].is_nan() && root[1].is_nan() && root[5].is_nan());
    assert_eq!(root[3], 3f32.sqrt() as f64);
    assert_eq!(p(0.0), [1.0; 6]); // NaN ** 0 is 1, as NumPy
                                  // No primitive above went to the host: under the `error` policy a host kernel on a GPU is
                                  // refused (UnsupportedOp), and every call above succeeded.
}

/// Under `cpu-fallback` (strict mode off) values the policy put on the cpu meet the GPU's: the
/// op runs on the GPU when it can (the cpu operand moves there), else on the cpu as a counted
/// fallback. Under any other policy, or in strict mode, mixing devices stays an error.
#[test]
fn cpu_fallback_joins_cpu_and_gpu_operands() {
    let dev = gpu();
    let host = ArrayData::from(vec![1.0f32, -2.0, 3.5]);
    let labels = ArrayData::from(vec![2i32, 0, 1]);
    {
        let _g = Scope::new()
            .backend(Some(BackendKind::Candle))
            .policy(Policy::CpuFallback)
            .strict_fallback(false)
            .enter();
        let g = convert_to_tensor(&host, None, &dev).unwrap();
        let c = convert_to_tensor(&host, None, &Device::Cpu).unwrap();
        let y = ops::multiply(&g, &c).unwrap();
        assert_eq!((y.device(), y.dtype()), (dev, DType::Float32));
        assert_eq!(y.to_host().unwrap().to_f64_vec(), [1.0, 4.0, 12.25]);
        // int32 has no place on CUDA: kept, on the cpu (a fallback), and usable with the GPU's
        // values; a result the GPU holds goes back there.
        let l = convert_to_tensor(&labels, None, &dev).unwrap();
        assert_eq!((l.device(), l.dtype()), (Device::Cpu, DType::Int32));
        let s = ops::add(&l, &g).unwrap();
        assert_eq!((s.device(), s.dtype()), (dev, DType::Float32));
        assert_eq!(s.to_host().unwrap().to_f64_vec(), [3.0, -2.0, 4.5]);
        let i = ops::add(
            &l,
            &ops::argmax(&ops::reshape(&g, &[1, 3]).unwrap(), None, false).unwrap(),
        )
        .unwrap();
        assert_eq!((i.device(), i.dtype()), (Device::Cpu, DType::Int32));
        assert_eq!(i.to_host().unwrap().to_f64_vec(), [4.0, 2.0, 3.0]);
    }
    for (policy, strict) in [(Policy::Downcast, false), (Policy::CpuFallback, true)] {
        let _g = Scope::new()
            .backend(Some(BackendKind::Candle))
            .policy(policy)
            .strict_fallback(strict)
            .enter();
        let g = convert_to_tensor(&host, None, &dev).unwrap();
        let c = convert_to_tensor(&host, None, &Device::Cpu).unwrap();
        let e = ops::multiply(&g, &c).unwrap_err();
        assert!(
            matches!(e, KilnError::DeviceMismatch { .. }),
            "{policy:?}: {e}"
        );
    }
}

/// A primitive candle has no GPU kernel for (NumPy-ordered sort) is decided by the precision
/// policy, which the frontend hands the engine as its host-fallback gate: refused under
/// `error` and in strict mode, with the fix; computed on the host under `cpu-fallback`,
/// counted, and warned about (with `WarnMode::Always` here, so the test does not depend on
/// which test saw the cause first).
#[test]
fn gpu_host_fallback_is_the_precision_policys_decision() {
    let dev = gpu();
    let host = ArrayData::from(vec![3.0f32, -1.0, 2.0]);
    for (policy, strict) in [(Policy::Error, false), (Policy::CpuFallback, true)] {
        let _g = Scope::new()
            .backend(Some(BackendKind::Candle))
            .policy(policy)
            .strict_fallback(strict)
            .enter();
        let g = convert_to_tensor(&host, None, &dev).unwrap();
        let e = ops::sort(&g, -1).unwrap_err();
        assert!(
            matches!(&e, KilnError::UnsupportedOp { backend, op, dtype: DType::Float32, device, .. }
                if backend == "candle" && op == "sort" && *device == dev),
            "{policy:?} strict={strict}: {e}"
        );
        assert!(e.to_string().contains("cpu-fallback"), "{e}");
    }
    let _g = Scope::new()
        .backend(Some(BackendKind::Candle))
        .policy(Policy::CpuFallback)
        .strict_fallback(false)
        .warnings(kiln::precision::WarnMode::Always)
        .enter();
    let key = format!("cpu-fallback:sort:float32@{dev}");
    let before = warnings::fallback_summary().get(&key).copied().unwrap_or(0);
    let g = convert_to_tensor(&host, None, &dev).unwrap();
    let (sorted, w) = warnings::capture(|| ops::sort(&g, -1).unwrap());
    assert_eq!(sorted.to_host().unwrap().to_f64_vec(), [-1.0, 2.0, 3.0]);
    assert!(
        w.iter()
            .any(|w| w.cause == key && w.message.contains("candle has no float32 kernel")),
        "{w:?}"
    );
    assert!(warnings::fallback_summary()[&key] > before);
}

/// One engine per GPU for the whole process: candle gives each opened device its own id and
/// refuses ops across ids, so two tensors placed on cuda:0 at different times must share it.
#[test]
fn one_engine_per_gpu() {
    let dev = gpu();
    let a = kiln::tensor::engine(BackendKind::Candle, dev).unwrap();
    let b = kiln::tensor::engine(BackendKind::Candle, dev).unwrap();
    assert!(std::sync::Arc::ptr_eq(&a, &b));
}

/// one_hot with more classes than its indices' dtype holds widens the indices through the
/// resolver (int32, which CUDA lacks, becomes int64 there) and stays on the GPU.
#[test]
fn one_hot_widens_narrow_indices_on_the_gpu() {
    let dev = gpu();
    let _g = Scope::new().backend(Some(BackendKind::Candle)).enter();
    let i = convert_to_tensor(&ArrayData::from(vec![0u8, 255]), None, &dev).unwrap();
    let oh = ops::one_hot(&i, 300, None).unwrap();
    assert_eq!(
        (oh.device(), oh.dtype(), oh.shape()),
        (dev, DType::Float32, &[2usize, 300][..])
    );
    let v = oh.to_host().unwrap().to_f64_vec();
    let hot: Vec<usize> = v
        .iter()
        .enumerate()
        .filter(|(_, x)| **x == 1.0)
        .map(|(k, _)| k)
        .collect();
    assert_eq!(hot, [0, 300 + 255]);
    assert_eq!(v.iter().sum::<f64>(), 2.0);
}

/// A transfer keeps an existing tensor's dtype where the target computes in it, even with x64
/// off (the narrowing rule is for data entering kiln, not for values already in it); where
/// the target lacks it, the policy adapts it visibly.
#[test]
fn transfers_keep_the_dtype_with_x64_off() {
    let dev = gpu();
    // (Always: the warning must show even if another test here warned of the same cause.)
    let _g = Scope::new()
        .x64(false)
        .warnings(kiln::precision::WarnMode::Always)
        .enter();
    let x = ops::ones(&[3], Some(DType::Float64), Some(Device::Cpu)).unwrap();
    assert_eq!(
        x.dtype(),
        DType::Float64,
        "explicit float64 is honoured on the cpu"
    );
    let c = x.to_backend(BackendKind::Candle).unwrap();
    assert_eq!(
        (c.dtype(), c.backend_kind()),
        (DType::Float64, BackendKind::Candle)
    );
    let g = x.to_device(dev).unwrap();
    assert_eq!((g.dtype(), g.device()), (DType::Float64, dev));
    let (m, w) = warnings::capture(|| x.to_device(Device::parse("sim:mps").unwrap()).unwrap());
    assert_eq!(m.dtype(), DType::Float32);
    assert!(
        w.iter().any(|l| l.cause.contains("float64")),
        "adapted with a warning: {w:?}"
    );
}

/// With x64 off, a value made 64-bit on purpose keeps 64-bit results on a GPU as on the cpu;
/// the int64 that stands in for CUDA's missing int32 is no such choice, so an op on it gives
/// the dtypes it gives on the cpu (int32 data + 1.5 is float32 on both).
#[test]
fn stand_in_int64_on_the_gpu_does_not_switch_x64_on() {
    let dev = gpu();
    let _g = Scope::new().x64(false).enter();
    let data = ArrayData::from(vec![1i32, 2, 3]);
    let on_cpu = convert_to_tensor(&data, None, &Device::Cpu).unwrap();
    let (on_gpu, _) = warnings::capture(|| convert_to_tensor(&data, None, &dev).unwrap());
    assert_eq!(
        (on_cpu.dtype(), on_gpu.dtype()),
        (DType::Int32, DType::Int64)
    );
    for (name, f) in [
        (
            "add 1.5",
            (|t: &Tensor| ops::add(t, 1.5)) as fn(&Tensor) -> _,
        ),
        ("mean", |t: &Tensor| ops::mean(t, None, false)),
        ("sqrt", |t: &Tensor| ops::sqrt(t)),
    ] {
        let (c, g) = (f(&on_cpu).unwrap(), f(&on_gpu).unwrap());
        assert_eq!(
            (c.dtype(), g.dtype()),
            (DType::Float32, DType::Float32),
            "{name}"
        );
        assert_eq!(
            c.to_vec::<f32>().unwrap(),
            g.to_vec::<f32>().unwrap(),
            "{name}"
        );
    }
    // Integer results stay exact on the GPU (computed in its int64).
    let (s, _) = warnings::capture(|| ops::add(&on_gpu, &on_gpu).unwrap());
    assert_eq!(s.to_vec::<i64>().unwrap(), vec![2, 4, 6]);
    // An explicit float64 on the GPU stays float64 through ops, as on the cpu.
    let x = ops::full(&[2], 1.0 + 1e-12, Some(DType::Float64), Some(dev)).unwrap();
    let y = ops::add(&x, &x).unwrap();
    assert_eq!((y.dtype(), y.device()), (DType::Float64, dev));
    assert_eq!(y.to_vec::<f64>().unwrap(), vec![2.000000000002; 2]);
}

/// int8, uint16 and uint64, which candle has no dtype for, are carried exactly on its cpu
/// and computed by the reference kernels: the same result dtypes and values as ndarray
/// (NumPy: int8 100 + 100 wraps to -56; int8 @ int8 accumulates in int32 in Keras;
/// uint64 keeps values above 2^63).
fn carry<T: kiln::array::HostElement>(shape: &[usize], v: Vec<T>) -> kiln::Result<Tensor> {
    let a = ArrayData::from_shape_vec(shape, v)?;
    let d = a.dtype();
    convert_to_tensor(&a, Some(d), &Device::Cpu)
}

#[test]
fn carried_dtypes_on_candle_match_ndarray() {
    for engine in [BackendKind::Ndarray, BackendKind::Candle] {
        let _g = on(engine);
        let a = carry(&[1, 3], vec![100i8, -128, 7]).unwrap();
        assert_eq!((a.dtype(), a.backend_kind()), (DType::Int8, engine));
        let s = ops::add(&a, &a).unwrap();
        assert_eq!(s.dtype(), DType::Int8, "{engine:?}");
        assert_eq!(s.to_vec::<i8>().unwrap(), vec![-56, 0, 14], "{engine:?}");
        let m = ops::matmul(&a, &ops::transpose(&a, None).unwrap()).unwrap();
        assert_eq!(m.dtype(), DType::Int32, "{engine:?}");
        assert_eq!(
            m.to_vec::<i32>().unwrap(),
            vec![10000 + 16384 + 49],
            "{engine:?}"
        );
        // Layout primitives run on candle itself and keep the dtype.
        let t = ops::concatenate(&[&a, &ops::flip(&a, None).unwrap()], 0).unwrap();
        assert_eq!(t.dtype(), DType::Int8);
        assert_eq!(
            ops::transpose(&t, None).unwrap().to_vec::<i8>().unwrap(),
            vec![100, 7, -128, -128, 7, 100]
        );
        let big = carry(&[2], vec![(1u64 << 63) + 5, 3]).unwrap();
        assert_eq!(big.dtype(), DType::UInt64);
        let mx = ops::max(&big, None, false).unwrap();
        assert_eq!(
            mx.to_vec::<u64>().unwrap(),
            vec![(1u64 << 63) + 5],
            "{engine:?}"
        );
        let gt = ops::greater(
            &big,
            &ops::full(&[2], 4, Some(DType::UInt64), None).unwrap(),
        );
        assert_eq!(gt.unwrap().to_vec::<bool>().unwrap(), vec![true, false]);
        let w = carry(&[2], vec![65535u16, 1]).unwrap();
        let ws = ops::add(&w, &w).unwrap();
        assert_eq!(
            (ws.dtype(), ws.to_vec::<u16>().unwrap()),
            (DType::UInt16, vec![65534, 2])
        );
        let c = ops::cast(&a, DType::Float32).unwrap();
        assert_eq!(c.to_vec::<f32>().unwrap(), vec![100.0, -128.0, 7.0]);
        let back = ops::cast(
            &ops::full(&[1], 300.0, Some(DType::Float32), None).unwrap(),
            DType::Int8,
        );
        assert_eq!(back.unwrap().dtype(), DType::Int8);
    }
}

/// NumPy's maximum/minimum on both engines (candle's cpu runs them in one pass): NaN from
/// either side wins, ties give the second operand, a scalar on either side. NumPy 2.4
/// float32/float64: np.maximum([nan, 1, -0., 2], [1, nan, 0., 3]) = [nan, nan, 0., 3] and
/// np.minimum(...) = [nan, nan, 0., 2] (its float16 loop keeps the first operand on ties; kiln
/// gives the second for every float dtype on every engine).
#[test]
fn maximum_and_minimum_propagate_nan_and_keep_ties() {
    for engine in [BackendKind::Ndarray, BackendKind::Candle] {
        let _g = on(engine);
        for dtype in [
            DType::Float32,
            DType::Float64,
            DType::Float16,
            DType::BFloat16,
        ] {
            let a =
                ops::cast(&carry(&[4], vec![f64::NAN, 1.0, -0.0, 2.0]).unwrap(), dtype).unwrap();
            let b = ops::cast(&carry(&[4], vec![1.0, f64::NAN, 0.0, 3.0]).unwrap(), dtype).unwrap();
            let bits = |t: Tensor| -> Vec<(bool, f64)> {
                t.to_f64_vec()
                    .unwrap()
                    .iter()
                    .map(|v| (v.is_nan(), if v.is_nan() { 0.0 } else { *v }))
                    .collect()
            };
            let signs = |t: &Tensor| -> Vec<bool> {
                t.to_f64_vec()
                    .unwrap()
                    .iter()
                    .map(|v| v.is_sign_negative())
                    .collect()
            };
            let mx = ops::maximum(&a, &b).unwrap();
            let mn = ops::minimum(&a, &b).unwrap();
            for (name, got, last) in [("maximum", &mx, 3.0), ("minimum", &mn, 2.0)] {
                let want = vec![(true, 0.0), (true, 0.0), (false, 0.0), (false, last)];
                assert_eq!(bits(got.clone()), want, "{engine:?} {dtype} {name}");
                assert!(!signs(got)[2], "{engine:?} {dtype}: {name}(-0, 0) is +0");
            }
            // Strided operands take candle's composed path: the same answers.
            let at = ops::transpose(&ops::reshape(&a, &[1, 4]).unwrap(), None).unwrap();
            let bt = ops::reshape(&b, &[4, 1]).unwrap();
            let mt = ops::reshape(&ops::maximum(&at, &bt).unwrap(), &[4]).unwrap();
            assert_eq!(
                bits(mt.clone()),
                bits(mx.clone()),
                "{engine:?} {dtype} strided"
            );
            assert!(
                !signs(&mt)[2],
                "{engine:?} {dtype}: strided maximum(-0, 0) is +0"
            );
            let r = ops::maximum(&a, 1.5).unwrap();
            assert_eq!(
                bits(r),
                vec![(true, 0.0), (false, 1.5), (false, 1.5), (false, 2.0)]
            );
            let r = ops::minimum(1.5, &b).unwrap();
            assert_eq!(
                bits(r),
                vec![(false, 1.0), (true, 0.0), (false, 0.0), (false, 1.5)]
            );
        }
    }
}
