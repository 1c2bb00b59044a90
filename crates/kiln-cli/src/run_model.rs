//! `kiln fit` / `kiln evaluate` / `kiln predict`: a saved model (`.keras` from Keras or
//! kiln, `.kiln`) on `.npz` data, from the command line, with `fit`'s progress output.
//!
//! ```text
//! kiln fit model.keras data.npz --x x --y y --epochs 5 --out trained.kiln
//! kiln evaluate trained.kiln data.npz
//! kiln predict trained.kiln data.npz --out predictions.npz
//! ```
//!
//! The arrays are named in the file (`--x a,b` for a model of two inputs); they enter the
//! device through the precision resolver as any data does.

use kiln::nn::{load_model, FitArgs, Model, Verbose};
use kiln::precision::{Policy, Scope};
use kiln::{ArrayData, Device, KilnError, Result};

/// What every model command takes.
#[derive(clap::Args)]
pub struct Common {
    /// The model file (.keras or .kiln).
    pub model: String,
    /// The data (.npz).
    pub data: String,
    /// The input arrays' names in the data, comma separated (one per model input).
    #[arg(long, default_value = "x")]
    pub x: String,
    /// The device to run on (default: the configured one).
    #[arg(long)]
    pub device: Option<String>,
    /// The precision policy: error, downcast or cpu-fallback.
    #[arg(long)]
    pub policy: Option<String>,
    /// Samples per batch.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
}

/// `kiln fit`'s options.
#[derive(clap::Args)]
pub struct FitOpts {
    #[command(flatten)]
    pub common: Common,
    /// The label arrays' names, comma separated (one per model output).
    #[arg(long, default_value = "y")]
    pub y: String,
    /// Epochs to train.
    #[arg(long, default_value_t = 1)]
    pub epochs: usize,
    /// The fraction of the data held out for validation (the last samples, as Keras).
    #[arg(long, default_value_t = 0.0)]
    pub validation_split: f64,
    /// Shuffle the samples each epoch.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub shuffle: bool,
    /// Where to save the trained model (.keras or .kiln); nothing is saved without it.
    #[arg(long)]
    pub out: Option<String>,
    /// 0 silent, 1 a bar per epoch, 2 a line per epoch (default: 1 on a terminal, else 2).
    #[arg(long)]
    pub verbose: Option<u8>,
}

/// `kiln evaluate`'s options.
#[derive(clap::Args)]
pub struct EvalOpts {
    #[command(flatten)]
    pub common: Common,
    /// The label arrays' names, comma separated.
    #[arg(long, default_value = "y")]
    pub y: String,
}

/// `kiln predict`'s options.
#[derive(clap::Args)]
pub struct PredictOpts {
    #[command(flatten)]
    pub common: Common,
    /// Where to write the predictions (.npz: one array per output, named by the output).
    #[arg(long)]
    pub out: String,
}

fn arrays(data: &[(String, ArrayData)], names: &str, file: &str) -> Result<Vec<ArrayData>> {
    names
        .split(',')
        .map(|n| {
            data.iter()
                .find(|(k, _)| k == n)
                .map(|(_, a)| a.clone())
                .ok_or_else(|| KilnError::InvalidArgument {
                    op: "kiln".into(),
                    message: format!(
                        "{file} has no array {n:?} (it has {:?}); name the arrays with --x / --y",
                        data.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>()
                    ),
                })
        })
        .collect()
}

/// Named arrays, as an .npz holds them.
type Arrays = Vec<(String, ArrayData)>;

/// Loads the model and the data under the chosen device and policy.
fn open(c: &Common) -> Result<(Scope, Model, Arrays)> {
    let mut scope = Scope::new();
    if let Some(d) = &c.device {
        scope = scope.device(Device::parse(d)?);
    }
    if let Some(p) = &c.policy {
        scope = scope.policy(Policy::parse(p)?);
    }
    let model = {
        let _s = scope.enter();
        load_model(&c.model)?
    };
    let data = kiln::io::read_npz(&c.data)?;
    Ok((scope, model, data))
}

/// The inputs and labels of a command that needs a loss (the model must be compiled).
fn labelled(
    model: &Model,
    c: &Common,
    y: &str,
    op: &str,
    data: &[(String, ArrayData)],
) -> Result<(Vec<ArrayData>, Vec<ArrayData>)> {
    if model.optimizer().is_none() {
        return Err(KilnError::InvalidArgument {
            op: op.into(),
            message: format!(
                "{} is not compiled (its file has no compile_config), so it has no loss: compile it before saving it, in Keras or kiln",
                c.model
            ),
        });
    }
    Ok((arrays(data, &c.x, &c.data)?, arrays(data, y, &c.data)?))
}

fn print_logs(what: &str, logs: &std::collections::BTreeMap<String, f64>) {
    let parts: Vec<String> = logs.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
    println!("{what}: {}", parts.join(" - "));
}

/// `kiln fit`.
pub fn fit(o: &FitOpts) -> Result<()> {
    let (scope, mut model, data) = open(&o.common)?;
    let _s = scope.enter();
    let (x, y) = labelled(&model, &o.common, &o.y, "kiln fit", &data)?;
    let verbose = o.verbose.map(Verbose::from_level).unwrap_or(Verbose::Auto);
    let start = model.optimizer().map(|o| o.iterations()).unwrap_or(0);
    let h = model.fit(
        &x,
        &y,
        FitArgs::default()
            .epochs(o.epochs)
            .batch_size(o.common.batch_size)
            .validation_split(o.validation_split)
            .shuffle(o.shuffle)
            .verbose(verbose),
    )?;
    let last: std::collections::BTreeMap<String, f64> = h
        .history
        .iter()
        .filter_map(|(k, v)| v.last().map(|l| (k.clone(), *l)))
        .collect();
    print_logs(
        &format!(
            "trained {} steps (optimizer iterations {} -> {})",
            model.optimizer().map(|o| o.iterations()).unwrap_or(0) - start,
            start,
            model.optimizer().map(|o| o.iterations()).unwrap_or(0)
        ),
        &last,
    );
    if let Some(out) = &o.out {
        model.save(out)?;
        println!("saved {out}");
    }
    Ok(())
}

/// `kiln evaluate`.
pub fn evaluate(o: &EvalOpts) -> Result<()> {
    let (scope, mut model, data) = open(&o.common)?;
    let _s = scope.enter();
    let (x, y) = labelled(&model, &o.common, &o.y, "kiln evaluate", &data)?;
    let logs = model.evaluate(&x, &y, o.common.batch_size)?;
    print_logs("evaluate", &logs);
    Ok(())
}

/// `kiln predict`.
pub fn predict(o: &PredictOpts) -> Result<()> {
    let (scope, mut model, data) = open(&o.common)?;
    let _s = scope.enter();
    let x = arrays(&data, &o.common.x, &o.common.data)?;
    let ys = model.predict_many(&x, o.common.batch_size)?;
    let names = model.output_names();
    let host: Vec<ArrayData> = ys.iter().map(|t| t.to_host()).collect::<Result<_>>()?;
    let named: Vec<(&str, &ArrayData)> =
        names.iter().map(String::as_str).zip(host.iter()).collect();
    kiln::io::write_npz(&o.out, &named, false)?;
    for (n, a) in &named {
        println!("{n}: {} {:?}", a.dtype(), a.shape());
    }
    println!("wrote {}", o.out);
    Ok(())
}
