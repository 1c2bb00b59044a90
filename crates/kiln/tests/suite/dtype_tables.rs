//! Table-driven tests against the dtype oracles in tests/data, copied from
//! ../shared/fixtures (generated with NumPy 2.4.6, Keras 3.15.1 on JAX, JAX 0.10.2; each
//! file's `source` field says how).

use crate::common;
use kiln::dtype::promote::{result_type, DTypeLike};
use kiln::ops::registry::{call_binary, call_unary};
use kiln::ops::Operand;
use kiln::{convert_to_tensor, ArrayData, DType, Device, Scalar};
use serde_json::Value;

fn load(name: &str) -> Vec<Value> {
    let p = format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"));
    let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
    v["cases"].as_array().unwrap().clone()
}

fn likes(c: &Value) -> Vec<DTypeLike> {
    c["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| DTypeLike::parse(s.as_str().unwrap()).unwrap())
        .collect()
}

fn expected(c: &Value) -> Option<DType> {
    c["result"].as_str().map(|s| DType::parse(s).unwrap())
}

#[test]
fn keras_result_type_every_case() {
    let cases = load("keras_result_type.json");
    assert!(cases.len() > 1000);
    let mut bad = vec![];
    for c in &cases {
        let floatx = DType::parse(c["floatx"].as_str().unwrap()).unwrap();
        let got = result_type(&likes(c), floatx, false).ok();
        if got != expected(c) {
            bad.push(format!(
                "{} {:?}: got {got:?}, keras {:?}",
                c["floatx"],
                c["inputs"],
                expected(c)
            ));
        }
    }
    common::assert_none_differ(&bad, cases.len());
}

#[test]
fn jax_x64_result_type_every_case() {
    let cases = load("jax_x64_result_type.json");
    assert!(cases.len() > 300);
    let mut bad = vec![];
    for c in &cases {
        let got = result_type(&likes(c), DType::Float32, true).ok();
        if got != expected(c) {
            bad.push(format!(
                "{:?}: got {got:?}, jax {:?}",
                c["inputs"],
                expected(c)
            ));
        }
    }
    common::assert_none_differ(&bad, cases.len());
}

fn ones(dtype: DType, shape: &[usize], device: Device) -> kiln::Tensor {
    // As Keras does with a NumPy array: an implicit conversion (x64 off narrows 64-bit).
    convert_to_tensor(
        &ArrayData::full(shape, Scalar::Int(1), dtype).unwrap(),
        None,
        &device,
    )
    .unwrap()
}

#[test]
fn keras_op_dtypes_every_case() {
    let cases = load("keras_op_dtypes.json");
    assert!(cases.len() > 6000);
    let mut bad = vec![];
    let mut ran = 0;
    for (engine, device) in common::targets() {
        let _g = common::target_scope(engine, device, false);
        for c in &cases {
            let op = c["op"].as_str().unwrap();
            let ins = likes(c);
            // Dtypes the device lacks never reach it: the resolver substitutes them (and a
            // result dtype it lacks is adapted or placed on the cpu, tested elsewhere).
            let caps = kiln::device::Capabilities::of_engine(device, engine);
            if ins
                .iter()
                .any(|d| matches!(d, DTypeLike::Strong(d) if !caps.supports(d.to_32bit())))
                || expected(c).is_some_and(|d| !caps.supports(d))
            {
                continue;
            }
            ran += 1;
            let operand = |d: &DTypeLike, t: &mut Option<kiln::Tensor>| -> Operand<'static> {
                match d {
                    DTypeLike::Strong(d) => {
                        *t = Some(ones(*d, &[2, 2], device));
                        Operand::Scalar(Scalar::Int(0)) // placeholder, replaced below
                    }
                    DTypeLike::WeakInt => Operand::Scalar(Scalar::Int(1)),
                    DTypeLike::WeakFloat => Operand::Scalar(Scalar::Float(1.0)),
                    DTypeLike::WeakComplex => {
                        Operand::Scalar(Scalar::Complex(kiln::element::C128::new(1.0, 0.0)))
                    }
                }
            };
            let got = if ins.len() == 1 {
                let mut t = None;
                operand(&ins[0], &mut t);
                call_unary(op, t.as_ref().unwrap()).map(|r| r.dtype())
            } else {
                let (mut ta, mut tb) = (None, None);
                let sa = operand(&ins[0], &mut ta);
                let sb = operand(&ins[1], &mut tb);
                let a = ta.as_ref().map(Operand::Tensor).unwrap_or(sa);
                let b = tb.as_ref().map(Operand::Tensor).unwrap_or(sb);
                call_binary(op, a, b).map(|r| r.dtype())
            };
            if got.as_ref().ok().copied() != expected(c) {
                bad.push(format!(
                    "{engine}@{device}: {op}{:?}: got {got:?}, keras {:?}",
                    c["inputs"],
                    expected(c)
                ));
            }
        }
    }
    assert!(ran > 6000, "only {ran} cases ran");
    common::assert_none_differ(&bad, cases.len());
}
