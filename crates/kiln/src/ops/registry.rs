//! Every op by name, with Keras's default arguments: what the conformance tests, the
//! device matrix, the gradient checks and the CLI iterate over. Each op is named once, in the
//! table below, with whether it has a gradient; the lists, the by-name dispatch and
//! [`differentiable`] are generated from it.

use super::*;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

macro_rules! registry {
    (
        unary($x:ident) { $($un:literal $ud:ident => $uc:expr;)* }
        binary($a:ident, $b:ident) { $($bn:literal $bd:ident => $bc:expr;)* }
    ) => {
        /// Unary ops (one tensor in), by their Keras names.
        pub const UNARY: &[&str] = &[$($un),*];
        /// Binary ops (two operands in), by their Keras names.
        pub const BINARY: &[&str] = &[$($bn),*];

        /// Whether the op has a gradient (`false` for integer, bool and piecewise-constant
        /// results); `None` for a name the registry does not have.
        pub fn differentiable(name: &str) -> Option<bool> {
            match name {
                $($un => Some(registry!(@d $ud)),)*
                $($bn => Some(registry!(@d $bd)),)*
                _ => None,
            }
        }

        /// Calls a unary op by name with Keras's default arguments (reductions over all axes,
        /// `softmax` on the last axis, `gelu` approximate, `elu` alpha 1, `leaky_relu` slope 0.2).
        #[track_caller]
        pub fn call_unary(name: &str, $x: &Tensor) -> Result<Tensor> {
            match name {
                $($un => $uc,)*
                other => Err(KilnError::invalid(
                    "call_unary",
                    format!("no unary op named {other:?}"),
                )),
            }
        }

        /// Calls a binary op by name.
        #[track_caller]
        pub fn call_binary(name: &str, $a: Operand<'_>, $b: Operand<'_>) -> Result<Tensor> {
            match name {
                $($bn => $bc,)*
                other => Err(KilnError::invalid(
                    "call_binary",
                    format!("no binary op named {other:?}"),
                )),
            }
        }
    };
    (@d diff) => { true };
    (@d nodiff) => { false };
}

registry! {
    unary(x) {
        "negative" diff => negative(x);
        "abs" diff => abs(x);
        "sign" nodiff => sign(x);
        "sqrt" diff => sqrt(x);
        "rsqrt" diff => rsqrt(x);
        "square" diff => square(x);
        "exp" diff => exp(x);
        "expm1" diff => expm1(x);
        "log" diff => log(x);
        "log1p" diff => log1p(x);
        "log2" diff => log2(x);
        "log10" diff => log10(x);
        "sin" diff => sin(x);
        "cos" diff => cos(x);
        "tan" diff => tan(x);
        "arcsin" diff => arcsin(x);
        "arccos" diff => arccos(x);
        "arctan" diff => arctan(x);
        "sinh" diff => sinh(x);
        "cosh" diff => cosh(x);
        "tanh" diff => tanh(x);
        "erf" diff => erf(x);
        "floor" nodiff => floor(x);
        "ceil" nodiff => ceil(x);
        "round" nodiff => round(x);
        "reciprocal" diff => reciprocal(x);
        "isnan" nodiff => isnan(x);
        "isinf" nodiff => isinf(x);
        "isfinite" nodiff => isfinite(x);
        "logical_not" nodiff => logical_not(x);
        "real" nodiff => real(x);
        "imag" nodiff => imag(x);
        "conj" nodiff => conj(x);
        "relu" diff => relu(x);
        "relu6" diff => relu6(x);
        "sigmoid" diff => sigmoid(x);
        "softmax" diff => softmax(x, -1);
        "log_softmax" diff => log_softmax(x, -1);
        "gelu" diff => gelu(x, true);
        "silu" diff => silu(x);
        "softplus" diff => softplus(x);
        "elu" diff => elu(x, 1.0);
        "leaky_relu" diff => leaky_relu(x, 0.2);
        "sum" diff => sum(x, None, false);
        "mean" diff => mean(x, None, false);
        "prod" diff => prod(x, None, false);
        "max" diff => max(x, None, false);
        "min" diff => min(x, None, false);
        "argmax" nodiff => argmax(x, None, false);
        "argmin" nodiff => argmin(x, None, false);
        "all" nodiff => all(x, None, false);
        "any" nodiff => any(x, None, false);
        "std" diff => std(x, None, false);
        "var" diff => var(x, None, false);
        "cumsum" diff => cumsum(x, None);
        "cumprod" diff => cumprod(x, None);
        "logsumexp" diff => logsumexp(x, None, false);
        "count_nonzero" nodiff => count_nonzero(x, None);
        "transpose" diff => transpose(x, None);
        "flip" diff => flip(x, None);
        "sort" diff => sort(x, -1);
        "argsort" nodiff => argsort(x, -1);
        "triu" diff => triu(x, 0);
        "tril" diff => tril(x, 0);
        "diag" diff => diag(x, 0);
        "trace" diff => trace(x, 0);
        "zeros_like" diff => zeros_like(x, None);
        "ones_like" diff => ones_like(x, None);
        // Keras returns one index tensor per axis; stacked here into [ndim, count].
        "nonzero" nodiff => {
            let idx = nonzero(x)?;
            stack(&idx.iter().collect::<Vec<_>>(), 0)
        };
    }
    binary(a, b) {
        "add" diff => add(a, b);
        "subtract" diff => subtract(a, b);
        "multiply" diff => multiply(a, b);
        "divide" diff => divide(a, b);
        "true_divide" diff => true_divide(a, b);
        "floor_divide" nodiff => floor_divide(a, b);
        "mod" diff => r#mod(a, b);
        "power" diff => power(a, b);
        "maximum" diff => maximum(a, b);
        "minimum" diff => minimum(a, b);
        "arctan2" diff => arctan2(a, b);
        "hypot" diff => hypot(a, b);
        "equal" nodiff => equal(a, b);
        "not_equal" nodiff => not_equal(a, b);
        "less" nodiff => less(a, b);
        "less_equal" nodiff => less_equal(a, b);
        "greater" nodiff => greater(a, b);
        "greater_equal" nodiff => greater_equal(a, b);
        "logical_and" nodiff => logical_and(a, b);
        "logical_or" nodiff => logical_or(a, b);
        "logical_xor" nodiff => logical_xor(a, b);
        "matmul" diff => match (&a, &b) {
            (Operand::Tensor(x), Operand::Tensor(y)) => matmul(x, y),
            _ => {
                let cfg = super::cfg_for(&[&a, &b])?;
                rules::matmul(a.like(), b.like(), &cfg)?;
                Err(KilnError::invalid("matmul", "operands must be tensors"))
            }
        };
        "dot" diff => dot(a, b);
    }
}
