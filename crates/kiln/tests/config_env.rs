//! Configuration precedence: defaults < config file < environment < code < scope. One test
//! function, because the environment is process-wide.

use kiln::precision::config::{current, from_environment, set_global};
use kiln::precision::{Policy, Scope};
use kiln::{Config, DType, Device};

#[test]
fn precedence_file_env_code_scope() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("kiln.json");
    std::fs::write(
        &file,
        r#"{"device": "sim:tpu", "precision": "error", "floatx": "float16", "x64": true}"#,
    )
    .unwrap();
    for k in [
        "KILN_DEVICE",
        "KILN_PRECISION",
        "KILN_FLOATX",
        "KILN_X64",
        "KILN_WARNINGS",
    ] {
        std::env::remove_var(k);
    }
    std::env::set_var("KILN_CONFIG", &file);
    let c = from_environment().unwrap();
    assert_eq!(
        (c.device, c.policy, c.floatx, c.x64),
        (
            Device::parse("sim:tpu").unwrap(),
            Policy::Error,
            DType::Float16,
            true
        )
    );
    // The environment overrides the file.
    std::env::set_var("KILN_DEVICE", "sim:mps");
    std::env::set_var("KILN_X64", "0");
    std::env::set_var("KILN_BACKEND", "candle");
    std::env::set_var("KILN_STRICT_FALLBACK", "1");
    let c = from_environment().unwrap();
    assert_eq!(
        (c.backend, c.strict_fallback),
        (Some(kiln::backend::BackendKind::Candle), true)
    );
    std::env::set_var("KILN_BACKEND", "tensorflow");
    assert!(from_environment()
        .unwrap_err()
        .to_string()
        .contains("ndarray or candle"));
    std::env::remove_var("KILN_BACKEND");
    std::env::remove_var("KILN_STRICT_FALLBACK");
    let c = from_environment().unwrap();
    assert_eq!(
        (c.device.to_string().as_str(), c.policy, c.x64),
        ("sim:mps", Policy::Error, false)
    );
    // Malformed values are errors naming their source, never silent defaults.
    std::env::set_var("KILN_PRECISION", "lenient");
    assert!(from_environment()
        .unwrap_err()
        .to_string()
        .contains("environment"));
    std::env::remove_var("KILN_PRECISION");
    std::fs::write(&file, r#"{"device": "sim:tpu", "typo": 1}"#).unwrap();
    assert!(from_environment()
        .unwrap_err()
        .to_string()
        .contains("kiln.json"));
    std::env::remove_var("KILN_CONFIG");
    std::env::remove_var("KILN_DEVICE");
    std::env::remove_var("KILN_X64");
    // Code overrides the environment; a scope overrides code. `current()` is cached per
    // thread: a thread that read it before `set_global` sees the new value after.
    let (ask, asked) = std::sync::mpsc::channel::<()>();
    let (tell, told) = std::sync::mpsc::channel::<String>();
    let other = std::thread::spawn(move || {
        let mut seen = vec![current().unwrap().device.to_string()];
        tell.send(seen[0].clone()).unwrap();
        asked.recv().unwrap();
        seen.push(current().unwrap().device.to_string());
        seen
    });
    let before = told.recv().unwrap();
    assert_eq!(current().unwrap().device.to_string(), before);
    set_global(Config {
        device: Device::parse("sim:webgpu").unwrap(),
        ..Config::default()
    });
    assert_eq!(current().unwrap().device.to_string(), "sim:webgpu");
    ask.send(()).unwrap();
    let seen = other.join().unwrap();
    assert_eq!(seen, vec![before.clone(), "sim:webgpu".to_string()]);
    assert_ne!(before, "sim:webgpu");
    {
        let _outer = Scope::new()
            .device(Device::parse("sim:mps").unwrap())
            .enter();
        assert_eq!(current().unwrap().device.to_string(), "sim:mps");
        {
            let _inner = Scope::new().policy(Policy::Error).enter();
            let c = current().unwrap();
            assert_eq!(
                (c.device.to_string().as_str(), c.policy),
                ("sim:mps", Policy::Error)
            );
        }
        assert_eq!(current().unwrap().policy, Config::default().policy);
    }
    assert_eq!(current().unwrap().device.to_string(), "sim:webgpu");
    {
        let _g = Scope::new().device(Device::Cpu).enter();
        assert_eq!(current().unwrap().device, Device::Cpu);
        assert_eq!(
            kiln::ops::zeros(&[1], None, None).unwrap().device(),
            Device::Cpu
        );
    }
    assert_eq!(
        kiln::ops::zeros(&[1], None, None)
            .unwrap()
            .device()
            .to_string(),
        "sim:webgpu"
    );
}
