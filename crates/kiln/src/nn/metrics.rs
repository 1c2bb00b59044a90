//! Keras's metrics: stateful accumulators over batches (`update_state`, `result`,
//! `reset_state`), by Keras name. Per-batch values are computed on the device; the running
//! sums are kept on the host in float64.

use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::ops;
use crate::tensor::Tensor;

/// A metric's computation.
#[derive(Clone, Debug, PartialEq)]
pub enum MetricKind {
    /// The mean of a loss's values (the `loss` entry of the logs).
    LossMean,
    /// `binary_accuracy` with threshold 0.5.
    BinaryAccuracy,
    /// `categorical_accuracy` (argmax of one-hot labels).
    CategoricalAccuracy,
    /// `sparse_categorical_accuracy`.
    SparseCategoricalAccuracy,
    /// `top_k_categorical_accuracy` (Keras default k = 5).
    TopK(usize),
    /// `sparse_top_k_categorical_accuracy`.
    SparseTopK(usize),
    /// `mean_absolute_error`.
    Mae,
    /// `mean_squared_error`.
    Mse,
    /// `root_mean_squared_error`.
    Rmse,
    /// `precision` at threshold 0.5.
    Precision,
    /// `recall` at threshold 0.5.
    Recall,
    /// `auc` (ROC, or PR with `pr`), 200 thresholds, Keras's interpolation.
    Auc {
        /// Precision-recall instead of ROC.
        pr: bool,
    },
    /// `r2_score` (uniform average over outputs).
    R2,
}

/// A running metric.
#[derive(Clone, Debug)]
pub struct Metric {
    name: String,
    kind: MetricKind,
    total: f64,
    count: f64,
    /// AUC's confusion counts per threshold (tp, fp, tn, fn); R2's sums per output.
    table: Vec<[f64; 4]>,
}

const AUC_THRESHOLDS: usize = 200;

impl Metric {
    /// A metric of `kind` named `name` in the logs.
    pub fn new(name: &str, kind: MetricKind) -> Metric {
        Metric {
            name: name.into(),
            kind,
            total: 0.0,
            count: 0.0,
            table: Vec::new(),
        }
    }

    /// By Keras name, with `"accuracy"`/`"acc"` resolved as Keras 3 does, by the shapes of
    /// labels and outputs (not by the loss: Keras 3's `get_metric` does not consult it either).
    pub fn get(
        name: &str,
        label_shape: &[usize],
        output_shape: &[Option<usize>],
    ) -> Result<Metric> {
        let kind = match name {
            "accuracy" | "acc" => resolve_accuracy(label_shape, output_shape),
            "binary_accuracy" => MetricKind::BinaryAccuracy,
            "categorical_accuracy" => MetricKind::CategoricalAccuracy,
            "sparse_categorical_accuracy" => MetricKind::SparseCategoricalAccuracy,
            "top_k_categorical_accuracy" => MetricKind::TopK(5),
            "sparse_top_k_categorical_accuracy" => MetricKind::SparseTopK(5),
            "mae" | "mean_absolute_error" => MetricKind::Mae,
            "mse" | "mean_squared_error" => MetricKind::Mse,
            "rmse" | "root_mean_squared_error" => MetricKind::Rmse,
            "precision" => MetricKind::Precision,
            "recall" => MetricKind::Recall,
            "auc" => MetricKind::Auc { pr: false },
            "pr_auc" => MetricKind::Auc { pr: true },
            "r2_score" | "r2" => MetricKind::R2,
            other => {
                return Err(KilnError::invalid(
                    "compile",
                    format!("unknown metric {other:?}; use accuracy, binary_accuracy, categorical_accuracy, sparse_categorical_accuracy, top_k_categorical_accuracy, sparse_top_k_categorical_accuracy, mae, mse, rmse, precision, recall, auc, pr_auc or r2_score"),
                ))
            }
        };
        Ok(Metric::new(name, kind))
    }

    /// The name in the logs.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// What it computes.
    pub fn kind(&self) -> &MetricKind {
        &self.kind
    }

    /// Starts over.
    pub fn reset_state(&mut self) {
        self.total = 0.0;
        self.count = 0.0;
        self.table.clear();
    }

    /// Adds a loss value over `n` samples (for `LossMean`).
    pub fn update_mean(&mut self, value: f64, n: f64) {
        self.total += value * n;
        self.count += n;
    }

    /// Adds a batch.
    pub fn update_state(
        &mut self,
        y_true: &Tensor,
        y_pred: &Tensor,
        sample_weight: Option<&Tensor>,
    ) -> Result<()> {
        let _quiet = crate::autodiff::no_grad();
        let p = if y_pred.dtype() == DType::Float64 {
            y_pred.clone()
        } else {
            ops::cast(y_pred, DType::Float32)?
        };
        let per_sample = |v: Tensor| -> Result<(f64, f64)> {
            let v = if v.ndim() > 1 {
                ops::mean(
                    &ops::reshape(&v, &[v.shape()[0] as isize, -1])?,
                    Some(&[1]),
                    false,
                )?
            } else {
                v
            };
            let v = ops::cast(&v, p.dtype())?;
            match sample_weight {
                Some(w) => {
                    let w = ops::cast(&ops::reshape(w, &[-1])?, p.dtype())?;
                    let s = ops::sum(&ops::multiply(&v, &w)?, None, false)?.to_f64_vec()?[0];
                    Ok((s, ops::sum(&w, None, false)?.to_f64_vec()?[0]))
                }
                None => Ok((ops::sum(&v, None, false)?.to_f64_vec()?[0], v.size() as f64)),
            }
        };
        let dense_y = || -> Result<Tensor> {
            let y = ops::cast(y_true, p.dtype())?;
            if y.ndim() + 1 == p.ndim() {
                ops::expand_dims(&y, -1)
            } else {
                Ok(y)
            }
        };
        let sparse_y = || -> Result<Tensor> {
            let y = if y_true.ndim() == p.ndim() && y_true.shape().last() == Some(&1) {
                ops::squeeze(y_true, Some(-1))?
            } else {
                y_true.clone()
            };
            // (Compared as they are: `equal` promotes; an explicit int32 would be refused
            // on a device without it.)
            Ok(y)
        };
        let (s, c) = match self.kind.clone() {
            MetricKind::LossMean => {
                return Err(KilnError::invalid(
                    "Metric",
                    "the loss mean is updated with update_mean",
                ))
            }
            MetricKind::BinaryAccuracy => {
                let hit = ops::equal(&dense_y()?, &ops::cast(&ops::greater(&p, 0.5)?, p.dtype())?)?;
                per_sample(ops::cast(&hit, p.dtype())?)?
            }
            MetricKind::CategoricalAccuracy => {
                let a = ops::argmax(&dense_y()?, Some(-1), false)?;
                let b = ops::argmax(&p, Some(-1), false)?;
                per_sample(ops::cast(&ops::equal(&a, &b)?, p.dtype())?)?
            }
            MetricKind::SparseCategoricalAccuracy => {
                let b = ops::argmax(&p, Some(-1), false)?;
                per_sample(ops::cast(&ops::equal(&sparse_y()?, &b)?, p.dtype())?)?
            }
            MetricKind::TopK(k) | MetricKind::SparseTopK(k) => {
                let labels = if matches!(self.kind, MetricKind::TopK(_)) {
                    ops::argmax(&dense_y()?, Some(-1), false)?
                } else {
                    sparse_y()?
                };
                let labels = if labels.dtype().is_integer() {
                    labels
                } else {
                    ops::autocast(&labels, DType::Int32, "top_k_categorical_accuracy")?
                };
                // In the top k: fewer than k classes score strictly higher than the label's.
                let c = *p.shape().last().unwrap_or(&1);
                let oh = ops::one_hot(&labels, c, Some(p.dtype()))?;
                let own = ops::sum(&ops::multiply(&oh, &p)?, Some(&[-1]), true)?;
                let higher = ops::sum(
                    &ops::cast(&ops::greater(&p, &own)?, p.dtype())?,
                    Some(&[-1]),
                    false,
                )?;
                per_sample(ops::cast(&ops::less(&higher, k as f64)?, p.dtype())?)?
            }
            MetricKind::Mae => per_sample(ops::abs(&ops::subtract(&dense_y()?, &p)?)?)?,
            MetricKind::Mse | MetricKind::Rmse => {
                per_sample(ops::square(&ops::subtract(&dense_y()?, &p)?)?)?
            }
            MetricKind::Precision | MetricKind::Recall | MetricKind::Auc { .. } => {
                let y = dense_y()?.to_f64_vec()?;
                let q = p.to_f64_vec()?;
                let w = match sample_weight {
                    Some(w) => {
                        let w =
                            ops::cast(&ops::reshape(w, &[-1])?, DType::Float64)?.to_f64_vec()?;
                        if w.is_empty() || q.len() % w.len() != 0 {
                            return Err(KilnError::invalid(
                                self.name.as_str(),
                                format!(
                                    "{} sample weights for predictions of shape {:?}; give one weight per sample",
                                    w.len(),
                                    p.shape()
                                ),
                            ));
                        }
                        let per = q.len() / w.len();
                        (0..q.len()).map(|i| w[i / per]).collect()
                    }
                    None => vec![1.0; q.len()],
                };
                let thresholds: Vec<f64> = if matches!(self.kind, MetricKind::Auc { .. }) {
                    auc_thresholds()
                } else {
                    vec![0.5]
                };
                if self.table.is_empty() {
                    self.table = vec![[0.0; 4]; thresholds.len()];
                }
                for (t, row) in thresholds.iter().zip(self.table.iter_mut()) {
                    for ((yv, pv), wv) in y.iter().zip(&q).zip(&w) {
                        // Keras casts labels to bool: any nonzero label is positive.
                        let pos = *yv != 0.0;
                        let pred = *pv > *t;
                        let k = match (pred, pos) {
                            (true, true) => 0,
                            (true, false) => 1,
                            (false, false) => 2,
                            (false, true) => 3,
                        };
                        row[k] += wv;
                    }
                }
                return Ok(());
            }
            MetricKind::R2 => {
                let y = dense_y()?;
                let cols = *y.shape().last().unwrap_or(&1);
                let yv = y.to_f64_vec()?;
                let pv = p.to_f64_vec()?;
                if self.table.is_empty() {
                    self.table = vec![[0.0; 4]; cols];
                }
                for (i, (a, b)) in yv.iter().zip(&pv).enumerate() {
                    let row = &mut self.table[i % cols];
                    row[0] += a;
                    row[1] += a * a;
                    row[2] += (a - b) * (a - b);
                    row[3] += 1.0;
                }
                return Ok(());
            }
        };
        self.total += s;
        self.count += c;
        Ok(())
    }

    /// The current value.
    pub fn result(&self) -> f64 {
        let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        match self.kind {
            MetricKind::Rmse => div(self.total, self.count).sqrt(),
            MetricKind::Precision => self
                .table
                .first()
                .map(|r| div(r[0], r[0] + r[1]))
                .unwrap_or(0.0),
            MetricKind::Recall => self
                .table
                .first()
                .map(|r| div(r[0], r[0] + r[3]))
                .unwrap_or(0.0),
            MetricKind::Auc { pr } => auc(&self.table, pr),
            MetricKind::R2 => {
                if self.table.is_empty() {
                    return 0.0;
                }
                let r: f64 = self
                    .table
                    .iter()
                    .map(|[s, s2, res, n]| {
                        let tot = s2 - s * s / n;
                        if tot == 0.0 {
                            0.0
                        } else {
                            1.0 - res / tot
                        }
                    })
                    .sum();
                r / self.table.len() as f64
            }
            _ => div(self.total, self.count),
        }
    }
}

/// Keras 3's `get_metric` for `"accuracy"`: by the shapes of labels and outputs only
/// (`is_binary_or_sparse_categorical`), not by the loss.
fn resolve_accuracy(label_shape: &[usize], output_shape: &[Option<usize>]) -> MetricKind {
    let out_last = output_shape.last().copied().flatten().unwrap_or(1);
    let label_last = label_shape.last().copied().unwrap_or(1);
    let sparse = label_shape.len() < output_shape.len() || (label_last == 1 && out_last > 1);
    if out_last == 1 {
        MetricKind::BinaryAccuracy
    } else if sparse {
        MetricKind::SparseCategoricalAccuracy
    } else {
        MetricKind::CategoricalAccuracy
    }
}

/// Keras's thresholds: 0 - eps, (1 .. n-2) / (n - 1), 1 + eps.
fn auc_thresholds() -> Vec<f64> {
    let n = AUC_THRESHOLDS;
    let eps = 1e-7;
    let mut t = vec![-eps];
    t.extend((1..n - 1).map(|i| i as f64 / (n - 1) as f64));
    t.push(1.0 + eps);
    t
}

/// Keras's AUC with `summation_method="interpolation"`: trapezoids on the ROC curve, and
/// Davis & Goadrich's interpolation on the PR curve.
fn auc(table: &[[f64; 4]], pr: bool) -> f64 {
    if table.len() < 2 {
        return 0.0;
    }
    let div = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    let n = table.len();
    let tp: Vec<f64> = table.iter().map(|r| r[0]).collect();
    let fp: Vec<f64> = table.iter().map(|r| r[1]).collect();
    let tn: Vec<f64> = table.iter().map(|r| r[2]).collect();
    let fne: Vec<f64> = table.iter().map(|r| r[3]).collect();
    if pr {
        let mut s = 0.0;
        for i in 0..n - 1 {
            let dtp = tp[i] - tp[i + 1];
            let p0 = tp[i] + fp[i];
            let p1 = tp[i + 1] + fp[i + 1];
            let dp = p0 - p1;
            let slope = div(dtp, dp.max(0.0));
            let intercept = tp[i + 1] - slope * p1;
            let ratio = if dp > 0.0 && p1 > 0.0 {
                div(p0, p1.max(0.0))
            } else {
                1.0
            };
            s += div(
                slope * (dtp + intercept * ratio.ln()),
                (tp[i + 1] + fne[i + 1]).max(0.0),
            );
        }
        return s;
    }
    let tpr: Vec<f64> = (0..n).map(|i| div(tp[i], tp[i] + fne[i])).collect();
    let fpr: Vec<f64> = (0..n).map(|i| div(fp[i], fp[i] + tn[i])).collect();
    (0..n - 1)
        .map(|i| (fpr[i] - fpr[i + 1]) * (tpr[i] + tpr[i + 1]) / 2.0)
        .sum()
}
