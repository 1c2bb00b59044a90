//! Seeded random tensors. Numbers are drawn on the host from ChaCha8 (a specified,
//! portable stream) in float64 and then rounded once to the target dtype, so the same
//! seed gives the same values on every backend and device.

use super::{cfg, resolve_creation};
use crate::array::ArrayData;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// A uniform f64 in [0, 1) from the top 53 bits.
fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

#[track_caller]
fn finish(
    op: &str,
    shape: &[usize],
    v: Vec<f64>,
    dtype: Option<DType>,
    device: Option<Device>,
) -> Result<Tensor> {
    let cfg = cfg()?;
    let (d, dev) = resolve_creation(op, dtype, cfg.floatx, device.unwrap_or(cfg.device), &cfg)?;
    if !d.is_float() {
        return Err(KilnError::not_allowed(
            op,
            &[d],
            "random values need a float dtype",
        ));
    }
    super::creation::materialize(op, &ArrayData::from_shape_vec(shape, v)?, d, dev)
}

/// Uniform values in `[minval, maxval)`.
///
/// ```
/// let a = kiln::ops::random_uniform(&[4], 0.0, 1.0, None, 7, None).unwrap();
/// let b = kiln::ops::random_uniform(&[4], 0.0, 1.0, None, 7, Some(kiln::Device::parse("sim:mps").unwrap())).unwrap();
/// assert_eq!(a.to_vec::<f32>().unwrap(), b.to_vec::<f32>().unwrap());
/// ```
#[track_caller]
pub fn random_uniform(
    shape: &[usize],
    minval: f64,
    maxval: f64,
    dtype: Option<DType>,
    seed: u64,
    device: Option<Device>,
) -> Result<Tensor> {
    if minval.partial_cmp(&maxval) != Some(std::cmp::Ordering::Less)
        || !minval.is_finite()
        || !maxval.is_finite()
    {
        return Err(KilnError::invalid(
            "random_uniform",
            format!("need finite minval < maxval, got {minval} and {maxval}"),
        ));
    }
    let n = crate::hostmem::check_output("random_uniform", shape, DType::Float64)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = crate::hostmem::collect_for(
        n,
        "random_uniform",
        shape,
        (0..n).map(|_| minval + (maxval - minval) * unit(&mut rng)),
    )?;
    finish("random_uniform", shape, v, dtype, device)
}

/// Normal values with the given mean and standard deviation (Box-Muller).
#[track_caller]
pub fn random_normal(
    shape: &[usize],
    mean: f64,
    stddev: f64,
    dtype: Option<DType>,
    seed: u64,
    device: Option<Device>,
) -> Result<Tensor> {
    if stddev.is_nan() || stddev < 0.0 || !mean.is_finite() || !stddev.is_finite() {
        return Err(KilnError::invalid(
            "random_normal",
            format!("need a finite mean and stddev >= 0, got {mean} and {stddev}"),
        ));
    }
    let n = crate::hostmem::check_output("random_normal", shape, DType::Float64)?;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut v = crate::hostmem::alloc_for::<f64>(n.saturating_add(1), "random_normal", shape)?;
    while v.len() < n {
        let u1 = 1.0 - unit(&mut rng); // (0, 1]: log is finite
        let u2 = unit(&mut rng);
        let r = (-2.0 * u1.ln()).sqrt();
        let th = std::f64::consts::TAU * u2;
        v.push(mean + stddev * r * th.cos());
        v.push(mean + stddev * r * th.sin());
    }
    v.truncate(n);
    finish("random_normal", shape, v, dtype, device)
}
