//! Keras's callbacks: EarlyStopping and ReduceLROnPlateau driven by scripted sequences
//! against Keras 3's own callbacks on the same sequences (tests/data/callback_fixtures.json,
//! written by scripts/gen_callback_fixtures.py); then in `fit`: early stopping with restored
//! weights against the best checkpoint, the learning-rate scheduler, CSVLogger's file,
//! TerminateOnNaN, ModelCheckpoint's file names, and a user-written callback.

use kiln::nn::callbacks::builtin::Mode;
use kiln::nn::*;
use kiln::{ops, ArrayData, DType, KilnError};
use serde_json::Value;

fn fixtures() -> Value {
    let p = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/callback_fixtures.json"
    );
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// A one-weight model: its weight is set to the epoch number before each epoch's end, so a
/// restored weight names the epoch it came from.
fn marker_model() -> Sequential {
    let mut m = Sequential::new()
        .add(Input::new(&[1]))
        .add(Dense::new(1).use_bias(false));
    m.compile(SGD::new(1e-3), Loss::MeanSquaredError, &[])
        .unwrap();
    m.build(&[1]).unwrap();
    m
}

fn set_marker(m: &mut Sequential, v: f64) {
    m.set_weights(&[ArrayData::from_shape_vec(&[1, 1], vec![v as f32]).unwrap()])
        .unwrap();
}

fn marker(m: &Sequential) -> f64 {
    m.get_weights().unwrap()[0].to_f64_vec()[0]
}

fn params() -> TrainParams {
    TrainParams {
        epochs: 100,
        steps: 1,
        verbose: 0,
    }
}

fn sequence(f: &Value, case: &Value) -> Vec<f64> {
    f["sequences"][case["seq"].as_str().unwrap()]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect()
}

fn mode(v: &Value) -> Mode {
    Mode::parse(v.as_str().unwrap_or("auto")).unwrap()
}

/// 32 scripted cases: the epochs run, the epoch stopped at, and the weights restored match
/// Keras's EarlyStopping exactly.
#[test]
fn early_stopping_matches_keras_on_scripted_sequences() {
    let f = fixtures();
    let cases = f["early_stopping"].as_array().unwrap();
    assert_eq!(cases.len(), 32);
    for c in cases {
        let seq = sequence(&f, c);
        let a = &c["args"];
        let monitor = c["monitor"].as_str().unwrap();
        let mut es = EarlyStopping::new()
            .monitor(monitor)
            .patience(a["patience"].as_u64().unwrap_or(0) as usize)
            .min_delta(a["min_delta"].as_f64().unwrap_or(0.0))
            .mode(mode(&a["mode"]))
            .restore_best_weights(a["restore_best_weights"].as_bool().unwrap_or(false))
            .start_from_epoch(a["start_from_epoch"].as_u64().unwrap_or(0) as usize);
        if let Some(b) = a["baseline"].as_f64() {
            es = es.baseline(b);
        }
        let mut m = marker_model();
        let mut ran = vec![];
        {
            let mut ctl = TrainControl::new(&mut m, params());
            es.on_train_begin(&mut ctl).unwrap();
        }
        for (e, v) in seq.iter().enumerate() {
            set_marker(&mut m, e as f64);
            ran.push(e);
            let mut logs = Logs::new();
            logs.insert(monitor.into(), *v);
            logs.insert("loss".into(), 1.0);
            let mut ctl = TrainControl::new(&mut m, params());
            es.on_epoch_end(e, &logs, &mut ctl).unwrap();
            if ctl.stop_training {
                break;
            }
        }
        let last = marker(&m);
        {
            let mut ctl = TrainControl::new(&mut m, params());
            es.on_train_end(&mut ctl).unwrap();
        }
        let want_ran: Vec<usize> = c["epochs_run"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap() as usize)
            .collect();
        assert_eq!(ran, want_ran, "{c}");
        assert_eq!(
            es.stopped_epoch() as u64,
            c["stopped_epoch"].as_u64().unwrap(),
            "{c}"
        );
        let restored = c["restored"].as_f64();
        assert_eq!(marker(&m), restored.unwrap_or(last), "{c}");
    }
}

/// 20 scripted cases: the learning rate after every epoch matches Keras's
/// ReduceLROnPlateau (patience, factor, cooldown, min_lr, min_delta, mode).
#[test]
fn reduce_lr_on_plateau_matches_keras_on_scripted_sequences() {
    let f = fixtures();
    let cases = f["reduce_lr_on_plateau"].as_array().unwrap();
    assert_eq!(cases.len(), 20);
    for c in cases {
        let seq = sequence(&f, c);
        let a = &c["args"];
        let monitor = c["monitor"].as_str().unwrap();
        let mut cb = ReduceLROnPlateau::new()
            .monitor(monitor)
            .mode(mode(&a["mode"]));
        if let Some(p) = a["patience"].as_u64() {
            cb = cb.patience(p as usize);
        }
        if let Some(v) = a["factor"].as_f64() {
            cb = cb.factor(v);
        }
        if let Some(v) = a["cooldown"].as_u64() {
            cb = cb.cooldown(v as usize);
        }
        if let Some(v) = a["min_lr"].as_f64() {
            cb = cb.min_lr(v);
        }
        if let Some(v) = a["min_delta"].as_f64() {
            cb = cb.min_delta(v);
        }
        let mut m = marker_model();
        let mut ctl = TrainControl::new(&mut m, params());
        cb.on_train_begin(&mut ctl).unwrap();
        let mut lrs = vec![];
        for (e, v) in seq.iter().enumerate() {
            let mut logs = Logs::new();
            logs.insert(monitor.into(), *v);
            cb.on_epoch_end(e, &logs, &mut ctl).unwrap();
            lrs.push(ctl.learning_rate().unwrap());
        }
        for (i, (g, w)) in lrs.iter().zip(c["lrs"].as_array().unwrap()).enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                (g - w).abs() <= 1e-12 * w,
                "{c}: epoch {i}: kiln {g}, Keras {w}"
            );
        }
    }
}

fn blobs(n: usize, seed: u64) -> (ArrayData, ArrayData) {
    let x = ops::random_normal(&[n, 4], 0.0, 0.8, Some(DType::Float64), seed, None).unwrap();
    let mut xv = x.to_f64_vec().unwrap();
    let mut y = Vec::with_capacity(n);
    for i in 0..n {
        let c = i % 3;
        xv[i * 4 + c] += 1.0;
        y.push(c as i64);
    }
    (
        ArrayData::from_shape_vec(&[n, 4], xv).unwrap(),
        ArrayData::from_shape_vec(&[n], y).unwrap(),
    )
}

fn model(seed: u64, lr: f64) -> Sequential {
    let mut m = Sequential::new()
        .seed(seed)
        .add(Input::new(&[4]))
        .add(Dense::new(32).activation("relu"))
        .add(Dense::new(3));
    m.compile(
        Adam::new(lr),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )
    .unwrap();
    m
}

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("kiln-callbacks-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name).to_string_lossy().into_owned()
}

/// In `fit`: an overfitting run stops early; the history ends at the stopped epoch; the
/// restored weights are exactly the ones ModelCheckpoint saved at the best val_loss.
#[test]
fn early_stopping_in_fit_restores_the_best_checkpoint() {
    let (x, y) = blobs(120, 5);
    let best = tmp("best.weights.npz");
    let mut m = model(2, 0.003)
        .callback(EarlyStopping::new().patience(3).restore_best_weights(true))
        .callback(ModelCheckpoint::new(&best).save_best_only(true));
    let h = m
        .fit(
            &x,
            &y,
            FitArgs::default()
                .epochs(200)
                .batch_size(16)
                .validation_split(0.5)
                .verbose(Verbose::Silent),
        )
        .unwrap();
    let val = h.get("val_loss").unwrap();
    let n = val.len();
    assert!(n < 200, "did not stop: {n} epochs");
    let best_epoch = (0..n).min_by(|a, b| val[*a].total_cmp(&val[*b])).unwrap();
    // Stopped patience epochs after the best (epoch 13 of 17 here: a real plateau).
    assert!(best_epoch >= 5, "{val:?}");
    assert_eq!(n - 1, best_epoch + 3, "{val:?}");
    let restored = m.get_weights().unwrap();
    let mut other = model(2, 0.003);
    other.build(&[4]).unwrap();
    other.load_weights(&best).unwrap();
    assert_eq!(other.get_weights().unwrap(), restored);
    // And they are the best epoch's: evaluating gives the best val_loss back.
    let (xv, yv) = (
        kiln::datasets::take_rows(&x, &(60..120).collect::<Vec<_>>()).unwrap(),
        kiln::datasets::take_rows(&y, &(60..120).collect::<Vec<_>>()).unwrap(),
    );
    let e = m.evaluate(&xv, &yv, 16).unwrap();
    assert!(
        (e["loss"] - val[best_epoch]).abs() < 1e-5,
        "{e:?} vs {}",
        val[best_epoch]
    );
}

/// A user-written callback reads what the scheduler set at each epoch.
#[test]
fn learning_rate_scheduler_sets_each_epochs_rate() {
    struct Seen(std::sync::Arc<std::sync::Mutex<Vec<f64>>>);
    impl Callback for Seen {
        fn on_epoch_end(
            &mut self,
            _e: usize,
            _l: &Logs,
            ctl: &mut TrainControl<'_>,
        ) -> kiln::Result<()> {
            self.0.lock().unwrap().push(ctl.learning_rate()?);
            Ok(())
        }
    }
    let seen = std::sync::Arc::new(std::sync::Mutex::new(vec![]));
    let (x, y) = blobs(30, 1);
    let mut m = model(1, 0.01)
        .callback(LearningRateScheduler::new(|e, lr| {
            if e < 2 {
                lr
            } else {
                lr * 0.5
            }
        }))
        .callback(Seen(seen.clone()));
    m.fit(
        &x,
        &y,
        FitArgs::default().epochs(5).verbose(Verbose::Silent),
    )
    .unwrap();
    let got = seen.lock().unwrap().clone();
    let want = [0.01, 0.01, 0.005, 0.0025, 0.00125];
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-15, "{got:?}");
    }
    // A schedule owns its rate: setting one is refused.
    let mut s = model(1, 0.01);
    s.compile(
        Adam::new(kiln::nn::optimizers::LearningRate::ExponentialDecay {
            initial_learning_rate: 0.01,
            decay_steps: 10,
            decay_rate: 0.9,
            staircase: false,
        }),
        Loss::sparse_categorical_crossentropy(true),
        &[],
    )
    .unwrap();
    let mut s = s.callback(LearningRateScheduler::new(|_, lr| lr));
    let e = s
        .fit(
            &x,
            &y,
            FitArgs::default().epochs(1).verbose(Verbose::Silent),
        )
        .unwrap_err();
    assert!(e.to_string().contains("schedule"), "{e}");
}

/// CSVLogger writes Keras's header and one row per epoch.
#[test]
fn csv_logger_writes_a_row_per_epoch() {
    let path = tmp("log.csv");
    let (x, y) = blobs(30, 2);
    let mut m = model(1, 0.01).callback(CSVLogger::new(&path));
    let h = m
        .fit(
            &x,
            &y,
            FitArgs::default()
                .epochs(3)
                .validation_split(0.2)
                .verbose(Verbose::Silent),
        )
        .unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert_eq!(lines.len(), 4, "{text}");
    let last: Vec<f64> = lines[3].split(',').map(|v| v.parse().unwrap()).collect();
    assert_eq!(last[0], 2.0);
    assert_eq!(last[2], h.get("loss").unwrap()[2]);
}

/// A loss that overflows stops fit with NonFinite; with TerminateOnNaN it ends cleanly with
/// the history so far (and with `raise_error(true)` the error stays).
#[test]
fn terminate_on_nan_ends_training_cleanly() {
    let x =
        ArrayData::from_shape_vec(&[8, 1], (0..8).map(|i| i as f64).collect::<Vec<_>>()).unwrap();
    let y = ArrayData::from_shape_vec(&[8, 1], (0..8).map(|i| 3.0 * i as f64).collect::<Vec<_>>())
        .unwrap();
    let make = || {
        let mut m = Sequential::new()
            .seed(0)
            .add(Input::new(&[1]))
            .add(Dense::new(1));
        m.compile(SGD::new(1e6), Loss::MeanSquaredError, &[])
            .unwrap();
        m
    };
    let args = || {
        FitArgs::default()
            .epochs(50)
            .batch_size(8)
            .verbose(Verbose::Silent)
    };
    let e = make().fit(&x, &y, args()).unwrap_err();
    assert!(matches!(e, KilnError::NonFinite { .. }), "{e}");
    let mut m = make().callback(TerminateOnNaN::new());
    let h = m.fit(&x, &y, args()).unwrap();
    assert!(!h.epoch.is_empty() && h.epoch.len() < 50, "{:?}", h.epoch);
    let mut m = make().callback(TerminateOnNaN::new().raise_error(true));
    assert!(matches!(
        m.fit(&x, &y, args()).unwrap_err(),
        KilnError::NonFinite { .. }
    ));
}

/// ModelCheckpoint's filepath names the epoch and log values as Keras's does.
#[test]
fn model_checkpoint_formats_its_filepath() {
    let dir = tmp("ckpt");
    let (x, y) = blobs(30, 3);
    let template = format!("{dir}/w-{{epoch:02d}}-{{loss:.2f}}.weights.npz");
    let mut m = model(1, 0.01).callback(ModelCheckpoint::new(&template));
    let h = m
        .fit(
            &x,
            &y,
            FitArgs::default().epochs(2).verbose(Verbose::Silent),
        )
        .unwrap();
    for (e, l) in h.get("loss").unwrap().iter().enumerate() {
        let p = format!("{dir}/w-{:02}-{l:.2}.weights.npz", e + 1);
        assert!(std::path::Path::new(&p).exists(), "{p}");
    }
    let bad = ModelCheckpoint::new(&format!("{dir}/{{nope}}.npz"));
    let e = model(1, 0.01)
        .callback(bad)
        .fit(
            &x,
            &y,
            FitArgs::default().epochs(1).verbose(Verbose::Silent),
        )
        .unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // A metric whose direction is unknown needs a mode, before the first epoch.
    let e = model(1, 0.01)
        .callback(EarlyStopping::new().monitor("val_custom"))
        .fit(
            &x,
            &y,
            FitArgs::default().epochs(1).verbose(Verbose::Silent),
        )
        .unwrap_err();
    assert!(e.to_string().contains("mode"), "{e}");
}

/// The precision monitor's counts on a case worked by hand: bfloat16 weights, `x @ k + b`
/// with x = 1, k = 1, b = 0, y = 0, MSE, SGD at 5e-4. Both gradients are about 2, so every
/// update is about 1e-3: below half the gap under 1.0 in bfloat16 (2^-9 = 0.00195), so the
/// kernel never moves and all 6 of its updates are lost; the bias starts at 0, where 1e-3 is
/// representable, so none of its updates are. The float32 shadow moves the kernel by about
/// 6 * 1e-3, which is the drift reported. With Kahan-compensated updates the kernel moves
/// (at the second step the compensated sum passes half the gap).
#[test]
fn precision_monitor_counts_updates_lost_to_rounding() {
    let run = |kahan: bool| {
        let monitor = PrecisionMonitor::new().shadow(true).verbose(0);
        let report = monitor.report();
        let mut m = Sequential::new()
            .dtype_policy(DTypePolicy::new("bfloat16").unwrap())
            .add(Input::new(&[1]))
            .add(
                Dense::new(1)
                    .kernel_initializer(Initializer::Ones)
                    .bias_initializer(Initializer::Zeros),
            )
            .callback(monitor);
        m.compile(
            Optimizer::from(SGD::new(5e-4)).kahan_summation(kahan),
            Loss::MeanSquaredError,
            &[],
        )
        .unwrap();
        let x = ArrayData::from_shape_vec(&[1, 1], vec![1.0f32]).unwrap();
        let y = ArrayData::from_shape_vec(&[1, 1], vec![0.0f32]).unwrap();
        m.fit(
            &x,
            &y,
            FitArgs::default()
                .epochs(6)
                .batch_size(1)
                .verbose(Verbose::Silent),
        )
        .unwrap();
        (report.get(), m.get_weights().unwrap()[0].to_f64_vec()[0])
    };
    let (plain, k) = run(false);
    assert_eq!(k, 1.0, "the bfloat16 kernel never moved");
    assert_eq!(plain.epochs.len(), 6);
    assert_eq!(plain.compute_dtype, Some(DType::BFloat16));
    let (mut ku, mut ks, mut bu, mut bs) = (0, 0, 0, 0);
    for e in &plain.epochs {
        let (kv, bv) = (&e.variables[0], &e.variables[1]);
        assert_eq!(
            (kv.name.as_str(), bv.name.as_str()),
            ("dense/kernel", "dense/bias")
        );
        assert_eq!(kv.dtype, Some(DType::BFloat16));
        ku += kv.updates;
        ks += kv.stalled;
        bu += bv.updates;
        bs += bv.stalled;
        assert_eq!(kv.grad_zero + kv.grad_subnormal + kv.grad_nonfinite, 0);
    }
    assert_eq!((ku, ks, bu, bs), (6, 6, 6, 0));
    assert_eq!(plain.epochs[0].stalled_fraction(), 0.5);
    // The shadow's kernel went from 1 to about 1 - 6 * 1e-3 (its gradients came from the
    // bfloat16 model): the relative drift of the stored kernel is about 0.006.
    let drift = plain.epochs[5].variables[0].drift.unwrap();
    assert!((drift - 0.006).abs() < 0.001, "{drift}");
    let (kahan, k) = run(true);
    assert!(k < 1.0, "the compensated kernel moved: {k}");
    let last = &kahan.epochs[5].variables[0];
    assert!(last.drift.unwrap() < drift / 2.0, "{last:?}");
    assert!(plain.summary().contains("dense/kernel"));
}
