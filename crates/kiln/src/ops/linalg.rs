//! Linear algebra: `matmul` (batch broadcasting), `dot`, `tensordot`, `einsum`.

use super::elementwise::multiply;
use super::rules;
use super::shape::{reshape, transpose};
use super::{cfg_for, cfg_for_tensors, common_place, resolve_result, Operand};
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// Matrix product with NumPy's `matmul` rules: 1-d operands gain (then lose) an axis,
/// batch axes broadcast. int8 @ int8 accumulates in int32 (Keras).
///
/// ```
/// use kiln::{ops, ArrayData, Device, convert_to_tensor};
/// let a = convert_to_tensor(&ArrayData::from_shape_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap(), None, &Device::Cpu).unwrap();
/// let c = ops::matmul(&a, &a).unwrap();
/// assert_eq!(c.to_vec::<f32>().unwrap(), vec![7.0, 10.0, 15.0, 22.0]);
/// ```
#[track_caller]
pub fn matmul(a: &Tensor, b: &Tensor) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[a, b])?;
    let dtype = rules::matmul(Operand::Tensor(a).like(), Operand::Tensor(b).like(), &cfg)?;
    matmul_in(a, b, dtype, false, false)
}

/// `matmul` of `a` or its transpose with `b` or its transpose (the last two axes swapped):
/// `matmul_transposed(dy, w, false, true)` is `dy @ w.T` and `matmul_transposed(x, dy, true,
/// false)` is `x.T @ dy`, what every backward pass of a dense layer runs (TensorFlow's
/// `matmul(transpose_a=, transpose_b=)`). Same dtype rule as [`matmul`]; a transposed
/// operand must have at least two axes.
///
/// ```
/// use kiln::{ops, ArrayData, Device, convert_to_tensor};
/// let a = convert_to_tensor(&ArrayData::from_shape_vec(&[2, 2], vec![1.0f32, 2.0, 3.0, 4.0]).unwrap(), None, &Device::Cpu).unwrap();
/// let c = ops::matmul_transposed(&a, &a, false, true).unwrap();   // a @ a.T
/// assert_eq!(c.to_vec::<f32>().unwrap(), vec![5.0, 11.0, 11.0, 25.0]);
/// ```
#[track_caller]
pub fn matmul_transposed(
    a: &Tensor,
    b: &Tensor,
    transpose_a: bool,
    transpose_b: bool,
) -> Result<Tensor> {
    for (x, t, which) in [(a, transpose_a, "a"), (b, transpose_b, "b")] {
        if t && x.ndim() < 2 {
            return Err(KilnError::invalid(
                "matmul_transposed",
                format!(
                    "transpose_{which} needs at least two axes; {which} has shape {:?}",
                    x.shape()
                ),
            ));
        }
    }
    let cfg = cfg_for_tensors(&[a, b])?;
    let dtype = rules::matmul(Operand::Tensor(a).like(), Operand::Tensor(b).like(), &cfg)?;
    matmul_in(a, b, dtype, transpose_a, transpose_b)
}

/// `matmul` computing in `dtype` (from the caller's dtype rule), of the operands with their
/// last two axes swapped where `ta`/`tb` say (the engine reads them transposed, uncopied).
#[track_caller]
fn matmul_in(
    a: &Tensor,
    b: &Tensor,
    dtype: crate::dtype::DType,
    ta: bool,
    tb: bool,
) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[a, b])?;
    let (oa, ob) = (Operand::Tensor(a), Operand::Tensor(b));
    if a.ndim() == 0 || b.ndim() == 0 {
        return Err(KilnError::invalid(
            "matmul",
            "operands must have at least one axis (Keras raises); use multiply for scalars",
        ));
    }
    let device = common_place(&[&oa, &ob], "matmul", &cfg)?;
    let (dtype, device) = resolve_result("matmul", dtype, device, &cfg)?;
    let mut a2 = super::to_compute_ref(a, dtype, device, "matmul")?;
    let mut b2 = super::to_compute_ref(b, dtype, device, "matmul")?;
    if a.ndim() == 1 {
        a2 = std::borrow::Cow::Owned(reshape(&a2, &[1, -1])?);
    }
    if b.ndim() == 1 {
        b2 = std::borrow::Cow::Owned(reshape(&b2, &[-1, 1])?);
    }
    // The contracted dimension of each operand as the engine will read it.
    let (na, nb) = (a2.ndim(), b2.ndim());
    let k1 = a2.shape()[if ta { na - 2 } else { na - 1 }];
    let k2 = b2.shape()[if tb { nb - 1 } else { nb - 2 }];
    if k1 != k2 {
        return Err(KilnError::shape(
            "matmul",
            a.shape(),
            b.shape(),
            format!("contracted dimensions differ: {k1} vs {k2}"),
        ));
    }
    super::broadcast_shapes(
        &a2.shape()[..a2.ndim() - 2],
        &b2.shape()[..b2.ndim() - 2],
        "matmul",
    )?;
    let mm = super::prim::Prim::Matmul {
        transpose_a: ta,
        transpose_b: tb,
    };
    let mut out = super::prim::apply(mm, &[&a2, &b2])?;
    let mut shape: Vec<isize> = out.shape().iter().map(|d| *d as isize).collect();
    if b.ndim() == 1 {
        shape.pop();
    }
    if a.ndim() == 1 {
        let n = shape.len();
        shape.remove(n - 1 - usize::from(b.ndim() != 1));
    }
    if shape.len() != out.ndim() {
        out = reshape(&out, &shape)?;
    }
    Ok(out)
}

/// NumPy `dot`: scalars multiply; 1-d . 1-d is the inner product; otherwise the last axis
/// of `a` contracts with the second-to-last of `b` (the last, if `b` is 1-d).
#[track_caller]
pub fn dot<'a, 'b>(a: impl Into<Operand<'a>>, b: impl Into<Operand<'b>>) -> Result<Tensor> {
    let (a, b) = (a.into(), b.into());
    let cfg = cfg_for(&[&a, &b])?;
    let dtype = rules::dot(a.like(), b.like(), &cfg)?;
    match (&a, &b) {
        (Operand::Tensor(x), Operand::Tensor(y)) if x.ndim() > 0 && y.ndim() > 0 => {
            if x.ndim() <= 2 && y.ndim() <= 2 {
                matmul_in(x, y, dtype, false, false)
            } else {
                let yb = if y.ndim() == 1 {
                    0
                } else {
                    y.ndim() as isize - 2
                };
                tensordot(x, y, Axes::Pairs(vec![-1], vec![yb]))
            }
        }
        _ => multiply(a, b),
    }
}

/// Which axes `tensordot` contracts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Axes {
    /// The last `n` axes of `a` with the first `n` of `b`.
    N(usize),
    /// These axes of `a` with these of `b`, pairwise.
    Pairs(Vec<isize>, Vec<isize>),
}

/// Sum of products over the given axes (NumPy `tensordot`), via one matmul.
#[track_caller]
pub fn tensordot(a: &Tensor, b: &Tensor, axes: Axes) -> Result<Tensor> {
    let (ax_a, ax_b): (Vec<usize>, Vec<usize>) = match axes {
        Axes::N(n) => {
            if n > a.ndim() || n > b.ndim() {
                return Err(KilnError::invalid(
                    "tensordot",
                    format!(
                        "cannot contract {n} axes of {:?} and {:?}",
                        a.shape(),
                        b.shape()
                    ),
                ));
            }
            ((a.ndim() - n..a.ndim()).collect(), (0..n).collect())
        }
        Axes::Pairs(x, y) => {
            if x.len() != y.len() {
                return Err(KilnError::invalid(
                    "tensordot",
                    "axes lists must have the same length",
                ));
            }
            (
                x.iter()
                    .map(|v| super::normalize_axis(*v, a.ndim(), "tensordot"))
                    .collect::<Result<_>>()?,
                y.iter()
                    .map(|v| super::normalize_axis(*v, b.ndim(), "tensordot"))
                    .collect::<Result<_>>()?,
            )
        }
    };
    for (i, j) in ax_a.iter().zip(&ax_b) {
        if a.shape()[*i] != b.shape()[*j] {
            return Err(KilnError::shape(
                "tensordot",
                a.shape(),
                b.shape(),
                format!(
                    "axis {i} of a ({}) != axis {j} of b ({})",
                    a.shape()[*i],
                    b.shape()[*j]
                ),
            ));
        }
    }
    let free_a: Vec<usize> = (0..a.ndim()).filter(|i| !ax_a.contains(i)).collect();
    let free_b: Vec<usize> = (0..b.ndim()).filter(|i| !ax_b.contains(i)).collect();
    let k: usize = ax_a.iter().map(|i| a.shape()[*i]).product();
    let ma: usize = free_a.iter().map(|i| a.shape()[*i]).product();
    let nb: usize = free_b.iter().map(|i| b.shape()[*i]).product();
    let pa: Vec<usize> = free_a.iter().chain(&ax_a).copied().collect();
    let pb: Vec<usize> = ax_b.iter().chain(&free_b).copied().collect();
    let a2 = reshape(&transpose(a, Some(&pa))?, &[ma as isize, k as isize])?;
    let b2 = reshape(&transpose(b, Some(&pb))?, &[k as isize, nb as isize])?;
    let cfg = cfg_for_tensors(&[a, b])?;
    let dtype = crate::dtype::promote::promote_types(a.dtype(), b.dtype(), cfg.floatx, cfg.x64)?;
    let c = matmul_in(&a2, &b2, dtype, false, false)?;
    let shape: Vec<isize> = free_a
        .iter()
        .map(|i| a.shape()[*i] as isize)
        .chain(free_b.iter().map(|i| b.shape()[*i] as isize))
        .collect();
    reshape(&c, &shape)
}

/// Einstein summation for the common contractions: one or more operands, explicit
/// (`ij,jk->ik`) or implicit (`ij,jk`) output, transposes, traces/diagonals of one operand
/// (`ii->`, `ii->i`), batch axes (`bij,bjk->bik`), outer products and reductions.
/// Ellipsis (`...`) is not supported yet and is refused with an error.
///
/// ```
/// use kiln::{ops, ArrayData, Device, convert_to_tensor};
/// let a = convert_to_tensor(&ArrayData::from_shape_vec(&[2, 3], vec![1.0f32, 2., 3., 4., 5., 6.]).unwrap(), None, &Device::Cpu).unwrap();
/// let at = ops::einsum("ij->ji", &[&a]).unwrap();
/// assert_eq!(at.shape(), &[3, 2]);
/// let g = ops::einsum("ij,kj->ik", &[&a, &a]).unwrap();
/// assert_eq!(g.to_vec::<f32>().unwrap(), vec![14.0, 32.0, 32.0, 77.0]);
/// ```
#[track_caller]
pub fn einsum(subscripts: &str, operands: &[&Tensor]) -> Result<Tensor> {
    let s: String = subscripts.chars().filter(|c| !c.is_whitespace()).collect();
    if s.contains("...") {
        return Err(KilnError::invalid(
            "einsum",
            "ellipsis ('...') is not supported; write the axes out",
        ));
    }
    let (lhs, out) = match s.split_once("->") {
        Some((l, o)) => (l.to_string(), Some(o.to_string())),
        None => (s.clone(), None),
    };
    let inputs: Vec<Vec<char>> = lhs.split(',').map(|p| p.chars().collect()).collect();
    if inputs.len() != operands.len() {
        return Err(KilnError::invalid(
            "einsum",
            format!(
                "{} operand specs for {} operands",
                inputs.len(),
                operands.len()
            ),
        ));
    }
    for (spec, t) in inputs.iter().zip(operands) {
        if spec.len() != t.ndim() || spec.iter().any(|c| !c.is_ascii_alphabetic()) {
            return Err(KilnError::invalid(
                "einsum",
                format!(
                    "spec {:?} does not fit an operand of shape {:?}",
                    spec.iter().collect::<String>(),
                    t.shape()
                ),
            ));
        }
    }
    let out: Vec<char> = match out {
        Some(o) => o.chars().collect(),
        None => {
            let mut once: Vec<char> = inputs
                .iter()
                .flatten()
                .copied()
                .filter(|c| inputs.iter().flatten().filter(|d| *d == c).count() == 1)
                .collect();
            once.sort_unstable();
            once
        }
    };
    // Reduce each operand to distinct letters (diagonals first), then fold pairwise.
    let mut terms: Vec<(Vec<char>, Tensor)> = Vec::new();
    for (spec, t) in inputs.iter().zip(operands) {
        terms.push(take_diagonals(spec, t)?);
    }
    // Keras: all-int8 operands accumulate in int32 (`preferred_element_type`).
    if operands
        .iter()
        .all(|t| t.dtype() == crate::dtype::DType::Int8)
    {
        for (_, t) in terms.iter_mut() {
            *t = super::elementwise::cast_internal(t, crate::dtype::DType::Int32, "einsum")?;
        }
    }
    let (mut spec, mut acc) = terms.remove(0);
    for (i, (spec_b, b)) in terms.into_iter().enumerate() {
        let later: Vec<char> = inputs[i + 2..]
            .iter()
            .flatten()
            .copied()
            .chain(out.iter().copied())
            .collect();
        (spec, acc) = contract_pair(&spec, &acc, &spec_b, &b, &later)?;
    }
    // Sum letters not in the output, then order as the output.
    let sum_axes: Vec<isize> = spec
        .iter()
        .enumerate()
        .filter(|(_, c)| !out.contains(c))
        .map(|(i, _)| i as isize)
        .collect();
    if !sum_axes.is_empty() {
        acc = super::reduce::sum(&acc, Some(&sum_axes), false)?;
        spec.retain(|c| out.contains(c));
    }
    let perm = out
        .iter()
        .map(|c| {
            spec.iter().position(|d| d == c).ok_or_else(|| {
                KilnError::invalid("einsum", format!("output letter {c:?} is not in any input"))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    transpose(&acc, Some(&perm))
}

fn take_diagonals(spec: &[char], t: &Tensor) -> Result<(Vec<char>, Tensor)> {
    let mut spec = spec.to_vec();
    let mut t = t.clone();
    while let Some((i, j)) = (0..spec.len())
        .flat_map(|i| (i + 1..spec.len()).map(move |j| (i, j)))
        .find(|(i, j)| spec[*i] == spec[*j])
    {
        if t.shape()[i] != t.shape()[j] {
            return Err(KilnError::invalid(
                "einsum",
                format!("repeated letter {:?} on axes of different sizes", spec[i]),
            ));
        }
        // Move i, j last, take the diagonal, which lands as the last axis.
        let n = t.ndim();
        let mut perm: Vec<usize> = (0..n).filter(|k| *k != i && *k != j).collect();
        perm.extend([i, j]);
        let moved = transpose(&t, Some(&perm))?;
        let d = t.shape()[i];
        let mut shape: Vec<isize> = moved.shape()[..n - 2].iter().map(|x| *x as isize).collect();
        shape.push((d * d) as isize);
        let flat = reshape(&moved, &shape)?;
        let idx: Vec<i64> = (0..d).map(|k| (k * d + k) as i64).collect();
        let it = t.upload_like(crate::array::ArrayData::from(idx))?;
        t = super::shape::take(&flat, &it, Some(-1))?;
        let c = spec[i];
        let mut ns: Vec<char> = perm[..n - 2].iter().map(|k| spec[*k]).collect();
        ns.push(c);
        spec = ns;
    }
    Ok((spec, t))
}

fn contract_pair(
    sa: &[char],
    a: &Tensor,
    sb: &[char],
    b: &Tensor,
    later: &[char],
) -> Result<(Vec<char>, Tensor)> {
    let in_b = |c: &char| sb.contains(c);
    let in_a = |c: &char| sa.contains(c);
    let batch: Vec<char> = sa
        .iter()
        .copied()
        .filter(|c| in_b(c) && later.contains(c))
        .collect();
    let contract: Vec<char> = sa
        .iter()
        .copied()
        .filter(|c| in_b(c) && !later.contains(c))
        .collect();
    let free_a: Vec<char> = sa.iter().copied().filter(|c| !in_b(c)).collect();
    let free_b: Vec<char> = sb.iter().copied().filter(|c| !in_a(c)).collect();
    for c in batch.iter().chain(&contract) {
        let (i, j) = (
            sa.iter().position(|d| d == c).unwrap_or(0),
            sb.iter().position(|d| d == c).unwrap_or(0),
        );
        if a.shape()[i] != b.shape()[j] {
            return Err(KilnError::shape(
                "einsum",
                a.shape(),
                b.shape(),
                format!(
                    "letter {c:?} has sizes {} and {}",
                    a.shape()[i],
                    b.shape()[j]
                ),
            ));
        }
    }
    let pos = |s: &[char], c: &char| s.iter().position(|d| d == c).unwrap_or(0);
    let size = |s: &[char], t: &Tensor, cs: &[char]| {
        cs.iter().map(|c| t.shape()[pos(s, c)]).product::<usize>() as isize
    };
    let pa: Vec<usize> = batch
        .iter()
        .chain(&free_a)
        .chain(&contract)
        .map(|c| pos(sa, c))
        .collect();
    let pb: Vec<usize> = batch
        .iter()
        .chain(&contract)
        .chain(&free_b)
        .map(|c| pos(sb, c))
        .collect();
    let (nb, m, k, n) = (
        size(sa, a, &batch),
        size(sa, a, &free_a),
        size(sa, a, &contract),
        size(sb, b, &free_b),
    );
    let a3 = reshape(&transpose(a, Some(&pa))?, &[nb, m, k])?;
    let b3 = reshape(&transpose(b, Some(&pb))?, &[nb, k, n])?;
    let cfg = cfg_for_tensors(&[a, b])?;
    let dtype = crate::dtype::promote::promote_types(a.dtype(), b.dtype(), cfg.floatx, cfg.x64)?;
    let c = matmul_in(&a3, &b3, dtype, false, false)?;
    let shape: Vec<isize> = batch
        .iter()
        .map(|ch| a.shape()[pos(sa, ch)] as isize)
        .chain(free_a.iter().map(|ch| a.shape()[pos(sa, ch)] as isize))
        .chain(free_b.iter().map(|ch| b.shape()[pos(sb, ch)] as isize))
        .collect();
    let spec: Vec<char> = batch
        .iter()
        .chain(&free_a)
        .chain(&free_b)
        .copied()
        .collect();
    Ok((spec, reshape(&c, &shape)?))
}
