//! The callbacks Keras ships, with Keras's names, arguments, defaults and semantics:
//! [`EarlyStopping`], [`ModelCheckpoint`], [`ReduceLROnPlateau`], [`LearningRateScheduler`],
//! [`CSVLogger`], [`TerminateOnNaN`] (and `ProgbarLogger` in the parent module).

use super::{Callback, Logs, TrainControl};
use crate::error::{KilnError, Result};
use std::io::Write;

/// How a monitored value improves (Keras's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// From the name: `loss` and errors decrease, accuracies and AUC increase.
    Auto,
    /// Lower is better.
    Min,
    /// Higher is better.
    Max,
}

impl Mode {
    /// Keras's name (`"auto"`, `"min"`, `"max"`).
    pub fn parse(s: &str) -> Result<Mode> {
        match s {
            "auto" => Ok(Mode::Auto),
            "min" => Ok(Mode::Min),
            "max" => Ok(Mode::Max),
            other => Err(KilnError::invalid(
                "mode",
                format!("{other:?} is not a mode; use \"auto\", \"min\" or \"max\""),
            )),
        }
    }
}

/// The part of Keras's `MonitorCallback` that EarlyStopping, ModelCheckpoint and
/// ReduceLROnPlateau share: which value, which direction, by how much.
#[derive(Clone, Debug)]
struct Monitor {
    monitor: String,
    mode: Mode,
    min_delta: f64,
    best: Option<f64>,
}

impl Monitor {
    fn new(monitor: &str, mode: Mode, min_delta: f64) -> Monitor {
        Monitor {
            monitor: monitor.into(),
            mode,
            min_delta: min_delta.abs(),
            best: None,
        }
    }

    /// Whether higher is better, resolving `auto` from the metric's name as Keras resolves it
    /// from the metric's direction.
    fn higher_is_better(&self, who: &str) -> Result<bool> {
        match self.mode {
            Mode::Min => Ok(false),
            Mode::Max => Ok(true),
            Mode::Auto => {
                let m = self.monitor.strip_prefix("val_").unwrap_or(&self.monitor);
                let up = [
                    "accuracy",
                    "acc",
                    "auc",
                    "precision",
                    "recall",
                    "r2_score",
                    "r2",
                ];
                let down = [
                    "loss",
                    "mae",
                    "mse",
                    "rmse",
                    "mean_absolute_error",
                    "mean_squared_error",
                    "root_mean_squared_error",
                    "mean_absolute_percentage_error",
                    "mean_squared_logarithmic_error",
                ];
                if up.contains(&m) || m.ends_with("_accuracy") {
                    Ok(true)
                } else if down.contains(&m) || m.ends_with("crossentropy") {
                    Ok(false)
                } else {
                    Err(KilnError::invalid(
                        who,
                        format!(
                            "cannot tell whether {:?} should be maximized or minimized; pass mode \"max\" or \"min\"",
                            self.monitor
                        ),
                    ))
                }
            }
        }
    }

    /// Keras's `_is_improvement`: `current` beats `reference` by more than `min_delta`.
    fn improves(&self, who: &str, current: f64, reference: Option<f64>) -> Result<bool> {
        let Some(r) = reference else {
            return Ok(true);
        };
        Ok(if self.higher_is_better(who)? {
            current - self.min_delta > r
        } else {
            current + self.min_delta < r
        })
    }

    /// The monitored value, or a warning (once per cause) naming the logs there are.
    fn value(&self, who: &str, logs: &Logs) -> Option<f64> {
        let v = logs.get(&self.monitor).copied();
        if v.is_none() {
            let have: Vec<&str> = logs.keys().map(|k| k.as_str()).collect();
            crate::precision::warnings::warn(
                &format!("callback-monitor:{who}:{}", self.monitor),
                &format!(
                    "{who} is conditioned on metric `{}`, which is not available; available metrics are: {}",
                    self.monitor,
                    have.join(",")
                ),
                crate::precision::WarnMode::Once,
            );
        }
        v
    }
}

/// The builders of the callbacks that watch a value: `monitor`, `mode`, `verbose`.
macro_rules! monitor_builders {
    () => {
        /// The value to watch (default `val_loss`).
        pub fn monitor(mut self, name: &str) -> Self {
            self.m.monitor = name.into();
            self
        }
        /// `auto`, `min` or `max`.
        pub fn mode(mut self, mode: Mode) -> Self {
            self.m.mode = mode;
            self
        }
        /// 1: say what it does (stops, restores, reduces, saves).
        pub fn verbose(mut self, v: u8) -> Self {
            self.verbose = v;
            self
        }
    };
}

/// Stops training when a monitored value has stopped improving (Keras's `EarlyStopping`).
/// Defaults: monitor `val_loss`, min_delta 0, patience 0, mode auto, no baseline, no
/// restoring, start_from_epoch 0. With `restore_best_weights` the best epoch's weights are
/// restored when training ends, whether or not it stopped early (as Keras does).
///
/// ```
/// use kiln::nn::callbacks::builtin::EarlyStopping;
/// let es = EarlyStopping::new().monitor("val_accuracy").patience(3).restore_best_weights(true);
/// assert_eq!(es.stopped_epoch(), 0);
/// ```
#[derive(Clone, Debug)]
pub struct EarlyStopping {
    m: Monitor,
    patience: usize,
    verbose: u8,
    baseline: Option<f64>,
    restore_best_weights: bool,
    start_from_epoch: usize,
    wait: usize,
    stopped_epoch: usize,
    best_epoch: usize,
    best_weights: Option<Vec<crate::array::ArrayData>>,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            m: Monitor::new("val_loss", Mode::Auto, 0.0),
            patience: 0,
            verbose: 0,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            wait: 0,
            stopped_epoch: 0,
            best_epoch: 0,
            best_weights: None,
        }
    }
}

impl EarlyStopping {
    /// Keras's defaults.
    pub fn new() -> EarlyStopping {
        EarlyStopping::default()
    }
    monitor_builders!();
    /// The smallest change that counts as an improvement.
    pub fn min_delta(mut self, d: f64) -> Self {
        self.m.min_delta = d.abs();
        self
    }
    /// Epochs without improvement before stopping.
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    /// A value the monitor must beat for patience to reset.
    pub fn baseline(mut self, b: f64) -> Self {
        self.baseline = Some(b);
        self
    }
    /// Restore the best epoch's weights at the end of training.
    pub fn restore_best_weights(mut self, on: bool) -> Self {
        self.restore_best_weights = on;
        self
    }
    /// Epochs to wait before watching.
    pub fn start_from_epoch(mut self, e: usize) -> Self {
        self.start_from_epoch = e;
        self
    }
    /// The epoch it stopped at (0 if it did not).
    pub fn stopped_epoch(&self) -> usize {
        self.stopped_epoch
    }
    /// The best epoch so far.
    pub fn best_epoch(&self) -> usize {
        self.best_epoch
    }
    /// The best monitored value so far.
    pub fn best(&self) -> Option<f64> {
        self.m.best
    }
}

impl Callback for EarlyStopping {
    fn on_train_begin(&mut self, _ctl: &mut TrainControl<'_>) -> Result<()> {
        self.wait = 0;
        self.stopped_epoch = 0;
        self.m.best = None;
        self.best_weights = None;
        self.best_epoch = 0;
        // Fail before the first epoch if the direction cannot be told.
        self.m.higher_is_better("EarlyStopping")?;
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        ctl: &mut TrainControl<'_>,
    ) -> Result<()> {
        let Some(current) = self.m.value("EarlyStopping", logs) else {
            return Ok(());
        };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(ctl.get_weights()?);
            self.best_epoch = epoch;
        }
        self.wait += 1;
        if self.m.improves("EarlyStopping", current, self.m.best)? {
            self.m.best = Some(current);
            self.best_epoch = epoch;
            if self.restore_best_weights {
                self.best_weights = Some(ctl.get_weights()?);
            }
            if self.baseline.is_none()
                || self.m.improves("EarlyStopping", current, self.baseline)?
            {
                self.wait = 0;
            }
            return Ok(());
        }
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = epoch;
            ctl.stop_training = true;
        }
        Ok(())
    }
    fn on_train_end(&mut self, ctl: &mut TrainControl<'_>) -> Result<()> {
        if self.stopped_epoch > 0 && self.verbose > 0 {
            println!("Epoch {}: early stopping", self.stopped_epoch + 1);
        }
        if self.restore_best_weights {
            if let Some(w) = &self.best_weights {
                if self.verbose > 0 {
                    println!(
                        "Restoring model weights from the end of the best epoch: {}.",
                        self.best_epoch + 1
                    );
                }
                ctl.set_weights(w)?;
            }
        }
        Ok(())
    }
}

/// Multiplies the learning rate by `factor` when a monitored value has stopped improving
/// (Keras's `ReduceLROnPlateau`). Defaults: monitor `val_loss`, factor 0.1, patience 10,
/// mode auto, min_delta 1e-4, cooldown 0, min_lr 0.
#[derive(Clone, Debug)]
pub struct ReduceLROnPlateau {
    m: Monitor,
    factor: f64,
    patience: usize,
    verbose: u8,
    cooldown: usize,
    min_lr: f64,
    cooldown_counter: usize,
    wait: usize,
}

impl Default for ReduceLROnPlateau {
    fn default() -> Self {
        ReduceLROnPlateau {
            m: Monitor::new("val_loss", Mode::Auto, 1e-4),
            factor: 0.1,
            patience: 10,
            verbose: 0,
            cooldown: 0,
            min_lr: 0.0,
            cooldown_counter: 0,
            wait: 0,
        }
    }
}

impl ReduceLROnPlateau {
    /// Keras's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    monitor_builders!();
    /// The multiplier (below 1; checked when training begins, as Keras checks it when built).
    pub fn factor(mut self, f: f64) -> Self {
        self.factor = f;
        self
    }
    /// Epochs without improvement before reducing.
    pub fn patience(mut self, p: usize) -> Self {
        self.patience = p;
        self
    }
    /// The smallest change that counts as an improvement.
    pub fn min_delta(mut self, d: f64) -> Self {
        self.m.min_delta = d.abs();
        self
    }
    /// Epochs to wait after a reduction before watching again.
    pub fn cooldown(mut self, c: usize) -> Self {
        self.cooldown = c;
        self
    }
    /// The rate never goes below this.
    pub fn min_lr(mut self, lr: f64) -> Self {
        self.min_lr = lr;
        self
    }
}

impl Callback for ReduceLROnPlateau {
    fn on_train_begin(&mut self, _ctl: &mut TrainControl<'_>) -> Result<()> {
        if self.factor.is_nan() || self.factor >= 1.0 {
            return Err(KilnError::invalid(
                "ReduceLROnPlateau",
                format!("factor must be below 1.0, got {}", self.factor),
            ));
        }
        self.m.higher_is_better("ReduceLROnPlateau")?;
        self.m.best = None;
        self.cooldown_counter = 0;
        self.wait = 0;
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        ctl: &mut TrainControl<'_>,
    ) -> Result<()> {
        let mut logs = logs.clone();
        logs.insert("learning_rate".into(), ctl.learning_rate()?);
        let Some(current) = self.m.value("ReduceLROnPlateau", &logs) else {
            return Ok(());
        };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.m.improves("ReduceLROnPlateau", current, self.m.best)? {
            self.m.best = Some(current);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            if self.wait >= self.patience {
                let old = ctl.learning_rate()?;
                // Keras compares with min_lr rounded to float32.
                if old > self.min_lr as f32 as f64 {
                    let new = (old * self.factor).max(self.min_lr);
                    ctl.set_learning_rate(new)?;
                    if self.verbose > 0 {
                        println!(
                            "\nEpoch {}: ReduceLROnPlateau reducing learning rate to {new}.",
                            epoch + 1
                        );
                    }
                    self.cooldown_counter = self.cooldown;
                    self.wait = 0;
                }
            }
        }
        Ok(())
    }
}

/// Sets the learning rate at the start of each epoch from `schedule(epoch, current rate)`
/// (Keras's `LearningRateScheduler`).
///
/// ```
/// use kiln::nn::callbacks::builtin::LearningRateScheduler;
/// // Halve every 10 epochs.
/// let s = LearningRateScheduler::new(|epoch, lr| if epoch > 0 && epoch % 10 == 0 { lr * 0.5 } else { lr });
/// ```
pub struct LearningRateScheduler {
    schedule: Box<dyn FnMut(usize, f64) -> f64 + Send>,
    verbose: u8,
}

impl LearningRateScheduler {
    /// A schedule of the epoch and the current rate.
    pub fn new(schedule: impl FnMut(usize, f64) -> f64 + Send + 'static) -> Self {
        LearningRateScheduler {
            schedule: Box::new(schedule),
            verbose: 0,
        }
    }
    /// 1: say each epoch's rate.
    pub fn verbose(mut self, v: u8) -> Self {
        self.verbose = v;
        self
    }
}

impl Callback for LearningRateScheduler {
    fn on_epoch_begin(&mut self, epoch: usize, ctl: &mut TrainControl<'_>) -> Result<()> {
        let lr = (self.schedule)(epoch, ctl.learning_rate()?);
        ctl.set_learning_rate(lr)?;
        if self.verbose > 0 {
            println!(
                "\nEpoch {}: LearningRateScheduler setting learning rate to {lr}.",
                epoch + 1
            );
        }
        Ok(())
    }
}

/// Ends training cleanly on a non-finite loss (Keras's `TerminateOnNaN`): without it kiln's
/// `fit` stops with `KilnError::NonFinite` (never a silent NaN model); with it the batch is
/// not applied, a line is printed and `fit` returns its history. `raise_error(true)` keeps
/// the error.
#[derive(Clone, Debug, Default)]
pub struct TerminateOnNaN {
    raise_error: bool,
}

impl TerminateOnNaN {
    /// Keras's default (no error).
    pub fn new() -> Self {
        Self::default()
    }
    /// Fail instead of stopping.
    pub fn raise_error(mut self, on: bool) -> Self {
        self.raise_error = on;
        self
    }
}

impl Callback for TerminateOnNaN {
    fn on_non_finite_loss(
        &mut self,
        batch: usize,
        _loss: f64,
        ctl: &mut TrainControl<'_>,
    ) -> Result<bool> {
        if self.raise_error {
            return Ok(false);
        }
        println!("Batch {batch}: Invalid loss, terminating training");
        ctl.stop_training = true;
        Ok(true)
    }
}

/// Streams each epoch's logs to a CSV file (Keras's `CSVLogger`): a header `epoch,<keys>`
/// (keys sorted, as Keras's are), one row per epoch. Defaults: separator `,`, no append.
pub struct CSVLogger {
    filename: String,
    separator: String,
    append: bool,
    keys: Option<Vec<String>>,
    file: Option<std::io::BufWriter<std::fs::File>>,
}

impl CSVLogger {
    /// Writes to `filename`.
    pub fn new(filename: &str) -> Self {
        CSVLogger {
            filename: filename.into(),
            separator: ",".into(),
            append: false,
            keys: None,
            file: None,
        }
    }
    /// The field separator.
    pub fn separator(mut self, s: &str) -> Self {
        self.separator = s.into();
        self
    }
    /// Append to an existing file (no second header).
    pub fn append(mut self, on: bool) -> Self {
        self.append = on;
        self
    }
    fn io(&self, e: std::io::Error) -> KilnError {
        KilnError::invalid(
            "CSVLogger",
            format!("cannot write {:?}: {e}", self.filename),
        )
    }
}

impl Callback for CSVLogger {
    fn on_train_begin(&mut self, _ctl: &mut TrainControl<'_>) -> Result<()> {
        let existed = self.append && std::fs::metadata(&self.filename).is_ok_and(|m| m.len() > 0);
        let f = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .append(self.append)
            .truncate(!self.append)
            .open(&self.filename)
            .map_err(|e| self.io(e))?;
        self.file = Some(std::io::BufWriter::new(f));
        // Appending to a file that has a header: keep its columns.
        self.keys = None;
        if existed {
            self.keys = Some(Vec::new());
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, _c: &mut TrainControl<'_>) -> Result<()> {
        let sep = self.separator.clone();
        let mut header = None;
        if self.keys.is_none() {
            let keys: Vec<String> = logs.keys().cloned().collect();
            header = Some(format!("epoch{sep}{}\n", keys.join(&sep)));
            self.keys = Some(keys);
        } else if self.keys.as_ref().is_some_and(|k| k.is_empty()) {
            self.keys = Some(logs.keys().cloned().collect());
        }
        let keys = self.keys.clone().unwrap_or_default();
        let row: Vec<String> = keys
            .iter()
            .map(|k| logs.get(k).map(|v| format!("{v:?}")).unwrap_or("NA".into()))
            .collect();
        let line = format!("{epoch}{sep}{}\n", row.join(&sep));
        let r = (|| -> std::io::Result<()> {
            let f = self.file.as_mut().ok_or(std::io::ErrorKind::NotConnected)?;
            if let Some(h) = header {
                f.write_all(h.as_bytes())?;
            }
            f.write_all(line.as_bytes())?;
            f.flush()
        })();
        r.map_err(|e| self.io(e))
    }
    fn on_train_end(&mut self, _ctl: &mut TrainControl<'_>) -> Result<()> {
        self.file = None;
        Ok(())
    }
}

/// Saves the model's weights after epochs (Keras's `ModelCheckpoint`, weights only for now:
/// kiln's native weights file, an `.npz` of `layer/variable` arrays that
/// `Model::load_weights` reads). `filepath` may name the epoch and any log value, as in
/// Keras: `"ckpt/{epoch:02d}-{val_loss:.2f}.weights.npz"` (the epoch counted from 1).
/// Defaults: monitor `val_loss`, not only the best, mode auto, every epoch.
#[derive(Clone, Debug)]
pub struct ModelCheckpoint {
    filepath: String,
    m: Monitor,
    verbose: u8,
    save_best_only: bool,
    initial_value_threshold: Option<f64>,
}

impl ModelCheckpoint {
    /// Saves to `filepath` (a template) after every epoch.
    pub fn new(filepath: &str) -> Self {
        ModelCheckpoint {
            filepath: filepath.into(),
            m: Monitor::new("val_loss", Mode::Auto, 0.0),
            verbose: 0,
            save_best_only: false,
            initial_value_threshold: None,
        }
    }
    monitor_builders!();
    /// Save only when the monitored value improves.
    pub fn save_best_only(mut self, on: bool) -> Self {
        self.save_best_only = on;
        self
    }
    /// The value the first save must beat.
    pub fn initial_value_threshold(mut self, v: f64) -> Self {
        self.initial_value_threshold = Some(v);
        self
    }
}

/// Keras's filepath template: `{epoch}`, `{epoch:02d}`, `{val_loss:.2f}`, ... from the epoch
/// (counted from 1) and the logs.
pub(crate) fn format_filepath(template: &str, epoch: usize, logs: &Logs) -> Result<String> {
    let mut out = String::new();
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(KilnError::invalid(
                "ModelCheckpoint",
                format!("unbalanced '{{' in filepath {template:?}"),
            ));
        };
        let field = &rest[open + 1..open + close];
        let (name, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = if name == "epoch" {
            (epoch + 1) as f64
        } else {
            *logs.get(name).ok_or_else(|| {
                KilnError::invalid(
                    "ModelCheckpoint",
                    format!(
                        "filepath {template:?} names {name:?}, which the logs lack (they have {:?})",
                        logs.keys().collect::<Vec<_>>()
                    ),
                )
            })?
        };
        let bad = || {
            KilnError::invalid(
                "ModelCheckpoint",
                format!("unsupported format {spec:?} in filepath {template:?}; use d, 0Nd or .Nf"),
            )
        };
        let text = if spec.is_empty() {
            if name == "epoch" {
                format!("{}", epoch + 1)
            } else {
                format!("{value}")
            }
        } else if let Some(w) = spec.strip_suffix('d') {
            let width: usize = if w.is_empty() {
                0
            } else {
                w.parse().map_err(|_| bad())?
            };
            format!("{:0width$}", value.round() as i64)
        } else if let Some(p) = spec.strip_prefix('.').and_then(|p| p.strip_suffix('f')) {
            let prec: usize = p.parse().map_err(|_| bad())?;
            format!("{value:.prec$}")
        } else {
            return Err(bad());
        };
        out.push_str(&text);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

impl Callback for ModelCheckpoint {
    fn on_train_begin(&mut self, _ctl: &mut TrainControl<'_>) -> Result<()> {
        if self.save_best_only {
            self.m.higher_is_better("ModelCheckpoint")?;
        }
        self.m.best = self.initial_value_threshold;
        Ok(())
    }
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        ctl: &mut TrainControl<'_>,
    ) -> Result<()> {
        let path = format_filepath(&self.filepath, epoch, logs)?;
        if self.save_best_only {
            let Some(current) = self.m.value("ModelCheckpoint", logs) else {
                return Ok(());
            };
            if !self.m.improves("ModelCheckpoint", current, self.m.best)? {
                if self.verbose > 0 {
                    println!(
                        "\nEpoch {}: {} did not improve from {}",
                        epoch + 1,
                        self.m.monitor,
                        self.m.best.unwrap_or(f64::NAN)
                    );
                }
                return Ok(());
            }
            if self.verbose > 0 {
                println!(
                    "\nEpoch {}: {} improved from {} to {current}, saving model to {path}",
                    epoch + 1,
                    self.m.monitor,
                    self.m.best.unwrap_or(f64::INFINITY)
                );
            }
            self.m.best = Some(current);
        } else if self.verbose > 0 {
            println!("\nEpoch {}: saving model to {path}", epoch + 1);
        }
        ctl.save_weights(&path)
    }
}
