//! The two engines side by side: the candle profile entry by entry, same answers on the
//! same seeded random inputs, switching and transfers, the CPU fallback and strict mode.
#![cfg(feature = "candle")]

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

/// The same seeded random inputs through every registry op on both engines: identical
/// dtypes, values within 64 ulps of the result dtype (exact for integers and bools),
/// identical error kinds.
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
            let run = |engine: BackendKind, op: &str, binary: bool| -> kiln::Result<Tensor> {
                let _g = on(engine);
                let x = convert_to_tensor(&a, None, &Device::Cpu)?;
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
                    &Device::Cpu,
                )?;
                call_binary(op, Operand::Tensor(&x), Operand::Tensor(&y))
            };
            for (op, binary) in UNARY
                .iter()
                .map(|o| (*o, false))
                .chain(BINARY.iter().map(|o| (*o, true)))
            {
                let (r, c) = (
                    run(BackendKind::Ndarray, op, binary),
                    run(BackendKind::Candle, op, binary),
                );
                match (r, c) {
                    (Ok(r), Ok(c)) => {
                        // Where the reference's result dtype is one candle lacks (uint64 sums
                        // with x64 on), candle's is the resolver's documented stand-in.
                        let caps = Capabilities::of_engine(Device::Cpu, BackendKind::Candle);
                        let want = if caps.supports(r.dtype()) {
                            Some(r.dtype())
                        } else {
                            caps.substitute(r.dtype())
                        };
                        assert_eq!(Some(c.dtype()), want, "{op}({dtype}) x64={x64}");
                        let r = if r.dtype() != c.dtype() {
                            ops::cast(&r, c.dtype()).unwrap()
                        } else {
                            r
                        };
                        assert_eq!(c.backend_kind(), BackendKind::Candle);
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
                            assert!(ok, "{op}({dtype}) x64={x64}: ndarray {p}, candle {q}");
                        }
                        compared += 1;
                    }
                    (Err(r), Err(c)) => {
                        assert_eq!(r.kind_name(), c.kind_name(), "{op}({dtype}): {r} vs {c}")
                    }
                    (r, c) => panic!("{op}({dtype}) x64={x64}: ndarray {r:?}, candle {c:?}"),
                }
            }
        }
    }
    assert!(compared > 900, "{compared}");
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
