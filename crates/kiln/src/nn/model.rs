//! Trainable models: [`Model`] (Keras's `Model`: a functional graph with any number of
//! inputs and outputs) and [`Sequential`] (a stack of layers, a `Model` built layer by
//! layer). Both build on first use and share `summary()`, `compile`, `fit`, `evaluate`,
//! `predict`, `train_on_batch` and weights in and out, with Keras's semantics and defaults.

use super::callbacks::{
    Callback, History, Logs, ProgbarLogger, StepInfo, TrainControl, TrainModel, TrainParams,
    Verbose,
};
use super::functional::{Functional, Graph, KerasTensor};
use super::layers::{BuildContext, CallContext, Layer, Shape};
use super::losses::Loss;
use super::metrics::{Metric, MetricKind};
use super::optimizers::Optimizer;
use super::policy::DTypePolicy;
use crate::array::ArrayData;
use crate::autodiff;
use crate::device::Device;
use crate::error::{KilnError, Result};
use crate::ops;
use crate::precision::ConversionReport;
use crate::tensor::{Tensor, Variable};
use std::collections::BTreeMap;

/// Data `fit`, `evaluate` and `predict` take: host arrays of any dtype (converted once per
/// dataset through the resolver) or tensors, one (`&x`) or one per model input or output
/// (`&[xa, xb]`, `&vec![...]`, `&[&xa, &xb]`), in the model's input or output order.
pub trait ModelData {
    /// Each array as a tensor on `device`, with the conversion's loss report where the
    /// dtype changed; `wide`: the model computes in a 64-bit dtype, so 64-bit data is
    /// converted under x64 semantics (kept where the device has it).
    fn to_model(
        &self,
        device: Device,
        wide: bool,
    ) -> Result<Vec<(Tensor, Option<ConversionReport>)>>;
}

/// One array of model data (what a list of model data is made of).
trait OneArray {
    fn one(&self, device: Device, wide: bool) -> Result<(Tensor, Option<ConversionReport>)>;
}

impl OneArray for ArrayData {
    #[track_caller]
    fn one(&self, device: Device, wide: bool) -> Result<(Tensor, Option<ConversionReport>)> {
        let _x64 = wide.then(|| crate::precision::Scope::new().x64(true).enter());
        crate::tensor::convert_to_tensor_with_report(self, None, &device)
    }
}

impl OneArray for Tensor {
    fn one(&self, device: Device, _wide: bool) -> Result<(Tensor, Option<ConversionReport>)> {
        Ok((autodiff::stop_gradient(&self.to_device(device)?), None))
    }
}

impl<T: OneArray> OneArray for &T {
    fn one(&self, device: Device, wide: bool) -> Result<(Tensor, Option<ConversionReport>)> {
        (**self).one(device, wide)
    }
}

macro_rules! model_data {
    (one: $($t:ty),*) => {$(
        impl ModelData for $t {
            #[track_caller]
            fn to_model(&self, device: Device, wide: bool) -> Result<Vec<(Tensor, Option<ConversionReport>)>> {
                Ok(vec![self.one(device, wide)?])
            }
        }
    )*};
    (many: $($t:ty),*) => {$(
        impl<T: OneArray> ModelData for $t {
            #[track_caller]
            fn to_model(&self, device: Device, wide: bool) -> Result<Vec<(Tensor, Option<ConversionReport>)>> {
                self.iter().map(|a| a.one(device, wide)).collect()
            }
        }
    )*};
}
model_data!(one: ArrayData, Tensor);
model_data!(many: [T], Vec<T>);

impl<T: OneArray, const N: usize> ModelData for [T; N] {
    #[track_caller]
    fn to_model(
        &self,
        device: Device,
        wide: bool,
    ) -> Result<Vec<(Tensor, Option<ConversionReport>)>> {
        self.iter().map(|a| a.one(device, wide)).collect()
    }
}

/// `fit`'s arguments, Keras's names and defaults (batch_size 32, epochs 1, shuffle, verbose
/// "auto").
#[derive(Clone, Debug)]
pub struct FitArgs {
    /// Samples per step.
    pub batch_size: usize,
    /// The epoch to stop before (counting from 0, so `epochs` runs are made from 0).
    pub epochs: usize,
    /// The first epoch (to resume).
    pub initial_epoch: usize,
    /// Shuffle the training samples every epoch (seeded).
    pub shuffle: bool,
    /// The last fraction of the data (before shuffling) held out for validation.
    pub validation_split: f64,
    /// Explicit validation data, one array per model input and one per output (takes
    /// precedence over `validation_split`).
    pub validation_data: Option<(Vec<ArrayData>, Vec<ArrayData>)>,
    /// Weight per class index (for integer or one-hot labels; single-output models, as in
    /// Keras).
    pub class_weight: Option<BTreeMap<usize, f64>>,
    /// Weight per sample (applied to every output's loss, as Keras does).
    pub sample_weight: Option<ArrayData>,
    /// 0 silent, 1 progress bar, 2 one line per epoch; `Auto`: 1 on a terminal, else 2.
    pub verbose: Verbose,
    /// Refuse NaN/inf in the data before the first step (default on).
    pub check_finite: bool,
    /// The shuffle seed.
    pub seed: u64,
}

impl Default for FitArgs {
    fn default() -> Self {
        FitArgs {
            batch_size: 32,
            epochs: 1,
            initial_epoch: 0,
            shuffle: true,
            validation_split: 0.0,
            validation_data: None,
            class_weight: None,
            sample_weight: None,
            verbose: Verbose::Auto,
            check_finite: true,
            seed: 0,
        }
    }
}

macro_rules! setters {
    ($t:ty { $($(#[$m:meta])* $f:ident: $ft:ty),* }) => {
        impl $t {$(
            $(#[$m])*
            pub fn $f(mut self, v: $ft) -> Self { self.$f = v; self }
        )*}
    };
}
setters!(FitArgs {
    /// Samples per step.
    batch_size: usize,
    /// Epochs.
    epochs: usize,
    /// The first epoch.
    initial_epoch: usize,
    /// Shuffle each epoch.
    shuffle: bool,
    /// Held-out fraction.
    validation_split: f64,
    /// Progress output.
    verbose: Verbose,
    /// Refuse non-finite data.
    check_finite: bool,
    /// Shuffle seed.
    seed: u64
});

impl FitArgs {
    /// Validation data for a model of one input and one output.
    pub fn validation_data(mut self, x: ArrayData, y: ArrayData) -> Self {
        self.validation_data = Some((vec![x], vec![y]));
        self
    }
    /// Validation data: one array per model input, one per output.
    pub fn validation_data_many(mut self, x: Vec<ArrayData>, y: Vec<ArrayData>) -> Self {
        self.validation_data = Some((x, y));
        self
    }
    /// Class weights.
    pub fn class_weight(mut self, w: BTreeMap<usize, f64>) -> Self {
        self.class_weight = Some(w);
        self
    }
    /// Sample weights.
    pub fn sample_weight(mut self, w: ArrayData) -> Self {
        self.sample_weight = Some(w);
        self
    }
}

/// `compile`'s per-output arguments (Keras's `loss`, `loss_weights` and `metrics` given as
/// lists in output order or as dicts keyed by output name), for models with several outputs.
///
/// ```
/// use kiln::nn::{CompileArgs, Loss};
/// let args = CompileArgs::new()
///     .output_loss("reg", Loss::MeanSquaredError)
///     .output_loss("cls", Loss::sparse_categorical_crossentropy(true))
///     .loss_weights(&[1.0, 0.5])
///     .output_metrics("cls", &["accuracy"]);
/// # let _ = args;
/// ```
#[derive(Clone, Debug, Default)]
pub struct CompileArgs {
    loss: Option<Loss>,
    losses: Option<Vec<Option<Loss>>>,
    named_losses: Vec<(String, Option<Loss>)>,
    loss_weights: Option<Vec<f64>>,
    named_weights: Vec<(String, f64)>,
    metrics: Option<Vec<Vec<String>>>,
    named_metrics: Vec<(String, Vec<String>)>,
}

impl CompileArgs {
    /// No loss yet (give one).
    pub fn new() -> CompileArgs {
        CompileArgs::default()
    }
    /// One loss for every output (Keras's `loss="mse"` on a model of several outputs).
    pub fn loss(mut self, loss: Loss) -> Self {
        self.loss = Some(loss);
        self
    }
    /// One loss per output, in output order; `None` trains that output with no loss.
    pub fn losses<L: Into<Option<Loss>>>(mut self, losses: impl IntoIterator<Item = L>) -> Self {
        self.losses = Some(losses.into_iter().map(Into::into).collect());
        self
    }
    /// The loss of the output named `output` (Keras's dict form: every output needs one;
    /// [`no_loss`](Self::no_loss) for one that has none).
    pub fn output_loss(mut self, output: &str, loss: Loss) -> Self {
        self.named_losses.push((output.into(), Some(loss)));
        self
    }
    /// The output named `output` has no loss.
    pub fn no_loss(mut self, output: &str) -> Self {
        self.named_losses.push((output.into(), None));
        self
    }
    /// A weight per output, in output order: the loss minimised is the weighted sum.
    pub fn loss_weights(mut self, w: &[f64]) -> Self {
        self.loss_weights = Some(w.to_vec());
        self
    }
    /// The weight of one output's loss (the others keep 1).
    pub fn output_loss_weight(mut self, output: &str, w: f64) -> Self {
        self.named_weights.push((output.into(), w));
        self
    }
    /// Metrics per output, in output order (Keras's list of lists).
    pub fn metrics(mut self, per_output: &[&[&str]]) -> Self {
        self.metrics = Some(
            per_output
                .iter()
                .map(|m| m.iter().map(|s| s.to_string()).collect())
                .collect(),
        );
        self
    }
    /// Metrics of the output named `output` (logged as `<output>_<metric>`).
    pub fn output_metrics(mut self, output: &str, metrics: &[&str]) -> Self {
        self.named_metrics.push((
            output.into(),
            metrics.iter().map(|s| s.to_string()).collect(),
        ));
        self
    }

    /// Per-output losses, weights and metrics for a model with outputs `names`.
    fn resolve(self, names: &[String], optimizer: Optimizer) -> Result<Compiled> {
        let n = names.len();
        let list = names.join(", ");
        let index = |name: &str, what: &str| -> Result<usize> {
            names.iter().position(|o| o == name).ok_or_else(|| {
                KilnError::invalid(
                    "compile",
                    format!("{what} names the output {name:?}; the model's outputs are: {list}"),
                )
            })
        };
        let forms = [
            self.loss.is_some(),
            self.losses.is_some(),
            !self.named_losses.is_empty(),
        ];
        if forms.iter().filter(|f| **f).count() != 1 {
            return Err(KilnError::invalid(
                "compile",
                "give the loss one way: CompileArgs::loss (every output), losses (one per output) or output_loss (by name)",
            ));
        }
        let losses: Vec<Option<Loss>> = if let Some(l) = self.loss {
            vec![Some(l); n]
        } else if let Some(ls) = self.losses {
            if ls.len() != n {
                return Err(KilnError::invalid(
                    "compile",
                    format!(
                        "{} losses for a model of {n} outputs ({list}); give one per output (None for an output without a loss)",
                        ls.len()
                    ),
                ));
            }
            ls
        } else {
            let mut ls: Vec<Option<Option<Loss>>> = vec![None; n];
            for (name, l) in self.named_losses {
                let i = index(&name, "a loss")?;
                if ls[i].replace(l).is_some() {
                    return Err(KilnError::invalid(
                        "compile",
                        format!("the output {name:?} is given two losses"),
                    ));
                }
            }
            // Keras: a dict of losses names every output.
            let missing: Vec<&str> = names
                .iter()
                .zip(&ls)
                .filter(|(_, l)| l.is_none())
                .map(|(n, _)| n.as_str())
                .collect();
            if !missing.is_empty() {
                return Err(KilnError::invalid(
                    "compile",
                    format!(
                        "no loss for the output(s) {}; give each output a loss (or CompileArgs::no_loss)",
                        missing.join(", ")
                    ),
                ));
            }
            ls.into_iter().map(|l| l.flatten()).collect()
        };
        if losses.iter().all(|l| l.is_none()) {
            return Err(KilnError::invalid(
                "compile",
                "no output has a loss: there is nothing to train",
            ));
        }
        let mut weights = match self.loss_weights {
            Some(w) if w.len() != n => {
                return Err(KilnError::invalid(
                    "compile",
                    format!(
                        "`loss_weights` must match the number of outputs: {} weights for {n} outputs ({list})",
                        w.len()
                    ),
                ))
            }
            Some(w) => w,
            None => vec![1.0; n],
        };
        for (name, w) in self.named_weights {
            weights[index(&name, "a loss weight")?] = w;
        }
        if let Some(w) = weights.iter().find(|w| !w.is_finite()) {
            return Err(KilnError::invalid(
                "compile",
                format!("a loss weight is {w}; loss weights must be finite"),
            ));
        }
        let mut metrics = match self.metrics {
            Some(m) if m.len() != n => {
                return Err(KilnError::invalid(
                    "compile",
                    format!(
                        "{} metric lists for a model of {n} outputs ({list}); give one list per output, or name the output with output_metrics",
                        m.len()
                    ),
                ))
            }
            Some(m) => m,
            None => vec![Vec::new(); n],
        };
        for (name, m) in self.named_metrics {
            metrics[index(&name, "a metric list")?].extend(m);
        }
        for m in metrics.iter().flatten() {
            Metric::get(m, &[1], &[None, Some(2)])?;
        }
        Ok(Compiled {
            optimizer,
            losses,
            loss_weights: weights,
            metrics,
        })
    }
}

struct Compiled {
    optimizer: Optimizer,
    /// One per output (`None`: the output is not trained).
    losses: Vec<Option<Loss>>,
    loss_weights: Vec<f64>,
    /// Metric names per output.
    metrics: Vec<Vec<String>>,
}

/// What a model is made of.
enum Body {
    /// A stack of layers, each reading the previous one's output.
    Stack {
        layers: Vec<Box<dyn Layer>>,
        /// The per-sample input shape, once known.
        input: Option<Vec<usize>>,
        built: bool,
    },
    /// A functional graph.
    Graph { graph: Functional, built: bool },
}

/// A trainable model (Keras's `Model`): a functional graph of layer calls from any number of
/// inputs to any number of outputs, trained with a loss per output.
///
/// ```
/// use kiln::nn::{CompileArgs, Concatenate, Dense, FitArgs, Graph, Loss, Model, SGD, Verbose};
/// use kiln::ArrayData;
/// let mut g = Graph::new();
/// let (a, b) = (g.input(&[3]), g.input(&[2]));
/// let h = g.apply(Concatenate::new(), &[a, b]).unwrap();
/// let h = g.apply(Dense::new(8).activation("relu"), &[h]).unwrap();
/// let reg = g.apply(Dense::new(1).name("reg"), &[h]).unwrap();
/// let cls = g.apply(Dense::new(3).name("cls"), &[h]).unwrap();
/// let mut model = Model::new(g, &[a, b], &[reg, cls]).unwrap();
/// model.compile_with(SGD::new(0.1), CompileArgs::new()
///     .losses([Loss::MeanSquaredError, Loss::sparse_categorical_crossentropy(true)])
///     .loss_weights(&[1.0, 0.5])
///     .output_metrics("cls", &["accuracy"])).unwrap();
/// let xa = ArrayData::from_shape_vec(&[4, 3], vec![0.5f64; 12]).unwrap();
/// let xb = ArrayData::from_shape_vec(&[4, 2], vec![0.1f64; 8]).unwrap();
/// let yr = ArrayData::from_shape_vec(&[4, 1], vec![1.0f64; 4]).unwrap();
/// let yc = ArrayData::from_shape_vec(&[4], vec![0i64, 1, 2, 1]).unwrap();
/// let h = model.fit(&[&xa, &xb], &[&yr, &yc], FitArgs::default().verbose(Verbose::Silent)).unwrap();
/// for key in ["loss", "reg_loss", "cls_loss", "cls_accuracy"] {
///     assert!(h.get(key).is_some(), "{key}");
/// }
/// ```
pub struct Model {
    name: String,
    body: Body,
    policy: Option<DTypePolicy>,
    device: Option<Device>,
    seed: u64,
    compiled: Option<Compiled>,
    step: u64,
    callbacks: Vec<Box<dyn Callback>>,
    /// Whether `step` keeps a [`StepRecord`] (a callback asked for steps).
    observe_steps: bool,
    last_step: Option<StepRecord>,
}

/// A linear stack of layers (Keras's `Sequential`): a [`Model`] built layer by layer, so
/// every `Model` method (`compile`, `fit`, `summary`...) works on it.
///
/// ```
/// use kiln::nn::{Sequential, Input, Dense, Adam, Loss};
/// let mut model = Sequential::new()
///     .add(Input::new(&[4]))
///     .add(Dense::new(8).activation("relu"))
///     .add(Dense::new(3));
/// model.compile(Adam::new(1e-3), Loss::sparse_categorical_crossentropy(true), &["accuracy"]).unwrap();
/// assert!(model.summary().unwrap().contains("Total params: 67"));
/// ```
pub struct Sequential(Model);

impl std::ops::Deref for Sequential {
    type Target = Model;
    fn deref(&self) -> &Model {
        &self.0
    }
}

impl std::ops::DerefMut for Sequential {
    fn deref_mut(&mut self) -> &mut Model {
        &mut self.0
    }
}

impl Default for Sequential {
    fn default() -> Self {
        Sequential::new()
    }
}

/// The builder settings both model kinds take.
macro_rules! model_builders {
    ($t:ident, $m:ident => $inner:expr) => {
        impl $t {
            /// The seed of the initializers (each variable takes the next) and of the dropout
            /// masks.
            pub fn seed(mut self, seed: u64) -> $t {
                let $m = &mut self;
                $inner.seed = seed;
                self
            }
            /// The dtype policy of every layer without one (default: floatx's).
            pub fn dtype_policy(mut self, policy: DTypePolicy) -> $t {
                let $m = &mut self;
                $inner.policy = Some(policy);
                self
            }
            /// The device (default: the configured one).
            pub fn device(mut self, device: Device) -> $t {
                let $m = &mut self;
                $inner.device = Some(device);
                self
            }
            /// The model's name.
            pub fn name(mut self, name: &str) -> $t {
                let $m = &mut self;
                $inner.name = name.into();
                self
            }
            /// Adds a callback to every `fit`.
            pub fn callback(mut self, cb: impl Callback + 'static) -> $t {
                let $m = &mut self;
                $inner.callbacks.push(Box::new(cb));
                self
            }
        }
    };
}
model_builders!(Sequential, m => m.0);
model_builders!(Model, m => m);

impl Sequential {
    /// An empty model named `sequential`.
    pub fn new() -> Sequential {
        Sequential(Model::with_body(
            "sequential",
            Body::Stack {
                layers: Vec::new(),
                input: None,
                built: false,
            },
        ))
    }
    /// Appends a layer (an `Input` sets the model's input shape).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer + 'static) -> Sequential {
        self.push(Box::new(layer));
        self
    }
    /// Appends a boxed layer.
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        if let Body::Stack {
            layers,
            input,
            built,
        } = &mut self.0.body
        {
            if let Some(s) = layer.input_shape() {
                *input = Some(s.to_vec());
                return;
            }
            *built = false;
            layers.push(layer);
        }
    }
    /// The model, as a `Model` value.
    pub fn into_model(self) -> Model {
        self.0
    }
}

impl Model {
    fn with_body(name: &str, body: Body) -> Model {
        Model {
            name: name.into(),
            body,
            policy: None,
            device: None,
            seed: 0,
            compiled: None,
            step: 0,
            callbacks: Vec::new(),
            observe_steps: false,
            last_step: None,
        }
    }

    /// The model of `graph` from `inputs` to `outputs` (Keras's `Model(inputs, outputs)`);
    /// a shape mismatch was already an error when the graph was built.
    pub fn new(graph: Graph, inputs: &[KerasTensor], outputs: &[KerasTensor]) -> Result<Model> {
        Ok(Model::from_functional(graph.build(inputs, outputs)?))
    }

    /// A trainable model around a functional graph (named as the graph, default
    /// `functional`).
    pub fn from_functional(graph: Functional) -> Model {
        let name = if Layer::name(&graph).is_empty() {
            "functional".to_string()
        } else {
            Layer::name(&graph).to_string()
        };
        Model::with_body(
            &name,
            Body::Graph {
                graph,
                built: false,
            },
        )
    }

    /// The layers (each once, shared or not).
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        match &self.body {
            Body::Stack { layers, .. } => layers,
            Body::Graph { graph, .. } => graph.layers(),
        }
    }
    /// The layers, mutably (to freeze one).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        match &mut self.body {
            Body::Stack { layers, .. } => layers,
            Body::Graph { graph, .. } => graph.layers_mut(),
        }
    }
    /// The number of inputs.
    pub fn num_inputs(&self) -> usize {
        match &self.body {
            Body::Stack { .. } => 1,
            Body::Graph { graph, .. } => graph.num_inputs(),
        }
    }
    /// The names of the outputs (Keras's `output_names`: the layers that make them), which
    /// name their losses and metrics in the logs.
    pub fn output_names(&self) -> Vec<String> {
        match &self.body {
            Body::Stack { layers, .. } => {
                vec![layers
                    .last()
                    .map(|l| l.name().to_string())
                    .unwrap_or_default()]
            }
            Body::Graph { graph, .. } => graph.output_names(),
        }
    }
    /// Whether the model computes in a 64-bit float (its data then converts under x64).
    fn wide(&self) -> bool {
        self.policy
            .map(|p| p.compute_dtype().is_64bit())
            .unwrap_or(false)
    }

    /// The device the model computes on.
    pub fn current_device(&self) -> Result<Device> {
        Ok(match self.device {
            Some(d) => d,
            None => crate::precision::config::current()?.device,
        })
    }

    fn build_context(&self) -> Result<BuildContext> {
        let policy = match self.policy {
            Some(p) => p,
            None => DTypePolicy::default_policy()?,
        };
        Ok(BuildContext {
            policy,
            device: self.current_device()?,
            seed: self.seed,
        })
    }

    /// Creates every variable, for samples of `input_shape` (no batch axis). A functional
    /// model knows its input shapes: `input_shape` must be its (one) input's, or empty.
    pub fn build(&mut self, input_shape: &[usize]) -> Result<()> {
        let mut ctx = self.build_context()?;
        match &mut self.body {
            Body::Stack {
                layers,
                input,
                built,
            } => {
                if let Some(s) = input {
                    if s != input_shape {
                        return Err(KilnError::shape(
                            "Sequential.build",
                            s,
                            input_shape,
                            "the model's Input has another shape",
                        ));
                    }
                }
                *input = Some(input_shape.to_vec());
                let mut counts: BTreeMap<String, usize> = BTreeMap::new();
                let mut shape: Shape = std::iter::once(None)
                    .chain(input_shape.iter().map(|d| Some(*d)))
                    .collect();
                for l in layers.iter_mut() {
                    if l.name().is_empty() {
                        let base = snake(l.class_name());
                        let n = counts.entry(base.clone()).or_insert(0);
                        l.set_name(if *n == 0 {
                            base.clone()
                        } else {
                            format!("{base}_{n}")
                        });
                        *n += 1;
                    }
                    l.build(&shape, &mut ctx)?;
                    shape = l.output_shape(&shape)?;
                }
                *built = true;
            }
            Body::Graph { graph, built } => {
                let shapes = graph.input_shapes();
                if !input_shape.is_empty() && (shapes.len() != 1 || shapes[0] != input_shape) {
                    return Err(KilnError::invalid(
                        "Model.build",
                        format!(
                            "the model's inputs have shapes {shapes:?}, not {input_shape:?}; a functional model builds from its own Input shapes (call build(&[]))"
                        ),
                    ));
                }
                graph.build_graph(&mut ctx)?;
                *built = true;
            }
        }
        Ok(())
    }

    fn is_built(&self) -> bool {
        match &self.body {
            Body::Stack { built, .. } | Body::Graph { built, .. } => *built,
        }
    }

    /// Builds on first use: a stack from the first input's sample shape (unless it has an
    /// `Input`), a graph from its own inputs.
    fn ensure_built(&mut self, first: &Tensor) -> Result<()> {
        if self.is_built() {
            return Ok(());
        }
        match &self.body {
            Body::Stack { input, .. } => {
                let s = input
                    .clone()
                    .unwrap_or_else(|| first.shape()[1.min(first.ndim())..].to_vec());
                self.build(&s)
            }
            Body::Graph { .. } => self.build(&[]),
        }
    }

    /// The per-sample input shapes, where known.
    fn input_shapes(&self) -> Option<Vec<Vec<usize>>> {
        match &self.body {
            Body::Stack { input, .. } => input.clone().map(|i| vec![i]),
            Body::Graph { graph, .. } => Some(graph.input_shapes()),
        }
    }

    /// The output shapes (batch axis `None`) without computing anything.
    pub fn output_shapes(&self) -> Result<Vec<Shape>> {
        match &self.body {
            Body::Stack { layers, input, .. } => {
                let input = input.as_ref().ok_or_else(|| {
                    KilnError::invalid(
                        "Sequential",
                        "the model has no input shape yet: add an Input, call build, or fit it",
                    )
                })?;
                let mut s: Shape = std::iter::once(None)
                    .chain(input.iter().map(|d| Some(*d)))
                    .collect();
                for l in layers {
                    s = l.output_shape(&s)?;
                }
                Ok(vec![s])
            }
            Body::Graph { graph, .. } => Ok(graph.output_shapes()),
        }
    }

    /// The output shape of a model of one output.
    pub fn output_shape(&self) -> Result<Shape> {
        let mut s = self.output_shapes()?;
        if s.len() != 1 {
            return Err(KilnError::invalid(
                "Model.output_shape",
                format!(
                    "the model has {} outputs ({}); use output_shapes",
                    s.len(),
                    self.output_names().join(", ")
                ),
            ));
        }
        Ok(s.remove(0))
    }

    /// Every variable, layer by layer.
    pub fn variables(&self) -> Vec<&Variable> {
        self.layers().iter().flat_map(|l| l.variables()).collect()
    }

    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.layers_mut()
            .iter_mut()
            .flat_map(|l| l.variables_mut())
            .collect()
    }

    /// The trainable variables.
    pub fn trainable_variables(&self) -> Vec<&Variable> {
        self.variables()
            .into_iter()
            .filter(|v| v.trainable())
            .collect()
    }

    /// Keras's summary table: each layer's name, class, output shape and parameter count
    /// (and, for a functional model, what each call is connected to), then the totals with
    /// their sizes.
    pub fn summary(&mut self) -> Result<String> {
        if self.input_shapes().is_some() && !self.is_built() {
            match &self.body {
                Body::Stack { input, .. } => {
                    let s = input.clone().unwrap_or_default();
                    self.build(&s)?;
                }
                Body::Graph { .. } => self.build(&[])?,
            }
        }
        let (columns, rows): (Vec<&str>, Vec<Vec<String>>) = match &self.body {
            Body::Stack { layers, input, .. } => {
                let mut shape: Option<Shape> = input.as_ref().map(|i| {
                    std::iter::once(None)
                        .chain(i.iter().map(|d| Some(*d)))
                        .collect()
                });
                let mut rows = Vec::new();
                for l in layers {
                    shape = match &shape {
                        Some(s) => Some(l.output_shape(s)?),
                        None => None,
                    };
                    let params: usize = l.variables().iter().map(|v| v.value().size()).sum();
                    rows.push(vec![
                        format!("{} ({})", l.name(), l.class_name()),
                        shape.as_ref().map(|s| fmt_shape(s)).unwrap_or("?".into()),
                        group(params),
                    ]);
                }
                (vec!["Layer (type)", "Output Shape", "Param #"], rows)
            }
            Body::Graph { graph, .. } => (
                vec!["Layer (type)", "Output Shape", "Param #", "Connected to"],
                graph.summary_rows(),
            ),
        };
        let mut out = format!("Model: \"{}\"\n", self.name);
        out += &summary_table(&columns, &rows);
        let (mut total, mut trainable, mut bytes, mut tbytes) = (0usize, 0usize, 0usize, 0usize);
        for v in self.variables() {
            let b = v.value().size() * v.dtype().itemsize();
            total += v.value().size();
            bytes += b;
            if v.trainable() {
                trainable += v.value().size();
                tbytes += b;
            }
        }
        out += &format!(" Total params: {} ({})\n", group(total), size(bytes));
        out += &format!(
            " Trainable params: {} ({})\n",
            group(trainable),
            size(tbytes)
        );
        out += &format!(
            " Non-trainable params: {} ({})\n",
            group(total - trainable),
            size(bytes - tbytes)
        );
        Ok(out)
    }

    /// Sets the optimizer, the loss and the metrics (Keras names; `"accuracy"` is resolved
    /// from the loss and shapes when training starts). On a model of several outputs the
    /// loss applies to each of them (as in Keras); give metrics, per-output losses and loss
    /// weights with [`compile_with`](Self::compile_with).
    pub fn compile(
        &mut self,
        optimizer: impl Into<Optimizer>,
        loss: Loss,
        metrics: &[&str],
    ) -> Result<()> {
        let names = self.output_names();
        if names.len() > 1 && !metrics.is_empty() {
            return Err(KilnError::invalid(
                "compile",
                format!(
                    "the model has {} outputs ({}): say which output each metric is for, with compile_with(optimizer, CompileArgs::new().loss(..).output_metrics(\"{}\", &{metrics:?}))",
                    names.len(),
                    names.join(", "),
                    names[names.len() - 1]
                ),
            ));
        }
        let metrics: Vec<&[&str]> = if names.len() == 1 {
            vec![metrics]
        } else {
            vec![&[]; names.len()]
        };
        self.compile_with(optimizer, CompileArgs::new().loss(loss).metrics(&metrics))
    }

    /// `compile` with per-output losses, loss weights and metrics (see [`CompileArgs`]).
    pub fn compile_with(
        &mut self,
        optimizer: impl Into<Optimizer>,
        args: CompileArgs,
    ) -> Result<()> {
        let mut optimizer: Optimizer = optimizer.into();
        // Keras wraps the optimizer in a LossScaleOptimizer under mixed_float16.
        if self.policy.is_some_and(|p| p.name() == "mixed_float16") && !optimizer.is_loss_scaled() {
            optimizer = super::optimizers::LossScaleOptimizer::new(optimizer).into();
        }
        self.compiled = Some(args.resolve(&self.output_names(), optimizer)?);
        Ok(())
    }

    /// The optimizer (after `compile`).
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    fn context(&self, training: bool) -> CallContext {
        CallContext {
            training,
            seed: self
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(self.step),
        }
    }

    /// The forward pass on a batch of a model of one input and one output.
    pub fn call(&mut self, x: &Tensor, training: bool) -> Result<Tensor> {
        let mut out = self.call_many(std::slice::from_ref(x), training)?;
        if out.len() != 1 {
            return Err(KilnError::invalid(
                "Model.call",
                format!(
                    "the model has {} outputs ({}); use call_many",
                    out.len(),
                    self.output_names().join(", ")
                ),
            ));
        }
        Ok(out.remove(0))
    }

    /// The forward pass on one batch per input: one tensor per output.
    pub fn call_many(&mut self, xs: &[Tensor], training: bool) -> Result<Vec<Tensor>> {
        let first = xs.first().ok_or_else(|| {
            KilnError::invalid("Model.call", "the model needs at least one input tensor")
        })?;
        self.ensure_built(first)?;
        self.check_inputs(xs, "x")?;
        let ctx = self.context(training);
        match &self.body {
            Body::Stack { layers, .. } => {
                let mut h = xs[0].clone();
                for l in layers {
                    h = l.call(&h, &ctx)?;
                }
                Ok(vec![h])
            }
            Body::Graph { graph, .. } => graph.call_all(xs, &ctx),
        }
    }

    /// `arg`'s name for input (or output) `i` of `n`: `x`, or `x[1]` on several.
    fn arg_name(arg: &str, i: usize, n: usize) -> String {
        if n == 1 {
            arg.to_string()
        } else {
            format!("{arg}[{i}]")
        }
    }

    fn check_inputs(&self, xs: &[Tensor], arg: &str) -> Result<()> {
        let n = self.num_inputs();
        if xs.len() != n {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`{arg}` holds {} arrays; the model takes {n} input(s): pass one array per input, in the model's input order",
                    xs.len()
                ),
            ));
        }
        let Some(shapes) = self.input_shapes() else {
            return Ok(());
        };
        for (i, (x, s)) in xs.iter().zip(&shapes).enumerate() {
            if x.ndim() != s.len() + 1 || &x.shape()[1..] != s.as_slice() {
                let want: Vec<String> = std::iter::once("batch".to_string())
                    .chain(s.iter().map(|d| d.to_string()))
                    .collect();
                return Err(KilnError::invalid(
                    "fit",
                    format!(
                        "`{}` has shape {:?}; the model takes [{}]{}",
                        Self::arg_name(arg, i, n),
                        x.shape(),
                        want.join(", "),
                        if x.ndim() == s.len() {
                            " (one axis short: reshape a single feature to [n, 1], or a single sample to [1, ...])"
                        } else {
                            ""
                        }
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Fresh metrics per output, resolved against the labels' shapes.
    fn metrics_for(&self, ys: &[Tensor]) -> Result<Vec<Vec<Metric>>> {
        let c = self.compiled()?;
        let outs = self.output_shapes()?;
        let names = self.output_names();
        let several = outs.len() > 1;
        c.metrics
            .iter()
            .zip(ys.iter().zip(&outs))
            .zip(&names)
            .map(|((ms, (y, out)), name)| {
                ms.iter()
                    .map(|m| {
                        let metric = Metric::get(m, y.shape(), out)?;
                        Ok(if several {
                            Metric::new(&format!("{name}_{}", metric.name()), metric.kind().clone())
                        } else {
                            metric
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn compiled(&self) -> Result<&Compiled> {
        self.compiled.as_ref().ok_or_else(|| {
            KilnError::invalid(
                "fit",
                "the model is not compiled: call compile(optimizer, loss, metrics) first",
            )
        })
    }

    /// One gradient step on a batch of a model of one input and one output: the loss and
    /// metric values of that batch.
    pub fn train_on_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<Logs> {
        self.train_on_batch_many(std::slice::from_ref(x), std::slice::from_ref(y))
    }

    /// One gradient step on a batch (one tensor per input and per output).
    pub fn train_on_batch_many(&mut self, xs: &[Tensor], ys: &[Tensor]) -> Result<Logs> {
        let first = xs.first().ok_or_else(|| {
            KilnError::invalid(
                "train_on_batch",
                "the model needs at least one input tensor",
            )
        })?;
        self.ensure_built(first)?;
        self.check_targets(ys, "y")?;
        let mut metrics = self.metrics_for(ys)?;
        let out = self.step(xs, ys, None, (0, 0))?;
        let mut losses = LossMeans::new(&self.output_names(), &self.compiled()?.losses);
        losses.update(&out, first.shape()[0] as f64);
        let mut logs = Logs::new();
        losses.log(&mut logs);
        for (ms, (y, p)) in metrics.iter_mut().zip(ys.iter().zip(&out.preds)) {
            for m in ms.iter_mut() {
                m.update_state(y, p, None)?;
                logs.insert(m.name().to_string(), m.result());
            }
        }
        Ok(logs)
    }

    fn check_targets(&self, ys: &[Tensor], arg: &str) -> Result<()> {
        let n = self.output_names().len();
        if ys.len() != n {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`{arg}` holds {} arrays; the model has {n} output(s) ({}): pass one array per output, in output order",
                    ys.len(),
                    self.output_names().join(", ")
                ),
            ));
        }
        Ok(())
    }

    /// The loss of a batch: each output's unweighted loss (`None` where it has none) and the
    /// total, the weighted sum plus the layers' regularization (Keras's `compute_loss`).
    fn compute_loss(
        &self,
        ys: &[Tensor],
        preds: &[Tensor],
        sw: Option<&Tensor>,
    ) -> Result<(Tensor, Vec<Option<Tensor>>)> {
        let c = self.compiled()?;
        let mut total: Option<Tensor> = None;
        let mut each = Vec::with_capacity(preds.len());
        for ((loss, w), (y, p)) in c
            .losses
            .iter()
            .zip(&c.loss_weights)
            .zip(ys.iter().zip(preds))
        {
            let Some(loss) = loss else {
                each.push(None);
                continue;
            };
            let v = loss.compute(y, p, sw)?;
            let weighted = if *w == 1.0 {
                v.clone()
            } else {
                ops::multiply(&v, *w)?
            };
            total = Some(match total {
                // Losses of different dtypes meet through the resolver's implicit path.
                Some(t) => ops::add(&t, &ops::autocast(&weighted, t.dtype(), "compute_loss")?)?,
                None => weighted,
            });
            each.push(Some(v));
        }
        let mut total = total.ok_or_else(|| KilnError::invalid("fit", "no output has a loss"))?;
        for l in self.layers() {
            if let Some(r) = l.regularization()? {
                total = ops::add(&total, &ops::autocast(&r, total.dtype(), "compute_loss")?)?;
            }
        }
        Ok((total, each))
    }

    /// The training step: forward with the trainable variables watched, the loss (plus the
    /// layers' regularization), the gradients, non-finite checks, the optimizer's update.
    fn step(
        &mut self,
        xs: &[Tensor],
        ys: &[Tensor],
        sw: Option<&Tensor>,
        at: (usize, usize),
    ) -> Result<StepOut> {
        if let Some(first) = xs.first() {
            self.ensure_built(first)?;
        }
        let scale = self.compiled()?.optimizer.loss_scale();
        let mut watched = Vec::new();
        for v in self.variables_mut() {
            if v.trainable() {
                let w = autodiff::watch(v.value())?;
                v.set_raw(w.clone());
                watched.push(w);
            }
        }
        let run = |m: &mut Model| -> Result<(Tensor, Vec<Option<Tensor>>, Vec<Tensor>)> {
            let preds = m.call_many(xs, true)?;
            let (loss, each) = m.compute_loss(ys, &preds, sw)?;
            Ok((loss, each, preds))
        };
        let result = run(self).and_then(|(loss, each, preds)| {
            let refs: Vec<&Tensor> = watched.iter().collect();
            // Under loss scaling the gradients are of the scaled loss (Keras's scale_loss).
            let target = match scale {
                Some(s) => ops::multiply(&loss, s)?,
                None => loss.clone(),
            };
            let grads = autodiff::gradients(&target, &refs)?;
            Ok((loss, each, preds, grads))
        });
        // The variables get their plain values back whatever happened.
        let mut i = 0;
        for v in self.variables_mut() {
            if v.trainable() {
                v.set_raw(autodiff::stop_gradient(&watched[i]));
                i += 1;
            }
        }
        drop(watched);
        let (loss, each, preds, grads) = result?;
        let value = loss.to_f64_vec()?[0];
        let (epoch, batch) = at;
        if !value.is_finite() {
            return Err(KilnError::NonFinite {
                epoch,
                batch,
                what: format!("the loss ({value})"),
            });
        }
        let each: Vec<Option<f64>> = each
            .iter()
            .map(|l| l.as_ref().map(|l| Ok(l.to_f64_vec()?[0])).transpose())
            .collect::<Result<_>>()?;
        let names: Vec<String> = self
            .variable_paths()
            .into_iter()
            .zip(self.variables())
            .filter(|(_, v)| v.trainable())
            .map(|(p, _)| p)
            .collect();
        let mut all_finite = true;
        for (g, name) in grads.iter().zip(&names) {
            let _q = autodiff::no_grad();
            let finite = ops::all(&ops::isfinite(g)?, None, false)?.to_f64_vec()?[0] != 0.0;
            // Under loss scaling a non-finite gradient skips the step and halves the scale.
            if !finite && scale.is_none() {
                return Err(KilnError::NonFinite {
                    epoch,
                    batch,
                    what: format!("the gradient of {name}"),
                });
            }
            all_finite &= finite;
        }
        self.step += 1;
        let before: Vec<Tensor> = if self.observe_steps {
            self.trainable_variables()
                .into_iter()
                .map(|v| v.value().clone())
                .collect()
        } else {
            Vec::new()
        };
        let compiled = self
            .compiled
            .as_mut()
            .ok_or_else(|| KilnError::invalid("fit", "not compiled"))?;
        let mut opt = std::mem::replace(
            &mut compiled.optimizer,
            super::optimizers::SGD::default().into(),
        );
        let r = {
            let mut vars: Vec<&mut Variable> = self
                .variables_mut()
                .into_iter()
                .filter(|v| v.trainable())
                .collect();
            opt.apply_scaled(&mut vars, &grads, all_finite)
        };
        if let Some(c) = self.compiled.as_mut() {
            c.optimizer = opt;
        }
        let applied = r?;
        for l in self.layers_mut().iter_mut() {
            l.finish_step()?;
        }
        if self.observe_steps {
            let after = self
                .trainable_variables()
                .into_iter()
                .map(|v| v.value().clone())
                .collect();
            let compute_dtype = match self.policy {
                Some(p) => p.compute_dtype(),
                None => DTypePolicy::default_policy()?.compute_dtype(),
            };
            self.last_step = Some(StepRecord {
                epoch,
                batch,
                names,
                before,
                after,
                grads,
                applied,
                loss_scale: scale,
                compute_dtype,
            });
        }
        Ok(StepOut {
            loss: value,
            each,
            preds: preds.iter().map(autodiff::stop_gradient).collect(),
        })
    }

    /// Converts model data, printing what the conversion cost when asked.
    fn convert<D: ModelData + ?Sized>(
        &self,
        data: &D,
        device: Device,
        arg: &str,
        verbose: u8,
    ) -> Result<Vec<Tensor>> {
        let converted = data.to_model(device, self.wide())?;
        let n = converted.len();
        let mut out = Vec::with_capacity(n);
        for (i, (t, report)) in converted.into_iter().enumerate() {
            if verbose > 0 {
                if let Some(r) = &report {
                    println!(
                        "data: {} converted to {} on {}: {}",
                        Self::arg_name(arg, i, n),
                        t.dtype(),
                        device,
                        r.summary()
                    );
                }
            }
            out.push(t);
        }
        Ok(out)
    }

    /// Trains for `args.epochs` epochs; the history of every metric per epoch. `x` holds one
    /// array per input and `y` one per output (a single array for a model of one).
    pub fn fit<X: ModelData + ?Sized, Y: ModelData + ?Sized>(
        &mut self,
        x: &X,
        y: &Y,
        args: FitArgs,
    ) -> Result<History> {
        self.compiled()?;
        if args.batch_size == 0 {
            return Err(KilnError::invalid("fit", "`batch_size` must be at least 1"));
        }
        if !(0.0..1.0).contains(&args.validation_split) {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`validation_split` must be in [0, 1), got {}",
                    args.validation_split
                ),
            ));
        }
        let device = self.current_device()?;
        let verbose = args.verbose.resolve();
        let xt = self.convert(x, device, "x", verbose)?;
        let yt = self.convert(y, device, "y", verbose)?;
        self.validate(&xt, &yt, args.check_finite, "x", "y")?;
        let n = xt[0].shape()[0];
        let sw = self.sample_weights(&yt, &args, device)?;
        let rows_all = |ts: &[Tensor], a: usize, b: usize| -> Result<Vec<Tensor>> {
            ts.iter().map(|t| rows(t, a, b)).collect()
        };
        // Keras: the last fraction, before shuffling.
        let split_at = ((n as f64) * (1.0 - args.validation_split)).floor() as usize;
        let (x_train, y_train, sw_train, val) = if let Some((vx, vy)) = &args.validation_data {
            let vx = self.convert(vx.as_slice(), device, "validation_data x", 0)?;
            let vy = self.convert(vy.as_slice(), device, "validation_data y", 0)?;
            self.validate(
                &vx,
                &vy,
                args.check_finite,
                "validation_data x",
                "validation_data y",
            )?;
            (xt, yt, sw, Some((vx, vy, None)))
        } else if split_at < n {
            if split_at == 0 {
                return Err(KilnError::invalid(
                    "fit",
                    "`validation_split` leaves no training samples",
                ));
            }
            (
                rows_all(&xt, 0, split_at)?,
                rows_all(&yt, 0, split_at)?,
                sw.as_ref().map(|w| rows(w, 0, split_at)).transpose()?,
                // Keras splits the sample weights too, and validates with them.
                Some((
                    rows_all(&xt, split_at, n)?,
                    rows_all(&yt, split_at, n)?,
                    sw.as_ref().map(|w| rows(w, split_at, n)).transpose()?,
                )),
            )
        } else {
            (xt, yt, sw, None)
        };
        let n_train = x_train[0].shape()[0];
        let steps = n_train.div_ceil(args.batch_size);
        let params = TrainParams {
            epochs: args.epochs,
            steps,
            verbose,
        };
        let output_names = self.output_names();
        let mut history = History::default();
        let mut stop = false;
        let mut callbacks = std::mem::take(&mut self.callbacks);
        // Keras adds its ProgbarLogger to the callback list when verbose is not 0; first, so
        // the epoch line comes before what other callbacks print.
        self.observe_steps = callbacks.iter().any(|c| c.wants_steps());
        let progbar = verbose > 0;
        if progbar {
            callbacks.insert(0, Box::new(ProgbarLogger::new(args.verbose)));
        }
        let result = (|| -> Result<()> {
            for cb in callbacks.iter_mut() {
                self.with_control(&mut stop, params, |c| cb.on_train_begin(c))?;
            }
            'epochs: for epoch in args.initial_epoch..args.epochs {
                for cb in callbacks.iter_mut() {
                    self.with_control(&mut stop, params, |c| cb.on_epoch_begin(epoch, c))?;
                }
                let order = if args.shuffle {
                    permutation(n_train, args.seed.wrapping_add(epoch as u64))
                } else {
                    (0..n_train).collect()
                };
                let mut metrics = self.metrics_for(&y_train)?;
                let mut losses = LossMeans::new(&output_names, &self.compiled()?.losses);
                for b in 0..steps {
                    for cb in callbacks.iter_mut() {
                        self.with_control(&mut stop, params, |c| cb.on_batch_begin(b, c))?;
                    }
                    let idx = &order[b * args.batch_size..((b + 1) * args.batch_size).min(n_train)];
                    let batch = |ts: &[Tensor]| -> Result<Vec<Tensor>> {
                        ts.iter()
                            .map(|t| take_rows(t, idx, args.shuffle, b * args.batch_size))
                            .collect()
                    };
                    let xb = batch(&x_train)?;
                    let yb = batch(&y_train)?;
                    let wb = sw_train
                        .as_ref()
                        .map(|w| take_rows(w, idx, args.shuffle, b * args.batch_size))
                        .transpose()?;
                    let out = match self.step(&xb, &yb, wb.as_ref(), (epoch, b)) {
                        Ok(r) => r,
                        Err(e @ KilnError::NonFinite { .. }) => {
                            // The step was not applied. A callback may end training cleanly.
                            let value = match &e {
                                KilnError::NonFinite { what, .. }
                                    if what.starts_with("the loss") =>
                                {
                                    Some(f64::NAN)
                                }
                                _ => None,
                            };
                            let mut handled = false;
                            if let Some(v) = value {
                                for cb in callbacks.iter_mut() {
                                    let mut h = false;
                                    self.with_control(&mut stop, params, |c| {
                                        h = cb.on_non_finite_loss(b, v, c)?;
                                        Ok(())
                                    })?;
                                    handled |= h;
                                }
                            }
                            if handled {
                                break 'epochs;
                            }
                            return Err(e);
                        }
                        Err(e) => return Err(e),
                    };
                    if let Some(rec) = self.last_step.take() {
                        let info = rec.info();
                        for cb in callbacks.iter_mut() {
                            self.with_control(&mut stop, params, |c| cb.on_train_step(&info, c))?;
                        }
                    }
                    // Keras weights each batch's loss by its size; compiled metrics are not
                    // weighted by sample or class weights (only weighted_metrics would be).
                    losses.update(&out, idx.len() as f64);
                    for (ms, (y, p)) in metrics.iter_mut().zip(yb.iter().zip(&out.preds)) {
                        for m in ms.iter_mut() {
                            m.update_state(y, p, None)?;
                        }
                    }
                    let logs = epoch_logs(&losses, &metrics);
                    for cb in callbacks.iter_mut() {
                        self.with_control(&mut stop, params, |c| cb.on_batch_end(b, &logs, c))?;
                    }
                    // Keras checks after every batch too.
                    if stop {
                        break;
                    }
                }
                let mut logs = epoch_logs(&losses, &metrics);
                if let Some((vx, vy, vw)) = &val {
                    let v = self.evaluate_tensors(vx, vy, vw.as_ref(), args.batch_size)?;
                    for (k, val) in v {
                        logs.insert(format!("val_{k}"), val);
                    }
                }
                history.push(epoch, &logs);
                for cb in callbacks.iter_mut() {
                    self.with_control(&mut stop, params, |c| cb.on_epoch_end(epoch, &logs, c))?;
                }
                if stop {
                    break;
                }
            }
            Ok(())
        })();
        let ended = if result.is_ok() {
            callbacks
                .iter_mut()
                .try_for_each(|cb| self.with_control(&mut stop, params, |c| cb.on_train_end(c)))
        } else {
            Ok(())
        };
        if progbar {
            callbacks.remove(0);
        }
        self.observe_steps = false;
        self.last_step = None;
        self.callbacks = callbacks;
        result?;
        ended?;
        if let Some(c) = self.compiled.take() {
            let r = {
                let mut vars: Vec<&mut Variable> = self.variables_mut();
                c.optimizer.finalize(&mut vars)
            };
            self.compiled = Some(c);
            r?;
        }
        Ok(history)
    }

    /// Checks `fit`'s data before the first step: counts, lengths, ranks, finiteness, labels
    /// for each output's loss.
    fn validate(
        &mut self,
        xs: &[Tensor],
        ys: &[Tensor],
        check_finite: bool,
        xn: &str,
        yn: &str,
    ) -> Result<()> {
        self.check_targets(ys, yn)?;
        if xs.len() != self.num_inputs() {
            return self.check_inputs(xs, xn);
        }
        let (nx, ny) = (xs.len(), ys.len());
        let named = |ts: &[Tensor], base: &str| -> Vec<(Tensor, String)> {
            let n = ts.len();
            ts.iter()
                .enumerate()
                .map(|(i, t)| (t.clone(), Self::arg_name(base, i, n)))
                .collect()
        };
        let all: Vec<(Tensor, String)> = named(xs, xn).into_iter().chain(named(ys, yn)).collect();
        if let Some((t, name)) = all.iter().find(|(t, _)| t.ndim() == 0) {
            return Err(KilnError::invalid(
                "fit",
                format!("`{name}` needs a sample axis; got shape {:?}", t.shape()),
            ));
        }
        let n = xs[0].shape()[0];
        if let Some((t, name)) = all.iter().find(|(t, _)| t.shape()[0] != n) {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`{}` has {n} samples but `{name}` has {}; they must match",
                    Self::arg_name(xn, 0, nx),
                    t.shape()[0]
                ),
            ));
        }
        if n == 0 {
            return Err(KilnError::invalid(
                "fit",
                format!("`{}` has no samples", Self::arg_name(xn, 0, nx)),
            ));
        }
        if self.input_shapes().is_none() && xs[0].ndim() == 1 {
            return Err(KilnError::invalid(
                "fit",
                format!("`{xn}` is 1-d (shape {:?}); a model takes [samples, features]: reshape it to [n, 1] for one feature", xs[0].shape()),
            ));
        }
        self.ensure_built(&xs[0])?;
        self.check_inputs(xs, xn)?;
        if check_finite {
            for (t, name) in &all {
                if t.dtype().is_inexact() {
                    let _q = autodiff::no_grad();
                    let bad = ops::logical_not(&ops::isfinite(t)?)?;
                    if ops::any(&bad, None, false)?.to_f64_vec()?[0] != 0.0 {
                        let flat = ops::reshape(&bad, &[-1])?.to_f64_vec()?;
                        let i = flat.iter().position(|v| *v != 0.0).unwrap_or(0);
                        let v = ops::reshape(t, &[-1])?.to_f64_vec()?[i];
                        let per = t.size() / t.shape()[0].max(1);
                        return Err(KilnError::invalid(
                            "fit",
                            format!(
                                "`{name}` holds {v} at sample {} (flat index {i}); clean the data, or pass FitArgs::check_finite(false) to train on it anyway",
                                i / per.max(1)
                            ),
                        ));
                    }
                }
            }
        }
        let losses = self.compiled()?.losses.clone();
        let outs = self.output_shapes()?;
        let names = self.output_names();
        for (i, ((loss, out), y)) in losses.iter().zip(&outs).zip(ys).enumerate() {
            if let Some(loss) = loss {
                let which = if ny > 1 {
                    format!(" (output {:?})", names[i])
                } else {
                    String::new()
                };
                check_labels(*loss, y, out, &Self::arg_name(yn, i, ny), &which)?;
            }
        }
        Ok(())
    }

    fn sample_weights(
        &self,
        ys: &[Tensor],
        args: &FitArgs,
        device: Device,
    ) -> Result<Option<Tensor>> {
        let n = ys[0].shape()[0];
        let mut w: Option<Vec<f64>> = None;
        if let Some(s) = &args.sample_weight {
            let v = s.to_f64_vec();
            if v.len() != n {
                return Err(KilnError::invalid(
                    "fit",
                    format!("`sample_weight` has {} values for {n} samples", v.len()),
                ));
            }
            w = Some(v);
        }
        if let Some(cw) = &args.class_weight {
            if ys.len() != 1 {
                return Err(KilnError::invalid(
                    "fit",
                    format!(
                        "`class_weight` is only supported for models with a single output (this one has {}); weigh the samples with sample_weight instead",
                        ys.len()
                    ),
                ));
            }
            let y = &ys[0];
            let labels: Vec<usize> = if y.ndim() >= 2 && y.shape().last().copied().unwrap_or(1) > 1
            {
                ops::argmax(y, Some(-1), false)?
                    .to_f64_vec()?
                    .iter()
                    .map(|v| *v as usize)
                    .collect()
            } else {
                y.to_f64_vec()?
                    .iter()
                    .map(|v| v.round().max(0.0) as usize)
                    .collect()
            };
            let base = w.unwrap_or_else(|| vec![1.0; n]);
            w = Some(
                base.iter()
                    .zip(&labels)
                    .map(|(b, l)| b * cw.get(l).copied().unwrap_or(1.0))
                    .collect(),
            );
        }
        w.map(|v| {
            let a =
                ArrayData::from_shape_vec(&[n], v.iter().map(|x| *x as f32).collect::<Vec<_>>())?;
            crate::tensor::convert_to_tensor(&a, None, &device)
        })
        .transpose()
    }

    /// The loss and metrics on data, batch by batch (Keras's `evaluate`): `loss` (the
    /// weighted sum plus regularization) and, on several outputs, each output's `_loss`.
    pub fn evaluate<X: ModelData + ?Sized, Y: ModelData + ?Sized>(
        &mut self,
        x: &X,
        y: &Y,
        batch_size: usize,
    ) -> Result<Logs> {
        let device = self.current_device()?;
        let xt = self.convert(x, device, "x", 0)?;
        let yt = self.convert(y, device, "y", 0)?;
        self.compiled()?;
        self.validate(&xt, &yt, false, "x", "y")?;
        self.evaluate_tensors(&xt, &yt, None, batch_size)
    }

    fn evaluate_tensors(
        &mut self,
        xs: &[Tensor],
        ys: &[Tensor],
        sw: Option<&Tensor>,
        batch_size: usize,
    ) -> Result<Logs> {
        let _q = autodiff::no_grad();
        let mut metrics = self.metrics_for(ys)?;
        let mut losses = LossMeans::new(&self.output_names(), &self.compiled()?.losses);
        let n = xs[0].shape()[0];
        let bs = batch_size.max(1);
        for start in (0..n).step_by(bs) {
            let end = (start + bs).min(n);
            let xb: Vec<Tensor> = xs
                .iter()
                .map(|t| rows(t, start, end))
                .collect::<Result<_>>()?;
            let yb: Vec<Tensor> = ys
                .iter()
                .map(|t| rows(t, start, end))
                .collect::<Result<_>>()?;
            let preds = self.call_many(&xb, false)?;
            // As Keras's compute_loss: the layers' regularization losses count here too.
            let wb = sw.map(|w| rows(w, start, end)).transpose()?;
            let (total, each) = self.compute_loss(&yb, &preds, wb.as_ref())?;
            let out = StepOut {
                loss: total.to_f64_vec()?[0],
                each: each
                    .iter()
                    .map(|l| l.as_ref().map(|l| Ok(l.to_f64_vec()?[0])).transpose())
                    .collect::<Result<_>>()?,
                preds,
            };
            losses.update(&out, (end - start) as f64);
            for (ms, (y, p)) in metrics.iter_mut().zip(yb.iter().zip(&out.preds)) {
                for m in ms.iter_mut() {
                    m.update_state(y, p, None)?;
                }
            }
        }
        Ok(epoch_logs(&losses, &metrics))
    }

    /// The outputs of a model of one output on data, batch by batch (inference: dropout
    /// off).
    pub fn predict<X: ModelData + ?Sized>(&mut self, x: &X, batch_size: usize) -> Result<Tensor> {
        let mut out = self.predict_many(x, batch_size)?;
        if out.len() != 1 {
            return Err(KilnError::invalid(
                "predict",
                format!(
                    "the model has {} outputs ({}); use predict_many",
                    out.len(),
                    self.output_names().join(", ")
                ),
            ));
        }
        Ok(out.remove(0))
    }

    /// Every output on data, batch by batch, in output order.
    pub fn predict_many<X: ModelData + ?Sized>(
        &mut self,
        x: &X,
        batch_size: usize,
    ) -> Result<Vec<Tensor>> {
        let _q = autodiff::no_grad();
        let xt = self.convert(x, self.current_device()?, "x", 0)?;
        if xt.is_empty() || xt.iter().any(|t| t.ndim() == 0 || t.shape()[0] == 0) {
            return Err(KilnError::invalid(
                "predict",
                "`x` needs at least one sample",
            ));
        }
        self.ensure_built(&xt[0])?;
        self.check_inputs(&xt, "x")?;
        let n = xt[0].shape()[0];
        if let Some(t) = xt.iter().find(|t| t.shape()[0] != n) {
            return Err(KilnError::invalid(
                "predict",
                format!(
                    "the inputs have {n} and {} samples; they must match",
                    t.shape()[0]
                ),
            ));
        }
        let bs = batch_size.max(1);
        let mut parts: Vec<Vec<Tensor>> = Vec::new();
        for start in (0..n).step_by(bs) {
            let xb: Vec<Tensor> = xt
                .iter()
                .map(|t| rows(t, start, (start + bs).min(n)))
                .collect::<Result<_>>()?;
            parts.push(self.call_many(&xb, false)?);
        }
        let outputs = parts.first().map(|p| p.len()).unwrap_or(0);
        (0..outputs)
            .map(|o| {
                let refs: Vec<&Tensor> = parts.iter().map(|p| &p[o]).collect();
                ops::concatenate(&refs, 0)
            })
            .collect()
    }

    /// Runs one callback hook with a control over this model, carrying `stop` across hooks.
    fn with_control(
        &mut self,
        stop: &mut bool,
        params: TrainParams,
        f: impl FnOnce(&mut TrainControl<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut c = TrainControl::new(self, params);
        c.stop_training = *stop;
        let r = f(&mut c);
        *stop = c.stop_training;
        r
    }

    /// The weights by name (`layer/variable`, Keras's weight paths), in `get_weights`'s order.
    fn named_weights(&self) -> Result<Vec<(String, ArrayData)>> {
        self.variable_paths()
            .into_iter()
            .zip(self.variables())
            .map(|(p, v)| Ok((p, v.value().to_host()?)))
            .collect()
    }

    /// Every variable's path (`layer/variable`, `model/layer/variable` inside a nested
    /// model: Keras's weight paths), in `variables`'s order.
    pub fn variable_paths(&self) -> Vec<String> {
        super::layers::paths_of(self.layers())
    }

    /// Saves the weights, dtypes kept: Keras's `.weights.h5` layout where the path ends in
    /// `.h5` (what Keras's `load_weights` reads), a `.safetensors` file, else an `.npz`; the
    /// last two hold one array per variable named by its path (`layer/variable`).
    pub fn save_weights(&self, path: &str) -> Result<()> {
        let named = self.named_weights()?;
        let refs: Vec<(&str, &ArrayData)> = named.iter().map(|(n, a)| (n.as_str(), a)).collect();
        if let Some(dir) = std::path::Path::new(path).parent() {
            if !dir.as_os_str().is_empty() && !dir.exists() {
                std::fs::create_dir_all(dir).map_err(|e| {
                    KilnError::invalid("save_weights", format!("cannot create {dir:?}: {e}"))
                })?;
            }
        }
        if path.ends_with(".h5") {
            crate::nn::saving::save_weights_h5(self, path)
        } else if path.ends_with(".safetensors") {
            crate::io::write_safetensors(path, &refs)
        } else {
            crate::io::write_npz(path, &refs, false)
        }
    }

    /// Loads weights saved by [`save_weights`](Self::save_weights) (`.npz` or
    /// `.safetensors`, by extension): every variable by name, each of its shape; a missing,
    /// extra or misshapen array is an error naming it.
    pub fn load_weights(&mut self, path: &str) -> Result<()> {
        if path.ends_with(".h5") {
            return crate::nn::saving::load_weights_h5(self, path);
        }
        let file = crate::io::load_weights(path)?;
        let want = self.named_weights()?;
        let mut arrays = Vec::with_capacity(want.len());
        for (name, cur) in &want {
            let a = file
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, a)| a)
                .ok_or_else(|| {
                    KilnError::invalid(
                        "load_weights",
                        format!(
                            "{path:?} has no weight {name:?} (the model's weights: {:?})",
                            want.iter().map(|w| &w.0).collect::<Vec<_>>()
                        ),
                    )
                })?;
            if a.shape() != cur.shape() {
                return Err(KilnError::invalid(
                    "load_weights",
                    format!(
                        "weight {name:?} in {path:?} has shape {:?}, the model's {:?}",
                        a.shape(),
                        cur.shape()
                    ),
                ));
            }
            arrays.push(a.clone());
        }
        if file.len() != want.len() {
            let extra: Vec<&str> = file
                .iter()
                .map(|(n, _)| n.as_str())
                .filter(|n| !want.iter().any(|w| w.0 == *n))
                .collect();
            return Err(KilnError::invalid(
                "load_weights",
                format!("{path:?} holds weights the model does not have: {extra:?}"),
            ));
        }
        self.set_weights(&arrays)
    }

    /// Saves the whole model (config, weights, optimizer state): a `.keras` file Python
    /// Keras 3 loads, or kiln's `.kiln` (see [`crate::nn::saving`]). Load it with
    /// [`load_model`](crate::nn::load_model).
    pub fn save(&mut self, path: &str) -> Result<()> {
        crate::nn::saving::save_model(self, path)
    }

    /// The model's name.
    pub fn model_name(&self) -> &str {
        &self.name
    }

    /// The stack's layers and input shape (a `Sequential`), or `None` for a graph.
    #[allow(clippy::type_complexity)]
    pub(crate) fn stack_parts(&self) -> Option<(&[Box<dyn Layer>], Option<&[usize]>)> {
        match &self.body {
            Body::Stack { layers, input, .. } => Some((layers, input.as_deref())),
            Body::Graph { .. } => None,
        }
    }
    /// The functional graph, or `None` for a stack.
    pub(crate) fn graph_parts(&self) -> Option<&Functional> {
        match &self.body {
            Body::Graph { graph, .. } => Some(graph),
            Body::Stack { .. } => None,
        }
    }
    /// The model's own dtype policy, if it was given one.
    pub(crate) fn own_policy(&self) -> Option<DTypePolicy> {
        self.policy
    }
    /// The compile settings: optimizer, loss per output, loss weights, metrics per output.
    #[allow(clippy::type_complexity)]
    pub(crate) fn compiled_parts(
        &self,
    ) -> Option<(&Optimizer, &[Option<Loss>], &[f64], &[Vec<String>])> {
        self.compiled.as_ref().map(|c| {
            (
                &c.optimizer,
                c.losses.as_slice(),
                c.loss_weights.as_slice(),
                c.metrics.as_slice(),
            )
        })
    }
    /// The optimizer, mutably (to restore its state).
    pub(crate) fn optimizer_mut(&mut self) -> Option<&mut Optimizer> {
        self.compiled.as_mut().map(|c| &mut c.optimizer)
    }
    /// Training steps taken and the seed (what a resumed run needs to draw the same).
    pub(crate) fn train_counters(&self) -> (u64, u64) {
        (self.step, self.seed)
    }
    pub(crate) fn set_train_counters(&mut self, step: u64, seed: u64) {
        self.step = step;
        self.seed = seed;
    }
    /// Builds it if it is not built (from its own input shapes).
    pub(crate) fn build_if_needed(&mut self) -> Result<()> {
        if self.is_built() {
            return Ok(());
        }
        match self.input_shapes() {
            Some(s) if matches!(self.body, Body::Stack { .. }) => self.build(&s[0]),
            _ => self.build(&[]),
        }
    }
    /// Where each variable sits in Keras's weights file, in `variables()` order.
    pub(crate) fn keras_tree(&self) -> crate::nn::saving::KerasTree {
        use crate::nn::saving::KerasTree;
        match &self.body {
            Body::Stack { layers, .. } => KerasTree {
                name: self.name.clone(),
                vars: 0,
                layers: KerasTree::keyed(
                    layers
                        .iter()
                        .map(|l| (l.class_name(), l.keras_tree()))
                        .collect(),
                ),
            },
            Body::Graph { graph, .. } => {
                let mut t = graph.keras_tree();
                t.name = self.name.clone();
                t
            }
        }
    }

    /// The weights as host arrays, layer by layer (Keras's `get_weights`).
    pub fn get_weights(&self) -> Result<Vec<ArrayData>> {
        self.variables()
            .iter()
            .map(|v| v.value().to_host())
            .collect()
    }

    /// Sets every weight from host arrays in `get_weights`'s order.
    pub fn set_weights(&mut self, weights: &[ArrayData]) -> Result<()> {
        let mut vars = self.variables_mut();
        if vars.len() != weights.len() {
            return Err(KilnError::invalid(
                "set_weights",
                format!(
                    "the model has {} weights, {} given",
                    vars.len(),
                    weights.len()
                ),
            ));
        }
        for (v, w) in vars.iter_mut().zip(weights) {
            let t = crate::tensor::convert_to_tensor(w, Some(w.dtype()), &Device::Cpu)?;
            v.assign(&t)?;
        }
        Ok(())
    }
}

/// What a training or evaluation batch gave.
struct StepOut {
    /// The total loss.
    loss: f64,
    /// Each output's unweighted loss.
    each: Vec<Option<f64>>,
    preds: Vec<Tensor>,
}

/// The running means of the total loss and, where there are several, of each output's loss
/// (Keras's `<output>_loss` metrics), weighted by batch size.
struct LossMeans {
    total: Metric,
    each: Vec<Option<Metric>>,
}

impl LossMeans {
    fn new(names: &[String], losses: &[Option<Loss>]) -> LossMeans {
        let several = losses.iter().filter(|l| l.is_some()).count() > 1;
        LossMeans {
            total: Metric::new("loss", MetricKind::LossMean),
            each: names
                .iter()
                .zip(losses)
                .map(|(n, l)| {
                    (several && l.is_some())
                        .then(|| Metric::new(&format!("{n}_loss"), MetricKind::LossMean))
                })
                .collect(),
        }
    }
    fn update(&mut self, out: &StepOut, n: f64) {
        self.total.update_mean(out.loss, n);
        for (m, v) in self.each.iter_mut().zip(&out.each) {
            if let (Some(m), Some(v)) = (m, v) {
                m.update_mean(*v, n);
            }
        }
    }
    fn log(&self, logs: &mut Logs) {
        logs.insert("loss".into(), self.total.result());
        for m in self.each.iter().flatten() {
            logs.insert(m.name().to_string(), m.result());
        }
    }
}

fn epoch_logs(losses: &LossMeans, metrics: &[Vec<Metric>]) -> Logs {
    let mut logs = Logs::new();
    losses.log(&mut logs);
    for m in metrics.iter().flatten() {
        logs.insert(m.name().to_string(), m.result());
    }
    logs
}

/// Whether `y` holds labels `loss` can compare with outputs of shape `out`.
fn check_labels(
    loss: Loss,
    y: &Tensor,
    out: &[Option<usize>],
    yn: &str,
    which: &str,
) -> Result<()> {
    let classes = out.last().copied().flatten();
    if loss.sparse_labels() {
        let labels = y.to_f64_vec()?;
        let c = classes.unwrap_or(0);
        if let Some((i, v)) = labels
            .iter()
            .enumerate()
            .find(|(_, v)| **v < 0.0 || **v >= c as f64 || v.fract() != 0.0)
        {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`{yn}`{which} holds the label {v} at sample {i}; {} needs class indices in [0, {c}) for a model with {c} outputs (relabel the data, or widen the last layer)",
                    loss.name()
                ),
            ));
        }
        if !(y.ndim() + 1 == out.len() || (y.ndim() == out.len() && y.shape().last() == Some(&1))) {
            return Err(KilnError::shape(
                "fit",
                y.shape(),
                &out.iter().map(|d| d.unwrap_or(0)).collect::<Vec<_>>(),
                format!(
                    "`{yn}`{which}: {} takes one class index per sample",
                    loss.name()
                ),
            ));
        }
    } else {
        let want_last = classes.unwrap_or(1);
        let y_last = if y.ndim() + 1 == out.len() {
            1
        } else {
            *y.shape().last().unwrap_or(&1)
        };
        if y.ndim() + 1 != out.len() && y.ndim() != out.len() || y_last != want_last {
            return Err(KilnError::shape(
                "fit",
                y.shape(),
                &out.iter().map(|d| d.unwrap_or(0)).collect::<Vec<_>>(),
                format!(
                    "`{yn}`{which}: {} needs labels shaped like the model's output (batch, {want_last}){}",
                    loss.name(),
                    if y.ndim() == 1 && want_last > 1 {
                        "; for integer class labels use sparse_categorical_crossentropy"
                    } else {
                        ""
                    }
                ),
            ));
        }
        if matches!(loss, Loss::BinaryCrossentropy { .. }) {
            let v = y.to_f64_vec()?;
            if let Some((i, bad)) = v
                .iter()
                .enumerate()
                .find(|(_, v)| !(0.0..=1.0).contains(*v))
            {
                return Err(KilnError::invalid(
                    "fit",
                    format!("`{yn}`{which} holds {bad} at index {i}; binary_crossentropy needs labels in [0, 1]"),
                ));
            }
        }
    }
    Ok(())
}

/// Keras's summary table with box-drawing rules; columns after the first two are
/// right-aligned numbers except a last "Connected to".
pub(crate) fn summary_table(columns: &[&str], rows: &[Vec<String>]) -> String {
    let widths: Vec<usize> = match columns.len() {
        3 => vec![33, 24, 15],
        _ => vec![31, 22, 12, 24],
    };
    let line = |l: char, m: char, r: char, f: char| {
        let mut s = String::new();
        s.push(l);
        for (i, w) in widths.iter().enumerate() {
            s.extend(std::iter::repeat_n(f, *w));
            s.push(if i + 1 == widths.len() { r } else { m });
        }
        s.push('\n');
        s
    };
    let row = |cells: &[String], edge: char| {
        let mut s = String::new();
        s.push(edge);
        for (i, (c, w)) in cells.iter().zip(&widths).enumerate() {
            if i == 2 {
                s += &format!(" {:>w$} {edge}", c, w = w - 2);
            } else {
                s += &format!(" {:<w$}{edge}", c, w = w - 1);
            }
        }
        s.push('\n');
        s
    };
    let header: Vec<String> = columns.iter().map(|c| c.to_string()).collect();
    let mut out = line('┏', '┳', '┓', '━');
    out += &row(&header, '┃');
    out += &line('┡', '╇', '┩', '━');
    for (i, r) in rows.iter().enumerate() {
        out += &row(r, '│');
        out += &if i + 1 == rows.len() {
            line('└', '┴', '┘', '─')
        } else {
            line('├', '┼', '┤', '─')
        };
    }
    out
}

/// Rows `a..b` of `t` (a view where the engine can).
fn rows(t: &Tensor, a: usize, b: usize) -> Result<Tensor> {
    ops::strided_slice(t, &[ops::SliceArg::range(a as isize, b as isize)])
}

/// A batch: rows `idx` (a gather on the device), or a contiguous slice when not shuffled.
fn take_rows(t: &Tensor, idx: &[usize], shuffled: bool, start: usize) -> Result<Tensor> {
    if !shuffled {
        return rows(t, start, start + idx.len());
    }
    // An internal index buffer on the data's engine (no dtype decision: take reads it on
    // the host).
    let host = ArrayData::from_shape_vec(
        &[idx.len()],
        idx.iter().map(|i| *i as i64).collect::<Vec<_>>(),
    )?;
    let it = t.upload_like(host)?;
    ops::take(t, &it, Some(0))
}

/// A seeded permutation of `0..n` (Fisher-Yates on ChaCha8).
pub(crate) fn permutation(n: usize, seed: u64) -> Vec<usize> {
    use rand_core::{RngCore, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

pub(crate) fn snake(class: &str) -> String {
    // Keras's to_snake_case: `(.)([A-Z][a-z]+)` -> `\1_\2`, then `([a-z])([A-Z])` -> `\1_\2`,
    // lowercased: `Conv2D` is `conv2d`, `MaxPooling2D` is `max_pooling2d`.
    let c: Vec<char> = class.chars().collect();
    let mut first = String::new();
    let mut i = 0;
    while i < c.len() {
        // A capitalised word after some character starts a new part.
        if i + 1 < c.len() && c[i].is_ascii_uppercase() && c[i + 1].is_ascii_lowercase() && i > 0 {
            first.push('_');
        }
        first.push(c[i]);
        i += 1;
    }
    let c: Vec<char> = first.chars().collect();
    let mut out = String::new();
    for (i, ch) in c.iter().enumerate() {
        if i > 0 && ch.is_ascii_uppercase() && c[i - 1].is_ascii_lowercase() {
            out.push('_');
        }
        out.push(*ch);
    }
    out.to_lowercase()
}

pub(crate) fn fmt_shape(s: &[Option<usize>]) -> String {
    let parts: Vec<String> = s
        .iter()
        .map(|d| d.map(|d| d.to_string()).unwrap_or("None".into()))
        .collect();
    if parts.len() == 1 {
        format!("({},)", parts[0])
    } else {
        format!("({})", parts.join(", "))
    }
}

fn group(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Keras's `readable_memory_size`: B, KB, MB, GB with 1024 steps, two decimals.
fn size(bytes: usize) -> String {
    let units = ["B", "KB", "MB", "GB", "TB"];
    let mut v = bytes as f64;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < units.len() {
        v /= 1024.0;
        u += 1;
    }
    format!("{v:.2} {}", units[u])
}

impl TrainModel for Model {
    fn get_weights(&self) -> Result<Vec<ArrayData>> {
        Model::get_weights(self)
    }
    fn set_weights(&mut self, weights: &[ArrayData]) -> Result<()> {
        Model::set_weights(self, weights)
    }
    fn learning_rate(&self) -> Result<f64> {
        Ok(self.compiled()?.optimizer.current_learning_rate())
    }
    fn set_learning_rate(&mut self, lr: f64) -> Result<()> {
        match self.compiled.as_mut() {
            Some(c) => c.optimizer.set_learning_rate(lr),
            None => Err(KilnError::invalid(
                "set_learning_rate",
                "the model is not compiled; call compile first",
            )),
        }
    }
    fn save_weights(&self, path: &str) -> Result<()> {
        Model::save_weights(self, path)
    }
    fn optimizer(&self) -> Result<Optimizer> {
        Ok(self.compiled()?.optimizer.clone())
    }
}

/// What one training step did, kept for callbacks that ask (see [`StepInfo`]).
struct StepRecord {
    epoch: usize,
    batch: usize,
    names: Vec<String>,
    before: Vec<Tensor>,
    after: Vec<Tensor>,
    grads: Vec<Tensor>,
    applied: bool,
    loss_scale: Option<f64>,
    compute_dtype: crate::dtype::DType,
}

impl StepRecord {
    fn info(&self) -> StepInfo<'_> {
        StepInfo {
            epoch: self.epoch,
            batch: self.batch,
            names: &self.names,
            before: &self.before,
            after: &self.after,
            grads: &self.grads,
            applied: self.applied,
            loss_scale: self.loss_scale,
            compute_dtype: self.compute_dtype,
        }
    }
}
