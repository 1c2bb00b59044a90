//! Every fused kernel against its composed reference (`ops::composed`), on random shapes,
//! axes, values (NaN, infinities, signed zeros and large magnitudes included) and every
//! float dtype, on every engine; and a check that the ndarray engine really takes the fused
//! path (a test of the comparison would pass if both sides ran the composition).

use crate::common::targets;
use kiln::backend::{Activation, Backend, FusedReduce, Normalize};
use kiln::ops::{self, composed};
use kiln::precision::Scope;
use kiln::{ArrayData, DType, Device, Tensor};
use proptest::prelude::*;

const FLOATS: [DType; 4] = [
    DType::Float32,
    DType::Float64,
    DType::Float16,
    DType::BFloat16,
];

fn values(n: usize, seed: u64, scale: f64) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let h = (i as u64 ^ seed).wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 11;
            match h % 61 {
                0 => f64::NAN,
                1 => f64::INFINITY,
                2 => f64::NEG_INFINITY,
                3 => -0.0,
                4 => 0.0,
                5 => 1e-30,
                6 => -60.0,
                _ => ((h % 20001) as f64 * 1e-4 - 1.0) * scale,
            }
        })
        .collect()
}

fn tensor(shape: &[usize], dtype: DType, seed: u64, scale: f64) -> Tensor {
    let n: usize = shape.iter().product();
    let x = ArrayData::from_shape_vec(shape, values(n, seed, scale)).unwrap();
    let t = kiln::convert_to_tensor(&x, Some(DType::Float64), &Device::Cpu).unwrap();
    ops::cast(&t, dtype).unwrap()
}

/// Both agree to `ulps` of the dtype, relative to the larger magnitude, with an absolute
/// floor of `ulps * eps` (values that cancel towards 0), NaN where the other is NaN.
fn agree(got: &Tensor, want: &Tensor, ulps: f64, tag: &str) -> std::result::Result<(), String> {
    if got.shape() != want.shape() || got.dtype() != want.dtype() {
        return Err(format!(
            "{tag}: {:?} {} vs {:?} {}",
            got.shape(),
            got.dtype(),
            want.shape(),
            want.dtype()
        ));
    }
    let eps = want.dtype().eps();
    let (g, w) = (got.to_f64_vec().unwrap(), want.to_f64_vec().unwrap());
    for (i, (a, b)) in g.iter().zip(&w).enumerate() {
        let ok = (a.is_nan() && b.is_nan())
            || a == b
            || (a - b).abs() <= ulps * eps * a.abs().max(b.abs()).max(1.0);
        if !ok {
            return Err(format!("{tag}: element {i}: fused {a:e} vs composed {b:e}"));
        }
    }
    Ok(())
}

fn shape_and_axis() -> impl Strategy<Value = (Vec<usize>, usize)> {
    prop::collection::vec(1usize..9, 1..4).prop_flat_map(|s| {
        let n = s.len();
        (Just(s), 0..n)
    })
}

fn shape_and_axes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec(0usize..7, 0..4).prop_flat_map(|s| {
        let n = s.len();
        (Just(s), prop::collection::vec(any::<bool>(), n)).prop_map(|(s, m)| {
            let axes = (0..s.len()).filter(|&i| m[i]).collect();
            (s, axes)
        })
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn activations_equal_their_compositions(shape in prop::collection::vec(1usize..40, 1..3), seed in any::<u64>(), scale in prop_oneof![Just(1.0), Just(8.0), Just(100.0)]) {
        for (engine, device) in targets() {
            let _g = Scope::new().backend(Some(engine)).enter();
            for dtype in FLOATS {
                if engine == kiln::backend::BackendKind::Candle && dtype == DType::Float16 && !device.runs_on_host() {
                    continue;
                }
                let x = tensor(&shape, dtype, seed, scale).to_backend(engine).unwrap();
                let Ok(x) = x.to_device(device) else { continue };
                type F = fn(&Tensor) -> kiln::Result<Tensor>;
                let cases: [(&str, F, F, f64); 9] = [
                    ("relu", ops::relu, composed::relu, 0.0),
                    ("relu6", ops::relu6, composed::relu6, 0.0),
                    ("sigmoid", ops::sigmoid, composed::sigmoid, 4.0),
                    ("silu", ops::silu, composed::silu, 6.0),
                    ("softplus", ops::softplus, composed::softplus, 4.0),
                    ("gelu", |x| ops::gelu(x, true), |x| composed::gelu(x, true), 16.0),
                    ("gelu_erf", |x| ops::gelu(x, false), |x| composed::gelu(x, false), 16.0),
                    ("elu", |x| ops::elu(x, 1.3), |x| composed::elu(x, 1.3), 4.0),
                    ("leaky_relu", |x| ops::leaky_relu(x, 0.2), |x| composed::leaky_relu(x, 0.2), 1.0),
                ];
                for (name, fused, comp, ulps) in cases {
                    let tag = format!("{name} {dtype} {engine}@{device} {shape:?}");
                    let (Ok(a), Ok(b)) = (fused(&x), comp(&x)) else {
                        prop_assert_eq!(fused(&x).is_ok(), comp(&x).is_ok(), "{}", tag);
                        continue;
                    };
                    // The gelu compositions cancel for very negative x (1 + tanh -> 0): there
                    // the fused body is exact and the composition's error is absolute.
                    let ulps = if name.starts_with("gelu") { ulps * scale } else { ulps };
                    if let Err(m) = agree(&a, &b, ulps.max(0.5), &tag) { prop_assert!(false, "{}", m); }
                }
            }
        }
    }

    #[test]
    fn softmax_equals_its_composition((shape, axis) in shape_and_axis(), seed in any::<u64>(), scale in prop_oneof![Just(1.0), Just(30.0)]) {
        for (engine, device) in targets() {
            let _g = Scope::new().backend(Some(engine)).enter();
            for dtype in FLOATS {
                let x = tensor(&shape, dtype, seed, scale).to_backend(engine).unwrap();
                let Ok(x) = x.to_device(device) else { continue };
                for (name, log) in [("softmax", false), ("log_softmax", true)] {
                    let tag = format!("{name} {dtype} {engine}@{device} {shape:?} axis {axis}");
                    let a = if log { ops::log_softmax(&x, axis as isize) } else { ops::softmax(&x, axis as isize) };
                    let b = if log { composed::log_softmax(&x, axis) } else { composed::softmax(&x, axis) };
                    match (a, b) {
                        (Ok(a), Ok(b)) => if let Err(m) = agree(&a, &b, 8.0, &tag) { prop_assert!(false, "{}", m); },
                        (a, b) => prop_assert_eq!(a.is_ok(), b.is_ok(), "{}", tag),
                    }
                }
            }
        }
    }

    #[test]
    fn fused_reductions_equal_their_compositions((shape, axes) in shape_and_axes(), seed in any::<u64>(), keep in any::<bool>()) {
        for (engine, device) in targets() {
            let _g = Scope::new().backend(Some(engine)).enter();
            for dtype in FLOATS {
                let x = tensor(&shape, dtype, seed, 3.0).to_backend(engine).unwrap();
                let Ok(x) = x.to_device(device) else { continue };
                let ia: Vec<isize> = axes.iter().map(|a| *a as isize).collect();
                let tag = |n: &str| format!("{n} {dtype} {engine}@{device} {shape:?} axes {axes:?} keepdims {keep}");
                let pairs: [(&str, kiln::Result<Tensor>, kiln::Result<Tensor>, f64); 4] = [
                    ("mean", ops::mean(&x, Some(&ia), keep), composed::mean(&x, &axes, keep), 8.0),
                    ("var", ops::var(&x, Some(&ia), keep), composed::var(&x, &axes, keep), 16.0),
                    ("std", ops::std(&x, Some(&ia), keep), composed::std(&x, &axes, keep), 16.0),
                    ("logsumexp", ops::logsumexp(&x, Some(&ia), keep), composed::logsumexp(&x, &axes, keep), 8.0),
                ];
                for (name, a, b, ulps) in pairs {
                    match (a, b) {
                        (Ok(a), Ok(b)) => if let Err(m) = agree(&a, &b, ulps, &tag(name)) { prop_assert!(false, "{}", m); },
                        (a, b) => prop_assert_eq!(a.is_ok(), b.is_ok(), "{}", tag(name)),
                    }
                }
                // (On a GPU without the cpu-fallback policy both refuse the integer sum.)
                match (ops::count_nonzero(&x, Some(&ia)), composed::count_nonzero(&x, &axes)) {
                    (Ok(a), Ok(b)) => {
                        let b = ops::cast(&b, a.dtype()).unwrap();
                        prop_assert_eq!(a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap(), "{}", tag("count_nonzero"));
                    }
                    (a, b) => prop_assert_eq!(a.is_ok(), b.is_ok(), "{}", tag("count_nonzero")),
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// `clip` with weak bounds (the fused pass) equals `minimum(maximum(x, lo), hi)`, bounds
    /// rounded to the dtype as weak scalars are; `one_hot` equals the composition
    /// `equal(indices[..., None], classes)` cast to the dtype, out-of-range rows all zero.
    #[test]
    fn clip_and_one_hot_equal_their_compositions(shape in prop::collection::vec(1usize..30, 1..3), seed in any::<u64>(), lo in -3.0f64..1.0, width in 0.0f64..4.0, classes in 1usize..12) {
        for (engine, device) in targets() {
            let _g = Scope::new().backend(Some(engine)).enter();
            for dtype in FLOATS {
                let x = tensor(&shape, dtype, seed, 4.0).to_backend(engine).unwrap();
                let Ok(x) = x.to_device(device) else { continue };
                let tag = format!("clip {dtype} {engine}@{device} {shape:?} [{lo}, {}]", lo + width);
                let (a, b) = (ops::clip(&x, lo, lo + width), composed::clip(&x, lo, lo + width));
                match (a, b) {
                    (Ok(a), Ok(b)) => if let Err(m) = agree(&a, &b, 0.0, &tag) { prop_assert!(false, "{}", m); },
                    (a, b) => prop_assert_eq!(a.is_ok(), b.is_ok(), "{}", tag),
                }
            }
            let n: usize = shape.iter().product();
            let idx: Vec<i32> = values(n, seed, 1.0).iter().map(|v| if v.is_finite() { (v * classes as f64 * 1.3) as i32 } else { -1 }).collect();
            let t = kiln::convert_to_tensor(&ArrayData::from_shape_vec(&shape, idx.clone()).unwrap(), None, &Device::Cpu).unwrap();
            let Ok(t) = t.to_backend(engine).and_then(|t| t.to_device(device)) else { continue };
            let got = ops::one_hot(&t, classes, None).unwrap();
            prop_assert_eq!(got.dtype(), DType::Float32);
            let mut want_shape = shape.clone();
            want_shape.push(classes);
            prop_assert_eq!(got.shape(), &want_shape[..]);
            let want: Vec<f64> = idx.iter().flat_map(|&i| (0..classes as i32).map(move |c| if c == i { 1.0 } else { 0.0 })).collect();
            prop_assert_eq!(got.to_f64_vec().unwrap(), want);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// `triu`/`tril` (the fused row-split pass) equal `where(mask, x, 0)` exactly, for every
    /// float dtype plus bool and int32, 2 to 4 axes (empty ones included), offsets past both
    /// edges, and a transposed (non-contiguous) input.
    #[test]
    fn triangles_equal_their_compositions(shape in prop::collection::vec(0usize..7, 2..5), seed in any::<u64>(), k in -8isize..8, transposed in any::<bool>()) {
        for (engine, device) in targets() {
            let _g = Scope::new().backend(Some(engine)).enter();
            for dtype in FLOATS.into_iter().chain([DType::Bool, DType::Int32]) {
                let x = if dtype.is_float() {
                    tensor(&shape, dtype, seed, 4.0)
                } else {
                    // Integers from the same values (NaN and infinities as -1), then the dtype.
                    let n: usize = shape.iter().product();
                    let v: Vec<i32> = values(n, seed, 50.0).iter().map(|v| if v.is_finite() { *v as i32 } else { -1 }).collect();
                    let t = kiln::convert_to_tensor(&ArrayData::from_shape_vec(&shape, v).unwrap(), None, &Device::Cpu).unwrap();
                    ops::cast(&t, dtype).unwrap()
                };
                let Ok(mut x) = x.to_backend(engine).and_then(|x| x.to_device(device)) else { continue };
                if transposed {
                    x = ops::transpose(&x, None).unwrap();
                }
                for upper in [true, false] {
                    let tag = format!("triangle upper={upper} k={k} {dtype} {engine}@{device} {:?}", x.shape());
                    let a = if upper { ops::triu(&x, k) } else { ops::tril(&x, k) }.unwrap();
                    let b = composed::triangle(&x, k, upper).unwrap();
                    prop_assert_eq!(a.shape(), b.shape(), "{}", tag);
                    prop_assert_eq!(a.dtype(), b.dtype(), "{}", tag);
                    let (va, vb) = (a.to_f64_vec().unwrap(), b.to_f64_vec().unwrap());
                    for (i, (p, q)) in va.iter().zip(&vb).enumerate() {
                        // Bit-equal, so -0.0 kept and NaN copied (not compared as values).
                        prop_assert!(p.to_bits() == q.to_bits(), "{}: element {}: {} vs {}", tag, i, p, q);
                    }
                }
            }
        }
    }
}

#[test]
fn the_ndarray_engine_takes_the_fused_paths() {
    let be = kiln::backend::ndarray::NdarrayBackend;
    let s = be
        .upload(
            ArrayData::from_shape_vec(&[2, 3], vec![1.0f32, -2.0, 3.0, 0.5, 0.0, -1.0]).unwrap(),
        )
        .unwrap();
    for act in [
        Activation::Relu,
        Activation::Relu6,
        Activation::Sigmoid,
        Activation::Silu,
        Activation::Softplus,
        Activation::Gelu { approximate: true },
        Activation::Gelu { approximate: false },
        Activation::Elu { alpha: 1.0 },
        Activation::LeakyRelu {
            negative_slope: 0.2,
        },
    ] {
        assert!(be.activation(act, &s).unwrap().is_some(), "{act:?}");
    }
    for op in [Normalize::Softmax, Normalize::LogSoftmax] {
        assert!(be.normalize(op, &s, 1).unwrap().is_some(), "{op:?}");
    }
    for op in [
        FusedReduce::Mean,
        FusedReduce::Var,
        FusedReduce::Std,
        FusedReduce::LogSumExp,
        FusedReduce::CountNonzero,
    ] {
        assert!(
            be.reduce_fused(op, &s, &[1], false).unwrap().is_some(),
            "{op:?}"
        );
    }
    assert!(be
        .one_hot(
            &be.upload(ArrayData::from(vec![1i32, 5])).unwrap(),
            3,
            DType::Float32
        )
        .unwrap()
        .is_some());
    for upper in [true, false] {
        assert!(be.triangle(&s, 0, upper).unwrap().is_some());
    }
    // Integer activations compose (relu of int32 stays int32 through `maximum`).
    let i = be
        .upload(ArrayData::from_shape_vec(&[2], vec![-1i32, 2]).unwrap())
        .unwrap();
    assert!(be.activation(Activation::Relu, &i).unwrap().is_none());
}

#[test]
fn softmax_of_a_long_row_and_extreme_values() {
    // A 100k-element row takes the split-across-threads path; rows of +-inf and NaN follow
    // the composition's semantics (NaN where exp(x - max) is inf - inf).
    let n = 100_000;
    let v: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 * 0.01).collect();
    let x = kiln::convert_to_tensor(
        &ArrayData::from_shape_vec(&[1, n], v).unwrap(),
        None,
        &Device::Cpu,
    )
    .unwrap();
    let a = ops::softmax(&x, -1).unwrap();
    let b = composed::softmax(&x, 1).unwrap();
    agree(&a, &b, 8.0, "long row").unwrap();
    let s: f64 = a.to_f64_vec().unwrap().iter().sum();
    assert!((s - 1.0).abs() < 1e-5, "sums to {s}");
    let x = kiln::convert_to_tensor(
        &ArrayData::from_shape_vec(
            &[3, 2],
            vec![
                f32::NEG_INFINITY,
                f32::NEG_INFINITY,
                f32::INFINITY,
                1.0,
                f32::NAN,
                1.0,
            ],
        )
        .unwrap(),
        None,
        &Device::Cpu,
    )
    .unwrap();
    agree(
        &ops::softmax(&x, 1).unwrap(),
        &composed::softmax(&x, 1).unwrap(),
        0.0,
        "extremes",
    )
    .unwrap();
    agree(
        &ops::log_softmax(&x, 1).unwrap(),
        &composed::log_softmax(&x, 1).unwrap(),
        0.0,
        "extremes",
    )
    .unwrap();
}
