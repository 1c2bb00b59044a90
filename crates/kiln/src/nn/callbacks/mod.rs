//! Callbacks (Keras's `keras.callbacks`), the `History` that `fit` returns, and Keras's
//! progress output. The callbacks Keras ships are in [`builtin`]; write your own by
//! implementing [`Callback`].

use crate::array::ArrayData;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

pub mod builtin;
pub mod precision;

/// Metric values by name (`loss`, `accuracy`, `val_loss`...), sorted as Keras prints them.
pub type Logs = BTreeMap<String, f64>;

/// One training step: every trainable variable before and after it, and its gradient (of
/// the scaled loss, under loss scaling). What the precision monitor measures.
#[derive(Clone, Copy, Debug)]
pub struct StepInfo<'s> {
    /// The epoch.
    pub epoch: usize,
    /// The batch within the epoch.
    pub batch: usize,
    /// Each trainable variable's path (`layer/variable`).
    pub names: &'s [String],
    /// Their values before the step.
    pub before: &'s [Tensor],
    /// Their values after it (the same tensors where the step was skipped).
    pub after: &'s [Tensor],
    /// Their gradients, as the optimizer received them (before unscaling).
    pub grads: &'s [Tensor],
    /// Whether the optimizer applied the step (false: skipped by loss scaling).
    pub applied: bool,
    /// The loss scale the gradients carry, under loss scaling.
    pub loss_scale: Option<f64>,
    /// The dtype the layers computed in.
    pub compute_dtype: crate::dtype::DType,
}

/// What `fit` runs (Keras's `callback.params`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrainParams {
    /// The epoch `fit` stops before (`epochs`).
    pub epochs: usize,
    /// Training steps per epoch.
    pub steps: usize,
    /// 0 silent, 1 bar, 2 a line per epoch.
    pub verbose: u8,
}

/// What a model lets its callbacks do (Keras's `callback.model`).
pub(crate) trait TrainModel {
    fn get_weights(&self) -> Result<Vec<ArrayData>>;
    fn set_weights(&mut self, weights: &[ArrayData]) -> Result<()>;
    fn learning_rate(&self) -> Result<f64>;
    fn set_learning_rate(&mut self, lr: f64) -> Result<()>;
    fn save_weights(&self, path: &str) -> Result<()>;
    fn optimizer(&self) -> Result<crate::nn::optimizers::Optimizer>;
}

/// What a callback can see of `fit` and ask of it: stop, read and set the model's weights and
/// its optimizer's learning rate, save the weights (Keras's `self.model` in a callback).
pub struct TrainControl<'a> {
    /// Stop training (Keras's `model.stop_training = True`): `fit` stops after the current
    /// batch (checked after every batch and epoch, as in Keras).
    pub stop_training: bool,
    model: Option<&'a mut dyn TrainModel>,
    params: TrainParams,
}

impl std::fmt::Debug for TrainControl<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TrainControl")
            .field("stop_training", &self.stop_training)
            .field("params", &self.params)
            .finish()
    }
}

impl<'a> TrainControl<'a> {
    /// A control over `model` (what `fit` hands each hook; also for driving a callback by
    /// hand).
    pub fn new(model: &'a mut crate::nn::Model, params: TrainParams) -> Self {
        TrainControl {
            stop_training: false,
            model: Some(model),
            params,
        }
    }
    /// A control with no model behind it (for driving a callback by hand, in tests): the
    /// model accessors are errors.
    pub fn detached(params: TrainParams) -> TrainControl<'static> {
        TrainControl {
            stop_training: false,
            model: None,
            params,
        }
    }
    /// What `fit` runs.
    pub fn params(&self) -> TrainParams {
        self.params
    }
    fn model(&self, what: &str) -> Result<&dyn TrainModel> {
        match &self.model {
            Some(m) => Ok(&**m),
            None => Err(KilnError::invalid(
                what,
                "this TrainControl has no model behind it (TrainControl::detached)",
            )),
        }
    }
    fn model_mut(&mut self, what: &str) -> Result<&mut dyn TrainModel> {
        match &mut self.model {
            Some(m) => Ok(&mut **m),
            None => Err(KilnError::invalid(
                what,
                "this TrainControl has no model behind it (TrainControl::detached)",
            )),
        }
    }
    /// The model's weights, as `Model::get_weights`.
    pub fn get_weights(&self) -> Result<Vec<ArrayData>> {
        self.model("get_weights")?.get_weights()
    }
    /// Sets the model's weights, as `Model::set_weights`.
    pub fn set_weights(&mut self, weights: &[ArrayData]) -> Result<()> {
        self.model_mut("set_weights")?.set_weights(weights)
    }
    /// The optimizer's learning rate for the next step.
    pub fn learning_rate(&self) -> Result<f64> {
        self.model("learning_rate")?.learning_rate()
    }
    /// Sets a constant learning rate (see `Optimizer::set_learning_rate`).
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        self.model_mut("set_learning_rate")?.set_learning_rate(lr)
    }
    /// A copy of the model's optimizer (its settings and state).
    pub fn optimizer(&self) -> Result<crate::nn::optimizers::Optimizer> {
        self.model("optimizer")?.optimizer()
    }
    /// Saves the weights (as `Model::save_weights`).
    pub fn save_weights(&self, path: &str) -> Result<()> {
        self.model("save_weights")?.save_weights(path)
    }
}

/// Hooks into `fit` (Keras's `Callback`). Every method has an empty default.
#[allow(unused_variables)]
pub trait Callback: Send {
    /// Before the first epoch.
    fn on_train_begin(&mut self, ctl: &mut TrainControl<'_>) -> Result<()> {
        Ok(())
    }
    /// After the last epoch (also after an early stop).
    fn on_train_end(&mut self, ctl: &mut TrainControl<'_>) -> Result<()> {
        Ok(())
    }
    /// Before each epoch.
    fn on_epoch_begin(&mut self, epoch: usize, ctl: &mut TrainControl<'_>) -> Result<()> {
        Ok(())
    }
    /// After each epoch, with its logs (training means and `val_*`).
    fn on_epoch_end(
        &mut self,
        epoch: usize,
        logs: &Logs,
        ctl: &mut TrainControl<'_>,
    ) -> Result<()> {
        Ok(())
    }
    /// Before each training batch.
    fn on_batch_begin(&mut self, batch: usize, ctl: &mut TrainControl<'_>) -> Result<()> {
        Ok(())
    }
    /// After each training batch, with the running means of the epoch.
    fn on_batch_end(
        &mut self,
        batch: usize,
        logs: &Logs,
        ctl: &mut TrainControl<'_>,
    ) -> Result<()> {
        Ok(())
    }
    /// Whether this callback wants [`on_train_step`](Callback::on_train_step) (it costs a
    /// copy of the weights' handles per step, so only callbacks that ask get it).
    fn wants_steps(&self) -> bool {
        false
    }
    /// After each training step, with what it did to every trainable variable (only when
    /// [`wants_steps`](Callback::wants_steps)).
    fn on_train_step(&mut self, step: &StepInfo<'_>, ctl: &mut TrainControl<'_>) -> Result<()> {
        Ok(())
    }
    /// A batch's loss was not finite (the step was not applied). `fit` fails with
    /// `KilnError::NonFinite` unless a callback returns `true` here, which ends training
    /// cleanly instead (what `TerminateOnNaN` does).
    fn on_non_finite_loss(
        &mut self,
        batch: usize,
        loss: f64,
        ctl: &mut TrainControl<'_>,
    ) -> Result<bool> {
        Ok(false)
    }
}

/// Every metric per epoch (Keras's `History.history`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// The epochs run.
    pub epoch: Vec<usize>,
    /// Each metric's value per epoch.
    pub history: BTreeMap<String, Vec<f64>>,
}

impl History {
    pub(crate) fn push(&mut self, epoch: usize, logs: &Logs) {
        self.epoch.push(epoch);
        for (k, v) in logs {
            self.history.entry(k.clone()).or_default().push(*v);
        }
    }
    /// One metric's values per epoch.
    pub fn get(&self, name: &str) -> Option<&[f64]> {
        self.history.get(name).map(|v| v.as_slice())
    }
}

/// Progress output: 0 silent, 1 a progress bar, 2 one line per epoch.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Verbose {
    /// 1 where stderr is a terminal, else 2 (Keras's `"auto"`).
    #[default]
    Auto,
    /// Nothing.
    Silent,
    /// A bar per epoch.
    Bar,
    /// A line per epoch.
    Line,
}

impl Verbose {
    /// From Keras's integers.
    pub fn from_level(v: u8) -> Verbose {
        match v {
            0 => Verbose::Silent,
            1 => Verbose::Bar,
            _ => Verbose::Line,
        }
    }
    pub(crate) fn resolve(self) -> u8 {
        match self {
            Verbose::Auto => {
                if std::io::stderr().is_terminal() {
                    1
                } else {
                    2
                }
            }
            Verbose::Silent => 0,
            Verbose::Bar => 1,
            Verbose::Line => 2,
        }
    }
}

/// Keras's number format in logs: 4 decimals, scientific below 1e-3.
pub(crate) fn fmt_value(v: f64) -> String {
    if v != 0.0 && v.abs() < 1e-3 {
        format!("{v:.4e}")
    } else {
        format!("{v:.4}")
    }
}

pub(crate) fn fmt_logs(logs: &Logs) -> String {
    logs.iter()
        .map(|(k, v)| format!("{k}: {}", fmt_value(*v)))
        .collect::<Vec<_>>()
        .join(" - ")
}

fn fmt_time(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{}s", secs.round() as u64)
    } else {
        "0s".into()
    }
}

fn fmt_step(secs: f64) -> String {
    if secs >= 1.0 {
        format!("{}s/step", secs.round() as u64)
    } else if secs >= 1e-3 {
        format!("{}ms/step", (secs * 1e3).round() as u64)
    } else {
        format!("{}us/step", (secs * 1e6).round() as u64)
    }
}

/// The epoch lines and bars of `fit`.
pub(crate) struct Progress {
    verbose: u8,
    epochs: usize,
    steps: usize,
    start: Instant,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    pub(crate) fn new(verbose: u8, epochs: usize, steps: usize) -> Progress {
        Progress {
            verbose,
            epochs,
            steps,
            start: Instant::now(),
            bar: None,
        }
    }

    pub(crate) fn epoch_begin(&mut self, epoch: usize) {
        self.start = Instant::now();
        if self.verbose == 0 {
            return;
        }
        println!("Epoch {}/{}", epoch + 1, self.epochs);
        if self.verbose == 1 {
            let bar = indicatif::ProgressBar::new(self.steps as u64);
            let style = indicatif::ProgressStyle::with_template("{pos}/{len} {bar:20} {msg}")
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                .progress_chars("━━ ");
            bar.set_style(style);
            self.bar = Some(bar);
        }
    }

    pub(crate) fn batch_end(&mut self, done: usize, logs: &Logs) {
        if let Some(bar) = &self.bar {
            let el = self.start.elapsed().as_secs_f64();
            bar.set_position(done as u64);
            bar.set_message(format!(
                "{} {} - {}",
                fmt_time(el),
                fmt_step(el / done.max(1) as f64),
                fmt_logs(logs)
            ));
        }
    }

    pub(crate) fn epoch_end(&mut self, logs: &Logs) {
        let el = self.start.elapsed().as_secs_f64();
        let line = format!(
            "{} {} - {}",
            fmt_time(el),
            fmt_step(el / self.steps.max(1) as f64),
            fmt_logs(logs)
        );
        match self.verbose {
            1 => {
                if let Some(bar) = self.bar.take() {
                    bar.set_message(line);
                    bar.finish();
                }
            }
            2 => println!("{}/{} - {line}", self.steps, self.steps),
            _ => {}
        }
    }
}

/// Keras's `ProgbarLogger`: the epoch lines or bars (`fit` adds one when `verbose` is not 0;
/// add your own to a model with `verbose` 0 to print from a callback list).
pub struct ProgbarLogger {
    verbose: Verbose,
    progress: Option<Progress>,
}

impl ProgbarLogger {
    /// Progress at this verbosity.
    pub fn new(verbose: Verbose) -> ProgbarLogger {
        ProgbarLogger {
            verbose,
            progress: None,
        }
    }
}

impl Callback for ProgbarLogger {
    fn on_train_begin(&mut self, ctl: &mut TrainControl<'_>) -> Result<()> {
        let p = ctl.params();
        self.progress = Some(Progress::new(self.verbose.resolve(), p.epochs, p.steps));
        Ok(())
    }
    fn on_epoch_begin(&mut self, epoch: usize, _ctl: &mut TrainControl<'_>) -> Result<()> {
        if let Some(p) = &mut self.progress {
            p.epoch_begin(epoch);
        }
        Ok(())
    }
    fn on_batch_end(&mut self, batch: usize, logs: &Logs, _c: &mut TrainControl<'_>) -> Result<()> {
        if let Some(p) = &mut self.progress {
            p.batch_end(batch + 1, logs);
        }
        Ok(())
    }
    fn on_epoch_end(&mut self, _e: usize, logs: &Logs, _c: &mut TrainControl<'_>) -> Result<()> {
        if let Some(p) = &mut self.progress {
            p.epoch_end(logs);
        }
        Ok(())
    }
}
