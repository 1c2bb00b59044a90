//! An optimizer's Keras config (`compile_config.optimizer` of a `.keras` file) and its state
//! in Keras's variable order (`optimizer/vars/<i>` of `model.weights.h5`), so training
//! resumes where it stopped, in kiln or in Keras.
//!
//! Keras's order, from `keras/src/optimizers/*.py` (3.15): `iterations`, the learning rate
//! (a constant's variable; a schedule has none), the EMA averages when `use_ema`, then each
//! `add_optimizer_variables` call's slots interleaved per trainable variable (Adam: `m, v`
//! per variable, then every `v_hat` under amsgrad; RMSprop: velocities, momentums, average
//! gradients as separate calls), and Nadam's `u_product` last. A `LossScaleOptimizer` puts
//! its own `iterations`, learning rate (0), `step_counter` and `dynamic_scale` first.

use super::{LearningRate, LossScale, Optimizer, Rule};
use crate::array::ArrayData;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::tensor::{Tensor, Variable};
use serde_json::{json, Value};

fn bad(what: &str, msg: impl Into<String>) -> KilnError {
    KilnError::invalid(what, msg.into())
}

fn num(c: &Value, key: &str, default: f64, what: &str) -> Result<f64> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .ok_or_else(|| bad(what, format!("{key:?} must be a finite number, got {v}"))),
    }
}

fn opt_num(c: &Value, key: &str, what: &str) -> Result<Option<f64>> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => num(c, key, 0.0, what).map(Some),
    }
}

fn flag(c: &Value, key: &str, default: bool, what: &str) -> Result<bool> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_bool()
            .ok_or_else(|| bad(what, format!("{key:?} must be true or false, got {v}"))),
    }
}

fn count(c: &Value, key: &str, default: u64, what: &str) -> Result<u64> {
    match c.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0 && *f < 9e15)
                    .map(|f| f as u64)
            })
            .ok_or_else(|| bad(what, format!("{key:?} must be a count, got {v}"))),
    }
}

impl LearningRate {
    /// Keras's config: a number, or a schedule's `{"class_name", "config"}`.
    pub fn keras_config(&self) -> Value {
        let sched = |class: &str, config: Value| json!({"module": "keras.optimizers.schedules", "class_name": class, "config": config, "registered_name": null});
        match self {
            LearningRate::Constant(v) => json!(v),
            LearningRate::ExponentialDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => sched(
                "ExponentialDecay",
                json!({"initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "decay_rate": decay_rate, "staircase": staircase, "name": "ExponentialDecay"}),
            ),
            LearningRate::PiecewiseConstantDecay { boundaries, values } => sched(
                "PiecewiseConstantDecay",
                json!({"boundaries": boundaries, "values": values, "name": "PiecewiseConstant"}),
            ),
            LearningRate::CosineDecay {
                initial_learning_rate,
                decay_steps,
                alpha,
                warmup_target,
                warmup_steps,
            } => sched(
                "CosineDecay",
                json!({"initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "alpha": alpha, "name": "CosineDecay", "warmup_target": warmup_target, "warmup_steps": warmup_steps}),
            ),
            LearningRate::InverseTimeDecay {
                initial_learning_rate,
                decay_steps,
                decay_rate,
                staircase,
            } => sched(
                "InverseTimeDecay",
                json!({"initial_learning_rate": initial_learning_rate, "decay_steps": decay_steps, "decay_rate": decay_rate, "staircase": staircase, "name": "InverseTimeDecay"}),
            ),
        }
    }

    /// From Keras's config (see [`keras_config`](Self::keras_config)).
    pub fn from_keras_config(v: &Value) -> Result<LearningRate> {
        const W: &str = "learning_rate";
        if let Some(x) = v.as_f64() {
            if !x.is_finite() || x < 0.0 {
                return Err(bad(
                    W,
                    format!("must be a finite, non-negative number, got {x}"),
                ));
            }
            return Ok(LearningRate::Constant(x));
        }
        let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| {
            bad(
                W,
                format!(
                    "must be a number or a schedule's {{\"class_name\", \"config\"}}, got {}",
                    short(v)
                ),
            )
        })?;
        let c = v.get("config").cloned().unwrap_or(json!({}));
        let ilr = || num(&c, "initial_learning_rate", 0.0, class);
        let lr = match class {
            "ExponentialDecay" => LearningRate::ExponentialDecay {
                initial_learning_rate: ilr()?,
                decay_steps: count(&c, "decay_steps", 1, class)?,
                decay_rate: num(&c, "decay_rate", 0.0, class)?,
                staircase: flag(&c, "staircase", false, class)?,
            },
            "InverseTimeDecay" => LearningRate::InverseTimeDecay {
                initial_learning_rate: ilr()?,
                decay_steps: count(&c, "decay_steps", 1, class)?,
                decay_rate: num(&c, "decay_rate", 0.0, class)?,
                staircase: flag(&c, "staircase", false, class)?,
            },
            "CosineDecay" => LearningRate::CosineDecay {
                initial_learning_rate: ilr()?,
                decay_steps: count(&c, "decay_steps", 1, class)?,
                alpha: num(&c, "alpha", 0.0, class)?,
                warmup_target: opt_num(&c, "warmup_target", class)?,
                warmup_steps: count(&c, "warmup_steps", 0, class)?,
            },
            "PiecewiseConstantDecay" => {
                let list = |key: &str| -> Result<Vec<Value>> {
                    c.get(key)
                        .and_then(Value::as_array)
                        .cloned()
                        .ok_or_else(|| bad(class, format!("{key:?} must be a list")))
                };
                let boundaries = list("boundaries")?
                    .iter()
                    .map(|b| count(&json!({"b": b}), "b", 0, class))
                    .collect::<Result<Vec<_>>>()?;
                let values = list("values")?
                    .iter()
                    .map(|b| num(&json!({"v": b}), "v", 0.0, class))
                    .collect::<Result<Vec<_>>>()?;
                LearningRate::PiecewiseConstantDecay { boundaries, values }
            }
            other => {
                return Err(bad(
                    W,
                    format!("schedule {:?} is not one kiln has; use ExponentialDecay, InverseTimeDecay, CosineDecay or PiecewiseConstantDecay", escape(other)),
                ))
            }
        };
        lr.check()?;
        Ok(lr)
    }
}

/// A value for an error message: at most 120 characters, escaped.
pub(crate) fn short(v: &Value) -> String {
    escape(&v.to_string())
}

/// `s` with control characters escaped and cut to 120 characters (file contents reach
/// messages and terminals).
pub(crate) fn escape(s: &str) -> String {
    let e: String = s.chars().flat_map(char::escape_debug).collect();
    if e.chars().count() > 120 {
        format!("{}...", e.chars().take(120).collect::<String>())
    } else {
        e
    }
}

impl Optimizer {
    /// Keras's class name (`Adam`, `SGD`, `RMSprop`...).
    pub fn keras_class_name(&self) -> &'static str {
        match self.name {
            "sgd" => "SGD",
            "adam" => "Adam",
            "adamw" => "AdamW",
            "rmsprop" => "RMSprop",
            "adagrad" => "Adagrad",
            "adamax" => "Adamax",
            "nadam" => "Nadam",
            "lion" => "Lion",
            _ => "Optimizer",
        }
    }

    fn inner_config(&self) -> Value {
        let mut c = json!({
            "name": self.name,
            "learning_rate": self.learning_rate.keras_config(),
            "weight_decay": self.weight_decay,
            "clipnorm": self.clipnorm,
            "global_clipnorm": self.global_clipnorm,
            "clipvalue": self.clipvalue,
            "use_ema": self.use_ema,
            "ema_momentum": self.ema_momentum,
            "ema_overwrite_frequency": self.ema_overwrite_frequency,
            "loss_scale_factor": null,
            "gradient_accumulation_steps": null,
        });
        let extra = match self.rule {
            Rule::Sgd { momentum, nesterov } => json!({"momentum": momentum, "nesterov": nesterov}),
            Rule::Adam {
                beta_1,
                beta_2,
                epsilon,
                amsgrad,
            } => {
                json!({"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon, "amsgrad": amsgrad})
            }
            Rule::RmsProp {
                rho,
                momentum,
                epsilon,
                centered,
            } => {
                json!({"rho": rho, "momentum": momentum, "epsilon": epsilon, "centered": centered})
            }
            Rule::Adagrad {
                initial_accumulator_value,
                epsilon,
            } => {
                json!({"initial_accumulator_value": initial_accumulator_value, "epsilon": epsilon})
            }
            Rule::Adamax {
                beta_1,
                beta_2,
                epsilon,
            }
            | Rule::Nadam {
                beta_1,
                beta_2,
                epsilon,
            } => {
                json!({"beta_1": beta_1, "beta_2": beta_2, "epsilon": epsilon})
            }
            Rule::Lion { beta_1, beta_2 } => json!({"beta_1": beta_1, "beta_2": beta_2}),
        };
        if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
            c.extend(e.clone());
        }
        json!({"module": "keras.optimizers", "class_name": self.keras_class_name(), "config": c, "registered_name": null})
    }

    /// Keras's serialized optimizer (`{"module", "class_name", "config", ...}`), wrapped in
    /// a `LossScaleOptimizer` when the loss is scaled.
    ///
    /// ```
    /// use kiln::nn::{Adam, Optimizer};
    /// let opt: Optimizer = Adam::new(1e-3).into();
    /// let c = opt.keras_config();
    /// assert_eq!(c["class_name"], "Adam");
    /// let back = Optimizer::from_keras_config(&c).unwrap();
    /// assert_eq!(back.rule(), opt.rule());
    /// ```
    pub fn keras_config(&self) -> Value {
        match &self.loss_scale {
            None => self.inner_config(),
            Some(ls) => json!({
                "module": "keras.optimizers",
                "class_name": "LossScaleOptimizer",
                "config": {
                    "name": "loss_scale_optimizer",
                    "inner_optimizer": self.inner_config(),
                    "initial_scale": ls.initial,
                    "dynamic_growth_steps": ls.dynamic_growth_steps,
                },
                "registered_name": null,
            }),
        }
    }

    /// An optimizer from Keras's serialized form (or a name, `"adam"`), with Keras's
    /// defaults for what the config leaves out. Options kiln does not have
    /// (`gradient_accumulation_steps`, `loss_scale_factor`) are refused, not ignored.
    pub fn from_keras_config(v: &Value) -> Result<Optimizer> {
        const W: &str = "optimizer config";
        if let Some(name) = v.as_str() {
            return Optimizer::from_keras_config(&json!({"class_name": name, "config": {}}));
        }
        let class = v
            .get("class_name")
            .and_then(Value::as_str)
            .ok_or_else(|| bad(W, format!("needs a \"class_name\", got {}", short(v))))?;
        let c = v.get("config").cloned().unwrap_or(json!({}));
        if !c.is_object() {
            return Err(bad(W, format!("{class}'s \"config\" must be an object")));
        }
        if class == "LossScaleOptimizer" {
            let inner = c
                .get("inner_optimizer")
                .ok_or_else(|| bad(W, "LossScaleOptimizer needs an \"inner_optimizer\""))?;
            let mut o = Optimizer::from_keras_config(inner)?;
            if o.loss_scale.is_some() {
                return Err(bad(W, "a LossScaleOptimizer inside a LossScaleOptimizer"));
            }
            let initial = num(&c, "initial_scale", 32768.0, class)?;
            if initial <= 0.0 {
                return Err(bad(
                    W,
                    format!("initial_scale must be positive, got {initial}"),
                ));
            }
            let growth = count(&c, "dynamic_growth_steps", 2000, class)?;
            o.loss_scale = Some(LossScale {
                scale: initial,
                initial,
                step_counter: 0,
                dynamic_growth_steps: growth.max(1),
                skipped: 0,
            });
            return Ok(o);
        }
        for key in ["gradient_accumulation_steps", "loss_scale_factor"] {
            if c.get(key).is_some_and(|v| !v.is_null()) {
                return Err(bad(
                    W,
                    format!("{class}'s {key:?} is not an option kiln has (it is {}); remove it from the config", short(&c[key])),
                ));
            }
        }
        let lower = class.to_ascii_lowercase();
        let lr_default = if lower == "sgd" { 0.01 } else { 0.001 };
        let lr = match c.get("learning_rate") {
            None | Some(Value::Null) => LearningRate::Constant(lr_default),
            Some(v) => LearningRate::from_keras_config(v)?,
        };
        let b1 = |d| num(&c, "beta_1", d, class);
        let b2 = |d| num(&c, "beta_2", d, class);
        let eps = || num(&c, "epsilon", 1e-7, class);
        let (name, rule): (&'static str, Rule) = match lower.as_str() {
            "sgd" => ("sgd", Rule::Sgd { momentum: num(&c, "momentum", 0.0, class)?, nesterov: flag(&c, "nesterov", false, class)? }),
            "adam" => ("adam", Rule::Adam { beta_1: b1(0.9)?, beta_2: b2(0.999)?, epsilon: eps()?, amsgrad: flag(&c, "amsgrad", false, class)? }),
            "adamw" => ("adamw", Rule::Adam { beta_1: b1(0.9)?, beta_2: b2(0.999)?, epsilon: eps()?, amsgrad: flag(&c, "amsgrad", false, class)? }),
            "rmsprop" => ("rmsprop", Rule::RmsProp { rho: num(&c, "rho", 0.9, class)?, momentum: num(&c, "momentum", 0.0, class)?, epsilon: eps()?, centered: flag(&c, "centered", false, class)? }),
            "adagrad" => ("adagrad", Rule::Adagrad { initial_accumulator_value: num(&c, "initial_accumulator_value", 0.1, class)?, epsilon: eps()? }),
            "adamax" => ("adamax", Rule::Adamax { beta_1: b1(0.9)?, beta_2: b2(0.999)?, epsilon: eps()? }),
            "nadam" => ("nadam", Rule::Nadam { beta_1: b1(0.9)?, beta_2: b2(0.999)?, epsilon: eps()? }),
            "lion" => ("lion", Rule::Lion { beta_1: b1(0.9)?, beta_2: b2(0.99)? }),
            _ => {
                return Err(bad(
                    W,
                    format!("optimizer {:?} is not one kiln has; use SGD, Adam, AdamW, RMSprop, Adagrad, Adamax, Nadam, Lion or LossScaleOptimizer", escape(class)),
                ))
            }
        };
        let mut o = Optimizer::with(name, rule, lr);
        o.weight_decay = opt_num(&c, "weight_decay", class)?;
        if name == "adamw" && o.weight_decay.is_none() {
            o.weight_decay = Some(0.004);
        }
        o.clipnorm = opt_num(&c, "clipnorm", class)?;
        o.clipvalue = opt_num(&c, "clipvalue", class)?;
        o.global_clipnorm = opt_num(&c, "global_clipnorm", class)?;
        o.use_ema = flag(&c, "use_ema", false, class)?;
        o.ema_momentum = num(&c, "ema_momentum", 0.99, class)?;
        o.ema_overwrite_frequency = match c.get("ema_overwrite_frequency") {
            None | Some(Value::Null) => None,
            Some(_) => Some(count(&c, "ema_overwrite_frequency", 0, class)?),
        };
        o.check()?;
        Ok(o)
    }

    /// Groups of slot indices as Keras creates them (one `add_optimizer_variables` call
    /// each; a group's slots interleave per variable).
    fn keras_slot_groups(&self) -> Vec<Vec<usize>> {
        match self.rule {
            Rule::Sgd { momentum, .. } => {
                if momentum != 0.0 {
                    vec![vec![0]]
                } else {
                    vec![]
                }
            }
            Rule::Adam { amsgrad, .. } => {
                let mut g = vec![vec![0, 1]];
                if amsgrad {
                    g.push(vec![2]);
                }
                g
            }
            Rule::RmsProp {
                momentum, centered, ..
            } => {
                let n = 1 + usize::from(momentum > 0.0) + usize::from(centered);
                (0..n).map(|i| vec![i]).collect()
            }
            Rule::Adagrad { .. } | Rule::Lion { .. } => vec![vec![0]],
            Rule::Adamax { .. } | Rule::Nadam { .. } => vec![vec![0, 1]],
        }
    }

    /// The optimizer's variables in Keras's order (see the module docs): what
    /// `optimizer/vars/<i>` holds. Before the first step there are no slots, as in a Keras
    /// optimizer that was never built.
    pub fn state_arrays(&self) -> Result<Vec<ArrayData>> {
        let mut out = Vec::new();
        let scalar = |x: f64| ArrayData::from_shape_vec(&[], vec![x as f32]);
        let iters = |n: u64| ArrayData::from_shape_vec(&[], vec![n as i64]);
        if let Some(ls) = &self.loss_scale {
            out.push(iters(self.iterations)?);
            out.push(scalar(0.0)?);
            out.push(iters(ls.step_counter)?);
            out.push(scalar(ls.scale)?);
        }
        out.push(iters(self.iterations)?);
        if let LearningRate::Constant(v) = self.learning_rate {
            out.push(scalar(v)?);
        }
        if self.slots.is_empty() {
            return Ok(out);
        }
        if self.use_ema {
            for e in &self.ema {
                out.push(e.to_host()?);
            }
        }
        for group in self.keras_slot_groups() {
            for s in &self.slots {
                for &i in &group {
                    let t = s
                        .get(i)
                        .ok_or_else(|| bad(self.name, "a slot is missing"))?;
                    out.push(t.to_host()?);
                }
            }
        }
        if matches!(self.rule, Rule::Nadam { .. }) {
            out.push(scalar(self.u_product)?);
        }
        Ok(out)
    }

    /// Restores [`state_arrays`](Self::state_arrays)'s arrays (Keras's or kiln's) for the
    /// trainable variables `vars`: counts, shapes and dtypes checked, an error naming the
    /// array that does not fit.
    pub fn load_state_arrays(&mut self, arrays: &[ArrayData], vars: &[&Variable]) -> Result<()> {
        const W: &str = "optimizer state";
        let mut it = arrays.iter().enumerate();
        let mut next = |what: &str| -> Result<(usize, &ArrayData)> {
            it.next().ok_or_else(|| {
                bad(
                    W,
                    format!(
                        "{} arrays end before {what}; the file's optimizer is not this model's",
                        arrays.len()
                    ),
                )
            })
        };
        let as_count = |i: usize, a: &ArrayData, what: &str| -> Result<u64> {
            let v = a.to_f64_vec();
            match v.as_slice() {
                [x] if x.is_finite() && *x >= 0.0 && x.fract() == 0.0 => Ok(*x as u64),
                _ => Err(bad(
                    W,
                    format!(
                        "array {i} ({what}) must be one non-negative whole number, got shape {:?}",
                        a.shape()
                    ),
                )),
            }
        };
        let as_real = |i: usize, a: &ArrayData, what: &str| -> Result<f64> {
            match a.to_f64_vec().as_slice() {
                [x] if x.is_finite() => Ok(*x),
                _ => Err(bad(
                    W,
                    format!(
                        "array {i} ({what}) must be one finite number, got shape {:?}",
                        a.shape()
                    ),
                )),
            }
        };
        if self.loss_scale.is_some() {
            let (i, a) = next("the loss scale's iterations")?;
            as_count(i, a, "iterations")?;
            next("the loss scale's learning rate")?;
            let (i, a) = next("step_counter")?;
            let steps = as_count(i, a, "step_counter")?;
            let (i, a) = next("dynamic_scale")?;
            let scale = as_real(i, a, "dynamic_scale")?;
            if scale <= 0.0 {
                return Err(bad(
                    W,
                    format!("dynamic_scale must be positive, got {scale}"),
                ));
            }
            if let Some(ls) = self.loss_scale.as_mut() {
                ls.step_counter = steps;
                ls.scale = scale;
            }
        }
        let (i, a) = next("iterations")?;
        let iterations = as_count(i, a, "iterations")?;
        if let LearningRate::Constant(cur) = self.learning_rate {
            let (i, a) = next("the learning rate")?;
            let lr = as_real(i, a, "learning_rate")?;
            // The file's float32 holds what a callback may have set; the config's f64 is
            // kept where the two agree to float32 precision.
            if lr as f32 != cur as f32 {
                self.set_learning_rate(lr)?;
            }
        }
        let rest: Vec<(usize, &ArrayData)> = it.collect();
        self.iterations = iterations;
        if rest.is_empty() {
            self.slots.clear();
            self.ema.clear();
            return Ok(());
        }
        let groups = self.keras_slot_groups();
        let per_var: usize = groups.iter().map(Vec::len).sum();
        let nadam = matches!(self.rule, Rule::Nadam { .. });
        let want = vars.len() * (per_var + usize::from(self.use_ema)) + usize::from(nadam);
        if rest.len() != want {
            return Err(bad(
                W,
                format!(
                    "{} slot arrays for {} trainable variables; {} ({}) needs {want}",
                    rest.len(),
                    vars.len(),
                    self.keras_class_name(),
                    if self.use_ema { "with EMA" } else { "no EMA" }
                ),
            ));
        }
        let tensor = |i: usize, a: &ArrayData, v: &Variable| -> Result<Tensor> {
            if a.shape() != v.shape() {
                return Err(bad(
                    W,
                    format!(
                        "array {i} has shape {:?}; variable {:?} is {:?}",
                        a.shape(),
                        v.name(),
                        v.shape()
                    ),
                ));
            }
            let want = if self.compensated(v) {
                DType::Float32
            } else {
                v.dtype()
            };
            if a.dtype() != want {
                return Err(bad(
                    W,
                    format!(
                        "array {i} is {}; the slot of variable {:?} is {}",
                        a.dtype().name(),
                        v.name(),
                        want.name()
                    ),
                ));
            }
            crate::tensor::convert_to_tensor(a, Some(want), &v.value().device())
        };
        let mut k = 0;
        let mut ema = Vec::new();
        if self.use_ema {
            for v in vars {
                let (i, a) = rest[k];
                let mut t = tensor(i, a, v)?;
                if self.compensated(v) {
                    t = crate::ops::cast(&t, v.dtype())?;
                }
                ema.push(t);
                k += 1;
            }
        }
        let mut slots: Vec<Vec<Option<Tensor>>> = vec![vec![None; per_var]; vars.len()];
        for group in &groups {
            for (j, v) in vars.iter().enumerate() {
                for &s in group {
                    let (i, a) = rest[k];
                    slots[j][s] = Some(tensor(i, a, v)?);
                    k += 1;
                }
            }
        }
        if nadam {
            let (i, a) = rest[k];
            self.u_product = as_real(i, a, "u_product")?;
        }
        self.slots = slots
            .into_iter()
            .map(|s| {
                s.into_iter()
                    .map(|t| t.ok_or_else(|| bad(W, "a slot is missing")))
                    .collect()
            })
            .collect::<Result<_>>()?;
        self.ema = ema;
        self.compensation = vars
            .iter()
            .map(|v| {
                self.compensated(v)
                    .then(|| crate::ops::zeros_like(v.value(), None))
                    .transpose()
            })
            .collect::<Result<_>>()?;
        Ok(())
    }

    /// What Keras's variables cannot hold exactly, for kiln's own files: Nadam's running
    /// product and the loss scale in f64, the skipped-step count, and the Kahan
    /// compensations (arrays, per variable, `None` where a variable has none).
    pub(crate) fn kiln_state(&self) -> Result<(Value, Vec<Option<ArrayData>>)> {
        let comp = self
            .compensation
            .iter()
            .map(|c| c.as_ref().map(|t| t.to_host()).transpose())
            .collect::<Result<_>>()?;
        Ok((
            json!({
                "u_product": self.u_product,
                "loss_scale": self.loss_scale.as_ref().map(|l| json!({"scale": l.scale, "step_counter": l.step_counter, "skipped": l.skipped})),
            }),
            comp,
        ))
    }

    /// Restores [`kiln_state`](Self::kiln_state) after [`load_state_arrays`](Self::load_state_arrays).
    pub(crate) fn load_kiln_state(
        &mut self,
        v: &Value,
        comp: Vec<Option<ArrayData>>,
    ) -> Result<()> {
        const W: &str = "optimizer state";
        self.u_product = num(v, "u_product", self.u_product, W)?;
        if let (Some(ls), Some(l)) = (
            self.loss_scale.as_mut(),
            v.get("loss_scale").filter(|l| l.is_object()),
        ) {
            ls.scale = num(l, "scale", ls.scale, W)?;
            ls.step_counter = count(l, "step_counter", ls.step_counter, W)?;
            ls.skipped = count(l, "skipped", ls.skipped, W)?;
        }
        if comp.iter().any(Option::is_some) {
            if comp.len() != self.compensation.len() {
                return Err(bad(
                    W,
                    format!(
                        "{} compensations for {} variables",
                        comp.len(),
                        self.compensation.len()
                    ),
                ));
            }
            for (slot, c) in self.compensation.iter_mut().zip(comp) {
                if let (Some(cur), Some(a)) = (slot.as_ref(), c) {
                    if a.shape() != cur.shape() || a.dtype() != cur.dtype() {
                        return Err(bad(W, "a compensation array does not fit its variable"));
                    }
                    *slot = Some(crate::tensor::convert_to_tensor(
                        &a,
                        Some(a.dtype()),
                        &cur.device(),
                    )?);
                }
            }
        }
        Ok(())
    }
}
