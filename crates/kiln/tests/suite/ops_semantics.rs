//! Semantics of creation, shape, indexing, linalg, nn and random ops against values worked
//! out with NumPy (quoted in comments), plus property tests of broadcasting and promotion.

use kiln::dtype::promote::{result_type, DTypeLike};
use kiln::ops::{self, Axes, SliceArg, Split};
use kiln::{convert_to_tensor, ArrayData, DType, Device, Tensor};
use proptest::prelude::*;

fn t<T: kiln::array::HostElement>(shape: &[usize], v: Vec<T>) -> Tensor {
    convert_to_tensor(
        &ArrayData::from_shape_vec(shape, v).unwrap(),
        None,
        &Device::Cpu,
    )
    .unwrap()
}

fn f32s(x: &Tensor) -> Vec<f32> {
    x.to_vec::<f32>().unwrap()
}

fn i32s(x: &Tensor) -> Vec<i32> {
    x.to_vec::<i32>().unwrap()
}

#[test]
fn creation() {
    // np.arange(5, 0, -2) -> [5, 3, 1]; np.arange(0.0, 1.0, 0.25) -> [0, .25, .5, .75]
    assert_eq!(
        i32s(&ops::arange(5, 0, -2, None, None).unwrap()),
        vec![5, 3, 1]
    );
    let r = ops::arange(0.0, 1.0, 0.25, None, None).unwrap();
    assert_eq!(
        (r.dtype(), f32s(&r)),
        (DType::Float32, vec![0.0, 0.25, 0.5, 0.75])
    );
    assert!(ops::arange(0, 1, 0, None, None).is_err());
    // np.linspace(0, 1, 5) and endpoint=False
    assert_eq!(
        f32s(&ops::linspace(0.0, 1.0, 5, true, None, None).unwrap()),
        vec![0.0, 0.25, 0.5, 0.75, 1.0]
    );
    assert_eq!(
        f32s(&ops::linspace(0.0, 1.0, 4, false, None, None).unwrap()),
        vec![0.0, 0.25, 0.5, 0.75]
    );
    // np.eye(2, 3, k=1)
    assert_eq!(
        f32s(&ops::eye(2, Some(3), 1, None, None).unwrap()),
        vec![0., 1., 0., 0., 0., 1.]
    );
    let f = ops::full(&[2], 7, None, None).unwrap();
    assert_eq!((f.dtype(), i32s(&f)), (DType::Int32, vec![7, 7]));
    let o = ops::ones_like(&f, Some(DType::Float16)).unwrap();
    assert_eq!(o.dtype(), DType::Float16);
    let tpu = Device::parse("sim:tpu").unwrap();
    assert!(
        ops::zeros(&[1], Some(DType::Int64), Some(tpu)).is_err(),
        "explicit int64 on a TPU is refused"
    );
    assert!(
        ops::zeros(&[usize::MAX, 2], None, None).is_err(),
        "overflowing shapes are an error, not a panic"
    );
}

#[test]
fn random_streams_are_seeded_device_independent_and_distributed() {
    let devs = ["cpu", "sim:mps", "sim:tpu", "sim:webgpu"].map(|d| Device::parse(d).unwrap());
    let base = f32s(&ops::random_normal(&[1000], 0.0, 1.0, None, 42, Some(devs[0])).unwrap());
    for d in &devs[1..] {
        assert_eq!(
            f32s(&ops::random_normal(&[1000], 0.0, 1.0, None, 42, Some(*d)).unwrap()),
            base
        );
    }
    assert_ne!(
        f32s(&ops::random_normal(&[1000], 0.0, 1.0, None, 43, None).unwrap()),
        base
    );
    let n = 200_000;
    let x = ops::random_normal(&[n], 2.0, 3.0, Some(DType::Float64), 7, None).unwrap();
    let m = ops::mean(&x, None, false).unwrap().to_f64_vec().unwrap()[0];
    let s = ops::std(&x, None, false).unwrap().to_f64_vec().unwrap()[0];
    // Standard errors: 3/sqrt(n) = 0.0067 for the mean; about 0.0047 for the std.
    assert!(
        (m - 2.0).abs() < 0.03 && (s - 3.0).abs() < 0.03,
        "mean {m}, std {s}"
    );
    let u = ops::random_uniform(&[n], -1.0, 3.0, None, 9, None).unwrap();
    let (lo, hi) = (
        ops::min(&u, None, false).unwrap(),
        ops::max(&u, None, false).unwrap(),
    );
    assert!(f32s(&lo)[0] >= -1.0 && f32s(&hi)[0] < 3.0);
    let um = ops::mean(&u, None, false).unwrap().to_f64_vec().unwrap()[0];
    assert!((um - 1.0).abs() < 0.02, "{um}");
    assert!(ops::random_uniform(&[2], 1.0, 1.0, None, 0, None).is_err());
    assert!(ops::random_normal(&[2], 0.0, 1.0, Some(DType::Int32), 0, None).is_err());
}

#[test]
fn reshape_transpose_slice_flip_split() {
    let x = t(&[2, 3], (0..6).collect::<Vec<i32>>());
    assert_eq!(
        i32s(&ops::transpose(&x, None).unwrap()),
        vec![0, 3, 1, 4, 2, 5]
    );
    assert!(ops::transpose(&x, Some(&[0, 0])).is_err());
    // x[:, ::-2] -> [[2, 0], [5, 3]]
    let s = ops::strided_slice(&x, &[SliceArg::all(), SliceArg::new(None, None, -2)]).unwrap();
    assert_eq!((s.shape(), i32s(&s)), (&[2usize, 2][..], vec![2, 0, 5, 3]));
    // x[-1:, 1:100] -> [[4, 5]]
    let s = ops::strided_slice(
        &x,
        &[SliceArg::new(Some(-1), None, 1), SliceArg::range(1, 100)],
    )
    .unwrap();
    assert_eq!(i32s(&s), vec![4, 5]);
    assert!(ops::strided_slice(&x, &[SliceArg::new(None, None, 0)]).is_err());
    assert_eq!(
        i32s(&ops::flip(&x, Some(&[1])).unwrap()),
        vec![2, 1, 0, 5, 4, 3]
    );
    let parts = ops::split(&x, Split::Indices(vec![1, 2]), 1).unwrap();
    assert_eq!(
        parts.iter().map(i32s).collect::<Vec<_>>(),
        vec![vec![0, 3], vec![1, 4], vec![2, 5]]
    );
    assert!(ops::split(&x, Split::Sections(2), 1).is_err());
    assert_eq!(ops::expand_dims(&x, -1).unwrap().shape(), &[2, 3, 1]);
    assert!(ops::squeeze(&x, Some(0)).is_err());
    assert_eq!(
        ops::squeeze(&ops::reshape(&x, &[1, 6, 1]).unwrap(), None)
            .unwrap()
            .shape(),
        &[6]
    );
    assert!(ops::broadcast_to(&x, &[3, 3]).is_err());
    assert_eq!(
        ops::broadcast_to(&x, &[4, 2, 3]).unwrap().shape(),
        &[4, 2, 3]
    );
}

#[test]
fn joining_gathering_padding() {
    let a = t(&[2], vec![1i8, 2]);
    let b = t(&[2], vec![300i16, 4]);
    let c = ops::concatenate(&[&a, &b], 0).unwrap();
    assert_eq!(
        (c.dtype(), c.to_vec::<i16>().unwrap()),
        (DType::Int16, vec![1, 2, 300, 4])
    );
    assert_eq!(ops::stack(&[&a, &a], 1).unwrap().shape(), &[2, 2]);
    let x = t(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]);
    // np.tile(x, (1, 2)), np.repeat(x, 2, axis=0)
    assert_eq!(
        f32s(&ops::tile(&x, &[1, 2]).unwrap()),
        vec![1., 2., 1., 2., 3., 4., 3., 4.]
    );
    assert_eq!(
        f32s(&ops::repeat(&x, 2, Some(0)).unwrap()),
        vec![1., 2., 1., 2., 3., 4., 3., 4.]
    );
    // np.pad(x, ((1, 0), (0, 1)), constant_values=9)
    assert_eq!(
        f32s(&ops::pad(&x, &[(1, 0), (0, 1)], 9.0).unwrap()),
        vec![9., 9., 9., 1., 2., 9., 3., 4., 9.]
    );
    let idx = t(&[3], vec![-1i32, 0, 1]);
    assert_eq!(
        f32s(&ops::take(&x, &idx, Some(1)).unwrap()),
        vec![2., 1., 2., 4., 3., 4.]
    );
    assert!(ops::take(&x, &t(&[1], vec![5i32]), Some(0)).is_err());
    let order = ops::argsort(&x, -1).unwrap();
    let back = ops::take_along_axis(&x, &ops::flip(&order, Some(&[1])).unwrap(), 1).unwrap();
    assert_eq!(f32s(&back), vec![2., 1., 4., 3.]);
    let oh = ops::one_hot(&t(&[3], vec![0i32, 2, 5]), 3, None).unwrap();
    assert_eq!(f32s(&oh), vec![1., 0., 0., 0., 0., 1., 0., 0., 0.]);
}

#[test]
fn sorting_with_nan_and_triangles() {
    let x = t(&[5], vec![3.0f32, f32::NAN, -1.0, 2.0, -1.0]);
    let s = f32s(&ops::sort(&x, -1).unwrap());
    assert_eq!(&s[..4], &[-1.0, -1.0, 2.0, 3.0]);
    assert!(s[4].is_nan());
    assert_eq!(i32s(&ops::argsort(&x, 0).unwrap()), vec![2, 4, 3, 0, 1]); // stable, NaN last
    assert_eq!(i32s(&ops::argmax(&x, None, false).unwrap()), vec![1]); // NaN wins, as NumPy
    let m = t(&[3, 3], (1..=9).map(|v| v as f32).collect());
    assert_eq!(
        f32s(&ops::triu(&m, 1).unwrap()),
        vec![0., 2., 3., 0., 0., 6., 0., 0., 0.]
    );
    assert_eq!(
        f32s(&ops::tril(&m, -1).unwrap()),
        vec![0., 0., 0., 4., 0., 0., 7., 8., 0.]
    );
    assert_eq!(f32s(&ops::diag(&m, 1).unwrap()), vec![2., 6.]);
    assert_eq!(
        f32s(&ops::diag(&t(&[2], vec![1.0f32, 2.0]), -1).unwrap()),
        vec![0., 0., 0., 1., 0., 0., 0., 2., 0.]
    );
    assert_eq!(f32s(&ops::trace(&m, 0).unwrap()), vec![15.0]);
}

#[test]
fn reductions_with_axes() {
    let x = t(&[2, 3], vec![1.0f32, 5.0, 3.0, -2.0, 0.0, 4.0]);
    assert_eq!(
        f32s(&ops::sum(&x, Some(&[0]), false).unwrap()),
        vec![-1.0, 5.0, 7.0]
    );
    assert_eq!(ops::max(&x, Some(&[1]), true).unwrap().shape(), &[2, 1]);
    assert_eq!(i32s(&ops::argmin(&x, Some(1), false).unwrap()), vec![0, 0]);
    assert_eq!(
        i32s(&ops::argmax(&x, Some(0), true).unwrap()),
        vec![0, 0, 1]
    );
    assert_eq!(
        f32s(&ops::cumsum(&x, Some(1)).unwrap()),
        vec![1., 6., 9., -2., -2., 2.]
    );
    // np.var([[1,5,3],[-2,0,4]], axis=1) = [2.6667, 6.2222]
    let v = f32s(&ops::var(&x, Some(&[1]), false).unwrap());
    assert!(
        (v[0] - 8.0 / 3.0).abs() < 1e-6 && (v[1] - 56.0 / 9.0).abs() < 1e-5,
        "{v:?}"
    );
    // logsumexp of [-inf, -inf] is -inf (not NaN)
    let ninf = t(&[2], vec![f32::NEG_INFINITY; 2]);
    assert_eq!(
        f32s(&ops::logsumexp(&ninf, None, false).unwrap()),
        vec![f32::NEG_INFINITY]
    );
    assert!(ops::max(&t(&[0], Vec::<f32>::new()), None, false).is_err());
    assert!(ops::sum(&x, Some(&[2]), false).is_err());
    assert!(ops::sum(&x, Some(&[1, -1]), false).is_err());
    assert_eq!(i32s(&ops::count_nonzero(&x, None).unwrap()), vec![5]);
}

#[test]
fn linalg() {
    let a = t(&[2, 3], (1..=6).map(|v| v as f32).collect());
    let b = t(&[3, 2], (1..=6).map(|v| v as f32).collect());
    let ab = ops::matmul(&a, &b).unwrap();
    assert_eq!(f32s(&ab), vec![22., 28., 49., 64.]);
    assert_eq!(f32s(&ops::dot(&a, &b).unwrap()), f32s(&ab));
    assert_eq!(
        f32s(&ops::tensordot(&a, &b, Axes::N(1)).unwrap()),
        f32s(&ab)
    );
    assert_eq!(
        f32s(&ops::einsum("ij,jk->ik", &[&a, &b]).unwrap()),
        f32s(&ab)
    );
    assert_eq!(f32s(&ops::einsum("ij,jk", &[&a, &b]).unwrap()), f32s(&ab));
    // 1-d operands: vector @ matrix and inner products
    let v = t(&[3], vec![1.0f32, 0.0, -1.0]);
    assert_eq!(f32s(&ops::matmul(&v, &b).unwrap()), vec![-4.0, -4.0]);
    assert_eq!(f32s(&ops::matmul(&a, &v).unwrap()), vec![-2.0, -2.0]);
    assert_eq!(f32s(&ops::dot(&v, &v).unwrap()), vec![2.0]);
    // batch broadcasting: [4, 2, 3] @ [3, 2] -> [4, 2, 2]
    let batch = ops::tile(&ops::expand_dims(&a, 0).unwrap(), &[4, 1, 1]).unwrap();
    let bb = ops::matmul(&batch, &b).unwrap();
    assert_eq!(bb.shape(), &[4, 2, 2]);
    assert_eq!(
        f32s(&ops::einsum("bij,jk->bik", &[&batch, &b]).unwrap()),
        f32s(&bb)
    );
    let m = t(&[3, 3], (1..=9).map(|v| v as f32).collect());
    assert_eq!(f32s(&ops::einsum("ii->", &[&m]).unwrap()), vec![15.0]);
    assert_eq!(
        f32s(&ops::einsum("ii->i", &[&m]).unwrap()),
        vec![1.0, 5.0, 9.0]
    );
    assert_eq!(
        f32s(&ops::einsum("i,j->ij", &[&v, &v]).unwrap()),
        vec![1., 0., -1., 0., 0., 0., -1., 0., 1.]
    );
    assert!(ops::einsum("...ij->ij", &[&a]).is_err());
    assert!(ops::matmul(&a, &a).is_err());
    // int8 @ int8 accumulates into int32 (Keras), and does not wrap
    let i8m = t(&[1, 2], vec![100i8, 100]);
    let r = ops::matmul(&i8m, &ops::transpose(&i8m, None).unwrap()).unwrap();
    assert_eq!((r.dtype(), i32s(&r)), (DType::Int32, vec![20000]));
}

#[test]
fn activations_at_the_edges() {
    let x = t(&[5], vec![-1000.0f32, -1.0, 0.0, 1.0, 1000.0]);
    // Stable forms: no NaN or inf where the true value is finite.
    let s = f32s(&ops::sigmoid(&x).unwrap());
    assert_eq!((s[0], s[2], s[4]), (0.0, 0.5, 1.0));
    assert!((s[3] - 0.731_058_6).abs() < 1e-6);
    let sp = f32s(&ops::softplus(&x).unwrap());
    assert_eq!((sp[0], sp[4]), (0.0, 1000.0));
    assert!((sp[2] - std::f32::consts::LN_2).abs() < 1e-6);
    let sm = f32s(&ops::softmax(&t(&[3], vec![1000.0f32, 1000.0, -1000.0]), -1).unwrap());
    assert_eq!(sm, vec![0.5, 0.5, 0.0]);
    let ls = f32s(&ops::log_softmax(&t(&[2], vec![1000.0f32, 0.0]), -1).unwrap());
    assert_eq!(ls, vec![0.0, -1000.0]);
    // gelu(1): tanh form 0.841192, exact form 0.841345
    let one = t(&[1], vec![1.0f32]);
    assert!((f32s(&ops::gelu(&one, true).unwrap())[0] - 0.841_192).abs() < 1e-5);
    assert!((f32s(&ops::gelu(&one, false).unwrap())[0] - 0.841_345).abs() < 1e-5);
    assert_eq!(
        f32s(&ops::relu6(&t(&[3], vec![-1.0f32, 3.0, 9.0])).unwrap()),
        vec![0.0, 3.0, 6.0]
    );
    assert_eq!(
        f32s(&ops::leaky_relu(&t(&[2], vec![-1.0f32, 2.0]), 0.2).unwrap()),
        vec![-0.2, 2.0]
    );
    let e = f32s(&ops::elu(&t(&[1], vec![-1.0f32]), 1.0).unwrap())[0];
    assert!((e - (-0.632_120_6)).abs() < 1e-6);
}

#[test]
fn integer_semantics_never_silently_wrong() {
    let x = t(&[2], vec![200u8, 100]);
    // NumPy: uint8 + Python int too large for uint8 raises (JAX: OverflowError).
    assert!(ops::add(&x, 300).is_err());
    // uint8 arithmetic wraps, as in NumPy: 200 + 100 = 44
    assert_eq!(
        ops::add(&x, 100).unwrap().to_vec::<u8>().unwrap(),
        vec![44, 200]
    );
    assert!(ops::power(&t(&[1], vec![2i32]), &t(&[1], vec![-1i32])).is_err());
    assert_eq!(
        i32s(&ops::floor_divide(&t(&[2], vec![-7i32, 7]), 2).unwrap()),
        vec![-4, 3]
    );
    assert_eq!(
        i32s(&ops::r#mod(&t(&[2], vec![-7i32, 7]), -2).unwrap()),
        vec![-1, -1]
    );
    let m = t(&[1], vec![i32::MIN]);
    assert_eq!(i32s(&ops::floor_divide(&m, -1).unwrap()), vec![i32::MIN]); // wraps, as NumPy
    assert!(ops::subtract(&t(&[1], vec![true]), &t(&[1], vec![false])).is_err());
}

/// x64 off narrows 64-bit data *entering* kiln; a value made 64-bit on purpose (an explicit
/// dtype) keeps 64-bit results through ops. Before, `int64 + int64` came back as int32,
/// wrapped, without a warning.
#[test]
fn explicit_64bit_values_stay_64bit_through_ops_with_x64_off() {
    use kiln::precision::{warnings, Scope};
    use kiln::Scalar;
    let _g = Scope::new().x64(false).enter();
    let cpu = Some(Device::Cpu);
    let big = ops::full(&[2], Scalar::Int(3_000_000_000), Some(DType::Int64), cpu).unwrap();
    let (sum, w) = warnings::capture(|| ops::add(&big, &big).unwrap());
    assert_eq!(sum.dtype(), DType::Int64);
    assert_eq!(sum.to_vec::<i64>().unwrap(), vec![6_000_000_000; 2]);
    assert!(w.is_empty(), "{w:?}");
    let total = ops::sum(&big, None, false).unwrap();
    assert_eq!(total.to_vec::<i64>().unwrap(), vec![6_000_000_000]);
    // numpy: np.full(2, 1 + 1e-12) * 2 -> 2.000000000002 (float32 would give exactly 2.0)
    let x = ops::full(&[2], 1.0 + 1e-12, Some(DType::Float64), cpu).unwrap();
    let y = ops::add(&x, &x).unwrap();
    assert_eq!(y.dtype(), DType::Float64);
    assert_eq!(y.to_vec::<f64>().unwrap(), vec![2.000000000002; 2]);
    let f32_col = ops::ones(&[2, 1], Some(DType::Float32), cpu).unwrap();
    for (name, r) in [
        ("add 1.0", ops::add(&x, 1.0)),
        ("exp", ops::exp(&x)),
        ("mean", ops::mean(&x, None, false)),
        ("zeros_like", ops::zeros_like(&x, None)),
        (
            "matmul with float32",
            ops::matmul(&ops::reshape(&x, &[1, 2]).unwrap(), &f32_col),
        ),
    ] {
        assert_eq!(r.unwrap().dtype(), DType::Float64, "{name}");
    }
    // Ops on 64-bit values follow x64 semantics throughout: int64 indices, as JAX's.
    assert_eq!(ops::argmax(&x, None, false).unwrap().dtype(), DType::Int64);
    // The boundary rule is unchanged: implicit float64 data becomes float32, and results that
    // promotion widens beyond 32-bit operands are narrowed (int32 + uint32: Keras's table).
    let data = convert_to_tensor(&ArrayData::from(vec![1.0f64, 2.0]), None, &Device::Cpu).unwrap();
    assert_eq!(ops::add(&data, &data).unwrap().dtype(), DType::Float32);
    let (i, u) = (t(&[1], vec![1i32]), t(&[1], vec![1u32]));
    assert_eq!(ops::add(&i, &u).unwrap().dtype(), DType::Int32);
}

/// Keras's promotion gives int32 for `uint32 + int32` with x64 off (JAX narrows int64): a
/// uint32 value above `i32::MAX` cannot be computed there. JAX wraps it silently
/// (4e9 + 0 -> -294967296, `4e9 > 0` false); kiln refuses, naming the op and the way out.
#[test]
fn implicit_integer_narrowing_never_wraps() {
    use kiln::precision::Scope;
    use kiln::{Scalar, Variable};
    let _g = Scope::new().x64(false).enter();
    let cpu = Some(Device::Cpu);
    let big = ops::full(&[2], Scalar::Int(4_000_000_000), Some(DType::UInt32), cpu).unwrap();
    let zero = ops::zeros(&[2], Some(DType::Int32), cpu).unwrap();
    for (name, r) in [
        ("add", ops::add(&big, &zero)),
        ("greater", ops::greater(&big, &zero)),
        ("maximum", ops::maximum(&big, &zero)),
        ("concatenate", ops::concatenate(&[&big, &zero], 0)),
    ] {
        let e = r.unwrap_err();
        assert_eq!(e.kind_name(), "out-of-range", "{name}: {e}");
        let msg = e.to_string();
        for part in [name, "int32", "4000000000", "x64", "ops_semantics.rs"] {
            assert!(msg.contains(part), "{name}: {part:?} missing from {msg}");
        }
    }
    // Values that fit compute as before, in Keras's dtype.
    let small = ops::full(&[2], Scalar::Int(7), Some(DType::UInt32), cpu).unwrap();
    let r = ops::add(&small, &zero).unwrap();
    assert_eq!(
        (r.dtype(), r.to_vec::<i32>().unwrap()),
        (DType::Int32, vec![7, 7])
    );
    {
        // x64 on: int64, exact.
        let _x = Scope::new().x64(true).enter();
        let r = ops::add(&big, &zero).unwrap();
        assert_eq!(r.to_vec::<i64>().unwrap(), vec![4_000_000_000; 2]);
    }
    // An explicit cast keeps NumPy's astype semantics: it wraps, as asked.
    let c = ops::cast(&big, DType::Int32).unwrap();
    assert_eq!(c.to_vec::<i32>().unwrap(), vec![-294_967_296; 2]);
    // Assigning to a variable converts to its dtype with the same check.
    let mut v = Variable::new("v", &zero, None).unwrap();
    let e = v.assign(&big).unwrap_err();
    assert_eq!(e.kind_name(), "out-of-range", "{e}");
    v.assign(&small).unwrap();
    assert_eq!(v.value().to_vec::<i32>().unwrap(), vec![7, 7]);
}

#[test]
fn mixing_devices_is_an_error_with_a_fix() {
    let a = t(&[1], vec![1.0f32]);
    let b = a.to_device(Device::parse("sim:mps").unwrap()).unwrap();
    let e = ops::add(&a, &b).unwrap_err().to_string();
    assert!(
        e.contains("cpu") && e.contains("sim:mps") && e.contains("to_device"),
        "{e}"
    );
    // Where cuda:0 cannot open (no feature, no GPU), moving there says why and what to use.
    let cuda = Device::parse("cuda:0").unwrap();
    match kiln::doctor::available(kiln::backend::BackendKind::Candle, cuda) {
        Err(_) => {
            let e = a.to_device(cuda).unwrap_err().to_string();
            assert!(e.contains("cuda:0") && e.contains("sim:mps"), "{e}");
            assert!(!e.contains("backtrace") && e.lines().count() == 1, "{e}");
        }
        Ok(()) => assert_eq!(a.to_device(cuda).unwrap().device(), cuda),
    }
}

fn shape_pair() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    (
        prop::collection::vec(1usize..4, 0..4),
        any::<u16>(),
        any::<u16>(),
    )
        .prop_map(|(s, m1, m2)| {
            let a = s
                .iter()
                .enumerate()
                .map(|(i, d)| if m1 >> i & 1 == 1 { 1 } else { *d })
                .collect::<Vec<_>>();
            let b = s
                .iter()
                .enumerate()
                .map(|(i, d)| if m2 >> i & 1 == 1 { 1 } else { *d })
                .collect::<Vec<_>>();
            let drop = (m1 as usize >> 8) % (b.len() + 1);
            (a, b[drop..].to_vec())
        })
}

/// Reference broadcasting by index arithmetic.
fn reference_add(a: &[f64], sa: &[usize], b: &[f64], sb: &[usize], out: &[usize]) -> Vec<f64> {
    let n: usize = out.iter().product();
    let idx = |flat: usize, s: &[usize]| -> usize {
        let mut rem = flat;
        let mut pos = vec![0; out.len()];
        for (k, d) in out.iter().enumerate().rev() {
            pos[k] = rem % d;
            rem /= d;
        }
        let off = out.len() - s.len();
        s.iter().enumerate().fold(0, |acc, (k, d)| {
            acc * d + if *d == 1 { 0 } else { pos[k + off] }
        })
    };
    (0..n).map(|i| a[idx(i, sa)] + b[idx(i, sb)]).collect()
}

proptest! {
    #[test]
    fn broadcasting_matches_the_reference((sa, sb) in shape_pair()) {
        let na: usize = sa.iter().product();
        let nb: usize = sb.iter().product();
        let va: Vec<f64> = (0..na).map(|i| i as f64).collect();
        let vb: Vec<f64> = (0..nb).map(|i| 100.0 * i as f64).collect();
        let _g = kiln::precision::Scope::new().x64(true).enter();
        let a = t(&sa, va.clone());
        let b = t(&sb, vb.clone());
        let out = ops::broadcast_shapes(&sa, &sb, "add").unwrap();
        let got = ops::add(&a, &b).unwrap();
        prop_assert_eq!(got.shape(), &out[..]);
        prop_assert_eq!(got.to_vec::<f64>().unwrap(), reference_add(&va, &sa, &vb, &sb, &out));
    }

    #[test]
    fn promotion_is_commutative_and_idempotent(i in 0usize..18, j in 0usize..18, x64 in any::<bool>()) {
        let all: Vec<DTypeLike> = DType::ALL.iter().map(|d| DTypeLike::Strong(*d))
            .chain([DTypeLike::WeakInt, DTypeLike::WeakFloat, DTypeLike::WeakComplex]).collect();
        let (a, b) = (all[i], all[j]);
        let ab = result_type(&[a, b], DType::Float32, x64).unwrap();
        prop_assert_eq!(ab, result_type(&[b, a], DType::Float32, x64).unwrap());
        // Promoting the result with either input again changes nothing.
        prop_assert_eq!(result_type(&[DTypeLike::Strong(ab), a], DType::Float32, x64).unwrap(), ab);
    }
}

#[test]
fn creation_and_one_hot_never_wrap_integers() {
    // NumPy 2: np.full(3, 300, dtype=np.int8) raises OverflowError.
    assert!(ops::full(&[3], 300, Some(DType::Int8), None).is_err());
    assert!(ops::full(&[3], -1, Some(DType::UInt8), None).is_err());
    assert_eq!(
        i32s(&ops::full(&[2], 7, Some(DType::Int32), None).unwrap()),
        vec![7, 7]
    );
    assert!(ops::full_like(&t(&[1], vec![1u8]), 256, None).is_err());
    assert!(ops::arange(0, 300, 1, Some(DType::Int8), None).is_err());
    assert!(ops::linspace(0.0, 1000.0, 3, true, Some(DType::Int8), None).is_err());
    // Truncation toward zero, as NumPy's float-to-int rule, is not a wrap.
    assert_eq!(
        i32s(&ops::linspace(0.0, 1.0, 5, true, Some(DType::Int32), None).unwrap()),
        vec![0, 0, 0, 0, 1]
    );
    // 300 classes for uint8 indices: class 256 must not alias class 0.
    let oh = ops::one_hot(&t(&[2], vec![0u8, 255]), 300, None).unwrap();
    let v = f32s(&oh);
    assert_eq!((v[0], v[256], v[300 + 255], v[300]), (1.0, 0.0, 1.0, 0.0));
    assert_eq!(v.iter().sum::<f32>(), 2.0);
    // A class count beyond int64 (or an output beyond memory) is an error, not a wrapped
    // count (usize::MAX as i64 is -1: zero classes, an empty result).
    for (shape, idx) in [(&[][..], vec![1i64]), (&[2][..], vec![0, 1])] {
        let e = ops::one_hot(&t(shape, idx), usize::MAX, None).unwrap_err();
        assert!(e.to_string().contains("one_hot"), "{e}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    /// `nonzero` (a branch-free row compaction) gives NumPy's C-order index columns, checked
    /// against a direct walk over the multi-index, for 0 to 3 axes, empty axes included, and
    /// from a transposed (non-contiguous) input.
    #[test]
    fn nonzero_indexes_every_nonzero_in_c_order(
        shape in prop::collection::vec(0usize..6, 0..4),
        seed in any::<u64>(),
        transposed in any::<bool>(),
    ) {
        let n: usize = shape.iter().product();
        let mut s = seed | 1;
        let v: Vec<f32> = (0..n).map(|_| {
            s ^= s << 13; s ^= s >> 7; s ^= s << 17;
            if s % 3 == 0 { 0.0 } else if s % 7 == 0 { -0.0 } else { (s % 5) as f32 - 2.0 }
        }).collect();
        let mut x = t(&shape, v);
        if transposed && shape.len() >= 2 {
            x = ops::transpose(&x, None).unwrap();
        }
        let dims = x.shape().to_vec();
        let vals = f32s(&ops::reshape(&x, &[-1]).unwrap());
        let nd = dims.len().max(1);
        let mut want: Vec<Vec<i32>> = vec![Vec::new(); nd];
        for (flat, val) in vals.iter().enumerate() {
            if *val != 0.0 {
                let mut rem = flat;
                let mut idx = vec![0usize; nd];
                for d in (0..dims.len()).rev() {
                    idx[d] = rem % dims[d];
                    rem /= dims[d];
                }
                for (w, i) in want.iter_mut().zip(&idx) {
                    w.push(*i as i32);
                }
            }
        }
        let got: Vec<Vec<i32>> = ops::nonzero(&x).unwrap().iter().map(i32s).collect();
        prop_assert_eq!(got, want, "{:?}", dims);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    /// `diag` and `trace` (one strided slice of the flat matrix) and `triu`/`tril` against
    /// NumPy's definitions walked index by index: element (i, j) is on diagonal `k` when
    /// j - i == k, kept by `triu` when j - i >= k and by `tril` when j - i <= k; offsets past
    /// either edge, empty matrices and a batch axis (trace's NumPy axes are the first two)
    /// included.
    #[test]
    fn diagonals_and_triangles_match_their_index_definitions(
        m in 0usize..7,
        n in 0usize..7,
        b in 1usize..4,
        k in -8isize..8,
    ) {
        let v: Vec<f32> = (0..m * n).map(|i| (i * 7 % 11) as f32 - 5.0).collect();
        let x = t(&[m, n], v.clone());
        let on = |i: usize, j: usize| j as isize - i as isize == k;
        let want_diag: Vec<f32> = (0..m)
            .flat_map(|i| (0..n).map(move |j| (i, j)))
            .filter(|&(i, j)| on(i, j))
            .map(|(i, j)| v[i * n + j])
            .collect();
        prop_assert_eq!(f32s(&ops::diag(&x, k).unwrap()), want_diag.clone());
        let tr: f32 = want_diag.iter().sum();
        prop_assert_eq!(f32s(&ops::trace(&x, k).unwrap()), vec![tr]);
        for (upper, got) in [(true, ops::triu(&x, k)), (false, ops::tril(&x, k))] {
            let want: Vec<f32> = (0..m * n)
                .map(|f| {
                    let d = (f % n) as isize - (f / n) as isize;
                    if (upper && d >= k) || (!upper && d <= k) { v[f] } else { 0.0 }
                })
                .collect();
            prop_assert_eq!(f32s(&got.unwrap()), want, "upper {}", upper);
        }
        // [m, n, b]: trace over the first two axes, one sum per batch element.
        let xb = t(&[m, n, b], (0..m * n * b).map(|i| (i % 13) as f32).collect());
        let want_b: Vec<f32> = (0..b)
            .map(|c| {
                (0..m)
                    .flat_map(|i| (0..n).map(move |j| (i, j)))
                    .filter(|&(i, j)| on(i, j))
                    .map(|(i, j)| (((i * n + j) * b + c) % 13) as f32)
                    .sum()
            })
            .collect();
        prop_assert_eq!(f32s(&ops::trace(&xb, k).unwrap()), want_b);
    }
}
