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
        if let Some(b) = &self.bias {
            let b = cast(b)?;
            let b = match self.fmt {
                DataFormat::ChannelsLast => b,
                DataFormat::ChannelsFirst => {
                    let mut s = vec![self.filters as isize];
                    s.extend([1; N]);
                    ops::reshape(&b, &s)?
                }
            };
            y = ops::add(&y, &b)?;
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
        super::penalties(&[
            (&self.kernel_regularizer, &self.kernel),
            (&self.bias_regularizer, &self.bias),
        ])
    }
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
                "activation": self.activation,
                "use_bias": self.use_bias,
                "kernel_initializer": {"class_name": self.kernel_initializer.keras_name(), "config": {}},
                "bias_initializer": {"class_name": self.bias_initializer.keras_name(), "config": {}},
                "kernel_regularizer": self.kernel_regularizer.as_ref().map(|r| r.config()),
                "bias_regularizer": self.bias_regularizer.as_ref().map(|r| r.config()),
                "activity_regularizer": null,
                "kernel_constraint": null,
                "bias_constraint": null,
            }),
        )
    }
}
