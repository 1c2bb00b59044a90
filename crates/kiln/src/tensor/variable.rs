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
            value,
        })
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
        self.value = crate::ops::to_compute(
            value,
            self.value.dtype(),
            crate::ops::place_of(&self.value),
            "Variable::assign",
        )?;
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
