//! `kiln train`: the main job. A fixed-seed train/test split of a shipped float64 dataset,
//! features standardised on the training rows, then each model fitted with Adam and its
//! test score: an MLP (`Input - Dense(hidden, relu) - Dense(out)`) and, on square images
//! (digits' 8x8), a convnet (`Conv2D(16, 3, relu) - Conv2D(32, 3, relu) - MaxPooling2D -
//! Flatten - Dense(out)`).

use kiln::nn::{
    Adam, Conv2D, DTypePolicy, Dense, FitArgs, Flatten, Input, Loss, MaxPooling2D, Sequential,
    Verbose,
};
use kiln::precision::{Policy, Scope};
use kiln::{ops, ArrayData, DType, Device, KilnError, Result};

/// `kiln train`'s flags.
#[derive(clap::Args)]
pub struct Args {
    /// The dataset (`x`: float64 [n, features], `y`: labels or targets [n]).
    #[arg(long, default_value = "data/digits.npz")]
    pub data: String,
    /// What to fit: `classify` (integer labels, softmax cross-entropy), `binary`
    /// (0/1 labels, one logit), `regress` (mean squared error), or `auto` (from y).
    #[arg(long, default_value = "auto")]
    pub task: String,
    /// Device (default: KILN_DEVICE, the config file, or cpu).
    #[arg(long)]
    pub device: Option<String>,
    /// Precision policy for dtypes the device lacks: error, downcast or cpu-fallback.
    #[arg(long)]
    pub policy: Option<String>,
    /// Keras dtype policy: float32, float64, bfloat16, float16, mixed_float16, mixed_bfloat16.
    #[arg(long, default_value = "float32")]
    pub dtype_policy: String,
    /// Epochs.
    #[arg(long, default_value_t = 20)]
    pub epochs: usize,
    /// Samples per step.
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Which models: `mlp`, `cnn` (square images only: the features reshaped to
    /// [side, side, 1]), `both`, or `auto` (both on square images of side 6 or more, else mlp).
    #[arg(long, default_value = "auto")]
    pub model: String,
    /// Units of the MLP's hidden layer.
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Adam's learning rate.
    #[arg(long, default_value_t = 1e-3)]
    pub lr: f64,
    /// Attach the precision monitor (with a float32 shadow): per variable and epoch, the
    /// updates lost to rounding, gradient underflow and overflow, the loss scale, the drift.
    #[arg(long)]
    pub precision_monitor: bool,
    /// Kahan-compensated updates for bfloat16 / float16 weights (try with
    /// `--dtype-policy bfloat16`).
    #[arg(long)]
    pub kahan: bool,
    /// Seed of the split, the initializers and the shuffles.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Progress: 0 silent, 1 bar, 2 a line per epoch (default: bar on a terminal).
    #[arg(long)]
    pub verbose: Option<u8>,
    /// Also write the split's row indices (`train`, `test`) to this .npz, for a
    /// comparison run elsewhere on the same rows (scripts/compare_training.py).
    #[arg(long)]
    pub split_out: Option<String>,
}

#[derive(Copy, Clone, PartialEq, Debug)]
enum Task {
    Classify(usize),
    Binary,
    Regress,
}

fn task_of(name: &str, y: &ArrayData) -> Result<Task> {
    let v = y.to_f64_vec();
    let whole = v.iter().all(|t| t.fract() == 0.0 && *t >= 0.0);
    let classes = v.iter().fold(0.0f64, |m, t| m.max(*t)) as usize + 1;
    Ok(match name {
        "classify" => Task::Classify(classes),
        "binary" => Task::Binary,
        "regress" => Task::Regress,
        "auto" if y.dtype().is_integer() && whole && classes == 2 => Task::Binary,
        "auto" if y.dtype().is_integer() && whole => Task::Classify(classes),
        "auto" => Task::Regress,
        other => {
            return Err(KilnError::InvalidArgument {
                op: "train".into(),
                message: format!("--task {other:?}: use auto, classify, binary or regress"),
            })
        }
    })
}

/// Column means and standard deviations of the training rows (float64, on the host side
/// of the cpu), applied to both sets: what scikit-learn's StandardScaler does.
fn standardize(train: &ArrayData, test: &ArrayData) -> Result<(ArrayData, ArrayData)> {
    let _x64 = Scope::new().x64(true).device(Device::Cpu).enter();
    let t = kiln::convert_to_tensor(train, Some(DType::Float64), &Device::Cpu)?;
    let mean = ops::mean(&t, Some(&[0]), true)?;
    let std = ops::std(&t, Some(&[0]), true)?;
    let std = ops::r#where(&ops::equal(&std, 0.0)?, 1.0, &std)?;
    let f = |a: &ArrayData| -> Result<ArrayData> {
        let x = kiln::convert_to_tensor(a, Some(DType::Float64), &Device::Cpu)?;
        ops::divide(&ops::subtract(&x, &mean)?, &std)?.to_host()
    };
    Ok((f(train)?, f(test)?))
}

pub fn run(a: &Args) -> Result<()> {
    let cfg = kiln::precision::config::current()?;
    let device = match &a.device {
        Some(d) => Device::parse(d)?,
        None => cfg.device,
    };
    let policy = match &a.policy {
        Some(p) => Policy::parse(p)?,
        None => cfg.policy,
    };
    let _scope = Scope::new().device(device).policy(policy).enter();
    let dtype_policy = DTypePolicy::new(&a.dtype_policy)?;
    let (x, y) = kiln::datasets::load_npz(&a.data)?;
    let task = task_of(&a.task, &y)?;
    println!(
        "data: {}: x {:?} {}, y {:?} {}; device {device}; policy {}; dtype policy {}; x64 {}",
        a.data,
        x.shape(),
        x.dtype(),
        y.shape(),
        y.dtype(),
        policy.name(),
        dtype_policy.name(),
        if cfg.x64 { "on" } else { "off" }
    );
    let (x_train, x_test, y_train, y_test) = kiln::datasets::train_test_split(&x, &y, 0.2, a.seed)?;
    if let Some(p) = &a.split_out {
        let (train, test) = kiln::datasets::split_indices(x.shape()[0], 0.2, a.seed);
        let idx = |v: Vec<usize>| {
            let n = v.len();
            ArrayData::from_shape_vec(&[n], v.into_iter().map(|i| i as i64).collect::<Vec<_>>())
        };
        kiln::io::write_npz(p, &[("train", &idx(train)?), ("test", &idx(test)?)], false)?;
    }
    let (x_train, x_test) = standardize(&x_train, &x_test)?;
    // Regression targets are standardised too (and the score reported in the data's units).
    let (y_mean, y_std) = if task == Task::Regress {
        let v = y_train.to_f64_vec();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let s = (v.iter().map(|t| (t - m) * (t - m)).sum::<f64>() / v.len() as f64).sqrt();
        (m, if s == 0.0 { 1.0 } else { s })
    } else {
        (0.0, 1.0)
    };
    let scale = |d: &ArrayData| -> Result<ArrayData> {
        let v: Vec<f64> = d
            .to_f64_vec()
            .iter()
            .map(|t| (t - y_mean) / y_std)
            .collect();
        ArrayData::from_shape_vec(&[v.len(), 1], v)
    };
    let (y_fit, y_eval) = match task {
        Task::Regress => (scale(&y_train)?, scale(&y_test)?),
        Task::Binary => {
            let col = |d: &ArrayData| {
                let v = d.to_f64_vec();
                ArrayData::from_shape_vec(&[v.len(), 1], v)
            };
            (col(&y_train)?, col(&y_test)?)
        }
        Task::Classify(_) => (y_train.clone(), y_test.clone()),
    };
    println!(
        "split: {} train / {} test (seed {}), features standardised on the training rows",
        x_train.shape()[0],
        x_test.shape()[0],
        a.seed
    );
    let (out, loss, metrics): (usize, Loss, &[&str]) = match task {
        Task::Classify(c) => (
            c,
            Loss::sparse_categorical_crossentropy(true),
            &["accuracy"],
        ),
        Task::Binary => (1, Loss::binary_crossentropy(true), &["accuracy"]),
        Task::Regress => (1, Loss::MeanSquaredError, &["mae"]),
    };
    let features = x_train.shape().get(1).copied().unwrap_or(1);
    let side = (1..=features).find(|s| s * s >= features).unwrap_or(1);
    let square = side * side == features && side >= 6;
    let kinds: &[&str] = match (a.model.as_str(), square) {
        ("auto", true) | ("both", true) => &["mlp", "cnn"],
        ("auto", false) | ("mlp", _) => &["mlp"],
        ("cnn", true) => &["cnn"],
        ("cnn", false) | ("both", false) => {
            return Err(KilnError::InvalidArgument {
                op: "train".into(),
                message: format!(
                    "--model {}: the convnet takes square images of side 6 or more, and {} has {features} features; use --model mlp",
                    a.model, a.data
                ),
            })
        }
        (other, _) => {
            return Err(KilnError::InvalidArgument {
                op: "train".into(),
                message: format!("--model {other:?}: use auto, mlp, cnn or both"),
            })
        }
    };
    let verbose = a.verbose.map(Verbose::from_level).unwrap_or(Verbose::Auto);
    for kind in kinds {
        let mut model = Sequential::new()
            .seed(a.seed)
            .dtype_policy(dtype_policy)
            .device(device);
        let images = |d: &ArrayData| {
            ArrayData::from_shape_vec(&[d.shape()[0], side, side, 1], d.to_f64_vec())
        };
        let (xtr, xte) = if *kind == "cnn" {
            model = model
                .name("convnet")
                .add(Input::new(&[side, side, 1]))
                .add(Conv2D::new(16, 3).activation("relu"))
                .add(Conv2D::new(32, 3).activation("relu"))
                .add(MaxPooling2D::default())
                .add(Flatten::new())
                .add(Dense::new(out));
            (images(&x_train)?, images(&x_test)?)
        } else {
            model = model
                .name("mlp")
                .add(Input::new(&[features]))
                .add(Dense::new(a.hidden).activation("relu"))
                .add(Dense::new(out));
            (x_train.clone(), x_test.clone())
        };
        if a.precision_monitor {
            model = model.callback(kiln::nn::PrecisionMonitor::new().shadow(true));
        }
        let opt = kiln::nn::Optimizer::from(Adam::new(a.lr)).kahan_summation(a.kahan);
        model.compile(opt, loss, metrics)?;
        print!("{}", model.summary()?);
        let start = std::time::Instant::now();
        let history = model.fit(
            &xtr,
            &y_fit,
            FitArgs::default()
                .epochs(a.epochs)
                .batch_size(a.batch_size)
                .seed(a.seed)
                .verbose(verbose),
        )?;
        let secs = start.elapsed().as_secs_f64();
        let test = model.evaluate(&xte, &y_eval, a.batch_size)?;
        println!(
            "{kind}: trained {} epochs in {:.2} s ({:.2} ms/epoch); final loss {:.4}",
            history.epoch.len(),
            secs,
            1e3 * secs / history.epoch.len().max(1) as f64,
            history
                .get("loss")
                .and_then(|l| l.last())
                .copied()
                .unwrap_or(f64::NAN)
        );
        let w = &model.variables()[0];
        println!("weights: {} on {}", w.dtype(), w.value().device());
        if let Some(o) = model.optimizer().filter(|o| o.is_loss_scaled()) {
            println!(
                "loss scale: {} at the end ({} of {} steps skipped for non-finite gradients)",
                o.loss_scale().unwrap_or(f64::NAN),
                o.skipped_steps(),
                o.skipped_steps() + o.iterations()
            );
        }
        match task {
            Task::Classify(_) | Task::Binary => {
                println!("test accuracy: {:.2}% ({kind})", 100.0 * test["accuracy"]);
            }
            Task::Regress => {
                // Back to the data's units; against predicting the training mean.
                let mse = test["loss"] * y_std * y_std;
                let yt = y_test.to_f64_vec();
                let base =
                    yt.iter().map(|t| (t - y_mean) * (t - y_mean)).sum::<f64>() / yt.len() as f64;
                println!(
                    "test mse: {mse:.1} (the training mean predicts {base:.1}: {:.1}% lower) ({kind})",
                    100.0 * (1.0 - mse / base)
                );
            }
        }
    }
    let fallbacks = kiln::precision::warnings::fallback_summary();
    if fallbacks.is_empty() {
        println!("cpu fallbacks: none");
    } else {
        let list: Vec<String> = fallbacks.iter().map(|(k, n)| format!("{k} x{n}")).collect();
        println!("cpu fallbacks: {}", list.join(", "));
    }
    Ok(())
}
