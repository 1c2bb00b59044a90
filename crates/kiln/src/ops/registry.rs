//! Every op by name, with Keras's default arguments: what the conformance tests, the
//! device matrix, the gradient checks and the CLI iterate over.
//!
//! Each op is named once. Ops that are one primitive behind a dtype rule are declared by the
//! family macros in [`elementwise`](super::elementwise) (`unary_ops!`, `binary_ops!`), which
//! also emit their rows here; the table below holds the rows of every other op, each with the
//! call and the Keras defaults it runs with. [`UNARY`], [`BINARY`], the by-name dispatch and
//! [`differentiable`] are generated from both, and a compile-time check refuses a name
//! registered twice.

use super::*;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// A unary registry row: Keras's name, whether it has a gradient, the call with Keras's
/// default arguments.
#[derive(Clone, Copy)]
pub(crate) struct UnaryEntry {
    name: &'static str,
    diff: bool,
    call: UnaryFn,
}

/// A unary op of the registry.
pub type UnaryFn = fn(&Tensor) -> Result<Tensor>;
/// A binary op of the registry.
pub type BinaryFn = for<'a, 'b> fn(Operand<'a>, Operand<'b>) -> Result<Tensor>;

/// A binary registry row.
#[derive(Clone, Copy)]
pub(crate) struct BinaryEntry {
    name: &'static str,
    diff: bool,
    call: BinaryFn,
}

impl UnaryEntry {
    pub(crate) const fn new(name: &'static str, diff: bool, call: UnaryFn) -> Self {
        UnaryEntry { name, diff, call }
    }
}

impl BinaryEntry {
    pub(crate) const fn new(name: &'static str, diff: bool, call: BinaryFn) -> Self {
        BinaryEntry { name, diff, call }
    }
}

/// `diff` / `nodiff` in a registry row.
macro_rules! diff_flag {
    (diff) => {
        true
    };
    (nodiff) => {
        false
    };
}
pub(crate) use diff_flag;

/// The Keras name of a Rust identifier (`r#mod` is `mod`).
pub(crate) const fn keras_name(ident: &'static str) -> &'static str {
    match ident.as_bytes() {
        [b'r', b'#', rest @ ..] => match std::str::from_utf8(rest) {
            Ok(s) => s,
            Err(_) => ident,
        },
        _ => ident,
    }
}

const fn str_eq(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Concatenates registry parts at compile time, in order; `N` must be their total length.
const fn concat<T: Copy, const N: usize>(parts: &[&[T]]) -> [T; N] {
    let mut out = [parts[0][0]; N];
    let (mut k, mut p) = (0, 0);
    while p < parts.len() {
        let mut i = 0;
        while i < parts[p].len() {
            out[k] = parts[p][i];
            k += 1;
            i += 1;
        }
        p += 1;
    }
    assert!(k == N, "registry: part lengths do not add up");
    out
}

macro_rules! registry {
    (
        unary($x:ident) { $($un:literal $ud:ident => $uc:expr;)* }
        binary($a:ident, $b:ident) { $($bn:literal $bd:ident => $bc:expr;)* }
    ) => {
        const TABLE_UNARY: &[UnaryEntry] = &[$(
            UnaryEntry::new($un, diff_flag!($ud), |$x| $uc),
        )*];
        const TABLE_BINARY: &[BinaryEntry] = &[$(
            BinaryEntry::new($bn, diff_flag!($bd), |$a, $b| $bc),
        )*];
    };
}

const N_UNARY: usize = elementwise::FAMILY_UNARY.len() + TABLE_UNARY.len();
const N_BINARY: usize = elementwise::FAMILY_BINARY.len() + TABLE_BINARY.len();
const UNARY_ROWS: [UnaryEntry; N_UNARY] = concat(&[elementwise::FAMILY_UNARY, TABLE_UNARY]);
const BINARY_ROWS: [BinaryEntry; N_BINARY] = concat(&[elementwise::FAMILY_BINARY, TABLE_BINARY]);

const fn unary_names() -> [&'static str; N_UNARY] {
    let mut out = [""; N_UNARY];
    let mut i = 0;
    while i < N_UNARY {
        out[i] = UNARY_ROWS[i].name;
        i += 1;
    }
    out
}

const fn binary_names() -> [&'static str; N_BINARY] {
    let mut out = [""; N_BINARY];
    let mut i = 0;
    while i < N_BINARY {
        out[i] = BINARY_ROWS[i].name;
        i += 1;
    }
    out
}

/// Unary ops (one tensor in), by their Keras names.
pub const UNARY: &[&str] = &unary_names();
/// Binary ops (two operands in), by their Keras names.
pub const BINARY: &[&str] = &binary_names();

// A name registered twice (by a family and by the table, say) fails the build.
const _: () = {
    let all: [&[&str]; 2] = [UNARY, BINARY];
    let mut p = 0;
    while p < 2 {
        let mut q = 0;
        while q < 2 {
            let (a, b) = (all[p], all[q]);
            let mut i = 0;
            while i < a.len() {
                let mut j = 0;
                while j < b.len() {
                    if (p != q || i != j) && str_eq(a[i], b[j]) {
                        panic!("ops::registry: an op name is registered twice");
                    }
                    j += 1;
                }
                i += 1;
            }
            q += 1;
        }
        p += 1;
    }
};

/// Whether the op has a gradient (`false` for integer, bool and piecewise-constant
/// results); `None` for a name the registry does not have.
pub fn differentiable(name: &str) -> Option<bool> {
    UNARY_ROWS
        .iter()
        .find(|e| e.name == name)
        .map(|e| e.diff)
        .or_else(|| BINARY_ROWS.iter().find(|e| e.name == name).map(|e| e.diff))
}

/// Calls a unary op by name with Keras's default arguments (reductions over all axes,
/// `softmax` on the last axis, `gelu` approximate, `elu` alpha 1, `leaky_relu` slope 0.2).
pub fn call_unary(name: &str, x: &Tensor) -> Result<Tensor> {
    unary_fn(name)?(x)
}

/// The unary op named `name`, looked up once (for a caller that calls it many times, such
/// as a benchmark loop; [`call_unary`] searches the table on every call).
///
/// ```
/// use kiln::{convert_to_tensor, ops, ArrayData, Device};
/// let relu = ops::registry::unary_fn("relu").unwrap();
/// let x = convert_to_tensor(&ArrayData::from(vec![-1.0f32, 2.0]), None, &Device::Cpu).unwrap();
/// assert_eq!(relu(&x).unwrap().to_vec::<f32>().unwrap(), vec![0.0, 2.0]);
/// assert!(ops::registry::unary_fn("no_such_op").is_err());
/// ```
pub fn unary_fn(name: &str) -> Result<UnaryFn> {
    match UNARY_ROWS.iter().find(|e| e.name == name) {
        Some(e) => Ok(e.call),
        None => Err(KilnError::invalid(
            "ops::registry",
            format!("no unary op named {name:?}"),
        )),
    }
}

/// The binary op named `name`, looked up once (see [`unary_fn`]).
pub fn binary_fn(name: &str) -> Result<BinaryFn> {
    match BINARY_ROWS.iter().find(|e| e.name == name) {
        Some(e) => Ok(e.call),
        None => Err(KilnError::invalid(
            "ops::registry",
            format!("no binary op named {name:?}"),
        )),
    }
}

/// Calls a binary op by name.
pub fn call_binary(name: &str, a: Operand<'_>, b: Operand<'_>) -> Result<Tensor> {
    binary_fn(name)?(a, b)
}

// The rows of the ops not declared by a family macro.
registry! {
    unary(x) {
        "rsqrt" diff => rsqrt(x);
        "square" diff => square(x);
        "reciprocal" diff => reciprocal(x);
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
        // Convolutions and pools on the input flattened to one 1-d channel: [1, n, 1].
        "max_pool" diff => {
            let x = reshape(x, &[1, -1, 1])?;
            max_pool(&x, &[2], None, conv::Padding::Same, conv::DataFormat::ChannelsLast)
        };
        "average_pool" diff => {
            let x = reshape(x, &[1, -1, 1])?;
            average_pool(&x, &[2], None, conv::Padding::Same, conv::DataFormat::ChannelsLast)
        };
        // Keras returns one index tensor per axis; stacked here into [ndim, count].
        "nonzero" nodiff => {
            let idx = nonzero(x)?;
            stack(&idx.iter().collect::<Vec<_>>(), 0)
        };
    }
    binary(a, b) {
        "matmul" diff => match (&a, &b) {
            (Operand::Tensor(x), Operand::Tensor(y)) => matmul(x, y),
            _ => {
                let cfg = super::cfg_for(&[&a, &b])?;
                rules::matmul(a.like(), b.like(), &cfg)?;
                Err(KilnError::invalid("matmul", "operands must be tensors"))
            }
        };
        "dot" diff => dot(a, b);
        // A 1-d convolution of `a` (flattened to [1, n, 1]) with `b` as a [k, 1, 1] kernel.
        "conv" diff => match (&a, &b) {
            (Operand::Tensor(x), Operand::Tensor(k)) => {
                let x = reshape(x, &[1, -1, 1])?;
                let k = reshape(k, &[-1, 1, 1])?;
                conv::conv(&x, &k, &[1], conv::Padding::Same, conv::DataFormat::ChannelsLast, &[1])
            }
            _ => Err(KilnError::invalid("conv", "operands must be tensors")),
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{convert_to_tensor, ArrayData, Device};

    #[test]
    fn families_and_table_make_one_registry() {
        // 95 ops: 51 from the family macros, 44 from the table.
        assert_eq!(
            elementwise::FAMILY_UNARY.len() + elementwise::FAMILY_BINARY.len(),
            51
        );
        assert_eq!(UNARY.len() + BINARY.len(), 95);
        assert!(UNARY.contains(&"exp") && UNARY.contains(&"softmax"));
        assert!(BINARY.contains(&"mod") && !BINARY.contains(&"r#mod"));
        assert_eq!(differentiable("exp"), Some(true));
        assert_eq!(differentiable("floor_divide"), Some(false));
        assert_eq!(differentiable("matmul"), Some(true));
        let x =
            convert_to_tensor(&ArrayData::from(vec![7.0f64, -7.0]), None, &Device::Cpu).unwrap();
        let m = call_binary("mod", (&x).into(), 3.into()).unwrap();
        assert_eq!(m.to_vec::<f32>().unwrap(), vec![1.0, 2.0]);
        let e = call_unary("exp", &x).unwrap().to_vec::<f32>().unwrap();
        assert_eq!(e, vec![7f32.exp(), (-7f32).exp()]);
        assert!(call_unary("no_such_op", &x).is_err());
    }

    #[test]
    fn raw_identifiers_keep_keras_names() {
        assert_eq!(keras_name("r#mod"), "mod");
        assert_eq!(keras_name("add"), "add");
        // An error from `ops::r#mod` names the op as Keras does.
        let a = convert_to_tensor(&ArrayData::from(vec![1.0f64, 2.0]), None, &Device::Cpu).unwrap();
        let b = convert_to_tensor(&ArrayData::from(vec![1.0f64, 2.0, 3.0]), None, &Device::Cpu)
            .unwrap();
        let e = r#mod(&a, &b).unwrap_err().to_string();
        assert!(e.contains("mod") && !e.contains("r#mod"), "{e}");
    }
}
