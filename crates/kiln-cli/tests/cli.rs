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
        .rfind(|l| l.contains("train accuracy"))
        .unwrap_or_else(|| panic!("no accuracy line in:\n{out}"));
    line.rsplit(' ')
        .next()
        .and_then(|p| p.trim_end_matches('%').parse().ok())
        .unwrap_or_else(|| panic!("unparsable: {line}"))
}

#[test]
fn train_runs_on_the_cpu_and_on_a_gpu() {
    let (ok, cpu) = kiln(&["train", "--epochs", "60"], &[]);
    assert!(ok, "{cpu}");
    assert!(
        cpu.contains("device cpu") && cpu.contains("conversion: float64 -> float32"),
        "{cpu}"
    );
    let (ok, gpu) = kiln(
        &["train", "--epochs", "60", "--device", "cuda:0"],
        &[("KILN_EMULATE_GPU", "cuda:0")],
    );
    assert!(ok, "{gpu}");
    assert!(gpu.contains("device cuda:0"), "{gpu}");
    // Everything the job does has a kernel (or a composition) on the GPU.
    assert!(gpu.contains("cpu fallbacks: none"), "{gpu}");
    let (a, b) = (final_accuracy(&cpu), final_accuracy(&gpu));
    assert!(a > 90.0 && (a - b).abs() < 0.5, "cpu {a}%, cuda:0 {b}%");
    // cpu-fallback: the int32 labels CUDA lacks stay on the cpu, counted; the job still runs
    // (values on the cpu and the GPU meet on the GPU) and says what fell back.
    let (ok, fb) = kiln(
        &["train", "--epochs", "60", "--device", "cuda:0"],
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
