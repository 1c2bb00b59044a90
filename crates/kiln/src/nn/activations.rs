//! Keras's activations by name (`keras.activations.get`).

use crate::error::{KilnError, Result};
use crate::ops;
use crate::tensor::Tensor;

/// An activation function, by its Keras name.
#[derive(Copy, Clone, Debug, PartialEq)]
pub enum ActivationFn {
    /// `linear` (Keras's default for Dense: `None`).
    Linear,
    /// `relu`.
    Relu,
    /// `relu6`.
    Relu6,
    /// `sigmoid`.
    Sigmoid,
    /// `tanh`.
    Tanh,
    /// `softmax` on the last axis.
    Softmax,
    /// `log_softmax` on the last axis.
    LogSoftmax,
    /// `gelu` (approximate, Keras's default).
    Gelu,
    /// `silu` (also `swish`).
    Silu,
    /// `softplus`.
    Softplus,
    /// `elu` (alpha 1).
    Elu,
    /// `selu`.
    Selu,
    /// `leaky_relu` (negative slope 0.2).
    LeakyRelu,
    /// `exponential`.
    Exponential,
}

impl ActivationFn {
    /// By Keras name; `None`/`"linear"` is the identity.
    pub fn get(name: &str) -> Result<ActivationFn> {
        Ok(match name {
            "linear" | "" | "None" => ActivationFn::Linear,
            "relu" => ActivationFn::Relu,
            "relu6" => ActivationFn::Relu6,
            "sigmoid" => ActivationFn::Sigmoid,
            "tanh" => ActivationFn::Tanh,
            "softmax" => ActivationFn::Softmax,
            "log_softmax" => ActivationFn::LogSoftmax,
            "gelu" => ActivationFn::Gelu,
            "silu" | "swish" => ActivationFn::Silu,
            "softplus" => ActivationFn::Softplus,
            "elu" => ActivationFn::Elu,
            "selu" => ActivationFn::Selu,
            "leaky_relu" => ActivationFn::LeakyRelu,
            "exponential" => ActivationFn::Exponential,
            other => {
                return Err(KilnError::invalid(
                    "activations.get",
                    format!("unknown activation {other:?}; use linear, relu, relu6, sigmoid, tanh, softmax, log_softmax, gelu, silu, softplus, elu, selu, leaky_relu or exponential"),
                ))
            }
        })
    }

    /// Keras's name.
    pub fn name(self) -> &'static str {
        match self {
            ActivationFn::Linear => "linear",
            ActivationFn::Relu => "relu",
            ActivationFn::Relu6 => "relu6",
            ActivationFn::Sigmoid => "sigmoid",
            ActivationFn::Tanh => "tanh",
            ActivationFn::Softmax => "softmax",
            ActivationFn::LogSoftmax => "log_softmax",
            ActivationFn::Gelu => "gelu",
            ActivationFn::Silu => "silu",
            ActivationFn::Softplus => "softplus",
            ActivationFn::Elu => "elu",
            ActivationFn::Selu => "selu",
            ActivationFn::LeakyRelu => "leaky_relu",
            ActivationFn::Exponential => "exponential",
        }
    }

    /// Applies it.
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            ActivationFn::Linear => Ok(x.clone()),
            ActivationFn::Relu => ops::relu(x),
            ActivationFn::Relu6 => ops::relu6(x),
            ActivationFn::Sigmoid => ops::sigmoid(x),
            ActivationFn::Tanh => ops::tanh(x),
            ActivationFn::Softmax => ops::softmax(x, -1),
            ActivationFn::LogSoftmax => ops::log_softmax(x, -1),
            ActivationFn::Gelu => ops::gelu(x, true),
            ActivationFn::Silu => ops::silu(x),
            ActivationFn::Softplus => ops::softplus(x),
            ActivationFn::Elu => ops::elu(x, 1.0),
            ActivationFn::Selu => {
                // Keras's constants.
                let (alpha, scale) = (1.673_263_242_354_377_3, 1.050_700_987_355_480_5);
                ops::multiply(&ops::elu(x, alpha)?, scale)
            }
            ActivationFn::LeakyRelu => ops::leaky_relu(x, 0.2),
            ActivationFn::Exponential => ops::exp(x),
        }
    }
}
