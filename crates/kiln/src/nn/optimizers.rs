//! Keras's optimizers and learning-rate schedules, with Keras 3's hyper-parameter names,
//! defaults and update formulas (`keras/src/optimizers/*.py`), and the options every Keras
//! optimizer has: `clipnorm`, `clipvalue`, `global_clipnorm`, `weight_decay`, and an EMA of
//! the weights (`use_ema`, `ema_momentum`, `ema_overwrite_frequency`).
//!
//! Order of one step, as in Keras's `BaseOptimizer.apply`: gradients clipped, weight decay
//! (`w -= w * weight_decay * lr`), the update, the EMA, `iterations += 1`.

use crate::error::{KilnError, Result};
use crate::ops;
use crate::tensor::{Tensor, Variable};
use std::f64::consts::PI;

pub(crate) mod saving;

/// A learning rate: constant or a Keras schedule of the step (`iterations`).
#[derive(Clone, Debug, PartialEq)]
pub enum LearningRate {
    /// A constant.
    Constant(f64),
    /// `initial * decay_rate ^ (step / decay_steps)` (floored with `staircase`).
    ExponentialDecay {
        /// Initial rate.
        initial_learning_rate: f64,
        /// Steps per decay.
        decay_steps: u64,
        /// Factor per `decay_steps`.
        decay_rate: f64,
        /// Decay in whole steps.
        staircase: bool,
    },
    /// `values[i]` for `boundaries[i-1] < step <= boundaries[i]`.
    PiecewiseConstantDecay {
        /// Step boundaries (increasing).
        boundaries: Vec<u64>,
        /// One more value than boundaries.
        values: Vec<f64>,
    },
    /// Optional linear warmup to `warmup_target`, then a cosine decay to `alpha` of it.
    CosineDecay {
        /// Initial rate.
        initial_learning_rate: f64,
        /// Steps of the decay.
        decay_steps: u64,
        /// The final fraction (Keras default 0).
        alpha: f64,
        /// Where the warmup ends (`None`: no warmup).
        warmup_target: Option<f64>,
        /// Warmup steps (default 0).
        warmup_steps: u64,
    },
    /// `initial / (1 + decay_rate * step / decay_steps)`.
    InverseTimeDecay {
        /// Initial rate.
        initial_learning_rate: f64,
        /// Steps per decay unit.
        decay_steps: u64,
        /// Rate.
        decay_rate: f64,
        /// Decay in whole steps.
        staircase: bool,
    },
}

impl From<f64> for LearningRate {
    fn from(v: f64) -> Self {
        LearningRate::Constant(v)
    }
}

impl LearningRate {
    /// The rate at `step`.
    pub fn at(&self, step: u64) -> f64 {
        let s = step as f64;
        match self {
            LearningRate::Constant(v) => *v,
            LearningRate::ExponentialDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = s / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                initial_learning_rate * decay_rate.powf(p)
            }
            LearningRate::PiecewiseConstantDecay { boundaries, values } => {
                let i = boundaries.iter().take_while(|b| step > **b).count();
                values.get(i).or(values.last()).copied().unwrap_or(0.0)
            }
            LearningRate::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => {
                if let Some(target) = warmup_target {
                    if step < *warmup_steps {
                        let f = s / (*warmup_steps).max(1) as f64;
                        return initial_learning_rate + (target - initial_learning_rate) * f;
                    }
                }
                let base = warmup_target.unwrap_or(*initial_learning_rate);
                let ds = (*decay_steps).max(1) as f64;
                // Without a warmup target Keras ignores warmup_steps.
                let w = if warmup_target.is_some() {
                    *warmup_steps as f64
                } else {
                    0.0
                };
                let t = (s - w).clamp(0.0, ds);
                let cosine = 0.5 * (1.0 + (PI * t / ds).cos());
                base * ((1.0 - alpha) * cosine + alpha)
            }
            LearningRate::InverseTimeDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => {
                let mut p = s / (*decay_steps).max(1) as f64;
                if *staircase {
                    p = p.floor();
                }
                initial_learning_rate / (1.0 + decay_rate * p)
            }
        }
    }

    fn check(&self) -> Result<()> {
        if let LearningRate::PiecewiseConstantDecay { boundaries, values } = self {
            if values.len() != boundaries.len() + 1 {
                return Err(KilnError::invalid(
                    "PiecewiseConstantDecay",
                    format!(
                        "needs one more value than boundaries, got {} values for {} boundaries",
                        values.len(),
                        boundaries.len()
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The update rule and its hyper-parameters.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq)]
pub enum Rule {
    Sgd {
        momentum: f64,
        nesterov: bool,
    },
    Adam {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
        amsgrad: bool,
    },
    RmsProp {
        rho: f64,
        momentum: f64,
        epsilon: f64,
        centered: bool,
    },
    Adagrad {
        initial_accumulator_value: f64,
        epsilon: f64,
    },
    Adamax {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    Nadam {
        beta_1: f64,
        beta_2: f64,
        epsilon: f64,
    },
    Lion {
        beta_1: f64,
        beta_2: f64,
    },
}

/// An optimizer: a rule, its learning rate, the options every Keras optimizer has, and its
/// state (slots per variable, `iterations`).
///
/// ```
/// use kiln::nn::{Adam, Optimizer};
/// let opt: Optimizer = Adam::new(1e-3).amsgrad(true).into();
/// let opt = opt.clipnorm(1.0);
/// assert_eq!(opt.name(), "adam");
/// ```
#[derive(Clone, Debug)]
pub struct Optimizer {
    name: &'static str,
    rule: Rule,
    learning_rate: LearningRate,
    weight_decay: Option<f64>,
    clipnorm: Option<f64>,
    clipvalue: Option<f64>,
    global_clipnorm: Option<f64>,
    use_ema: bool,
    ema_momentum: f64,
    ema_overwrite_frequency: Option<u64>,
    iterations: u64,
    slots: Vec<Vec<Tensor>>,
    ema: Vec<Tensor>,
    u_product: f64,
    fused: bool,
    loss_scale: Option<LossScale>,
    kahan: bool,
    /// Per variable: the rounding error of its last compensated update (Kahan), or `None`.
    compensation: Vec<Option<Tensor>>,
}

/// The state of dynamic loss scaling (Keras's `LossScaleOptimizer` variables).
#[derive(Clone, Debug, PartialEq)]
struct LossScale {
    scale: f64,
    /// The scale it started from (its config's `initial_scale`).
    initial: f64,
    step_counter: u64,
    dynamic_growth_steps: u64,
    skipped: u64,
}

/// Dynamic loss scaling around an optimizer, with Keras's `LossScaleOptimizer` semantics:
/// the loss is multiplied by the scale before differentiation and the gradients divided by
/// it; a step whose gradients are not all finite is skipped and halves the scale; after
/// `dynamic_growth_steps` finite steps in a row the scale doubles. `compile` wraps the
/// optimizer in one by itself under a `mixed_float16` policy, as Keras does.
///
/// ```
/// use kiln::nn::{Adam, LossScaleOptimizer, Optimizer};
/// let opt: Optimizer = LossScaleOptimizer::new(Adam::new(1e-3)).into();
/// assert_eq!(opt.loss_scale(), Some(32768.0));
/// ```
#[derive(Clone, Debug)]
pub struct LossScaleOptimizer {
    inner: Optimizer,
    initial_scale: f64,
    dynamic_growth_steps: u64,
}

impl LossScaleOptimizer {
    /// Keras's defaults: initial scale 2^15, doubling after 2000 finite steps.
    pub fn new(inner: impl Into<Optimizer>) -> LossScaleOptimizer {
        LossScaleOptimizer {
            inner: inner.into(),
            initial_scale: 32768.0,
            dynamic_growth_steps: 2000,
        }
    }
    /// The first scale (positive, finite; checked on the first step).
    pub fn initial_scale(mut self, s: f64) -> Self {
        self.initial_scale = s;
        self
    }
    /// Finite steps in a row before the scale doubles (at least 1).
    pub fn dynamic_growth_steps(mut self, n: u64) -> Self {
        self.dynamic_growth_steps = n;
        self
    }
}

impl From<LossScaleOptimizer> for Optimizer {
    fn from(l: LossScaleOptimizer) -> Optimizer {
        let mut o = l.inner;
        o.loss_scale = Some(LossScale {
            scale: l.initial_scale,
            initial: l.initial_scale,
            step_counter: 0,
            dynamic_growth_steps: l.dynamic_growth_steps,
            skipped: 0,
        });
        o
    }
}

macro_rules! builder {
    ($($(#[$m:meta])* $name:ident: $t:ty),*) => {$(
        $(#[$m])*
        pub fn $name(mut self, v: $t) -> Self {
            self.$name = v;
            self
        }
    )*};
}

impl Optimizer {
    fn with(name: &'static str, rule: Rule, lr: LearningRate) -> Optimizer {
        Optimizer {
            name,
            rule,
            learning_rate: lr,
            weight_decay: None,
            clipnorm: None,
            clipvalue: None,
            global_clipnorm: None,
            use_ema: false,
            ema_momentum: 0.99,
            ema_overwrite_frequency: None,
            iterations: 0,
            slots: Vec::new(),
            ema: Vec::new(),
            u_product: 1.0,
            fused: true,
            loss_scale: None,
            kahan: false,
            compensation: Vec::new(),
        }
    }
    /// Keras's lower-case name (`adam`, `sgd`...).
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The rule and its hyper-parameters.
    pub fn rule(&self) -> &Rule {
        &self.rule
    }
    /// Steps taken.
    pub fn iterations(&self) -> u64 {
        self.iterations
    }
    /// The learning rate of the next step.
    pub fn current_learning_rate(&self) -> f64 {
        self.learning_rate.at(self.iterations)
    }
    /// The current loss scale, when the optimizer scales the loss (see
    /// [`LossScaleOptimizer`]).
    pub fn loss_scale(&self) -> Option<f64> {
        self.loss_scale.as_ref().map(|l| l.scale)
    }
    /// Steps skipped for non-finite gradients under loss scaling.
    pub fn skipped_steps(&self) -> u64 {
        self.loss_scale.as_ref().map(|l| l.skipped).unwrap_or(0)
    }
    /// The same optimizer with fresh state: its settings, no steps taken, no slots, no loss
    /// scaling (what the precision monitor's float32 shadow runs).
    pub fn fresh(&self) -> Optimizer {
        let mut o = Optimizer::with(self.name, self.rule.clone(), self.learning_rate.clone());
        o.weight_decay = self.weight_decay;
        o.clipnorm = self.clipnorm;
        o.clipvalue = self.clipvalue;
        o.global_clipnorm = self.global_clipnorm;
        o.use_ema = self.use_ema;
        o.ema_momentum = self.ema_momentum;
        o.ema_overwrite_frequency = self.ema_overwrite_frequency;
        o.fused = self.fused;
        o
    }
    /// Whether the loss is scaled.
    pub fn is_loss_scaled(&self) -> bool {
        self.loss_scale.is_some()
    }

    /// A step under loss scaling, from the gradients of the *scaled* loss: skipped (and the
    /// scale halved) when `finite` is false, else applied with the gradients unscaled, the
    /// scale doubling after `dynamic_growth_steps` finite steps in a row. Returns whether the
    /// step was applied. Without loss scaling, `apply`.
    pub(crate) fn apply_scaled(
        &mut self,
        vars: &mut [&mut Variable],
        grads: &[Tensor],
        finite: bool,
    ) -> Result<bool> {
        let Some(ls) = self.loss_scale.clone() else {
            self.apply(vars, grads)?;
            return Ok(true);
        };
        if !(ls.scale.is_finite() && ls.scale > 0.0) || ls.dynamic_growth_steps == 0 {
            return Err(KilnError::invalid(
                "LossScaleOptimizer",
                format!(
                    "the scale must be positive and finite and dynamic_growth_steps at least 1, got {} and {}",
                    ls.scale, ls.dynamic_growth_steps
                ),
            ));
        }
        if !finite {
            let scale = ls.scale * 0.5;
            // Halving forever would end in a scale of 0 and silent zero updates.
            if scale < f32::MIN_POSITIVE as f64 {
                return Err(KilnError::invalid(
                    "LossScaleOptimizer",
                    format!(
                        "the gradients stayed non-finite while the loss scale fell to {scale:e} ({} steps skipped); the model produces inf or NaN gradients at any scale",
                        ls.skipped + 1
                    ),
                ));
            }
            self.loss_scale = Some(LossScale {
                scale,
                step_counter: 0,
                skipped: ls.skipped + 1,
                ..ls
            });
            return Ok(false);
        }
        let unscaled: Vec<Tensor> = {
            let _q = crate::autodiff::no_grad();
            grads
                .iter()
                .map(|g| ops::divide(g, ls.scale))
                .collect::<Result<_>>()?
        };
        self.apply(vars, &unscaled)?;
        let (scale, step_counter) = if ls.step_counter + 1 >= ls.dynamic_growth_steps {
            (ls.scale * 2.0, 0)
        } else {
            (ls.scale, ls.step_counter + 1)
        };
        self.loss_scale = Some(LossScale {
            scale,
            step_counter,
            ..ls
        });
        Ok(true)
    }

    /// Sets a constant learning rate (Keras's `optimizer.learning_rate = lr`, what
    /// `ReduceLROnPlateau` and `LearningRateScheduler` do). Refused for a non-finite or
    /// negative value, and where the rate is a schedule (which owns it), as Keras refuses.
    pub fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(KilnError::invalid(
                "set_learning_rate",
                format!("the learning rate must be finite and non-negative, got {lr}"),
            ));
        }
        if !matches!(self.learning_rate, LearningRate::Constant(_)) {
            return Err(KilnError::invalid(
                "set_learning_rate",
                format!(
                    "optimizer {} was created with a learning-rate schedule ({:?}), which sets the rate itself; use a constant learning rate to change it during training",
                    self.name, self.learning_rate
                ),
            ));
        }
        self.learning_rate = LearningRate::Constant(lr);
        Ok(())
    }
    /// Each gradient's norm clipped to this (Keras `clipnorm`).
    pub fn clipnorm(mut self, v: f64) -> Self {
        self.clipnorm = Some(v);
        self
    }
    /// Each gradient's values clipped to `[-v, v]` (Keras `clipvalue`).
    pub fn clipvalue(mut self, v: f64) -> Self {
        self.clipvalue = Some(v);
        self
    }
    /// The gradients' joint norm clipped to this (Keras `global_clipnorm`).
    pub fn global_clipnorm(mut self, v: f64) -> Self {
        self.global_clipnorm = Some(v);
        self
    }
    /// Decoupled weight decay: `w -= w * weight_decay * lr` before each update.
    pub fn weight_decay(mut self, v: f64) -> Self {
        self.weight_decay = Some(v);
        self
    }
    builder! {
        /// Keep an exponential moving average of the weights (copied into them at the end
        /// of `fit`, and every `ema_overwrite_frequency` steps if set).
        use_ema: bool,
        /// The EMA's momentum (Keras default 0.99).
        ema_momentum: f64
    }
    /// Whether the engine may run each update as one fused pass (default on; as PyTorch's
    /// `fused=`). Off: the composed update, the reference the fused kernels are tested
    /// against.
    pub fn fused(mut self, on: bool) -> Self {
        self.fused = on;
        self
    }
    /// Kahan-compensated updates for bfloat16 and float16 variables (kiln's cure for the
    /// stagnation of low-precision weights; no Keras counterpart): the update is computed in
    /// float32 from the weight plus the rounding error the last update left, the weight
    /// stored rounded, and the new rounding error kept (in the variable's dtype) for the
    /// next step, so updates smaller than half an ulp accumulate instead of vanishing. Such
    /// a variable's slots are float32. Other variables are updated as usual.
    pub fn kahan_summation(mut self, on: bool) -> Self {
        self.kahan = on;
        self
    }
    /// Copies the EMA into the weights every `n` steps.
    pub fn ema_overwrite_frequency(mut self, n: u64) -> Self {
        self.ema_overwrite_frequency = Some(n);
        self
    }

    fn check(&self) -> Result<()> {
        self.learning_rate.check()?;
        let bad = [
            ("clipnorm", self.clipnorm),
            ("clipvalue", self.clipvalue),
            ("global_clipnorm", self.global_clipnorm),
        ]
        .into_iter()
        .filter(|(_, v)| v.is_some())
        .count();
        if bad > 1 {
            return Err(KilnError::invalid(
                self.name,
                "only one of clipnorm, clipvalue and global_clipnorm can be set (Keras raises too)",
            ));
        }
        Ok(())
    }

    /// Whether `v` gets Kahan-compensated updates.
    fn compensated(&self, v: &Variable) -> bool {
        use crate::dtype::DType;
        self.kahan && matches!(v.dtype(), DType::BFloat16 | DType::Float16)
    }

    /// One step: updates each variable from its gradient (same order, same shapes).
    /// Frozen variables (`trainable == false`) are passed over.
    pub fn apply(&mut self, vars: &mut [&mut Variable], grads: &[Tensor]) -> Result<()> {
        self.check()?;
        if vars.len() != grads.len() {
            return Err(KilnError::invalid(
                self.name,
                format!("{} variables but {} gradients", vars.len(), grads.len()),
            ));
        }
        let _quiet = crate::autodiff::no_grad();
        if self.slots.is_empty() {
            self.slots = vars
                .iter()
                .map(|v| self.new_slots(v))
                .collect::<Result<_>>()?;
            if self.use_ema {
                self.ema = vars.iter().map(|v| v.value().clone()).collect();
            }
            self.compensation = vars
                .iter()
                .map(|v| {
                    self.compensated(v)
                        .then(|| ops::zeros_like(v.value(), None))
                        .transpose()
                })
                .collect::<Result<_>>()?;
        } else if self.slots.len() != vars.len() {
            return Err(KilnError::invalid(
                self.name,
                format!(
                    "built for {} variables, given {}; use a new optimizer for another model",
                    self.slots.len(),
                    vars.len()
                ),
            ));
        }
        let mut grads: Vec<Tensor> = grads
            .iter()
            .zip(vars.iter())
            .map(|(g, v)| {
                if g.shape() != v.shape() {
                    return Err(KilnError::shape(
                        self.name,
                        v.shape(),
                        g.shape(),
                        format!("the gradient of {:?} must have its shape", v.name()),
                    ));
                }
                ops::cast(g, v.dtype())
            })
            .collect::<Result<_>>()?;
        self.clip(&mut grads)?;
        let lr = self.learning_rate.at(self.iterations);
        let t = (self.iterations + 1) as f64;
        if let Rule::Nadam { beta_1, .. } = self.rule {
            self.u_product *= beta_1 * (1.0 - 0.5 * 0.96f64.powf(t));
        }
        for (i, (v, g)) in vars.iter_mut().zip(&grads).enumerate() {
            if !v.trainable() {
                continue;
            }
            let decay = self.weight_decay.map(|wd| wd * lr).unwrap_or(0.0);
            if let Some(Some(c)) = self.compensation.get(i).cloned() {
                use crate::dtype::DType::Float32;
                let d = v.dtype();
                // The weight as it should be: stored value plus the last rounding error.
                let mut w = ops::add(&ops::cast(v.value(), Float32)?, &ops::cast(&c, Float32)?)?;
                if decay != 0.0 {
                    w = ops::subtract(&w, &ops::multiply(&w, decay)?)?;
                }
                let exact = self.update(i, &w, &ops::cast(g, Float32)?, lr, t)?;
                let stored = ops::cast(&exact, d)?;
                let err = ops::subtract(&exact, &ops::cast(&stored, Float32)?)?;
                self.compensation[i] = Some(ops::cast(&err, d)?);
                v.set_raw(stored);
                continue;
            }
            if let Some(w) = self.fused_update(i, v.value(), g, lr, t, decay)? {
                v.set_raw(w);
                continue;
            }
            let mut w = v.value().clone();
            if decay != 0.0 {
                w = ops::subtract(&w, &ops::multiply(&w, decay)?)?;
            }
            let w = self.update(i, &w, g, lr, t)?;
            v.set_raw(w);
        }
        if self.use_ema {
            let m = if self.iterations == 0 {
                0.0
            } else {
                self.ema_momentum
            };
            for (e, v) in self.ema.iter_mut().zip(vars.iter()) {
                *e = ops::add(&ops::multiply(&*e, m)?, &ops::multiply(v.value(), 1.0 - m)?)?;
            }
        }
        self.iterations += 1;
        if let (true, Some(n)) = (self.use_ema, self.ema_overwrite_frequency) {
            if n > 0 && self.iterations.is_multiple_of(n) {
                self.finalize(vars)?;
            }
        }
        Ok(())
    }

    /// Copies the EMA of the weights into them (what `fit` does at its end when `use_ema`).
    pub fn finalize(&self, vars: &mut [&mut Variable]) -> Result<()> {
        if !self.use_ema {
            return Ok(());
        }
        for (v, e) in vars.iter_mut().zip(&self.ema) {
            if v.trainable() {
                v.set_raw(e.clone());
            }
        }
        Ok(())
    }

    fn new_slots(&self, v: &Variable) -> Result<Vec<Tensor>> {
        let slot_dtype = self.compensated(v).then_some(crate::dtype::DType::Float32);
        let z = || ops::zeros_like(v.value(), slot_dtype);
        Ok(match self.rule {
            Rule::Sgd { momentum, .. } => {
                if momentum != 0.0 {
                    vec![z()?]
                } else {
                    vec![]
                }
            }
            Rule::Adam { amsgrad, .. } => {
                if amsgrad {
                    vec![z()?, z()?, z()?]
                } else {
                    vec![z()?, z()?]
                }
            }
            Rule::RmsProp {
                momentum, centered, ..
            } => {
                let mut s = vec![z()?];
                if momentum > 0.0 {
                    s.push(z()?);
                }
                if centered {
                    s.push(z()?);
                }
                s
            }
            Rule::Adagrad {
                initial_accumulator_value,
                ..
            } => vec![ops::full_like(v.value(), initial_accumulator_value, None)?],
            Rule::Adamax { .. } | Rule::Nadam { .. } => vec![z()?, z()?],
            Rule::Lion { .. } => vec![z()?],
        })
    }

    fn clip(&self, grads: &mut [Tensor]) -> Result<()> {
        if let Some(c) = self.clipvalue {
            for g in grads.iter_mut() {
                *g = ops::clip(&*g, -c, c)?;
            }
        }
        if let Some(c) = self.clipnorm {
            for g in grads.iter_mut() {
                let n = ops::sum(&ops::square(g)?, None, false)?.to_f64_vec()?[0].sqrt();
                if n > c {
                    *g = ops::multiply(&*g, c / n)?;
                }
            }
        }
        if let Some(c) = self.global_clipnorm {
            let mut total = 0.0;
            for g in grads.iter() {
                total += ops::sum(&ops::square(g)?, None, false)?.to_f64_vec()?[0];
            }
            let n = total.sqrt();
            if n > c {
                for g in grads.iter_mut() {
                    *g = ops::multiply(&*g, c / n)?;
                }
            }
        }
        Ok(())
    }

    /// The update as one engine pass, where the rule has a fused form and the engine has it.
    fn fused_update(
        &mut self,
        i: usize,
        w: &Tensor,
        g: &Tensor,
        lr: f64,
        t: f64,
        decay: f64,
    ) -> Result<Option<Tensor>> {
        use crate::backend::OptimizerStep as S;
        if !self.fused {
            return Ok(None);
        }
        let step = match self.rule {
            Rule::Sgd { momentum: 0.0, .. } => S::Sgd { lr, decay },
            Rule::Sgd { momentum, nesterov } => S::SgdMomentum {
                lr,
                momentum,
                nesterov,
                decay,
            },
            Rule::Adam {
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
            } => S::Adam {
                alpha: lr * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t)),
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
                decay,
            },
            Rule::RmsProp {
                rho,
                momentum,
                epsilon,
                centered,
            } => S::RmsProp {
                lr,
                rho,
                momentum,
                epsilon,
                centered,
                decay,
            },
            Rule::Adagrad { epsilon, .. } => S::Adagrad { lr, epsilon, decay },
            Rule::Adamax {
                beta_1,
                beta_2,
                epsilon,
            } => S::Adamax {
                lr,
                beta_1,
                beta_2,
                epsilon,
                bias: 1.0 - beta_1.powf(t),
                decay,
            },
            Rule::Nadam {
                beta_1,
                beta_2,
                epsilon,
            } => {
                let (u_t, u_t1, up) = nadam_factors(self.u_product, beta_1, t);
                S::Nadam {
                    lr,
                    beta_1,
                    beta_2,
                    epsilon,
                    k_m: u_t1 / (1.0 - up * u_t1),
                    k_g: (1.0 - u_t) / (1.0 - up),
                    k_v: 1.0 - beta_2.powf(t),
                    decay,
                }
            }
            Rule::Lion { beta_1, beta_2 } => S::Lion {
                lr,
                beta_1,
                beta_2,
                decay,
            },
        };
        match ops::prim::optimizer_step(step, w, g, &self.slots[i])? {
            Some((w2, slots)) => {
                self.slots[i] = slots;
                Ok(Some(w2))
            }
            None => Ok(None),
        }
    }

    /// The new value of variable `i` (`w`, after weight decay) from its gradient.
    fn update(&mut self, i: usize, w: &Tensor, g: &Tensor, lr: f64, t: f64) -> Result<Tensor> {
        use ops::{add, divide, maximum, multiply, sqrt, square, subtract};
        let s = &mut self.slots[i];
        Ok(match self.rule {
            Rule::Sgd { momentum, nesterov } => {
                if momentum == 0.0 {
                    subtract(w, &multiply(g, lr)?)?
                } else {
                    let m = add(&multiply(g, -lr)?, &multiply(&s[0], momentum)?)?;
                    s[0] = m.clone();
                    if nesterov {
                        add(w, &add(&multiply(g, -lr)?, &multiply(&m, momentum)?)?)?
                    } else {
                        add(w, &m)?
                    }
                }
            }
            Rule::Adam {
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
            } => {
                let alpha = lr * (1.0 - beta_2.powf(t)).sqrt() / (1.0 - beta_1.powf(t));
                s[0] = add(&s[0], &multiply(&subtract(g, &s[0])?, 1.0 - beta_1)?)?;
                s[1] = add(
                    &s[1],
                    &multiply(&subtract(&square(g)?, &s[1])?, 1.0 - beta_2)?,
                )?;
                let v = if amsgrad {
                    s[2] = maximum(&s[2], &s[1])?;
                    s[2].clone()
                } else {
                    s[1].clone()
                };
                subtract(
                    w,
                    &divide(&multiply(&s[0], alpha)?, &add(&sqrt(&v)?, epsilon)?)?,
                )?
            }
            Rule::RmsProp {
                rho,
                momentum,
                epsilon,
                centered,
            } => {
                s[0] = add(&multiply(&s[0], rho)?, &multiply(&square(g)?, 1.0 - rho)?)?;
                let avg = if centered { s.len() - 1 } else { usize::MAX };
                let denom = if centered {
                    s[avg] = add(&multiply(&s[avg], rho)?, &multiply(g, 1.0 - rho)?)?;
                    add(&subtract(&s[0], &square(&s[avg])?)?, epsilon)?
                } else {
                    add(&s[0], epsilon)?
                };
                let inc = divide(&multiply(g, lr)?, &sqrt(&denom)?)?;
                if momentum > 0.0 {
                    s[1] = add(&multiply(&s[1], momentum)?, &inc)?;
                    subtract(w, &s[1])?
                } else {
                    subtract(w, &inc)?
                }
            }
            Rule::Adagrad { epsilon, .. } => {
                s[0] = add(&s[0], &square(g)?)?;
                subtract(
                    w,
                    &divide(&multiply(g, lr)?, &sqrt(&add(&s[0], epsilon)?)?)?,
                )?
            }
            Rule::Adamax {
                beta_1,
                beta_2,
                epsilon,
            } => {
                s[0] = add(&s[0], &multiply(&subtract(g, &s[0])?, 1.0 - beta_1)?)?;
                s[1] = maximum(&multiply(&s[1], beta_2)?, &ops::abs(g)?)?;
                let d = multiply(&add(&s[1], epsilon)?, 1.0 - beta_1.powf(t))?;
                subtract(w, &divide(&multiply(&s[0], lr)?, &d)?)?
            }
            Rule::Nadam {
                beta_1,
                beta_2,
                epsilon,
            } => {
                let (u_t, u_t1, up) = nadam_factors(self.u_product, beta_1, t);
                let up1 = up * u_t1;
                s[0] = add(&s[0], &multiply(&subtract(g, &s[0])?, 1.0 - beta_1)?)?;
                s[1] = add(
                    &s[1],
                    &multiply(&subtract(&square(g)?, &s[1])?, 1.0 - beta_2)?,
                )?;
                let m_hat = add(
                    &multiply(&s[0], u_t1 / (1.0 - up1))?,
                    &multiply(g, (1.0 - u_t) / (1.0 - up))?,
                )?;
                let v_hat = divide(&s[1], 1.0 - beta_2.powf(t))?;
                subtract(
                    w,
                    &divide(&multiply(&m_hat, lr)?, &add(&sqrt(&v_hat)?, epsilon)?)?,
                )?
            }
            Rule::Lion { beta_1, beta_2 } => {
                let dir = ops::sign(&add(
                    &multiply(&s[0], beta_1)?,
                    &multiply(g, 1.0 - beta_1)?,
                )?)?;
                s[0] = add(&multiply(&s[0], beta_2)?, &multiply(g, 1.0 - beta_2)?)?;
                subtract(w, &multiply(&dir, lr)?)?
            }
        })
    }
}

/// Keras's Nadam momentum schedule at step `t`: `u_t`, `u_{t+1}` and the running product.
fn nadam_factors(u_product: f64, beta_1: f64, t: f64) -> (f64, f64, f64) {
    let u_t = beta_1 * (1.0 - 0.5 * 0.96f64.powf(t));
    let u_t1 = beta_1 * (1.0 - 0.5 * 0.96f64.powf(t + 1.0));
    (u_t, u_t1, u_product)
}

macro_rules! optimizer {
    ($(#[$m:meta])* $ty:ident, $name:literal, $default_lr:expr, { $($(#[$fm:meta])* $f:ident: $ft:ty = $fd:expr),* $(,)? }, |$s:ident| $rule:expr $(, weight_decay = $wd:expr)?) => {
        $(#[$m])*
        #[derive(Clone, Debug, PartialEq)]
        pub struct $ty {
            /// The learning rate (a constant or a schedule).
            pub learning_rate: LearningRate,
            $($(#[$fm])* pub $f: $ft,)*
        }
        impl Default for $ty {
            fn default() -> Self {
                $ty { learning_rate: LearningRate::Constant($default_lr), $($f: $fd,)* }
            }
        }
        impl $ty {
            /// With this learning rate and Keras's other defaults.
            pub fn new(learning_rate: impl Into<LearningRate>) -> Self {
                $ty { learning_rate: learning_rate.into(), ..Default::default() }
            }
            $(
                $(#[$fm])*
                pub fn $f(mut self, v: $ft) -> Self { self.$f = v; self }
            )*
        }
        impl From<$ty> for Optimizer {
            fn from($s: $ty) -> Optimizer {
                #[allow(unused_mut)]
                let mut o = Optimizer::with($name, $rule, $s.learning_rate.clone());
                $(o.weight_decay = Some($wd);)?
                o
            }
        }
    };
}

optimizer!(
    /// Stochastic gradient descent (Keras defaults: lr 0.01, momentum 0, no nesterov).
    SGD, "sgd", 0.01, {
        /// Momentum (0: plain SGD).
        momentum: f64 = 0.0,
        /// Nesterov momentum.
        nesterov: bool = false,
    },
    |s| Rule::Sgd { momentum: s.momentum, nesterov: s.nesterov }
);
optimizer!(
    /// Adam (Keras defaults: lr 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7).
    Adam, "adam", 0.001, {
        /// First-moment decay.
        beta_1: f64 = 0.9,
        /// Second-moment decay.
        beta_2: f64 = 0.999,
        /// Added to the denominator.
        epsilon: f64 = 1e-7,
        /// The AMSGrad variant.
        amsgrad: bool = false,
    },
    |s| Rule::Adam { beta_1: s.beta_1, beta_2: s.beta_2, epsilon: s.epsilon, amsgrad: s.amsgrad }
);
optimizer!(
    /// AdamW: Adam with decoupled weight decay (Keras default weight_decay 0.004).
    AdamW, "adamw", 0.001, {
        /// Decoupled weight decay.
        weight_decay: f64 = 0.004,
        /// First-moment decay.
        beta_1: f64 = 0.9,
        /// Second-moment decay.
        beta_2: f64 = 0.999,
        /// Added to the denominator.
        epsilon: f64 = 1e-7,
        /// The AMSGrad variant.
        amsgrad: bool = false,
    },
    |s| Rule::Adam { beta_1: s.beta_1, beta_2: s.beta_2, epsilon: s.epsilon, amsgrad: s.amsgrad },
    weight_decay = s.weight_decay
);
optimizer!(
    /// RMSprop (Keras defaults: lr 0.001, rho 0.9, momentum 0, epsilon 1e-7, not centered).
    RMSprop, "rmsprop", 0.001, {
        /// Decay of the squared-gradient average.
        rho: f64 = 0.9,
        /// Momentum.
        momentum: f64 = 0.0,
        /// Added to the denominator.
        epsilon: f64 = 1e-7,
        /// Normalise by the gradient's variance instead of its second moment.
        centered: bool = false,
    },
    |s| Rule::RmsProp { rho: s.rho, momentum: s.momentum, epsilon: s.epsilon, centered: s.centered }
);
optimizer!(
    /// Adagrad (Keras defaults: lr 0.001, initial accumulator 0.1, epsilon 1e-7).
    Adagrad, "adagrad", 0.001, {
        /// Starting value of the accumulators.
        initial_accumulator_value: f64 = 0.1,
        /// Added inside the square root.
        epsilon: f64 = 1e-7,
    },
    |s| Rule::Adagrad { initial_accumulator_value: s.initial_accumulator_value, epsilon: s.epsilon }
);
optimizer!(
    /// Adamax (Keras defaults: lr 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7).
    Adamax, "adamax", 0.001, {
        /// First-moment decay.
        beta_1: f64 = 0.9,
        /// Infinity-norm decay.
        beta_2: f64 = 0.999,
        /// Added to the denominator.
        epsilon: f64 = 1e-7,
    },
    |s| Rule::Adamax { beta_1: s.beta_1, beta_2: s.beta_2, epsilon: s.epsilon }
);
optimizer!(
    /// Nadam (Keras defaults: lr 0.001, beta_1 0.9, beta_2 0.999, epsilon 1e-7).
    Nadam, "nadam", 0.001, {
        /// First-moment decay.
        beta_1: f64 = 0.9,
        /// Second-moment decay.
        beta_2: f64 = 0.999,
        /// Added to the denominator.
        epsilon: f64 = 1e-7,
    },
    |s| Rule::Nadam { beta_1: s.beta_1, beta_2: s.beta_2, epsilon: s.epsilon }
);
optimizer!(
    /// Lion (Keras defaults: lr 0.001, beta_1 0.9, beta_2 0.99).
    Lion, "lion", 0.001, {
        /// Interpolation of the update direction.
        beta_1: f64 = 0.9,
        /// Momentum decay.
        beta_2: f64 = 0.99,
    },
    |s| Rule::Lion { beta_1: s.beta_1, beta_2: s.beta_2 }
);

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused path is really taken on the reference engine (the suite compares its bits
    /// with the composed path's; this makes sure that comparison is not composed vs composed).
    #[test]
    fn the_reference_engine_fuses_sgd_and_adam() {
        let _s = crate::precision::Scope::new()
            .backend(Some(crate::backend::BackendKind::Ndarray))
            .enter();
        let w = ops::ones(&[5], None, None).unwrap();
        let step = crate::backend::OptimizerStep::Adam {
            alpha: 0.1,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            amsgrad: false,
            decay: 0.0,
        };
        let z = ops::zeros(&[5], None, None).unwrap();
        let r = ops::prim::optimizer_step(step, &w, &w, &[z.clone(), z]).unwrap();
        assert!(r.is_some());
        let sgd = crate::backend::OptimizerStep::Sgd {
            lr: 0.5,
            decay: 0.0,
        };
        let (w2, _) = ops::prim::optimizer_step(sgd, &w, &w, &[])
            .unwrap()
            .unwrap();
        assert_eq!(w2.to_vec::<f32>().unwrap(), vec![0.5; 5]);
    }

    /// Gradients that are non-finite at every scale end in an error once the scale would
    /// leave float32's normal range (141 halvings from 2^15), not in a scale of zero and
    /// silent zero updates.
    #[test]
    fn loss_scaling_refuses_to_underflow() {
        let mut o: Optimizer = LossScaleOptimizer::new(SGD::new(0.1)).into();
        let mut n = 0;
        let err = loop {
            match o.apply_scaled(&mut [], &[], false) {
                Ok(applied) => {
                    assert!(!applied);
                    n += 1;
                }
                Err(e) => break e,
            }
        };
        assert_eq!(n, 141);
        assert_eq!(o.skipped_steps(), 141);
        assert_eq!(o.loss_scale(), Some(2f64.powi(15 - 141)));
        assert!(err.to_string().contains("non-finite"), "{err}");
    }
}
