//! Every op by name, with Keras's default arguments: what the conformance tests, the
//! device matrix and the CLI iterate over.

use super::*;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// Unary ops (one tensor in), by their Keras names.
pub const UNARY: &[&str] = &[
    "negative",
    "abs",
    "sign",
    "sqrt",
    "rsqrt",
    "square",
    "exp",
    "expm1",
    "log",
    "log1p",
    "log2",
    "log10",
    "sin",
    "cos",
    "tan",
    "arcsin",
    "arccos",
    "arctan",
    "sinh",
    "cosh",
    "tanh",
    "erf",
    "floor",
    "ceil",
    "round",
    "reciprocal",
    "isnan",
    "isinf",
    "isfinite",
    "logical_not",
    "real",
    "imag",
    "conj",
    "relu",
    "relu6",
    "sigmoid",
    "softmax",
    "log_softmax",
    "gelu",
    "silu",
    "softplus",
    "elu",
    "leaky_relu",
    "sum",
    "mean",
    "prod",
    "max",
    "min",
    "argmax",
    "argmin",
    "all",
    "any",
    "std",
    "var",
    "cumsum",
    "cumprod",
    "logsumexp",
    "count_nonzero",
    "transpose",
    "flip",
    "sort",
    "argsort",
    "triu",
    "tril",
    "diag",
    "trace",
    "zeros_like",
    "ones_like",
    "nonzero",
];

/// Binary ops (two operands in), by their Keras names.
pub const BINARY: &[&str] = &[
    "add",
    "subtract",
    "multiply",
    "divide",
    "true_divide",
    "floor_divide",
    "mod",
    "power",
    "maximum",
    "minimum",
    "arctan2",
    "hypot",
    "equal",
    "not_equal",
    "less",
    "less_equal",
    "greater",
    "greater_equal",
    "logical_and",
    "logical_or",
    "logical_xor",
    "matmul",
    "dot",
];

/// Calls a unary op by name with Keras's default arguments (reductions over all axes,
/// `softmax` on the last axis, `gelu` approximate, `elu` alpha 1, `leaky_relu` slope 0.2).
#[track_caller]
pub fn call_unary(name: &str, x: &Tensor) -> Result<Tensor> {
    Ok(match name {
        "negative" => negative(x)?,
        "abs" => abs(x)?,
        "sign" => sign(x)?,
        "sqrt" => sqrt(x)?,
        "rsqrt" => rsqrt(x)?,
        "square" => square(x)?,
        "exp" => exp(x)?,
        "expm1" => expm1(x)?,
        "log" => log(x)?,
        "log1p" => log1p(x)?,
        "log2" => log2(x)?,
        "log10" => log10(x)?,
        "sin" => sin(x)?,
        "cos" => cos(x)?,
        "tan" => tan(x)?,
        "arcsin" => arcsin(x)?,
        "arccos" => arccos(x)?,
        "arctan" => arctan(x)?,
        "sinh" => sinh(x)?,
        "cosh" => cosh(x)?,
        "tanh" => tanh(x)?,
        "erf" => erf(x)?,
        "floor" => floor(x)?,
        "ceil" => ceil(x)?,
        "round" => round(x)?,
        "reciprocal" => reciprocal(x)?,
        "isnan" => isnan(x)?,
        "isinf" => isinf(x)?,
        "isfinite" => isfinite(x)?,
        "logical_not" => logical_not(x)?,
        "real" => real(x)?,
        "imag" => imag(x)?,
        "conj" => conj(x)?,
        "relu" => relu(x)?,
        "relu6" => relu6(x)?,
        "sigmoid" => sigmoid(x)?,
        "softmax" => softmax(x, -1)?,
        "log_softmax" => log_softmax(x, -1)?,
        "gelu" => gelu(x, true)?,
        "silu" => silu(x)?,
        "softplus" => softplus(x)?,
        "elu" => elu(x, 1.0)?,
        "leaky_relu" => leaky_relu(x, 0.2)?,
        "sum" => sum(x, None, false)?,
        "mean" => mean(x, None, false)?,
        "prod" => prod(x, None, false)?,
        "max" => max(x, None, false)?,
        "min" => min(x, None, false)?,
        "argmax" => argmax(x, None, false)?,
        "argmin" => argmin(x, None, false)?,
        "all" => all(x, None, false)?,
        "any" => any(x, None, false)?,
        "std" => std(x, None, false)?,
        "var" => var(x, None, false)?,
        "cumsum" => cumsum(x, None)?,
        "cumprod" => cumprod(x, None)?,
        "logsumexp" => logsumexp(x, None, false)?,
        "count_nonzero" => count_nonzero(x, None)?,
        "transpose" => transpose(x, None)?,
        "flip" => flip(x, None)?,
        "sort" => sort(x, -1)?,
        "argsort" => argsort(x, -1)?,
        "triu" => triu(x, 0)?,
        "tril" => tril(x, 0)?,
        "diag" => diag(x, 0)?,
        "trace" => trace(x, 0)?,
        "zeros_like" => zeros_like(x, None)?,
        "ones_like" => ones_like(x, None)?,
        // Keras returns one index tensor per axis; stacked here into [ndim, count].
        "nonzero" => {
            let idx = nonzero(x)?;
            stack(&idx.iter().collect::<Vec<_>>(), 0)?
        }
        other => {
            return Err(KilnError::invalid(
                "call_unary",
                format!("no unary op named {other:?}"),
            ))
        }
    })
}

/// Calls a binary op by name.
#[track_caller]
pub fn call_binary(name: &str, a: Operand<'_>, b: Operand<'_>) -> Result<Tensor> {
    Ok(match name {
        "add" => add(a, b)?,
        "subtract" => subtract(a, b)?,
        "multiply" => multiply(a, b)?,
        "divide" => divide(a, b)?,
        "true_divide" => true_divide(a, b)?,
        "floor_divide" => floor_divide(a, b)?,
        "mod" => r#mod(a, b)?,
        "power" => power(a, b)?,
        "maximum" => maximum(a, b)?,
        "minimum" => minimum(a, b)?,
        "arctan2" => arctan2(a, b)?,
        "hypot" => hypot(a, b)?,
        "equal" => equal(a, b)?,
        "not_equal" => not_equal(a, b)?,
        "less" => less(a, b)?,
        "less_equal" => less_equal(a, b)?,
        "greater" => greater(a, b)?,
        "greater_equal" => greater_equal(a, b)?,
        "logical_and" => logical_and(a, b)?,
        "logical_or" => logical_or(a, b)?,
        "logical_xor" => logical_xor(a, b)?,
        "matmul" => match (&a, &b) {
            (Operand::Tensor(x), Operand::Tensor(y)) => matmul(x, y)?,
            _ => {
                let cfg = super::cfg_for(&[&a, &b])?;
                rules::matmul(a.like(), b.like(), &cfg)?;
                return Err(KilnError::invalid("matmul", "operands must be tensors"));
            }
        },
        "dot" => dot(a, b)?,
        other => {
            return Err(KilnError::invalid(
                "call_binary",
                format!("no binary op named {other:?}"),
            ))
        }
    })
}
