//! The meta engine: storage that is only a dtype and a shape, and primitives that compute the
//! output's dtype and shape without touching values. Running an op on meta tensors is how
//! [`crate::ops::output_spec`] answers Keras's `compute_output_spec`: the op's own frontend
//! code (dtype rules, the resolver, broadcasting, compositions) runs unchanged, so the answer
//! is exactly what the op would give, for a fraction of the cost and no memory.
//!
//! A meta engine stands in for a real one (`kind()` is the real engine's, so the resolver and
//! placement decide as they would there); host data uploaded by an op (scalars, index
//! buffers) is kept, so ops that read small constants back still work, but reading a meta
//! tensor's values is an error.

use super::{
    Activation, ArgOp, Backend, BackendKind, BinaryOp, CmpOp, FusedReduce, Normalize,
    OptimizerStep, ReduceOp, ScanOp, SliceSpec, Storage, UnaryOp,
};
use crate::array::ArrayData;
use crate::dtype::DType;
use crate::element::Scalar;
use crate::error::{KilnError, Result};
use std::sync::Arc;

/// A meta engine standing in for `stands_for` (whose storage it can describe when an op
/// hands it some).
#[derive(Debug)]
pub struct MetaBackend {
    stands_for: Arc<dyn Backend>,
}

impl MetaBackend {
    /// A meta engine for the real engine `stands_for`.
    pub fn new(stands_for: Arc<dyn Backend>) -> MetaBackend {
        MetaBackend { stands_for }
    }
}

struct MetaStore {
    dtype: DType,
    shape: Vec<usize>,
    data: Option<ArrayData>,
}

/// A storage of this dtype and shape.
pub(crate) fn spec_storage(dtype: DType, shape: &[usize]) -> Storage {
    Storage(Arc::new(MetaStore {
        dtype,
        shape: shape.to_vec(),
        data: None,
    }))
}

fn out(dtype: DType, shape: Vec<usize>) -> Result<Storage> {
    Ok(Storage(Arc::new(MetaStore {
        dtype,
        shape,
        data: None,
    })))
}

impl MetaBackend {
    fn spec(&self, s: &Storage) -> Result<(DType, Vec<usize>)> {
        match s.0.downcast_ref::<MetaStore>() {
            Some(m) => Ok((m.dtype, m.shape.clone())),
            None => self.stands_for.describe(s),
        }
    }
    fn reduced(&self, s: &Storage, axes: &[usize], keepdims: bool) -> Result<Vec<usize>> {
        let (_, shape) = self.spec(s)?;
        Ok(shape
            .iter()
            .enumerate()
            .filter_map(|(i, d)| match (axes.contains(&i), keepdims) {
                (false, _) => Some(*d),
                (true, true) => Some(1),
                (true, false) => None,
            })
            .collect())
    }
}

fn no_values(op: &str) -> KilnError {
    KilnError::invalid(
        op,
        "a meta tensor (from ops::output_spec) has a dtype and a shape but no values; this op needs values to know its output",
    )
}

impl Backend for MetaBackend {
    fn name(&self) -> &'static str {
        "meta"
    }
    fn kind(&self) -> BackendKind {
        self.stands_for.kind()
    }
    fn describe(&self, s: &Storage) -> Result<(DType, Vec<usize>)> {
        self.spec(s)
    }
    fn upload(&self, data: ArrayData) -> Result<Storage> {
        Ok(Storage(Arc::new(MetaStore {
            dtype: data.dtype(),
            shape: data.shape().to_vec(),
            data: Some(data),
        })))
    }
    fn download(&self, s: &Storage) -> Result<ArrayData> {
        match s.0.downcast_ref::<MetaStore>() {
            Some(MetaStore { data: Some(d), .. }) => Ok(d.clone()),
            Some(_) => Err(no_values("download")),
            None => self.stands_for.download(s),
        }
    }
    fn cast(&self, s: &Storage, to: DType) -> Result<Storage> {
        out(to, self.spec(s)?.1)
    }
    fn unary(&self, op: UnaryOp, s: &Storage) -> Result<Storage> {
        let (d, shape) = self.spec(s)?;
        let dtype = match op {
            UnaryOp::IsNan | UnaryOp::IsInf | UnaryOp::IsFinite | UnaryOp::LogicalNot => {
                DType::Bool
            }
            UnaryOp::Abs | UnaryOp::Real | UnaryOp::Imag if d.is_complex() => {
                if d == DType::Complex64 {
                    DType::Float32
                } else {
                    DType::Float64
                }
            }
            _ => d,
        };
        out(dtype, shape)
    }
    fn binary(&self, _op: BinaryOp, a: &Storage, _b: &Storage, shape: &[usize]) -> Result<Storage> {
        out(self.spec(a)?.0, shape.to_vec())
    }
    fn compare(&self, _op: CmpOp, _a: &Storage, _b: &Storage, shape: &[usize]) -> Result<Storage> {
        out(DType::Bool, shape.to_vec())
    }
    fn select(&self, _c: &Storage, a: &Storage, _b: &Storage, shape: &[usize]) -> Result<Storage> {
        out(self.spec(a)?.0, shape.to_vec())
    }
    fn reduce(&self, op: ReduceOp, s: &Storage, axes: &[usize], keepdims: bool) -> Result<Storage> {
        let d = match op {
            ReduceOp::All | ReduceOp::Any => DType::Bool,
            _ => self.spec(s)?.0,
        };
        out(d, self.reduced(s, axes, keepdims)?)
    }
    fn arg_reduce(&self, _op: ArgOp, s: &Storage, axis: usize) -> Result<Storage> {
        out(DType::Int64, self.reduced(s, &[axis], false)?)
    }
    fn scan(&self, _op: ScanOp, s: &Storage, _axis: usize) -> Result<Storage> {
        let (d, shape) = self.spec(s)?;
        out(d, shape)
    }
    fn matmul(&self, a: &Storage, b: &Storage, ta: bool, tb: bool) -> Result<Storage> {
        let (d, sa) = self.spec(a)?;
        let (_, sb) = self.spec(b)?;
        if sa.len() < 2 || sb.len() < 2 {
            return Err(KilnError::invalid(
                "matmul",
                "the engine's matmul takes operands of at least 2 axes",
            ));
        }
        let (na, nb) = (sa.len(), sb.len());
        let m = if ta { sa[na - 1] } else { sa[na - 2] };
        let n = if tb { sb[nb - 2] } else { sb[nb - 1] };
        let mut shape = crate::shape::broadcast_shapes(&sa[..na - 2], &sb[..nb - 2], "matmul")?;
        shape.extend([m, n]);
        out(d, shape)
    }
    fn reshape(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        out(self.spec(s)?.0, shape.to_vec())
    }
    fn permute(&self, s: &Storage, axes: &[usize]) -> Result<Storage> {
        let (d, shape) = self.spec(s)?;
        out(d, axes.iter().map(|a| shape[*a]).collect())
    }
    fn broadcast_to(&self, s: &Storage, shape: &[usize]) -> Result<Storage> {
        out(self.spec(s)?.0, shape.to_vec())
    }
    fn slice(&self, s: &Storage, specs: &[SliceSpec]) -> Result<Storage> {
        let (d, _) = self.spec(s)?;
        let shape = specs
            .iter()
            .map(|p| {
                let len = p.end.saturating_sub(p.start);
                let step = p.step.unsigned_abs().max(1);
                len.div_ceil(step)
            })
            .collect();
        out(d, shape)
    }
    fn concat(&self, parts: &[&Storage], axis: usize) -> Result<Storage> {
        let (d, mut shape) = self.spec(parts.first().ok_or_else(|| no_values("concat"))?)?;
        shape[axis] = parts
            .iter()
            .map(|p| self.spec(p).map(|(_, s)| s[axis]))
            .sum::<Result<usize>>()?;
        out(d, shape)
    }
    fn index_select(&self, s: &Storage, indices: &[usize], axis: usize) -> Result<Storage> {
        let (d, mut shape) = self.spec(s)?;
        shape[axis] = indices.len();
        out(d, shape)
    }
    fn index_add(&self, s: &Storage, _indices: &[usize], axis: usize, n: usize) -> Result<Storage> {
        let (d, mut shape) = self.spec(s)?;
        shape[axis] = n;
        out(d, shape)
    }
    fn gather(&self, s: &Storage, indices: &Storage, _axis: usize) -> Result<Storage> {
        out(self.spec(s)?.0, self.spec(indices)?.1)
    }
    fn pad(&self, s: &Storage, widths: &[(usize, usize)], _value: Scalar) -> Result<Storage> {
        let (d, shape) = self.spec(s)?;
        out(
            d,
            shape
                .iter()
                .zip(widths)
                .map(|(n, (l, r))| n + l + r)
                .collect(),
        )
    }
    fn sort(&self, s: &Storage, _axis: usize) -> Result<Storage> {
        let (d, shape) = self.spec(s)?;
        out(d, shape)
    }
    fn argsort(&self, s: &Storage, _axis: usize) -> Result<Storage> {
        out(DType::Int64, self.spec(s)?.1)
    }
    fn reduce_fused(
        &self,
        op: FusedReduce,
        s: &Storage,
        axes: &[usize],
        keepdims: bool,
    ) -> Result<Option<Storage>> {
        let d = match op {
            FusedReduce::CountNonzero => DType::Int64,
            _ => self.spec(s)?.0,
        };
        out(d, self.reduced(s, axes, keepdims)?).map(Some)
    }
    fn activation(&self, _act: Activation, s: &Storage) -> Result<Option<Storage>> {
        let (d, shape) = self.spec(s)?;
        out(d, shape).map(Some)
    }
    fn normalize(&self, _op: Normalize, s: &Storage, _axis: usize) -> Result<Option<Storage>> {
        let (d, shape) = self.spec(s)?;
        out(d, shape).map(Some)
    }
    fn one_hot(&self, indices: &Storage, classes: usize, dtype: DType) -> Result<Option<Storage>> {
        let (_, mut shape) = self.spec(indices)?;
        shape.push(classes);
        out(dtype, shape).map(Some)
    }
    fn optimizer_step(
        &self,
        _s: OptimizerStep,
        _w: &Storage,
        _g: &Storage,
        _slots: &[&Storage],
    ) -> Result<Option<Vec<Storage>>> {
        Ok(None)
    }
}
