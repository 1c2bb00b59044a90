//! Output dtypes and shapes without computing (Keras's `compute_output_spec`, JAX's
//! `eval_shape`): the op's own code runs on meta tensors (`backend::meta`), which carry a
//! dtype and a shape and no values.

use crate::backend::meta::{spec_storage, MetaBackend};
use crate::device::Device;
use crate::dtype::DType;
use crate::error::Result;
use crate::tensor::Tensor;
use std::sync::Arc;

/// A tensor's dtype, shape and device, without values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorSpec {
    /// The dtype.
    pub dtype: DType,
    /// The shape.
    pub shape: Vec<usize>,
    /// The device.
    pub device: Device,
}

impl TensorSpec {
    /// A spec on the configured device.
    pub fn new(shape: &[usize], dtype: DType) -> Result<TensorSpec> {
        Ok(TensorSpec {
            dtype,
            shape: shape.to_vec(),
            device: crate::precision::config::current()?.device,
        })
    }
    /// The spec of a tensor.
    pub fn of(t: &Tensor) -> TensorSpec {
        TensorSpec {
            dtype: t.dtype(),
            shape: t.shape().to_vec(),
            device: t.device(),
        }
    }
}

/// The spec of what `f` returns for inputs of `inputs`' specs: the dtype rules, the
/// resolver's decisions for those devices, broadcasting and shape checks all run as they
/// would, but no value is computed or allocated. Ops that need values to know their output
/// (`nonzero`, `take` with meta indices) return an error saying so.
///
/// ```
/// use kiln::{ops, ops::TensorSpec, DType, Device};
/// let a = TensorSpec::new(&[32, 1, 5], DType::Int8).unwrap();
/// let b = TensorSpec::new(&[4, 5], DType::Float16).unwrap();
/// let s = ops::output_spec(|x| ops::matmul(&ops::add(&x[0], &x[1])?, &ops::transpose(&x[1], None)?), &[a, b]).unwrap();
/// assert_eq!((s.dtype, s.shape), (DType::Float16, vec![32, 4, 4]));
/// ```
pub fn output_spec(
    f: impl FnOnce(&[Tensor]) -> Result<Tensor>,
    inputs: &[TensorSpec],
) -> Result<TensorSpec> {
    let ts = inputs
        .iter()
        .map(|s| {
            let real = crate::tensor::engine_for(s.device)?;
            let backend: Arc<dyn crate::backend::Backend> = Arc::new(MetaBackend::new(real));
            Tensor::from_storage(spec_storage(s.dtype, &s.shape), backend, s.device)
        })
        .collect::<Result<Vec<_>>>()?;
    let _quiet = crate::autodiff::no_grad();
    f(&ts).map(|t| TensorSpec::of(&t))
}
