//! The precision monitor: what low precision does to training, measured per variable and per
//! epoch, the training-time counterpart of the conversion's `ConversionReport`. Keras,
//! PyTorch, JAX, burn and candle have no equivalent.
//!
//! Per variable and epoch it counts:
//! * **updates lost to rounding**: elements whose gradient was nonzero (so the optimizer
//!   asked for a nonzero update) but whose stored value did not change: the update was
//!   smaller than half an ulp of the weight (the stagnation bfloat16 weights suffer);
//! * **gradients** that were exactly zero, subnormal in the compute dtype (below its smallest
//!   normal: flushed or about to be), or non-finite (overflowed);
//! * the **loss scale** (lowest, highest, last) and the steps it skipped;
//! * on request ([`PrecisionMonitor::shadow`]), the **drift** of the weights from a float32
//!   shadow copy that the same optimizer (a fresh one with the same settings) updates with
//!   the same gradients: `|w - w_shadow| / |w_shadow|` at the epoch's end.
//!
//! It prints a summary when training ends (unless `verbose(0)`) and hands the figures back
//! as data through [`PrecisionMonitor::report`].

use super::{Callback, StepInfo, TrainControl};
use crate::dtype::DType;
use crate::error::Result;
use crate::nn::optimizers::Optimizer;
use crate::ops;
use crate::tensor::{Tensor, Variable};
use std::sync::{Arc, Mutex};

/// One variable's figures for one epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct VariablePrecision {
    /// `layer/variable`.
    pub name: String,
    /// The variable's dtype.
    pub dtype: Option<DType>,
    /// Elements asked to move (nonzero gradient) in applied steps.
    pub updates: u64,
    /// Of those, elements that did not move (the update was lost to rounding).
    pub stalled: u64,
    /// Gradient elements seen (every step).
    pub grad_elements: u64,
    /// Gradient elements exactly zero.
    pub grad_zero: u64,
    /// Gradient elements nonzero but below the compute dtype's smallest normal.
    pub grad_subnormal: u64,
    /// Gradient elements inf or NaN.
    pub grad_nonfinite: u64,
    /// `|w - w_shadow| / |w_shadow|` at the epoch's end (with `shadow(true)`).
    pub drift: Option<f64>,
}

impl VariablePrecision {
    /// The fraction of requested updates lost to rounding.
    pub fn stalled_fraction(&self) -> f64 {
        if self.updates == 0 {
            0.0
        } else {
            self.stalled as f64 / self.updates as f64
        }
    }
}

/// One epoch's figures.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EpochPrecision {
    /// The epoch.
    pub epoch: usize,
    /// Training steps run.
    pub steps: u64,
    /// Steps the loss scaling skipped.
    pub skipped: u64,
    /// The loss scale: lowest, highest and last of the epoch (under loss scaling).
    pub loss_scale: Option<(f64, f64, f64)>,
    /// Each trainable variable.
    pub variables: Vec<VariablePrecision>,
}

impl EpochPrecision {
    /// The fraction of requested updates lost to rounding, over every variable.
    pub fn stalled_fraction(&self) -> f64 {
        let (s, u) = self
            .variables
            .iter()
            .fold((0, 0), |(s, u), v| (s + v.stalled, u + v.updates));
        if u == 0 {
            0.0
        } else {
            s as f64 / u as f64
        }
    }
}

/// Everything the monitor measured, epoch by epoch.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PrecisionReport {
    /// The compute dtype of the run.
    pub compute_dtype: Option<DType>,
    /// Per epoch.
    pub epochs: Vec<EpochPrecision>,
}

impl PrecisionReport {
    /// The summary `fit` prints: per variable, the first and last epoch's share of updates
    /// lost to rounding, the gradient counts of the run, and the last drift.
    pub fn summary(&self) -> String {
        let (Some(first), Some(last)) = (self.epochs.first(), self.epochs.last()) else {
            return "precision monitor: no training steps".into();
        };
        let mut s = format!(
            "precision monitor: {} epochs, compute {}; updates lost to rounding {:.2}% (epoch {}) -> {:.2}% (epoch {})\n",
            self.epochs.len(),
            self.compute_dtype.map(|d| d.to_string()).unwrap_or_default(),
            100.0 * first.stalled_fraction(),
            first.epoch + 1,
            100.0 * last.stalled_fraction(),
            last.epoch + 1,
        );
        s.push_str(&format!(
            "{:<22} {:<9} {:>12} {:>12} {:>10} {:>10} {:>10} {:>12}\n",
            "variable",
            "dtype",
            "lost first",
            "lost last",
            "grad zero",
            "subnormal",
            "nonfinite",
            "drift (f32)"
        ));
        for (i, v) in last.variables.iter().enumerate() {
            let f = first.variables.get(i).cloned().unwrap_or_default();
            let total = |pick: fn(&VariablePrecision) -> u64| -> u64 {
                self.epochs
                    .iter()
                    .filter_map(|e| e.variables.get(i))
                    .map(pick)
                    .sum()
            };
            let n = total(|v| v.grad_elements).max(1) as f64;
            s.push_str(&format!(
                "{:<22} {:<9} {:>11.2}% {:>11.2}% {:>9.2}% {:>9.2}% {:>10} {:>12}\n",
                v.name,
                v.dtype.map(|d| d.to_string()).unwrap_or_default(),
                100.0 * f.stalled_fraction(),
                100.0 * v.stalled_fraction(),
                100.0 * total(|v| v.grad_zero) as f64 / n,
                100.0 * total(|v| v.grad_subnormal) as f64 / n,
                total(|v| v.grad_nonfinite),
                v.drift.map(|d| format!("{d:.3e}")).unwrap_or("-".into()),
            ));
        }
        let skipped: u64 = self.epochs.iter().map(|e| e.skipped).sum();
        let steps: u64 = self.epochs.iter().map(|e| e.steps).sum();
        if let Some((lo, hi, end)) = self
            .epochs
            .iter()
            .filter_map(|e| e.loss_scale)
            .reduce(|a, b| (a.0.min(b.0), a.1.max(b.1), b.2))
        {
            s.push_str(&format!(
                "loss scale: {lo} to {hi}, {end} at the end; {skipped} of {steps} steps skipped\n"
            ));
        }
        s
    }
}

/// A handle on a monitor's report that stays with you after the monitor moves into a model.
#[derive(Clone, Debug, Default)]
pub struct PrecisionReportHandle(Arc<Mutex<PrecisionReport>>);

impl PrecisionReportHandle {
    /// The report so far.
    pub fn get(&self) -> PrecisionReport {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The opt-in precision monitor (see the module docs).
///
/// ```
/// use kiln::nn::callbacks::precision::PrecisionMonitor;
/// let monitor = PrecisionMonitor::new().shadow(true).verbose(0);
/// let report = monitor.report(); // read it after `fit`
/// assert!(report.get().epochs.is_empty());
/// ```
pub struct PrecisionMonitor {
    shadow: bool,
    verbose: u8,
    report: PrecisionReportHandle,
    current: Option<EpochPrecision>,
    optimizer: Option<Optimizer>,
    shadow_vars: Vec<Variable>,
    last_after: Vec<Tensor>,
}

impl Default for PrecisionMonitor {
    fn default() -> Self {
        PrecisionMonitor {
            shadow: false,
            verbose: 1,
            report: PrecisionReportHandle::default(),
            current: None,
            optimizer: None,
            shadow_vars: Vec::new(),
            last_after: Vec::new(),
        }
    }
}

impl PrecisionMonitor {
    /// Counts only (no shadow), summary printed at the end.
    pub fn new() -> Self {
        Self::default()
    }
    /// Also keep a float32 shadow of the weights and report the drift from it.
    pub fn shadow(mut self, on: bool) -> Self {
        self.shadow = on;
        self
    }
    /// 0: print nothing.
    pub fn verbose(mut self, v: u8) -> Self {
        self.verbose = v;
        self
    }
    /// The report, readable after `fit`.
    pub fn report(&self) -> PrecisionReportHandle {
        self.report.clone()
    }

    fn finish_epoch(&mut self) -> Result<()> {
        let Some(mut e) = self.current.take() else {
            return Ok(());
        };
        if self.shadow && !self.shadow_vars.is_empty() {
            let _q = crate::autodiff::no_grad();
            for (i, v) in e.variables.iter_mut().enumerate() {
                let (Some(w), Some(s)) = (self.last_after.get(i), self.shadow_vars.get(i)) else {
                    continue;
                };
                let s = s.value();
                let d = ops::subtract(&ops::cast(w, DType::Float32)?, s)?;
                let num = ops::sqrt(&ops::sum(&ops::square(&d)?, None, false)?)?.to_f64_vec()?[0];
                let den = ops::sqrt(&ops::sum(&ops::square(s)?, None, false)?)?.to_f64_vec()?[0];
                v.drift = Some(if den > 0.0 { num / den } else { num });
            }
        }
        self.report
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .epochs
            .push(e);
        Ok(())
    }
}

fn count(t: &Tensor) -> Result<u64> {
    Ok(ops::count_nonzero(t, None)?.to_f64_vec()?[0] as u64)
}

fn smallest_normal(d: DType) -> f64 {
    match d {
        DType::Float16 => 6.103515625e-5,
        DType::Float64 => f64::MIN_POSITIVE,
        _ => f32::MIN_POSITIVE as f64,
    }
}

impl Callback for PrecisionMonitor {
    fn wants_steps(&self) -> bool {
        true
    }
    fn on_train_begin(&mut self, ctl: &mut TrainControl<'_>) -> Result<()> {
        *self.report.0.lock().unwrap_or_else(|e| e.into_inner()) = PrecisionReport::default();
        self.current = None;
        self.shadow_vars.clear();
        self.optimizer = if self.shadow {
            Some(ctl.optimizer()?.fresh())
        } else {
            None
        };
        Ok(())
    }
    fn on_train_step(&mut self, step: &StepInfo<'_>, _ctl: &mut TrainControl<'_>) -> Result<()> {
        let _q = crate::autodiff::no_grad();
        if self.current.as_ref().is_some_and(|e| e.epoch != step.epoch) {
            self.finish_epoch()?;
        }
        let e = self.current.get_or_insert_with(|| EpochPrecision {
            epoch: step.epoch,
            variables: step
                .names
                .iter()
                .zip(step.before)
                .map(|(n, w)| VariablePrecision {
                    name: n.clone(),
                    dtype: Some(w.dtype()),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        {
            let mut r = self.report.0.lock().unwrap_or_else(|e| e.into_inner());
            r.compute_dtype = Some(step.compute_dtype);
        }
        e.steps += 1;
        if !step.applied {
            e.skipped += 1;
        }
        if let Some(s) = step.loss_scale {
            e.loss_scale = Some(match e.loss_scale {
                Some((lo, hi, _)) => (lo.min(s), hi.max(s), s),
                None => (s, s, s),
            });
        }
        let tiny = smallest_normal(step.compute_dtype);
        for (i, v) in e.variables.iter_mut().enumerate() {
            let (Some(g), Some(b), Some(a)) =
                (step.grads.get(i), step.before.get(i), step.after.get(i))
            else {
                continue;
            };
            let nonzero = ops::not_equal(g, 0.0)?;
            v.grad_elements += g.size() as u64;
            v.grad_zero += g.size() as u64 - count(&nonzero)?;
            let finite = ops::isfinite(g)?;
            v.grad_nonfinite += g.size() as u64 - count(&finite)?;
            let mag = ops::abs(g)?;
            v.grad_subnormal += count(&ops::logical_and(&nonzero, &ops::less(&mag, tiny)?)?)?;
            if step.applied {
                let asked = ops::logical_and(&nonzero, &finite)?;
                v.updates += count(&asked)?;
                v.stalled += count(&ops::logical_and(&asked, &ops::equal(a, b)?)?)?;
            }
        }
        if let Some(opt) = self.optimizer.as_mut() {
            if self.shadow_vars.is_empty() {
                self.shadow_vars = step
                    .names
                    .iter()
                    .zip(step.before)
                    .map(|(n, w)| {
                        Variable::new(n, &ops::cast(w, DType::Float32)?, Some(DType::Float32))
                    })
                    .collect::<Result<_>>()?;
            }
            if step.applied {
                let grads: Vec<Tensor> = step
                    .grads
                    .iter()
                    .map(|g| {
                        let g = ops::cast(g, DType::Float32)?;
                        match step.loss_scale {
                            Some(s) => ops::divide(&g, s),
                            None => Ok(g),
                        }
                    })
                    .collect::<Result<_>>()?;
                let mut vars: Vec<&mut Variable> = self.shadow_vars.iter_mut().collect();
                opt.apply(&mut vars, &grads)?;
            }
            self.last_after = step.after.to_vec();
        }
        Ok(())
    }
    fn on_train_end(&mut self, _ctl: &mut TrainControl<'_>) -> Result<()> {
        self.finish_epoch()?;
        if self.verbose > 0 {
            print!("{}", self.report.get().summary());
        }
        Ok(())
    }
}
