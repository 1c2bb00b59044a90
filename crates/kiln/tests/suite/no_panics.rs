//! Hostile shapes and arguments: every op on 0-d, empty and odd-shaped tensors of every dtype,
//! and axis/shape arguments out of range, must return a value or an error, never panic, on
//! every engine and device of this build (cuda:0 emulated where no GPU opens).

use crate::common;
use kiln::ops::registry::{call_binary, call_unary, BINARY, UNARY};
use kiln::ops::{self, Operand, SliceArg, Split};
use kiln::{convert_to_tensor, ArrayData, DType, Scalar, Tensor};
use proptest::prelude::*;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// A tensor of `d` on the engine in scope; `None` where that engine lacks the dtype.
fn try_tensor(shape: &[usize], d: DType) -> Option<Tensor> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| (i % 7) as f64 - 3.0).collect();
    let a = ArrayData::from_shape_vec(shape, v).unwrap();
    let a = kiln::precision::report::convert_with_report(&a, d).0;
    let device = kiln::precision::config::current().unwrap().device;
    let _g = kiln::precision::Scope::new().x64(true).enter();
    convert_to_tensor(&a, Some(d), &device).ok()
}

fn tensor(shape: &[usize], d: DType) -> Tensor {
    // int32 indices become int64 where the device has no int32 (CUDA).
    try_tensor(shape, d)
        .or_else(|| {
            (d == DType::Int32)
                .then(|| try_tensor(shape, DType::Int64))
                .flatten()
        })
        .expect("float32 and int32 or int64 exist on every target")
}

/// The i-th (engine, device) target of this build (`common::targets`: both engines on the
/// cpu, and cuda:0, real or emulated) in scope: new tensors go there.
fn engine_scope(i: usize) -> kiln::precision::ScopeGuard {
    let targets = common::targets();
    let (engine, device) = targets[i % targets.len()];
    kiln::precision::Scope::new()
        .backend(Some(engine))
        .device(device)
        .enter()
}

fn no_panic<R>(what: &str, f: impl FnOnce() -> R) {
    if catch_unwind(AssertUnwindSafe(f)).is_err() {
        panic!("panicked: {what}");
    }
}

#[test]
fn registry_ops_on_degenerate_shapes() {
    let shapes: [&[usize]; 5] = [&[], &[0], &[2, 0], &[1], &[0, 3, 1]];
    for e in 0..common::targets().len() {
        let _e = engine_scope(e);
        for d in DType::ALL {
            for s in shapes {
                let Some(x) = try_tensor(s, d) else { continue };
                for op in UNARY {
                    no_panic(&format!("{op} {d} {s:?}"), || call_unary(op, &x));
                }
                for op in BINARY {
                    no_panic(&format!("{op} {d} {s:?}"), || {
                        call_binary(op, Operand::Tensor(&x), Operand::Tensor(&x))
                    });
                    no_panic(&format!("{op} {d} {s:?} scalar"), || {
                        call_binary(op, Operand::Tensor(&x), Operand::Scalar(Scalar::Int(2)))
                    });
                }
            }
        }
    }
}

proptest! {
    #[test]
    fn parameterised_ops_with_arbitrary_arguments(
        shape in prop::collection::vec(0usize..4, 0..4),
        axis in -5isize..5,
        k in -4isize..4,
        n in 0usize..4,
        start in proptest::option::of(-6isize..6),
        stop in proptest::option::of(-6isize..6),
        step in -3isize..3,
        new_shape in prop::collection::vec(-2isize..5, 0..4),
        engine in 0usize..3,
    ) {
        let _e = engine_scope(engine);
        let x = tensor(&shape, DType::Float32);
        let i = tensor(&shape, DType::Int32);
        no_panic("sum", || ops::sum(&x, Some(&[axis]), true));
        no_panic("mean", || ops::mean(&x, Some(&[axis, k]), false));
        no_panic("var", || ops::var(&x, Some(&[axis]), false));
        no_panic("max", || ops::max(&x, Some(&[axis]), false));
        no_panic("argmax", || ops::argmax(&x, Some(axis), true));
        no_panic("argmin", || ops::argmin(&x, None, true));
        no_panic("cumsum", || ops::cumsum(&x, Some(axis)));
        no_panic("logsumexp", || ops::logsumexp(&x, Some(&[axis]), false));
        no_panic("softmax", || ops::softmax(&x, axis));
        no_panic("sort", || ops::sort(&x, axis));
        no_panic("argsort", || ops::argsort(&x, axis));
        no_panic("flip", || ops::flip(&x, Some(&[axis])));
        no_panic("expand_dims", || ops::expand_dims(&x, axis));
        no_panic("squeeze", || ops::squeeze(&x, Some(axis)));
        no_panic("reshape", || ops::reshape(&x, &new_shape));
        no_panic("transpose", || ops::transpose(&x, Some(&[0, 1])));
        no_panic("broadcast_to", || ops::broadcast_to(&x, &[n, 3]));
        no_panic("concatenate", || ops::concatenate(&[&x, &x], axis));
        no_panic("stack", || ops::stack(&[&x, &x], axis));
        no_panic("split", || ops::split(&x, Split::Sections(n), axis));
        no_panic("split idx", || ops::split(&x, Split::Indices(vec![n, 1]), axis));
        no_panic("tile", || ops::tile(&x, &[n, 2]));
        no_panic("repeat", || ops::repeat(&x, n, Some(axis)));
        no_panic("pad", || ops::pad(&x, &vec![(n, 1); shape.len()], 0.0));
        no_panic("take", || ops::take(&x, &i, Some(axis)));
        no_panic("take_along_axis", || ops::take_along_axis(&x, &i, axis));
        no_panic("slice", || ops::strided_slice(&x, &[SliceArg::new(start, stop, step)]));
        no_panic("one_hot", || ops::one_hot(&i, n, None));
        no_panic("triu", || ops::triu(&x, k));
        no_panic("diag", || ops::diag(&x, k));
        no_panic("trace", || ops::trace(&x, k));
        no_panic("tensordot", || ops::tensordot(&x, &x, ops::Axes::N(n)));
        no_panic("tensordot pairs", || ops::tensordot(&x, &x, ops::Axes::Pairs(vec![axis], vec![k])));
        no_panic("einsum", || ops::einsum("ij,jk->ik", &[&x, &x]));
        no_panic("einsum bad", || ops::einsum("ii", &[&x]));
        no_panic("matmul", || ops::matmul(&x, &x));
        no_panic("dot", || ops::dot(&x, &x));
        no_panic("where", || ops::r#where(&ops::greater(&x, 0).unwrap(), &x, 0.5));
        no_panic("eye", || ops::eye(n, Some(shape.len()), k, None, None));
        no_panic("linspace", || ops::linspace(0.0, 1.0, n, step > 0, None, None));
        no_panic("arange", || ops::arange(start.unwrap_or(0), stop.unwrap_or(3), step, None, None));
    }
}

/// The public `Backend` API called directly with arguments that break its contract: errors,
/// not panics, on every engine.
#[test]
fn direct_backend_calls_with_bad_arguments() {
    for e in 0..common::targets().len() {
        let _e = engine_scope(e);
        let x = tensor(&[2, 3], DType::Float32);
        let device = kiln::precision::config::current().unwrap().device;
        let be = kiln::tensor::engine_for(device).unwrap();
        let s = be.upload(x.to_host().unwrap()).unwrap();
        use kiln::backend::{ArgOp, ReduceOp, ScanOp, SliceSpec};
        no_panic("permute", || assert!(be.permute(&s, &[0, 0, 5]).is_err()));
        no_panic("reduce", || {
            assert!(be.reduce(ReduceOp::Sum, &s, &[7], false).is_err())
        });
        no_panic("arg_reduce", || {
            assert!(be.arg_reduce(ArgOp::ArgMax, &s, 9).is_err())
        });
        no_panic("scan", || assert!(be.scan(ScanOp::CumSum, &s, 4).is_err()));
        no_panic("slice", || {
            assert!(be
                .slice(
                    &s,
                    &[SliceSpec {
                        start: 5,
                        end: 9,
                        step: 1
                    }]
                )
                .is_err())
        });
        no_panic("index_select", || {
            assert!(be.index_select(&s, &[0, 99], 1).is_err())
        });
        no_panic("pad", || assert!(be.pad(&s, &[], Scalar::Int(0)).is_err()));
        no_panic("sort", || assert!(be.sort(&s, 3).is_err()));
        no_panic("matmul", || {
            assert!(be.matmul(&s, &s, false, false).is_err())
        });
        no_panic("reshape", || assert!(be.reshape(&s, &[7]).is_err()));
    }
}

/// Sizes a user chooses that no machine can hold (beyond the 2^47-byte user address space of
/// x86-64, so they fail whatever the kernel's overcommit setting) are errors that name the op
/// and the bytes, on every engine: never an abort (which `catch_unwind` could not catch: the
/// test process would die) and never a panic. Before this, `tile(&v, &[1 << 62])` and
/// `diag(&v, 1 << 40)` aborted on allocation and `repeat(&v, 1 << 62, None)` panicked on
/// capacity overflow.
#[test]
fn impossible_sizes_are_errors_not_aborts() {
    let big = 1usize << 46; // 2^46 float32 = 2^48 bytes
    for e in 0..common::targets().len() {
        let _e = engine_scope(e);
        let v = tensor(&[3], DType::Float32);
        let i = tensor(&[2], DType::Int32);
        let m = tensor(&[2, 2], DType::Float32);
        let device = kiln::precision::config::current().unwrap().device;
        type Case<'a> = (&'a str, Box<dyn Fn() -> kiln::Result<Tensor> + 'a>);
        let cases: Vec<Case> = vec![
            ("tile 2^62", Box::new(|| ops::tile(&v, &[1 << 62]))),
            ("tile 2^46", Box::new(|| ops::tile(&v, &[big]))),
            (
                "tile 2^40 x 2^40",
                Box::new(|| ops::tile(&m, &[1 << 40, 1 << 40])),
            ),
            ("repeat 2^62", Box::new(|| ops::repeat(&v, 1 << 62, None))),
            (
                "repeat usize::MAX",
                Box::new(|| ops::repeat(&v, usize::MAX, Some(0))),
            ),
            ("diag 2^40", Box::new(|| ops::diag(&v, 1 << 40))),
            ("diag -2^40", Box::new(|| ops::diag(&v, -(1 << 40)))),
            ("diag isize::MAX", Box::new(|| ops::diag(&v, isize::MAX))),
            ("pad 2^62", Box::new(|| ops::pad(&v, &[(1 << 62, 0)], 0.0))),
            (
                "pad usize::MAX",
                Box::new(|| ops::pad(&v, &[(usize::MAX, 1)], 0.0)),
            ),
            (
                "broadcast_to 2^46",
                Box::new(|| ops::broadcast_to(&v, &[big, 3])),
            ),
            (
                "broadcast_to overflow",
                Box::new(|| ops::broadcast_to(&v, &[1 << 62, 1 << 62, 3])),
            ),
            ("one_hot 2^46", Box::new(|| ops::one_hot(&i, big, None))),
            ("one_hot 2^62", Box::new(|| ops::one_hot(&i, 1 << 62, None))),
            (
                "linspace 2^62",
                Box::new(|| ops::linspace(0.0, 1.0, 1 << 62, true, None, None)),
            ),
            (
                "arange 1e12",
                Box::new(|| ops::arange(0, 1_000_000_000_000i64, 1, None, None)),
            ),
            (
                "arange float",
                Box::new(|| ops::arange(0.0, 1e11, 0.01, None, None)),
            ),
            (
                "zeros 2^46",
                Box::new(|| ops::zeros(&[big], None, Some(device))),
            ),
            (
                "ones 2^62",
                Box::new(|| ops::ones(&[1 << 62], None, Some(device))),
            ),
            (
                "full overflow",
                Box::new(|| ops::full(&[1 << 62, 1 << 62], 1.0, None, Some(device))),
            ),
            (
                "eye 2^31",
                Box::new(|| ops::eye(1 << 31, None, 0, None, Some(device))),
            ),
            (
                "random_uniform 2^46",
                Box::new(|| ops::random_uniform(&[big], 0.0, 1.0, None, 0, Some(device))),
            ),
            (
                "random_normal 2^62",
                Box::new(|| ops::random_normal(&[1 << 62], 0.0, 1.0, None, 0, Some(device))),
            ),
        ];
        for (what, f) in &cases {
            let r = catch_unwind(AssertUnwindSafe(f));
            match r {
                Err(_) => panic!("{what}: panicked"),
                Ok(Ok(t)) => panic!("{what}: gave a tensor of shape {:?}", t.shape()),
                Ok(Err(e)) => {
                    let msg = e.to_string();
                    if std::env::var("KILN_SHOW").is_ok() {
                        eprintln!("{what}: {msg}");
                    }
                    assert!(
                        msg.contains("bytes")
                            || msg.contains("overflow")
                            || msg.contains("not a valid size")
                            || msg.contains("fit"),
                        "{what}: {msg}"
                    );
                }
            }
        }
    }
}
