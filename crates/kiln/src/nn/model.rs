//! `Sequential` models: build on first use, `summary()`, `compile`, `fit`, `evaluate`,
//! `predict`, `train_on_batch`, weights in and out, with Keras's semantics and defaults.

use super::callbacks::{
    Callback, History, Logs, ProgbarLogger, StepInfo, TrainControl, TrainModel, TrainParams,
    Verbose,
};
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
/// dataset through the resolver), or tensors.
pub trait ModelData {
    /// The data as a tensor on `device`, and the conversion's loss report if the dtype
    /// changed; `wide`: the model computes in a 64-bit dtype, so 64-bit data is converted
    /// under x64 semantics (kept where the device has it).
    fn to_model(&self, device: Device, wide: bool) -> Result<(Tensor, Option<ConversionReport>)>;
}

impl ModelData for ArrayData {
    #[track_caller]
    fn to_model(&self, device: Device, wide: bool) -> Result<(Tensor, Option<ConversionReport>)> {
        let _x64 = wide.then(|| crate::precision::Scope::new().x64(true).enter());
        crate::tensor::convert_to_tensor_with_report(self, None, &device)
    }
}

impl ModelData for Tensor {
    fn to_model(&self, device: Device, _wide: bool) -> Result<(Tensor, Option<ConversionReport>)> {
        Ok((autodiff::stop_gradient(&self.to_device(device)?), None))
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
    /// Explicit validation data (takes precedence over `validation_split`).
    pub validation_data: Option<(ArrayData, ArrayData)>,
    /// Weight per class index (for integer or one-hot labels).
    pub class_weight: Option<BTreeMap<usize, f64>>,
    /// Weight per sample.
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
    /// Validation data.
    pub fn validation_data(mut self, x: ArrayData, y: ArrayData) -> Self {
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

struct Compiled {
    optimizer: Optimizer,
    loss: Loss,
    metrics: Vec<String>,
}

/// A linear stack of layers (Keras's `Sequential`).
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
pub struct Sequential {
    name: String,
    layers: Vec<Box<dyn Layer>>,
    input: Option<Vec<usize>>,
    built: bool,
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

impl Default for Sequential {
    fn default() -> Self {
        Sequential::new()
    }
}

impl Sequential {
    /// An empty model named `sequential`.
    pub fn new() -> Sequential {
        Sequential {
            name: "sequential".into(),
            layers: Vec::new(),
            input: None,
            built: false,
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
    /// Appends a layer (an `Input` sets the model's input shape).
    #[allow(clippy::should_implement_trait)]
    pub fn add(mut self, layer: impl Layer + 'static) -> Sequential {
        self.push(Box::new(layer));
        self
    }
    /// Appends a boxed layer.
    pub fn push(&mut self, layer: Box<dyn Layer>) {
        if let Some(s) = layer.input_shape() {
            self.input = Some(s.to_vec());
            return;
        }
        self.built = false;
        self.layers.push(layer);
    }
    /// The seed of the initializers (each variable takes the next) and of the dropout masks.
    pub fn seed(mut self, seed: u64) -> Sequential {
        self.seed = seed;
        self
    }
    /// The dtype policy of every layer without one (default: floatx's).
    pub fn dtype_policy(mut self, policy: DTypePolicy) -> Sequential {
        self.policy = Some(policy);
        self
    }
    /// The device (default: the configured one).
    pub fn device(mut self, device: Device) -> Sequential {
        self.device = Some(device);
        self
    }
    /// The model's name.
    pub fn name(mut self, name: &str) -> Sequential {
        self.name = name.into();
        self
    }
    /// Adds a callback to every `fit`.
    pub fn callback(mut self, cb: impl Callback + 'static) -> Sequential {
        self.callbacks.push(Box::new(cb));
        self
    }
    /// The layers.
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }
    /// The layers, mutably (to freeze one).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
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

    /// Creates every variable for samples of `input_shape` (no batch axis).
    pub fn build(&mut self, input_shape: &[usize]) -> Result<()> {
        if let Some(s) = &self.input {
            if s != input_shape {
                return Err(KilnError::shape(
                    "Sequential.build",
                    s,
                    input_shape,
                    "the model's Input has another shape",
                ));
            }
        }
        self.input = Some(input_shape.to_vec());
        let policy = match self.policy {
            Some(p) => p,
            None => DTypePolicy::default_policy()?,
        };
        let mut ctx = BuildContext {
            policy,
            device: self.current_device()?,
            seed: self.seed,
        };
        let mut counts: BTreeMap<String, usize> = BTreeMap::new();
        let mut shape: Shape = std::iter::once(None)
            .chain(input_shape.iter().map(|d| Some(*d)))
            .collect();
        for l in self.layers.iter_mut() {
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
        self.built = true;
        Ok(())
    }

    fn ensure_built(&mut self, sample_shape: &[usize]) -> Result<()> {
        if !self.built {
            let s = self.input.clone().unwrap_or_else(|| sample_shape.to_vec());
            self.build(&s)?;
        }
        Ok(())
    }

    /// The output shape (batch axis `None`) without computing anything.
    pub fn output_shape(&self) -> Result<Shape> {
        let input = self.input.as_ref().ok_or_else(|| {
            KilnError::invalid(
                "Sequential",
                "the model has no input shape yet: add an Input, call build, or fit it",
            )
        })?;
        let mut s: Shape = std::iter::once(None)
            .chain(input.iter().map(|d| Some(*d)))
            .collect();
        for l in &self.layers {
            s = l.output_shape(&s)?;
        }
        Ok(s)
    }

    /// Every variable, layer by layer.
    pub fn variables(&self) -> Vec<&Variable> {
        self.layers.iter().flat_map(|l| l.variables()).collect()
    }

    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.layers
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

    /// Keras's summary table: each layer's name, class, output shape and parameter count,
    /// then the totals with their sizes.
    pub fn summary(&mut self) -> Result<String> {
        if let Some(s) = self.input.clone() {
            self.ensure_built(&s)?;
        }
        let widths = [33usize, 24, 15];
        let line = |l: char, m: char, r: char, f: char| {
            let mut s = String::new();
            s.push(l);
            for (i, w) in widths.iter().enumerate() {
                s.extend(std::iter::repeat_n(f, *w));
                s.push(if i + 1 == widths.len() { r } else { m });
            }
            s
        };
        let row = |a: &str, b: &str, c: &str, edge: char| {
            format!(
                "{edge} {:<w0$}{edge} {:<w1$}{edge} {:>w2$} {edge}",
                a,
                b,
                c,
                w0 = widths[0] - 1,
                w1 = widths[1] - 1,
                w2 = widths[2] - 2
            )
        };
        let mut out = format!("Model: \"{}\"\n", self.name);
        out += &line('┏', '┳', '┓', '━');
        out += "\n";
        out += &row("Layer (type)", "Output Shape", "Param #", '┃');
        out += "\n";
        out += &line('┡', '╇', '┩', '━');
        out += "\n";
        let mut shape: Option<Shape> = self.input.as_ref().map(|i| {
            std::iter::once(None)
                .chain(i.iter().map(|d| Some(*d)))
                .collect()
        });
        let (mut total, mut trainable, mut bytes, mut tbytes) = (0usize, 0usize, 0usize, 0usize);
        for (i, l) in self.layers.iter().enumerate() {
            shape = match &shape {
                Some(s) => Some(l.output_shape(s)?),
                None => None,
            };
            let params: usize = l.variables().iter().map(|v| v.value().size()).sum();
            for v in l.variables() {
                let b = v.value().size() * v.dtype().itemsize();
                total += v.value().size();
                bytes += b;
                if v.trainable() {
                    trainable += v.value().size();
                    tbytes += b;
                }
            }
            let shape_s = shape.as_ref().map(|s| fmt_shape(s)).unwrap_or("?".into());
            out += &row(
                &format!("{} ({})", l.name(), l.class_name()),
                &shape_s,
                &group(params),
                '│',
            );
            out += "\n";
            out += &if i + 1 == self.layers.len() {
                line('└', '┴', '┘', '─')
            } else {
                line('├', '┼', '┤', '─')
            };
            out += "\n";
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
    /// from the loss and shapes when training starts).
    pub fn compile(
        &mut self,
        optimizer: impl Into<Optimizer>,
        loss: Loss,
        metrics: &[&str],
    ) -> Result<()> {
        for m in metrics {
            Metric::get(m, &[1], &[None, Some(2)])?;
        }
        let mut optimizer: Optimizer = optimizer.into();
        // Keras wraps the optimizer in a LossScaleOptimizer under mixed_float16.
        if self.policy.is_some_and(|p| p.name() == "mixed_float16") && !optimizer.is_loss_scaled() {
            optimizer = super::optimizers::LossScaleOptimizer::new(optimizer).into();
        }
        self.compiled = Some(Compiled {
            optimizer,
            loss,
            metrics: metrics.iter().map(|m| m.to_string()).collect(),
        });
        Ok(())
    }

    /// The optimizer (after `compile`).
    pub fn optimizer(&self) -> Option<&Optimizer> {
        self.compiled.as_ref().map(|c| &c.optimizer)
    }

    /// The forward pass on a batch.
    pub fn call(&mut self, x: &Tensor, training: bool) -> Result<Tensor> {
        self.ensure_built(&x.shape()[1.min(x.ndim())..])?;
        self.check_input(x, "x")?;
        let ctx = CallContext {
            training,
            seed: self
                .seed
                .wrapping_mul(0x9E37_79B9_7F4A_7C15)
                .wrapping_add(self.step),
        };
        let mut h = x.clone();
        for l in &self.layers {
            h = l.call(&h, &ctx)?;
        }
        Ok(h)
    }

    fn check_input(&self, x: &Tensor, arg: &str) -> Result<()> {
        if let Some(s) = &self.input {
            if x.ndim() != s.len() + 1 || &x.shape()[1..] != s.as_slice() {
                let want: Vec<String> = std::iter::once("batch".to_string())
                    .chain(s.iter().map(|d| d.to_string()))
                    .collect();
                return Err(KilnError::invalid(
                    "fit",
                    format!(
                        "`{arg}` has shape {:?}; the model takes [{}]{}",
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

    fn metrics_for(&self, y: &Tensor) -> Result<Vec<Metric>> {
        let c = self.compiled()?;
        let out = self.output_shape()?;
        c.metrics
            .iter()
            .map(|m| Metric::get(m, y.shape(), &out))
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

    /// One gradient step on a batch: the loss and metric values of that batch.
    pub fn train_on_batch(&mut self, x: &Tensor, y: &Tensor) -> Result<Logs> {
        let mut metrics = self.metrics_for(y)?;
        let (loss, pred) = self.step(x, y, None, (0, 0))?;
        let mut logs = Logs::new();
        logs.insert("loss".into(), loss);
        for m in metrics.iter_mut() {
            m.update_state(y, &pred, None)?;
            logs.insert(m.name().to_string(), m.result());
        }
        Ok(logs)
    }

    /// The training step: forward with the trainable variables watched, the loss (plus the
    /// layers' regularization), the gradients, non-finite checks, the optimizer's update.
    fn step(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        sw: Option<&Tensor>,
        at: (usize, usize),
    ) -> Result<(f64, Tensor)> {
        self.ensure_built(&x.shape()[1.min(x.ndim())..])?;
        let loss_fn = self.compiled()?.loss;
        let scale = self.compiled()?.optimizer.loss_scale();
        let mut watched = Vec::new();
        for v in self.variables_mut() {
            if v.trainable() {
                let w = autodiff::watch(v.value())?;
                v.set_raw(w.clone());
                watched.push(w);
            }
        }
        let run = |m: &mut Sequential| -> Result<(Tensor, Tensor)> {
            let pred = m.call(x, true)?;
            let mut loss = loss_fn.compute(y, &pred, sw)?;
            for l in &m.layers {
                if let Some(r) = l.regularization()? {
                    loss = ops::add(&loss, &ops::cast(&r, loss.dtype())?)?;
                }
            }
            Ok((loss, pred))
        };
        let result = run(self).and_then(|(loss, pred)| {
            let refs: Vec<&Tensor> = watched.iter().collect();
            // Under loss scaling the gradients are of the scaled loss (Keras's scale_loss).
            let target = match scale {
                Some(s) => ops::multiply(&loss, s)?,
                None => loss.clone(),
            };
            let grads = autodiff::gradients(&target, &refs)?;
            Ok((loss, pred, grads))
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
        let (loss, pred, grads) = result?;
        let value = loss.to_f64_vec()?[0];
        let (epoch, batch) = at;
        if !value.is_finite() {
            return Err(KilnError::NonFinite {
                epoch,
                batch,
                what: format!("the loss ({value})"),
            });
        }
        let names: Vec<String> = self
            .layers
            .iter()
            .flat_map(|l| {
                l.variables()
                    .into_iter()
                    .filter(|v| v.trainable())
                    .map(|v| format!("{}/{}", l.name(), v.name()))
                    .collect::<Vec<_>>()
            })
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
            self.variables()
                .into_iter()
                .filter(|v| v.trainable())
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
        for l in self.layers.iter_mut() {
            l.finish_step()?;
        }
        if self.observe_steps {
            let after = self
                .variables()
                .into_iter()
                .filter(|v| v.trainable())
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
        Ok((value, autodiff::stop_gradient(&pred)))
    }

    /// Trains for `args.epochs` epochs; the history of every metric per epoch.
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
        let (xt, xr) = x.to_model(device, self.wide())?;
        let (yt, _) = y.to_model(device, self.wide())?;
        if verbose > 0 {
            if let Some(r) = &xr {
                println!(
                    "data: x converted to {} on {}: {}",
                    xt.dtype(),
                    device,
                    r.summary()
                );
            }
        }
        self.validate(&xt, &yt, args.check_finite, "x", "y")?;
        let n = xt.shape()[0];
        let sw = self.sample_weights(&yt, &args, device)?;
        // Keras: the last fraction, before shuffling.
        let split_at = ((n as f64) * (1.0 - args.validation_split)).floor() as usize;
        let (x_train, y_train, sw_train, val) = if let Some((vx, vy)) = &args.validation_data {
            let (vx, _) = vx.to_model(device, self.wide())?;
            let (vy, _) = vy.to_model(device, self.wide())?;
            self.validate(
                &vx,
                &vy,
                args.check_finite,
                "validation_data x",
                "validation_data y",
            )?;
            (xt, yt, sw, Some((vx, vy)))
        } else if split_at < n {
            if split_at == 0 {
                return Err(KilnError::invalid(
                    "fit",
                    "`validation_split` leaves no training samples",
                ));
            }
            (
                rows(&xt, 0, split_at)?,
                rows(&yt, 0, split_at)?,
                sw.as_ref().map(|w| rows(w, 0, split_at)).transpose()?,
                Some((rows(&xt, split_at, n)?, rows(&yt, split_at, n)?)),
            )
        } else {
            (xt, yt, sw, None)
        };
        let n_train = x_train.shape()[0];
        let steps = n_train.div_ceil(args.batch_size);
        let params = TrainParams {
            epochs: args.epochs,
            steps,
            verbose,
        };
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
                let mut loss_mean = Metric::new("loss", MetricKind::LossMean);
                for b in 0..steps {
                    for cb in callbacks.iter_mut() {
                        self.with_control(&mut stop, params, |c| cb.on_batch_begin(b, c))?;
                    }
                    let idx = &order[b * args.batch_size..((b + 1) * args.batch_size).min(n_train)];
                    let xb = take_rows(&x_train, idx, args.shuffle, b * args.batch_size)?;
                    let yb = take_rows(&y_train, idx, args.shuffle, b * args.batch_size)?;
                    let wb = sw_train
                        .as_ref()
                        .map(|w| take_rows(w, idx, args.shuffle, b * args.batch_size))
                        .transpose()?;
                    let (loss, pred) = match self.step(&xb, &yb, wb.as_ref(), (epoch, b)) {
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
                    loss_mean.update_mean(loss, idx.len() as f64);
                    for m in metrics.iter_mut() {
                        m.update_state(&yb, &pred, None)?;
                    }
                    let mut logs = Logs::new();
                    logs.insert("loss".into(), loss_mean.result());
                    for m in &metrics {
                        logs.insert(m.name().to_string(), m.result());
                    }
                    for cb in callbacks.iter_mut() {
                        self.with_control(&mut stop, params, |c| cb.on_batch_end(b, &logs, c))?;
                    }
                    // Keras checks after every batch too.
                    if stop {
                        break;
                    }
                }
                let mut logs = Logs::new();
                logs.insert("loss".into(), loss_mean.result());
                for m in &metrics {
                    logs.insert(m.name().to_string(), m.result());
                }
                if let Some((vx, vy)) = &val {
                    let v = self.evaluate_tensors(vx, vy, args.batch_size)?;
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

    /// Checks `fit`'s data before the first step: lengths, ranks, finiteness, labels for
    /// the loss.
    fn validate(
        &mut self,
        x: &Tensor,
        y: &Tensor,
        check_finite: bool,
        xn: &str,
        yn: &str,
    ) -> Result<()> {
        if x.ndim() == 0 || y.ndim() == 0 {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`{xn}` and `{yn}` need a sample axis; got shapes {:?} and {:?}",
                    x.shape(),
                    y.shape()
                ),
            ));
        }
        if x.shape()[0] != y.shape()[0] {
            return Err(KilnError::invalid(
                "fit",
                format!(
                    "`{xn}` has {} samples but `{yn}` has {}; they must match",
                    x.shape()[0],
                    y.shape()[0]
                ),
            ));
        }
        if x.shape()[0] == 0 {
            return Err(KilnError::invalid("fit", format!("`{xn}` has no samples")));
        }
        if self.input.is_none() && x.ndim() == 1 {
            return Err(KilnError::invalid(
                "fit",
                format!("`{xn}` is 1-d (shape {:?}); a model takes [samples, features]: reshape it to [n, 1] for one feature", x.shape()),
            ));
        }
        self.ensure_built(&x.shape()[1..])?;
        self.check_input(x, xn)?;
        if check_finite {
            for (t, name) in [(x, xn), (y, yn)] {
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
        let loss = self.compiled()?.loss;
        let out = self.output_shape()?;
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
                        "`{yn}` holds the label {v} at sample {i}; {} needs class indices in [0, {c}) for a model with {c} outputs (relabel the data, or widen the last layer)",
                        loss.name()
                    ),
                ));
            }
            if !(y.ndim() + 1 == out.len()
                || (y.ndim() == out.len() && y.shape().last() == Some(&1)))
            {
                return Err(KilnError::shape(
                    "fit",
                    y.shape(),
                    &out.iter().map(|d| d.unwrap_or(0)).collect::<Vec<_>>(),
                    format!("{} takes one class index per sample", loss.name()),
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
                        "{} needs labels shaped like the model's output (batch, {want_last}){}",
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
                        format!("`{yn}` holds {bad} at index {i}; binary_crossentropy needs labels in [0, 1]"),
                    ));
                }
            }
        }
        Ok(())
    }

    fn sample_weights(&self, y: &Tensor, args: &FitArgs, device: Device) -> Result<Option<Tensor>> {
        let n = y.shape()[0];
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

    /// The loss and metrics on data, batch by batch (Keras's `evaluate`).
    pub fn evaluate<X: ModelData + ?Sized, Y: ModelData + ?Sized>(
        &mut self,
        x: &X,
        y: &Y,
        batch_size: usize,
    ) -> Result<Logs> {
        let device = self.current_device()?;
        let (xt, _) = x.to_model(device, self.wide())?;
        let (yt, _) = y.to_model(device, self.wide())?;
        self.compiled()?;
        self.validate(&xt, &yt, false, "x", "y")?;
        self.evaluate_tensors(&xt, &yt, batch_size)
    }

    fn evaluate_tensors(&mut self, x: &Tensor, y: &Tensor, batch_size: usize) -> Result<Logs> {
        let _q = autodiff::no_grad();
        let loss_fn = self.compiled()?.loss;
        let mut metrics = self.metrics_for(y)?;
        let n = x.shape()[0];
        let bs = batch_size.max(1);
        let mut total = 0.0;
        for start in (0..n).step_by(bs) {
            let end = (start + bs).min(n);
            let xb = rows(x, start, end)?;
            let yb = rows(y, start, end)?;
            let p = self.call(&xb, false)?;
            let mut l = loss_fn.compute(&yb, &p, None)?.to_f64_vec()?[0];
            // As Keras's compute_loss: the layers' regularization losses count here too.
            for layer in &self.layers {
                if let Some(r) = layer.regularization()? {
                    l += r.to_f64_vec()?[0];
                }
            }
            total += l * (end - start) as f64;
            for m in metrics.iter_mut() {
                m.update_state(&yb, &p, None)?;
            }
        }
        let mut logs = Logs::new();
        logs.insert("loss".into(), total / n.max(1) as f64);
        for m in &metrics {
            logs.insert(m.name().to_string(), m.result());
        }
        Ok(logs)
    }

    /// The model's outputs on data, batch by batch (inference: dropout off).
    pub fn predict<X: ModelData + ?Sized>(&mut self, x: &X, batch_size: usize) -> Result<Tensor> {
        let _q = autodiff::no_grad();
        let (xt, _) = x.to_model(self.current_device()?, self.wide())?;
        if xt.ndim() == 0 || xt.shape()[0] == 0 {
            return Err(KilnError::invalid(
                "predict",
                "`x` needs at least one sample",
            ));
        }
        self.ensure_built(&xt.shape()[1..])?;
        self.check_input(&xt, "x")?;
        let n = xt.shape()[0];
        let bs = batch_size.max(1);
        let mut parts = Vec::new();
        for start in (0..n).step_by(bs) {
            parts.push(self.call(&rows(&xt, start, (start + bs).min(n))?, false)?);
        }
        let refs: Vec<&Tensor> = parts.iter().collect();
        ops::concatenate(&refs, 0)
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
        let mut out = Vec::new();
        for l in &self.layers {
            for v in l.variables() {
                out.push((format!("{}/{}", l.name(), v.name()), v.value().to_host()?));
            }
        }
        Ok(out)
    }

    /// Saves the weights to kiln's native weights file: an `.npz` of one array per variable,
    /// named `layer/variable` (dtypes kept). Safetensors and Keras's `.weights.h5` come with
    /// the model-file work.
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
        crate::io::write_npz(path, &refs, false)
    }

    /// Loads weights saved by [`save_weights`](Self::save_weights): every variable by name,
    /// each of its shape; a missing, extra or misshapen array is an error naming it.
    pub fn load_weights(&mut self, path: &str) -> Result<()> {
        let file = crate::io::read_npz(path)?;
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

impl TrainModel for Sequential {
    fn get_weights(&self) -> Result<Vec<ArrayData>> {
        Sequential::get_weights(self)
    }
    fn set_weights(&mut self, weights: &[ArrayData]) -> Result<()> {
        Sequential::set_weights(self, weights)
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
        Sequential::save_weights(self, path)
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
