//! Convolution layers: `Conv1D`, `Conv2D`, `Conv3D` (Keras's `layers.convolutional`), one
//! generic type [`Conv`] over the number of spatial axes.

use super::{autocast, base_config, merge, BuildContext, CallContext, Layer, Shape};
use crate::error::{KilnError, Result};
use crate::nn::activations::ActivationFn;
use crate::nn::initializers::Initializer;
use crate::nn::policy::DTypePolicy;
use crate::nn::regularizers::Regularizer;
use crate::ops;
use crate::ops::conv::{DataFormat, Padding, Window};
use crate::tensor::{Tensor, Variable};
use serde_json::json;

/// `value.pipe(f)` is `f(value)`: lets a config be built as one expression.
trait Pipe: Sized {
    fn pipe<R>(self, f: impl FnOnce(Self) -> R) -> R {
        f(self)
    }
}
impl<T> Pipe for T {}

/// A per-spatial-axis size: one number for every axis (`3`) or one each (`[3, 5]`), as Keras
/// takes an int or a tuple.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Size<const N: usize>(pub [usize; N]);

impl<const N: usize> From<usize> for Size<N> {
    fn from(v: usize) -> Self {
        Size([v; N])
    }
}

impl<const N: usize> From<[usize; N]> for Size<N> {
    fn from(v: [usize; N]) -> Self {
        Size(v)
    }
}

/// Output spatial sizes of a window over known input sizes (`None` where unknown).
pub(super) fn window_output(
    op: &str,
    spatial: &[Option<usize>],
    window: &[usize],
    strides: &[usize],
    padding: Padding,
    dilation: &[usize],
) -> Result<Vec<Option<usize>>> {
    spatial
        .iter()
        .enumerate()
        .map(|(i, d)| match d {
            None => Ok(None),
            Some(d) => {
                let w = Window::new(
                    op,
                    &[*d],
                    &[window[i]],
                    &[strides[i]],
                    padding,
                    &[dilation[i]],
                )?;
                Ok(Some(w.output[0]))
            }
        })
        .collect()
}

/// Splits a layer input shape into (batch, spatial, channels) by data format, checking rank.
pub(super) fn split_shape(
    class: &str,
    name: &str,
    s: &[Option<usize>],
    n: usize,
    fmt: DataFormat,
) -> Result<(Option<usize>, Shape, Option<usize>)> {
    if s.len() != n + 2 {
        return Err(KilnError::invalid(
            class,
            format!(
                "layer {name:?} takes inputs of rank {} (batch, {n} spatial, channels), got shape {s:?}",
                n + 2
            ),
        ));
    }
    Ok(match fmt {
        DataFormat::ChannelsLast => (s[0], s[1..=n].to_vec(), s[n + 1]),
        DataFormat::ChannelsFirst => (s[0], s[2..].to_vec(), s[1]),
    })
}

/// Joins (batch, spatial, channels) back into a shape in the data format.
pub(super) fn join_shape(
    b: Option<usize>,
    spatial: Vec<Option<usize>>,
    c: Option<usize>,
    fmt: DataFormat,
) -> Shape {
    let mut s = vec![b];
    match fmt {
        DataFormat::ChannelsLast => {
            s.extend(spatial);
            s.push(c);
        }
        DataFormat::ChannelsFirst => {
            s.push(c);
            s.extend(spatial);
        }
    }
    s
}

/// An `N`-d convolution layer (Keras's `Conv1D`/`Conv2D`/`Conv3D`):
/// `activation(conv(x, kernel) + bias)`, kernel `[*kernel_size, channels / groups, filters]`.
///
/// ```
/// use kiln::nn::{Conv2D, Layer};
/// let c = Conv2D::new(16, 3).padding("same").strides(2).activation("relu");
/// assert_eq!(c.output_shape(&[None, Some(8), Some(8), Some(1)]).unwrap(),
///            vec![None, Some(4), Some(4), Some(16)]);
/// ```
#[derive(Debug)]
pub struct Conv<const N: usize> {
    name: String,
    filters: usize,
    kernel_size: [usize; N],
    strides: [usize; N],
    padding: String,
    data_format: String,
    dilation_rate: [usize; N],
    groups: usize,
    activation: String,
    use_bias: bool,
    kernel_initializer: Initializer,
    bias_initializer: Initializer,
    kernel_regularizer: Option<Regularizer>,
    bias_regularizer: Option<Regularizer>,
    policy: Option<DTypePolicy>,
    act: ActivationFn,
    pad: Padding,
    fmt: DataFormat,
    kernel: Option<Variable>,
    bias: Option<Variable>,
}

/// Keras's `Conv1D`.
pub type Conv1D = Conv<1>;
/// Keras's `Conv2D`.
pub type Conv2D = Conv<2>;
/// Keras's `Conv3D`.
pub type Conv3D = Conv<3>;

impl<const N: usize> Conv<N> {
    /// `filters` output channels from windows of `kernel_size`; Keras's defaults: strides 1,
    /// `valid` padding, `channels_last`, dilation 1, 1 group, no activation, a bias,
    /// glorot_uniform kernel, zeros bias.
    pub fn new(filters: usize, kernel_size: impl Into<Size<N>>) -> Conv<N> {
        Conv {
            name: String::new(),
            filters,
            kernel_size: kernel_size.into().0,
            strides: [1; N],
            padding: "valid".into(),
            data_format: "channels_last".into(),
            dilation_rate: [1; N],
            groups: 1,
            activation: "linear".into(),
            use_bias: true,
            kernel_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            kernel_regularizer: None,
            bias_regularizer: None,
            policy: None,
            act: ActivationFn::Linear,
            pad: Padding::Valid,
            fmt: DataFormat::ChannelsLast,
            kernel: None,
            bias: None,
        }
    }
    /// Strides per spatial axis.
    pub fn strides(mut self, s: impl Into<Size<N>>) -> Self {
        self.strides = s.into().0;
        self
    }
    /// `"valid"`, `"same"` or (Conv1D) `"causal"`.
    pub fn padding(mut self, p: &str) -> Self {
        self.padding = p.into();
        self
    }
    /// `"channels_last"` or `"channels_first"`.
    pub fn data_format(mut self, f: &str) -> Self {
        self.data_format = f.into();
        self
    }
    /// Dilation per spatial axis.
    pub fn dilation_rate(mut self, d: impl Into<Size<N>>) -> Self {
        self.dilation_rate = d.into().0;
        self
    }
    /// Channel groups (inputs and filters both divide into them).
    pub fn groups(mut self, g: usize) -> Self {
        self.groups = g;
        self
    }
    super::kernel_layer_builders!();

    fn class(&self) -> &'static str {
        ["Conv1D", "Conv2D", "Conv3D"][N.clamp(1, 3) - 1]
    }

    fn parse_args(&self) -> Result<(Padding, DataFormat)> {
        let pad = Padding::parse(&self.padding)?;
        if pad == Padding::Causal && N != 1 {
            return Err(KilnError::invalid(
                self.class(),
                format!("layer {:?}: causal padding is for Conv1D only", self.name),
            ));
        }
        Ok((pad, DataFormat::parse(&self.data_format)?))
    }
}

impl<const N: usize> Layer for Conv<N> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        self.class()
    }
    fn build(&mut self, input_shape: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        self.act = ActivationFn::get(&self.activation)?;
        (self.pad, self.fmt) = self.parse_args()?;
        let class = self.class();
        let (_, _, c) = split_shape(class, &self.name, input_shape, N, self.fmt)?;
        let Some(c) = c else {
            return Err(KilnError::invalid(
                class,
                format!(
                    "layer {:?} needs a known channel axis, got shape {input_shape:?}",
                    self.name
                ),
            ));
        };
        let g = self.groups;
        if self.filters == 0 || g == 0 || !c.is_multiple_of(g) || !self.filters.is_multiple_of(g) {
            return Err(KilnError::invalid(
                class,
                format!(
                    "layer {:?}: {c} input channels and {} filters must both divide into {g} groups (and filters be at least 1)",
                    self.name, self.filters
                ),
            ));
        }
        if self.kernel_size.contains(&0) {
            return Err(KilnError::invalid(
                class,
                format!("layer {:?}: kernel_size must be at least 1", self.name),
            ));
        }
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        let mut shape = self.kernel_size.to_vec();
        shape.extend([c / g, self.filters]);
        self.kernel = Some(b.variable("kernel", &shape, &self.kernel_initializer)?);
        if self.use_bias {
            self.bias = Some(b.variable("bias", &[self.filters], &self.bias_initializer)?);
        }
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let (pad, fmt) = self.parse_args()?;
        let (b, spatial, _) = split_shape(self.class(), &self.name, s, N, fmt)?;
        let out = window_output(
            self.class(),
            &spatial,
            &self.kernel_size,
            &self.strides,
            pad,
            &self.dilation_rate,
        )?;
        Ok(join_shape(b, out, Some(self.filters), fmt))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let kernel = self.kernel.as_ref().ok_or_else(|| {
            KilnError::invalid(self.class(), format!("layer {:?} is not built", self.name))
        })?;
        let x = autocast(x, &self.policy)?;
        let cast = |v: &Variable| autocast(v.value(), &self.policy);
        let mut y = ops::conv::conv(
            &x,
            &cast(kernel)?,
            &self.strides,
            self.pad,
            self.fmt,
            &self.dilation_rate,
        )?;
        y = add_bias::<N>(y, self.bias.as_ref().map(cast).transpose()?, self.fmt)?;
        self.act.apply(&y)
    }
    super::kernel_layer_variables!();
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "filters": self.filters,
                "kernel_size": self.kernel_size.to_vec(),
                "strides": self.strides.to_vec(),
                "padding": self.padding,
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate.to_vec(),
                "groups": self.groups,
            }),
        )
        .pipe(|c| {
            merge(
                c,
                super::kernel_config(
                    &self.activation,
                    self.use_bias,
                    &self.kernel_initializer,
                    &self.bias_initializer,
                    &self.kernel_regularizer,
                    &self.bias_regularizer,
                ),
            )
        })
    }
}

/// Depthwise and separable convolutions share these settings.
#[derive(Debug)]
struct SpatialArgs<const N: usize> {
    kernel_size: [usize; N],
    strides: [usize; N],
    padding: String,
    data_format: String,
    dilation_rate: [usize; N],
    depth_multiplier: usize,
}

impl<const N: usize> SpatialArgs<N> {
    fn new(kernel_size: [usize; N]) -> Self {
        SpatialArgs {
            kernel_size,
            strides: [1; N],
            padding: "valid".into(),
            data_format: "channels_last".into(),
            dilation_rate: [1; N],
            depth_multiplier: 1,
        }
    }
    fn parse(&self, class: &str) -> Result<(Padding, DataFormat)> {
        let pad = Padding::parse(&self.padding)?;
        if pad == Padding::Causal {
            return Err(KilnError::invalid(
                class,
                "causal padding is for Conv1D only",
            ));
        }
        if self.depth_multiplier == 0 || self.kernel_size.contains(&0) {
            return Err(KilnError::invalid(
                class,
                "kernel_size and depth_multiplier must be at least 1",
            ));
        }
        Ok((pad, DataFormat::parse(&self.data_format)?))
    }
    fn out_shape(
        &self,
        class: &str,
        name: &str,
        s: &[Option<usize>],
        filters: Option<usize>,
    ) -> Result<Shape> {
        let (pad, fmt) = self.parse(class)?;
        let (b, spatial, c) = split_shape(class, name, s, N, fmt)?;
        let out = window_output(
            class,
            &spatial,
            &self.kernel_size,
            &self.strides,
            pad,
            &self.dilation_rate,
        )?;
        let channels = filters.or(c.map(|c| c * self.depth_multiplier));
        Ok(join_shape(b, out, channels, fmt))
    }
    fn config(&self) -> serde_json::Value {
        json!({
            "kernel_size": self.kernel_size.to_vec(),
            "strides": self.strides.to_vec(),
            "padding": self.padding,
            "data_format": self.data_format,
            "dilation_rate": self.dilation_rate.to_vec(),
            "depth_multiplier": self.depth_multiplier,
        })
    }
}

macro_rules! spatial_builders {
    () => {
        /// Strides per spatial axis.
        pub fn strides(mut self, s: impl Into<Size<N>>) -> Self {
            self.args.strides = s.into().0;
            self
        }
        /// `"valid"` or `"same"`.
        pub fn padding(mut self, p: &str) -> Self {
            self.args.padding = p.into();
            self
        }
        /// `"channels_last"` or `"channels_first"`.
        pub fn data_format(mut self, f: &str) -> Self {
            self.args.data_format = f.into();
            self
        }
        /// Dilation per spatial axis.
        pub fn dilation_rate(mut self, d: impl Into<Size<N>>) -> Self {
            self.args.dilation_rate = d.into().0;
            self
        }
        /// Output channels per input channel of the depthwise step.
        pub fn depth_multiplier(mut self, m: usize) -> Self {
            self.args.depth_multiplier = m;
            self
        }
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
        /// The layer's dtype policy.
        pub fn dtype(mut self, policy: DTypePolicy) -> Self {
            self.policy = Some(policy);
            self
        }
        /// A name.
        pub fn name(mut self, name: &str) -> Self {
            self.name = name.into();
            self
        }
    };
}

/// A depthwise convolution layer (Keras's `DepthwiseConv2D`, generic over the spatial axes):
/// each input channel convolved with its own `depth_multiplier` filters; kernel
/// `[*kernel_size, channels, depth_multiplier]`, output channel `c * depth_multiplier + m`.
#[derive(Debug)]
pub struct DepthwiseConv<const N: usize> {
    name: String,
    args: SpatialArgs<N>,
    activation: String,
    use_bias: bool,
    depthwise_initializer: Initializer,
    bias_initializer: Initializer,
    policy: Option<DTypePolicy>,
    act: ActivationFn,
    depthwise_kernel: Option<Variable>,
    bias: Option<Variable>,
}

/// Keras's `DepthwiseConv1D`.
pub type DepthwiseConv1D = DepthwiseConv<1>;
/// Keras's `DepthwiseConv2D`.
pub type DepthwiseConv2D = DepthwiseConv<2>;

impl<const N: usize> DepthwiseConv<N> {
    /// Windows of `kernel_size`; Keras's defaults otherwise (glorot_uniform kernel).
    pub fn new(kernel_size: impl Into<Size<N>>) -> Self {
        DepthwiseConv {
            name: String::new(),
            args: SpatialArgs::new(kernel_size.into().0),
            activation: "linear".into(),
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            policy: None,
            act: ActivationFn::Linear,
            depthwise_kernel: None,
            bias: None,
        }
    }
    spatial_builders!();
    /// The depthwise kernel's initializer.
    pub fn depthwise_initializer(mut self, i: Initializer) -> Self {
        self.depthwise_initializer = i;
        self
    }
    fn class(&self) -> &'static str {
        ["DepthwiseConv1D", "DepthwiseConv2D", "DepthwiseConv3D"][N.clamp(1, 3) - 1]
    }
}

/// A depthwise then pointwise (1x1) convolution layer (Keras's `SeparableConv2D`, generic
/// over the spatial axes): kernels `[*kernel_size, channels, depth_multiplier]` and
/// `[1.., channels * depth_multiplier, filters]`.
#[derive(Debug)]
pub struct SeparableConv<const N: usize> {
    name: String,
    filters: usize,
    args: SpatialArgs<N>,
    activation: String,
    use_bias: bool,
    depthwise_initializer: Initializer,
    pointwise_initializer: Initializer,
    bias_initializer: Initializer,
    policy: Option<DTypePolicy>,
    act: ActivationFn,
    depthwise_kernel: Option<Variable>,
    pointwise_kernel: Option<Variable>,
    bias: Option<Variable>,
}

/// Keras's `SeparableConv1D`.
pub type SeparableConv1D = SeparableConv<1>;
/// Keras's `SeparableConv2D`.
pub type SeparableConv2D = SeparableConv<2>;

impl<const N: usize> SeparableConv<N> {
    /// `filters` outputs from windows of `kernel_size`; Keras's defaults otherwise.
    pub fn new(filters: usize, kernel_size: impl Into<Size<N>>) -> Self {
        SeparableConv {
            name: String::new(),
            filters,
            args: SpatialArgs::new(kernel_size.into().0),
            activation: "linear".into(),
            use_bias: true,
            depthwise_initializer: Initializer::GlorotUniform,
            pointwise_initializer: Initializer::GlorotUniform,
            bias_initializer: Initializer::Zeros,
            policy: None,
            act: ActivationFn::Linear,
            depthwise_kernel: None,
            pointwise_kernel: None,
            bias: None,
        }
    }
    spatial_builders!();
    fn class(&self) -> &'static str {
        ["SeparableConv1D", "SeparableConv2D", "SeparableConv3D"][N.clamp(1, 3) - 1]
    }
}

/// The channel count of a built input, or the error.
fn channels<const N: usize>(
    class: &str,
    name: &str,
    s: &[Option<usize>],
    fmt: DataFormat,
) -> Result<usize> {
    let (_, _, c) = split_shape(class, name, s, N, fmt)?;
    c.ok_or_else(|| {
        KilnError::invalid(
            class,
            format!("layer {name:?} needs a known channel axis, got {s:?}"),
        )
    })
}

/// `y + bias` with the bias on the channel axis.
fn add_bias<const N: usize>(y: Tensor, b: Option<Tensor>, fmt: DataFormat) -> Result<Tensor> {
    let Some(b) = b else { return Ok(y) };
    let b = match fmt {
        DataFormat::ChannelsLast => b,
        DataFormat::ChannelsFirst => {
            let mut s = vec![-1isize];
            s.extend([1; N]);
            ops::reshape(&b, &s)?
        }
    };
    ops::add(&y, &b)
}

impl<const N: usize> Layer for DepthwiseConv<N> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        self.class()
    }
    fn build(&mut self, s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        self.act = ActivationFn::get(&self.activation)?;
        let (_, fmt) = self.args.parse(self.class())?;
        let c = channels::<N>(self.class(), &self.name, s, fmt)?;
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        let mut shape = self.args.kernel_size.to_vec();
        shape.extend([c, self.args.depth_multiplier]);
        self.depthwise_kernel =
            Some(b.variable("depthwise_kernel", &shape, &self.depthwise_initializer)?);
        if self.use_bias {
            self.bias = Some(b.variable(
                "bias",
                &[c * self.args.depth_multiplier],
                &self.bias_initializer,
            )?);
        }
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        self.args.out_shape(self.class(), &self.name, s, None)
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let k = self.depthwise_kernel.as_ref().ok_or_else(|| {
            KilnError::invalid(self.class(), format!("layer {:?} is not built", self.name))
        })?;
        let (pad, fmt) = self.args.parse(self.class())?;
        let x = autocast(x, &self.policy)?;
        let cast = |v: &Variable| autocast(v.value(), &self.policy);
        let y = ops::conv::depthwise_conv(
            &x,
            &cast(k)?,
            &self.args.strides,
            pad,
            fmt,
            &self.args.dilation_rate,
        )?;
        let y = add_bias::<N>(y, self.bias.as_ref().map(cast).transpose()?, fmt)?;
        self.act.apply(&y)
    }
    fn variables(&self) -> Vec<&Variable> {
        self.depthwise_kernel
            .iter()
            .chain(self.bias.iter())
            .collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.depthwise_kernel
            .iter_mut()
            .chain(self.bias.iter_mut())
            .collect()
    }
    fn config(&self) -> serde_json::Value {
        merge(
            merge(
                base_config(&self.name, self.trainable(), self.policy),
                self.args.config(),
            ),
            json!({
                "activation": self.activation,
                "use_bias": self.use_bias,
                "depthwise_initializer": {"class_name": self.depthwise_initializer.keras_name(), "config": {}},
                "bias_initializer": {"class_name": self.bias_initializer.keras_name(), "config": {}},
                "depthwise_regularizer": null,
                "bias_regularizer": null,
                "activity_regularizer": null,
                "depthwise_constraint": null,
                "bias_constraint": null,
            }),
        )
    }
}

impl<const N: usize> Layer for SeparableConv<N> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        self.class()
    }
    fn build(&mut self, s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        self.act = ActivationFn::get(&self.activation)?;
        let (_, fmt) = self.args.parse(self.class())?;
        let c = channels::<N>(self.class(), &self.name, s, fmt)?;
        if self.filters == 0 {
            return Err(KilnError::invalid(
                self.class(),
                "filters must be at least 1",
            ));
        }
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        let dm = self.args.depth_multiplier;
        let mut dshape = self.args.kernel_size.to_vec();
        dshape.extend([c, dm]);
        let mut pshape = vec![1; N];
        pshape.extend([c * dm, self.filters]);
        self.depthwise_kernel =
            Some(b.variable("depthwise_kernel", &dshape, &self.depthwise_initializer)?);
        self.pointwise_kernel =
            Some(b.variable("pointwise_kernel", &pshape, &self.pointwise_initializer)?);
        if self.use_bias {
            self.bias = Some(b.variable("bias", &[self.filters], &self.bias_initializer)?);
        }
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        self.args
            .out_shape(self.class(), &self.name, s, Some(self.filters))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let (Some(dk), Some(pk)) = (&self.depthwise_kernel, &self.pointwise_kernel) else {
            return Err(KilnError::invalid(
                self.class(),
                format!("layer {:?} is not built", self.name),
            ));
        };
        let (pad, fmt) = self.args.parse(self.class())?;
        let x = autocast(x, &self.policy)?;
        let cast = |v: &Variable| autocast(v.value(), &self.policy);
        let d = ops::conv::depthwise_conv(
            &x,
            &cast(dk)?,
            &self.args.strides,
            pad,
            fmt,
            &self.args.dilation_rate,
        )?;
        let y = ops::conv::conv(&d, &cast(pk)?, &[1], Padding::Valid, fmt, &[1])?;
        let y = add_bias::<N>(y, self.bias.as_ref().map(cast).transpose()?, fmt)?;
        self.act.apply(&y)
    }
    fn variables(&self) -> Vec<&Variable> {
        self.depthwise_kernel
            .iter()
            .chain(self.pointwise_kernel.iter())
            .chain(self.bias.iter())
            .collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.depthwise_kernel
            .iter_mut()
            .chain(self.pointwise_kernel.iter_mut())
            .chain(self.bias.iter_mut())
            .collect()
    }
    fn config(&self) -> serde_json::Value {
        merge(
            merge(
                base_config(&self.name, self.trainable(), self.policy),
                self.args.config(),
            ),
            json!({
                "filters": self.filters,
                "activation": self.activation,
                "use_bias": self.use_bias,
                "depthwise_initializer": {"class_name": self.depthwise_initializer.keras_name(), "config": {}},
                "pointwise_initializer": {"class_name": self.pointwise_initializer.keras_name(), "config": {}},
                "bias_initializer": {"class_name": self.bias_initializer.keras_name(), "config": {}},
                "depthwise_regularizer": null,
                "pointwise_regularizer": null,
                "bias_regularizer": null,
                "activity_regularizer": null,
                "depthwise_constraint": null,
                "pointwise_constraint": null,
                "bias_constraint": null,
            }),
        )
    }
}

/// A transposed convolution layer (Keras's `Conv1DTranspose`/`Conv2DTranspose`/
/// `Conv3DTranspose`): `activation(conv_transpose(x, kernel) + bias)`, kernel
/// `[*kernel_size, filters, channels]`.
#[derive(Debug)]
pub struct ConvTranspose<const N: usize> {
    name: String,
    filters: usize,
    kernel_size: [usize; N],
    strides: [usize; N],
    padding: String,
    output_padding: Option<[usize; N]>,
    data_format: String,
    dilation_rate: [usize; N],
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

/// Keras's `Conv1DTranspose`.
pub type Conv1DTranspose = ConvTranspose<1>;
/// Keras's `Conv2DTranspose`.
pub type Conv2DTranspose = ConvTranspose<2>;
/// Keras's `Conv3DTranspose`.
pub type Conv3DTranspose = ConvTranspose<3>;

impl<const N: usize> ConvTranspose<N> {
    /// `filters` outputs from windows of `kernel_size`, Keras's defaults otherwise.
    pub fn new(filters: usize, kernel_size: impl Into<Size<N>>) -> Self {
        ConvTranspose {
            name: String::new(),
            filters,
            kernel_size: kernel_size.into().0,
            strides: [1; N],
            padding: "valid".into(),
            output_padding: None,
            data_format: "channels_last".into(),
            dilation_rate: [1; N],
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
    /// Strides per spatial axis.
    pub fn strides(mut self, s: impl Into<Size<N>>) -> Self {
        self.strides = s.into().0;
        self
    }
    /// `"valid"` or `"same"`.
    pub fn padding(mut self, p: &str) -> Self {
        self.padding = p.into();
        self
    }
    /// Extra size on the right of each spatial axis (Keras's `output_padding`).
    pub fn output_padding(mut self, o: impl Into<Size<N>>) -> Self {
        self.output_padding = Some(o.into().0);
        self
    }
    /// `"channels_last"` or `"channels_first"`.
    pub fn data_format(mut self, f: &str) -> Self {
        self.data_format = f.into();
        self
    }
    /// Dilation per spatial axis.
    pub fn dilation_rate(mut self, d: impl Into<Size<N>>) -> Self {
        self.dilation_rate = d.into().0;
        self
    }
    super::kernel_layer_builders!();

    fn class(&self) -> &'static str {
        ["Conv1DTranspose", "Conv2DTranspose", "Conv3DTranspose"][N.clamp(1, 3) - 1]
    }
    fn parse(&self) -> Result<(Padding, DataFormat)> {
        let pad = Padding::parse(&self.padding)?;
        if pad == Padding::Causal || self.kernel_size.contains(&0) || self.strides.contains(&0) {
            return Err(KilnError::invalid(
                self.class(),
                format!(
                    "layer {:?}: padding \"valid\" or \"same\", kernel_size and strides at least 1",
                    self.name
                ),
            ));
        }
        Ok((pad, DataFormat::parse(&self.data_format)?))
    }
}

impl<const N: usize> Layer for ConvTranspose<N> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        self.class()
    }
    fn build(&mut self, s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        self.act = ActivationFn::get(&self.activation)?;
        let (_, fmt) = self.parse()?;
        let c = channels::<N>(self.class(), &self.name, s, fmt)?;
        if self.filters == 0 {
            return Err(KilnError::invalid(
                self.class(),
                "filters must be at least 1",
            ));
        }
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        let mut shape = self.kernel_size.to_vec();
        shape.extend([self.filters, c]);
        self.kernel = Some(b.variable("kernel", &shape, &self.kernel_initializer)?);
        if self.use_bias {
            self.bias = Some(b.variable("bias", &[self.filters], &self.bias_initializer)?);
        }
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let (pad, fmt) = self.parse()?;
        let (b, spatial, _) = split_shape(self.class(), &self.name, s, N, fmt)?;
        let out = spatial
            .iter()
            .enumerate()
            .map(|(i, d)| {
                d.map(|d| {
                    ops::conv::transpose_output(
                        d,
                        self.kernel_size[i],
                        self.strides[i],
                        self.dilation_rate[i],
                        pad,
                        self.output_padding.map(|o| o[i]),
                    )
                })
            })
            .collect();
        Ok(join_shape(b, out, Some(self.filters), fmt))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let kernel = self.kernel.as_ref().ok_or_else(|| {
            KilnError::invalid(self.class(), format!("layer {:?} is not built", self.name))
        })?;
        let (pad, fmt) = self.parse()?;
        let x = autocast(x, &self.policy)?;
        let cast = |v: &Variable| autocast(v.value(), &self.policy);
        let op = self.output_padding.map(|o| o.to_vec());
        let y = ops::conv::conv_transpose(
            &x,
            &cast(kernel)?,
            &self.strides,
            pad,
            op.as_deref(),
            fmt,
            &self.dilation_rate,
        )?;
        let y = add_bias::<N>(y, self.bias.as_ref().map(cast).transpose()?, fmt)?;
        self.act.apply(&y)
    }
    super::kernel_layer_variables!();
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "filters": self.filters,
                "kernel_size": self.kernel_size.to_vec(),
                "strides": self.strides.to_vec(),
                "padding": self.padding,
                "output_padding": self.output_padding.map(|o| o.to_vec()),
                "data_format": self.data_format,
                "dilation_rate": self.dilation_rate.to_vec(),
            }),
        )
        .pipe(|c| {
            merge(
                c,
                super::kernel_config(
                    &self.activation,
                    self.use_bias,
                    &self.kernel_initializer,
                    &self.bias_initializer,
                    &self.kernel_regularizer,
                    &self.bias_regularizer,
                ),
            )
        })
    }
}
