//! The one seam between the frontend and the engines: every primitive call an op makes goes
//! through [`apply`] (or [`apply_fused`] for the kernels an engine may lack), which runs the
//! engine's kernel, wraps the storage as a [`Tensor`] and hands it to the autodiff graph
//! ([`crate::autodiff`]), which records the call when an input is being differentiated.
//!
//! A [`Prim`] is the call with its parameters: what the engine is asked to do, and what the
//! gradient rule of the call (`ops::gradients`) reads back.

use crate::backend::{
    Activation, ArgOp, BinaryOp, CmpOp, FusedReduce, Normalize, ReduceOp, ScanOp, SliceSpec,
    UnaryOp,
};
use crate::dtype::DType;
use crate::element::Scalar;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// A primitive call with its parameters (the inputs are passed alongside, in this order).
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq)]
pub enum Prim {
    /// `x` as `dtype` (NumPy `astype`).
    Cast(DType),
    Unary(UnaryOp),
    /// `a op b`, both broadcast to `shape`.
    Binary(BinaryOp, Vec<usize>),
    Compare(CmpOp, Vec<usize>),
    /// `where(cond, a, b)` broadcast to `shape`; inputs `[cond, a, b]`.
    Select(Vec<usize>),
    Reduce(ReduceOp, Vec<usize>, bool),
    ArgReduce(ArgOp, usize),
    Scan(ScanOp, usize),
    Matmul {
        transpose_a: bool,
        transpose_b: bool,
    },
    Reshape(Vec<usize>),
    Permute(Vec<usize>),
    BroadcastTo(Vec<usize>),
    Slice(Vec<SliceSpec>),
    /// Along `axis`; one input per part.
    Concat(usize),
    IndexSelect(Vec<usize>, usize),
    /// The transpose of `IndexSelect(indices, axis)` into an axis of length `n`.
    IndexAdd(Vec<usize>, usize, usize),
    /// `take_along_axis` on `axis`; inputs `[x, int64 indices]`.
    Gather(usize),
    Pad(Vec<(usize, usize)>, Scalar),
    Sort(usize),
    Argsort(usize),
    ReduceFused(FusedReduce, Vec<usize>, bool),
    Activation(Activation),
    Normalize(Normalize, usize),
    /// Integer indices to a one-hot `dtype` along a new last axis.
    OneHot(usize, DType),
    /// `triu` (`upper`) or `tril` of the last two axes about diagonal `k`.
    Triangle {
        k: isize,
        upper: bool,
    },
    /// A copy to another device or engine (through the host, in the same dtype): not an
    /// engine call, recorded so that gradients flow back to where the value came from.
    Transfer,
}

impl Prim {
    /// The engine's name for the call (the `Backend` method), for errors.
    pub fn name(&self) -> &'static str {
        match self {
            Prim::Cast(_) => "cast",
            Prim::Unary(_) => "unary",
            Prim::Binary(..) => "binary",
            Prim::Compare(..) => "compare",
            Prim::Select(_) => "select",
            Prim::Reduce(..) => "reduce",
            Prim::ArgReduce(..) => "arg_reduce",
            Prim::Scan(..) => "scan",
            Prim::Matmul { .. } => "matmul",
            Prim::Reshape(_) => "reshape",
            Prim::Permute(_) => "permute",
            Prim::BroadcastTo(_) => "broadcast_to",
            Prim::Slice(_) => "slice",
            Prim::Concat(_) => "concat",
            Prim::IndexSelect(..) => "index_select",
            Prim::IndexAdd(..) => "index_add",
            Prim::Gather(_) => "gather",
            Prim::Pad(..) => "pad",
            Prim::Sort(_) => "sort",
            Prim::Argsort(_) => "argsort",
            Prim::ReduceFused(..) => "reduce_fused",
            Prim::Activation(_) => "activation",
            Prim::Normalize(..) => "normalize",
            Prim::OneHot(..) => "one_hot",
            Prim::Triangle { .. } => "triangle",
            Prim::Transfer => "transfer",
        }
    }
}

/// Runs `prim` on its inputs' engine: `Ok(None)` where it is an optional fused kernel the
/// engine does not have (for these inputs).
fn run(prim: &Prim, inputs: &[&Tensor]) -> Result<Option<crate::backend::Storage>> {
    let arity = match prim {
        Prim::Binary(..) | Prim::Compare(..) | Prim::Matmul { .. } | Prim::Gather(_) => 2,
        Prim::Select(_) => 3,
        Prim::Concat(_) => inputs.len().max(1),
        _ => 1,
    };
    if inputs.len() != arity {
        return Err(KilnError::invalid(
            prim.name(),
            format!("takes {arity} inputs, got {}", inputs.len()),
        ));
    }
    let x = inputs[0];
    let (be, s) = (engine_of(inputs), &x.storage);
    let at = |i: usize| &inputs[i].storage;
    Ok(Some(match prim {
        Prim::Cast(d) => be.cast(s, *d)?,
        Prim::Unary(op) => be.unary(*op, s)?,
        Prim::Binary(op, shape) => be.binary(*op, s, at(1), shape)?,
        Prim::Compare(op, shape) => be.compare(*op, s, at(1), shape)?,
        Prim::Select(shape) => be.select(s, at(1), at(2), shape)?,
        Prim::Reduce(op, axes, keep) => be.reduce(*op, s, axes, *keep)?,
        Prim::ArgReduce(op, axis) => be.arg_reduce(*op, s, *axis)?,
        Prim::Scan(op, axis) => be.scan(*op, s, *axis)?,
        Prim::Matmul {
            transpose_a,
            transpose_b,
        } => be.matmul(s, at(1), *transpose_a, *transpose_b)?,
        Prim::Reshape(shape) => be.reshape(s, shape)?,
        Prim::Permute(axes) => be.permute(s, axes)?,
        Prim::BroadcastTo(shape) => be.broadcast_to(s, shape)?,
        Prim::Slice(specs) => be.slice(s, specs)?,
        Prim::Concat(axis) => {
            let parts: Vec<&crate::backend::Storage> = inputs.iter().map(|t| &t.storage).collect();
            be.concat(&parts, *axis)?
        }
        Prim::IndexSelect(idx, axis) => be.index_select(s, idx, *axis)?,
        Prim::IndexAdd(idx, axis, n) => be.index_add(s, idx, *axis, *n)?,
        Prim::Gather(axis) => be.gather(s, at(1), *axis)?,
        Prim::Pad(widths, value) => be.pad(s, widths, *value)?,
        Prim::Sort(axis) => be.sort(s, *axis)?,
        Prim::Argsort(axis) => be.argsort(s, *axis)?,
        Prim::ReduceFused(op, axes, keep) => return be.reduce_fused(*op, s, axes, *keep),
        Prim::Activation(act) => return be.activation(*act, s),
        Prim::Normalize(op, axis) => return be.normalize(*op, s, *axis),
        Prim::OneHot(n, d) => return be.one_hot(s, *n, *d),
        Prim::Triangle { k, upper } => return be.triangle(s, *k, *upper),
        Prim::Transfer => {
            return Err(KilnError::invalid(
                "transfer",
                "moves are made by ops::convert_at, not by an engine; this is a bug in kiln",
            ))
        }
    }))
}

/// Runs a primitive and records it for autodiff. The inputs share one engine and device
/// (the ops cast and move them first); the result lives there too.
pub(crate) fn apply(prim: Prim, inputs: &[&Tensor]) -> Result<Tensor> {
    match run(&prim, inputs)? {
        Some(s) => finish(prim, inputs, s),
        None => Err(KilnError::invalid(
            prim.name(),
            "an optional kernel was called without its composition; this is a bug in kiln",
        )),
    }
}

/// Runs an optional fused kernel, or where the engine lacks it, `composed` (the same formula
/// from other primitives, computed without recording): either way the graph records `prim`,
/// so the gradient is the op's rule and not that of its composition (relu's gradient at 0
/// is 0, not `maximum`'s tie rule).
pub(crate) fn apply_fused(
    prim: Prim,
    x: &Tensor,
    composed: impl FnOnce(&Tensor) -> Result<Tensor>,
) -> Result<Tensor> {
    match run(&prim, &[x])? {
        Some(s) => finish(prim, &[x], s),
        None => {
            let y = {
                let _quiet = crate::autodiff::no_grad();
                composed(x)?
            };
            Ok(crate::autodiff::record(prim, &[x], y))
        }
    }
}

/// Runs an optional fused kernel with no composition to fall back on: `Ok(None)` where the
/// engine lacks it (the caller composes it; for ops whose outputs carry no gradient).
pub(crate) fn try_fused(prim: Prim, inputs: &[&Tensor]) -> Result<Option<Tensor>> {
    match run(&prim, inputs)? {
        Some(s) => finish(prim, inputs, s).map(Some),
        None => Ok(None),
    }
}

/// The engine a call runs on: the inputs' (they share one), except that a meta input (from
/// `ops::output_spec`) makes it a meta call even where an op uploaded a constant operand to
/// the real engine.
fn engine_of<'a>(inputs: &[&'a Tensor]) -> &'a std::sync::Arc<dyn crate::backend::Backend> {
    inputs
        .iter()
        .find(|t| t.is_meta())
        .map(|t| &t.backend)
        .unwrap_or(&inputs[0].backend)
}

fn finish(prim: Prim, inputs: &[&Tensor], s: crate::backend::Storage) -> Result<Tensor> {
    let x = inputs[0];
    let t = Tensor::from_storage(s, engine_of(inputs).clone(), x.device())?;
    Ok(crate::autodiff::record(prim, inputs, t))
}

/// A fused optimizer update on the variable's engine: the new variable and slots, or
/// `Ok(None)` where the engine composes it. Never recorded (updates are not differentiated).
pub(crate) fn optimizer_step(
    step: crate::backend::OptimizerStep,
    w: &Tensor,
    g: &Tensor,
    slots: &[Tensor],
) -> Result<Option<(Tensor, Vec<Tensor>)>> {
    let same = |t: &Tensor| {
        t.dtype() == w.dtype()
            && t.shape() == w.shape()
            && t.device() == w.device()
            && t.backend_kind() == w.backend_kind()
    };
    if !w.dtype().is_float() || !same(g) || !slots.iter().all(same) {
        return Ok(None);
    }
    let refs: Vec<&crate::backend::Storage> = slots.iter().map(|t| &t.storage).collect();
    let Some(out) = w
        .backend
        .optimizer_step(step, &w.storage, &g.storage, &refs)?
    else {
        return Ok(None);
    };
    let mut ts = out
        .into_iter()
        .map(|s| Tensor::from_storage(s, w.backend.clone(), w.device()))
        .collect::<Result<Vec<_>>>()?;
    if ts.len() != slots.len() + 1 {
        return Err(KilnError::invalid(
            "optimizer_step",
            format!(
                "the engine returned {} tensors for {} slots",
                ts.len(),
                slots.len()
            ),
        ));
    }
    let w2 = ts.remove(0);
    Ok(Some((w2, ts)))
}
