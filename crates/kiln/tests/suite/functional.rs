//! Functional models: a residual block computes what its formula says and trains; a shared
//! layer is one set of weights; models nest; merge layers check their shapes; shape
//! mismatches are errors at build time naming both layers and shapes; the summary has
//! Keras's "Connected to" column.

use kiln::nn::*;
use kiln::{convert_to_tensor, ops, ArrayData, DType, Device, Tensor};
use serde_json::Value;

fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
    convert_to_tensor(
        &ArrayData::from_shape_vec(shape, v).unwrap(),
        None,
        &Device::Cpu,
    )
    .unwrap()
}

fn ctx() -> CallContext {
    CallContext {
        training: false,
        seed: 0,
    }
}

fn build(f: &mut Functional, shape: &[Option<usize>]) {
    let mut b = BuildContext {
        policy: DTypePolicy::new("float32").unwrap(),
        device: Device::Cpu,
        seed: 3,
    };
    f.build(shape, &mut b).unwrap();
}

/// `y = dense_1(x + relu(dense(x)))`, computed by the graph and by hand from its weights.
#[test]
fn a_residual_block_computes_its_formula() {
    let mut g = Graph::new();
    let x = g.input(&[4]);
    let h = g.apply(Dense::new(4).activation("relu"), &[x]).unwrap();
    let s = g.apply(Add::new(), &[x, h]).unwrap();
    let out = g.apply(Dense::new(2), &[s]).unwrap();
    assert_eq!(g.shape(out), Some(&[None, Some(2)][..]));
    let mut f = g.build(&[x], &[out]).unwrap();
    build(&mut f, &[None, Some(4)]);
    let names: Vec<&str> = f.layers().iter().map(|l| l.name()).collect();
    assert_eq!(names, ["dense", "add", "dense_1"]);
    let xv = t(&[3, 4], (0..12).map(|i| i as f32 * 0.1 - 0.5).collect());
    let y = f.call(&xv, &ctx()).unwrap();
    let v = f.variables();
    let (k1, b1, k2, b2) = (v[0].value(), v[1].value(), v[2].value(), v[3].value());
    let h = ops::relu(&ops::add(&ops::matmul(&xv, k1).unwrap(), b1).unwrap()).unwrap();
    let want = ops::add(&ops::matmul(&ops::add(&xv, &h).unwrap(), k2).unwrap(), b2).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
}

/// One Dense called on two branches: one kernel, counted once; both calls use it.
#[test]
fn a_shared_layer_is_one_set_of_weights() {
    let mut g = Graph::new();
    let x = g.input(&[3]);
    let shared = g.layer(Dense::new(5));
    let a = g.call(shared, &[x]).unwrap();
    let neg = g.apply(Activation::new("relu"), &[x]).unwrap();
    let b = g.call(shared, &[neg]).unwrap();
    let c = g.apply(Concatenate::new(), &[a, b]).unwrap();
    assert_eq!(g.shape(c), Some(&[None, Some(10)][..]));
    let out = g.apply(Dense::new(1), &[c]).unwrap();
    let mut f = g.build(&[x], &[out]).unwrap();
    build(&mut f, &[None, Some(3)]);
    // shared kernel 3x5 + bias 5, head 10x1 + 1.
    let n: usize = f.variables().iter().map(|v| v.value().size()).sum();
    assert_eq!(n, 15 + 5 + 10 + 1);
    let s = f.summary();
    assert!(s.contains("Connected to"), "{s}");
    assert!(s.contains("concatenate (Concatenate)"), "{s}");
    // Keras's `layer[call][tensor]`: the shared layer's first and second calls.
    assert!(s.contains("dense[0][0], dense[1][0]"), "{s}");
    assert!(s.contains("input_layer (InputLayer)"), "{s}");
    // Both calls of the shared layer in Keras's config.
    let cfg = f.config();
    // Keras's layout: the InputLayer first, then each layer with its calls.
    assert_eq!(cfg["layers"][0]["class_name"], "InputLayer", "{cfg}");
    let inbound = &cfg["layers"][1]["inbound_nodes"];
    assert_eq!(inbound.as_array().unwrap().len(), 2, "{cfg}");
    assert_eq!(
        inbound[1]["args"][0]["config"]["keras_history"],
        serde_json::json!(["activation", 0, 0]),
        "{cfg}"
    );
    let mut m = f.into_model();
    let s = m.summary().unwrap();
    assert!(s.contains("Total params: 31"), "{s}");
    assert!(s.contains("Connected to"), "{s}");
}

/// A shape mismatch is an error when the graph is built, naming both layers and shapes.
#[test]
fn shape_mismatches_are_errors_at_build_time() {
    let mut g = Graph::new();
    let x = g.input(&[16]);
    let a = g.apply(Dense::new(16), &[x]).unwrap();
    let b = g.apply(Dense::new(8), &[x]).unwrap();
    let e = g.apply(Add::new(), &[a, b]).unwrap_err().to_string();
    for want in [
        "\"add\"",
        "\"dense\"",
        "\"dense_1\"",
        "(None, 16)",
        "(None, 8)",
    ] {
        assert!(e.contains(want), "{want} not in {e}");
    }
    let e = g
        .apply(Concatenate::new().axis(0), &[a, b])
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not join"), "{e}");
    let e = g.apply(Add::new(), &[a]).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    // A tensor of another graph, an output that needs an input the model lacks.
    let mut other = Graph::new();
    let y = other.input(&[16]);
    assert!(g.apply(Dense::new(2), &[y]).is_err());
    let x2 = g.input(&[16]);
    let both = g.apply(Multiply::new(), &[a, x2]).unwrap();
    let e = g.build(&[x], &[both]).unwrap_err().to_string();
    assert!(e.contains("not among the model's inputs"), "{e}");
}

/// A functional model trains through `fit`, nests inside another, and gives several outputs
/// through `call_all`.
#[test]
fn functional_models_train_nest_and_give_several_outputs() {
    // Three blobs in 4-d.
    let n = 90;
    let xs = ops::random_normal(&[n, 4], 0.0, 0.3, Some(DType::Float64), 4, None).unwrap();
    let mut xv = xs.to_f64_vec().unwrap();
    let y: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    for i in 0..n {
        xv[i * 4 + i % 3] += 2.0;
    }
    let x = ArrayData::from_shape_vec(&[n, 4], xv).unwrap();
    let y = ArrayData::from_shape_vec(&[n], y).unwrap();
    // An inner block, nested in an outer graph.
    let mut gi = Graph::new();
    let xi = gi.input(&[8]);
    let hi = gi.apply(Dense::new(8).activation("relu"), &[xi]).unwrap();
    let si = gi.apply(Add::new(), &[xi, hi]).unwrap();
    let inner = gi.build(&[xi], &[si]).unwrap().name("block");
    let mut g = Graph::new();
    let x0 = g.input(&[4]);
    let h = g.apply(Dense::new(8).activation("relu"), &[x0]).unwrap();
    let b = g.apply(inner, &[h]).unwrap();
    let out = g.apply(Dense::new(3), &[b]).unwrap();
    let mut m = Model::new(g, &[x0], &[out]).unwrap();
    m.compile(
        Adam::new(0.05),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )
    .unwrap();
    let h = m
        .fit(
            &x,
            &y,
            FitArgs::default().epochs(15).verbose(Verbose::Silent),
        )
        .unwrap();
    let acc = h.get("accuracy").unwrap();
    assert!(acc[acc.len() - 1] > 0.95, "{acc:?}");
    let loss = h.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] / 3.0, "{loss:?}");
    // 4*8+8 + (8*8+8) + 8*3+3 parameters, all trainable.
    assert!(m.summary().unwrap().contains("Total params: 139"));
    // The nested model's weights have paths of their own (Keras's), so they save and load
    // one for one; a model whose weights are scrambled gets them back.
    let paths = m.variable_paths();
    assert_eq!(
        paths,
        [
            "dense/kernel",
            "dense/bias",
            "block/dense/kernel",
            "block/dense/bias",
            "dense_1/kernel",
            "dense_1/bias"
        ]
    );
    let dir = std::env::temp_dir().join(format!("kiln_nested_{}", std::process::id()));
    let file = dir.join("w.npz");
    let file = file.to_str().unwrap();
    m.save_weights(file).unwrap();
    let want = m.predict(&x, 32).unwrap().to_vec::<f32>().unwrap();
    let zeros: Vec<ArrayData> = m
        .get_weights()
        .unwrap()
        .iter()
        .map(|w| ArrayData::from_shape_vec(w.shape(), vec![0f32; w.len()]).unwrap())
        .collect();
    m.set_weights(&zeros).unwrap();
    m.load_weights(file).unwrap();
    assert_eq!(m.predict(&x, 32).unwrap().to_vec::<f32>().unwrap(), want);
    // The same through safetensors.
    let st = dir.join("w.safetensors");
    let st = st.to_str().unwrap();
    m.save_weights(st).unwrap();
    m.set_weights(&zeros).unwrap();
    m.load_weights(st).unwrap();
    assert_eq!(m.predict(&x, 32).unwrap().to_vec::<f32>().unwrap(), want);
    std::fs::remove_dir_all(&dir).ok();
    // Two layers of one name are refused when the model is made.
    let mut g = Graph::new();
    let x1 = g.input(&[2]);
    let a = g.apply(Dense::new(2).name("same"), &[x1]).unwrap();
    let b = g.apply(Dense::new(2).name("same"), &[a]).unwrap();
    let e = Model::new(g, &[x1], &[b]).err().unwrap().to_string();
    assert!(e.contains("two layers are named \"same\""), "{e}");

    // Two outputs.
    let mut g = Graph::new();
    let x = g.input(&[2]);
    let a = g.apply(Dense::new(3), &[x]).unwrap();
    let b = g.apply(Dense::new(1), &[x]).unwrap();
    let mut f = g.build(&[x], &[a, b]).unwrap();
    build(&mut f, &[None, Some(2)]);
    let outs = f.call_all(&[t(&[5, 2], vec![0.5; 10])], &ctx()).unwrap();
    assert_eq!(
        (outs[0].shape(), outs[1].shape()),
        (&[5, 3][..], &[5, 1][..])
    );
    let mut m = f.into_model();
    assert_eq!(m.output_names(), ["dense", "dense_1"]);
    let e = m
        .predict(&t(&[5, 2], vec![0.5; 10]), 32)
        .unwrap_err()
        .to_string();
    assert!(e.contains("use predict_many"), "{e}");
    let e = m
        .compile(SGD::default(), Loss::MeanSquaredError, &["mae"])
        .unwrap_err()
        .to_string();
    assert!(e.contains("output_metrics"), "{e}");
}

fn fixtures() -> Value {
    crate::common::fixture("functional_fixtures.json")
}

use crate::common::f64s;

fn shape(v: &Value) -> Vec<usize> {
    v["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_u64().unwrap() as usize)
        .collect()
}

fn array(v: &Value) -> ArrayData {
    let vals = f64s(&v["values"]);
    if v["int"].as_bool() == Some(true) {
        ArrayData::from_shape_vec(
            &shape(v),
            vals.iter().map(|x| *x as i64).collect::<Vec<_>>(),
        )
        .unwrap()
    } else {
        ArrayData::from_shape_vec(
            &shape(v),
            vals.iter().map(|x| *x as f32).collect::<Vec<_>>(),
        )
        .unwrap()
    }
}

fn arrays(v: &Value) -> Vec<ArrayData> {
    v.as_array().unwrap().iter().map(array).collect()
}

fn loss_named(name: &str) -> Loss {
    match name {
        "mse" => Loss::MeanSquaredError,
        "mae" => Loss::MeanAbsoluteError,
        "sparse_categorical_crossentropy_logits" => Loss::sparse_categorical_crossentropy(true),
        other => panic!("no loss {other}"),
    }
}

/// The fixture's models, layer for layer (the same names, so the same log keys).
fn fixture_model(name: &str, l2: bool) -> Model {
    let mut g = Graph::new();
    match name {
        "shared_siamese" => {
            let a = g.input(&[3]);
            let b = g.input(&[3]);
            let d = g.layer(Dense::new(4).activation("tanh"));
            let da = g.call(d, &[a]).unwrap();
            let db = g.call(d, &[b]).unwrap();
            let s = g.apply(Add::new(), &[da, db]).unwrap();
            let out = g.apply(Dense::new(1).name("out"), &[s]).unwrap();
            let da2 = g.call(d, &[a]).unwrap();
            let aux = g.apply(Dense::new(1).name("aux"), &[da2]).unwrap();
            Model::new(g, &[a, b], &[out, aux]).unwrap()
        }
        _ => {
            let a = g.input(&[3]);
            let b = g.input(&[2]);
            let h = g.apply(Concatenate::new(), &[a, b]).unwrap();
            let mut trunk = Dense::new(6).activation("relu");
            if l2 {
                trunk = trunk.kernel_regularizer(Regularizer::L2(0.01));
            }
            let h = g.apply(trunk, &[h]).unwrap();
            let reg = g.apply(Dense::new(1).name("reg"), &[h]).unwrap();
            let cls = g.apply(Dense::new(3).name("cls"), &[h]).unwrap();
            Model::new(g, &[a, b], &[reg, cls]).unwrap()
        }
    }
}

/// Functional models of two inputs and two outputs trained by `fit` against Keras 3 (JAX)
/// from the same initial weights, without shuffling: per-output losses (as a list, by name,
/// one for both outputs), loss weights, per-output metrics, a shared layer called three
/// times, an L2 penalty, sample weights and a validation split. Every log key per epoch,
/// `evaluate` and the final weights agree (float32 on both sides).
#[test]
fn multi_output_fit_matches_keras() {
    let fx = fixtures();
    for case in fx["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let k = &case["kiln"];
        let mut m = fixture_model(name, k["l2"].as_bool().unwrap());
        let names: Vec<String> = case["output_names"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        assert_eq!(m.output_names(), names, "{name}");
        let losses: Vec<Loss> = k["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| loss_named(l.as_str().unwrap()))
            .collect();
        let metrics: Vec<Vec<&str>> = k["metrics"]
            .as_array()
            .unwrap()
            .iter()
            .map(|ms| {
                ms.as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap())
                    .collect()
            })
            .collect();
        let metric_refs: Vec<&[&str]> = metrics.iter().map(|m| m.as_slice()).collect();
        let mut args = match name {
            // Keras's dict form, by output name.
            "two_heads_dict_l2_sample_weight" => CompileArgs::new()
                .output_loss("cls", losses[1])
                .output_loss("reg", losses[0])
                .output_loss_weight("reg", 2.0)
                .output_metrics("cls", &["accuracy"]),
            "two_heads_one_loss" => CompileArgs::new().loss(losses[0]),
            _ => CompileArgs::new()
                .losses(losses.clone())
                .metrics(&metric_refs),
        };
        if let Some(w) = k["loss_weights"].as_array() {
            if name != "two_heads_dict_l2_sample_weight" {
                args = args.loss_weights(&f64s(&Value::Array(w.clone())));
            }
        }
        m.compile_with(SGD::new(0.1), args).unwrap();
        m.build(&[]).unwrap();
        let init: Vec<ArrayData> = case["init"].as_array().unwrap().iter().map(array).collect();
        m.set_weights(&init).unwrap();
        let (xs, ys) = (arrays(&case["inputs"]), arrays(&case["targets"]));
        let history = &case["history"];
        let epochs = history["loss"].as_array().unwrap().len();
        let batch_size = match name {
            "two_heads_list" | "shared_siamese" => 8,
            "two_heads_dict_l2_sample_weight" => 5,
            _ => 6,
        };
        let mut fa = FitArgs::default()
            .epochs(epochs)
            .batch_size(batch_size)
            .shuffle(false)
            .verbose(Verbose::Silent);
        if let Some(sw) = case["sample_weight"].as_array() {
            let w = f64s(&Value::Array(sw.clone()));
            fa = fa
                .sample_weight(ArrayData::from_shape_vec(&[w.len()], w).unwrap())
                .validation_split(0.25);
        }
        let h = m.fit(&xs, &ys, fa).unwrap();
        let want_keys: Vec<&String> = history.as_object().unwrap().keys().collect();
        let got_keys: Vec<&String> = h.history.keys().collect();
        assert_eq!(got_keys, want_keys, "{name}: log keys");
        for (key, want) in history.as_object().unwrap() {
            let got = h.get(key).unwrap();
            for (e, (g, w)) in got.iter().zip(f64s(want)).enumerate() {
                assert!(
                    (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                    "{name}: {key} epoch {e}: kiln {g}, Keras {w}"
                );
            }
        }
        let ev = m.evaluate(&xs, &ys, batch_size).unwrap();
        for (key, want) in case["evaluate"].as_object().unwrap() {
            let (g, w) = (ev[key], want.as_f64().unwrap());
            assert!(
                (g - w).abs() <= 2e-5 * w.abs().max(1.0),
                "{name}: evaluate {key}: kiln {g}, Keras {w}"
            );
        }
        for (i, (got, want)) in m
            .get_weights()
            .unwrap()
            .iter()
            .zip(case["final"].as_array().unwrap())
            .enumerate()
        {
            for (g, w) in got.to_f64_vec().iter().zip(f64s(&want["values"])) {
                assert!(
                    (g - w).abs() <= 2e-5,
                    "{name}: weight {i}: kiln {g}, Keras {w}"
                );
            }
        }
        let preds = m.predict_many(&xs, 32).unwrap();
        assert_eq!(preds.len(), 2);
        assert_eq!(preds[0].shape()[0], xs[0].shape()[0]);
    }
}

/// What a user can get wrong with several inputs and outputs is an error naming it.
#[test]
fn multi_output_mistakes_are_named() {
    let m = || fixture_model("two_heads_list", false);
    let err = |args: CompileArgs| {
        m().compile_with(SGD::default(), args)
            .unwrap_err()
            .to_string()
    };
    let e = err(CompileArgs::new().losses([Loss::MeanSquaredError]));
    assert!(
        e.contains("1 losses for a model of 2 outputs (reg, cls)"),
        "{e}"
    );
    let e = err(CompileArgs::new().output_loss("reg", Loss::MeanSquaredError));
    assert!(e.contains("no loss for the output(s) cls"), "{e}");
    let e = err(CompileArgs::new().output_loss("clss", Loss::MeanSquaredError));
    assert!(e.contains("\"clss\"") && e.contains("reg, cls"), "{e}");
    let e = err(CompileArgs::new()
        .loss(Loss::MeanSquaredError)
        .loss_weights(&[1.0]));
    assert!(e.contains("1 weights for 2 outputs"), "{e}");
    let e = err(CompileArgs::new().losses([None, None::<Loss>]));
    assert!(e.contains("nothing to train"), "{e}");
    let e = err(CompileArgs::new()
        .loss(Loss::MeanSquaredError)
        .output_metrics("cls", &["acuracy"]));
    assert!(e.contains("unknown metric"), "{e}");

    let mut model = m();
    model
        .compile_with(
            SGD::default(),
            CompileArgs::new()
                .losses([Some(Loss::MeanSquaredError), None])
                .output_metrics("cls", &["accuracy"]),
        )
        .unwrap();
    let fx = fixtures();
    let case = &fx["cases"][0];
    let (xs, ys) = (arrays(&case["inputs"]), arrays(&case["targets"]));
    let quiet = || FitArgs::default().verbose(Verbose::Silent);
    // One input missing, one target missing, a target of the wrong shape.
    let e = model.fit(&xs[..1], &ys, quiet()).unwrap_err().to_string();
    assert!(e.contains("takes 2 input(s)"), "{e}");
    let e = model.fit(&xs, &ys[..1], quiet()).unwrap_err().to_string();
    assert!(e.contains("2 output(s) (reg, cls)"), "{e}");
    let wide = ArrayData::from_shape_vec(&[24, 3], vec![0f32; 72]).unwrap();
    let e = model
        .fit(&xs, &[&wide, &ys[1]], quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("y[0]") && e.contains("\"reg\""), "{e}");
    let short = ArrayData::from_shape_vec(&[3, 2], vec![0f32; 6]).unwrap();
    let e = model
        .fit(&[&xs[0], &short], &ys, quiet())
        .unwrap_err()
        .to_string();
    assert!(e.contains("x[1]") && e.contains("samples"), "{e}");
    let mut cw = std::collections::BTreeMap::new();
    cw.insert(0, 2.0);
    let e = model
        .fit(&xs, &ys, quiet().class_weight(cw))
        .unwrap_err()
        .to_string();
    assert!(e.contains("single output"), "{e}");
    // An output without a loss: only the other one's loss is the total, no `_loss` keys.
    let h = model.fit(&xs, &ys, quiet()).unwrap();
    let keys: Vec<&String> = h.history.keys().collect();
    assert_eq!(keys, ["cls_accuracy", "loss"]);
}
