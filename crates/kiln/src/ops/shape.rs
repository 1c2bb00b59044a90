//! Shape and indexing ops: reshape, transpose, slicing, joining, gathering, sorting and
//! the triangle/diagonal family.

use super::elementwise::{cast_internal, equal, r#where};
use super::prim::{apply, Prim};
use super::rules::{self, UnaryRule};
use super::{
    broadcast_shapes, cfg_for_tensors, common_place, normalize_axes, normalize_axis,
    resolve_result, to_compute, Operand,
};
use crate::array::ArrayData;
use crate::backend::SliceSpec;
use crate::dtype::promote::{result_type, DTypeLike};
use crate::dtype::DType;
use crate::element::Scalar;
use crate::error::{KilnError, Result};
use crate::tensor::Tensor;

/// Reshape in C order; one entry may be `-1` (inferred).
///
/// ```
/// use kiln::{ops, ArrayData, Device, convert_to_tensor};
/// let x = convert_to_tensor(&ArrayData::from(vec![1.0f32; 6]), None, &Device::Cpu).unwrap();
/// assert_eq!(ops::reshape(&x, &[2, -1]).unwrap().shape(), &[2, 3]);
/// assert!(ops::reshape(&x, &[4, -1]).is_err());
/// ```
pub fn reshape(x: &Tensor, shape: &[isize]) -> Result<Tensor> {
    let n = x.size();
    let known: usize = shape
        .iter()
        .filter(|d| **d >= 0)
        .map(|d| *d as usize)
        .product();
    let infer = shape.iter().filter(|d| **d == -1).count();
    if infer > 1 || shape.iter().any(|d| *d < -1) {
        return Err(KilnError::invalid(
            "reshape",
            format!("{shape:?}: at most one -1 and no other negative sizes"),
        ));
    }
    let new: Vec<usize> = shape
        .iter()
        .map(|d| {
            if *d == -1 {
                n.checked_div(known).unwrap_or(0)
            } else {
                *d as usize
            }
        })
        .collect();
    if new.iter().product::<usize>() != n {
        return Err(KilnError::shape(
            "reshape",
            x.shape(),
            &new,
            format!("cannot reshape {n} elements into {shape:?}"),
        ));
    }
    if new == x.shape() {
        return Ok(x.clone());
    }
    apply(Prim::Reshape(new), &[x])
}

/// Permutes axes (`None` reverses them).
pub fn transpose(x: &Tensor, axes: Option<&[usize]>) -> Result<Tensor> {
    let n = x.ndim();
    let perm: Vec<usize> = match axes {
        None => (0..n).rev().collect(),
        Some(a) => a.to_vec(),
    };
    let mut seen = perm.clone();
    seen.sort_unstable();
    if seen != (0..n).collect::<Vec<_>>() {
        return Err(KilnError::invalid(
            "transpose",
            format!("{perm:?} is not a permutation of the {n} axes"),
        ));
    }
    // Axes of size 1 move for free: the permutation only matters among the others.
    let moved: Vec<usize> = perm
        .iter()
        .copied()
        .filter(|&a| x.shape()[a] != 1)
        .collect();
    if moved.windows(2).all(|w| w[0] < w[1]) {
        let shape: Vec<isize> = perm.iter().map(|&a| x.shape()[a] as isize).collect();
        return reshape(x, &shape);
    }
    apply(Prim::Permute(perm), &[x])
}

/// Inserts a size-1 axis at `axis`.
pub fn expand_dims(x: &Tensor, axis: isize) -> Result<Tensor> {
    let a = normalize_axis(axis, x.ndim() + 1, "expand_dims")?;
    let mut s: Vec<isize> = x.shape().iter().map(|d| *d as isize).collect();
    s.insert(a, 1);
    reshape(x, &s)
}

/// Removes size-1 axes (all of them, or the one given, which must have size 1).
pub fn squeeze(x: &Tensor, axis: Option<isize>) -> Result<Tensor> {
    let keep: Vec<isize> = match axis {
        None => x
            .shape()
            .iter()
            .filter(|d| **d != 1)
            .map(|d| *d as isize)
            .collect(),
        Some(a) => {
            let a = normalize_axis(a, x.ndim(), "squeeze")?;
            if x.shape()[a] != 1 {
                return Err(KilnError::invalid(
                    "squeeze",
                    format!("axis {a} has size {}, not 1", x.shape()[a]),
                ));
            }
            x.shape()
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != a)
                .map(|(_, d)| *d as isize)
                .collect()
        }
    };
    reshape(x, &keep)
}

/// Broadcasts to `shape` (NumPy rules; the result has exactly `shape`).
pub fn broadcast_to(x: &Tensor, shape: &[usize]) -> Result<Tensor> {
    let b = broadcast_shapes(x.shape(), shape, "broadcast_to")?;
    if b != shape {
        return Err(KilnError::shape(
            "broadcast_to",
            x.shape(),
            shape,
            "the target shape must contain the input's",
        ));
    }
    if x.shape() == shape {
        return Ok(x.clone());
    }
    crate::hostmem::check_output("broadcast_to", shape, x.dtype())?;
    apply(Prim::BroadcastTo(shape.to_vec()), &[x])
}

/// One axis of a strided slice, with Python's `start:stop:step` semantics.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct SliceArg {
    /// Start (negative counts from the end; `None` = the natural start for `step`).
    pub start: Option<isize>,
    /// Stop, exclusive (as `start`).
    pub stop: Option<isize>,
    /// Step, nonzero.
    pub step: isize,
}

impl SliceArg {
    /// `:` — the whole axis.
    pub fn all() -> SliceArg {
        SliceArg {
            start: None,
            stop: None,
            step: 1,
        }
    }
    /// `start:stop`.
    pub fn range(start: isize, stop: isize) -> SliceArg {
        SliceArg {
            start: Some(start),
            stop: Some(stop),
            step: 1,
        }
    }
    /// `start:stop:step` with optional bounds.
    pub fn new(start: Option<isize>, stop: Option<isize>, step: isize) -> SliceArg {
        SliceArg { start, stop, step }
    }

    fn spec(&self, len: usize) -> Result<SliceSpec> {
        if self.step == 0 {
            return Err(KilnError::invalid("slice", "slice step cannot be zero"));
        }
        let n = len as isize;
        let norm = |v: isize| if v < 0 { v + n } else { v };
        if self.step > 0 {
            let s = self.start.map(norm).unwrap_or(0).clamp(0, n);
            let e = self.stop.map(norm).unwrap_or(n).clamp(0, n);
            Ok(SliceSpec {
                start: s as usize,
                end: e.max(s) as usize,
                step: self.step,
            })
        } else {
            let s = self.start.map(norm).unwrap_or(n - 1).clamp(-1, n - 1);
            let e = self.stop.map(norm).unwrap_or(-1).clamp(-1, n - 1);
            // ndarray walks [e+1, s+1) backwards from its last element.
            let (lo, hi) = ((e + 1) as usize, (s + 1).max(e + 1) as usize);
            Ok(SliceSpec {
                start: lo,
                end: hi,
                step: self.step,
            })
        }
    }
}

/// Strided slicing: `x[a:b:c, ...]`; axes beyond `args` are taken whole.
///
/// ```
/// use kiln::{ops, ops::SliceArg, ArrayData, Device, convert_to_tensor};
/// let x = convert_to_tensor(&ArrayData::from((0..10).collect::<Vec<i32>>()), None, &Device::Cpu).unwrap();
/// let y = ops::strided_slice(&x, &[SliceArg::new(Some(7), Some(2), -2)]).unwrap();
/// assert_eq!(y.to_vec::<i32>().unwrap(), vec![7, 5, 3]);
/// ```
pub fn strided_slice(x: &Tensor, args: &[SliceArg]) -> Result<Tensor> {
    if args.len() > x.ndim() {
        return Err(KilnError::invalid(
            "slice",
            format!("{} slices for a tensor with {} axes", args.len(), x.ndim()),
        ));
    }
    let specs = x
        .shape()
        .iter()
        .enumerate()
        .map(|(i, n)| args.get(i).copied().unwrap_or(SliceArg::all()).spec(*n))
        .collect::<Result<Vec<_>>>()?;
    apply(Prim::Slice(specs), &[x])
}

/// Reverses the order of elements along `axis` (all axes when `None`).
pub fn flip(x: &Tensor, axis: Option<&[isize]>) -> Result<Tensor> {
    let axes = normalize_axes(axis, x.ndim(), "flip")?;
    let args: Vec<SliceArg> = (0..x.ndim())
        .map(|i| {
            if axes.contains(&i) {
                SliceArg::new(None, None, -1)
            } else {
                SliceArg::all()
            }
        })
        .collect();
    strided_slice(x, &args)
}

/// Joins tensors along an existing axis; dtypes promote as in `add`.
#[track_caller]
pub fn concatenate(xs: &[&Tensor], axis: isize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| KilnError::invalid("concatenate", "needs at least one tensor"))?;
    let cfg = cfg_for_tensors(xs)?;
    let ops: Vec<Operand<'_>> = xs.iter().map(|t| Operand::Tensor(t)).collect();
    let device = common_place(&ops.iter().collect::<Vec<_>>(), "concatenate", &cfg)?;
    let likes: Vec<DTypeLike> = xs.iter().map(|t| DTypeLike::Strong(t.dtype())).collect();
    let dtype = result_type(&likes, cfg.floatx, cfg.x64)?;
    let (dtype, place) = resolve_result("concatenate", dtype, device, &cfg)?;
    let ax = normalize_axis(axis, first.ndim(), "concatenate")?;
    for t in xs {
        let same = t.ndim() == first.ndim()
            && (0..t.ndim()).all(|i| i == ax || t.shape()[i] == first.shape()[i]);
        if !same {
            return Err(KilnError::shape(
                "concatenate",
                first.shape(),
                t.shape(),
                format!("shapes must match except on axis {ax}"),
            ));
        }
    }
    // A loop, not a closure: the error's origin is the caller's line (`#[track_caller]`).
    let mut cast = Vec::with_capacity(xs.len());
    for t in xs {
        cast.push(to_compute(t, dtype, place, "concatenate")?);
    }
    let refs: Vec<&Tensor> = cast.iter().collect();
    apply(Prim::Concat(ax), &refs)
}

/// Joins tensors of one shape along a new axis.
#[track_caller]
pub fn stack(xs: &[&Tensor], axis: isize) -> Result<Tensor> {
    let first = xs
        .first()
        .ok_or_else(|| KilnError::invalid("stack", "needs at least one tensor"))?;
    if let Some(t) = xs.iter().find(|t| t.shape() != first.shape()) {
        return Err(KilnError::shape(
            "stack",
            first.shape(),
            t.shape(),
            "all tensors must have the same shape",
        ));
    }
    let ex: Vec<Tensor> = xs
        .iter()
        .map(|t| expand_dims(t, axis))
        .collect::<Result<_>>()?;
    concatenate(&ex.iter().collect::<Vec<_>>(), axis)
}

/// How to split a tensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Split {
    /// Into this many equal parts (the axis length must divide evenly).
    Sections(usize),
    /// At these indices along the axis.
    Indices(Vec<usize>),
}

/// Splits along `axis`.
pub fn split(x: &Tensor, how: Split, axis: isize) -> Result<Vec<Tensor>> {
    let ax = normalize_axis(axis, x.ndim(), "split")?;
    let n = x.shape()[ax];
    let bounds: Vec<usize> = match how {
        Split::Sections(0) => {
            return Err(KilnError::invalid(
                "split",
                "number of sections must be positive",
            ))
        }
        Split::Sections(k) if !n.is_multiple_of(k) => {
            return Err(KilnError::invalid(
                "split",
                format!("axis {ax} of length {n} does not split into {k} equal parts"),
            ))
        }
        Split::Sections(k) => (1..k).map(|i| i * n / k).collect(),
        Split::Indices(v) => v,
    };
    let mut edges = vec![0];
    edges.extend(bounds.iter().map(|b| (*b).min(n)));
    edges.push(n);
    edges
        .windows(2)
        .map(|w| {
            let mut args = vec![SliceArg::all(); x.ndim()];
            args[ax] = SliceArg::range(w[0] as isize, w[1].max(w[0]) as isize);
            strided_slice(x, &args)
        })
        .collect()
}

/// Picks `indices` along `axis` (backend primitive; indices already in range).
pub(crate) fn select(x: &Tensor, indices: &[usize], axis: usize) -> Result<Tensor> {
    apply(Prim::IndexSelect(indices.to_vec(), axis), &[x])
}

/// The transpose of [`select`]: slice `j` of `x` along `axis` added at `indices[j]` of a zero
/// tensor whose `axis` has length `n` (backend primitive; indices in range).
pub(crate) fn scatter_add_rows(
    x: &Tensor,
    indices: &[usize],
    axis: usize,
    n: usize,
) -> Result<Tensor> {
    apply(Prim::IndexAdd(indices.to_vec(), axis, n), &[x])
}

/// Repeats the whole tensor `reps` times along each axis (NumPy `tile`): one broadcast
/// copy of `x` with a size-1 axis before each repeated one, `[r0, d0, r1, d1, ..]`, then a
/// free reshape to `[r0 * d0, r1 * d1, ..]`.
pub fn tile(x: &Tensor, reps: &[usize]) -> Result<Tensor> {
    let nd = reps.len().max(x.ndim());
    let mut dims = vec![1usize; nd - x.ndim()];
    dims.extend_from_slice(x.shape());
    let mut r = vec![1usize; nd - reps.len()];
    r.extend_from_slice(reps);
    let interleaved: Vec<usize> = dims.iter().zip(&r).flat_map(|(d, k)| [*k, *d]).collect();
    let out: Vec<usize> = dims
        .iter()
        .zip(&r)
        .map(|(d, k)| d.checked_mul(*k))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            KilnError::invalid(
                "tile",
                format!("tiling {:?} by {reps:?} overflows", x.shape()),
            )
        })?;
    crate::hostmem::check_output("tile", &out, x.dtype())?;
    let ones: Vec<isize> = dims.iter().flat_map(|d| [1, *d as isize]).collect();
    let b = broadcast_to(&reshape(x, &ones)?, &interleaved)?;
    reshape(&b, &out.iter().map(|d| *d as isize).collect::<Vec<_>>())
}

/// Repeats each element `repeats` times along `axis` (flattened when `None`): one broadcast
/// copy of `x` with a size-1 axis after `axis`, then a free reshape.
pub fn repeat(x: &Tensor, repeats: usize, axis: Option<isize>) -> Result<Tensor> {
    let (t, ax) = match axis {
        None => (reshape(x, &[-1])?, 0),
        Some(a) => (x.clone(), normalize_axis(a, x.ndim(), "repeat")?),
    };
    let mut out = t.shape().to_vec();
    out[ax] = out[ax].checked_mul(repeats).ok_or_else(|| {
        KilnError::invalid(
            "repeat",
            format!(
                "repeating an axis of {} by {repeats} overflows",
                t.shape()[ax]
            ),
        )
    })?;
    crate::hostmem::check_output("repeat", &out, x.dtype())?;
    let mut with_one: Vec<isize> = t.shape().iter().map(|d| *d as isize).collect();
    with_one.insert(ax + 1, 1);
    let mut wide = t.shape().to_vec();
    wide.insert(ax + 1, repeats);
    let b = broadcast_to(&reshape(&t, &with_one)?, &wide)?;
    reshape(&b, &out.iter().map(|d| *d as isize).collect::<Vec<_>>())
}

/// Constant padding: `widths[i] = (before, after)` for each axis.
pub fn pad(x: &Tensor, widths: &[(usize, usize)], value: impl Into<Scalar>) -> Result<Tensor> {
    if widths.len() != x.ndim() {
        return Err(KilnError::invalid(
            "pad",
            format!("{} pad widths for {} axes", widths.len(), x.ndim()),
        ));
    }
    let out: Vec<usize> = x
        .shape()
        .iter()
        .zip(widths)
        .map(|(d, (l, r))| d.checked_add(*l).and_then(|v| v.checked_add(*r)))
        .collect::<Option<_>>()
        .ok_or_else(|| {
            KilnError::invalid(
                "pad",
                format!("padding {:?} by {widths:?} overflows", x.shape()),
            )
        })?;
    crate::hostmem::check_output("pad", &out, x.dtype())?;
    apply(Prim::Pad(widths.to_vec(), value.into()), &[x])
}

fn host_indices(indices: &Tensor, len: usize, op: &str) -> Result<Vec<usize>> {
    if !indices.dtype().is_integer() {
        return Err(KilnError::not_allowed(
            op,
            &[indices.dtype()],
            "indices must have an integer dtype",
        ));
    }
    let v = indices.to_host()?.to_scalars();
    v.into_iter()
        .map(|s| {
            let i = match s {
                Scalar::Int(i) => i as i128,
                Scalar::UInt(u) => u as i128,
                _ => 0,
            };
            let j = if i < 0 { i + len as i128 } else { i };
            if j < 0 || j >= len as i128 {
                Err(KilnError::invalid(
                    op,
                    format!("index {i} is out of bounds for an axis of size {len}"),
                ))
            } else {
                Ok(j as usize)
            }
        })
        .collect()
}

/// NumPy `take`: elements at `indices` along `axis` (flattened when `None`); negative
/// indices count from the end; out-of-range indices are an error.
pub fn take(x: &Tensor, indices: &Tensor, axis: Option<isize>) -> Result<Tensor> {
    let (t, ax) = match axis {
        None => (reshape(x, &[-1])?, 0),
        Some(a) => (x.clone(), normalize_axis(a, x.ndim(), "take")?),
    };
    let idx = host_indices(indices, t.shape()[ax], "take")?;
    let r = select(&t, &idx, ax)?;
    let mut shape: Vec<isize> = t.shape()[..ax].iter().map(|d| *d as isize).collect();
    shape.extend(indices.shape().iter().map(|d| *d as isize));
    shape.extend(t.shape()[ax + 1..].iter().map(|d| *d as isize));
    reshape(&r, &shape)
}

/// NumPy `take_along_axis`.
pub fn take_along_axis(x: &Tensor, indices: &Tensor, axis: isize) -> Result<Tensor> {
    let ax = normalize_axis(axis, x.ndim(), "take_along_axis")?;
    if indices.ndim() != x.ndim() {
        return Err(KilnError::shape(
            "take_along_axis",
            x.shape(),
            indices.shape(),
            "indices must have the same number of axes",
        ));
    }
    for i in 0..x.ndim() {
        if i != ax
            && indices.shape()[i] != x.shape()[i]
            && indices.shape()[i] != 1
            && x.shape()[i] != 1
        {
            return Err(KilnError::shape(
                "take_along_axis",
                x.shape(),
                indices.shape(),
                format!("axis {i} does not broadcast"),
            ));
        }
    }
    let idx: Vec<i64> = host_indices(indices, x.shape()[ax], "take_along_axis")?
        .into_iter()
        .map(|i| i as i64)
        .collect();
    // Broadcast the non-axis dims of indices up to x's.
    let mut ishape = indices.shape().to_vec();
    for (i, d) in ishape.iter_mut().enumerate() {
        if i != ax {
            *d = (*d).max(x.shape()[i]);
        }
    }
    let host = ArrayData::from_shape_vec(indices.shape(), idx)?;
    let it = x.upload_like(host)?;
    let it = broadcast_to(&it, &ishape)?;
    apply(Prim::Gather(ax), &[x, &it])
}

/// Sorts along `axis` (ascending, NaN last, stable).
pub fn sort(x: &Tensor, axis: isize) -> Result<Tensor> {
    if x.ndim() == 0 {
        return Ok(x.clone());
    }
    let ax = normalize_axis(axis, x.ndim(), "sort")?;
    apply(Prim::Sort(ax), &[x])
}

/// Indices that sort along `axis` (index dtype, stable).
#[track_caller]
pub fn argsort(x: &Tensor, axis: isize) -> Result<Tensor> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("argsort", UnaryRule::Index, x.dtype(), &cfg)?;
    let x = if x.ndim() == 0 {
        reshape(x, &[1])?
    } else {
        x.clone()
    };
    let ax = normalize_axis(axis, x.ndim(), "argsort")?;
    let t = apply(Prim::Argsort(ax), &[&x])?;
    cast_internal(&t, out, "argsort")
}

/// One-hot encoding along a new last axis (`dtype` defaults to floatx); indices outside
/// `[0, num_classes)` give all-zero rows (as in Keras).
#[track_caller]
pub fn one_hot(indices: &Tensor, num_classes: usize, dtype: Option<DType>) -> Result<Tensor> {
    if !indices.dtype().is_integer() {
        return Err(KilnError::not_allowed(
            "one_hot",
            &[indices.dtype()],
            "indices must have an integer dtype",
        ));
    }
    let cfg = cfg_for_tensors(&[indices])?;
    let out: Vec<usize> = indices
        .shape()
        .iter()
        .copied()
        .chain([num_classes])
        .collect();
    crate::array::checked_numel(&out, "one_hot")?;
    let at = super::place_of(indices);
    crate::hostmem::check_output("one_hot", &out, dtype.unwrap_or(cfg.floatx))?;
    let (d, place) = super::resolve_creation_at("one_hot", dtype, cfg.floatx, at, &cfg)?;
    // The fused kernel writes on the indices' engine: only where the result belongs there
    // (not after a cpu-fallback decision).
    if place == at {
        if let Some(t) = super::prim::try_fused(Prim::OneHot(num_classes, d), &[indices])? {
            return Ok(t);
        }
    }
    let n = i64::try_from(num_classes).map_err(|_| {
        KilnError::invalid("one_hot", format!("{num_classes} classes do not fit int64"))
    })?;
    // The classes are built in the indices' dtype when every class fits it; else (300
    // classes would wrap in uint8) the indices are first widened by the promotion rule,
    // through the resolver, which picks a dtype the device holds (int32; int64 on CUDA).
    let last = Scalar::Int((n - 1).max(0));
    let fits = |d: DType| super::creation::fits("one_hot", last, d);
    let indices = if fits(indices.dtype()).is_ok() {
        indices.clone()
    } else {
        let wide = result_type(
            &[
                DTypeLike::Strong(indices.dtype()),
                DTypeLike::Strong(DType::Int32),
            ],
            cfg.floatx,
            cfg.x64,
        )?;
        cast_internal(indices, wide, "one_hot")?
    };
    fits(indices.dtype())?;
    let all = ArrayData::from(crate::hostmem::collect_for(
        n as usize,
        "one_hot",
        &[n as usize],
        0..n,
    )?);
    let classes = indices
        .upload_like(crate::precision::report::convert_with_report(&all, indices.dtype()).0)?;
    let hit = equal(&expand_dims(&indices, -1)?, &classes)?;
    cast_internal(&hit, d, "one_hot")
}

pub(crate) fn tri_mask(x: &Tensor, k: isize, upper: bool) -> Result<Tensor> {
    if x.ndim() < 2 {
        return Err(KilnError::invalid(
            if upper { "triu" } else { "tril" },
            "needs at least 2 axes",
        ));
    }
    let (m, n) = (x.shape()[x.ndim() - 2], x.shape()[x.ndim() - 1]);
    let total = crate::array::checked_numel(&[m, n], "triu")?;
    let mut v: Vec<bool> = Vec::new();
    v.try_reserve_exact(total)
        .map_err(|_| KilnError::OutOfMemory {
            op: if upper { "triu" } else { "tril" }.into(),
            dtype: DType::Bool,
            shape: vec![m, n],
            bytes: total as u128,
        })?;
    // Row i keeps columns j with j - i >= k (upper) or j - i <= k (lower): one split per
    // row, filled as two runs.
    for i in 0..m as isize {
        let split = (i + k + if upper { 0 } else { 1 }).clamp(0, n as isize) as usize;
        v.extend(std::iter::repeat_n(!upper, split));
        v.extend(std::iter::repeat_n(upper, n - split));
    }
    x.upload_like(ArrayData::from_shape_vec(&[m, n], v)?)
}

/// `[m, m]` bools, true on diagonal `k` (fallibly allocated: `m` comes from the user).
fn diag_mask(x: &Tensor, m: usize, k: isize) -> Result<Tensor> {
    let total = crate::array::checked_numel(&[m, m], "diag")?;
    let mut v = crate::hostmem::zeroed_for::<bool>(total, "diag", &[m, m])?;
    for i in 0..m as isize {
        let j = i + k;
        if (0..m as isize).contains(&j) {
            v[(i * m as isize + j) as usize] = true;
        }
    }
    x.upload_like(ArrayData::from_shape_vec(&[m, m], v)?)
}

pub(crate) fn zero_for(x: &Tensor) -> Scalar {
    if x.dtype() == DType::Bool {
        Scalar::Bool(false)
    } else {
        Scalar::Int(0)
    }
}

/// Upper triangle (elements below diagonal `k` zeroed).
pub fn triu(x: &Tensor, k: isize) -> Result<Tensor> {
    triangle(x, k, true)
}

/// Lower triangle (elements above diagonal `k` zeroed).
pub fn tril(x: &Tensor, k: isize) -> Result<Tensor> {
    triangle(x, k, false)
}

/// `triu`/`tril` of the last two axes: the engine's fused kernel (one pass that copies each
/// row's kept run and zero-fills the rest) where it has one, else [`composed::triangle`].
pub(crate) fn triangle(x: &Tensor, k: isize, upper: bool) -> Result<Tensor> {
    if x.ndim() < 2 {
        return Err(KilnError::invalid(
            if upper { "triu" } else { "tril" },
            format!("needs at least 2 axes, got a {}-d tensor", x.ndim()),
        ));
    }
    super::prim::apply_fused(Prim::Triangle { k, upper }, x, |x| {
        super::composed::triangle(x, k, upper)
    })
}

/// Diagonal `k` of a matrix, or a matrix with a vector on diagonal `k`.
pub fn diag(x: &Tensor, k: isize) -> Result<Tensor> {
    match x.ndim() {
        1 => {
            // `where(j - i == k, x_pad[i or j], 0)`: the padded vector broadcast along the
            // rows (k >= 0: it is indexed by the row) or the columns (k < 0).
            let n = x.shape()[0];
            let m = n.checked_add(k.unsigned_abs()).ok_or_else(|| {
                KilnError::invalid(
                    "diag",
                    format!("a diagonal {k} off a vector of {n} overflows"),
                )
            })?;
            crate::hostmem::check_output("diag", &[m, m], x.dtype())?;
            let mask = diag_mask(x, m, k)?;
            let xp = pad(x, &[(0, k.unsigned_abs())], zero_for(x))?;
            let v = if k >= 0 {
                reshape(&xp, &[m as isize, 1])?
            } else {
                reshape(&xp, &[1, m as isize])?
            };
            r#where(&mask, &v, Operand::Scalar(zero_for(x)))
        }
        2 => {
            let flat = reshape(x, &[-1])?;
            apply(
                Prim::Slice(vec![diagonal_spec(x.shape()[0], x.shape()[1], k)]),
                &[&flat],
            )
        }
        d => Err(KilnError::invalid(
            "diag",
            format!("input must be 1-d or 2-d, got {d}-d"),
        )),
    }
}

/// Diagonal `k` of an `[m, n]` matrix as one strided slice of its `m * n` flat elements
/// (step `n + 1`): a copy of the diagonal alone, with no index list to build or gather.
fn diagonal_spec(m: usize, n: usize, k: isize) -> SliceSpec {
    let (row0, col0) = if k >= 0 {
        (0, k.unsigned_abs())
    } else {
        (k.unsigned_abs(), 0)
    };
    let len = m.saturating_sub(row0).min(n.saturating_sub(col0));
    if len == 0 {
        return SliceSpec {
            start: 0,
            end: 0,
            step: 1,
        };
    }
    // In range: the last element, (row0 + len - 1) * n + col0 + len - 1, is below m * n.
    let start = row0 * n + col0;
    SliceSpec {
        start,
        end: start + (len - 1) * (n + 1) + 1,
        step: (n + 1) as isize,
    }
}

/// Sum along a diagonal of the last two axes (`axis1 = 0`, `axis2 = 1` in NumPy terms for
/// matrices); dtype as `sum`.
#[track_caller]
pub fn trace(x: &Tensor, offset: isize) -> Result<Tensor> {
    if x.ndim() < 2 {
        return Err(KilnError::invalid("trace", "needs at least 2 axes"));
    }
    // NumPy's default axes are the first two; move them last (a matrix stays as it is).
    let t = if x.ndim() == 2 {
        x.clone()
    } else {
        let mut perm: Vec<usize> = (2..x.ndim()).collect();
        perm.extend([0, 1]);
        transpose(x, Some(&perm))?
    };
    let (m, n) = (x.shape()[0], x.shape()[1]);
    let mut s: Vec<isize> = t.shape()[..t.ndim() - 2]
        .iter()
        .map(|d| *d as isize)
        .collect();
    s.push((m * n) as isize);
    let flat = reshape(&t, &s)?;
    let mut specs: Vec<SliceSpec> = flat.shape()[..flat.ndim() - 1]
        .iter()
        .map(|d| SliceSpec {
            start: 0,
            end: *d,
            step: 1,
        })
        .collect();
    specs.push(diagonal_spec(m, n, offset));
    let d = apply(Prim::Slice(specs), &[&flat])?;
    super::reduce::sum(&d, Some(&[-1]), false)
}

/// Indices of the nonzero elements, one index tensor per axis (C order), index dtype.
///
/// ```
/// use kiln::{ops, ArrayData, Device, convert_to_tensor};
/// let x = convert_to_tensor(&ArrayData::from_shape_vec(&[2, 2], vec![0, 3, 4, 0]).unwrap(), None, &Device::Cpu).unwrap();
/// let nz = ops::nonzero(&x).unwrap();
/// assert_eq!(nz[0].to_vec::<i32>().unwrap(), vec![0, 1]);
/// assert_eq!(nz[1].to_vec::<i32>().unwrap(), vec![1, 0]);
/// ```
#[track_caller]
pub fn nonzero(x: &Tensor) -> Result<Vec<Tensor>> {
    let cfg = cfg_for_tensors(&[x])?;
    let out = rules::unary("nonzero", UnaryRule::Index, x.dtype(), &cfg)?;
    let mask = super::elementwise::not_equal(x, Operand::Scalar(zero_for(x)))?.to_host()?;
    let mask = mask.as_array::<bool>()?;
    let shape = x.shape().to_vec();
    let dims: Vec<usize> = if shape.is_empty() {
        vec![1]
    } else {
        shape.clone()
    };
    let flat: std::borrow::Cow<'_, [bool]> = match mask.as_slice() {
        Some(s) => std::borrow::Cow::Borrowed(s),
        None => std::borrow::Cow::Owned(mask.iter().copied().collect()),
    };
    let count = flat.iter().filter(|m| **m).count();
    // Built in the index dtype itself where every index fits (a cast of each column cost a
    // quarter of the op).
    let cols = if out == DType::Int32 && dims.iter().all(|&d| d <= i32::MAX as usize) {
        nonzero_columns(&flat, &dims, count, out, |i| i as i32)?
    } else {
        nonzero_columns(&flat, &dims, count, DType::Int64, |i| i as i64)?
    };
    cols.into_iter()
        .map(|v| {
            let t = x.upload_like(v)?;
            cast_internal(&t, out, "nonzero")
        })
        .collect()
}

/// [`nonzero`]'s index columns, one per axis of `dims`, for the `count` true elements of
/// `flat` (C order), each index converted by `idx` into the output's index type.
fn nonzero_columns<I: Copy + Default>(
    flat: &[bool],
    dims: &[usize],
    count: usize,
    dtype: DType,
    idx: impl Fn(usize) -> I,
) -> Result<Vec<ArrayData>>
where
    ArrayData: From<Vec<I>>,
{
    let nd = dims.len();
    // One index column per axis with a slot past the count: every element of a row writes
    // its last-axis index at slot k and a nonzero one advances k (branch-free: a branch an
    // element mispredicts on random data, 0.28x NumPy on 10M); the leading axes' indices
    // are constant along a row and filled once per row.
    let mut cols: Vec<Vec<I>> = Vec::with_capacity(nd);
    for _ in 0..nd {
        let mut c = Vec::new();
        c.try_reserve_exact(count + 1)
            .map_err(|_| KilnError::OutOfMemory {
                op: "nonzero".into(),
                dtype,
                shape: vec![nd, count],
                bytes: nd as u128 * count as u128 * std::mem::size_of::<I>() as u128,
            })?;
        c.resize(count + 1, I::default());
        cols.push(c);
    }
    let last = dims[nd - 1];
    let mut outer = vec![0usize; nd - 1];
    let mut k = 0usize;
    if last > 0 {
        let (lead, tail) = cols.split_at_mut(nd - 1);
        let tail = &mut tail[0];
        for row in flat.chunks(last) {
            let k0 = k;
            for (j, &m) in row.iter().enumerate() {
                tail[k] = idx(j);
                k += usize::from(m);
            }
            for (c, p) in lead.iter_mut().zip(&outer) {
                c[k0..k].fill(idx(*p));
            }
            for d in (0..nd - 1).rev() {
                outer[d] += 1;
                if outer[d] < dims[d] {
                    break;
                }
                outer[d] = 0;
            }
        }
    }
    Ok(cols
        .into_iter()
        .map(|mut c| {
            c.truncate(count);
            ArrayData::from(c)
        })
        .collect())
}
