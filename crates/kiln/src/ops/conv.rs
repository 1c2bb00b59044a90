//! Convolutions and pooling with Keras's `ops.nn` names, arguments and semantics: `conv`,
//! `depthwise_conv`, `max_pool`, `average_pool` over 1, 2 or 3 spatial axes, `channels_last`
//! (Keras's default) or `channels_first`, `valid` / `same` (and, for 1-d convolutions,
//! `causal`) padding, strides and dilation.
//!
//! Composed in the frontend, so every engine computes (and differentiates) them the same
//! way: the input is padded, its patches are gathered in one `IndexSelect` primitive (the
//! host computes which padded position each patch element reads), and a convolution is one
//! matmul of the patches with the kernel (im2col; a grouped one a batched matmul); a pool is
//! one reduction over the patch axis. The gradient of the gather is the `IndexAdd`
//! primitive, so backward costs what forward costs.

use super::elementwise::divide;
use super::linalg::matmul;
use super::reduce::{max, sum};
use super::shape::{flip, pad, reshape, scatter_add_rows, select, transpose};
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// How the input is padded before a convolution or pool (Keras's `padding`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    /// No padding: outputs only where the window fits.
    Valid,
    /// Zero padding so that the output has `ceil(input / stride)` positions (the extra pad,
    /// if odd, goes after).
    Same,
    /// Left padding of `dilation * (kernel - 1)` (1-d convolutions only: Conv1D's causal).
    Causal,
}

impl Padding {
    /// Keras's name (`"valid"`, `"same"`, `"causal"`), case-insensitive as in Keras.
    pub fn parse(s: &str) -> Result<Padding> {
        match s.to_ascii_lowercase().as_str() {
            "valid" => Ok(Padding::Valid),
            "same" => Ok(Padding::Same),
            "causal" => Ok(Padding::Causal),
            other => Err(KilnError::invalid(
                "padding",
                format!("{other:?} is not a padding; use \"valid\", \"same\" or \"causal\""),
            )),
        }
    }
    /// Keras's name.
    pub fn name(self) -> &'static str {
        match self {
            Padding::Valid => "valid",
            Padding::Same => "same",
            Padding::Causal => "causal",
        }
    }
}

/// Where the channels are (Keras's `data_format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum DataFormat {
    /// `[batch, *spatial, channels]` (Keras's default).
    #[default]
    ChannelsLast,
    /// `[batch, channels, *spatial]`.
    ChannelsFirst,
}

impl DataFormat {
    /// Keras's name (`"channels_last"`, `"channels_first"`).
    pub fn parse(s: &str) -> Result<DataFormat> {
        match s {
            "channels_last" => Ok(DataFormat::ChannelsLast),
            "channels_first" => Ok(DataFormat::ChannelsFirst),
            other => Err(KilnError::invalid(
                "data_format",
                format!(
                    "{other:?} is not a data format; use \"channels_last\" or \"channels_first\""
                ),
            )),
        }
    }
    /// Keras's name.
    pub fn name(self) -> &'static str {
        match self {
            DataFormat::ChannelsLast => "channels_last",
            DataFormat::ChannelsFirst => "channels_first",
        }
    }
}

/// One value per spatial axis: a single value applies to all (Keras's int-or-tuple).
fn per_axis(op: &str, what: &str, v: &[usize], nd: usize) -> Result<Vec<usize>> {
    let out = match v.len() {
        1 => vec![v[0]; nd],
        n if n == nd => v.to_vec(),
        n => {
            return Err(KilnError::invalid(
                op,
                format!("{what} has {n} values for {nd} spatial axes; give 1 or {nd}"),
            ))
        }
    };
    if out.contains(&0) {
        return Err(KilnError::invalid(
            op,
            format!("{what} must be at least 1, got {v:?}"),
        ));
    }
    Ok(out)
}

/// The geometry of a sliding window over the spatial axes of a channels-last input.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    /// Input spatial sizes.
    pub input: Vec<usize>,
    /// Window sizes.
    pub window: Vec<usize>,
    pub strides: Vec<usize>,
    pub dilation: Vec<usize>,
    /// `(before, after)` padding per spatial axis.
    pub pads: Vec<(usize, usize)>,
    /// Output spatial sizes.
    pub output: Vec<usize>,
}

impl Window {
    pub(crate) fn new(
        op: &str,
        input: &[usize],
        window: &[usize],
        strides: &[usize],
        padding: Padding,
        dilation: &[usize],
    ) -> Result<Window> {
        let nd = input.len();
        let window = per_axis(op, "the window size", window, nd)?;
        let strides = per_axis(op, "strides", strides, nd)?;
        let dilation = per_axis(op, "dilation_rate", dilation, nd)?;
        if padding == Padding::Causal && nd != 1 {
            return Err(KilnError::invalid(
                op,
                "causal padding is for 1-d convolutions (Conv1D) only",
            ));
        }
        let mut pads = Vec::with_capacity(nd);
        let mut output = Vec::with_capacity(nd);
        for i in 0..nd {
            let span = dilation[i]
                .checked_mul(window[i] - 1)
                .and_then(|v| v.checked_add(1))
                .ok_or_else(|| KilnError::invalid(op, "window span overflows"))?;
            let p = match padding {
                Padding::Valid => (0, 0),
                Padding::Causal => (span - 1, 0),
                Padding::Same => {
                    let out = input[i].div_ceil(strides[i]);
                    let need = ((out.max(1) - 1) * strides[i] + span).saturating_sub(input[i]);
                    (need / 2, need - need / 2)
                }
            };
            let padded = input[i] + p.0 + p.1;
            if padded < span {
                return Err(KilnError::invalid(
                    op,
                    format!(
                        "spatial axis {i} has {} positions (after padding {}) but the window spans {span} (size {} at dilation {}); use padding \"same\" or a smaller window",
                        padded, padding.name(), window[i], dilation[i]
                    ),
                ));
            }
            pads.push(p);
            output.push((padded - span) / strides[i] + 1);
        }
        Ok(Window {
            input: input.to_vec(),
            window,
            strides,
            dilation,
            pads,
            output,
        })
    }

    fn padded(&self) -> Vec<usize> {
        (0..self.input.len())
            .map(|i| self.input[i] + self.pads[i].0 + self.pads[i].1)
            .collect()
    }

    /// For each output position (row-major), for each window offset (row-major): the flat
    /// index into the padded spatial grid it reads.
    fn gather_indices(&self, op: &str) -> Result<Vec<usize>> {
        let p = self.padded();
        let nd = p.len();
        let mut stride = vec![1usize; nd];
        for i in (0..nd.saturating_sub(1)).rev() {
            stride[i] = stride[i + 1] * p[i + 1];
        }
        let n_out: usize = self.output.iter().product();
        let n_win: usize = self.window.iter().product();
        // Sizes come from the user's tensors: the index list is allocated fallibly.
        let oom = || KilnError::OutOfMemory {
            op: op.to_string(),
            dtype: crate::dtype::DType::Int64,
            shape: vec![n_out, n_win],
            bytes: n_out as u128 * n_win as u128 * 8,
        };
        let total = n_out.checked_mul(n_win).ok_or_else(oom)?;
        let mut idx = Vec::new();
        idx.try_reserve_exact(total).map_err(|_| oom())?;
        let mut o = vec![0usize; nd];
        for _ in 0..n_out {
            let mut k = vec![0usize; nd];
            for _ in 0..n_win {
                let mut flat = 0;
                for i in 0..nd {
                    flat += (o[i] * self.strides[i] + k[i] * self.dilation[i]) * stride[i];
                }
                idx.push(flat);
                odometer(&mut k, &self.window);
            }
            odometer(&mut o, &self.output);
        }
        Ok(idx)
    }

    /// How many window elements of each output position fall inside the unpadded input
    /// (the divisor of a `same` average pool).
    fn valid_counts(&self) -> Vec<f64> {
        let nd = self.input.len();
        let n_out: usize = self.output.iter().product();
        let n_win: usize = self.window.iter().product();
        let mut out = Vec::with_capacity(n_out);
        let mut o = vec![0usize; nd];
        for _ in 0..n_out {
            let mut k = vec![0usize; nd];
            let mut c = 0usize;
            for _ in 0..n_win {
                let inside = (0..nd).all(|i| {
                    let at = o[i] * self.strides[i] + k[i] * self.dilation[i];
                    at >= self.pads[i].0 && at < self.pads[i].0 + self.input[i]
                });
                c += inside as usize;
                odometer(&mut k, &self.window);
            }
            out.push(c as f64);
            odometer(&mut o, &self.output);
        }
        out
    }
}

/// Advances a row-major multi-index.
fn odometer(ix: &mut [usize], dims: &[usize]) {
    for i in (0..ix.len()).rev() {
        ix[i] += 1;
        if ix[i] < dims[i] {
            return;
        }
        ix[i] = 0;
    }
}

/// `x` channels-last (moved there from channels-first), with its spatial sizes.
fn to_channels_last(op: &str, x: &Tensor, fmt: DataFormat, nd: usize) -> Result<Tensor> {
    if x.ndim() != nd + 2 {
        return Err(KilnError::invalid(
            op,
            format!(
                "inputs need {} axes (batch, {nd} spatial, channels), got shape {:?}",
                nd + 2,
                x.shape()
            ),
        ));
    }
    match fmt {
        DataFormat::ChannelsLast => Ok(x.clone()),
        DataFormat::ChannelsFirst => {
            let mut perm = vec![0];
            perm.extend(2..nd + 2);
            perm.push(1);
            transpose(x, Some(&perm))
        }
    }
}

fn from_channels_last(y: Tensor, fmt: DataFormat) -> Result<Tensor> {
    match fmt {
        DataFormat::ChannelsLast => Ok(y),
        DataFormat::ChannelsFirst => {
            let nd = y.ndim();
            let mut perm = vec![0, nd - 1];
            perm.extend(1..nd - 1);
            transpose(&y, Some(&perm))
        }
    }
}

/// Patches of channels-last `x` under `w`: `[batch, prod(output), prod(window), channels]`.
fn patches(x: &Tensor, w: &Window, pad_value: f64) -> Result<Tensor> {
    let (n, c) = (x.shape()[0], x.shape()[x.ndim() - 1]);
    let mut widths = vec![(0, 0)];
    widths.extend(&w.pads);
    widths.push((0, 0));
    let xp = if w.pads.iter().any(|p| *p != (0, 0)) {
        pad(x, &widths, pad_value)?
    } else {
        x.clone()
    };
    let grid: usize = w.padded().iter().product();
    let flat = reshape(&xp, &[n as isize, grid as isize, c as isize])?;
    let g = select(&flat, &w.gather_indices("conv")?, 1)?;
    let n_out: usize = w.output.iter().product();
    let n_win: usize = w.window.iter().product();
    reshape(
        &g,
        &[n as isize, n_out as isize, n_win as isize, c as isize],
    )
}

fn out_shape(n: usize, w: &Window, c: usize) -> Vec<isize> {
    let mut s = vec![n as isize];
    s.extend(w.output.iter().map(|d| *d as isize));
    s.push(c as isize);
    s
}

/// N-d convolution (Keras's `ops.conv`): `inputs` `[batch, *spatial, channels]` (or
/// channels-first), `kernel` `[*window, channels / groups, filters]`; the number of groups
/// is `channels / kernel.shape[-2]`, as in Keras. `strides` and `dilation_rate` take one
/// value for every spatial axis or one each. The result dtype follows `matmul`'s promotion.
///
/// ```
/// use kiln::{convert_to_tensor, ArrayData, Device};
/// use kiln::ops::conv::{conv, DataFormat, Padding};
/// // A [1, 4, 1] signal and a width-2 kernel of ones: sums of neighbours.
/// let x = convert_to_tensor(&ArrayData::from_shape_vec(&[1, 4, 1], vec![1f32, 2., 3., 4.]).unwrap(), None, &Device::Cpu).unwrap();
/// let k = convert_to_tensor(&ArrayData::from_shape_vec(&[2, 1, 1], vec![1f32, 1.]).unwrap(), None, &Device::Cpu).unwrap();
/// let y = conv(&x, &k, &[1], Padding::Valid, DataFormat::ChannelsLast, &[1]).unwrap();
/// assert_eq!(y.to_vec::<f32>().unwrap(), vec![3., 5., 7.]);
/// ```
#[track_caller]
pub fn conv(
    inputs: &Tensor,
    kernel: &Tensor,
    strides: &[usize],
    padding: Padding,
    data_format: DataFormat,
    dilation_rate: &[usize],
) -> Result<Tensor> {
    let op = "conv";
    let nd = kernel.ndim().checked_sub(2).filter(|d| (1..=3).contains(d));
    let Some(nd) = nd else {
        return Err(KilnError::invalid(
            op,
            format!(
                "the kernel needs 3 to 5 axes ([*window, in_channels / groups, filters] for 1 to 3 spatial axes), got shape {:?}",
                kernel.shape()
            ),
        ));
    };
    let x = to_channels_last(op, inputs, data_format, nd)?;
    let ks = kernel.shape();
    let (c, cg, f) = (x.shape()[nd + 1], ks[nd], ks[nd + 1]);
    if cg == 0 || c % cg != 0 || f % (c / cg).max(1) != 0 {
        return Err(KilnError::invalid(
            op,
            format!(
                "inputs have {c} channels but the kernel {ks:?} takes {cg} per group with {f} filters; the channels must be a multiple of kernel.shape[-2] and the filters of the groups"
            ),
        ));
    }
    let groups = c / cg;
    let w = Window::new(
        op,
        &x.shape()[1..=nd],
        &ks[..nd],
        strides,
        padding,
        dilation_rate,
    )?;
    let n = x.shape()[0];
    let n_out: usize = w.output.iter().product();
    let n_win: usize = w.window.iter().product();
    let p = patches(&x, &w, 0.0)?;
    let m = (n * n_out) as isize;
    let y = if groups == 1 {
        let cols = reshape(&p, &[m, (n_win * c) as isize])?;
        let k2 = reshape(kernel, &[(n_win * c) as isize, f as isize])?;
        matmul(&cols, &k2)?
    } else {
        // [m, win, groups, cg] -> [groups, m, win * cg] against [groups, win * cg, f / groups].
        let fg = f / groups;
        let p4 = reshape(&p, &[m, n_win as isize, groups as isize, cg as isize])?;
        let cols = reshape(
            &transpose(&p4, Some(&[2, 0, 1, 3]))?,
            &[groups as isize, m, (n_win * cg) as isize],
        )?;
        let k4 = reshape(
            kernel,
            &[n_win as isize, cg as isize, groups as isize, fg as isize],
        )?;
        let kg = reshape(
            &transpose(&k4, Some(&[2, 0, 1, 3]))?,
            &[groups as isize, (n_win * cg) as isize, fg as isize],
        )?;
        let yg = matmul(&cols, &kg)?; // [groups, m, fg]
        reshape(&transpose(&yg, Some(&[1, 0, 2]))?, &[m, f as isize])?
    };
    from_channels_last(reshape(&y, &out_shape(n, &w, f))?, data_format)
}

/// Depthwise convolution (Keras's `ops.depthwise_conv`): `kernel`
/// `[*window, channels, depth_multiplier]`; output channel `c * depth_multiplier + m`
/// convolves input channel `c` with `kernel[.., c, m]`.
#[track_caller]
pub fn depthwise_conv(
    inputs: &Tensor,
    kernel: &Tensor,
    strides: &[usize],
    padding: Padding,
    data_format: DataFormat,
    dilation_rate: &[usize],
) -> Result<Tensor> {
    let ks = kernel.shape().to_vec();
    if !(3..=5).contains(&ks.len()) {
        return Err(KilnError::invalid(
            "depthwise_conv",
            format!(
                "the kernel needs 3 to 5 axes ([*window, channels, depth_multiplier]), got shape {ks:?}"
            ),
        ));
    }
    let nd = ks.len() - 2;
    let mut grouped: Vec<isize> = ks[..nd].iter().map(|d| *d as isize).collect();
    grouped.push(1);
    grouped.push((ks[nd] * ks[nd + 1]) as isize);
    let k = reshape(kernel, &grouped)?;
    conv(inputs, &k, strides, padding, data_format, dilation_rate)
}

/// Checks a pool's arguments (real float inputs) and moves `inputs` channels-last.
fn pool_setup(
    op: &str,
    inputs: &Tensor,
    pool_size: &[usize],
    strides: Option<&[usize]>,
    padding: Padding,
    data_format: DataFormat,
) -> Result<(Tensor, Window)> {
    if !inputs.dtype().is_float() || inputs.dtype().is_complex() {
        return Err(KilnError::not_allowed(
            op,
            &[inputs.dtype()],
            "pools take real float inputs; cast them to a float dtype first",
        ));
    }
    let nd = inputs.ndim().checked_sub(2).filter(|d| (1..=3).contains(d));
    let Some(nd) = nd else {
        return Err(KilnError::invalid(
            op,
            format!(
                "inputs need 3 to 5 axes (batch, 1 to 3 spatial, channels), got shape {:?}",
                inputs.shape()
            ),
        ));
    };
    if padding == Padding::Causal {
        return Err(KilnError::invalid(
            op,
            "pools take padding \"valid\" or \"same\"",
        ));
    }
    let x = to_channels_last(op, inputs, data_format, nd)?;
    let w = Window::new(
        op,
        &x.shape()[1..=nd],
        pool_size,
        strides.unwrap_or(pool_size),
        padding,
        &[1],
    )?;
    Ok((x, w))
}

/// Max pooling (Keras's `ops.max_pool`): `strides` default to `pool_size`; `same` padding
/// never picks a padded position (it pads with -inf). Float inputs.
#[track_caller]
pub fn max_pool(
    inputs: &Tensor,
    pool_size: &[usize],
    strides: Option<&[usize]>,
    padding: Padding,
    data_format: DataFormat,
) -> Result<Tensor> {
    let op = "max_pool";
    let (x, w) = pool_setup(op, inputs, pool_size, strides, padding, data_format)?;
    let (n, c) = (x.shape()[0], x.shape()[x.ndim() - 1]);
    let p = patches(&x, &w, f64::NEG_INFINITY)?;
    let y = max(&p, Some(&[2]), false)?;
    from_channels_last(reshape(&y, &out_shape(n, &w, c))?, data_format)
}

/// Average pooling (Keras's `ops.average_pool`): with `same` padding each output averages
/// only the window elements inside the input, as Keras does. Float inputs.
#[track_caller]
pub fn average_pool(
    inputs: &Tensor,
    pool_size: &[usize],
    strides: Option<&[usize]>,
    padding: Padding,
    data_format: DataFormat,
) -> Result<Tensor> {
    let op = "average_pool";
    let (x, w) = pool_setup(op, inputs, pool_size, strides, padding, data_format)?;
    let (n, c) = (x.shape()[0], x.shape()[x.ndim() - 1]);
    let p = patches(&x, &w, 0.0)?;
    let s = sum(&p, Some(&[2]), false)?; // [n, out, c]
    let n_out: usize = w.output.iter().product();
    let counts = crate::array::ArrayData::from_shape_vec(&[n_out, 1], w.valid_counts())?;
    let counts =
        x.upload_like(crate::precision::report::convert_with_report(&counts, x.dtype()).0)?;
    let y = divide(&s, &counts)?;
    from_channels_last(reshape(&y, &out_shape(n, &w, c))?, data_format)
}

/// Keras's padding of a transposed convolution along one axis (its
/// `_convert_conv_transpose_padding_args_from_keras_to_jax`): `(left, right)` around the
/// stride-dilated input.
fn transpose_padding(
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    output_padding: Option<usize>,
) -> (usize, usize) {
    let k = (kernel - 1) * dilation + 1;
    match padding {
        Padding::Same => {
            let pad_len = match output_padding {
                None => stride + k - 2,
                Some(o) => k + k % 2 - 2 + o,
            };
            let left = (pad_len / 2 + pad_len % 2).min(k - 1);
            (left, pad_len - left)
        }
        _ => {
            let o = output_padding.unwrap_or(k.max(stride) - k);
            (k - 1, k - 1 + o)
        }
    }
}

/// Transposed convolution (Keras's `ops.conv_transpose`, the gradient of `conv` with respect
/// to its input): `kernel` `[*window, filters, channels]`; `valid` output
/// `(in - 1) * stride + max(window, stride)`, `same` output `in * stride` (unless
/// `output_padding` says otherwise), as Keras computes them. Composed as a scatter of the
/// input into its stride-dilated grid (`IndexAdd`), padding, and a convolution with the
/// flipped kernel.
#[track_caller]
pub fn conv_transpose(
    inputs: &Tensor,
    kernel: &Tensor,
    strides: &[usize],
    padding: Padding,
    output_padding: Option<&[usize]>,
    data_format: DataFormat,
    dilation_rate: &[usize],
) -> Result<Tensor> {
    let op = "conv_transpose";
    let nd = kernel.ndim().checked_sub(2).filter(|d| (1..=3).contains(d));
    let Some(nd) = nd else {
        return Err(KilnError::invalid(
            op,
            format!(
                "the kernel needs 3 to 5 axes ([*window, filters, channels]), got shape {:?}",
                kernel.shape()
            ),
        ));
    };
    if padding == Padding::Causal {
        return Err(KilnError::invalid(
            op,
            "padding must be \"valid\" or \"same\"",
        ));
    }
    let x = to_channels_last(op, inputs, data_format, nd)?;
    let ks = kernel.shape().to_vec();
    if ks[..nd].contains(&0) {
        return Err(KilnError::invalid(
            op,
            format!(
                "the kernel's window {:?} must be at least 1 on every axis",
                &ks[..nd]
            ),
        ));
    }
    let (n, c) = (x.shape()[0], x.shape()[nd + 1]);
    if ks[nd + 1] != c {
        return Err(KilnError::invalid(
            op,
            format!(
                "inputs have {c} channels but the kernel {ks:?} takes {} (its last axis)",
                ks[nd + 1]
            ),
        ));
    }
    let strides = per_axis(op, "strides", strides, nd)?;
    let dil = per_axis(op, "dilation_rate", dilation_rate, nd)?;
    let outp = match output_padding {
        None => None,
        Some(o) => Some(match o.len() {
            1 => vec![o[0]; nd],
            l if l == nd => o.to_vec(),
            l => {
                return Err(KilnError::invalid(
                    op,
                    format!("output_padding has {l} values for {nd} spatial axes"),
                ))
            }
        }),
    };
    let input: Vec<usize> = x.shape()[1..=nd].to_vec();
    // The stride-dilated grid: input position i lands at i * stride.
    let dilated: Vec<usize> = input
        .iter()
        .zip(&strides)
        .map(|(d, s)| (d.max(&1) - 1) * s + 1)
        .collect();
    let mut dstride = vec![1usize; nd];
    for i in (0..nd.saturating_sub(1)).rev() {
        dstride[i] = dstride[i + 1] * dilated[i + 1];
    }
    let n_in: usize = input.iter().product();
    let n_dil: usize = dilated.iter().product();
    let mut idx = Vec::with_capacity(n_in);
    let mut pos = vec![0usize; nd];
    for _ in 0..n_in {
        idx.push((0..nd).map(|i| pos[i] * strides[i] * dstride[i]).sum());
        odometer(&mut pos, &input);
    }
    let flat = reshape(&x, &[n as isize, n_in as isize, c as isize])?;
    let xd = if strides.iter().all(|s| *s == 1) {
        flat
    } else {
        scatter_add_rows(&flat, &idx, 1, n_dil)?
    };
    let mut shape = vec![n as isize];
    shape.extend(dilated.iter().map(|d| *d as isize));
    shape.push(c as isize);
    let xd = reshape(&xd, &shape)?;
    let mut widths = vec![(0, 0)];
    for i in 0..nd {
        widths.push(transpose_padding(
            ks[i],
            strides[i],
            dil[i],
            padding,
            outp.as_ref().map(|o| o[i]),
        ));
    }
    widths.push((0, 0));
    let xp = pad(&xd, &widths, 0.0)?;
    // Flip the window and swap the channel axes: [*window, channels, filters].
    let spatial: Vec<isize> = (0..nd as isize).collect();
    let mut perm: Vec<usize> = (0..nd).collect();
    perm.extend([nd + 1, nd]);
    let k = transpose(&flip(kernel, Some(&spatial))?, Some(&perm))?;
    let y = conv(
        &xp,
        &k,
        &[1],
        Padding::Valid,
        DataFormat::ChannelsLast,
        &dil,
    )?;
    from_channels_last(y, data_format)
}

/// The output size of a transposed convolution along one axis (Keras's).
pub(crate) fn transpose_output(
    input: usize,
    kernel: usize,
    stride: usize,
    dilation: usize,
    padding: Padding,
    output_padding: Option<usize>,
) -> usize {
    let (l, r) = transpose_padding(kernel, stride, dilation, padding, output_padding);
    let k = (kernel - 1) * dilation + 1;
    ((input.max(1) - 1) * stride + 1 + l + r + 1).saturating_sub(k)
}
