//! Keras's dtype policies: the dtype a layer's variables are stored in and the dtype it
//! computes in (`mixed_*`: float32 variables, 16-bit compute).

use crate::dtype::DType;
use crate::error::{KilnError, Result};

/// A layer's dtype policy (Keras's `DTypePolicy`).
///
/// ```
/// use kiln::{nn::DTypePolicy, DType};
/// let p = DTypePolicy::new("mixed_bfloat16").unwrap();
/// assert_eq!((p.variable_dtype(), p.compute_dtype()), (DType::Float32, DType::BFloat16));
/// assert!(DTypePolicy::new("float8").is_err());
/// ```
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct DTypePolicy {
    name: &'static str,
    variable: DType,
    compute: DType,
}

impl DTypePolicy {
    /// `float32`, `float64`, `float16`, `bfloat16`, `mixed_float16` or `mixed_bfloat16`.
    pub fn new(name: &str) -> Result<DTypePolicy> {
        let (name, variable, compute) = match name {
            "float32" => ("float32", DType::Float32, DType::Float32),
            "float64" => ("float64", DType::Float64, DType::Float64),
            "float16" => ("float16", DType::Float16, DType::Float16),
            "bfloat16" => ("bfloat16", DType::BFloat16, DType::BFloat16),
            "mixed_float16" => ("mixed_float16", DType::Float32, DType::Float16),
            "mixed_bfloat16" => ("mixed_bfloat16", DType::Float32, DType::BFloat16),
            other => {
                return Err(KilnError::invalid(
                    "DTypePolicy",
                    format!("{other:?} is not a dtype policy; use float32, float64, float16, bfloat16, mixed_float16 or mixed_bfloat16"),
                ))
            }
        };
        Ok(DTypePolicy {
            name,
            variable,
            compute,
        })
    }
    /// The policy of floatx (`float32` unless configured otherwise).
    pub fn default_policy() -> Result<DTypePolicy> {
        DTypePolicy::new(crate::precision::config::current()?.floatx.name())
    }
    /// Keras's name.
    pub fn name(&self) -> &'static str {
        self.name
    }
    /// The dtype variables are created in.
    pub fn variable_dtype(&self) -> DType {
        self.variable
    }
    /// The dtype layers compute in (float inputs are cast to it).
    pub fn compute_dtype(&self) -> DType {
        self.compute
    }
    /// Whether compute and variable dtypes differ.
    pub fn is_mixed(&self) -> bool {
        self.variable != self.compute
    }
}
