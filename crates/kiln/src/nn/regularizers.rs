//! Weight penalties added to the loss (Keras's `L1`, `L2`, `L1L2`).

use crate::error::Result;
use crate::ops;
use crate::tensor::Tensor;
use serde_json::json;

/// `l1 * sum(|w|) + l2 * sum(w^2)`.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum Regularizer {
    /// Keras's default `l1 = 0.01`.
    L1(f64),
    /// Keras's default `l2 = 0.01`.
    L2(f64),
    /// Both (Keras's defaults: 0 and 0).
    L1L2 {
        /// The L1 factor.
        l1: f64,
        /// The L2 factor.
        l2: f64,
    },
}

impl Regularizer {
    /// `L1(0.01)`, Keras's default.
    pub fn l1() -> Regularizer {
        Regularizer::L1(0.01)
    }
    /// `L2(0.01)`, Keras's default.
    pub fn l2() -> Regularizer {
        Regularizer::L2(0.01)
    }

    /// The penalty of `w`, a scalar of `w`'s dtype.
    pub fn penalty(&self, w: &Tensor) -> Result<Tensor> {
        let (l1, l2) = match *self {
            Regularizer::L1(a) => (a, 0.0),
            Regularizer::L2(b) => (0.0, b),
            Regularizer::L1L2 { l1, l2 } => (l1, l2),
        };
        let mut p = ops::zeros_like(&ops::sum(w, None, false)?, None)?;
        if l1 != 0.0 {
            p = ops::add(
                &p,
                &ops::multiply(&ops::sum(&ops::abs(w)?, None, false)?, l1)?,
            )?;
        }
        if l2 != 0.0 {
            p = ops::add(
                &p,
                &ops::multiply(&ops::sum(&ops::square(w)?, None, false)?, l2)?,
            )?;
        }
        Ok(p)
    }

    /// Keras's config.
    pub fn config(&self) -> serde_json::Value {
        match *self {
            Regularizer::L1(a) => json!({"class_name": "L1", "config": {"l1": a}}),
            Regularizer::L2(b) => json!({"class_name": "L2", "config": {"l2": b}}),
            Regularizer::L1L2 { l1, l2 } => {
                json!({"class_name": "L1L2", "config": {"l1": l1, "l2": l2}})
            }
        }
    }
}
