//! Normalization layers (Keras's `layers.normalization`): `BatchNormalization`,
//! `LayerNormalization`. Both compute in float32 at least (Keras's
//! `result_type(inputs.dtype, "float32")`) and return the layer's compute dtype.

use super::{base_config, merge, BuildContext, CallContext, Layer, Shape};
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::nn::initializers::Initializer;
use crate::nn::policy::DTypePolicy;
use crate::ops;
use crate::tensor::{Tensor, Variable};
use serde_json::json;
use std::sync::Mutex;

/// `t` in `dtype`, as an implicit decision of the resolver (these casts are the layer's, not
/// the user's: where a device lacks the dtype the precision policy adapts or refuses).
fn implicit(t: &Tensor, dtype: DType) -> Result<Tensor> {
    if t.dtype() == dtype {
        return Ok(t.clone());
    }
    ops::autocast(t, dtype, "normalization")
}

/// At least float32 (Keras's normalization compute dtype).
fn widen(x: &Tensor) -> Result<Tensor> {
    match x.dtype() {
        DType::Float16 | DType::BFloat16 => implicit(x, DType::Float32),
        _ => Ok(x.clone()),
    }
}

/// Back to the layer's compute dtype (the layers' autocast).
fn to_compute(y: &Tensor, policy: &Option<DTypePolicy>) -> Result<Tensor> {
    super::autocast(y, policy)
}

/// The builders both normalization layers share.
macro_rules! norm_builders {
    () => {
        /// The feature axis.
        pub fn axis(mut self, a: isize) -> Self {
            self.axis = a;
            self
        }
        /// Added to the variance.
        pub fn epsilon(mut self, e: f64) -> Self {
            self.epsilon = e;
            self
        }
        /// Learn an offset (beta).
        pub fn center(mut self, on: bool) -> Self {
            self.center = on;
            self
        }
        /// Learn a scale (gamma).
        pub fn scale(mut self, on: bool) -> Self {
            self.scale = on;
            self
        }
        /// The dtype policy.
        pub fn dtype(mut self, p: DTypePolicy) -> Self {
            self.policy = Some(p);
            self
        }
        /// A name.
        pub fn name(mut self, n: &str) -> Self {
            self.name = n.into();
            self
        }
    };
}

/// gamma (ones) and beta (zeros) of `n` features, where asked for.
fn affine(
    b: &mut BuildContext,
    n: usize,
    scale: bool,
    center: bool,
) -> Result<(Option<Variable>, Option<Variable>)> {
    let gamma = scale
        .then(|| b.variable("gamma", &[n], &Initializer::Ones))
        .transpose()?;
    let beta = center
        .then(|| b.variable("beta", &[n], &Initializer::Zeros))
        .transpose()?;
    Ok((gamma, beta))
}

/// The size of axis `a`, which must be known to build.
fn known(class: &str, name: &str, s: &[Option<usize>], a: usize) -> Result<usize> {
    s[a].ok_or_else(|| {
        KilnError::invalid(
            class,
            format!("layer {name:?} needs a known size on axis {a} of {s:?}"),
        )
    })
}

fn axis_of(class: &str, name: &str, axis: isize, s: &[Option<usize>]) -> Result<usize> {
    let nd = s.len() as isize;
    let a = if axis < 0 { axis + nd } else { axis };
    if a < 1 || a >= nd {
        return Err(KilnError::invalid(
            class,
            format!("layer {name:?}: axis {axis} is not a feature axis of inputs of shape {s:?}"),
        ));
    }
    Ok(a as usize)
}

/// Normalizes each feature with the batch's statistics while training and with moving
/// averages of them at inference (Keras's `BatchNormalization`). Defaults: axis -1,
/// momentum 0.99, epsilon 1e-3, center and scale, beta zeros, gamma ones, moving mean zeros,
/// moving variance ones. The moving statistics are non-trainable variables, updated after
/// each training step (`moving = moving * momentum + batch * (1 - momentum)`).
///
/// ```
/// use kiln::nn::{BatchNormalization, Layer};
/// let bn = BatchNormalization::new().momentum(0.9);
/// assert_eq!(bn.output_shape(&[None, Some(8)]).unwrap(), vec![None, Some(8)]);
/// ```
#[derive(Debug)]
pub struct BatchNormalization {
    name: String,
    axis: isize,
    momentum: f64,
    epsilon: f64,
    center: bool,
    scale: bool,
    policy: Option<DTypePolicy>,
    gamma: Option<Variable>,
    beta: Option<Variable>,
    moving_mean: Option<Variable>,
    moving_variance: Option<Variable>,
    resolved_axis: usize,
    /// The batch statistics of the last training call, applied by `finish_step`.
    pending: Mutex<Option<(Tensor, Tensor)>>,
}

impl Default for BatchNormalization {
    fn default() -> Self {
        BatchNormalization {
            name: String::new(),
            axis: -1,
            momentum: 0.99,
            epsilon: 1e-3,
            center: true,
            scale: true,
            policy: None,
            gamma: None,
            beta: None,
            moving_mean: None,
            moving_variance: None,
            resolved_axis: 0,
            pending: Mutex::new(None),
        }
    }
}

impl BatchNormalization {
    /// Keras's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    norm_builders!();
    /// The moving averages' momentum.
    pub fn momentum(mut self, m: f64) -> Self {
        self.momentum = m;
        self
    }
    /// The moving mean, once built.
    pub fn moving_mean(&self) -> Option<&Variable> {
        self.moving_mean.as_ref()
    }
    /// The moving variance, once built.
    pub fn moving_variance(&self) -> Option<&Variable> {
        self.moving_variance.as_ref()
    }
    fn reduction_axes(&self, nd: usize) -> Vec<isize> {
        (0..nd)
            .filter(|a| *a != self.resolved_axis)
            .map(|a| a as isize)
            .collect()
    }
}

impl Layer for BatchNormalization {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "BatchNormalization"
    }
    fn build(&mut self, s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        let a = axis_of("BatchNormalization", &self.name, self.axis, s)?;
        let n = known("BatchNormalization", &self.name, s, a)?;
        self.resolved_axis = a;
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        (self.gamma, self.beta) = affine(&mut b, n, self.scale, self.center)?;
        let mut mm = b.variable("moving_mean", &[n], &Initializer::Zeros)?;
        let mut mv = b.variable("moving_variance", &[n], &Initializer::Ones)?;
        mm.set_trainable(false);
        mv.set_trainable(false);
        self.moving_mean = Some(mm);
        self.moving_variance = Some(mv);
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        Ok(s.to_vec())
    }
    fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor> {
        let (Some(mm), Some(mv)) = (&self.moving_mean, &self.moving_variance) else {
            return Err(KilnError::invalid(
                "BatchNormalization",
                format!("layer {:?} is not built", self.name),
            ));
        };
        let x = widen(x)?;
        let c = |v: &Variable| implicit(v.value(), x.dtype());
        let gamma = self.gamma.as_ref().map(c).transpose()?;
        let beta = self.beta.as_ref().map(c).transpose()?;
        let trainable = self
            .gamma
            .iter()
            .chain(self.beta.iter())
            .all(|v| v.trainable());
        let (mean, var) = if ctx.training && trainable {
            let (m, v) = ops::moments(&x, &self.reduction_axes(x.ndim()), false)?;
            *self.pending.lock().unwrap_or_else(|e| e.into_inner()) = Some((
                crate::autodiff::stop_gradient(&m),
                crate::autodiff::stop_gradient(&v),
            ));
            (m, v)
        } else {
            (c(mm)?, c(mv)?)
        };
        let y = ops::batch_normalization(
            &x,
            &mean,
            &var,
            self.resolved_axis as isize,
            beta.as_ref(),
            gamma.as_ref(),
            self.epsilon,
        )?;
        to_compute(&y, &self.policy)
    }
    fn finish_step(&mut self) -> Result<()> {
        let pending = self
            .pending
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        let (Some((m, v)), Some(mm), Some(mv)) = (
            pending,
            self.moving_mean.as_mut(),
            self.moving_variance.as_mut(),
        ) else {
            return Ok(());
        };
        let _q = crate::autodiff::no_grad();
        let k = self.momentum;
        let upd = |old: &Tensor, new: &Tensor| -> Result<Tensor> {
            let new = implicit(new, old.dtype())?;
            ops::add(&ops::multiply(old, k)?, &ops::multiply(&new, 1.0 - k)?)
        };
        let nm = upd(mm.value(), &m)?;
        let nv = upd(mv.value(), &v)?;
        mm.assign(&nm)?;
        mv.assign(&nv)?;
        Ok(())
    }
    fn variables(&self) -> Vec<&Variable> {
        self.gamma
            .iter()
            .chain(self.beta.iter())
            .chain(self.moving_mean.iter())
            .chain(self.moving_variance.iter())
            .collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.gamma
            .iter_mut()
            .chain(self.beta.iter_mut())
            .chain(self.moving_mean.iter_mut())
            .chain(self.moving_variance.iter_mut())
            .collect()
    }
    fn trainable(&self) -> bool {
        self.gamma
            .iter()
            .chain(self.beta.iter())
            .all(|v| v.trainable())
    }
    fn set_trainable(&mut self, on: bool) {
        for v in self.gamma.iter_mut().chain(self.beta.iter_mut()) {
            v.set_trainable(on);
        }
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "axis": self.axis,
                "momentum": self.momentum,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": {"class_name": "Zeros", "config": {}},
                "gamma_initializer": {"class_name": "Ones", "config": {}},
                "moving_mean_initializer": {"class_name": "Zeros", "config": {}},
                "moving_variance_initializer": {"class_name": "Ones", "config": {}},
                "beta_regularizer": null,
                "gamma_regularizer": null,
                "beta_constraint": null,
                "gamma_constraint": null,
                "synchronized": false,
                "renorm": false,
                "renorm_clipping": null,
                "renorm_momentum": 0.99,
            }),
        )
    }
}

/// Normalizes each sample over its last axis (Keras's `LayerNormalization`). Defaults:
/// axis -1, epsilon 1e-3, center and scale (beta zeros, gamma ones).
#[derive(Debug)]
pub struct LayerNormalization {
    name: String,
    axis: isize,
    epsilon: f64,
    center: bool,
    scale: bool,
    policy: Option<DTypePolicy>,
    gamma: Option<Variable>,
    beta: Option<Variable>,
    resolved_axis: usize,
}

impl Default for LayerNormalization {
    fn default() -> Self {
        LayerNormalization {
            name: String::new(),
            axis: -1,
            epsilon: 1e-3,
            center: true,
            scale: true,
            policy: None,
            gamma: None,
            beta: None,
            resolved_axis: 0,
        }
    }
}

impl LayerNormalization {
    /// Keras's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    norm_builders!();
}

impl Layer for LayerNormalization {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "LayerNormalization"
    }
    fn build(&mut self, s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        let a = axis_of("LayerNormalization", &self.name, self.axis, s)?;
        let n = known("LayerNormalization", &self.name, s, a)?;
        self.resolved_axis = a;
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        (self.gamma, self.beta) = affine(&mut b, n, self.scale, self.center)?;
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        Ok(s.to_vec())
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let x = widen(x)?;
        let a = self.resolved_axis as isize;
        let (mean, var) = ops::moments(&x, &[a], true)?;
        // Keras: inv = rsqrt(var + eps) * gamma; x * inv + (beta - mean * inv).
        let mut inv = ops::rsqrt(&ops::add(&var, self.epsilon)?)?;
        let mut shape = vec![1isize; x.ndim()];
        shape[self.resolved_axis] = -1;
        let c = |v: &Variable| ops::reshape(&implicit(v.value(), x.dtype())?, &shape);
        if let Some(g) = &self.gamma {
            inv = ops::multiply(&inv, &c(g)?)?;
        }
        let mut res = ops::negative(&ops::multiply(&mean, &inv)?)?;
        if let Some(b) = &self.beta {
            res = ops::add(&res, &c(b)?)?;
        }
        let y = ops::add(&ops::multiply(&x, &inv)?, &res)?;
        to_compute(&y, &self.policy)
    }
    fn variables(&self) -> Vec<&Variable> {
        self.gamma.iter().chain(self.beta.iter()).collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.gamma.iter_mut().chain(self.beta.iter_mut()).collect()
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "axis": [self.axis],
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "rms_scaling": false,
                "beta_initializer": {"class_name": "Zeros", "config": {}},
                "gamma_initializer": {"class_name": "Ones", "config": {}},
                "beta_regularizer": null,
                "gamma_regularizer": null,
                "beta_constraint": null,
                "gamma_constraint": null,
            }),
        )
    }
}

/// Normalizes each sample over groups of channels (Keras's `GroupNormalization`; defaults:
/// 32 groups, the last axis, epsilon 1e-3, center and scale). The channels must divide into
/// the groups; with `groups` equal to the channels it is instance normalization, with 1
/// layer normalization over every non-batch axis.
#[derive(Debug)]
pub struct GroupNormalization {
    name: String,
    groups: usize,
    axis: isize,
    epsilon: f64,
    center: bool,
    scale: bool,
    policy: Option<DTypePolicy>,
    gamma: Option<Variable>,
    beta: Option<Variable>,
    resolved_axis: usize,
}

impl Default for GroupNormalization {
    fn default() -> Self {
        GroupNormalization {
            name: String::new(),
            groups: 32,
            axis: -1,
            epsilon: 1e-3,
            center: true,
            scale: true,
            policy: None,
            gamma: None,
            beta: None,
            resolved_axis: 0,
        }
    }
}

impl GroupNormalization {
    /// Keras's defaults.
    pub fn new() -> Self {
        Self::default()
    }
    norm_builders!();
    /// The number of channel groups.
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
}

impl Layer for GroupNormalization {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "GroupNormalization"
    }
    fn build(&mut self, s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        let a = axis_of("GroupNormalization", &self.name, self.axis, s)?;
        let n = known("GroupNormalization", &self.name, s, a)?;
        if self.groups == 0 || !n.is_multiple_of(self.groups) {
            return Err(KilnError::invalid(
                "GroupNormalization",
                format!(
                    "layer {:?}: {n} channels do not divide into {} groups",
                    self.name, self.groups
                ),
            ));
        }
        self.resolved_axis = a;
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        (self.gamma, self.beta) = affine(&mut b, n, self.scale, self.center)?;
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        Ok(s.to_vec())
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let x = widen(x)?;
        let a = self.resolved_axis;
        let c = x.shape()[a];
        // [.., groups, c / groups, ..]: statistics over every non-batch axis but the group's.
        let mut gs: Vec<isize> = x.shape().iter().map(|d| *d as isize).collect();
        gs[a] = (c / self.groups) as isize;
        gs.insert(a, self.groups as isize);
        let r = ops::reshape(&x, &gs)?;
        let axes: Vec<isize> = (1..r.ndim())
            .filter(|i| *i != a)
            .map(|i| i as isize)
            .collect();
        let (mean, var) = ops::moments(&r, &axes, true)?;
        let mut bs = vec![1isize; r.ndim()];
        bs[a] = self.groups as isize;
        bs[a + 1] = (c / self.groups) as isize;
        let mut inv = ops::rsqrt(&ops::add(&var, self.epsilon)?)?;
        let v = |t: &Variable| ops::reshape(&implicit(t.value(), r.dtype())?, &bs);
        if let Some(g) = &self.gamma {
            inv = ops::multiply(&inv, &v(g)?)?;
        }
        let mut res = ops::negative(&ops::multiply(&mean, &inv)?)?;
        if let Some(b) = &self.beta {
            res = ops::add(&res, &v(b)?)?;
        }
        let y = ops::add(&ops::multiply(&r, &inv)?, &res)?;
        let back: Vec<isize> = x.shape().iter().map(|d| *d as isize).collect();
        to_compute(&ops::reshape(&y, &back)?, &self.policy)
    }
    fn variables(&self) -> Vec<&Variable> {
        self.gamma.iter().chain(self.beta.iter()).collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.gamma.iter_mut().chain(self.beta.iter_mut()).collect()
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "groups": self.groups,
                "axis": self.axis,
                "epsilon": self.epsilon,
                "center": self.center,
                "scale": self.scale,
                "beta_initializer": {"class_name": "Zeros", "config": {}},
                "gamma_initializer": {"class_name": "Ones", "config": {}},
                "beta_regularizer": null,
                "gamma_regularizer": null,
                "beta_constraint": null,
                "gamma_constraint": null,
            }),
        )
    }
}
