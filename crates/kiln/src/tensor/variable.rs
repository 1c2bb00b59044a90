//! Variables: named, assignable tensors whose dtype is fixed when they are created (the
//! `Site::Variable` decision of the precision resolver).

use super::Tensor;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::precision::{config, resolve, Request, Site};
use std::panic::Location;

/// A named tensor that can be assigned to, with a dtype decided once by the resolver.
///
/// The dtype defaults to floatx for float initial values (Keras's variables follow floatx)
/// and to the initial value's dtype otherwise; an explicit dtype is honoured or refused.
///
/// ```
/// use kiln::{ops, tensor::Variable, DType, Device};
/// let init = ops::zeros(&[2], Some(DType::Float16), None).unwrap();
/// let mut v = Variable::new("w", &init, None).unwrap();
/// assert_eq!(v.dtype(), DType::Float32);              // floatx
/// v.assign(&ops::ones(&[2], Some(DType::Float64), None).unwrap()).unwrap();
/// assert_eq!(v.value().to_vec::<f32>().unwrap(), vec![1.0, 1.0]);
/// assert!(v.assign(&ops::ones(&[3], None, None).unwrap()).is_err());
/// ```
#[derive(Clone, Debug)]
pub struct Variable {
    name: String,
    value: Tensor,
    trainable: bool,
}

impl Variable {
    /// Creates a variable on the initial value's device.
    #[track_caller]
    pub fn new(name: &str, initial: &Tensor, dtype: Option<DType>) -> Result<Variable> {
        let cfg = config::current()?;
        let default = if initial.dtype().is_float() {
            cfg.floatx
        } else {
            initial.dtype()
        };
        let d = resolve(
            &Request {
                op: "Variable::new",
                site: Site::Variable,
                dtype: dtype.unwrap_or(default),
                explicit: dtype.is_some(),
                device: initial.device(),
                engine: initial.backend_kind(),
                origin: Location::caller(),
            },
            &cfg,
        )?;
        d.announce(None);
        let value =
            crate::ops::to_compute(initial, d.dtype, crate::ops::Place::of(&d), "Variable::new")?;
        Ok(Variable {
            name: name.to_string(),
            value: crate::autodiff::stop_gradient(&value),
            trainable: true,
        })
    }

    /// A variable from host values in a dtype policy's variable dtype on `device`: an
    /// implicit request (the policy chose it, not the caller), asked under x64 semantics
    /// where that dtype is 64-bit, so that a `float64` policy keeps float64 where the device
    /// has it and is otherwise adapted (one warning), refused or kept on the cpu, as the
    /// precision policy says. One decision: the values are rounded once, on the host.
    #[track_caller]
    pub(crate) fn for_policy(
        name: &str,
        host: &crate::array::ArrayData,
        dtype: DType,
        device: crate::Device,
    ) -> Result<Variable> {
        let mut cfg = config::current()?;
        cfg.x64 |= dtype.is_64bit();
        let d = resolve(
            &Request {
                op: "Variable::new",
                site: Site::Variable,
                dtype,
                explicit: false,
                device,
                engine: crate::tensor::engine_kind_for(device, &cfg),
                origin: Location::caller(),
            },
            &cfg,
        )?;
        d.announce(None);
        let data = if host.dtype() == d.dtype {
            host.clone()
        } else {
            crate::precision::report::convert_with_report(host, d.dtype).0
        };
        Ok(Variable {
            name: name.to_string(),
            value: Tensor::upload_on(data, d.device, d.engine)?,
            trainable: true,
        })
    }

    /// Whether optimizers update it (Keras's `trainable`).
    pub fn trainable(&self) -> bool {
        self.trainable
    }
    /// Sets whether optimizers update it.
    pub fn set_trainable(&mut self, on: bool) {
        self.trainable = on;
    }

    /// Replaces the value with a tensor of the same dtype, shape and place, unchecked: for
    /// the training step, which swaps in the watched value and then the updated one.
    pub(crate) fn set_raw(&mut self, value: Tensor) {
        self.value = value;
    }

    /// Replaces the value, converting it to the variable's dtype and device. The shape must
    /// match. Integer values the variable's dtype cannot hold are an error, never wrapped.
    #[track_caller]
    pub fn assign(&mut self, value: &Tensor) -> Result<()> {
        if value.shape() != self.value.shape() {
            return Err(KilnError::shape(
                "Variable::assign",
                self.value.shape(),
                value.shape(),
                format!(
                    "variable {:?} keeps its shape; reshape the value first",
                    self.name
                ),
            ));
        }
        let v = crate::ops::to_compute(
            value,
            self.value.dtype(),
            crate::ops::place_of(&self.value),
            "Variable::assign",
        )?;
        self.value = crate::autodiff::stop_gradient(&v);
        Ok(())
    }

    /// The current value.
    pub fn value(&self) -> &Tensor {
        &self.value
    }
    /// The name.
    pub fn name(&self) -> &str {
        &self.name
    }
    /// The dtype (fixed at creation).
    pub fn dtype(&self) -> DType {
        self.value.dtype()
    }
    /// The shape.
    pub fn shape(&self) -> &[usize] {
        self.value.shape()
    }
}
