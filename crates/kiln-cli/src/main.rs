//! The `kiln` command-line tool.
//!
//! * `kiln devices [--json]`: the capability matrix (device x dtype usage level).
//! * `kiln train [--data PATH] [--device D] [--epochs N]`: the main job: loads the shipped
//!   float64 data through the conversion boundary on the chosen (default: configured)
//!   device, reports what the conversion did, and trains a softmax-regression classifier
//!   with full-batch gradient descent. (Gradients are written out by hand until kiln's
//!   autodiff lands; the model is a real one and its accuracy is printed.)

use clap::{Parser, Subcommand};
use kiln::{ops, ArrayData, DType, Device, Tensor};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "kiln",
    version,
    about = "kiln: tensors where dtype and device never surprise you"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Print each device's dtype capabilities (storage / arithmetic / accelerated).
    Devices {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Check this build: `--matrix` runs every op on every dtype on every engine and device
    /// available here (real and simulated) and prints pass / adapted / refused / failed.
    Doctor {
        /// Run the op x dtype x engine x device matrix.
        #[arg(long)]
        matrix: bool,
        /// x64 modes to run: off, on or both.
        #[arg(long, default_value = "both")]
        x64: String,
        /// Engines: ndarray, candle or all.
        #[arg(long, default_value = "all")]
        engine: String,
        /// Devices (comma separated); default: cpu and every simulated profile.
        #[arg(long)]
        devices: Option<String>,
    },
    /// Train a softmax-regression classifier on a float64 .npz dataset (x, y).
    Train {
        /// The dataset (`x`: float64 [n, features], `y`: integer labels [n]).
        #[arg(long, default_value = "data/digits.npz")]
        data: String,
        /// Device (default: KILN_DEVICE, the config file, or cpu).
        #[arg(long)]
        device: Option<String>,
        /// Full-batch gradient steps.
        #[arg(long, default_value_t = 300)]
        epochs: usize,
        /// Learning rate.
        #[arg(long, default_value_t = 0.5)]
        lr: f64,
    },
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    if let Err(e) = emulation() {
        eprintln!("error: {e}");
        return ExitCode::FAILURE;
    }
    let r = match cli.cmd {
        Cmd::Devices { json } => devices(json),
        Cmd::Doctor {
            matrix,
            x64,
            engine,
            devices,
        } => doctor(matrix, &x64, &engine, devices.as_deref()),
        Cmd::Train {
            data,
            device,
            epochs,
            lr,
        } => train(&data, device.as_deref(), epochs, lr),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn doctor(matrix: bool, x64: &str, engine: &str, devices: Option<&str>) -> kiln::Result<()> {
    use kiln::backend::BackendKind;
    use kiln::doctor::CellKind;
    let engines = match engine {
        "all" => BackendKind::available(),
        e => vec![BackendKind::parse(e)?],
    };
    println!(
        "kiln {}: engines {:?}",
        env!("CARGO_PKG_VERSION"),
        BackendKind::available()
            .iter()
            .map(|e| e.name())
            .collect::<Vec<_>>()
    );
    let cfg = kiln::precision::config::current()?;
    println!(
        "configuration: device {}, policy {}, floatx {}, x64 {}",
        cfg.device,
        cfg.policy.name(),
        cfg.floatx,
        cfg.x64
    );
    if !matrix {
        println!("(pass --matrix to run the op x dtype x engine x device matrix)");
        return Ok(());
    }
    let modes: Vec<bool> = match x64 {
        "off" => vec![false],
        "on" => vec![true],
        "both" => vec![false, true],
        other => {
            return Err(kiln::KilnError::InvalidArgument {
                op: "doctor".into(),
                message: format!("--x64 {other:?}: use off, on or both"),
            })
        }
    };
    let devs = match devices {
        Some(list) => list
            .split(',')
            .map(Device::parse)
            .collect::<kiln::Result<Vec<_>>>()?,
        None => kiln::doctor::devices_here(),
    };
    let mut unrunnable = vec![];
    for d in &devs {
        let mut any = false;
        for e in &engines {
            match kiln::doctor::available(*e, *d) {
                Ok(()) => any = true,
                Err(why) => println!("skipping {e} on {d}: {why}"),
            }
        }
        if !any {
            unrunnable.push(d.to_string());
        }
    }
    let cells = kiln::doctor::matrix(&engines, &devs, &modes);
    println!("{}", kiln::doctor::render(&cells));
    // A device asked for by name that nothing here can run is an error, not an empty matrix.
    if devices.is_some() && !unrunnable.is_empty() {
        return Err(kiln::KilnError::InvalidArgument {
            op: "doctor".into(),
            message: format!(
                "no engine can run {} here (see the reasons above)",
                unrunnable.join(", ")
            ),
        });
    }
    if let Some(n) = kiln::doctor::counts(&cells).get(&CellKind::Failed) {
        return Err(kiln::KilnError::InvalidArgument {
            op: "doctor".into(),
            message: format!("{n} failed cells (listed above)"),
        });
    }
    Ok(())
}

fn devices(json: bool) -> kiln::Result<()> {
    let caps: Vec<_> = Device::catalogue()
        .iter()
        .map(|d| d.capabilities())
        .collect();
    if json {
        let v: Vec<serde_json::Value> = caps
            .iter()
            .map(|c| {
                let m: serde_json::Map<String, serde_json::Value> = DType::ALL
                    .iter()
                    .map(|d| {
                        (
                            d.name().to_string(),
                            serde_json::to_value(c.usage(*d)).unwrap_or_default(),
                        )
                    })
                    .collect();
                serde_json::json!({
                    "device": c.device.to_string(),
                    "widest_float": c.widest_float().name(),
                    "source": c.source,
                    "dtypes": m,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        return Ok(());
    }
    let abbrev = |l: &str| match l {
        "accelerated" => "A",
        "arithmetic" => "a",
        "storage" => "s",
        _ => "-",
    };
    print!("{:<16}", "device");
    for d in DType::ALL {
        print!("{:>11}", d.name());
    }
    println!("   widest float");
    for c in &caps {
        print!("{:<16}", c.device.to_string());
        for d in DType::ALL {
            print!("{:>11}", abbrev(c.usage(d).level()));
        }
        println!("   {}", c.widest_float());
    }
    println!("\nA = accelerated, a = arithmetic, s = storage only, - = unsupported");
    for c in &caps {
        println!("{:<16} {}", c.device.to_string(), c.source);
    }
    Ok(())
}

/// Test support, not a user setting: `KILN_EMULATE_GPU=cuda:0` (comma separated) opens those
/// GPUs as candle's CPU device while keeping their capability profile and placement rules
/// (`kiln::backend::candle::emulate_gpu_on_cpu`), so the CLI's GPU paths run in CI.
fn emulation() -> kiln::Result<()> {
    if let Ok(list) = std::env::var("KILN_EMULATE_GPU") {
        for d in list.split(',').map(str::trim).filter(|d| !d.is_empty()) {
            kiln::backend::candle::emulate_gpu_on_cpu(Device::parse(d)?)?;
        }
    }
    Ok(())
}

fn train(path: &str, device: Option<&str>, epochs: usize, lr: f64) -> kiln::Result<()> {
    let cfg = kiln::precision::config::current()?;
    let device = match device {
        Some(d) => Device::parse(d)?,
        None => cfg.device,
    };
    let arrays = kiln::io::read_npz(path)?;
    let get = |k: &str| -> kiln::Result<&ArrayData> {
        arrays
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, a)| a)
            .ok_or_else(|| kiln::KilnError::Format {
                path: path.to_string(),
                message: format!("no array named {k:?} (expected x and y)"),
            })
    };
    let (xh, yh) = (get("x")?, get("y")?);
    println!(
        "data: {path}: x {:?} {}, y {:?} {}; device {device}; policy {}; x64 {}",
        xh.shape(),
        xh.dtype(),
        yh.shape(),
        yh.dtype(),
        cfg.policy.name(),
        if cfg.x64 { "on" } else { "off" }
    );
    let (x, report) = kiln::convert_to_tensor_with_report(xh, None, &device)?;
    match &report {
        Some(r) => println!(
            "conversion: {} -> {}: {}",
            xh.dtype(),
            x.dtype(),
            r.summary()
        ),
        None => println!("conversion: kept {}", x.dtype()),
    }
    // Class indices in whatever integer dtype the resolver gave them on this device (int32
    // with x64 off; int64 on CUDA, which has no int32).
    let y = kiln::convert_to_tensor(yh, None, &device)?;
    if !y.dtype().is_integer() {
        return Err(kiln::KilnError::Format {
            path: path.to_string(),
            message: format!("labels y are {}; expected integer class indices", y.dtype()),
        });
    }
    // Standardise features with the data's own statistics (constant pixels stay 0).
    let mean = ops::mean(&x, Some(&[0]), true)?;
    let std = ops::std(&x, Some(&[0]), true)?;
    let x = ops::divide(&ops::subtract(&x, &mean)?, &ops::add(&std, 1e-6)?)?;
    let n = x.shape()[0];
    let k = (ops::max(&y, None, false)?.to_f64_vec()?[0] as usize) + 1;
    let onehot = ops::one_hot(&y, k, Some(x.dtype()))?;
    let f = x.shape()[1];
    let mut w = ops::zeros(&[f, k], Some(x.dtype()), Some(x.device()))?;
    let mut b = ops::zeros(&[k], Some(x.dtype()), Some(x.device()))?;
    let xt = ops::transpose(&x, None)?;
    let loss_acc = |w: &Tensor, b: &Tensor| -> kiln::Result<(f64, f64)> {
        let logits = ops::add(&ops::matmul(&x, w)?, b)?;
        let logp = ops::log_softmax(&logits, -1)?;
        let loss = ops::negative(&ops::mean(
            &ops::sum(&ops::multiply(&logp, &onehot)?, Some(&[-1]), false)?,
            None,
            false,
        )?)?;
        let pred = ops::argmax(&logits, Some(-1), false)?;
        let acc = ops::mean(&ops::equal(&pred, &y)?, None, false)?;
        Ok((loss.to_f64_vec()?[0], acc.to_f64_vec()?[0]))
    };
    for epoch in 0..=epochs {
        if epoch % (epochs / 5).max(1) == 0 || epoch == epochs {
            let (l, a) = loss_acc(&w, &b)?;
            println!(
                "epoch {epoch:>4}: loss {l:.4}, train accuracy {:.2}%",
                100.0 * a
            );
        }
        if epoch == epochs {
            break;
        }
        let logits = ops::add(&ops::matmul(&x, &w)?, &b)?;
        let p = ops::softmax(&logits, -1)?;
        // d(mean cross-entropy)/d(logits) = (p - onehot) / n
        let g = ops::divide(&ops::subtract(&p, &onehot)?, n as f64)?;
        let gw = ops::matmul(&xt, &g)?;
        let gb = ops::sum(&g, Some(&[0]), false)?;
        w = ops::subtract(&w, &ops::multiply(&gw, lr)?)?;
        b = ops::subtract(&b, &ops::multiply(&gb, lr)?)?;
    }
    println!("done: weights {} on {}", w.dtype(), w.device());
    // What ran on the cpu instead of the device (cpu-fallback policy), by cause.
    let fallbacks = kiln::precision::warnings::fallback_summary();
    if fallbacks.is_empty() {
        println!("cpu fallbacks: none");
    } else {
        let list: Vec<String> = fallbacks.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("cpu fallbacks: {}", list.join(", "));
    }
    Ok(())
}
