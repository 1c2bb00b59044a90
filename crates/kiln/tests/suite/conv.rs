//! Convolutions and pools against Keras 3's `ops.nn` on JAX (tests/data/conv_fixtures.json,
//! written by scripts/gen_conv_fixtures.py): forward values and `jax.grad` of a weighted sum
//! of each output, in float64, on every engine; finite differences for the gather's
//! transpose; argument errors.

use kiln::autodiff;
use kiln::ops::conv::{self, DataFormat, Padding};
use kiln::{convert_to_tensor, ops, ArrayData, DType, Device, KilnError, Tensor};
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/conv_fixtures.json");
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

fn decode(v: &Value) -> (Vec<usize>, Vec<f64>) {
    let shape = v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect();
    let data = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    (shape, data)
}

fn t64(v: &Value) -> Tensor {
    let (s, d) = decode(v);
    convert_to_tensor(
        &ArrayData::from_shape_vec(&s, d).unwrap(),
        Some(DType::Float64),
        &Device::Cpu,
    )
    .unwrap()
}

/// A Keras int-or-tuple argument.
fn ints(v: &Value, default: usize) -> Vec<usize> {
    match v {
        Value::Null => vec![default],
        Value::Array(a) => a.iter().map(|x| x.as_u64().unwrap() as usize).collect(),
        x => vec![x.as_u64().unwrap() as usize],
    }
}

fn run(op: &str, args: &Value, p: &[Tensor]) -> kiln::Result<Tensor> {
    let padding = Padding::parse(args["padding"].as_str().unwrap_or("valid"))?;
    let fmt = DataFormat::parse(args["data_format"].as_str().unwrap_or("channels_last"))?;
    let strides = ints(&args["strides"], 1);
    let dil = ints(&args["dilation_rate"], 1);
    match op {
        "conv" => conv::conv(&p[0], &p[1], &strides, padding, fmt, &dil),
        "depthwise_conv" => conv::depthwise_conv(&p[0], &p[1], &strides, padding, fmt, &dil),
        "max_pool" => {
            let s = ints(&args["strides"], 0);
            ops::max_pool(&p[0], &ints(&args["pool_size"], 1), Some(&s), padding, fmt)
        }
        "average_pool" => {
            let s = ints(&args["strides"], 0);
            ops::average_pool(&p[0], &ints(&args["pool_size"], 1), Some(&s), padding, fmt)
        }
        other => panic!("no case for {other}"),
    }
}

fn assert_close(name: &str, what: &str, got: &Tensor, want: &Value) {
    let (shape, want) = decode(want);
    assert_eq!(got.shape(), &shape[..], "{name} {what}: shape");
    let got = got.to_host().unwrap().to_f64_vec();
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= 1e-10 * (1.0 + w.abs()),
            "{name} {what}[{i}]: kiln {g} vs Keras/JAX {w}"
        );
    }
}

/// Every fixture case on every engine: the output and the gradient of sum(output * r) with
/// respect to every input, to 1e-10 relative.
#[test]
fn convolutions_and_pools_match_keras_and_jax_grad() {
    let f = fixtures();
    let cases = f["cases"].as_array().unwrap();
    assert!(cases.len() >= 19);
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new()
            .backend(Some(engine))
            .x64(true)
            .enter();
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let op = c["op"].as_str().unwrap();
            let inputs: Vec<Tensor> = c["inputs"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| t64(v).to_backend(engine).unwrap())
                .collect();
            let y = run(op, &c["args"], &inputs).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(y.dtype(), DType::Float64, "{name}");
            assert_close(name, "output", &y, &c["output"]);
            let r = t64(&c["r"]).to_backend(engine).unwrap();
            let refs: Vec<&Tensor> = inputs.iter().collect();
            let grads = autodiff::grad(
                |p| ops::sum(&ops::multiply(&run(op, &c["args"], p)?, &r)?, None, false),
                &refs,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            for (i, (g, want)) in grads.iter().zip(c["grads"].as_array().unwrap()).enumerate() {
                assert_close(name, &format!("grad {i} ({engine:?})"), g, want);
            }
        }
    }
}

/// The gather's transpose (`IndexAdd`) accumulates repeated indices: `take` of rows
/// [2, 0, 2, 2] has gradient 3 on row 2 and 1 on row 0, on every engine.
#[test]
fn take_gradient_accumulates_repeated_indices() {
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new().backend(Some(engine)).enter();
        let x = convert_to_tensor(
            &ArrayData::from_shape_vec(&[3, 2], vec![1f32, 2., 3., 4., 5., 6.]).unwrap(),
            None,
            &Device::Cpu,
        )
        .unwrap()
        .to_backend(engine)
        .unwrap();
        let idx = convert_to_tensor(&ArrayData::from(vec![2i64, 0, 2, 2]), None, &Device::Cpu)
            .unwrap()
            .to_backend(engine)
            .unwrap();
        let g = autodiff::grad(
            |p| ops::sum(&ops::take(&p[0], &idx, Some(0))?, None, false),
            &[&x],
        )
        .unwrap();
        assert_eq!(
            g[0].to_vec::<f32>().unwrap(),
            vec![1., 1., 0., 0., 3., 3.],
            "{engine:?}"
        );
    }
}

/// channels_first gives channels_last's values, transposed (conv and both pools).
#[test]
fn channels_first_is_channels_last_transposed() {
    let x = ops::random_uniform(&[2, 7, 6, 3], -1.0, 1.0, None, 3, None).unwrap();
    let k = ops::random_uniform(&[3, 2, 3, 4], -1.0, 1.0, None, 4, None).unwrap();
    let xf = ops::transpose(&x, Some(&[0, 3, 1, 2])).unwrap();
    let last = |y: Tensor| ops::transpose(&y, Some(&[0, 3, 1, 2])).unwrap();
    let cl = DataFormat::ChannelsLast;
    let cf = DataFormat::ChannelsFirst;
    let pairs = [
        (
            conv::conv(&x, &k, &[2, 1], Padding::Same, cl, &[1]).unwrap(),
            conv::conv(&xf, &k, &[2, 1], Padding::Same, cf, &[1]).unwrap(),
        ),
        (
            ops::max_pool(&x, &[2, 3], None, Padding::Same, cl).unwrap(),
            ops::max_pool(&xf, &[2, 3], None, Padding::Same, cf).unwrap(),
        ),
        (
            ops::average_pool(&x, &[3], Some(&[2]), Padding::Same, cl).unwrap(),
            ops::average_pool(&xf, &[3], Some(&[2]), Padding::Same, cf).unwrap(),
        ),
    ];
    for (a, b) in pairs {
        assert_eq!(last(a).to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
    }
}

/// Bad arguments are errors that say what to change, never panics.
#[test]
fn bad_convolution_arguments_are_errors() {
    let x = ops::zeros(&[1, 4, 4, 3], None, None).unwrap();
    let msg = |r: kiln::Result<Tensor>| match r {
        Err(e @ KilnError::InvalidArgument { .. }) => e.to_string(),
        other => panic!("expected an argument error, got {other:?}"),
    };
    let c = |x: &Tensor, k: &[usize], strides: &[usize], p: Padding| {
        let k = ops::zeros(k, None, None).unwrap();
        msg(conv::conv(
            x,
            &k,
            strides,
            p,
            DataFormat::ChannelsLast,
            &[1],
        ))
    };
    let v = Padding::Valid;
    // 3 channels, 2 per group.
    assert!(c(&x, &[3, 3, 2, 4], &[1], v).contains("multiple of kernel.shape[-2]"));
    assert!(c(&x, &[5, 5, 3, 4], &[1], v).contains("padding \"same\""));
    assert!(c(&x, &[3, 3, 3, 4], &[1, 1, 1], v).contains("3 values for 2 spatial axes"));
    assert!(c(&x, &[3, 3, 3, 4], &[0], v).contains("at least 1"));
    assert!(c(&x, &[3, 3, 3, 4], &[1], Padding::Causal).contains("causal"));
    let k = ops::zeros(&[3, 3, 3, 4], None, None).unwrap();
    let flat = ops::zeros(&[4, 3], None, None).unwrap();
    assert!(msg(conv::conv(
        &flat,
        &k,
        &[1],
        Padding::Valid,
        DataFormat::ChannelsLast,
        &[1]
    ))
    .contains("axes"));
    let xi = ops::zeros(&[1, 4, 4, 3], Some(DType::Int32), None).unwrap();
    assert!(msg(ops::max_pool(
        &xi,
        &[2],
        None,
        Padding::Valid,
        DataFormat::ChannelsLast
    ))
    .contains("float"));
    assert!(Padding::parse("full").is_err() && DataFormat::parse("nhwc").is_err());
    assert_eq!(Padding::parse("SAME").unwrap(), Padding::Same);
}
