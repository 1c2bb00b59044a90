//! Layers, with Keras's class names, arguments, defaults and config keys: `Input`, `Dense`,
//! `Activation`, `Dropout`, `Flatten`, `Reshape`, `Identity` here; convolutions in [`conv`],
//! pools in [`pooling`].
//!
//! Builders are infallible; names are checked when the layer is built (on a model's
//! `build`, or its first call), which returns the error.

use super::activations::ActivationFn;
use super::initializers::Initializer;
use super::policy::DTypePolicy;
use super::regularizers::Regularizer;
use crate::device::Device;
use crate::error::{KilnError, Result};
use crate::ops;
use crate::tensor::{Tensor, Variable};
use serde_json::json;

/// The builders every kernel-and-bias layer shares (Dense, the convolutions), with Keras's
/// argument names: `activation`, `use_bias`, the initializers and regularizers, `dtype`,
/// `name`, and the `kernel` / `bias` accessors.
macro_rules! kernel_layer_builders {
    () => {
        /// The activation, by Keras name.
        pub fn activation(mut self, name: &str) -> Self {
            self.activation = name.into();
            self
        }
        /// Whether to add a bias.
        pub fn use_bias(mut self, on: bool) -> Self {
            self.use_bias = on;
            self
        }
        /// The kernel's initializer.
        pub fn kernel_initializer(mut self, init: Initializer) -> Self {
            self.kernel_initializer = init;
            self
        }
        /// The bias's initializer.
        pub fn bias_initializer(mut self, init: Initializer) -> Self {
            self.bias_initializer = init;
            self
        }
        /// A penalty on the kernel added to the loss.
        pub fn kernel_regularizer(mut self, r: Regularizer) -> Self {
            self.kernel_regularizer = Some(r);
            self
        }
        /// A penalty on the bias added to the loss.
        pub fn bias_regularizer(mut self, r: Regularizer) -> Self {
            self.bias_regularizer = Some(r);
            self
        }
        /// The layer's dtype policy (default: the model's).
        pub fn dtype(mut self, policy: DTypePolicy) -> Self {
            self.policy = Some(policy);
            self
        }
        /// A name (default: the snake-case class name, `dense`, `conv2d_1`, ...).
        pub fn name(mut self, name: &str) -> Self {
            self.name = name.into();
            self
        }
        /// The kernel, once built.
        pub fn kernel(&self) -> Option<&Variable> {
            self.kernel.as_ref()
        }
        /// The bias, once built (and if used).
        pub fn bias(&self) -> Option<&Variable> {
            self.bias.as_ref()
        }
    };
}
pub(crate) use kernel_layer_builders;

/// The `Layer` methods every kernel-and-bias layer shares: its variables and their
/// regularization.
macro_rules! kernel_layer_variables {
    () => {
        fn variables(&self) -> Vec<&Variable> {
            self.kernel.iter().chain(self.bias.iter()).collect()
        }
        fn variables_mut(&mut self) -> Vec<&mut Variable> {
            self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
        }
        fn regularization(&self) -> Result<Option<Tensor>> {
            super::penalties(&[
                (&self.kernel_regularizer, &self.kernel),
                (&self.bias_regularizer, &self.bias),
            ])
        }
    };
}
pub(crate) use kernel_layer_variables;

/// The config keys every kernel-and-bias layer shares (Keras's).
#[allow(clippy::too_many_arguments)]
pub(crate) fn kernel_config(
    activation: &str,
    use_bias: bool,
    kernel_initializer: &Initializer,
    bias_initializer: &Initializer,
    kernel_regularizer: &Option<Regularizer>,
    bias_regularizer: &Option<Regularizer>,
) -> serde_json::Value {
    json!({
        "activation": activation,
        "use_bias": use_bias,
        "kernel_initializer": {"class_name": kernel_initializer.keras_name(), "config": {}},
        "bias_initializer": {"class_name": bias_initializer.keras_name(), "config": {}},
        "kernel_regularizer": kernel_regularizer.as_ref().map(|r| r.config()),
        "bias_regularizer": bias_regularizer.as_ref().map(|r| r.config()),
        "activity_regularizer": null,
        "kernel_constraint": null,
        "bias_constraint": null,
    })
}

pub mod conv;
pub mod embedding;
pub mod merging;
pub mod normalization;
pub mod pooling;
pub mod reshaping;

pub use conv::{
    Conv, Conv1D, Conv1DTranspose, Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose, ConvTranspose,
    DepthwiseConv, DepthwiseConv1D, DepthwiseConv2D, SeparableConv, SeparableConv1D,
    SeparableConv2D, Size,
};
pub use embedding::Embedding;
pub use merging::{Add, Average, Concatenate, Maximum, Minimum, Multiply, Subtract};
pub use normalization::{BatchNormalization, GroupNormalization, LayerNormalization};
pub use pooling::{
    AveragePooling1D, AveragePooling2D, AveragePooling3D, GlobalAveragePooling1D,
    GlobalAveragePooling2D, GlobalAveragePooling3D, GlobalMaxPooling1D, GlobalMaxPooling2D,
    GlobalMaxPooling3D, GlobalPool, MaxPooling1D, MaxPooling2D, MaxPooling3D, Pool,
};
pub use reshaping::{
    Cropping, Cropping1D, Cropping2D, Cropping3D, Margins, SpatialDropout, SpatialDropout1D,
    SpatialDropout2D, SpatialDropout3D, UpSampling, UpSampling1D, UpSampling2D, UpSampling3D,
    ZeroPadding, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D,
};

/// A shape with a free batch axis (`None` where the size is not known until data comes).
pub type Shape = Vec<Option<usize>>;

/// What a layer's `build` receives.
#[derive(Clone, Debug)]
pub struct BuildContext {
    /// The layer's dtype policy.
    pub policy: DTypePolicy,
    /// Where variables are created.
    pub device: Device,
    /// The seed of the layer's first variable (each variable takes the next).
    pub seed: u64,
}

impl BuildContext {
    /// A variable of `shape` drawn from `init` in the policy's variable dtype.
    pub fn variable(
        &mut self,
        name: &str,
        shape: &[usize],
        init: &Initializer,
    ) -> Result<Variable> {
        let host = init.sample(shape, self.seed)?;
        self.seed = self.seed.wrapping_add(1);
        Variable::for_policy(name, &host, self.policy.variable_dtype(), self.device)
    }
}

/// What a layer's `call` receives.
#[derive(Copy, Clone, Debug)]
pub struct CallContext {
    /// Training (dropout active) or inference.
    pub training: bool,
    /// A seed for this call's random draws (a training step gives each step its own).
    pub seed: u64,
}

/// A layer: variables, a forward computation and its Keras config.
pub trait Layer: Send + std::fmt::Debug {
    /// The layer's name (unique within a model: `dense`, `dense_1`...).
    fn name(&self) -> &str;
    /// Renames it (models name unnamed layers).
    fn set_name(&mut self, name: String);
    /// Keras's class name (`Dense`, `Dropout`...).
    fn class_name(&self) -> &'static str;
    /// Creates the variables for inputs of `input_shape`.
    fn build(&mut self, _input_shape: &[Option<usize>], _ctx: &mut BuildContext) -> Result<()> {
        Ok(())
    }
    /// The output shape for an input shape, without computing anything (Keras's
    /// `compute_output_shape`).
    fn output_shape(&self, input_shape: &[Option<usize>]) -> Result<Shape>;
    /// The forward computation.
    fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor>;
    /// The forward computation on several inputs (merge layers override it; others take
    /// exactly one).
    fn call_many(&self, xs: &[Tensor], ctx: &CallContext) -> Result<Tensor> {
        match xs {
            [x] => self.call(x, ctx),
            _ => Err(KilnError::invalid(
                self.class_name(),
                format!("layer {:?} takes one input, got {}", self.name(), xs.len()),
            )),
        }
    }
    /// The output shape for several inputs (see [`call_many`](Layer::call_many)).
    fn output_shape_many(&self, shapes: &[Shape]) -> Result<Shape> {
        match shapes {
            [s] => self.output_shape(s),
            _ => Err(KilnError::invalid(
                self.class_name(),
                format!(
                    "layer {:?} takes one input, got {}",
                    self.name(),
                    shapes.len()
                ),
            )),
        }
    }
    /// Builds for several inputs (see [`call_many`](Layer::call_many)).
    fn build_many(&mut self, shapes: &[Shape], ctx: &mut BuildContext) -> Result<()> {
        match shapes {
            [s] => self.build(s, ctx),
            _ => Ok(()),
        }
    }
    /// The variables (trainable first, in creation order).
    fn variables(&self) -> Vec<&Variable> {
        Vec::new()
    }
    /// The variables, mutably (same order).
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        Vec::new()
    }
    /// Each variable's path inside the layer, in `variables`'s order: its name (`kernel`),
    /// or `sublayer/kernel` in a layer made of layers (a nested model), so the paths of a
    /// model's weights are unique.
    fn variable_paths(&self) -> Vec<String> {
        self.variables()
            .iter()
            .map(|v| v.name().to_string())
            .collect()
    }
    /// Applies what the last training call left to do to the layer's own state (the moving
    /// statistics of `BatchNormalization`); `fit` calls it after each training step.
    fn finish_step(&mut self) -> Result<()> {
        Ok(())
    }
    /// The regularization penalty of the current weights, if the layer has regularizers.
    fn regularization(&self) -> Result<Option<Tensor>> {
        Ok(None)
    }
    /// Keras's `get_config` (the `config` of the layer in a `.keras` file).
    fn config(&self) -> serde_json::Value;
    /// Where its variables sit in Keras's weights file (`vars/<i>`; a nested model's
    /// `layers/<key>/vars/<i>`).
    fn keras_tree(&self) -> crate::nn::saving::KerasTree {
        crate::nn::saving::KerasTree {
            name: self.name().to_string(),
            vars: self.variables().len(),
            layers: Vec::new(),
        }
    }
    /// Whether its variables are trained.
    fn trainable(&self) -> bool {
        self.variables().iter().all(|v| v.trainable())
    }
    /// Freezes or unfreezes its variables.
    fn set_trainable(&mut self, on: bool) {
        for v in self.variables_mut() {
            v.set_trainable(on);
        }
    }
    /// The shape of an `Input` (models start from it).
    fn input_shape(&self) -> Option<&[usize]> {
        None
    }
}

fn base_config(name: &str, trainable: bool, policy: Option<DTypePolicy>) -> serde_json::Value {
    json!({
        "name": name,
        "trainable": trainable,
        "dtype": policy.map(|p| p.name()).unwrap_or("float32"),
    })
}

/// Keras's `stateless_call`: runs `layer` on `x` with `weights` in place of its variables'
/// values (in [`Layer::variables`] order, each of the variable's shape), and leaves the
/// layer's variables as they were. The result is differentiable in the weights, which is how
/// a gradient with respect to a layer's parameters is taken without touching the layer.
///
/// ```
/// use kiln::nn::{stateless_call, BuildContext, CallContext, Dense, DTypePolicy, Layer};
/// use kiln::{ops, Device};
/// let mut d = Dense::new(2).use_bias(false);
/// let mut ctx = BuildContext { policy: DTypePolicy::new("float32").unwrap(), device: Device::Cpu, seed: 0 };
/// d.build(&[None, Some(3)], &mut ctx).unwrap();
/// let k = ops::ones(&[3, 2], None, None).unwrap();
/// let x = ops::ones(&[1, 3], None, None).unwrap();
/// let y = stateless_call(&mut d, &[k], &x, &CallContext { training: false, seed: 0 }).unwrap();
/// assert_eq!(y.to_vec::<f32>().unwrap(), vec![3.0, 3.0]);
/// ```
pub fn stateless_call(
    layer: &mut dyn Layer,
    weights: &[Tensor],
    x: &Tensor,
    ctx: &CallContext,
) -> Result<Tensor> {
    let n = layer.variables().len();
    if weights.len() != n {
        return Err(KilnError::invalid(
            "stateless_call",
            format!(
                "layer {:?} has {n} variables, got {} weights",
                layer.name(),
                weights.len()
            ),
        ));
    }
    for (v, w) in layer.variables().iter().zip(weights) {
        if v.shape() != w.shape() {
            return Err(KilnError::invalid(
                "stateless_call",
                format!(
                    "variable {:?} of layer {:?} has shape {:?}, its weight {:?}",
                    v.name(),
                    layer.name(),
                    v.shape(),
                    w.shape()
                ),
            ));
        }
    }
    let saved: Vec<Tensor> = layer
        .variables()
        .iter()
        .map(|v| v.value().clone())
        .collect();
    for (v, w) in layer.variables_mut().into_iter().zip(weights) {
        v.set_raw(w.clone());
    }
    let y = layer.call(x, ctx);
    for (v, s) in layer.variables_mut().into_iter().zip(saved) {
        v.set_raw(s);
    }
    y
}

/// The sum of the penalties of the (regularizer, variable) pairs that have both.
fn penalties(pairs: &[(&Option<Regularizer>, &Option<Variable>)]) -> Result<Option<Tensor>> {
    let mut total: Option<Tensor> = None;
    for (r, v) in pairs {
        if let (Some(r), Some(v)) = (r, v) {
            let p = r.penalty(v.value())?;
            total = Some(match total {
                Some(t) => ops::add(&t, &p)?,
                None => p,
            });
        }
    }
    Ok(total)
}

fn merge(mut a: serde_json::Value, b: serde_json::Value) -> serde_json::Value {
    if let (Some(a), serde_json::Value::Object(b)) = (a.as_object_mut(), b) {
        a.extend(b);
    }
    a
}

/// A float input cast to the layer's compute dtype (Keras's autocast); other dtypes pass.
/// An implicit cast, decided by the resolver: where the device lacks the compute dtype the
/// precision policy adapts (one warning), refuses or falls back, as for every implicit dtype;
/// a 64-bit compute dtype is asked under x64 semantics (the policy chose it deliberately).
fn autocast(x: &Tensor, policy: &Option<DTypePolicy>) -> Result<Tensor> {
    match policy {
        Some(p) if x.dtype().is_float() && x.dtype() != p.compute_dtype() => {
            ops::autocast(x, p.compute_dtype(), "autocast")
        }
        _ => Ok(x.clone()),
    }
}

/// The model's input: its shape without the batch axis (Keras's `keras.Input(shape=...)`).
#[derive(Clone, Debug)]
pub struct Input {
    name: String,
    shape: Vec<usize>,
}

impl Input {
    /// An input of `shape` per sample.
    pub fn new(shape: &[usize]) -> Input {
        Input {
            name: String::new(),
            shape: shape.to_vec(),
        }
    }
}

impl Layer for Input {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "InputLayer"
    }
    fn output_shape(&self, input_shape: &[Option<usize>]) -> Result<Shape> {
        Ok(input_shape.to_vec())
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn config(&self) -> serde_json::Value {
        json!({"name": self.name, "batch_shape": std::iter::once(serde_json::Value::Null).chain(self.shape.iter().map(|d| json!(d))).collect::<Vec<_>>(), "dtype": "float32", "sparse": false})
    }
    fn input_shape(&self) -> Option<&[usize]> {
        Some(&self.shape)
    }
}

/// `activation(x @ kernel + bias)` on the last axis (Keras's `Dense`).
///
/// ```
/// use kiln::nn::{Dense, Layer};
/// let d = Dense::new(10).activation("relu").use_bias(false);
/// assert_eq!(d.output_shape(&[None, Some(64)]).unwrap(), vec![None, Some(10)]);
/// ```
#[derive(Debug)]
pub struct Dense {
    name: String,
    units: usize,
    activation: String,
    use_bias: bool,
    kernel_initializer: Initializer,
    bias_initializer: Initializer,
    kernel_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    policy: Option<DTypePolicy>,
    act: ActivationFn,
    kernel: Option<Variable>,
    bias: Option<Variable>,
}

impl Dense {
    /// `units` outputs; no activation, a bias, glorot_uniform kernel, zeros bias (Keras's
    /// defaults).
    pub fn new(units: usize) -> Dense {
        Dense {
            name: String::new(),
            units,
            activation: "linear".into(),
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            policy: None,
            act: ActivationFn::Linear,
            kernel: None,
            bias: None,
        }
    }
    kernel_layer_builders!();
}

impl Layer for Dense {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Dense"
    }
    fn build(&mut self, input_shape: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        self.act = ActivationFn::get(&self.activation)?;
        let Some(Some(n_in)) = input_shape.last().copied() else {
            return Err(KilnError::invalid(
                "Dense",
                format!(
                    "layer {:?} needs inputs with a known last axis, got shape {input_shape:?}; give the model an Input with that size",
                    self.name
                ),
            ));
        };
        if self.units == 0 {
            return Err(KilnError::invalid("Dense", "units must be at least 1"));
        }
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut c = BuildContext {
            policy,
            ..ctx.clone()
        };
        self.kernel = Some(c.variable("kernel", &[n_in, self.units], &self.kernel_initializer)?);
        if self.use_bias {
            self.bias = Some(c.variable("bias", &[self.units], &self.bias_initializer)?);
        }
        ctx.seed = c.seed;
        Ok(())
    }
    fn output_shape(&self, input_shape: &[Option<usize>]) -> Result<Shape> {
        if input_shape.is_empty() {
            return Err(KilnError::invalid(
                "Dense",
                "inputs need at least one axis (the features)",
            ));
        }
        let mut s = input_shape.to_vec();
        *s.last_mut().unwrap_or(&mut None) = Some(self.units);
        Ok(s)
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let kernel = self.kernel.as_ref().ok_or_else(|| {
            KilnError::invalid("Dense", format!("layer {:?} is not built", self.name))
        })?;
        let x = autocast(x, &self.policy)?;
        let cast = |v: &Variable| autocast(v.value(), &self.policy);
        let mut y = ops::matmul(&x, &cast(kernel)?)?;
        if let Some(b) = &self.bias {
            y = ops::add(&y, &cast(b)?)?;
        }
        self.act.apply(&y)
    }
    fn variables(&self) -> Vec<&Variable> {
        self.kernel.iter().chain(self.bias.iter()).collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.kernel.iter_mut().chain(self.bias.iter_mut()).collect()
    }
    fn regularization(&self) -> Result<Option<Tensor>> {
        penalties(&[
            (&self.kernel_regularizer, &self.kernel),
            (&self.bias_regularizer, &self.bias),
        ])
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "units": self.units,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": {"class_name": self.kernel_initializer.keras_name(), "config": {}},
                "bias_initializer": {"class_name": self.bias_initializer.keras_name(), "config": {}},
                "kernel_regularizer": self.kernel_regularizer.as_ref().map(|r| r.config()),
                "bias_regularizer": self.bias_regularizer.as_ref().map(|r| r.config()),
            }),
        )
    }
}

/// An activation as its own layer (Keras's `Activation`).
#[derive(Debug)]
pub struct Activation {
    name: String,
    activation: String,
    act: ActivationFn,
}

impl Activation {
    /// The activation by Keras name.
    pub fn new(activation: &str) -> Activation {
        Activation {
            name: String::new(),
            activation: activation.into(),
            act: ActivationFn::Linear,
        }
    }
}

impl Layer for Activation {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Activation"
    }
    fn build(&mut self, _s: &[Option<usize>], _ctx: &mut BuildContext) -> Result<()> {
        self.act = ActivationFn::get(&self.activation)?;
        Ok(())
    }
    fn output_shape(&self, input_shape: &[Option<usize>]) -> Result<Shape> {
        Ok(input_shape.to_vec())
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        self.act.apply(x)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"activation": self.activation}),
        )
    }
}

/// Zeroes a fraction `rate` of the inputs while training and scales the rest by
/// `1 / (1 - rate)` (Keras's `Dropout`); the identity at inference.
#[derive(Debug)]
pub struct Dropout {
    name: String,
    rate: f64,
    seed: Option<u64>,
}

impl Dropout {
    /// Drops `rate` of the inputs (in `[0, 1)`).
    pub fn new(rate: f64) -> Dropout {
        Dropout {
            name: String::new(),
            rate,
            seed: None,
        }
    }
    /// A seed of its own (default: the model's step seed).
    pub fn seed(mut self, seed: u64) -> Dropout {
        self.seed = Some(seed);
        self
    }
}

impl Layer for Dropout {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Dropout"
    }
    fn build(&mut self, _s: &[Option<usize>], _ctx: &mut BuildContext) -> Result<()> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(KilnError::invalid(
                "Dropout",
                format!("rate must be in [0, 1), got {}", self.rate),
            ));
        }
        Ok(())
    }
    fn output_shape(&self, input_shape: &[Option<usize>]) -> Result<Shape> {
        Ok(input_shape.to_vec())
    }
    fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor> {
        if !ctx.training || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let seed = self.seed.unwrap_or(0).wrapping_add(ctx.seed);
        let u = ops::random_uniform(x.shape(), 0.0, 1.0, Some(x.dtype()), seed, Some(x.device()))?
            .to_backend(x.backend_kind())?;
        let keep = ops::greater_equal(&u, self.rate)?;
        ops::r#where(&keep, &ops::divide(x, 1.0 - self.rate)?, 0.0)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"rate": self.rate, "seed": self.seed, "noise_shape": null}),
        )
    }
}

/// Flattens every axis after the batch axis (Keras's `Flatten`).
#[derive(Debug, Default)]
pub struct Flatten {
    name: String,
}

impl Flatten {
    /// A Flatten layer.
    pub fn new() -> Flatten {
        Flatten::default()
    }
}

impl Layer for Flatten {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Flatten"
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let rest: Option<usize> = s.iter().skip(1).try_fold(1usize, |a, d| d.map(|d| a * d));
        Ok(vec![s.first().copied().flatten(), rest])
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let b = x.shape().first().copied().unwrap_or(1) as isize;
        ops::reshape(x, &[b, -1])
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"data_format": "channels_last"}),
        )
    }
}

/// Reshapes each sample to `target_shape` (one entry may be -1; Keras's `Reshape`).
#[derive(Debug)]
pub struct Reshape {
    name: String,
    target: Vec<isize>,
}

impl Reshape {
    /// The per-sample target shape.
    pub fn new(target_shape: &[isize]) -> Reshape {
        Reshape {
            name: String::new(),
            target: target_shape.to_vec(),
        }
    }
}

impl Layer for Reshape {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Reshape"
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let known: Option<usize> = s.iter().skip(1).try_fold(1usize, |a, d| d.map(|d| a * d));
        let fixed: usize = self
            .target
            .iter()
            .filter(|d| **d >= 0)
            .map(|d| *d as usize)
            .product();
        let mut out = vec![s.first().copied().flatten()];
        for d in &self.target {
            out.push(if *d >= 0 {
                Some(*d as usize)
            } else {
                known.and_then(|k| k.checked_div(fixed))
            });
        }
        if let (Some(k), false) = (known, self.target.contains(&-1)) {
            if k != fixed {
                return Err(KilnError::invalid(
                    "Reshape",
                    format!(
                        "cannot reshape samples of {k} elements to {:?}",
                        self.target
                    ),
                ));
            }
        }
        Ok(out)
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let mut s = vec![x.shape().first().copied().unwrap_or(1) as isize];
        s.extend(&self.target);
        ops::reshape(x, &s)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"target_shape": self.target}),
        )
    }
}

/// Passes its input through (Keras's `Identity`).
#[derive(Debug, Default)]
pub struct Identity {
    name: String,
}

impl Identity {
    /// An Identity layer.
    pub fn new() -> Identity {
        Identity::default()
    }
}

impl Layer for Identity {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Identity"
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        Ok(s.to_vec())
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        Ok(x.clone())
    }
    fn config(&self) -> serde_json::Value {
        base_config(&self.name, true, None)
    }
}

/// The paths of the variables of `layers`: `layer/variable` (`layer/sublayer/variable`).
pub(crate) fn paths_of(layers: &[Box<dyn Layer>]) -> Vec<String> {
    layers
        .iter()
        .flat_map(|l| {
            l.variable_paths()
                .into_iter()
                .map(|p| format!("{}/{p}", l.name()))
                .collect::<Vec<_>>()
        })
        .collect()
}
