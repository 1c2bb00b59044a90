//! safetensors files (Hugging Face's format: a JSON header of names, dtypes, shapes and byte
//! offsets, then the raw little-endian data), through the `safetensors` crate, which checks
//! the header's size (100 MB at most), its JSON, and that every tensor's offsets lie inside
//! the file, are contiguous and match its shape before any tensor is read.
//!
//! Every kiln dtype safetensors has is carried exactly: bool, the integers, float16,
//! bfloat16, float32, float64 and complex64. complex128 has no safetensors dtype and is
//! refused on write; safetensors' 8-bit and smaller float types are refused on read.

use super::npy::{decode_le, le_bytes};
use crate::array::ArrayData;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use safetensors::{Dtype, SafeTensors, View};
use std::borrow::Cow;
use std::path::Path;

fn to_st(d: DType) -> Option<Dtype> {
    Some(match d {
        DType::Bool => Dtype::BOOL,
        DType::UInt8 => Dtype::U8,
        DType::Int8 => Dtype::I8,
        DType::Int16 => Dtype::I16,
        DType::UInt16 => Dtype::U16,
        DType::Float16 => Dtype::F16,
        DType::BFloat16 => Dtype::BF16,
        DType::Int32 => Dtype::I32,
        DType::UInt32 => Dtype::U32,
        DType::Float32 => Dtype::F32,
        DType::Complex64 => Dtype::C64,
        DType::Float64 => Dtype::F64,
        DType::Int64 => Dtype::I64,
        DType::UInt64 => Dtype::U64,
        DType::Complex128 => return None,
    })
}

fn from_st(d: Dtype) -> Option<DType> {
    [
        DType::Bool,
        DType::UInt8,
        DType::Int8,
        DType::Int16,
        DType::UInt16,
        DType::Float16,
        DType::BFloat16,
        DType::Int32,
        DType::UInt32,
        DType::Float32,
        DType::Complex64,
        DType::Float64,
        DType::Int64,
        DType::UInt64,
    ]
    .into_iter()
    .find(|k| to_st(*k) == Some(d))
}

/// Reads every tensor of a safetensors file, in the order of their data in the file.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<Vec<(String, ArrayData)>> {
    let p = path.as_ref();
    let name = p.display().to_string();
    let fmt = |m: String| KilnError::Format {
        path: name.clone(),
        message: m,
    };
    let io = |e: std::io::Error| KilnError::Io {
        path: name.clone(),
        message: e.to_string(),
    };
    let mut f = std::fs::File::open(p).map_err(io)?;
    let len = f.metadata().map_err(io)?.len();
    let mut buf = Vec::new();
    buf.try_reserve_exact(len as usize)
        .map_err(|_| fmt(format!("cannot allocate {len} bytes to read the file")))?;
    std::io::Read::read_to_end(&mut f, &mut buf).map_err(io)?;
    safetensors_from_bytes(&buf, &name)
}

/// Reads every tensor of safetensors bytes (a file's, or an archive member's), in the order
/// of their data; `label` names where they came from in errors.
pub fn safetensors_from_bytes(buf: &[u8], label: &str) -> Result<Vec<(String, ArrayData)>> {
    let name = label.to_string();
    let fmt = |m: String| KilnError::Format {
        path: name.clone(),
        message: m,
    };
    let st = SafeTensors::deserialize(buf)
        .map_err(|e| fmt(format!("not a valid safetensors file: {e}")))?;
    let (_, meta) = SafeTensors::read_metadata(buf)
        .map_err(|e| fmt(format!("not a valid safetensors file: {e}")))?;
    let mut out = Vec::with_capacity(st.len());
    for key in meta.offset_keys() {
        let shown = super::zipread::shown(&key);
        let t = st
            .tensor(&key)
            .map_err(|e| fmt(format!("tensor {shown}: {e}")))?;
        let d = from_st(t.dtype()).ok_or_else(|| {
            fmt(format!(
                "tensor {shown} has dtype {:?}, which kiln does not have",
                t.dtype()
            ))
        })?;
        let a = decode_le(d, t.shape(), t.data(), &format!("{name}[{shown}]"))?;
        out.push((key, a));
    }
    Ok(out)
}

struct Tensor<'a> {
    dtype: Dtype,
    shape: &'a [usize],
    data: Vec<u8>,
}

impl View for &Tensor<'_> {
    fn dtype(&self) -> Dtype {
        self.dtype
    }
    fn shape(&self) -> &[usize] {
        self.shape
    }
    fn data(&self) -> Cow<'_, [u8]> {
        Cow::Borrowed(&self.data)
    }
    fn data_len(&self) -> usize {
        self.data.len()
    }
}

/// Writes arrays to a safetensors file (names must be unique; complex128 has no
/// safetensors dtype).
pub fn write_safetensors(path: impl AsRef<Path>, arrays: &[(&str, &ArrayData)]) -> Result<()> {
    let p = path.as_ref();
    let bytes = safetensors_to_bytes(arrays)?;
    std::fs::write(p, bytes).map_err(|e| KilnError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    })
}

/// The safetensors bytes of `arrays` (see [`write_safetensors`]).
pub fn safetensors_to_bytes(arrays: &[(&str, &ArrayData)]) -> Result<Vec<u8>> {
    let mut tensors = Vec::with_capacity(arrays.len());
    for (i, (k, a)) in arrays.iter().enumerate() {
        if arrays[..i].iter().any(|(j, _)| j == k) {
            return Err(KilnError::invalid(
                "write_safetensors",
                format!("two arrays are named {k:?}"),
            ));
        }
        let dtype = to_st(a.dtype()).ok_or_else(|| {
            KilnError::invalid(
                "write_safetensors",
                format!("{k:?} is {}, which safetensors has no dtype for; cast it (to complex64) or use .npz", a.dtype()),
            )
        })?;
        let mut data = Vec::new();
        le_bytes(a, &mut data);
        tensors.push((
            k.to_string(),
            Tensor {
                dtype,
                shape: a.shape(),
                data,
            },
        ));
    }
    let views = tensors.iter().map(|(k, t)| (k.as_str(), t));
    safetensors::serialize(views, None)
        .map_err(|e| KilnError::invalid("write_safetensors", e.to_string()))
}
