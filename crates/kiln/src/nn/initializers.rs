//! Keras's initializers, with Keras's names, arguments and defaults. Values are drawn on the
//! host from ChaCha8 in float64 (a specified stream), so a seed gives the same weights on
//! every engine and device; the variable's dtype is decided afterwards by the resolver.
//! (The streams are not JAX's: the same seed gives different numbers than Keras, with the
//! same distribution.)

use crate::array::ArrayData;
use crate::error::{KilnError, Result};
use rand_chacha::ChaCha8Rng;
use rand_core::{RngCore, SeedableRng};

/// An initializer and its arguments (Keras's class names in `keras_name`).
#[derive(Clone, Debug, PartialEq)]
pub enum Initializer {
    /// `glorot_uniform`: U(-l, l), `l = sqrt(6 / (fan_in + fan_out))` (Keras's kernel default).
    GlorotUniform,
    /// `glorot_normal`: truncated normal, stddev `sqrt(2 / (fan_in + fan_out))`.
    GlorotNormal,
    /// `he_uniform`: U(-l, l), `l = sqrt(6 / fan_in)`.
    HeUniform,
    /// `he_normal`: truncated normal, stddev `sqrt(2 / fan_in)`.
    HeNormal,
    /// `lecun_uniform`: U(-l, l), `l = sqrt(3 / fan_in)`.
    LecunUniform,
    /// `lecun_normal`: truncated normal, stddev `sqrt(1 / fan_in)`.
    LecunNormal,
    /// `random_normal` (Keras defaults: mean 0, stddev 0.05).
    RandomNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation.
        stddev: f64,
    },
    /// `random_uniform` (Keras defaults: -0.05, 0.05).
    RandomUniform {
        /// Lower bound.
        minval: f64,
        /// Upper bound.
        maxval: f64,
    },
    /// `truncated_normal`: normal redrawn beyond two standard deviations (Keras defaults:
    /// mean 0, stddev 0.05).
    TruncatedNormal {
        /// Mean.
        mean: f64,
        /// Standard deviation before truncation.
        stddev: f64,
    },
    /// `zeros` (Keras's bias default).
    Zeros,
    /// `ones`.
    Ones,
    /// `constant`.
    Constant(f64),
    /// `orthogonal` (Keras default gain 1): an orthogonal matrix from the QR decomposition of
    /// a normal one, sign-corrected (as Keras does).
    Orthogonal {
        /// Multiplier.
        gain: f64,
    },
}

/// Keras's `scale / fan` with its truncation correction: the stddev of the untruncated
/// normal whose 2-sigma truncation has the wanted variance.
const TRUNC_STD: f64 = 0.879_625_661_034_239_8;

impl Initializer {
    /// By Keras name (`"glorot_uniform"`, `"he_normal"`, `"zeros"`...), with Keras's defaults.
    pub fn get(name: &str) -> Result<Initializer> {
        Ok(match name {
            "glorot_uniform" | "GlorotUniform" => Initializer::GlorotUniform,
            "glorot_normal" | "GlorotNormal" => Initializer::GlorotNormal,
            "he_uniform" | "HeUniform" => Initializer::HeUniform,
            "he_normal" | "HeNormal" => Initializer::HeNormal,
            "lecun_uniform" | "LecunUniform" => Initializer::LecunUniform,
            "lecun_normal" | "LecunNormal" => Initializer::LecunNormal,
            "random_normal" | "RandomNormal" => Initializer::RandomNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "random_uniform" | "RandomUniform" => Initializer::RandomUniform {
                minval: -0.05,
                maxval: 0.05,
            },
            "truncated_normal" | "TruncatedNormal" => Initializer::TruncatedNormal {
                mean: 0.0,
                stddev: 0.05,
            },
            "zeros" | "Zeros" => Initializer::Zeros,
            "ones" | "Ones" => Initializer::Ones,
            "constant" | "Constant" => Initializer::Constant(0.0),
            "orthogonal" | "Orthogonal" => Initializer::Orthogonal { gain: 1.0 },
            other => {
                return Err(KilnError::invalid(
                    "initializers.get",
                    format!("unknown initializer {other:?}; use one of glorot_uniform, glorot_normal, he_uniform, he_normal, lecun_uniform, lecun_normal, random_normal, random_uniform, truncated_normal, zeros, ones, constant, orthogonal"),
                ))
            }
        })
    }

    /// Keras's class name (for `get_config` and `.keras` files).
    pub fn keras_name(&self) -> &'static str {
        match self {
            Initializer::GlorotUniform => "GlorotUniform",
            Initializer::GlorotNormal => "GlorotNormal",
            Initializer::HeUniform => "HeUniform",
            Initializer::HeNormal => "HeNormal",
            Initializer::LecunUniform => "LecunUniform",
            Initializer::LecunNormal => "LecunNormal",
            Initializer::RandomNormal { .. } => "RandomNormal",
            Initializer::RandomUniform { .. } => "RandomUniform",
            Initializer::TruncatedNormal { .. } => "TruncatedNormal",
            Initializer::Zeros => "Zeros",
            Initializer::Ones => "Ones",
            Initializer::Constant(_) => "Constant",
            Initializer::Orthogonal { .. } => "Orthogonal",
        }
    }

    /// Values for a variable of `shape` from `seed`, as float64 host data.
    pub fn sample(&self, shape: &[usize], seed: u64) -> Result<ArrayData> {
        let n = crate::array::checked_numel(shape, "initializer")?;
        crate::hostmem::check_output("initializer", shape, crate::DType::Float64)?;
        let (fan_in, fan_out) = fans(shape);
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let uniform = |rng: &mut ChaCha8Rng, l: f64| -> Vec<f64> {
            (0..n).map(|_| l * (2.0 * unit(rng) - 1.0)).collect()
        };
        let trunc =
            |rng: &mut ChaCha8Rng, m: f64, s: f64| (0..n).map(|_| m + s * truncated(rng)).collect();
        let v: Vec<f64> = match self {
            Initializer::GlorotUniform => uniform(&mut rng, (6.0 / (fan_in + fan_out)).sqrt()),
            Initializer::HeUniform => uniform(&mut rng, (6.0 / fan_in).sqrt()),
            Initializer::LecunUniform => uniform(&mut rng, (3.0 / fan_in).sqrt()),
            Initializer::GlorotNormal => {
                trunc(&mut rng, 0.0, (2.0 / (fan_in + fan_out)).sqrt() / TRUNC_STD)
            }
            Initializer::HeNormal => trunc(&mut rng, 0.0, (2.0 / fan_in).sqrt() / TRUNC_STD),
            Initializer::LecunNormal => trunc(&mut rng, 0.0, (1.0 / fan_in).sqrt() / TRUNC_STD),
            Initializer::RandomNormal { mean, stddev } => {
                (0..n).map(|_| mean + stddev * normal(&mut rng)).collect()
            }
            Initializer::RandomUniform { minval, maxval } => {
                if minval.partial_cmp(maxval) != Some(std::cmp::Ordering::Less) {
                    return Err(KilnError::invalid(
                        "RandomUniform",
                        format!("needs minval < maxval, got {minval} and {maxval}"),
                    ));
                }
                (0..n)
                    .map(|_| minval + (maxval - minval) * unit(&mut rng))
                    .collect()
            }
            Initializer::TruncatedNormal { mean, stddev } => trunc(&mut rng, *mean, *stddev),
            Initializer::Zeros => vec![0.0; n],
            Initializer::Ones => vec![1.0; n],
            Initializer::Constant(c) => vec![*c; n],
            Initializer::Orthogonal { gain } => orthogonal(shape, *gain, &mut rng)?,
        };
        ArrayData::from_shape_vec(shape, v)
    }
}

/// Keras's `compute_fans`: the last axis is fan_out, the one before fan_in, both times the
/// receptive field (the product of the others); 1-d shapes use their length for both.
fn fans(shape: &[usize]) -> (f64, f64) {
    let (i, o) = match shape.len() {
        0 => (1, 1),
        1 => (shape[0], shape[0]),
        2 => (shape[0], shape[1]),
        n => {
            let r: usize = shape[..n - 2].iter().product();
            (shape[n - 2] * r, shape[n - 1] * r)
        }
    };
    ((i.max(1)) as f64, (o.max(1)) as f64)
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let u1 = 1.0 - unit(rng);
    let u2 = unit(rng);
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A standard normal redrawn until within two standard deviations.
fn truncated(rng: &mut ChaCha8Rng) -> f64 {
    loop {
        let z = normal(rng);
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

/// Keras's orthogonal initializer: QR of a normal `[rows, cols]` matrix (the larger side
/// first), Q's columns sign-corrected by R's diagonal, transposed back where needed.
fn orthogonal(shape: &[usize], gain: f64, rng: &mut ChaCha8Rng) -> Result<Vec<f64>> {
    if shape.len() < 2 {
        return Err(KilnError::invalid(
            "Orthogonal",
            format!("needs a shape of at least 2 axes, got {shape:?}"),
        ));
    }
    let cols = shape[shape.len() - 1];
    let rows: usize = shape[..shape.len() - 1].iter().product();
    let (r, c) = (rows.max(cols), rows.min(cols));
    // Columns of a normal r x c matrix, orthonormalised by modified Gram-Schmidt (Q of QR,
    // with R's diagonal positive: the sign correction Keras applies).
    let mut q: Vec<Vec<f64>> = (0..c)
        .map(|_| (0..r).map(|_| normal(rng)).collect())
        .collect();
    for j in 0..c {
        for k in 0..j {
            let (done, rest) = q.split_at_mut(j);
            let (qk, qj) = (&done[k], &mut rest[0]);
            let d: f64 = qj.iter().zip(qk).map(|(a, b)| a * b).sum();
            for (a, b) in qj.iter_mut().zip(qk) {
                *a -= d * b;
            }
        }
        let norm = q[j].iter().map(|v| v * v).sum::<f64>().sqrt();
        if norm == 0.0 {
            return Err(KilnError::invalid(
                "Orthogonal",
                "degenerate draw; use another seed",
            ));
        }
        for v in &mut q[j] {
            *v /= norm;
        }
    }
    // Q is r x c (column j = q[j]); the result is rows x cols, Q or Q^T.
    let mut out = vec![0.0; rows * cols];
    for a in 0..rows {
        for b in 0..cols {
            out[a * cols + b] = gain * if rows >= cols { q[b][a] } else { q[a][b] };
        }
    }
    Ok(out)
}
