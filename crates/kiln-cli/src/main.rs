//! The `kiln` command-line tool.
//!
//! * `kiln devices [--json]`: the capability matrix (device x dtype usage level).
//! * `kiln train [--data PATH] [--device D] [--policy P] [--dtype-policy NAME] ...`: the
//!   main job: an MLP trained with `kiln::nn` (Adam, batch 32, Keras's progress output) on
//!   the shipped float64 data, converted once through the resolver on the chosen device; it
//!   prints what the conversion did, the test score and the cpu fallbacks.
//! * `kiln doctor FILE --device D [--policy P] [--json]`: what a file's arrays become on D.
//! * `kiln convert IN OUT --device D [--dtype T]`: the converted file and its report.
//! * `kiln fit|evaluate|predict MODEL DATA.npz`: a saved model from the command line.

use clap::{Parser, Subcommand};
use kiln::{DType, Device};

mod run_model;
mod train;
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
    /// Check this build, or a file: `--matrix` runs every op on every dtype on every engine
    /// and device available here (real and simulated) and prints pass / adapted / refused /
    /// failed; `kiln doctor FILE --device D` lists every array of a .npy/.npz/.safetensors/
    /// .keras/.kiln/.h5 file, what the precision resolver would do with it on D under the
    /// policy, and the loss of every downcast measured on the values. Exits non-zero where the
    /// policy refuses an array.
    Doctor {
        /// A file to check (instead of the build).
        file: Option<String>,
        /// The device to check the file for (default: the configured one).
        #[arg(long)]
        device: Option<String>,
        /// The precision policy to check under: error, downcast or cpu-fallback (default: the
        /// configured one).
        #[arg(long)]
        policy: Option<String>,
        /// Print the file's report as JSON.
        #[arg(long)]
        json: bool,
        /// Run the op x dtype x engine x device matrix.
        #[arg(long)]
        matrix: bool,
        /// x64 modes: off, on or both (the matrix runs each; a file is checked with x64 on
        /// unless `off`, so each array is asked about in its own dtype).
        #[arg(long, default_value = "both")]
        x64: String,
        /// Engines: ndarray, candle or all.
        #[arg(long, default_value = "all")]
        engine: String,
        /// Devices (comma separated); default: cpu and every simulated profile.
        #[arg(long)]
        devices: Option<String>,
    },
    /// Train a Keras-style MLP on a float64 .npz dataset (x, y): the main job.
    Train(train::Args),
    /// Train a saved model (.keras or .kiln) on .npz data, with fit's progress output, and
    /// save it with --out.
    Fit(run_model::FitOpts),
    /// Evaluate a saved, compiled model on .npz data.
    Evaluate(run_model::EvalOpts),
    /// Predict with a saved model on .npz data; writes the predictions to an .npz.
    Predict(run_model::PredictOpts),
    /// Convert a file for a device: every array as the resolver decides there (or to
    /// `--dtype`), written to OUT with the report. A model file (.keras/.kiln) stays a model
    /// whose dtype policy follows its weights.
    Convert {
        /// The file to read.
        input: String,
        /// The file to write (.npz, .safetensors, .npy; .keras or .kiln for a model).
        output: String,
        /// The device to convert for.
        #[arg(long)]
        device: Option<String>,
        /// Cast every float array to this dtype instead of asking the resolver.
        #[arg(long)]
        dtype: Option<String>,
        /// The precision policy: error, downcast or cpu-fallback.
        #[arg(long)]
        policy: Option<String>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
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
            file: Some(file),
            device,
            policy,
            json,
            x64,
            ..
        } => doctor_file(&file, device.as_deref(), policy.as_deref(), &x64, json),
        Cmd::Doctor {
            matrix,
            x64,
            engine,
            devices,
            ..
        } => doctor(matrix, &x64, &engine, devices.as_deref()),
        Cmd::Convert {
            input,
            output,
            device,
            dtype,
            policy,
            json,
        } => convert(
            &input,
            &output,
            device.as_deref(),
            dtype.as_deref(),
            policy.as_deref(),
            json,
        ),
        Cmd::Train(args) => train::run(&args),
        Cmd::Fit(o) => run_model::fit(&o),
        Cmd::Evaluate(o) => run_model::evaluate(&o),
        Cmd::Predict(o) => run_model::predict(&o),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The configuration a file is checked under: the current one, with `--device`, `--policy`
/// and x64 (on unless `--x64 off`).
fn file_config(
    device: Option<&str>,
    policy: Option<&str>,
    x64: &str,
) -> kiln::Result<(Device, kiln::precision::Config)> {
    let mut cfg = kiln::precision::config::current()?;
    if let Some(p) = policy {
        cfg.policy = kiln::precision::Policy::parse(p)?;
    }
    cfg.x64 = x64 != "off";
    let d = match device {
        Some(d) => Device::parse(d)?,
        None => cfg.device,
    };
    Ok((d, cfg))
}

/// A file check, as text or JSON.
fn show(check: &kiln::doctor::file::FileCheck, json: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(check).unwrap_or_default()
        );
    } else {
        print!("{}", check.render());
    }
}

fn doctor_file(
    file: &str,
    device: Option<&str>,
    policy: Option<&str>,
    x64: &str,
    json: bool,
) -> kiln::Result<()> {
    let (d, cfg) = file_config(device, policy, x64)?;
    let check = kiln::doctor::file::check_file(file, d, &cfg)?;
    show(&check, json);
    match check.refused() {
        0 => Ok(()),
        n => Err(kiln::KilnError::InvalidArgument {
            op: "doctor".into(),
            message: format!(
                "{n} arrays of {file} are refused on {d} under policy {}",
                cfg.policy.name()
            ),
        }),
    }
}

fn convert(
    input: &str,
    output: &str,
    device: Option<&str>,
    dtype: Option<&str>,
    policy: Option<&str>,
    json: bool,
) -> kiln::Result<()> {
    let (d, cfg) = file_config(device, policy, "on")?;
    let dtype = dtype.map(DType::parse).transpose()?;
    let check = kiln::doctor::file::convert_file(input, output, d, dtype, &cfg)?;
    show(&check, json);
    if !json {
        println!("wrote {output}");
    }
    Ok(())
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
