//! `ops::output_spec` (Keras's compute_output_spec) against running the op: for every
//! registry op, on several dtypes and shapes, on the cpu and sim:mps, the spec is the real
//! result's dtype and shape, or both fail.

use kiln::ops::{self, registry, Operand, TensorSpec};
use kiln::{DType, Device, Tensor};

fn real(shape: &[usize], dtype: DType, device: Device) -> Tensor {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = (0..n).map(|i| (i % 7) as f64 - 2.0).collect();
    let a = kiln::ArrayData::from_shape_vec(shape, v).unwrap();
    let t = kiln::convert_to_tensor(&a, Some(DType::Float64), &Device::Cpu).unwrap();
    let _x = kiln::precision::Scope::new().x64(true).enter();
    ops::cast(&t, dtype).unwrap().to_device(device).unwrap()
}

#[test]
fn output_spec_is_what_running_the_op_gives() {
    let mut checked = 0;
    for device in [Device::Cpu, Device::parse("sim:mps").unwrap()] {
        for dtype in [DType::Float32, DType::Int8, DType::Bool, DType::Float16] {
            for shape in [vec![3usize, 4], vec![2, 1, 4]] {
                let Ok(x) = std::panic::catch_unwind(|| real(&shape, dtype, device)) else {
                    continue;
                };
                let spec = TensorSpec::of(&x);
                for name in registry::UNARY {
                    if *name == "nonzero" {
                        continue; // its output size depends on the values
                    }
                    let want = registry::call_unary(name, &x).map(|t| TensorSpec::of(&t));
                    let got = ops::output_spec(
                        |p| registry::call_unary(name, &p[0]),
                        std::slice::from_ref(&spec),
                    );
                    match (&want, &got) {
                        (Ok(w), Ok(g)) => assert_eq!(w, g, "{name} on {dtype} {shape:?} {device}"),
                        (Err(_), Err(_)) => {}
                        _ => panic!(
                            "{name} on {dtype} {shape:?} {device}: ran {want:?}, spec {got:?}"
                        ),
                    }
                    checked += 1;
                }
                let y = real(&[4], DType::Float32, device);
                let yspec = TensorSpec::of(&y);
                for name in registry::BINARY {
                    let want =
                        registry::call_binary(name, Operand::Tensor(&x), Operand::Tensor(&y))
                            .map(|t| TensorSpec::of(&t));
                    let got = ops::output_spec(
                        |p| {
                            registry::call_binary(
                                name,
                                Operand::Tensor(&p[0]),
                                Operand::Tensor(&p[1]),
                            )
                        },
                        &[spec.clone(), yspec.clone()],
                    );
                    match (&want, &got) {
                        (Ok(w), Ok(g)) => assert_eq!(w, g, "{name} on {dtype} {shape:?} {device}"),
                        (Err(_), Err(_)) => {}
                        _ => panic!(
                            "{name} on {dtype} {shape:?} {device}: ran {want:?}, spec {got:?}"
                        ),
                    }
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 1000, "{checked}");
    // Values are not there to read.
    let s = TensorSpec::new(&[3], DType::Float32).unwrap();
    let e = ops::output_spec(|p| p[0].to_host().map(|_| p[0].clone()), &[s]).unwrap_err();
    assert!(e.to_string().contains("no values"), "{e}");
}
