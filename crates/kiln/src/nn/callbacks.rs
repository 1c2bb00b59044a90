//! Callbacks, the `History` that `fit` returns, and Keras's progress output.

use crate::error::Result;
use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::Instant;

/// Metric values by name (`loss`, `accuracy`, `val_loss`...), sorted as Keras prints them.
pub type Logs = BTreeMap<String, f64>;

/// What a callback can ask of `fit`.
#[derive(Clone, Debug, Default)]
pub struct TrainControl {
    /// Stop after the current epoch (Keras's `model.stop_training = True`).
    pub stop_training: bool,
}

/// Hooks into `fit` (Keras's `Callback`). Every method has an empty default.
#[allow(unused_variables)]
pub trait Callback: Send {
    /// Before the first epoch.
    fn on_train_begin(&mut self, ctl: &mut TrainControl) -> Result<()> {
        Ok(())
    }
    /// After the last epoch.
    fn on_train_end(&mut self, ctl: &mut TrainControl) -> Result<()> {
        Ok(())
    }
    /// Before each epoch.
    fn on_epoch_begin(&mut self, epoch: usize, ctl: &mut TrainControl) -> Result<()> {
        Ok(())
    }
    /// After each epoch, with its logs (training means and `val_*`).
    fn on_epoch_end(&mut self, epoch: usize, logs: &Logs, ctl: &mut TrainControl) -> Result<()> {
        Ok(())
    }
    /// Before each training batch.
    fn on_batch_begin(&mut self, batch: usize, ctl: &mut TrainControl) -> Result<()> {
        Ok(())
    }
    /// After each training batch, with the running means of the epoch.
    fn on_batch_end(&mut self, batch: usize, logs: &Logs, ctl: &mut TrainControl) -> Result<()> {
        Ok(())
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
