//! Spatial reshaping layers (Keras's `layers.reshaping`): `ZeroPadding1D/2D/3D`,
//! `Cropping1D/2D/3D`, `UpSampling1D/2D/3D` (nearest), generic over the number of spatial
//! axes. (`Flatten`, `Reshape` are in the parent module.)

use super::conv::{join_shape, split_shape};
use super::{base_config, merge, CallContext, Layer, Shape};
use crate::error::{KilnError, Result};
use crate::ops;
use crate::ops::conv::DataFormat;
use crate::ops::SliceArg;
use crate::tensor::Tensor;
use serde_json::json;

/// `(before, after)` per spatial axis, from Keras's int / per-axis int / per-axis pair forms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Margins<const N: usize>(pub [(usize, usize); N]);

impl<const N: usize> From<usize> for Margins<N> {
    fn from(v: usize) -> Self {
        Margins([(v, v); N])
    }
}
impl<const N: usize> From<[usize; N]> for Margins<N> {
    fn from(v: [usize; N]) -> Self {
        Margins(v.map(|d| (d, d)))
    }
}
impl<const N: usize> From<[(usize, usize); N]> for Margins<N> {
    fn from(v: [(usize, usize); N]) -> Self {
        Margins(v)
    }
}

fn margins_json<const N: usize>(m: &[(usize, usize); N]) -> serde_json::Value {
    if N == 1 {
        json!([m[0].0, m[0].1])
    } else {
        json!(m.iter().map(|(a, b)| vec![*a, *b]).collect::<Vec<_>>())
    }
}

/// The spatial axes of an input of rank `N + 2` in `fmt`.
fn spatial_axes(n: usize, fmt: DataFormat) -> Vec<usize> {
    match fmt {
        DataFormat::ChannelsLast => (1..=n).collect(),
        DataFormat::ChannelsFirst => (2..n + 2).collect(),
    }
}

fn class_of(base: &str, n: usize) -> &'static str {
    match (base, n) {
        ("ZeroPadding", 1) => "ZeroPadding1D",
        ("ZeroPadding", 2) => "ZeroPadding2D",
        ("ZeroPadding", _) => "ZeroPadding3D",
        ("Cropping", 1) => "Cropping1D",
        ("Cropping", 2) => "Cropping2D",
        ("Cropping", _) => "Cropping3D",
        ("UpSampling", 1) => "UpSampling1D",
        ("UpSampling", 2) => "UpSampling2D",
        _ => "UpSampling3D",
    }
}

macro_rules! spatial_layer {
    ($(#[$m:meta])* $ty:ident, $base:literal, $field:ident: $ft:ty = $default:expr, $ctor:ty) => {
        $(#[$m])*
        #[derive(Debug)]
        pub struct $ty<const N: usize> {
            name: String,
            $field: $ft,
            data_format: String,
        }
        impl<const N: usize> $ty<N> {
            /// Keras's `
            #[doc = $base]
            /// ND(...)`.
            pub fn new(v: impl Into<$ctor>) -> Self {
                $ty {
                    name: String::new(),
                    $field: v.into().0,
                    data_format: "channels_last".into(),
                }
            }
            /// `"channels_last"` or `"channels_first"` (1-d layers are channels-last).
            pub fn data_format(mut self, f: &str) -> Self {
                self.data_format = f.into();
                self
            }
            /// A name.
            pub fn name(mut self, n: &str) -> Self {
                self.name = n.into();
                self
            }
            fn fmt(&self) -> Result<DataFormat> {
                DataFormat::parse(&self.data_format)
            }
        }
        impl<const N: usize> Default for $ty<N> {
            fn default() -> Self {
                Self::new($default)
            }
        }
    };
}

spatial_layer!(
    /// Zeros around the spatial axes (Keras's `ZeroPadding1D/2D/3D`; default 1 on each side).
    ZeroPadding, "ZeroPadding", padding: [(usize, usize); N] = 1usize, Margins<N>
);
spatial_layer!(
    /// Removes margins of the spatial axes (Keras's `Cropping1D/2D/3D`; default none).
    Cropping, "Cropping", cropping: [(usize, usize); N] = 0usize, Margins<N>
);
spatial_layer!(
    /// Repeats each spatial position `size` times (Keras's `UpSampling1D/2D/3D`, nearest;
    /// default 2).
    UpSampling, "UpSampling", size: [usize; N] = 2usize, super::conv::Size<N>
);

/// Keras's `ZeroPadding1D`.
pub type ZeroPadding1D = ZeroPadding<1>;
/// Keras's `ZeroPadding2D`.
pub type ZeroPadding2D = ZeroPadding<2>;
/// Keras's `ZeroPadding3D`.
pub type ZeroPadding3D = ZeroPadding<3>;
/// Keras's `Cropping1D`.
pub type Cropping1D = Cropping<1>;
/// Keras's `Cropping2D`.
pub type Cropping2D = Cropping<2>;
/// Keras's `Cropping3D`.
pub type Cropping3D = Cropping<3>;
/// Keras's `UpSampling1D`.
pub type UpSampling1D = UpSampling<1>;
/// Keras's `UpSampling2D`.
pub type UpSampling2D = UpSampling<2>;
/// Keras's `UpSampling3D`.
pub type UpSampling3D = UpSampling<3>;

/// The common `Layer` plumbing of the three.
macro_rules! spatial_impl {
    ($ty:ident, $base:literal) => {
        fn name(&self) -> &str {
            &self.name
        }
        fn set_name(&mut self, name: String) {
            self.name = name;
        }
        fn class_name(&self) -> &'static str {
            class_of($base, N)
        }
    };
}

impl<const N: usize> Layer for ZeroPadding<N> {
    spatial_impl!(ZeroPadding, "ZeroPadding");
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let fmt = self.fmt()?;
        let (b, sp, c) = split_shape(self.class_name(), &self.name, s, N, fmt)?;
        let sp = sp
            .iter()
            .zip(&self.padding)
            .map(|(d, (l, r))| d.map(|d| d + l + r))
            .collect();
        Ok(join_shape(b, sp, c, fmt))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let fmt = self.fmt()?;
        let shape: Shape = x.shape().iter().map(|d| Some(*d)).collect();
        split_shape(self.class_name(), &self.name, &shape, N, fmt)?;
        let mut widths = vec![(0, 0); x.ndim()];
        for (a, p) in spatial_axes(N, fmt).into_iter().zip(&self.padding) {
            widths[a] = *p;
        }
        ops::pad(x, &widths, 0.0)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"padding": margins_json(&self.padding), "data_format": self.data_format}),
        )
    }
}

impl<const N: usize> Layer for Cropping<N> {
    spatial_impl!(Cropping, "Cropping");
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let fmt = self.fmt()?;
        let (b, sp, c) = split_shape(self.class_name(), &self.name, s, N, fmt)?;
        let mut out = Vec::with_capacity(N);
        for (d, (l, r)) in sp.iter().zip(&self.cropping) {
            out.push(match d {
                Some(d) if l + r >= *d => {
                    return Err(KilnError::invalid(
                        self.class_name(),
                        format!(
                            "layer {:?} crops {l} + {r} from an axis of {d}: nothing would be left",
                            self.name
                        ),
                    ))
                }
                Some(d) => Some(d - l - r),
                None => None,
            });
        }
        Ok(join_shape(b, out, c, fmt))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let fmt = self.fmt()?;
        let shape: Shape = x.shape().iter().map(|d| Some(*d)).collect();
        self.output_shape(&shape)?;
        let mut args = vec![SliceArg::all(); x.ndim()];
        for (a, (l, r)) in spatial_axes(N, fmt).into_iter().zip(&self.cropping) {
            args[a] = SliceArg::range(*l as isize, (x.shape()[a] - r) as isize);
        }
        ops::strided_slice(x, &args)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            // Keras's Cropping1D takes no data_format.
            if N == 1 {
                json!({"cropping": margins_json(&self.cropping)})
            } else {
                json!({"cropping": margins_json(&self.cropping), "data_format": self.data_format})
            },
        )
    }
}

impl<const N: usize> Layer for UpSampling<N> {
    spatial_impl!(UpSampling, "UpSampling");
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let fmt = self.fmt()?;
        if self.size.contains(&0) {
            return Err(KilnError::invalid(
                self.class_name(),
                format!("layer {:?}: size must be at least 1", self.name),
            ));
        }
        let (b, sp, c) = split_shape(self.class_name(), &self.name, s, N, fmt)?;
        let sp = sp
            .iter()
            .zip(&self.size)
            .map(|(d, k)| d.map(|d| d * k))
            .collect();
        Ok(join_shape(b, sp, c, fmt))
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let fmt = self.fmt()?;
        let shape: Shape = x.shape().iter().map(|d| Some(*d)).collect();
        self.output_shape(&shape)?;
        let mut y = x.clone();
        for (a, k) in spatial_axes(N, fmt).into_iter().zip(&self.size) {
            if *k > 1 {
                y = ops::repeat(&y, *k, Some(a as isize))?;
            }
        }
        Ok(y)
    }
    fn config(&self) -> serde_json::Value {
        let size = if N == 1 {
            json!(self.size[0])
        } else {
            json!(self.size.to_vec())
        };
        let mut extra = json!({"size": size});
        if N == 2 {
            extra["interpolation"] = json!("nearest");
        }
        if N > 1 {
            extra["data_format"] = json!(self.data_format);
        }
        merge(base_config(&self.name, true, None), extra)
    }
}

/// Drops whole channels (Keras's `SpatialDropout1D/2D/3D`): while training, each sample's
/// channel is zeroed with probability `rate` across all its spatial positions, the rest scaled
/// by `1 / (1 - rate)`; the identity at inference.
#[derive(Debug)]
pub struct SpatialDropout<const N: usize> {
    name: String,
    rate: f64,
    seed: Option<u64>,
    data_format: String,
}

/// Keras's `SpatialDropout1D`.
pub type SpatialDropout1D = SpatialDropout<1>;
/// Keras's `SpatialDropout2D`.
pub type SpatialDropout2D = SpatialDropout<2>;
/// Keras's `SpatialDropout3D`.
pub type SpatialDropout3D = SpatialDropout<3>;

impl<const N: usize> SpatialDropout<N> {
    /// Drops `rate` of the channels (in `[0, 1)`).
    pub fn new(rate: f64) -> Self {
        SpatialDropout {
            name: String::new(),
            rate,
            seed: None,
            data_format: "channels_last".into(),
        }
    }
    /// A seed of its own (default: the model's step seed).
    pub fn seed(mut self, s: u64) -> Self {
        self.seed = Some(s);
        self
    }
    /// `"channels_last"` or `"channels_first"`.
    pub fn data_format(mut self, f: &str) -> Self {
        self.data_format = f.into();
        self
    }
    /// A name.
    pub fn name(mut self, n: &str) -> Self {
        self.name = n.into();
        self
    }
}

impl<const N: usize> Layer for SpatialDropout<N> {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        ["SpatialDropout1D", "SpatialDropout2D", "SpatialDropout3D"][N.clamp(1, 3) - 1]
    }
    fn build(&mut self, s: &[Option<usize>], _ctx: &mut super::BuildContext) -> Result<()> {
        if !(0.0..1.0).contains(&self.rate) {
            return Err(KilnError::invalid(
                self.class_name(),
                format!("rate must be in [0, 1), got {}", self.rate),
            ));
        }
        split_shape(
            self.class_name(),
            &self.name,
            s,
            N,
            DataFormat::parse(&self.data_format)?,
        )?;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        Ok(s.to_vec())
    }
    fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor> {
        if !ctx.training || self.rate == 0.0 {
            return Ok(x.clone());
        }
        let fmt = DataFormat::parse(&self.data_format)?;
        let mut noise = vec![1usize; x.ndim()];
        noise[0] = x.shape()[0];
        let c = match fmt {
            DataFormat::ChannelsLast => x.ndim() - 1,
            DataFormat::ChannelsFirst => 1,
        };
        noise[c] = x.shape()[c];
        let seed = self.seed.unwrap_or(0).wrapping_add(ctx.seed);
        let u = ops::random_uniform(&noise, 0.0, 1.0, Some(x.dtype()), seed, Some(x.device()))?
            .to_backend(x.backend_kind())?;
        // The mask has the noise shape; `where` broadcasts it over the spatial axes.
        let keep = ops::greater_equal(&u, self.rate)?;
        ops::r#where(&keep, &ops::divide(x, 1.0 - self.rate)?, 0.0)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"rate": self.rate, "seed": self.seed, "data_format": self.data_format}),
        )
    }
}
