//! The `kiln` binary end to end: the README's main job (`kiln train` on the shipped float64
//! digits), on the cpu and on cuda:0 (emulated on the cpu here: candle's CPU kernels behind
//! CUDA's dtype profile and placement rules), and `kiln doctor` on a GPU device.

use std::process::Command;

fn kiln(args: &[&str], env: &[(&str, &str)]) -> (bool, String) {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/../..");
    let mut c = Command::new(env!("CARGO_BIN_EXE_kiln"));
    c.current_dir(root).args(args);
    for k in [
        "KILN_DEVICE",
        "KILN_BACKEND",
        "KILN_PRECISION",
        "KILN_X64",
        "KILN_FLOATX",
    ] {
        c.env_remove(k);
    }
    for (k, v) in env {
        c.env(k, v);
    }
    let o = c.output().expect("run kiln");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    (o.status.success(), text)
}

/// The test accuracy `kiln train` printed for `model` (`mlp` or `cnn`).
fn accuracy(out: &str, model: &str) -> f64 {
    let tail = format!("% ({model})");
    let line = out
        .lines()
        .rfind(|l| l.starts_with("test accuracy: ") && l.ends_with(&tail))
        .unwrap_or_else(|| panic!("no {model} accuracy line in:\n{out}"));
    line["test accuracy: ".len()..line.len() - tail.len()]
        .parse()
        .unwrap_or_else(|_| panic!("unparsable: {line}"))
}

#[test]
fn train_runs_on_the_cpu_and_on_a_gpu() {
    // The default on digits' 8x8 images: both the MLP and the convnet.
    let (ok, cpu) = kiln(&["train", "--verbose", "2"], &[]);
    assert!(ok, "{cpu}");
    assert!(
        cpu.contains("device cpu")
            && cpu.contains("split: 1437 train / 360 test")
            && cpu.contains("Total params: 9,610")
            && cpu.contains("Total params: 6,090")
            && cpu.matches("Epoch 20/20\n45/45 - ").count() == 2,
        "{cpu}"
    );
    let (ok, gpu) = kiln(
        &["train", "--verbose", "0", "--device", "cuda:0"],
        &[("KILN_EMULATE_GPU", "cuda:0")],
    );
    assert!(ok, "{gpu}");
    assert!(gpu.contains("device cuda:0"), "{gpu}");
    // Everything the job does has a kernel (or a composition) on the GPU.
    assert!(gpu.contains("cpu fallbacks: none"), "{gpu}");
    for model in ["mlp", "cnn"] {
        let (a, b) = (accuracy(&cpu, model), accuracy(&gpu, model));
        assert!(
            a >= 97.0 && (a - b).abs() < 0.5,
            "{model}: cpu {a}%, cuda:0 {b}%"
        );
    }
    // cpu-fallback: the int32 labels CUDA lacks stay on the cpu, counted; the job still runs
    // (values on the cpu and the GPU meet on the GPU) and says what fell back.
    let (ok, fb) = kiln(
        &[
            "train",
            "--verbose",
            "0",
            "--device",
            "cuda:0",
            "--model",
            "mlp",
        ],
        &[
            ("KILN_EMULATE_GPU", "cuda:0"),
            ("KILN_PRECISION", "cpu-fallback"),
        ],
    );
    assert!(ok, "{fb}");
    assert!(
        fb.contains("cpu fallbacks: cpu-fallback:int32@cuda:0 x"),
        "{fb}"
    );
    assert!(
        (accuracy(&fb, "mlp") - accuracy(&cpu, "mlp")).abs() < 0.5,
        "{fb}"
    );
}

#[test]
fn doctor_covers_a_gpu_device_with_no_failed_cell() {
    let (ok, out) = kiln(
        &[
            "doctor",
            "--matrix",
            "--x64",
            "off",
            "--engine",
            "candle",
            "--devices",
            "cuda:0",
        ],
        &[("KILN_EMULATE_GPU", "cuda:0")],
    );
    assert!(ok, "{out}");
    assert!(out.contains("candle on cuda:0"), "{out}");
    assert!(out.contains(" 0 failed"), "{out}");
}

#[test]
fn doctor_on_a_device_nothing_here_runs_is_an_error() {
    // No emulation and (in CI) no GPU: an empty matrix must not pass for a checked one.
    let (ok, out) = kiln(
        &["doctor", "--matrix", "--x64", "off", "--devices", "metal:0"],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("no engine can run metal:0 here"), "{out}");
}

/// The README's demos meet the bars: digits at least 97% with both the MLP and the
/// convnet on sim:mps (float32), the MLP at 96.5% under mixed_bfloat16 and under
/// mixed_float16 (with loss scaling); breast_cancer at
/// least 95% (the MLP: 30 features are no image); diabetes at least 30% below the mean
/// predictor's test MSE.
#[test]
fn demos_meet_their_bars() {
    for (args, bars) in [
        (
            vec!["--device", "sim:mps"],
            vec![("mlp", 97.0), ("cnn", 97.0)],
        ),
        (
            vec!["--dtype-policy", "mixed_bfloat16", "--model", "mlp"],
            vec![("mlp", 96.5)],
        ),
        (
            vec!["--dtype-policy", "mixed_float16", "--model", "mlp"],
            vec![("mlp", 96.5)],
        ),
        (
            vec!["--data", "data/breast_cancer.npz"],
            vec![("mlp", 95.0)],
        ),
    ] {
        let mut a = vec!["train", "--verbose", "0"];
        a.extend(&args);
        let (ok, out) = kiln(&a, &[]);
        assert!(ok, "{out}");
        for (model, bar) in bars {
            let acc = accuracy(&out, model);
            assert!(acc >= bar, "{args:?} {model}: {acc}% < {bar}%\n{out}");
        }
        // mixed_float16 scales the loss (Keras's LossScaleOptimizer) and says how it went.
        assert_eq!(
            out.contains("loss scale: "),
            args.contains(&"mixed_float16"),
            "{out}"
        );
    }
    let (ok, out) = kiln(
        &[
            "train",
            "--verbose",
            "0",
            "--data",
            "data/diabetes.npz",
            "--epochs",
            "100",
        ],
        &[],
    );
    assert!(ok, "{out}");
    let line = out
        .lines()
        .find(|l| l.starts_with("test mse:"))
        .unwrap_or_else(|| panic!("{out}"));
    let lower: f64 = line
        .split(": ")
        .last()
        .and_then(|p| p.trim_end_matches("% lower) (mlp)").parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"));
    assert!(lower >= 30.0, "{line}");
}

/// The seed's float64 data on sim:mps with x64 on trains with exactly one warning (the
/// conversion's), and a float64 policy there is adapted once, refused under `error`, kept on
/// the cpu under `cpu-fallback`.
#[test]
fn float64_on_sim_mps_follows_the_precision_policy() {
    let warnings = |out: &str| out.matches("WARN").count();
    let (ok, out) = kiln(
        &[
            "train",
            "--verbose",
            "0",
            "--device",
            "sim:mps",
            "--model",
            "mlp",
        ],
        &[("KILN_X64", "1")],
    );
    assert!(ok, "{out}");
    assert_eq!(warnings(&out), 1, "{out}");
    assert!(out.contains("weights: float32 on sim:mps"), "{out}");
    let f64_on = |policy: &str| {
        kiln(
            &[
                "train",
                "--verbose",
                "0",
                "--device",
                "sim:mps",
                "--dtype-policy",
                "float64",
                "--policy",
                policy,
                "--epochs",
                "2",
                "--model",
                "mlp",
            ],
            &[],
        )
    };
    let (ok, out) = f64_on("downcast");
    assert!(
        ok && warnings(&out) == 1 && out.contains("weights: float32 on sim:mps"),
        "{out}"
    );
    let (ok, out) = f64_on("error");
    assert!(
        !ok && out.contains("float64 is not supported on sim:mps"),
        "{out}"
    );
    let (ok, out) = f64_on("cpu-fallback");
    assert!(
        ok && out.contains("weights: float64 on cpu")
            && out.contains("cpu fallbacks: cpu-fallback:float64@sim:mps"),
        "{out}"
    );
}

#[test]
fn bad_data_is_refused_before_training() {
    let (ok, out) = kiln(&["train", "--data", "data/missing.npz"], &[]);
    assert!(!ok && out.contains("missing.npz"), "{out}");
    let (ok, out) = kiln(&["train", "--task", "sometimes"], &[]);
    assert!(!ok && out.contains("--task"), "{out}");
    let (ok, out) = kiln(
        &[
            "train",
            "--model",
            "cnn",
            "--data",
            "data/breast_cancer.npz",
        ],
        &[],
    );
    assert!(
        !ok && out.contains("square images") && out.contains("--model mlp"),
        "{out}"
    );
    let (ok, out) = kiln(&["train", "--model", "rnn"], &[]);
    assert!(!ok && out.contains("use auto, mlp, cnn or both"), "{out}");
}

/// mixed_bfloat16 on a device without bfloat16 (sim:webgpu): refused under `error`, adapted
/// to float32 with one warning under `downcast`, computed on the cpu (counted) under
/// `cpu-fallback`.
#[test]
fn a_half_policy_on_a_device_without_it_follows_the_precision_policy() {
    let run = |policy: &str| {
        kiln(
            &[
                "train",
                "--verbose",
                "0",
                "--model",
                "mlp",
                "--epochs",
                "1",
                "--device",
                "sim:webgpu",
                "--dtype-policy",
                "mixed_bfloat16",
                "--policy",
                policy,
            ],
            &[],
        )
    };
    let (ok, out) = run("error");
    assert!(
        !ok && out.contains("bfloat16 is not supported on sim:webgpu"),
        "{out}"
    );
    let (ok, out) = run("downcast");
    assert!(
        ok && out.matches("WARN").count() == 1 && out.contains("bfloat16 became float32"),
        "{out}"
    );
    let (ok, out) = run("cpu-fallback");
    assert!(
        ok && out.contains("cpu fallbacks: cpu-fallback:bfloat16@sim:webgpu x"),
        "{out}"
    );
}

/// The precision monitor and its cure on digits (MLP, Adam at 1e-4, 20 epochs): with
/// bfloat16 weights nearly every update is lost to rounding by the last epoch and accuracy
/// stalls far below float32's; Kahan-compensated updates reach float32's accuracy (bar:
/// within 1 point) with the same weights in bfloat16.
#[test]
fn pure_bfloat16_stalls_and_kahan_updates_recover_float32s_accuracy() {
    let run = |extra: &[&str]| {
        let mut a = vec![
            "train",
            "--verbose",
            "0",
            "--model",
            "mlp",
            "--lr",
            "1e-4",
            "--precision-monitor",
        ];
        a.extend(extra);
        let (ok, out) = kiln(&a, &[]);
        assert!(ok, "{out}");
        let line = out
            .lines()
            .find(|l| l.starts_with("precision monitor:"))
            .unwrap_or_else(|| panic!("no monitor summary:\n{out}"));
        // "... updates lost to rounding A% (epoch 1) -> B% (epoch 20)"
        let last: f64 = line
            .rsplit("-> ")
            .next()
            .and_then(|p| p.split('%').next())
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("unparsable: {line}"));
        (accuracy(&out, "mlp"), last, out)
    };
    let (f32_acc, f32_lost, _) = run(&["--dtype-policy", "float32"]);
    let (bf_acc, bf_lost, out) = run(&["--dtype-policy", "bfloat16"]);
    let (k_acc, _, kout) = run(&["--dtype-policy", "bfloat16", "--kahan"]);
    assert!(
        f32_acc >= 90.0 && f32_lost < 1.0,
        "float32: {f32_acc}%, {f32_lost}% lost"
    );
    assert!(
        bf_lost >= 90.0 && bf_acc < f32_acc - 20.0,
        "bfloat16: {bf_acc}%, {bf_lost}% lost\n{out}"
    );
    assert!(
        (k_acc - f32_acc).abs() <= 1.0 && kout.contains("weights: bfloat16"),
        "kahan: {k_acc}% vs float32 {f32_acc}%\n{kout}"
    );
}

fn tmp(name: &str) -> String {
    let d = std::env::temp_dir().join(format!("kiln-cli-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d.join(name).display().to_string()
}

/// A float64 model saved by kiln, for `kiln doctor` to check against `sim:mps`.
fn float64_model(path: &str) {
    use kiln::nn::{Adam, DTypePolicy, Dense, Input, Loss, Sequential};
    let mut m = Sequential::new()
        .add(Input::new(&[4]))
        .add(Dense::new(3).activation("relu"))
        .add(Dense::new(2))
        .dtype_policy(DTypePolicy::new("float64").unwrap());
    m.compile(Adam::new(1e-3), Loss::MeanSquaredError, &[])
        .unwrap();
    m.save(path).unwrap();
}

#[test]
fn doctor_checks_a_file_for_a_device() {
    let p = tmp("f64.kiln");
    float64_model(&p);
    let (ok, out) = kiln(&["doctor", &p, "--device", "sim:mps"], &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("layers/dense/vars/0")
            && out.contains("-> float32 (downcast)")
            && out.contains("max rel error"),
        "{out}"
    );
    let (ok, out) = kiln(
        &["doctor", &p, "--device", "sim:mps", "--policy", "error"],
        &[],
    );
    assert!(!ok, "{out}");
    assert!(
        out.contains("REFUSED") && out.contains("4 arrays of"),
        "{out}"
    );
    let (ok, out) = kiln(&["doctor", &p, "--device", "cpu", "--json"], &[]);
    assert!(ok, "{out}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert!(
        v["arrays"]
            .as_array()
            .unwrap()
            .iter()
            .all(|a| a["verdict"] == "keep"),
        "{out}"
    );
    // Converted for mps, the file is float32 and the doctor has nothing left to change.
    let q = tmp("f32.kiln");
    let (ok, out) = kiln(&["convert", &p, &q, "--device", "sim:mps"], &[]);
    assert!(ok && out.contains("wrote"), "{out}");
    let (ok, out) = kiln(
        &["doctor", &q, "--device", "sim:mps", "--policy", "error"],
        &[],
    );
    assert!(ok && out.contains("0 arrays change dtype"), "{out}");
}

#[test]
fn fit_evaluate_and_predict_a_keras_file() {
    let model = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../kiln/tests/data/keras/mlp.keras"
    );
    let data = tmp("mlp_data.npz");
    let x: Vec<f64> = (0..32 * 8)
        .map(|i| ((i * 13 % 29) as f64) / 14.0 - 1.0)
        .collect();
    let y: Vec<i64> = (0..32).map(|i| i % 3).collect();
    let xa = kiln::ArrayData::from_shape_vec(&[32, 8], x).unwrap();
    let ya = kiln::ArrayData::from_shape_vec(&[32], y).unwrap();
    kiln::io::write_npz(&data, &[("x", &xa), ("y", &ya)], false).unwrap();
    let out = tmp("mlp_trained.kiln");
    let (ok, text) = kiln(
        &[
            "fit",
            model,
            &data,
            "--epochs",
            "2",
            "--batch-size",
            "8",
            "--out",
            &out,
            "--verbose",
            "2",
        ],
        &[],
    );
    assert!(ok, "{text}");
    // The Keras file's Adam had taken 8 steps; 2 epochs of 4 batches follow.
    assert!(
        text.contains("Epoch 2/2") && text.contains("optimizer iterations 8 -> 16"),
        "{text}"
    );
    let (ok, text) = kiln(&["evaluate", &out, &data], &[]);
    assert!(
        ok && text.contains("evaluate: accuracy: ") && text.contains("loss: "),
        "{text}"
    );
    let pred = tmp("pred.npz");
    let (ok, text) = kiln(&["predict", &out, &data, "--out", &pred], &[]);
    assert!(ok, "{text}");
    let got = kiln::io::read_npz(&pred).unwrap();
    let mut m = kiln::nn::load_model(&out).unwrap();
    let want = m.predict(&xa, 32).unwrap().to_host().unwrap();
    assert_eq!(got[0].0, "dense_2");
    assert_eq!(got[0].1.to_f64_vec(), want.to_f64_vec());
    let (ok, text) = kiln(
        &["predict", &out, &data, "--x", "nope", "--out", &pred],
        &[],
    );
    assert!(!ok && text.contains("no array \"nope\""), "{text}");
}
