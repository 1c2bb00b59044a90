//! kiln::nn against Keras 3 and JAX (tests/data/training_fixtures.json, written by
//! scripts/gen_training_fixtures.py): optimizer trajectories, schedules, losses, metrics,
//! jax.grad of composite functions; and models: fit's checks, determinism, engines, memory.

use kiln::nn::*;
use kiln::{
    autodiff, convert_to_tensor, ops, ArrayData, DType, Device, KilnError, Tensor, Variable,
};
use serde_json::Value;
use std::collections::BTreeMap;

fn fixtures() -> Value {
    crate::common::fixture("training_fixtures.json")
}

use crate::common::f64s;

fn shape(v: &Value) -> Vec<usize> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as usize)
        .collect()
}

fn t32(shape: &[usize], v: &[f64]) -> Tensor {
    let v: Vec<f32> = v.iter().map(|x| *x as f32).collect();
    convert_to_tensor(
        &ArrayData::from_shape_vec(shape, v).unwrap(),
        None,
        &Device::Cpu,
    )
    .unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn optimizer(name: &str) -> Optimizer {
    match name {
        "sgd" => SGD::default().into(),
        "sgd_momentum" => SGD::new(0.05).momentum(0.9).into(),
        "sgd_nesterov" => SGD::new(0.05).momentum(0.9).nesterov(true).into(),
        "adam" => Adam::new(0.05).into(),
        "adam_amsgrad" => Adam::new(0.05).amsgrad(true).into(),
        "adamw" => AdamW::new(0.05).into(),
        "rmsprop" => RMSprop::new(0.01).into(),
        "rmsprop_centered_momentum" => RMSprop::new(0.01).momentum(0.5).centered(true).into(),
        "adagrad" => Adagrad::new(0.1).into(),
        "adamax" => Adamax::new(0.05).into(),
        "nadam" => Nadam::new(0.05).into(),
        "lion" => Lion::new(0.01).into(),
        "adam_clipnorm" => Optimizer::from(Adam::new(0.05)).clipnorm(1.0),
        "adam_clipvalue" => Optimizer::from(Adam::new(0.05)).clipvalue(0.5),
        "adam_global_clipnorm" => Optimizer::from(Adam::new(0.05)).global_clipnorm(1.0),
        "sgd_weight_decay" => Optimizer::from(SGD::new(0.05)).weight_decay(0.1),
        "adam_ema" => Optimizer::from(Adam::new(0.05))
            .use_ema(true)
            .ema_momentum(0.9),
        "sgd_exponential_decay" => SGD::new(LearningRate::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 3,
            decay_rate: 0.5,
            staircase: false,
        })
        .into(),
        other => panic!("no optimizer {other}"),
    }
}

/// Each optimizer's 12 steps match Keras's to 1e-5.
#[test]
fn optimizer_trajectories_match_keras() {
    let f = fixtures();
    let (w0, a, b) = (
        f64s(&f["optimizer_w0"]),
        f64s(&f["optimizer_a"]),
        f64s(&f["optimizer_b"]),
    );
    let mut checked = 0;
    for (name, traj) in f["optimizers"].as_object().unwrap() {
        let mut opt = optimizer(name);
        let mut v = Variable::new("w", &t32(&[4], &w0), None).unwrap();
        let steps: Vec<Vec<f64>> = traj.as_array().unwrap().iter().map(f64s).collect();
        let n = if name == "adam_ema" {
            steps.len() - 1
        } else {
            steps.len()
        };
        for (s, want) in steps.iter().take(n).enumerate() {
            let w = v.value().to_vec::<f32>().unwrap();
            let g: Vec<f64> = (0..4)
                .map(|i| {
                    let (w, a, b) = (w[i], a[i] as f32, b[i] as f32);
                    (2.0 * a * (a * w - b)) as f64
                })
                .collect();
            opt.apply(&mut [&mut v], &[t32(&[4], &g)]).unwrap();
            let got = v.value().to_f64_vec().unwrap();
            for i in 0..4 {
                assert!(
                    close(got[i], want[i], 1e-5),
                    "{name} step {}: {got:?} vs Keras {want:?}",
                    s + 1
                );
            }
        }
        if name == "adam_ema" {
            opt.finalize(&mut [&mut v]).unwrap();
            let got = v.value().to_f64_vec().unwrap();
            let want = steps.last().unwrap();
            for i in 0..4 {
                assert!(
                    close(got[i], want[i], 1e-5),
                    "{name} EMA: {got:?} vs Keras {want:?}"
                );
            }
        }
        checked += 1;
    }
    assert!(checked >= 18);
}

#[test]
fn schedules_match_keras() {
    let f = fixtures();
    let steps: Vec<u64> = f["schedule_steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_u64().unwrap())
        .collect();
    let sched = |name: &str| match name {
        "exponential" => LearningRate::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 4,
            decay_rate: 0.5,
            staircase: false,
        },
        "exponential_staircase" => LearningRate::ExponentialDecay {
            initial_learning_rate: 0.1,
            decay_steps: 4,
            decay_rate: 0.5,
            staircase: true,
        },
        "piecewise" => LearningRate::PiecewiseConstantDecay {
            boundaries: vec![3, 7],
            values: vec![1.0, 0.5, 0.1],
        },
        "cosine" => LearningRate::CosineDecay {
            initial_learning_rate: 0.1,
            decay_steps: 10,
            alpha: 0.1,
            warmup_target: None,
            warmup_steps: 0,
        },
        "cosine_warmup" => LearningRate::CosineDecay {
            initial_learning_rate: 0.0,
            decay_steps: 10,
            alpha: 0.0,
            warmup_target: Some(0.2),
            warmup_steps: 4,
        },
        "inverse_time" => LearningRate::InverseTimeDecay {
            initial_learning_rate: 0.1,
            decay_steps: 2,
            decay_rate: 0.5,
            staircase: false,
        },
        "inverse_time_staircase" => LearningRate::InverseTimeDecay {
            initial_learning_rate: 0.1,
            decay_steps: 2,
            decay_rate: 0.5,
            staircase: true,
        },
        other => panic!("{other}"),
    };
    for (name, want) in f["schedules"].as_object().unwrap() {
        let s = sched(name);
        for (st, w) in steps.iter().zip(f64s(want)) {
            assert!(
                close(s.at(*st), w, 1e-6),
                "{name} at {st}: {} vs Keras {w}",
                s.at(*st)
            );
        }
    }
}

fn loss_named(name: &str) -> Loss {
    match name {
        "huber_delta_0.5" => Loss::Huber { delta: 0.5 },
        "binary_crossentropy_logits" => Loss::binary_crossentropy(true),
        "binary_crossentropy_smoothing" => Loss::BinaryCrossentropy {
            from_logits: false,
            label_smoothing: 0.1,
        },
        "categorical_crossentropy_logits" => Loss::categorical_crossentropy(true),
        "categorical_crossentropy_smoothing" => Loss::CategoricalCrossentropy {
            from_logits: true,
            label_smoothing: 0.2,
        },
        "sparse_categorical_crossentropy_logits" => Loss::sparse_categorical_crossentropy(true),
        other => Loss::get(other).unwrap(),
    }
}

/// Every loss against Keras, plain and with sample weights, at saturated probabilities and
/// logits of +-100; and finite gradients there.
#[test]
fn losses_match_keras() {
    let f = fixtures();
    let sw = t32(&[4], &f64s(&f["loss_sample_weight"]));
    for c in f["losses"].as_array().unwrap() {
        let name = c["name"].as_str().unwrap();
        let yshape = shape(&c["y_true_shape"]);
        let y = if c["y_true_int"].as_bool().unwrap() {
            let v: Vec<i32> = f64s(&c["y_true"]).iter().map(|x| *x as i32).collect();
            convert_to_tensor(
                &ArrayData::from_shape_vec(&yshape, v).unwrap(),
                None,
                &Device::Cpu,
            )
            .unwrap()
        } else {
            t32(&yshape, &f64s(&c["y_true"]))
        };
        let p = t32(&shape(&c["y_pred_shape"]), &f64s(&c["y_pred"]));
        let loss = loss_named(name);
        for (w, key) in [(None, "value"), (Some(&sw), "weighted")] {
            let want = c[key].as_f64().unwrap();
            let got = loss.compute(&y, &p, w).unwrap().to_f64_vec().unwrap()[0];
            assert!(
                close(got, want, 2e-5),
                "{name} {key}: {got} vs Keras {want}"
            );
        }
        let g = autodiff::grad(|q| loss.compute(&y, &q[0], None), &[&p]).unwrap();
        assert!(
            g[0].to_f64_vec().unwrap().iter().all(|v| v.is_finite()),
            "{name}: non-finite gradient"
        );
    }
}

#[test]
fn metrics_match_keras() {
    let f = fixtures();
    let mi = &f["metric_inputs"];
    let scores = t32(&[40, 1], &f64s(&mi["scores"]));
    let labels = t32(&[40, 1], &f64s(&mi["labels"]));
    let rows = |t: &Tensor, a: isize, b: isize| {
        ops::strided_slice(t, &[ops::SliceArg::range(a, b)]).unwrap()
    };
    let kinds = [
        ("auc", MetricKind::Auc { pr: false }),
        ("pr_auc", MetricKind::Auc { pr: true }),
        ("precision", MetricKind::Precision),
        ("recall", MetricKind::Recall),
        ("binary_accuracy", MetricKind::BinaryAccuracy),
    ];
    for (name, kind) in kinds {
        let mut m = Metric::new(name, kind);
        m.update_state(&rows(&labels, 0, 25), &rows(&scores, 0, 25), None)
            .unwrap();
        m.update_state(&rows(&labels, 25, 40), &rows(&scores, 25, 40), None)
            .unwrap();
        let want = f["metrics"][name].as_f64().unwrap();
        assert!(
            close(m.result(), want, 1e-5),
            "{name}: {} vs Keras {want}",
            m.result()
        );
    }
    let (rt, rp) = (
        t32(&[4, 3], &f64s(&mi["reg_true"])),
        t32(&[4, 3], &f64s(&mi["reg_pred"])),
    );
    let mut r2 = Metric::new("r2_score", MetricKind::R2);
    r2.update_state(&rows(&rt, 0, 2), &rows(&rp, 0, 2), None)
        .unwrap();
    r2.update_state(&rows(&rt, 2, 4), &rows(&rp, 2, 4), None)
        .unwrap();
    let want = f["metrics"]["r2_score"].as_f64().unwrap();
    assert!(
        close(r2.result(), want, 1e-5),
        "r2: {} vs {want}",
        r2.result()
    );
    // The classification metrics on the loss fixtures' inputs.
    let loss_case = |n: &str| {
        f["losses"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == n)
            .unwrap()
            .clone()
    };
    let ce = loss_case("categorical_crossentropy");
    let onehot = t32(&[4, 3], &f64s(&ce["y_true"]));
    let prob = t32(&[4, 3], &f64s(&ce["y_pred"]));
    let lg = loss_case("sparse_categorical_crossentropy_logits");
    let sparse = t32(&[4], &f64s(&lg["y_true"]));
    let logits = t32(&[4, 3], &f64s(&lg["y_pred"]));
    for (name, kind, y, p) in [
        (
            "categorical_accuracy",
            MetricKind::CategoricalAccuracy,
            &onehot,
            &prob,
        ),
        (
            "sparse_categorical_accuracy",
            MetricKind::SparseCategoricalAccuracy,
            &sparse,
            &logits,
        ),
        (
            "top_k_categorical_accuracy_k2",
            MetricKind::TopK(2),
            &onehot,
            &logits,
        ),
        (
            "sparse_top_k_categorical_accuracy_k2",
            MetricKind::SparseTopK(2),
            &sparse,
            &logits,
        ),
    ] {
        let mut m = Metric::new(name, kind);
        m.update_state(y, p, None).unwrap();
        let want = f["metrics"][name].as_f64().unwrap();
        assert!(
            close(m.result(), want, 1e-6),
            "{name}: {} vs Keras {want}",
            m.result()
        );
    }
}

fn t64(shape: &[usize], v: &[f64]) -> Tensor {
    convert_to_tensor(
        &ArrayData::from_shape_vec(shape, v.to_vec()).unwrap(),
        Some(DType::Float64),
        &Device::Cpu,
    )
    .unwrap()
}

/// jax.grad of a dozen composite functions, in float64, on every engine.
#[test]
fn composite_gradients_match_jax() {
    let f = fixtures();
    let idx = |v: &[i64]| {
        convert_to_tensor(
            &ArrayData::from(v.to_vec()),
            Some(DType::Int64),
            &Device::Cpu,
        )
        .unwrap()
    };
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new().backend(Some(engine)).enter();
        for c in f["grads"].as_array().unwrap() {
            let name = c["name"].as_str().unwrap();
            let shapes: Vec<Vec<usize>> =
                c["shapes"].as_array().unwrap().iter().map(shape).collect();
            let args: Vec<Tensor> = c["args"]
                .as_array()
                .unwrap()
                .iter()
                .zip(&shapes)
                .map(|(a, s)| t64(s, &f64s(a)).to_backend(engine).unwrap())
                .collect();
            let refs: Vec<&Tensor> = args.iter().collect();
            let labels = idx(&[0, 2, 1, 1, 0]).to_backend(engine).unwrap();
            let rows = idx(&[2, 0, 0]).to_backend(engine).unwrap();
            let (value, grads) = autodiff::value_and_grad(
                |p| -> kiln::Result<Tensor> {
                    use ops::*;
                    Ok(match name {
                        "mlp_cross_entropy" => {
                            let h = tanh(&add(&matmul(&p[0], &p[1])?, &p[2])?)?;
                            let ls = log_softmax(&h, -1)?;
                            let picked = take_along_axis(&ls, &expand_dims(&labels, -1)?, 1)?;
                            negative(&mean(&picked, None, false)?)?
                        }
                        "layer_norm" => {
                            let m = mean(&p[0], Some(&[-1]), true)?;
                            let v = var(&p[0], Some(&[-1]), true)?;
                            let n = divide(&subtract(&p[0], &m)?, &sqrt(&add(&v, 1e-5)?)?)?;
                            sum(&square(&multiply(&n, &p[1])?)?, None, false)?
                        }
                        "bias_broadcast" => {
                            let w = arange(0.0, 4.0, 1.0, Some(DType::Float64), None)?
                                .to_backend(engine)?;
                            sum(
                                &multiply(&sigmoid(&add(&p[0], &expand_dims(&p[1], 0)?)?)?, &w)?,
                                None,
                                false,
                            )?
                        }
                        "softmax_attention" => {
                            let q = matmul(&p[0], &p[1])?;
                            let s = softmax(
                                &divide(&matmul_transposed(&q, &q, false, true)?, 2.0)?,
                                -1,
                            )?;
                            sum(&matmul(&s, &q)?, None, false)?
                        }
                        "gelu_mse" => mean(
                            &square(&subtract(&gelu(&matmul(&p[0], &p[1])?, true)?, 0.5)?)?,
                            None,
                            false,
                        )?,
                        "logsumexp_max" => add(
                            &sum(&logsumexp(&p[0], Some(&[0]), false)?, None, false)?,
                            &sum(&max(&p[0], Some(&[1]), false)?, None, false)?,
                        )?,
                        "std_prod" => {
                            let row0 = strided_slice(&p[0], &[SliceArg::range(0, 1)])?;
                            add(
                                &sum(&std(&p[0], Some(&[1]), false)?, None, false)?,
                                &prod(&row0, None, false)?,
                            )?
                        }
                        "clip_where" => {
                            let c = square(&clip(&p[0], -1.0, 0.7)?)?;
                            sum(
                                &r#where(&greater(&p[0], 0.0)?, &c, &exp(&p[0])?)?,
                                None,
                                false,
                            )?
                        }
                        "cumsum_power" => {
                            sum(&cumsum(&power(&abs(&p[0])?, 1.5)?, Some(1))?, None, false)?
                        }
                        "matmul_transposed" => add(
                            &sum(
                                &matmul(&matmul_transposed(&p[0], &p[0], true, false)?, &p[1])?,
                                None,
                                false,
                            )?,
                            &sum(
                                &square(&matmul_transposed(&p[1], &p[0], true, true)?)?,
                                None,
                                false,
                            )?,
                        )?,
                        "elu_softplus" => sum(
                            &add(
                                &multiply(&elu(&p[0], 1.0)?, &softplus(&p[0])?)?,
                                &silu(&p[0])?,
                            )?,
                            None,
                            false,
                        )?,
                        "take_concat" => {
                            let even = strided_slice(&p[0], &[SliceArg::new(None, None, 2)])?;
                            let one = strided_slice(&p[0], &[SliceArg::range(1, 2)])?;
                            let z = concatenate(&[&even, &one], 0)?;
                            sum(&matmul(&take(&z, &rows, Some(0))?, &p[1])?, None, false)?
                        }
                        other => panic!("no composite {other}"),
                    })
                },
                &refs,
            )
            .unwrap();
            let want = c["value"].as_f64().unwrap();
            let got = value.to_f64_vec().unwrap()[0];
            assert!(
                close(got, want, 1e-9),
                "{engine} {name}: value {got} vs JAX {want}"
            );
            for (i, (g, w)) in grads.iter().zip(c["grads"].as_array().unwrap()).enumerate() {
                let (g, w) = (g.to_f64_vec().unwrap(), f64s(w));
                for (a, b) in g.iter().zip(&w) {
                    assert!(
                        close(*a, *b, 1e-8),
                        "{engine} {name}: d/d arg {i}: {g:?} vs JAX {w:?}"
                    );
                }
            }
        }
    }
}

// ---- models ---------------------------------------------------------------------------

fn blobs(n: usize, seed: u64) -> (ArrayData, ArrayData) {
    // Three separable clusters in 4-d.
    let x = ops::random_normal(&[n, 4], 0.0, 0.3, Some(DType::Float64), seed, None).unwrap();
    let mut xv = x.to_f64_vec().unwrap();
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 3;
        xv[i * 4 + c] += 2.0;
        y.push(c as i64);
    }
    (
        ArrayData::from_shape_vec(&[n, 4], xv).unwrap(),
        ArrayData::from_shape_vec(&[n], y).unwrap(),
    )
}

fn mlp(seed: u64) -> Sequential {
    let mut m = Sequential::new()
        .seed(seed)
        .add(Input::new(&[4]))
        .add(Dense::new(16).activation("relu"))
        .add(Dropout::new(0.1))
        .add(Dense::new(3));
    m.compile(
        Adam::new(0.01),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )
    .unwrap();
    m
}

fn quiet() -> FitArgs {
    FitArgs::default().verbose(Verbose::Silent)
}

#[test]
fn fit_learns_and_reports_keras_logs() {
    let (x, y) = blobs(300, 1);
    let mut m = mlp(3);
    let h = m
        .fit(&x, &y, quiet().epochs(8).validation_split(0.2))
        .unwrap();
    assert_eq!(h.epoch, (0..8).collect::<Vec<_>>());
    for k in ["loss", "accuracy", "val_loss", "val_accuracy"] {
        assert_eq!(
            h.get(k).map(|v| v.len()),
            Some(8),
            "{k}: {:?}",
            h.history.keys()
        );
    }
    assert!(h.get("val_accuracy").unwrap()[7] > 0.95, "{h:?}");
    assert!(h.get("loss").unwrap()[7] < h.get("loss").unwrap()[0]);
    let p = m.predict(&x, 64).unwrap();
    assert_eq!(p.shape(), &[300, 3]);
    let e = m.evaluate(&x, &y, 32).unwrap();
    assert!(e["accuracy"] > 0.95, "{e:?}");
    let s = m.summary().unwrap();
    assert!(
        s.contains("dense (Dense)")
            && s.contains("dropout (Dropout)")
            && s.contains("dense_1 (Dense)"),
        "{s}"
    );
    assert!(s.contains("Total params: 131 (524.00 B)"), "{s}");
    // Weights out and back in give the same predictions.
    let w = m.get_weights().unwrap();
    let mut m2 = mlp(99);
    m2.build(&[4]).unwrap();
    m2.set_weights(&w).unwrap();
    assert_eq!(
        m2.predict(&x, 300).unwrap().to_f64_vec().unwrap(),
        m.predict(&x, 300).unwrap().to_f64_vec().unwrap()
    );
    // train_on_batch returns the batch's loss and metrics.
    let xb = convert_to_tensor(&x, None, &Device::Cpu).unwrap();
    let yb = convert_to_tensor(&y, None, &Device::Cpu).unwrap();
    let logs = m.train_on_batch(&xb, &yb).unwrap();
    assert!(
        logs.contains_key("loss") && logs.contains_key("accuracy"),
        "{logs:?}"
    );
}

/// Keras 3's bookkeeping: the epoch loss weights each batch by its size, compiled metrics
/// ignore sample and class weights, `evaluate` counts the regularizers, sample weights
/// broadcast over per-sample losses of any rank, `"accuracy"` is resolved by shapes.
#[test]
fn keras_bookkeeping() {
    // 33 samples in batches of 32: with lr 0 the epoch loss is the sample-weighted mean.
    let (x, y) = blobs(33, 9);
    let mut m = Sequential::new()
        .seed(1)
        .add(Input::new(&[4]))
        .add(Dense::new(3));
    m.compile(
        SGD::new(0.0),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )
    .unwrap();
    let h = m.fit(&x, &y, quiet().shuffle(false)).unwrap();
    let e = m.evaluate(&x, &y, 33).unwrap();
    assert!(
        (h.get("loss").unwrap()[0] - e["loss"]).abs() < 1e-6,
        "{h:?} vs {e:?}"
    );
    // Class weights change the loss, not the compiled accuracy.
    let mut cw = BTreeMap::new();
    cw.insert(1usize, 7.0);
    let hw = m
        .fit(&x, &y, quiet().shuffle(false).class_weight(cw))
        .unwrap();
    assert_eq!(
        hw.get("accuracy").unwrap()[0],
        h.get("accuracy").unwrap()[0]
    );
    assert!(hw.get("loss").unwrap()[0] != h.get("loss").unwrap()[0]);
    // evaluate counts an L2 penalty as training does.
    let mut r = Sequential::new()
        .seed(1)
        .add(Input::new(&[4]))
        .add(Dense::new(3).kernel_regularizer(Regularizer::L2(1.0)));
    r.compile(
        SGD::new(0.0),
        Loss::sparse_categorical_crossentropy(true),
        &[],
    )
    .unwrap();
    let hr = r
        .fit(&x, &y, quiet().shuffle(false).batch_size(33))
        .unwrap();
    let er = r.evaluate(&x, &y, 33).unwrap();
    assert!(
        (hr.get("loss").unwrap()[0] - er["loss"]).abs() < 1e-5,
        "{hr:?} vs {er:?}"
    );
    // Sample weights on [B, T] per-sample losses weigh samples, not time steps.
    let yt = t32(&[2, 3, 1], &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    let yp = t32(&[2, 3, 1], &[0.0; 6]);
    let w = t32(&[2], &[1.0, 0.0]);
    let l = Loss::MeanSquaredError
        .compute(&yt, &yp, Some(&w))
        .unwrap()
        .to_f64_vec()
        .unwrap()[0];
    assert!((l - (1.0 + 4.0 + 9.0) / 6.0).abs() < 1e-6, "{l}");
    // "accuracy" by shapes: a multi-label [B, 5] output with BCE is categorical accuracy.
    let acc = Metric::get("accuracy", &[8, 5], &[None, Some(5)]).unwrap();
    assert_eq!(acc.kind(), &MetricKind::CategoricalAccuracy);
    let acc = Metric::get("accuracy", &[8], &[None, Some(5)]).unwrap();
    assert_eq!(acc.kind(), &MetricKind::SparseCategoricalAccuracy);
    let acc = Metric::get("accuracy", &[8, 1], &[None, Some(1)]).unwrap();
    assert_eq!(acc.kind(), &MetricKind::BinaryAccuracy);
}

#[test]
fn same_seed_same_bits_and_engines_agree() {
    let (x, y) = blobs(120, 2);
    let run = |engine| {
        let _s = kiln::precision::Scope::new().backend(Some(engine)).enter();
        let mut m = mlp(5);
        let h = m
            .fit(&x, &y, quiet().epochs(3).batch_size(16).seed(7))
            .unwrap();
        (
            m.get_weights()
                .unwrap()
                .iter()
                .flat_map(|a| a.to_f64_vec())
                .collect::<Vec<_>>(),
            h.get("loss").unwrap().to_vec(),
        )
    };
    let engines = crate::common::engines();
    let (w1, l1) = run(engines[0]);
    let (w2, l2) = run(engines[0]);
    assert_eq!(w1, w2, "same seed, same engine: bit-identical weights");
    assert_eq!(l1, l2);
    for e in &engines[1..] {
        let (we, le) = run(*e);
        for (a, b) in we.iter().zip(&w1) {
            assert!((a - b).abs() < 1e-4, "{e}: {a} vs {b}");
        }
        for (a, b) in le.iter().zip(&l1) {
            assert!((a - b).abs() < 1e-4, "{e}: loss {a} vs {b}");
        }
    }
}

fn fit_err(x: &ArrayData, y: &ArrayData, m: &mut Sequential, args: FitArgs) -> String {
    m.fit(x, y, args).unwrap_err().to_string()
}

#[test]
fn bad_fit_input_is_refused_before_the_first_step() {
    let (x, y) = blobs(30, 3);
    let mut m = mlp(1);
    let short = ArrayData::from_shape_vec(&[29], vec![0i64; 29]).unwrap();
    assert!(fit_err(&x, &short, &mut m, quiet()).contains("30 samples but `y` has 29"));
    let one_d = ArrayData::from_shape_vec(&[30], vec![0.5f64; 30]).unwrap();
    let e = fit_err(
        &one_d,
        &y,
        &mut Sequential::new().add(Dense::new(3)),
        quiet(),
    );
    assert!(e.contains("not compiled"), "{e}");
    let mut bare = Sequential::new().add(Dense::new(3));
    bare.compile(
        Adam::default(),
        Loss::sparse_categorical_crossentropy(true),
        &[],
    )
    .unwrap();
    let e = fit_err(&one_d, &y, &mut bare, quiet());
    assert!(e.contains("1-d") && e.contains("[n, 1]"), "{e}");
    let e = fit_err(&one_d, &y, &mut m, quiet());
    assert!(e.contains("one axis short"), "{e}");
    let neg = ArrayData::from_shape_vec(
        &[30],
        (0..30)
            .map(|i| if i == 4 { -1i64 } else { 0 })
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let e = fit_err(&x, &neg, &mut m, quiet());
    assert!(
        e.contains("label -1 at sample 4") && e.contains("[0, 3)"),
        "{e}"
    );
    let big = ArrayData::from_shape_vec(&[30], vec![3i64; 30]).unwrap();
    assert!(fit_err(&x, &big, &mut m, quiet()).contains("label 3 at sample 0"));
    let mut xv = x.to_f64_vec();
    xv[9] = f64::NAN;
    let xn = ArrayData::from_shape_vec(&[30, 4], xv).unwrap();
    let e = fit_err(&xn, &y, &mut m, quiet());
    assert!(
        e.contains("NaN at sample 2") && e.contains("check_finite(false)"),
        "{e}"
    );
    // A loss that does not fit the output: one-hot labels for a 3-class sparse model are fine
    // shape-wise only for categorical losses.
    let mut mse = Sequential::new().add(Input::new(&[4])).add(Dense::new(3));
    mse.compile(SGD::default(), Loss::MeanSquaredError, &[])
        .unwrap();
    let e = fit_err(&x, &y, &mut mse, quiet());
    assert!(e.contains("sparse_categorical_crossentropy"), "{e}");
    // All-NaN data with the check off: the first step's loss stops training, named.
    let nan = ArrayData::from_shape_vec(&[30, 4], vec![f64::NAN; 120]).unwrap();
    let e = m.fit(&nan, &y, quiet().check_finite(false)).unwrap_err();
    assert!(
        matches!(
            e,
            KilnError::NonFinite {
                epoch: 0,
                batch: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(e.to_string().contains("the loss"), "{e}");
}

/// A dead relu (every pre-activation exactly 0) trains: relu'(0) is 0, a finite gradient,
/// so nothing is reported non-finite.
#[test]
fn a_dead_relu_trains_without_a_non_finite_report() {
    let x = ArrayData::from_shape_vec(&[4, 1], vec![0.0f64; 4]).unwrap();
    let y = ArrayData::from_shape_vec(&[4, 1], vec![1.0f64; 4]).unwrap();
    let mut m = Sequential::new()
        .add(Input::new(&[1]))
        .add(
            Dense::new(1)
                .activation("relu")
                .kernel_initializer(Initializer::Zeros),
        )
        .add(Dense::new(1));
    m.compile(SGD::default(), Loss::MeanSquaredError, &[])
        .unwrap();
    m.build(&[1]).unwrap();
    let h = m.fit(&x, &y, quiet().epochs(1));
    assert!(h.is_ok(), "relu at 0 has gradient 0, finite: {h:?}");
}

#[test]
fn graphs_do_not_grow_over_training() {
    let (x, y) = blobs(64, 4);
    let mut m = mlp(2);
    m.fit(&x, &y, quiet().epochs(1)).unwrap();
    let before = autodiff::live_nodes();
    m.fit(&x, &y, quiet().epochs(5)).unwrap();
    // Other tests run alongside and hold graphs of their own; 5 epochs' leaks would be
    // thousands of nodes.
    assert!(
        autodiff::live_nodes() <= before + 200,
        "{before} -> {}",
        autodiff::live_nodes()
    );
    for v in m.variables() {
        assert!(!autodiff::is_tracked(v.value()));
    }
}

#[test]
fn mixed_policies_compute_in_16_bits_with_float32_variables() {
    let (x, y) = blobs(90, 5);
    for name in ["mixed_bfloat16", "mixed_float16"] {
        let policy = DTypePolicy::new(name).unwrap();
        let mut m = Sequential::new()
            .seed(1)
            .dtype_policy(policy)
            .add(Input::new(&[4]))
            .add(Dense::new(8).activation("relu"))
            .add(Dense::new(3));
        m.compile(
            Adam::new(0.01),
            Loss::sparse_categorical_crossentropy(true),
            &["accuracy"],
        )
        .unwrap();
        let h = m.fit(&x, &y, quiet().epochs(10)).unwrap();
        assert!(m.variables().iter().all(|v| v.dtype() == DType::Float32));
        assert_eq!(m.predict(&x, 32).unwrap().dtype(), policy.compute_dtype());
        assert!(h.get("accuracy").unwrap()[9] > 0.9, "{name}: {h:?}");
    }
}

#[test]
fn dropout_only_while_training_and_weights_frozen_when_asked() {
    let x = ops::ones(&[200, 10], None, None).unwrap();
    let mut m = Sequential::new()
        .seed(3)
        .add(Input::new(&[10]))
        .add(Dropout::new(0.5));
    m.build(&[10]).unwrap();
    assert_eq!(
        m.call(&x, false).unwrap().to_f64_vec().unwrap(),
        vec![1.0; 2000]
    );
    let t = m.call(&x, true).unwrap().to_f64_vec().unwrap();
    let zeros = t.iter().filter(|v| **v == 0.0).count();
    assert!(t.iter().all(|v| *v == 0.0 || *v == 2.0));
    assert!(
        (800..1200).contains(&zeros),
        "{zeros} of 2000 dropped at rate 0.5"
    );
    let (x, y) = blobs(60, 6);
    let mut m = mlp(4);
    m.build(&[4]).unwrap();
    m.layers_mut()[0].set_trainable(false);
    let before = m.layers()[0].variables()[0].value().to_f64_vec().unwrap();
    m.fit(&x, &y, quiet().epochs(2)).unwrap();
    assert_eq!(
        m.layers()[0].variables()[0].value().to_f64_vec().unwrap(),
        before
    );
    assert!(m.summary().unwrap().contains("Non-trainable params: 80"));
}

struct Stopper(Vec<usize>);
impl Callback for Stopper {
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        ctl: &mut TrainControl,
    ) -> kiln::Result<()> {
        assert!(logs.contains_key("loss"));
        self.0.push(epoch);
        ctl.stop_training = epoch == 1;
        Ok(())
    }
}

#[test]
fn callbacks_see_epochs_and_can_stop() {
    let (x, y) = blobs(60, 7);
    let mut m = mlp(1).callback(Stopper(vec![]));
    let h = m.fit(&x, &y, quiet().epochs(10)).unwrap();
    assert_eq!(h.epoch, vec![0, 1]);
    // class_weight and sample_weight change the loss.
    let mut cw = BTreeMap::new();
    cw.insert(0usize, 5.0);
    let mut a = mlp(8);
    let mut b = mlp(8);
    let la = a
        .fit(&x, &y, quiet().shuffle(false))
        .unwrap()
        .get("loss")
        .unwrap()[0];
    let lb = b
        .fit(&x, &y, quiet().shuffle(false).class_weight(cw))
        .unwrap()
        .get("loss")
        .unwrap()[0];
    assert!(lb > la * 1.3, "{la} vs {lb}");
}

#[test]
fn initializers_have_keras_statistics() {
    let n = 200 * 300;
    let stats = |init: Initializer| {
        let v = init.sample(&[200, 300], 1).unwrap().to_f64_vec();
        let m = v.iter().sum::<f64>() / n as f64;
        let s = (v.iter().map(|x| (x - m) * (x - m)).sum::<f64>() / n as f64).sqrt();
        (m, s, v.iter().fold(0.0f64, |a, x| a.max(x.abs())))
    };
    let (m, s, mx) = stats(Initializer::GlorotUniform);
    let l = (6.0f64 / 500.0).sqrt();
    assert!(
        m.abs() < 1e-3 && (s - l / 3f64.sqrt()).abs() < 1e-3 && mx <= l,
        "{m} {s} {mx}"
    );
    let (_, s, mx) = stats(Initializer::HeNormal);
    assert!(
        (s - (2.0f64 / 200.0).sqrt()).abs() < 2e-3
            && mx <= 2.0 * (2.0f64 / 200.0).sqrt() / 0.8796 + 1e-9,
        "{s} {mx}"
    );
    let (_, s, _) = stats(Initializer::get("random_normal").unwrap());
    assert!((s - 0.05).abs() < 1e-3);
    let q = Initializer::Orthogonal { gain: 1.0 }
        .sample(&[6, 4], 2)
        .unwrap()
        .to_f64_vec();
    for i in 0..4 {
        for j in 0..4 {
            let d: f64 = (0..6).map(|r| q[r * 4 + i] * q[r * 4 + j]).sum();
            assert!(
                (d - f64::from(i == j)).abs() < 1e-12,
                "Q^T Q [{i},{j}] = {d}"
            );
        }
    }
    assert_eq!(
        Initializer::GlorotUniform
            .sample(&[3, 3], 9)
            .unwrap()
            .to_f64_vec(),
        Initializer::GlorotUniform
            .sample(&[3, 3], 9)
            .unwrap()
            .to_f64_vec()
    );
}

/// The fused updates (one pass per variable) give the composed updates' bits, float32 and
/// float64, with weight decay and AMSGrad, over several steps.
#[test]
fn fused_optimizer_updates_match_the_composed_ones_bit_for_bit() {
    type Make = fn() -> Optimizer;
    let make: Vec<(&str, Make)> = vec![
        ("sgd", || SGD::new(0.1).into()),
        ("sgd_momentum", || SGD::new(0.1).momentum(0.9).into()),
        ("sgd_nesterov_decay", || {
            Optimizer::from(SGD::new(0.1).momentum(0.8).nesterov(true)).weight_decay(0.01)
        }),
        ("adam", || Adam::new(0.01).into()),
        ("adam_amsgrad", || Adam::new(0.01).amsgrad(true).into()),
        ("adamw", || AdamW::new(0.01).into()),
        ("rmsprop", || RMSprop::new(0.01).into()),
        ("rmsprop_centered_momentum", || {
            RMSprop::new(0.01).momentum(0.5).centered(true).into()
        }),
        ("rmsprop_momentum_decay", || {
            Optimizer::from(RMSprop::new(0.01).momentum(0.3)).weight_decay(0.05)
        }),
        ("adagrad", || Adagrad::new(0.1).into()),
        ("adamax", || Adamax::new(0.05).into()),
        ("nadam", || Nadam::new(0.05).into()),
        ("lion", || {
            Optimizer::from(Lion::new(0.01)).weight_decay(0.1)
        }),
    ];
    for dtype in [DType::Float32, DType::Float64] {
        for (name, f) in &make {
            let w0 = ops::random_normal(&[33, 7], 0.0, 1.0, Some(DType::Float64), 4, None).unwrap();
            let w0 = kiln::ops::cast(&w0, dtype).unwrap();
            let mut runs = Vec::new();
            for fused in [true, false] {
                let mut opt = f().fused(fused);
                let mut v = Variable::new("w", &w0, Some(dtype)).unwrap();
                for s in 0..5 {
                    let g =
                        ops::random_normal(&[33, 7], 0.0, 1.0, Some(DType::Float64), 10 + s, None)
                            .unwrap();
                    let g = kiln::ops::cast(&g, dtype).unwrap();
                    opt.apply(&mut [&mut v], &[g]).unwrap();
                }
                runs.push(v.value().to_f64_vec().unwrap());
            }
            assert_eq!(
                runs[0], runs[1],
                "{name} {dtype}: fused and composed differ"
            );
        }
    }
}

/// A finite loss whose gradient overflows is stopped and the variable named: float16
/// weights, inputs of 65000 (representable in float16), a second kernel of 10s, so the first
/// kernel's gradient is 650000, beyond float16's range, while the loss is |y| = 1.
#[test]
fn a_gradient_that_overflows_is_named() {
    let x = ArrayData::from_shape_vec(&[1, 1], vec![65000.0f64]).unwrap();
    let y = ArrayData::from_shape_vec(&[1, 1], vec![1.0f64]).unwrap();
    let mut m = Sequential::new()
        .dtype_policy(DTypePolicy::new("float16").unwrap())
        .add(Input::new(&[1]))
        .add(Dense::new(1).kernel_initializer(Initializer::Zeros))
        .add(Dense::new(1).kernel_initializer(Initializer::Constant(10.0)));
    m.compile(SGD::default(), Loss::MeanAbsoluteError, &[])
        .unwrap();
    let e = m.fit(&x, &y, quiet()).unwrap_err();
    assert!(
        matches!(
            e,
            KilnError::NonFinite {
                epoch: 0,
                batch: 0,
                ..
            }
        ),
        "{e}"
    );
    assert!(
        e.to_string().contains("the gradient of dense/kernel"),
        "{e}"
    );
}

/// Keras's dynamic loss scaling under mixed_float16 (compile wraps the optimizer): a float16
/// overflow skips the step and halves the scale until the scaled gradients fit, then finite
/// steps apply the unscaled gradients and, after `dynamic_growth_steps` of them, double it.
///
/// The model is `x @ k + b` with x = 100, k = 1, b = 0, y = 0 and MSE, under SGD with a zero
/// learning rate so every step sees the same gradient: dL/dpred = 200 * scale (cast to
/// float16 on its way back), dL/dk = 100 * that. float16's largest value is 65504, so scales
/// of 4 and more overflow dL/dk: 14 halvings from 2^15 to 2, then finite steps at 2, a
/// doubling to 4 after 3 of them, which overflows again.
#[test]
fn loss_scaling_skips_halves_and_recovers() {
    let mut m = Sequential::new()
        .dtype_policy(DTypePolicy::new("mixed_float16").unwrap())
        .add(Input::new(&[1]))
        .add(
            Dense::new(1)
                .kernel_initializer(Initializer::Ones)
                .bias_initializer(Initializer::Zeros),
        );
    m.compile(
        LossScaleOptimizer::new(SGD::new(0.0)).dynamic_growth_steps(3),
        Loss::MeanSquaredError,
        &[],
    )
    .unwrap();
    let x = t32(&[1, 1], &[100.0]);
    let y = t32(&[1, 1], &[0.0]);
    let mut scales = vec![];
    for _ in 0..19 {
        let logs = m.train_on_batch(&x, &y).unwrap();
        assert_eq!(logs["loss"], 10000.0, "the reported loss is unscaled");
        let o = m.optimizer().unwrap();
        scales.push((o.loss_scale().unwrap(), o.skipped_steps(), o.iterations()));
    }
    let mut want = vec![];
    for k in 1..=14u64 {
        want.push((32768.0 / 2f64.powi(k as i32), k, 0));
    }
    want.extend([
        (2.0, 14, 1),
        (2.0, 14, 2),
        (4.0, 14, 3),
        (2.0, 15, 3),
        (2.0, 15, 4),
    ]);
    assert_eq!(scales, want);
    assert_eq!(
        m.get_weights().unwrap()[0].to_f64_vec(),
        vec![1.0],
        "lr 0: the weight never moved"
    );
    // compile adds the scaling by itself under mixed_float16, and only there.
    let mut auto = Sequential::new()
        .dtype_policy(DTypePolicy::new("mixed_float16").unwrap())
        .add(Input::new(&[1]))
        .add(Dense::new(1));
    auto.compile(SGD::new(0.1), Loss::MeanSquaredError, &[])
        .unwrap();
    assert_eq!(auto.optimizer().unwrap().loss_scale(), Some(32768.0));
    let mut bf = Sequential::new()
        .dtype_policy(DTypePolicy::new("mixed_bfloat16").unwrap())
        .add(Input::new(&[1]))
        .add(Dense::new(1));
    bf.compile(SGD::new(0.1), Loss::MeanSquaredError, &[])
        .unwrap();
    assert_eq!(bf.optimizer().unwrap().loss_scale(), None);
}

/// Loss scaling handles gradients, not losses: a forward pass that overflows float16 (an
/// infinite loss) is still an error naming it.
#[test]
fn loss_scaling_does_not_hide_an_infinite_loss() {
    let mut m = Sequential::new()
        .dtype_policy(DTypePolicy::new("mixed_float16").unwrap())
        .add(Input::new(&[1]))
        .add(Dense::new(1).kernel_initializer(Initializer::Constant(60000.0)));
    m.compile(SGD::new(0.0), Loss::MeanSquaredError, &[])
        .unwrap();
    // pred = 60000 * 60000 overflows float16 in the forward pass: inf loss is an error.
    let x = t32(&[1, 1], &[60000.0]);
    let y = t32(&[1, 1], &[0.0]);
    let e = m.train_on_batch(&x, &y).unwrap_err();
    assert!(matches!(e, KilnError::NonFinite { .. }), "{e}");
}
