//! Keras's losses, with Keras's names, arguments, defaults and formulas (including its
//! probability clipping to `[1e-7, 1 - 1e-7]`), reduced with `sum_over_batch_size`: the
//! per-sample losses (mean over the last axis where Keras takes it) times the sample
//! weights, summed, divided by the number of samples.
//!
//! Losses compute in float32 (or the predictions' wider float dtype): under a mixed policy the
//! 16-bit outputs are cast up first, as Keras does.

use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::ops;
use crate::tensor::Tensor;

/// Keras's `epsilon()`.
pub const EPSILON: f64 = 1e-7;

/// A loss and its arguments.
///
/// ```
/// use kiln::{nn::Loss, ops, convert_to_tensor, ArrayData, Device};
/// let y = convert_to_tensor(&ArrayData::from(vec![0.0f32, 1.0]), None, &Device::Cpu).unwrap();
/// let p = convert_to_tensor(&ArrayData::from(vec![0.5f32, 1.0]), None, &Device::Cpu).unwrap();
/// let l = Loss::MeanSquaredError.compute(&ops::reshape(&y, &[2, 1]).unwrap(), &ops::reshape(&p, &[2, 1]).unwrap(), None).unwrap();
/// assert_eq!(l.to_vec::<f32>().unwrap(), vec![0.125]);
/// ```
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Loss {
    /// `mean((y - p)^2, axis=-1)`.
    MeanSquaredError,
    /// `mean(|y - p|, axis=-1)`.
    MeanAbsoluteError,
    /// `100 * mean(|(y - p) / max(|y|, eps)|, axis=-1)`.
    MeanAbsolutePercentageError,
    /// Quadratic within `delta` (Keras default 1), linear beyond.
    Huber {
        /// The switch point.
        delta: f64,
    },
    /// `mean(log(cosh(p - y)), axis=-1)`, computed without overflow.
    LogCosh,
    /// Binary cross-entropy, mean over the last axis.
    BinaryCrossentropy {
        /// Whether predictions are logits (Keras default false: probabilities).
        from_logits: bool,
        /// Labels move towards 0.5 by this much (default 0).
        label_smoothing: f64,
    },
    /// Cross-entropy against one-hot (or soft) labels on the last axis.
    CategoricalCrossentropy {
        /// Whether predictions are logits.
        from_logits: bool,
        /// Labels move towards uniform by this much.
        label_smoothing: f64,
    },
    /// Cross-entropy against integer class labels.
    SparseCategoricalCrossentropy {
        /// Whether predictions are logits.
        from_logits: bool,
    },
    /// `sum(y * log(y / p), axis=-1)`, both clipped to `[eps, 1]`.
    KLDivergence,
    /// `mean(max(1 - y * p, 0), axis=-1)`, with {0, 1} labels mapped to {-1, 1}.
    Hinge,
}

impl Loss {
    /// Sparse categorical cross-entropy from logits (the usual classifier head).
    pub fn sparse_categorical_crossentropy(from_logits: bool) -> Loss {
        Loss::SparseCategoricalCrossentropy { from_logits }
    }
    /// Binary cross-entropy.
    pub fn binary_crossentropy(from_logits: bool) -> Loss {
        Loss::BinaryCrossentropy {
            from_logits,
            label_smoothing: 0.0,
        }
    }
    /// Categorical cross-entropy.
    pub fn categorical_crossentropy(from_logits: bool) -> Loss {
        Loss::CategoricalCrossentropy {
            from_logits,
            label_smoothing: 0.0,
        }
    }

    /// By Keras name (`"mse"`, `"sparse_categorical_crossentropy"`, ...), with defaults.
    pub fn get(name: &str) -> Result<Loss> {
        Ok(match name {
            "mse" | "mean_squared_error" | "MeanSquaredError" => Loss::MeanSquaredError,
            "mae" | "mean_absolute_error" | "MeanAbsoluteError" => Loss::MeanAbsoluteError,
            "mape" | "mean_absolute_percentage_error" | "MeanAbsolutePercentageError" => {
                Loss::MeanAbsolutePercentageError
            }
            "huber" | "Huber" => Loss::Huber { delta: 1.0 },
            "log_cosh" | "logcosh" | "LogCosh" => Loss::LogCosh,
            "binary_crossentropy" | "BinaryCrossentropy" => Loss::binary_crossentropy(false),
            "categorical_crossentropy" | "CategoricalCrossentropy" => {
                Loss::categorical_crossentropy(false)
            }
            "sparse_categorical_crossentropy" | "SparseCategoricalCrossentropy" => {
                Loss::sparse_categorical_crossentropy(false)
            }
            "kl_divergence" | "kld" | "KLDivergence" => Loss::KLDivergence,
            "hinge" | "Hinge" => Loss::Hinge,
            other => {
                return Err(KilnError::invalid(
                    "losses.get",
                    format!("unknown loss {other:?}; use mean_squared_error, mean_absolute_error, mean_absolute_percentage_error, huber, log_cosh, binary_crossentropy, categorical_crossentropy, sparse_categorical_crossentropy, kl_divergence or hinge"),
                ))
            }
        })
    }

    /// Keras's name (the function name, as in logs).
    pub fn name(&self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::MeanAbsolutePercentageError => "mean_absolute_percentage_error",
            Loss::Huber { .. } => "huber_loss",
            Loss::LogCosh => "log_cosh",
            Loss::BinaryCrossentropy { .. } => "binary_crossentropy",
            Loss::CategoricalCrossentropy { .. } => "categorical_crossentropy",
            Loss::SparseCategoricalCrossentropy { .. } => "sparse_categorical_crossentropy",
            Loss::KLDivergence => "kl_divergence",
            Loss::Hinge => "hinge",
        }
    }

    /// Whether labels are class indices (sparse).
    pub fn sparse_labels(&self) -> bool {
        matches!(self, Loss::SparseCategoricalCrossentropy { .. })
    }

    /// The per-sample losses: one value per sample (the last axis reduced), of the
    /// predictions' float dtype (at least float32).
    pub fn per_sample(&self, y_true: &Tensor, y_pred: &Tensor) -> Result<Tensor> {
        let p = loss_dtype(y_pred)?;
        let last = [-1isize];
        let mean_last = |t: &Tensor| ops::mean(t, Some(&last), false);
        if let Loss::SparseCategoricalCrossentropy { from_logits } = *self {
            return sparse_ce(y_true, &p, from_logits);
        }
        let y = ops::cast(y_true, p.dtype())?;
        let y = if y.ndim() + 1 == p.ndim() {
            ops::expand_dims(&y, -1)?
        } else {
            y
        };
        if y.shape() != p.shape() {
            return Err(KilnError::shape(
                self.name(),
                y.shape(),
                p.shape(),
                "labels and predictions must have one shape (or labels one axis fewer); check the model's last layer against the labels",
            ));
        }
        match *self {
            Loss::MeanSquaredError => mean_last(&ops::square(&ops::subtract(&y, &p)?)?),
            Loss::MeanAbsoluteError => mean_last(&ops::abs(&ops::subtract(&y, &p)?)?),
            Loss::MeanAbsolutePercentageError => {
                let d = ops::divide(
                    &ops::subtract(&y, &p)?,
                    &ops::maximum(&ops::abs(&y)?, EPSILON)?,
                )?;
                ops::multiply(&mean_last(&ops::abs(&d)?)?, 100.0)
            }
            Loss::Huber { delta } => {
                let e = ops::abs(&ops::subtract(&p, &y)?)?;
                let quad = ops::multiply(&ops::square(&e)?, 0.5)?;
                let lin = ops::subtract(&ops::multiply(&e, delta)?, 0.5 * delta * delta)?;
                mean_last(&ops::r#where(&ops::less_equal(&e, delta)?, &quad, &lin)?)
            }
            Loss::LogCosh => {
                // log(cosh(x)) = x + softplus(-2x) - log(2)
                let x = ops::subtract(&p, &y)?;
                let v = ops::add(&x, &ops::softplus(&ops::multiply(&x, -2.0)?)?)?;
                mean_last(&ops::subtract(&v, std::f64::consts::LN_2)?)
            }
            Loss::BinaryCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                let y = if label_smoothing > 0.0 {
                    ops::add(
                        &ops::multiply(&y, 1.0 - label_smoothing)?,
                        0.5 * label_smoothing,
                    )?
                } else {
                    y
                };
                let l = if from_logits {
                    // max(x, 0) - x y + log1p(exp(-|x|))
                    let t = ops::subtract(&ops::relu(&p)?, &ops::multiply(&p, &y)?)?;
                    ops::add(
                        &t,
                        &ops::log1p(&ops::exp(&ops::negative(&ops::abs(&p)?)?)?)?,
                    )?
                } else {
                    let q = ops::clip(&p, EPSILON, 1.0 - EPSILON)?;
                    let a = ops::multiply(&y, &ops::log(&q)?)?;
                    let b = ops::multiply(
                        &ops::subtract(1.0, &y)?,
                        &ops::log(&ops::subtract(1.0, &q)?)?,
                    )?;
                    ops::negative(&ops::add(&a, &b)?)?
                };
                mean_last(&l)
            }
            Loss::CategoricalCrossentropy {
                from_logits,
                label_smoothing,
            } => {
                let c = *p.shape().last().unwrap_or(&1) as f64;
                let y = if label_smoothing > 0.0 {
                    ops::add(
                        &ops::multiply(&y, 1.0 - label_smoothing)?,
                        label_smoothing / c,
                    )?
                } else {
                    y
                };
                let logp = if from_logits {
                    ops::log_softmax(&p, -1)?
                } else {
                    let q = ops::divide(&p, &ops::sum(&p, Some(&last), true)?)?;
                    ops::log(&ops::clip(&q, EPSILON, 1.0 - EPSILON)?)?
                };
                ops::negative(&ops::sum(&ops::multiply(&y, &logp)?, Some(&last), false)?)
            }
            Loss::KLDivergence => {
                let yc = ops::clip(&y, EPSILON, 1.0)?;
                let pc = ops::clip(&p, EPSILON, 1.0)?;
                let v = ops::multiply(&yc, &ops::log(&ops::divide(&yc, &pc)?)?)?;
                ops::sum(&v, Some(&last), false)
            }
            Loss::Hinge => {
                // {0, 1} labels become {-1, 1} (Keras's convert_binary_labels_to_hinge).
                let is01 = ops::logical_or(&ops::equal(&y, 0.0)?, &ops::equal(&y, 1.0)?)?;
                let all01 = ops::all(&is01, None, false)?.to_f64_vec()?[0] != 0.0;
                let y = if all01 {
                    ops::subtract(&ops::multiply(&y, 2.0)?, 1.0)?
                } else {
                    y
                };
                mean_last(&ops::relu(&ops::subtract(1.0, &ops::multiply(&y, &p)?)?)?)
            }
            Loss::SparseCategoricalCrossentropy { .. } => unreachable!("handled above"),
        }
    }

    /// The loss with Keras's default reduction `sum_over_batch_size`: per-sample losses
    /// times the sample weights (if any), summed, over the number of samples.
    pub fn compute(
        &self,
        y_true: &Tensor,
        y_pred: &Tensor,
        sample_weight: Option<&Tensor>,
    ) -> Result<Tensor> {
        let l = self.per_sample(y_true, y_pred)?;
        let n = l.size().max(1) as f64;
        // One weight per sample, broadcast over the per-sample losses' other axes (Keras's
        // squeeze_or_expand_to_same_rank).
        let l = match sample_weight {
            Some(w) => {
                let mut shape = vec![-1isize];
                shape.extend(std::iter::repeat_n(1, l.ndim().saturating_sub(1)));
                ops::multiply(&l, &ops::cast(&ops::reshape(w, &shape)?, l.dtype())?)?
            }
            None => l,
        };
        ops::divide(&ops::sum(&l, None, false)?, n)
    }
}

/// Predictions in the loss's dtype: float32, or wider where they are (float64).
fn loss_dtype(p: &Tensor) -> Result<Tensor> {
    if p.dtype() == DType::Float64 || p.dtype() == DType::Float32 {
        Ok(p.clone())
    } else {
        ops::cast(p, DType::Float32)
    }
}

fn sparse_ce(y_true: &Tensor, p: &Tensor, from_logits: bool) -> Result<Tensor> {
    let labels = if y_true.ndim() == p.ndim() && y_true.shape().last() == Some(&1) {
        ops::squeeze(y_true, Some(-1))?
    } else {
        y_true.clone()
    };
    if labels.ndim() + 1 != p.ndim() || labels.shape() != &p.shape()[..p.ndim() - 1] {
        return Err(KilnError::shape(
            "sparse_categorical_crossentropy",
            y_true.shape(),
            p.shape(),
            "labels must be class indices with the predictions' shape minus the class axis",
        ));
    }
    let labels = if labels.dtype().is_integer() {
        labels
    } else {
        ops::autocast(&labels, DType::Int32, "sparse_categorical_crossentropy")?
    };
    let c = *p.shape().last().unwrap_or(&1);
    let logp = if from_logits {
        ops::log_softmax(p, -1)?
    } else {
        let q = ops::divide(p, &ops::sum(p, Some(&[-1]), true)?)?;
        ops::log(&ops::clip(&q, EPSILON, 1.0 - EPSILON)?)?
    };
    let oh = ops::one_hot(&labels, c, Some(p.dtype()))?;
    ops::negative(&ops::sum(&ops::multiply(&oh, &logp)?, Some(&[-1]), false)?)
}
