//! Reverse-mode automatic differentiation, in the frontend, so every engine and device
//! differentiates the same way.
//!
//! Each primitive call goes through one seam (`ops::prim`); when one of its inputs is being
//! differentiated (it came from [`watch`], or from an op on a watched tensor), the seam gives
//! the result a graph [`Node`] that holds the call and its inputs. [`gradients`] walks the
//! graph backwards from a scalar and applies each call's rule (`ops::gradients`, one function
//! read top-down). The graph lives exactly as long as the tensors that hold it: dropping the
//! loss and the watched tensors frees every intermediate ([`live_nodes`] counts them).
//!
//! ```
//! use kiln::{autodiff, ops, ArrayData, Device, convert_to_tensor};
//! let x = convert_to_tensor(&ArrayData::from(vec![1.0f32, 2.0, 3.0]), None, &Device::Cpu).unwrap();
//! // d/dx sum(x^2 + 3x) = 2x + 3
//! let (y, g) = autodiff::value_and_grad(
//!     |p| ops::sum(&ops::add(&ops::multiply(&p[0], &p[0])?, &ops::multiply(&p[0], 3.0)?)?, None, false),
//!     &[&x],
//! ).unwrap();
//! assert_eq!(y.to_vec::<f32>().unwrap(), vec![32.0]);
//! assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![5.0, 7.0, 9.0]);
//! ```

use crate::error::{KilnError, Result};
use crate::ops::prim::Prim;
use crate::tensor::Tensor;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);
static LIVE: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static PAUSED: Cell<u32> = const { Cell::new(0) };
}

/// A user-written gradient rule: the cotangent of the output in, one gradient per input out.
pub type VjpFn = dyn Fn(&Tensor) -> Result<Vec<Tensor>> + Send + Sync;

/// A value's place in the graph: how it was computed from which tensors.
pub struct Node {
    id: u64,
    kind: Kind,
}

enum Kind {
    /// A watched tensor: where gradients are collected.
    Leaf,
    /// A primitive call; `output` is the call's result without its node (rules read it).
    Op {
        prim: Prim,
        inputs: Vec<Tensor>,
        output: Tensor,
    },
    /// A call with a gradient rule of the user's ([`custom_gradient`]).
    Custom {
        inputs: Vec<Tensor>,
        vjp: Arc<VjpFn>,
    },
}

impl Node {
    fn new(kind: Kind) -> Arc<Node> {
        LIVE.fetch_add(1, Ordering::Relaxed);
        Arc::new(Node {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            kind,
        })
    }

    fn inputs(&self) -> &[Tensor] {
        match &self.kind {
            Kind::Leaf => &[],
            Kind::Op { inputs, .. } | Kind::Custom { inputs, .. } => inputs,
        }
    }

    fn take_input_nodes(&mut self) -> Vec<Arc<Node>> {
        match &mut self.kind {
            Kind::Leaf => Vec::new(),
            Kind::Op { inputs, .. } | Kind::Custom { inputs, .. } => {
                inputs.iter_mut().filter_map(|t| t.node.take()).collect()
            }
        }
    }
}

impl Drop for Node {
    // Iterative, so that dropping a graph of a million chained ops does not recurse a
    // million frames deep.
    fn drop(&mut self) {
        LIVE.fetch_sub(1, Ordering::Relaxed);
        let mut stack = self.take_input_nodes();
        while let Some(n) = stack.pop() {
            if let Ok(mut inner) = Arc::try_unwrap(n) {
                stack.extend(inner.take_input_nodes());
            }
        }
    }
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let what = match &self.kind {
            Kind::Leaf => "leaf",
            Kind::Op { prim, .. } => prim.name(),
            Kind::Custom { .. } => "custom",
        };
        write!(f, "Node({}, {what})", self.id)
    }
}

/// Graph nodes alive in the process (all threads): what a test checks to see that nothing
/// grows from one training step to the next.
pub fn live_nodes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// Whether new primitive calls on this thread are recorded.
fn recording() -> bool {
    PAUSED.with(|p| p.get() == 0)
}

/// While alive, nothing computed on this thread is recorded (inference, optimizer updates,
/// and the backward pass itself). Guards nest.
#[must_use = "recording resumes when the guard is dropped"]
pub struct NoGradGuard {
    _not_send: std::marker::PhantomData<*const ()>,
}

/// Stops recording on this thread until the guard is dropped.
pub fn no_grad() -> NoGradGuard {
    PAUSED.with(|p| p.set(p.get() + 1));
    NoGradGuard {
        _not_send: std::marker::PhantomData,
    }
}

impl Drop for NoGradGuard {
    fn drop(&mut self) {
        PAUSED.with(|p| p.set(p.get().saturating_sub(1)));
    }
}

/// Gives `out` (the result of `prim` on `inputs`) its graph node, where an input is being
/// differentiated and the result is inexact (integer and bool results carry no gradient).
pub(crate) fn record(prim: Prim, inputs: &[&Tensor], mut out: Tensor) -> Tensor {
    if inputs.iter().all(|t| t.node.is_none()) || !out.dtype().is_inexact() || !recording() {
        return out;
    }
    let output = out.clone();
    out.node = Some(Node::new(Kind::Op {
        prim,
        inputs: inputs.iter().map(|t| (*t).clone()).collect(),
        output,
    }));
    out
}

/// `x` as a new leaf of the graph: everything computed from it is recorded, and
/// [`gradients`] can be asked for it. Only float tensors can be watched.
pub fn watch(x: &Tensor) -> Result<Tensor> {
    if !x.dtype().is_float() {
        return Err(KilnError::not_allowed(
            "watch",
            &[x.dtype()],
            "only float tensors have gradients; cast to a float dtype first (integer and bool values are constants to autodiff)",
        ));
    }
    let mut t = x.clone();
    t.node = Some(Node::new(Kind::Leaf));
    Ok(t)
}

/// `x` without its place in the graph: a constant to every gradient (JAX's
/// `stop_gradient`, PyTorch's `detach`).
pub fn stop_gradient(x: &Tensor) -> Tensor {
    let mut t = x.clone();
    t.node = None;
    t
}

/// Whether `x` takes part in a graph (it is watched or computed from a watched tensor).
pub fn is_tracked(x: &Tensor) -> bool {
    x.node.is_some()
}

/// `output` (computed from `inputs` by any means) with a gradient rule of your own: `vjp`
/// takes the cotangent of `output` and returns one gradient per input, each of the input's
/// shape and dtype.
///
/// ```
/// use kiln::{autodiff, ops, ArrayData, Device, convert_to_tensor};
/// let x = convert_to_tensor(&ArrayData::from(vec![4.0f32]), None, &Device::Cpu).unwrap();
/// // A straight-through round: the value is rounded, the gradient passes unchanged.
/// let g = autodiff::grad(|p| {
///     let y = autodiff::custom_gradient(&[&p[0]], &ops::round(&p[0])?, |g| Ok(vec![g.clone()]))?;
///     ops::sum(&ops::multiply(&y, 3.0)?, None, false)
/// }, &[&x]).unwrap();
/// assert_eq!(g[0].to_vec::<f32>().unwrap(), vec![3.0]);
/// ```
pub fn custom_gradient(
    inputs: &[&Tensor],
    output: &Tensor,
    vjp: impl Fn(&Tensor) -> Result<Vec<Tensor>> + Send + Sync + 'static,
) -> Result<Tensor> {
    let mut out = stop_gradient(output);
    if inputs.iter().any(|t| t.node.is_some()) && recording() {
        if !out.dtype().is_inexact() {
            return Err(KilnError::not_allowed(
                "custom_gradient",
                &[out.dtype()],
                "the output has no gradient (integer or bool); cast it to a float dtype first",
            ));
        }
        out.node = Some(Node::new(Kind::Custom {
            inputs: inputs.iter().map(|t| (*t).clone()).collect(),
            vjp: Arc::new(vjp),
        }));
    }
    Ok(out)
}

/// Gradients of the scalar `output` with respect to each of `wrt` (watched tensors or
/// anything computed from them). A tensor `output` does not depend on gets zeros.
pub fn gradients(output: &Tensor, wrt: &[&Tensor]) -> Result<Vec<Tensor>> {
    if output.size() != 1 {
        return Err(KilnError::invalid(
            "gradients",
            format!(
                "the output has shape {:?}; gradients need a scalar (reduce it with sum or mean), or use autodiff::vjp with a cotangent of that shape",
                output.shape()
            ),
        ));
    }
    let seed = crate::ops::ones_like(output, None)?;
    vjp(output, wrt, &seed)
}

/// The vector-Jacobian product: gradients of `sum(output * cotangent)` with respect to each
/// of `wrt`.
pub fn vjp(output: &Tensor, wrt: &[&Tensor], cotangent: &Tensor) -> Result<Vec<Tensor>> {
    if !output.dtype().is_inexact() {
        return Err(KilnError::not_allowed(
            "gradients",
            &[output.dtype()],
            format!(
                "an {} output has no gradient (it is piecewise constant); differentiate a float value (cast to float32 first, or compute the loss before argmax/rounding)",
                output.dtype()
            ),
        ));
    }
    if cotangent.shape() != output.shape() {
        return Err(KilnError::shape(
            "vjp",
            output.shape(),
            cotangent.shape(),
            "the cotangent must have the output's shape",
        ));
    }
    let mut wanted = Vec::with_capacity(wrt.len());
    for (i, t) in wrt.iter().enumerate() {
        match &t.node {
            Some(n) => wanted.push(n.id),
            None => {
                return Err(KilnError::invalid(
                    "gradients",
                    format!(
                        "argument {i} (shape {:?}, {}) is not part of a graph: pass it through autodiff::watch (or value_and_grad) before computing with it",
                        t.shape(),
                        t.dtype()
                    ),
                ))
            }
        }
    }
    let _quiet = no_grad();
    let mut grads: HashMap<u64, Tensor> = HashMap::new();
    if let Some(root) = &output.node {
        let keep: HashSet<u64> = wanted.iter().copied().collect();
        let seed = crate::ops::to_compute(
            cotangent,
            output.dtype(),
            crate::ops::place_of(output),
            "vjp",
        )?;
        grads.insert(root.id, seed);
        for node in topo_order(root) {
            let g = if keep.contains(&node.id) {
                grads.get(&node.id).cloned()
            } else {
                grads.remove(&node.id)
            };
            let Some(g) = g else { continue };
            let inputs = node.inputs();
            let needs: Vec<bool> = inputs.iter().map(|t| t.node.is_some()).collect();
            let input_grads = match &node.kind {
                Kind::Leaf => continue,
                Kind::Op { prim, output, .. } => {
                    crate::ops::gradients::vjp(prim, inputs, output, &g, &needs).map_err(|e| {
                        KilnError::invalid(
                            &format!("gradient of {}", prim.name()),
                            format!("{e} (while differentiating {prim:?})"),
                        )
                    })?
                }
                Kind::Custom { vjp, .. } => custom_grads(vjp, &g, inputs)?,
            };
            for ((t, gi), need) in inputs.iter().zip(input_grads).zip(&needs) {
                let (Some(n), Some(gi), true) = (&t.node, gi, *need) else {
                    continue;
                };
                let total = match grads.remove(&n.id) {
                    Some(prev) => crate::ops::add(&prev, &gi)?,
                    None => gi,
                };
                grads.insert(n.id, total);
            }
        }
    }
    wrt.iter()
        .zip(wanted)
        .map(|(t, id)| match grads.get(&id) {
            Some(g) => Ok(stop_gradient(g)),
            None => crate::ops::zeros_like(&stop_gradient(t), None),
        })
        .collect()
}

fn custom_grads(vjp: &Arc<VjpFn>, g: &Tensor, inputs: &[Tensor]) -> Result<Vec<Option<Tensor>>> {
    let gs = vjp(g)?;
    if gs.len() != inputs.len() {
        return Err(KilnError::invalid(
            "custom_gradient",
            format!(
                "the rule returned {} gradients for {} inputs",
                gs.len(),
                inputs.len()
            ),
        ));
    }
    for (g, x) in gs.iter().zip(inputs) {
        if g.shape() != x.shape() || g.dtype() != x.dtype() {
            return Err(KilnError::invalid(
                "custom_gradient",
                format!(
                    "the rule returned a {} {:?} gradient for a {} {:?} input; each gradient has its input's shape and dtype",
                    g.dtype(),
                    g.shape(),
                    x.dtype(),
                    x.shape()
                ),
            ));
        }
    }
    Ok(gs.into_iter().map(Some).collect())
}

/// The nodes reachable from `root`, each after every node that uses it (reverse post-order
/// of an iterative depth-first walk).
fn topo_order(root: &Arc<Node>) -> Vec<Arc<Node>> {
    let mut post = Vec::new();
    let mut seen = HashSet::new();
    let mut stack: Vec<(Arc<Node>, bool)> = vec![(root.clone(), false)];
    while let Some((n, expanded)) = stack.pop() {
        if expanded {
            post.push(n);
            continue;
        }
        if !seen.insert(n.id) {
            continue;
        }
        stack.push((n.clone(), true));
        for t in n.inputs() {
            if let Some(c) = &t.node {
                if !seen.contains(&c.id) {
                    stack.push((c.clone(), false));
                }
            }
        }
    }
    post.reverse();
    post
}

/// `f` at `params` and the gradients of its scalar result with respect to each of them
/// (JAX's `value_and_grad`). `f` receives the parameters watched.
pub fn value_and_grad<F>(f: F, params: &[&Tensor]) -> Result<(Tensor, Vec<Tensor>)>
where
    F: FnOnce(&[Tensor]) -> Result<Tensor>,
{
    let watched = params
        .iter()
        .map(|p| watch(p))
        .collect::<Result<Vec<_>>>()?;
    let y = f(&watched)?;
    let refs: Vec<&Tensor> = watched.iter().collect();
    let g = gradients(&y, &refs)?;
    Ok((stop_gradient(&y), g))
}

/// The gradients of `f`'s scalar result with respect to each of `params` (JAX's `grad`).
pub fn grad<F>(f: F, params: &[&Tensor]) -> Result<Vec<Tensor>>
where
    F: FnOnce(&[Tensor]) -> Result<Tensor>,
{
    value_and_grad(f, params).map(|(_, g)| g)
}
