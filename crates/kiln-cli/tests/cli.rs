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

fn final_accuracy(out: &str) -> f64 {
    let line = out
        .lines()
        .rfind(|l| l.starts_with("test accuracy"))
        .unwrap_or_else(|| panic!("no accuracy line in:\n{out}"));
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"))
}

#[test]
fn train_runs_on_the_cpu_and_on_a_gpu() {
    let (ok, cpu) = kiln(&["train", "--verbose", "2"], &[]);
    assert!(ok, "{cpu}");
    assert!(
        cpu.contains("device cpu")
            && cpu.contains("split: 1437 train / 360 test")
            && cpu.contains("Total params: 9,610")
            && cpu.contains("Epoch 20/20\n45/45 - "),
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
    let (a, b) = (final_accuracy(&cpu), final_accuracy(&gpu));
    assert!(a >= 97.0 && (a - b).abs() < 0.5, "cpu {a}%, cuda:0 {b}%");
    // cpu-fallback: the int32 labels CUDA lacks stay on the cpu, counted; the job still runs
    // (values on the cpu and the GPU meet on the GPU) and says what fell back.
    let (ok, fb) = kiln(
        &["train", "--verbose", "0", "--device", "cuda:0"],
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
    assert!((final_accuracy(&fb) - a).abs() < 0.5, "{fb}");
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

fn last_number_after(out: &str, prefix: &str) -> f64 {
    let line = out
        .lines()
        .rfind(|l| l.starts_with(prefix))
        .unwrap_or_else(|| panic!("no {prefix:?} line in:\n{out}"));
    line[prefix.len()..]
        .trim()
        .split(['%', ' '])
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"))
}

/// The README's demos meet the bars: digits at least 97% on the cpu, on sim:mps
/// (float32) and under mixed_bfloat16; breast_cancer at least 95%; diabetes at least 30%
/// below the mean predictor's test MSE.
#[test]
fn demos_meet_their_bars() {
    for (args, bar) in [
        (vec!["--device", "sim:mps"], 97.0),
        (vec!["--dtype-policy", "mixed_bfloat16"], 96.5),
        (vec!["--data", "data/breast_cancer.npz"], 95.0),
    ] {
        let mut a = vec!["train", "--verbose", "0"];
        a.extend(&args);
        let (ok, out) = kiln(&a, &[]);
        assert!(ok, "{out}");
        let acc = last_number_after(&out, "test accuracy:");
        assert!(acc >= bar, "{args:?}: {acc}% < {bar}%\n{out}");
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
        .and_then(|p| p.trim_end_matches("% lower)").parse().ok())
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
        &["train", "--verbose", "0", "--device", "sim:mps"],
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
}
