//! Model files: Keras 3 `.keras` files load and predict as Keras did, kiln's own `.keras`
//! and `.kiln` files round-trip bit for bit, training resumes exactly from a `.kiln` file,
//! and hostile configs are refused. Fixtures: scripts/gen_keras_fixtures.py (Keras 3.15.1,
//! JAX backend), which also checks in Keras what kiln saves (`--check`).

use kiln::io::read_npz;
use kiln::nn::{
    load_model, Adam, BatchNormalization, Dense, Dropout, FitArgs, Input, Loss, Model, Sequential,
    Verbose,
};
use kiln::{ArrayData, Tensor};

fn data_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/keras")
}

fn fixture(name: &str) -> String {
    data_dir().join(name).display().to_string()
}

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("kiln-model-files-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name).display().to_string()
}

/// The fixture's inputs and Keras's predictions.
fn io(name: &str) -> (Vec<ArrayData>, Vec<ArrayData>) {
    let all = read_npz(fixture(&format!("{name}_io.npz"))).unwrap();
    let pick = |p: char| -> Vec<ArrayData> {
        let mut v: Vec<&(String, ArrayData)> =
            all.iter().filter(|(n, _)| n.starts_with(p)).collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v.into_iter().map(|(_, a)| a.clone()).collect()
    };
    (pick('x'), pick('y'))
}

fn predict(m: &mut Model, xs: &[ArrayData]) -> Vec<Vec<f64>> {
    m.predict_many(xs, 64)
        .unwrap()
        .iter()
        .map(|t| t.to_f64_vec().unwrap())
        .collect()
}

fn max_diff(a: &[Vec<f64>], b: &[ArrayData]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| {
            let y = y.to_f64_vec();
            assert_eq!(x.len(), y.len());
            x.iter()
                .zip(&y)
                .map(|(p, q)| (p - q).abs())
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max)
}

const MODELS: [&str; 6] = [
    "mlp",
    "convnet",
    "multi",
    "zoo_seq",
    "zoo_img",
    "uncompiled",
];

#[test]
fn keras_files_predict_as_keras_did() {
    for name in MODELS {
        let mut m = load_model(&fixture(&format!("{name}.keras")))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let (xs, ys) = io(name);
        let d = max_diff(&predict(&mut m, &xs), &ys);
        assert!(d <= 1e-5, "{name}: max |kiln - keras| = {d:e}");
    }
}

#[test]
fn keras_files_bring_their_compile_config_and_optimizer_state() {
    let m = load_model(&fixture("mlp.keras")).unwrap();
    let o = m.optimizer().expect("compiled");
    assert_eq!(o.name(), "adam");
    // 2 epochs of 64 samples in batches of 16.
    assert_eq!(o.iterations(), 8);
    assert!((o.current_learning_rate() - 1e-2).abs() < 1e-9);
    let m = load_model(&fixture("multi.keras")).unwrap();
    assert_eq!(m.optimizer().unwrap().name(), "rmsprop");
    assert_eq!(m.optimizer().unwrap().iterations(), 4);
    assert_eq!(m.output_names(), vec!["reg", "cls"]);
    let m = load_model(&fixture("uncompiled.keras")).unwrap();
    assert!(m.optimizer().is_none());
}

/// A loaded Keras model keeps training in kiln: one more epoch lowers the loss it had.
#[test]
fn a_loaded_keras_model_trains_on() {
    let mut m = load_model(&fixture("convnet.keras")).unwrap();
    let (xs, ys) = io("convnet");
    let before = m.evaluate(&xs[0], &ys[0], 6).unwrap()["loss"];
    assert!(before.abs() < 1e-9, "it predicts its own targets: {before}");
    let y = ArrayData::from_shape_vec(&[6, 4], vec![0.5f32; 24]).unwrap();
    let h = m
        .fit(
            &xs[0],
            &y,
            FitArgs::default()
                .epochs(3)
                .batch_size(6)
                .verbose(Verbose::Silent),
        )
        .unwrap();
    let l = h.get("loss").unwrap();
    assert!(l[2] < l[0], "{l:?}");
}

/// What kiln saves as `.keras` loads back with the same predictions, config and state.
#[test]
fn keras_round_trip_is_exact() {
    for name in MODELS {
        let mut m = load_model(&fixture(&format!("{name}.keras"))).unwrap();
        let (xs, _) = io(name);
        let want = predict(&mut m, &xs);
        let p = tmp(&format!("{name}.keras"));
        m.save(&p).unwrap();
        let mut back = load_model(&p).unwrap();
        assert_eq!(predict(&mut back, &xs), want, "{name}");
        assert_eq!(back.variable_paths(), m.variable_paths(), "{name}");
        assert_eq!(
            back.optimizer().map(|o| o.iterations()),
            m.optimizer().map(|o| o.iterations()),
            "{name}"
        );
    }
}

fn mlp_model() -> Sequential {
    Sequential::new()
        .add(Input::new(&[6]))
        .add(Dense::new(12).activation("relu"))
        .add(BatchNormalization::new())
        .add(Dropout::new(0.25))
        .add(Dense::new(3))
        .seed(11)
}

fn toy() -> (ArrayData, ArrayData) {
    let x: Vec<f64> = (0..96 * 6)
        .map(|i| ((i * 37 % 101) as f64 / 50.0) - 1.0)
        .collect();
    let y: Vec<i64> = (0..96).map(|i| (i * 7 % 3) as i64).collect();
    (
        ArrayData::from_shape_vec(&[96, 6], x).unwrap(),
        ArrayData::from_shape_vec(&[96], y).unwrap(),
    )
}

/// Training 2 epochs, saving to `.kiln`, loading and training 2 more gives the same weights,
/// bit for bit, as training 4 epochs at once (optimizer slots, iterations, the dropout
/// seed's step and BatchNormalization's statistics all come back).
#[test]
fn training_resumes_exactly_from_a_kiln_file() {
    let (x, y) = toy();
    let args = || {
        FitArgs::default()
            .batch_size(16)
            .verbose(Verbose::Silent)
            .shuffle(false)
    };
    let loss = Loss::sparse_categorical_crossentropy(true);
    let mut straight = mlp_model();
    straight
        .compile(Adam::new(1e-2).amsgrad(true), loss, &["accuracy"])
        .unwrap();
    straight.fit(&x, &y, args().epochs(4)).unwrap();

    let mut first = mlp_model();
    first
        .compile(Adam::new(1e-2).amsgrad(true), loss, &["accuracy"])
        .unwrap();
    first.fit(&x, &y, args().epochs(2)).unwrap();
    let p = tmp("resume.kiln");
    first.save(&p).unwrap();
    let mut resumed = load_model(&p).unwrap();
    resumed.fit(&x, &y, args().epochs(2)).unwrap();
    let a = straight.get_weights().unwrap();
    let b = resumed.get_weights().unwrap();
    for (i, (w, v)) in a.iter().zip(&b).enumerate() {
        assert_eq!(w.to_f64_vec(), v.to_f64_vec(), "weight {i}");
    }
    assert_eq!(resumed.optimizer().unwrap().iterations(), 24);
}

/// The toy MLP in float64, trained one epoch with Adam.
fn trained_float64() -> Sequential {
    let (x, y) = toy();
    let mut m = mlp_model().dtype_policy(kiln::nn::DTypePolicy::new("float64").unwrap());
    m.compile(
        Adam::new(1e-2),
        Loss::sparse_categorical_crossentropy(true),
        &[],
    )
    .unwrap();
    m.fit(
        &x,
        &y,
        FitArgs::default()
            .epochs(1)
            .batch_size(32)
            .verbose(Verbose::Silent),
    )
    .unwrap();
    m
}

/// `.kiln` keeps every dtype (float64 here) and a float64 model round-trips exactly.
#[test]
fn kiln_files_keep_float64() {
    let (x, _) = toy();
    let mut m = trained_float64();
    let want = m.predict(&x, 96).unwrap();
    assert_eq!(want.dtype(), kiln::DType::Float64);
    for ext in ["kiln", "keras"] {
        let p = tmp(&format!("f64.{ext}"));
        m.save(&p).unwrap();
        let mut back = load_model(&p).unwrap();
        let got: Tensor = back.predict(&x, 96).unwrap();
        assert_eq!(got.dtype(), kiln::DType::Float64, "{ext}");
        assert_eq!(
            got.to_vec::<f64>().unwrap(),
            want.to_vec::<f64>().unwrap(),
            "{ext}"
        );
    }
}

/// Keras's `.weights.h5`: kiln writes what it reads, by Keras's paths.
#[test]
fn weights_h5_round_trip() {
    let mut m = load_model(&fixture("convnet.keras")).unwrap();
    let (xs, _) = io("convnet");
    let want = predict(&mut m, &xs);
    let p = tmp("convnet.weights.h5");
    m.save_weights(&p).unwrap();
    let mut fresh = load_model(&fixture("convnet.keras")).unwrap();
    let zeros: Vec<ArrayData> = fresh
        .get_weights()
        .unwrap()
        .iter()
        .map(|w| ArrayData::full(w.shape(), kiln::Scalar::Float(0.0), w.dtype()).unwrap())
        .collect();
    fresh.set_weights(&zeros).unwrap();
    assert_ne!(predict(&mut fresh, &xs), want);
    fresh.load_weights(&p).unwrap();
    assert_eq!(predict(&mut fresh, &xs), want);
}

#[test]
fn hostile_and_unsupported_configs_are_refused_by_name() {
    let cases = [
        ("hostile_lambda", "Lambda"),
        ("hostile_module", "\"os\""),
        ("hostile_registered", "custom class"),
        ("unknown_layer", "no layer class \"TextVectorization\""),
        ("unsupported_option", "\"kernel_constraint\""),
    ];
    for (name, says) in cases {
        let e = load_model(&fixture(&format!("{name}.keras")))
            .err()
            .unwrap_or_else(|| panic!("{name} loaded"));
        let msg = e.to_string();
        assert!(msg.contains(says), "{name}: {msg}");
        assert!(msg.len() < 600, "{name}: {} chars", msg.len());
    }
    // The unsupported option names the layer's class, name and path.
    let msg = load_model(&fixture("unsupported_option.keras"))
        .err()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("Dense \"dense") && msg.contains("layers[0]"),
        "{msg}"
    );
}

#[test]
fn wrong_extensions_and_missing_members_are_errors() {
    assert!(load_model(&fixture("mlp_io.npz"))
        .err()
        .unwrap()
        .to_string()
        .contains(".keras"));
    // A zip with no config.json.
    let p = tmp("empty.keras");
    kiln::io::write_npz(
        &p,
        &[("a", &ArrayData::from_shape_vec(&[1], vec![1f32]).unwrap())],
        false,
    )
    .unwrap();
    assert!(load_model(&p)
        .err()
        .unwrap()
        .to_string()
        .contains("config.json"));
    // A .kiln file is checked to be one.
    let q = tmp("not.kiln");
    std::fs::copy(fixture("mlp.keras"), &q).unwrap();
    assert!(load_model(&q).is_err());
}

/// `kiln doctor`'s check of a float64 model for `sim:mps`: every float64 weight is a
/// downcast with its loss measured; under policy `error` each is refused.
#[test]
fn doctor_reports_a_float64_models_downcast_for_mps() {
    use kiln::doctor::file::{check_file, convert_file, Verdict};
    use kiln::precision::{Config, Policy};
    let (x, _) = toy();
    let mut m = trained_float64();
    let p = tmp("doctor64.kiln");
    m.save(&p).unwrap();
    let mps = kiln::Device::parse("sim:mps").unwrap();
    let cfg = Config {
        x64: true,
        ..Config::default()
    };
    let c = check_file(&p, mps, &cfg).unwrap();
    let weights: Vec<_> = c
        .arrays
        .iter()
        .filter(|a| a.name.starts_with("layers/"))
        .collect();
    assert_eq!(weights.len(), 8);
    for a in &weights {
        assert_eq!(a.dtype, kiln::DType::Float64, "{}", a.name);
        assert_eq!(a.verdict, Verdict::Downcast, "{}", a.name);
        assert_eq!(a.to, Some(kiln::DType::Float32));
        let r = a.report.as_ref().unwrap();
        assert!(
            r.max_rel_error > 0.0 && r.max_rel_error < 6e-8,
            "{}: {r:?}",
            a.name
        );
        assert!(a.values_changed > 0);
    }
    // The iteration count (int64) is kept on mps.
    assert!(c
        .arrays
        .iter()
        .any(|a| a.name == "optimizer/vars/0" && a.verdict == Verdict::Keep));
    assert_eq!(c.refused(), 0);
    assert!(
        c.render().contains("-> float32 (downcast)"),
        "{}",
        c.render()
    );
    let strict = Config {
        policy: Policy::Error,
        ..cfg
    };
    let s = check_file(&p, mps, &strict).unwrap();
    assert!(s.refused() >= 8, "{}", s.render());
    assert!(convert_file(&p, &tmp("refused.kiln"), mps, None, &strict).is_err());
    // Converted for mps, the model is float32 and predicts as the float64 one to float32 precision.
    let out = tmp("doctor32.kiln");
    convert_file(&p, &out, mps, None, &cfg).unwrap();
    let mut small = load_model(&out).unwrap();
    let a = m.predict(&x, 96).unwrap().to_f64_vec().unwrap();
    let b = small.predict(&x, 96).unwrap();
    assert_eq!(b.dtype(), kiln::DType::Float32);
    let d = a
        .iter()
        .zip(b.to_f64_vec().unwrap())
        .map(|(p, q)| (p - q).abs())
        .fold(0.0, f64::max);
    assert!(d > 0.0 && d < 1e-5, "{d}");
    assert_eq!(small.optimizer().unwrap().iterations(), 3);
    // `--dtype` is an explicit cast: honoured where the device has the dtype, refused where
    // it does not (never adapted).
    let c = convert_file(
        &out,
        &tmp("bf16.kiln"),
        kiln::Device::Cpu,
        Some(kiln::DType::BFloat16),
        &cfg,
    )
    .unwrap();
    assert!(c
        .arrays
        .iter()
        .filter(|a| a.name.starts_with("layers/"))
        .all(|a| a.verdict == Verdict::Cast && a.to == Some(kiln::DType::BFloat16)));
    let e = convert_file(&out, &tmp("no.kiln"), mps, Some(kiln::DType::Float64), &cfg)
        .err()
        .unwrap();
    assert!(e.to_string().contains("explicitly"), "{e}");
}
