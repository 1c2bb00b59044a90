//! Pooling layers (Keras's `layers.pooling`): `MaxPooling1D/2D/3D`, `AveragePooling1D/2D/3D`
//! as one generic [`Pool`], and `GlobalMaxPooling1D/2D`, `GlobalAveragePooling1D/2D` as one
//! generic [`GlobalPool`].

use super::conv::{join_shape, split_shape, window_output, Size};
use super::{base_config, merge, CallContext, Layer, Shape};
use crate::error::Result;
use crate::ops;
use crate::ops::conv::{DataFormat, Padding};
use crate::tensor::Tensor;
use serde_json::json;

/// An `N`-d pool over windows: the maximum (`MAX = true`) or the mean. Keras's defaults:
/// strides equal to the pool size, `valid` padding, `channels_last`; max pools also default
/// to a pool size of 2 on every axis (`MaxPooling2D::default()` is Keras's `MaxPooling2D()`),
/// average pools take theirs, as in Keras.
///
/// ```
/// use kiln::nn::{Layer, MaxPooling2D};
/// let p = MaxPooling2D::default();
/// assert_eq!(p.output_shape(&[None, Some(4), Some(5), Some(32)]).unwrap(),
///            vec![None, Some(2), Some(2), Some(32)]);
/// ```
#[derive(Debug)]
pub struct Pool<const N: usize, const MAX: bool> {
    name: String,
    pool_size: [usize; N],
    strides: Option<[usize; N]>,
    padding: String,
    data_format: String,
}

/// Keras's `MaxPooling1D`.
pub type MaxPooling1D = Pool<1, true>;
/// Keras's `MaxPooling2D`.
pub type MaxPooling2D = Pool<2, true>;
/// Keras's `MaxPooling3D`.
pub type MaxPooling3D = Pool<3, true>;
/// Keras's `AveragePooling1D`.
pub type AveragePooling1D = Pool<1, false>;
/// Keras's `AveragePooling2D`.
pub type AveragePooling2D = Pool<2, false>;
/// Keras's `AveragePooling3D`.
pub type AveragePooling3D = Pool<3, false>;

impl<const N: usize> Default for Pool<N, true> {
    /// Keras's `MaxPoolingND()`: a pool size of 2 on every axis.
    fn default() -> Self {
        Pool::new(2)
    }
}

impl<const N: usize, const MAX: bool> Pool<N, MAX> {
    /// A pool over windows of `pool_size`, with Keras's other defaults.
    pub fn new(pool_size: impl Into<Size<N>>) -> Self {
        Pool {
            name: String::new(),
            pool_size: pool_size.into().0,
            strides: None,
            padding: "valid".into(),
            data_format: "channels_last".into(),
        }
    }
    /// Strides (default: the pool size).
    pub fn strides(mut self, s: impl Into<Size<N>>) -> Self {
        self.strides = Some(s.into().0);
        self
    }
    /// `"valid"` or `"same"`.
    pub fn padding(mut self, p: &str) -> Self {
        self.padding = p.into();
        self
    }
    /// `"channels_last"` or `"channels_first"`.
    pub fn data_format(mut self, f: &str) -> Self {
        self.data_format = f.into();
        self
    }
    /// A name (default: `max_pooling2d`, ...).
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }

    fn class(&self) -> &'static str {
        let i = N.clamp(1, 3) - 1;
        if MAX {
            ["MaxPooling1D", "MaxPooling2D", "MaxPooling3D"][i]
        } else {
            ["AveragePooling1D", "AveragePooling2D", "AveragePooling3D"][i]
        }
    }

    fn args(&self) -> Result<(Padding, DataFormat, [usize; N])> {
        let pad = Padding::parse(&self.padding)?;
        if pad == Padding::Causal {
            return Err(crate::error::KilnError::invalid(
                self.class(),
                format!(
                    "layer {:?}: pools take \"valid\" or \"same\" padding",
                    self.name
                ),
            ));
        }
        Ok((
            pad,
            DataFormat::parse(&self.data_format)?,
            self.strides.unwrap_or(self.pool_size),
        ))
    }
}

impl<const N: usize, const MAX: bool> Layer for Pool<N, MAX> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        self.class()
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let (pad, fmt, strides) = self.args()?;
        let (b, spatial, c) = split_shape(self.class(), &self.name, s, N, fmt)?;
        let out = window_output(
            self.class(),
            &spatial,
            &self.pool_size,
            &strides,
            pad,
            &[1; N],
        )?;
        Ok(join_shape(b, out, c, fmt))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let (pad, fmt, strides) = self.args()?;
        if MAX {
            ops::max_pool(x, &self.pool_size, Some(&strides), pad, fmt)
        } else {
            ops::average_pool(x, &self.pool_size, Some(&strides), pad, fmt)
        }
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({
                "pool_size": self.pool_size.to_vec(),
                "padding": self.padding,
                "strides": self.strides.unwrap_or(self.pool_size).to_vec(),
                "data_format": self.data_format,
            }),
        )
    }
}

/// The maximum (`MAX = true`) or mean over every spatial axis: `[batch, channels]`, or with
/// `keepdims` the spatial axes kept as 1s.
///
/// ```
/// use kiln::nn::{GlobalAveragePooling2D, Layer};
/// let p = GlobalAveragePooling2D::new();
/// assert_eq!(p.output_shape(&[None, Some(4), Some(4), Some(8)]).unwrap(), vec![None, Some(8)]);
/// ```
#[derive(Debug)]
pub struct GlobalPool<const N: usize, const MAX: bool> {
    name: String,
    data_format: String,
    keepdims: bool,
}

/// Keras's `GlobalMaxPooling1D`.
pub type GlobalMaxPooling1D = GlobalPool<1, true>;
/// Keras's `GlobalMaxPooling2D`.
pub type GlobalMaxPooling2D = GlobalPool<2, true>;
/// Keras's `GlobalAveragePooling1D`.
pub type GlobalAveragePooling1D = GlobalPool<1, false>;
/// Keras's `GlobalAveragePooling2D`.
pub type GlobalAveragePooling2D = GlobalPool<2, false>;
/// Keras's `GlobalMaxPooling3D`.
pub type GlobalMaxPooling3D = GlobalPool<3, true>;
/// Keras's `GlobalAveragePooling3D`.
pub type GlobalAveragePooling3D = GlobalPool<3, false>;

impl<const N: usize, const MAX: bool> Default for GlobalPool<N, MAX> {
    fn default() -> Self {
        GlobalPool {
            name: String::new(),
            data_format: "channels_last".into(),
            keepdims: false,
        }
    }
}

impl<const N: usize, const MAX: bool> GlobalPool<N, MAX> {
    /// A global pool with Keras's defaults (`channels_last`, no keepdims).
    pub fn new() -> Self {
        Self::default()
    }
    /// `"channels_last"` or `"channels_first"`.
    pub fn data_format(mut self, f: &str) -> Self {
        self.data_format = f.into();
        self
    }
    /// Keep the spatial axes as size 1.
    pub fn keepdims(mut self, on: bool) -> Self {
        self.keepdims = on;
        self
    }
    /// A name.
    pub fn name(mut self, name: &str) -> Self {
        self.name = name.into();
        self
    }
    fn class(&self) -> &'static str {
        let i = N.clamp(1, 3) - 1;
        if MAX {
            [
                "GlobalMaxPooling1D",
                "GlobalMaxPooling2D",
                "GlobalMaxPooling3D",
            ][i]
        } else {
            [
                "GlobalAveragePooling1D",
                "GlobalAveragePooling2D",
                "GlobalAveragePooling3D",
            ][i]
        }
    }
    fn axes(&self, fmt: DataFormat) -> Vec<isize> {
        match fmt {
            DataFormat::ChannelsLast => (1..=N as isize).collect(),
            DataFormat::ChannelsFirst => (2..N as isize + 2).collect(),
        }
    }
}

impl<const N: usize, const MAX: bool> Layer for GlobalPool<N, MAX> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        self.class()
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let fmt = DataFormat::parse(&self.data_format)?;
        let (b, _, c) = split_shape(self.class(), &self.name, s, N, fmt)?;
        Ok(if self.keepdims {
            join_shape(b, vec![Some(1); N], c, fmt)
        } else {
            vec![b, c]
        })
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let fmt = DataFormat::parse(&self.data_format)?;
        split_shape(
            self.class(),
            &self.name,
            &x.shape().iter().map(|d| Some(*d)).collect::<Vec<_>>(),
            N,
            fmt,
        )?;
        let axes = self.axes(fmt);
        if MAX {
            ops::max(x, Some(&axes), self.keepdims)
        } else {
            ops::mean(x, Some(&axes), self.keepdims)
        }
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"data_format": self.data_format, "keepdims": self.keepdims}),
        )
    }
}
