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
        "conv_transpose" => {
            let op = args["output_padding"].as_u64().map(|o| vec![o as usize]);
            conv::conv_transpose(&p[0], &p[1], &strides, padding, op.as_deref(), fmt, &dil)
        }
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
    assert!(cases.len() >= 24);
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
    // Integer pools are a documented dtype refusal (the device matrix counts them as such).
    let e = ops::max_pool(&xi, &[2], None, Padding::Valid, DataFormat::ChannelsLast).unwrap_err();
    assert!(
        matches!(&e, KilnError::DTypeNotAllowed { .. }) && e.to_string().contains("float"),
        "{e}"
    );
    // Patches that cannot fit in memory are an error, not an abort: a [1, 2^20, 1] signal under
    // a same-padded window of 2^20 needs 2^40 indices.
    let long = ops::zeros(&[1, 1 << 20, 1], None, None).unwrap();
    let wide = ops::zeros(&[1 << 20, 1, 1], None, None).unwrap();
    let e = conv::conv(
        &long,
        &wide,
        &[1],
        Padding::Same,
        DataFormat::ChannelsLast,
        &[1],
    )
    .unwrap_err();
    assert!(matches!(e, KilnError::OutOfMemory { .. }), "{e}");
    // A zero-width transposed kernel is an error, not an underflow.
    let k0 = ops::zeros(&[0, 3, 2, 3], None, None).unwrap();
    let e = conv::conv_transpose(
        &x,
        &k0,
        &[1],
        Padding::Same,
        None,
        DataFormat::ChannelsLast,
        &[1],
    )
    .unwrap_err();
    assert!(e.to_string().contains("at least 1"), "{e}");
    assert!(Padding::parse("full").is_err() && DataFormat::parse("nhwc").is_err());
    assert_eq!(Padding::parse("SAME").unwrap(), Padding::Same);
}

/// Keras's padding / cropping margins: `[a, b]` (1-d) or `[[a, b], [c, d]]`.
fn margins(v: &Value) -> Vec<(usize, usize)> {
    let a = v.as_array().unwrap();
    let n = |x: &Value| x.as_u64().unwrap() as usize;
    if a[0].is_array() {
        a.iter().map(|p| (n(&p[0]), n(&p[1]))).collect()
    } else {
        vec![(n(&a[0]), n(&a[1]))]
    }
}

/// A kiln layer from a Keras class name and config (the keys the fixtures use).
fn layer_from_keras(class: &str, c: &Value) -> Box<dyn kiln::nn::Layer> {
    use kiln::nn::*;
    let s = |k: &str| c[k].as_str().unwrap().to_string();
    let v = |k: &str| ints(&c[k], 1);
    let a1 = |k: &str| -> [usize; 1] { v(k).try_into().unwrap() };
    let a2 = |k: &str| -> [usize; 2] { v(k).try_into().unwrap() };
    let a3 = |k: &str| -> [usize; 3] { v(k).try_into().unwrap() };
    let f = || c["filters"].as_u64().unwrap() as usize;
    let g = || c["groups"].as_u64().unwrap() as usize;
    let b = || c["use_bias"].as_bool().unwrap();
    macro_rules! conv_layer {
        ($t:ty, $a:ident) => {
            Box::new(
                <$t>::new(f(), $a("kernel_size"))
                    .strides($a("strides"))
                    .padding(&s("padding"))
                    .data_format(&s("data_format"))
                    .dilation_rate($a("dilation_rate"))
                    .groups(g())
                    .activation(&s("activation"))
                    .use_bias(b()),
            )
        };
    }
    macro_rules! pool_layer {
        ($t:ty, $a:ident) => {
            Box::new(
                <$t>::new($a("pool_size"))
                    .strides($a("strides"))
                    .padding(&s("padding"))
                    .data_format(&s("data_format")),
            )
        };
    }
    macro_rules! global_layer {
        ($t:ty) => {
            Box::new(
                <$t>::new()
                    .data_format(&s("data_format"))
                    .keepdims(c["keepdims"].as_bool().unwrap()),
            )
        };
    }
    match class {
        "Conv1D" => conv_layer!(Conv1D, a1),
        "Conv2D" => conv_layer!(Conv2D, a2),
        "Conv3D" => conv_layer!(Conv3D, a3),
        "MaxPooling1D" => pool_layer!(MaxPooling1D, a1),
        "MaxPooling2D" => pool_layer!(MaxPooling2D, a2),
        "AveragePooling1D" => pool_layer!(AveragePooling1D, a1),
        "AveragePooling2D" => pool_layer!(AveragePooling2D, a2),
        "GlobalAveragePooling2D" => global_layer!(GlobalAveragePooling2D),
        "GlobalMaxPooling1D" => global_layer!(GlobalMaxPooling1D),
        "GlobalMaxPooling2D" => global_layer!(GlobalMaxPooling2D),
        "LayerNormalization" => Box::new(
            LayerNormalization::new()
                .axis(c["axis"][0].as_i64().unwrap() as isize)
                .epsilon(c["epsilon"].as_f64().unwrap())
                .center(c["center"].as_bool().unwrap())
                .scale(c["scale"].as_bool().unwrap()),
        ),
        "BatchNormalization" => Box::new(
            BatchNormalization::new()
                .axis(c["axis"].as_i64().unwrap() as isize)
                .momentum(c["momentum"].as_f64().unwrap())
                .epsilon(c["epsilon"].as_f64().unwrap())
                .center(c["center"].as_bool().unwrap())
                .scale(c["scale"].as_bool().unwrap()),
        ),
        "Conv2DTranspose" => Box::new(
            Conv2DTranspose::new(f(), a2("kernel_size"))
                .strides(a2("strides"))
                .padding(&s("padding"))
                .data_format(&s("data_format"))
                .dilation_rate(a2("dilation_rate"))
                .activation(&s("activation"))
                .use_bias(b()),
        ),
        "Conv1DTranspose" => {
            let mut l = Conv1DTranspose::new(f(), a1("kernel_size"))
                .strides(a1("strides"))
                .padding(&s("padding"))
                .data_format(&s("data_format"))
                .dilation_rate(a1("dilation_rate"))
                .activation(&s("activation"))
                .use_bias(b());
            if !c["output_padding"].is_null() {
                l = l.output_padding(a1("output_padding"));
            }
            Box::new(l)
        }
        "DepthwiseConv2D" => Box::new(
            DepthwiseConv2D::new(a2("kernel_size"))
                .strides(a2("strides"))
                .padding(&s("padding"))
                .data_format(&s("data_format"))
                .dilation_rate(a2("dilation_rate"))
                .depth_multiplier(c["depth_multiplier"].as_u64().unwrap() as usize)
                .activation(&s("activation"))
                .use_bias(b()),
        ),
        "SeparableConv2D" => Box::new(
            SeparableConv2D::new(f(), a2("kernel_size"))
                .strides(a2("strides"))
                .padding(&s("padding"))
                .data_format(&s("data_format"))
                .dilation_rate(a2("dilation_rate"))
                .depth_multiplier(c["depth_multiplier"].as_u64().unwrap() as usize)
                .activation(&s("activation"))
                .use_bias(b()),
        ),
        "SeparableConv1D" => Box::new(
            SeparableConv1D::new(f(), a1("kernel_size"))
                .strides(a1("strides"))
                .padding(&s("padding"))
                .data_format(&s("data_format"))
                .dilation_rate(a1("dilation_rate"))
                .depth_multiplier(c["depth_multiplier"].as_u64().unwrap() as usize)
                .activation(&s("activation"))
                .use_bias(b()),
        ),
        "ZeroPadding2D" => Box::new(
            ZeroPadding2D::new(<[(usize, usize); 2]>::try_from(margins(&c["padding"])).unwrap())
                .data_format(&s("data_format")),
        ),
        "ZeroPadding1D" => Box::new(ZeroPadding1D::new(
            <[(usize, usize); 1]>::try_from(margins(&c["padding"])).unwrap(),
        )),
        "Cropping2D" => Box::new(
            Cropping2D::new(<[(usize, usize); 2]>::try_from(margins(&c["cropping"])).unwrap())
                .data_format(&s("data_format")),
        ),
        "Cropping1D" => Box::new(Cropping1D::new(
            <[(usize, usize); 1]>::try_from(margins(&c["cropping"])).unwrap(),
        )),
        "UpSampling2D" => Box::new(UpSampling2D::new(a2("size")).data_format(&s("data_format"))),
        "UpSampling1D" => Box::new(UpSampling1D::new(a1("size"))),
        "GroupNormalization" => Box::new(
            GroupNormalization::new()
                .groups(c["groups"].as_u64().unwrap() as usize)
                .axis(c["axis"].as_i64().unwrap() as isize)
                .epsilon(c["epsilon"].as_f64().unwrap()),
        ),
        "SpatialDropout2D" => Box::new(SpatialDropout2D::new(c["rate"].as_f64().unwrap())),
        "Embedding" => Box::new(Embedding::new(
            c["input_dim"].as_u64().unwrap() as usize,
            c["output_dim"].as_u64().unwrap() as usize,
        )),
        other => panic!("no fixture layer {other}"),
    }
}

/// Every layer case on every engine, in float64: built from Keras's config, given the
/// fixture's weights, its output, output shape, class name, config keys and the gradients
/// of sum(layer(x) * r) with respect to the input and every weight match Keras/JAX.
#[test]
fn conv_and_pooling_layers_match_keras() {
    use kiln::nn::{stateless_call, BuildContext, CallContext, DTypePolicy};
    let f = fixtures();
    let cases = f["layers"].as_array().unwrap();
    assert!(cases.len() >= 13);
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new()
            .backend(Some(engine))
            .x64(true)
            .enter();
        for c in cases {
            let name = c["name"].as_str().unwrap();
            let class = c["class_name"].as_str().unwrap();
            let mut layer = layer_from_keras(class, &c["config"]);
            assert_eq!(layer.class_name(), class);
            let x = t64(&c["x"]).to_backend(engine).unwrap();
            let in_shape: Vec<Option<usize>> = x.shape().iter().map(|d| Some(*d)).collect();
            let mut ctx = BuildContext {
                policy: DTypePolicy::new("float64").unwrap(),
                device: Device::Cpu,
                seed: 1,
            };
            layer.build(&in_shape, &mut ctx).unwrap();
            // Keras's config keys (less the base ones the fixture drops), and its values for
            // everything but the initializers' nested configs.
            let cfg = layer.config();
            for (k, want) in c["config"].as_object().unwrap() {
                let got = cfg
                    .get(k)
                    .unwrap_or_else(|| panic!("{name}: no config key {k}"));
                if !k.ends_with("_initializer") {
                    assert_eq!(got, want, "{name}: config {k}");
                }
            }
            let weights: Vec<Tensor> = c["weights"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| t64(w).to_backend(engine).unwrap())
                .collect();
            let call = CallContext {
                training: c["training"].as_bool().unwrap_or(false),
                seed: 0,
            };
            let r = t64(&c["r"]).to_backend(engine).unwrap();
            // Integer inputs (Embedding's indices) have no gradient: only the weights do.
            let wrt_x = !c["grad_x"].is_null();
            let mut params = if wrt_x { vec![x.clone()] } else { vec![] };
            params.extend(weights.iter().cloned());
            let refs: Vec<&Tensor> = params.iter().collect();
            let mut out = None;
            let mut grads = autodiff::grad(
                |p| {
                    let (xin, ws) = if wrt_x { (&p[0], &p[1..]) } else { (&x, p) };
                    let y = stateless_call(layer.as_mut(), ws, xin, &call)?;
                    out = Some(autodiff::stop_gradient(&y));
                    ops::sum(&ops::multiply(&y, &r)?, None, false)
                },
                &refs,
            )
            .unwrap_or_else(|e| panic!("{name}: {e}"));
            if !wrt_x {
                grads.insert(0, x.clone());
            }
            let y = out.unwrap();
            let want_shape: Vec<Option<usize>> =
                decode(&c["output"]).0.into_iter().map(Some).collect();
            assert_eq!(layer.output_shape(&in_shape).unwrap(), want_shape, "{name}");
            assert_close(name, "output", &y, &c["output"]);
            if wrt_x {
                assert_close(name, "grad x", &grads[0], &c["grad_x"]);
            }
            // A training call's state updates (BatchNormalization's moving statistics), once
            // the layer holds the fixture's weights.
            let n_train = c["trainable_weights"].as_u64().unwrap() as usize;
            let after = c["non_trainable_after"].as_array().unwrap();
            if call.training && !after.is_empty() {
                for (v, w) in layer.variables_mut().into_iter().zip(&weights) {
                    v.assign(w).unwrap();
                }
                layer.call(&x, &call).unwrap();
                layer.finish_step().unwrap();
                for (v, want) in layer.variables()[n_train..].iter().zip(after) {
                    assert_close(name, &format!("{} after", v.name()), v.value(), want);
                }
            }
            for (i, (g, want)) in grads[1..]
                .iter()
                .zip(c["grad_weights"].as_array().unwrap())
                .enumerate()
            {
                assert_close(name, &format!("grad weight {i}"), g, want);
            }
        }
    }
}

/// The main job's convnet as a Keras user writes it: Keras's layer names (`conv2d`,
/// `conv2d_1`, `max_pooling2d`), output shapes and parameter counts in `summary()`.
#[test]
fn a_sequential_convnet_builds_with_keras_names_and_shapes() {
    use kiln::nn::*;
    let mut m = Sequential::new()
        .add(Input::new(&[8, 8, 1]))
        .add(Conv2D::new(16, 3).activation("relu"))
        .add(Conv2D::new(32, 3).activation("relu"))
        .add(MaxPooling2D::default())
        .add(Flatten::new())
        .add(Dense::new(10));
    let s = m.summary().unwrap();
    let names: Vec<&str> = m.layers().iter().map(|l| l.name()).collect();
    assert!(
        names.ends_with(&["conv2d", "conv2d_1", "max_pooling2d", "flatten", "dense"]),
        "{names:?}"
    );
    for want in [
        "conv2d (Conv2D)",
        "(None, 6, 6, 16)",
        "160",
        "(None, 4, 4, 32)",
        "4,640",
        "max_pooling2d (MaxPooling2D)",
        "(None, 2, 2, 32)",
        "(None, 128)",
        "1,290",
        "6,090",
    ] {
        assert!(s.contains(want), "summary lacks {want:?}:\n{s}");
    }
}

/// BatchNormalization and Embedding inside `fit`: the moving statistics leave their initial
/// values (and count as non-trainable parameters), the embedding rows that were looked up
/// move, the rest stay, and inference uses the moving statistics (a single sample predicts
/// the same alone as in a batch).
#[test]
fn batch_normalization_and_embedding_train_in_a_model() {
    use kiln::nn::*;
    let (x, y) = {
        let x = ops::random_normal(&[64, 4], 0.0, 1.0, Some(DType::Float64), 9, None).unwrap();
        let xv = x.to_f64_vec().unwrap();
        let y: Vec<i64> = xv.chunks(4).map(|r| (r[0] > 0.0) as i64).collect();
        (
            ArrayData::from_shape_vec(&[64, 4], xv).unwrap(),
            ArrayData::from_shape_vec(&[64], y).unwrap(),
        )
    };
    let mut m = Sequential::new()
        .seed(1)
        .add(Input::new(&[4]))
        .add(Dense::new(8))
        .add(BatchNormalization::new())
        .add(Activation::new("relu"))
        .add(Dense::new(2));
    m.compile(
        Adam::new(0.01),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )
    .unwrap();
    m.fit(
        &x,
        &y,
        FitArgs::default().epochs(3).verbose(Verbose::Silent),
    )
    .unwrap();
    assert!(m.summary().unwrap().contains("Non-trainable params: 16"));
    let w = m.get_weights().unwrap();
    // dense kernel, bias; gamma, beta, moving_mean, moving_variance; dense_1 kernel, bias.
    assert!(
        w[4].to_f64_vec().iter().any(|v| *v != 0.0),
        "moving mean moved"
    );
    assert!(
        w[5].to_f64_vec().iter().any(|v| *v != 1.0),
        "moving variance moved"
    );
    let one = kiln::datasets::take_rows(&x, &[3]).unwrap();
    let alone = m.predict(&one, 1).unwrap().to_f64_vec().unwrap();
    let batch = m.predict(&x, 64).unwrap().to_f64_vec().unwrap();
    for (a, b) in alone.iter().zip(&batch[6..8]) {
        assert!((a - b).abs() < 1e-5, "{alone:?} vs {:?}", &batch[6..8]);
    }

    // Embedding: rows 0..5 are used, rows 5..10 never; only the used rows train.
    let idx: Vec<f64> = (0..40).map(|i| (i % 5) as f64).collect();
    let xe = ArrayData::from_shape_vec(&[8, 5], idx).unwrap();
    let ye = ArrayData::from_shape_vec(&[8], (0..8).map(|i| i % 2).collect::<Vec<i64>>()).unwrap();
    let mut e = Sequential::new()
        .seed(2)
        .add(Input::new(&[5]))
        .add(Embedding::new(10, 3))
        .add(Flatten::new())
        .add(Dense::new(2));
    e.compile(
        Adam::new(0.01),
        Loss::sparse_categorical_crossentropy(true),
        &[],
    )
    .unwrap();
    e.build(&[5]).unwrap();
    let before = e.get_weights().unwrap()[0].to_f64_vec();
    e.fit(
        &xe,
        &ye,
        FitArgs::default().epochs(2).verbose(Verbose::Silent),
    )
    .unwrap();
    let after = e.get_weights().unwrap()[0].to_f64_vec();
    assert!((0..15).any(|i| before[i] != after[i]), "used rows trained");
    assert_eq!(&before[15..], &after[15..], "unused rows untouched");
    // An index outside the table is an error naming it.
    let bad = ArrayData::from_shape_vec(&[1, 5], vec![0.0, 1.0, 12.0, 0.0, 0.0]).unwrap();
    let err = e.predict(&bad, 1).unwrap_err().to_string();
    assert!(err.contains("index 12"), "{err}");
}

/// SpatialDropout2D while training zeroes whole channels of a sample (every position alike)
/// and scales the rest by 1 / (1 - rate); at inference it is the identity.
#[test]
fn spatial_dropout_drops_whole_channels() {
    use kiln::nn::*;
    let mut l = SpatialDropout2D::new(0.5);
    let mut b = BuildContext {
        policy: DTypePolicy::new("float32").unwrap(),
        device: Device::Cpu,
        seed: 0,
    };
    l.build(&[None, Some(3), Some(3), Some(8)], &mut b).unwrap();
    let x = ops::ones(&[4, 3, 3, 8], None, None).unwrap();
    let y = l
        .call(
            &x,
            &CallContext {
                training: true,
                seed: 7,
            },
        )
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let (mut kept, mut dropped) = (0, 0);
    for s in 0..4 {
        for c in 0..8 {
            let vals: Vec<f32> = (0..9).map(|p| y[s * 72 + p * 8 + c]).collect();
            assert!(vals.iter().all(|v| *v == vals[0]), "{vals:?}");
            match vals[0] {
                0.0 => dropped += 1,
                2.0 => kept += 1,
                v => panic!("{v}"),
            }
        }
    }
    assert!(kept > 4 && dropped > 4, "{kept} kept, {dropped} dropped");
    let same = l
        .call(
            &x,
            &CallContext {
                training: false,
                seed: 7,
            },
        )
        .unwrap();
    assert_eq!(same.to_vec::<f32>().unwrap(), vec![1.0; 288]);
}
