//! `.npy` reading and writing (format versions 1.0, 2.0 and 3.0), every kiln dtype, both
//! byte orders, C and Fortran order.
//!
//! Hostile input is refused with an error, never a panic: object (pickle) arrays,
//! truncated files, headers that claim more data than the file holds, shapes whose byte
//! count overflows, oversized headers. Nothing is allocated beyond what the file holds.
//!
//! bfloat16 has no NumPy descr (NumPy writes ml_dtypes' bfloat16 as an anonymous `<V2`),
//! so kiln writes the descr `'bfloat16'`, which `np.load` reads back once `ml_dtypes` is
//! imported; an anonymous `V2` is refused rather than guessed.

use crate::array::{checked_numel, ArrayData, HostElement};
use crate::dtype::DType;
use crate::element::{C128, C64};
use crate::error::{KilnError, Result};
use half::{bf16, f16};
use ndarray::{ArrayD, IxDyn, ShapeBuilder};
use std::io::{Read, Write};
use std::path::Path;

const MAGIC: &[u8] = b"\x93NUMPY";
/// NumPy's own default limit on header length (`max_header_size`).
const MAX_HEADER: usize = 10_000;

fn fmt_err(path: &str, m: impl Into<String>) -> KilnError {
    KilnError::Format {
        path: path.to_string(),
        message: m.into(),
    }
}

fn descr_of(d: DType) -> &'static str {
    match d {
        DType::Bool => "|b1",
        DType::Int8 => "|i1",
        DType::UInt8 => "|u1",
        DType::Int16 => "<i2",
        DType::Int32 => "<i4",
        DType::Int64 => "<i8",
        DType::UInt16 => "<u2",
        DType::UInt32 => "<u4",
        DType::UInt64 => "<u8",
        DType::Float16 => "<f2",
        DType::BFloat16 => "bfloat16",
        DType::Float32 => "<f4",
        DType::Float64 => "<f8",
        DType::Complex64 => "<c8",
        DType::Complex128 => "<c16",
    }
}

/// Parses a descr into (dtype, big_endian).
fn parse_descr(descr: &str, path: &str) -> Result<(DType, bool)> {
    if descr == "bfloat16" {
        return Ok((DType::BFloat16, false));
    }
    let (order, code) = match descr.chars().next() {
        Some(c @ ('<' | '>' | '|' | '=')) => (c, &descr[1..]),
        _ => ('=', descr),
    };
    let big = order == '>';
    let d = match code {
        "b1" | "?" => DType::Bool,
        "i1" => DType::Int8,
        "i2" => DType::Int16,
        "i4" => DType::Int32,
        "i8" => DType::Int64,
        "u1" => DType::UInt8,
        "u2" => DType::UInt16,
        "u4" => DType::UInt32,
        "u8" => DType::UInt64,
        "f2" => DType::Float16,
        "f4" => DType::Float32,
        "f8" => DType::Float64,
        "c8" => DType::Complex64,
        "c16" => DType::Complex128,
        "O" => {
            return Err(fmt_err(path, "object arrays need pickle, which kiln never loads (it can run arbitrary code); save a numeric array instead"))
        }
        c if c.starts_with('V') => {
            return Err(fmt_err(path, format!("void dtype {descr:?} has no meaning kiln can trust (NumPy writes ml_dtypes' bfloat16 this way); save with kiln, or view as uint16")))
        }
        _ => return Err(fmt_err(path, format!("unsupported dtype descr {descr:?}"))),
    };
    Ok((d, big))
}

/// The three header fields.
#[derive(Debug, PartialEq)]
struct Header {
    descr: String,
    fortran: bool,
    shape: Vec<usize>,
}

/// A small parser for the Python dict literal NumPy writes.
fn parse_header(h: &str, path: &str) -> Result<Header> {
    // The header may be 10 kB of anything: show its start, escaped.
    let shown: String = format!("{h:?}").chars().take(160).collect();
    let more = if h.len() > 120 { "..." } else { "" };
    let bad = |m: &str| fmt_err(path, format!("malformed .npy header ({m}): {shown}{more}"));
    let s = h.trim();
    let s = s
        .strip_prefix('{')
        .and_then(|s| s.trim_end().strip_suffix('}'))
        .ok_or_else(|| bad("not a dict"))?;
    let mut descr = None;
    let mut fortran = None;
    let mut shape = None;
    let mut rest = s.trim();
    while !rest.is_empty() {
        let q = rest.chars().next().ok_or_else(|| bad("empty"))?;
        if q != '\'' && q != '"' {
            return Err(bad("expected a quoted key"));
        }
        let end = rest[1..].find(q).ok_or_else(|| bad("unterminated key"))? + 1;
        let key = &rest[1..end];
        rest = rest[end + 1..]
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(|| bad("missing ':'"))?
            .trim_start();
        match key {
            "descr" => {
                let q = rest.chars().next().ok_or_else(|| bad("missing descr"))?;
                if q != '\'' && q != '"' {
                    return Err(bad(
                        "descr must be a string (structured dtypes are not supported)",
                    ));
                }
                let end = rest[1..].find(q).ok_or_else(|| bad("unterminated descr"))? + 1;
                descr = Some(rest[1..end].to_string());
                rest = &rest[end + 1..];
            }
            "fortran_order" => {
                if let Some(r) = rest.strip_prefix("True") {
                    fortran = Some(true);
                    rest = r;
                } else if let Some(r) = rest.strip_prefix("False") {
                    fortran = Some(false);
                    rest = r;
                } else {
                    return Err(bad("fortran_order must be True or False"));
                }
            }
            "shape" => {
                let r = rest
                    .strip_prefix('(')
                    .ok_or_else(|| bad("shape must be a tuple"))?;
                let end = r.find(')').ok_or_else(|| bad("unterminated shape"))?;
                let dims = r[..end]
                    .split(',')
                    .map(|p| p.trim())
                    .filter(|p| !p.is_empty())
                    .map(|p| {
                        p.trim_end_matches('L')
                            .parse::<usize>()
                            .map_err(|_| bad("shape entries must be non-negative integers"))
                    })
                    .collect::<Result<Vec<_>>>()?;
                shape = Some(dims);
                rest = &r[end + 1..];
            }
            _ => return Err(bad(&format!("unknown key {key:?}"))),
        }
        rest = rest.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest).trim_start();
    }
    Ok(Header {
        descr: descr.ok_or_else(|| bad("no descr"))?,
        fortran: fortran.ok_or_else(|| bad("no fortran_order"))?,
        shape: shape.ok_or_else(|| bad("no shape"))?,
    })
}

fn typed<T: HostElement>(
    shape: &[usize],
    fortran: bool,
    v: Vec<T>,
    path: &str,
) -> Result<ArrayData> {
    let a = if fortran {
        ArrayD::from_shape_vec(IxDyn(shape).f(), v).map(|a| a.as_standard_layout().into_owned())
    } else {
        ArrayD::from_shape_vec(IxDyn(shape), v)
    }
    .map_err(|e| fmt_err(path, e.to_string()))?;
    Ok(T::wrap(a))
}

enum ArrayDataVec {
    Bool(Vec<bool>),
    I8(Vec<i8>),
    I16(Vec<i16>),
    I32(Vec<i32>),
    I64(Vec<i64>),
    U8(Vec<u8>),
    U16(Vec<u16>),
    U32(Vec<u32>),
    U64(Vec<u64>),
    BF16(Vec<bf16>),
    F16(Vec<f16>),
    F32(Vec<f32>),
    F64(Vec<f64>),
    C64(Vec<C64>),
    C128(Vec<C128>),
}

impl ArrayDataVec {
    fn shape(self, shape: &[usize], fortran: bool, path: &str) -> Result<ArrayData> {
        match self {
            ArrayDataVec::Bool(v) => typed(shape, fortran, v, path),
            ArrayDataVec::I8(v) => typed(shape, fortran, v, path),
            ArrayDataVec::I16(v) => typed(shape, fortran, v, path),
            ArrayDataVec::I32(v) => typed(shape, fortran, v, path),
            ArrayDataVec::I64(v) => typed(shape, fortran, v, path),
            ArrayDataVec::U8(v) => typed(shape, fortran, v, path),
            ArrayDataVec::U16(v) => typed(shape, fortran, v, path),
            ArrayDataVec::U32(v) => typed(shape, fortran, v, path),
            ArrayDataVec::U64(v) => typed(shape, fortran, v, path),
            ArrayDataVec::BF16(v) => typed(shape, fortran, v, path),
            ArrayDataVec::F16(v) => typed(shape, fortran, v, path),
            ArrayDataVec::F32(v) => typed(shape, fortran, v, path),
            ArrayDataVec::F64(v) => typed(shape, fortran, v, path),
            ArrayDataVec::C64(v) => typed(shape, fortran, v, path),
            ArrayDataVec::C128(v) => typed(shape, fortran, v, path),
        }
    }
}

/// Decodes `.npy` bytes from a reader. `path` is only for messages. Reads at most the
/// declared data size.
pub fn decode_npy(r: impl Read, path: &str) -> Result<ArrayData> {
    decode_npy_limited(r, path, u64::MAX)
}

/// [`decode_npy`] of a source known to hold `available` bytes (a file's length, a zip
/// member's declared size): a header that declares more is refused before anything is
/// allocated.
pub(crate) fn decode_npy_limited(
    mut r: impl Read,
    path: &str,
    available: u64,
) -> Result<ArrayData> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| fmt_err(path, "truncated: shorter than the 8-byte .npy preamble"))?;
    if &pre[..6] != MAGIC {
        return Err(fmt_err(path, "not a .npy file (bad magic)"));
    }
    let hlen = match pre[6] {
        1 => {
            let mut b = [0u8; 2];
            r.read_exact(&mut b)
                .map_err(|_| fmt_err(path, "truncated header length"))?;
            u16::from_le_bytes(b) as usize
        }
        2 | 3 => {
            let mut b = [0u8; 4];
            r.read_exact(&mut b)
                .map_err(|_| fmt_err(path, "truncated header length"))?;
            u32::from_le_bytes(b) as usize
        }
        v => {
            return Err(fmt_err(
                path,
                format!("unsupported .npy format version {v}.{}", pre[7]),
            ))
        }
    };
    if hlen > MAX_HEADER {
        return Err(fmt_err(
            path,
            format!(
                "header of {hlen} bytes exceeds the {MAX_HEADER}-byte limit NumPy also applies"
            ),
        ));
    }
    let mut hb = Vec::new();
    r.by_ref()
        .take(hlen as u64)
        .read_to_end(&mut hb)
        .map_err(|e| fmt_err(path, e.to_string()))?;
    if hb.len() != hlen {
        return Err(fmt_err(
            path,
            format!(
                "truncated: header claims {hlen} bytes, file has {}",
                hb.len()
            ),
        ));
    }
    let h = std::str::from_utf8(&hb).map_err(|_| fmt_err(path, "header is not text"))?;
    let header = parse_header(h, path)?;
    let (dtype, big) = parse_descr(&header.descr, path)?;
    let n = checked_numel(&header.shape, "read_npy")
        .map_err(|_| fmt_err(path, format!("shape {:?} overflows", header.shape)))?;
    let nbytes = n.checked_mul(dtype.itemsize()).ok_or_else(|| {
        fmt_err(
            path,
            format!(
                "shape {:?} of {dtype} overflows the byte count",
                header.shape
            ),
        )
    })?;
    // A zero-size array whose other axes could never be addressed (NumPy accepts
    // `(0, 2**62)`; an op over its empty axis would then ask for the rest).
    let nonzero = header
        .shape
        .iter()
        .filter(|d| **d != 0)
        .try_fold(dtype.itemsize(), |a, d| a.checked_mul(*d))
        .filter(|b| *b <= isize::MAX as usize);
    if nonzero.is_none() {
        return Err(fmt_err(
            path,
            format!(
                "shape {:?} of {dtype}: its non-empty axes alone exceed the address space",
                header.shape
            ),
        ));
    }
    let preamble = (if pre[6] == 1 { 10 } else { 12 }) + hlen as u64;
    if preamble.saturating_add(nbytes as u64) > available {
        return Err(fmt_err(
            path,
            format!(
                "truncated: header declares shape {:?} of {dtype} ({nbytes} bytes) but the source holds only {} data bytes",
                header.shape,
                available.saturating_sub(preamble)
            ),
        ));
    }
    let oom = || KilnError::OutOfMemory {
        op: format!("read_npy ({path})"),
        dtype,
        shape: header.shape.clone(),
        bytes: nbytes as u128,
    };
    let truncated = |got: usize| {
        fmt_err(
            path,
            format!("truncated: header declares shape {:?} of {dtype} ({nbytes} bytes) but only {got} data bytes follow", header.shape),
        )
    };
    read_data(dtype, big, &mut r, n, path, oom, truncated)?.shape(
        &header.shape,
        header.fortran,
        path,
    )
}

/// Fills `bytes` from `r`; the count read so far where the source ends early.
fn fill(r: &mut impl Read, bytes: &mut [u8], path: &str) -> Result<std::result::Result<(), usize>> {
    let mut at = 0;
    while at < bytes.len() {
        match r.read(&mut bytes[at..]) {
            Ok(0) => return Ok(Err(at)),
            Ok(k) => at += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(fmt_err(path, e.to_string())),
        }
    }
    Ok(Ok(()))
}

/// `n` elements of `T` read straight into their final buffer (one allocation of the data's
/// size: no byte buffer beside it), byte-swapped in place from big-endian, `lane` bytes per
/// swapped scalar.
fn read_pod<T: Copy + Default>(
    r: &mut impl Read,
    n: usize,
    big: bool,
    lane: usize,
    path: &str,
    oom: &dyn Fn() -> KilnError,
    truncated: &dyn Fn(usize) -> KilnError,
) -> Result<Vec<T>> {
    let mut v: Vec<T> = Vec::new();
    v.try_reserve_exact(n).map_err(|_| oom())?;
    v.resize(n, T::default());
    let len = std::mem::size_of_val(v.as_slice());
    // SAFETY: T is one of the plain numeric element types (integers, floats, half types,
    // complex pairs): every bit pattern is a valid value, and the slice covers exactly the
    // vector's initialised elements.
    let bytes = unsafe { std::slice::from_raw_parts_mut(v.as_mut_ptr() as *mut u8, len) };
    if let Err(got) = fill(r, bytes, path)? {
        return Err(truncated(got));
    }
    if big != cfg!(target_endian = "big") && lane > 1 {
        bytes.chunks_exact_mut(lane).for_each(|c| c.reverse());
    }
    Ok(v)
}

fn read_data(
    d: DType,
    big: bool,
    r: &mut impl Read,
    n: usize,
    path: &str,
    oom: impl Fn() -> KilnError,
    truncated: impl Fn(usize) -> KilnError,
) -> Result<ArrayDataVec> {
    macro_rules! pod {
        ($variant:ident, $t:ty, $lane:expr) => {
            ArrayDataVec::$variant(read_pod::<$t>(r, n, big, $lane, path, &oom, &truncated)?)
        };
    }
    Ok(match d {
        DType::Bool => {
            let bytes: Vec<u8> = read_pod(r, n, big, 1, path, &oom, &truncated)?;
            // NumPy stores a bool as one byte; anything nonzero is true.
            ArrayDataVec::Bool(bytes.into_iter().map(|b| b != 0).collect())
        }
        DType::Int8 => pod!(I8, i8, 1),
        DType::UInt8 => pod!(U8, u8, 1),
        DType::Int16 => pod!(I16, i16, 2),
        DType::Int32 => pod!(I32, i32, 4),
        DType::Int64 => pod!(I64, i64, 8),
        DType::UInt16 => pod!(U16, u16, 2),
        DType::UInt32 => pod!(U32, u32, 4),
        DType::UInt64 => pod!(U64, u64, 8),
        DType::Float16 => pod!(F16, f16, 2),
        DType::BFloat16 => pod!(BF16, bf16, 2),
        DType::Float32 => pod!(F32, f32, 4),
        DType::Float64 => pod!(F64, f64, 8),
        DType::Complex64 => pod!(C64, C64, 4),
        DType::Complex128 => pod!(C128, C128, 8),
    })
}

/// Reads a `.npy` file.
///
/// ```no_run
/// let x = kiln::io::read_npy("x.npy").unwrap();
/// println!("{:?} {}", x.shape(), x.dtype());
/// ```
pub fn read_npy(path: impl AsRef<Path>) -> Result<ArrayData> {
    let p = path.as_ref();
    let name = p.display().to_string();
    let f = std::fs::File::open(p).map_err(|e| KilnError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    let len = f.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    decode_npy_limited(std::io::BufReader::new(f), &name, len)
}

/// Encodes an array as `.npy` (version 1.0, or 2.0 for huge headers), little-endian, C order.
pub fn encode_npy(a: &ArrayData) -> Vec<u8> {
    let shape = a.shape();
    let shape_s = match shape.len() {
        1 => format!("({},)", shape[0]),
        _ => format!(
            "({})",
            shape
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!(
        "{{'descr': '{}', 'fortran_order': False, 'shape': {shape_s}, }}",
        descr_of(a.dtype())
    );
    let v1 = header.len() + 11 < 65536;
    let pre = if v1 { 10 } else { 12 };
    // Pad with spaces so the data starts on a 64-byte boundary (as NumPy does).
    let total = (pre + header.len() + 1).div_ceil(64) * 64;
    header.push_str(&" ".repeat(total - pre - header.len() - 1));
    header.push('\n');
    let mut out = Vec::with_capacity(total + a.len() * a.dtype().itemsize());
    out.extend_from_slice(MAGIC);
    if v1 {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(header.as_bytes());
    le_bytes(a, &mut out);
    out
}

/// An array of `shape` from exactly its little-endian bytes (a safetensors tensor's data).
pub(crate) fn decode_le(d: DType, shape: &[usize], bytes: &[u8], path: &str) -> Result<ArrayData> {
    let n = checked_numel(shape, "read_safetensors")?;
    if n.checked_mul(d.itemsize()) != Some(bytes.len()) {
        return Err(fmt_err(
            path,
            format!(
                "shape {shape:?} of {d} needs {n} elements, the data holds {} bytes",
                bytes.len()
            ),
        ));
    }
    let oom = || KilnError::OutOfMemory {
        op: format!("read_safetensors ({path})"),
        dtype: d,
        shape: shape.to_vec(),
        bytes: bytes.len() as u128,
    };
    let truncated = |got: usize| fmt_err(path, format!("truncated after {got} bytes"));
    let mut r = bytes;
    read_data(d, false, &mut r, n, path, oom, truncated)?.shape(shape, false, path)
}

/// The elements of `a` as little-endian bytes, appended to `out` (the data of a `.npy` or a
/// safetensors tensor).
pub(crate) fn le_bytes(a: &ArrayData, out: &mut Vec<u8>) {
    match a {
        ArrayData::Bool(x) => out.extend(x.iter().map(|b| *b as u8)),
        ArrayData::I8(x) => out.extend(x.iter().map(|b| *b as u8)),
        ArrayData::U8(x) => out.extend(x.iter()),
        ArrayData::I16(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::I32(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::I64(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::U16(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::U32(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::U64(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::F16(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_bits().to_le_bytes())),
        ArrayData::BF16(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_bits().to_le_bytes())),
        ArrayData::F32(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::F64(x) => x
            .iter()
            .for_each(|v| out.extend_from_slice(&v.to_le_bytes())),
        ArrayData::C64(x) => x.iter().for_each(|v| {
            out.extend_from_slice(&v.re.to_le_bytes());
            out.extend_from_slice(&v.im.to_le_bytes());
        }),
        ArrayData::C128(x) => x.iter().for_each(|v| {
            out.extend_from_slice(&v.re.to_le_bytes());
            out.extend_from_slice(&v.im.to_le_bytes());
        }),
    }
}

/// NumPy's limit on dimensions (`NPY_MAXDIMS`): a file with more is one NumPy (and kiln's
/// reader, whose header limit it would exceed) cannot read.
pub(crate) const MAX_DIMS: usize = 64;

/// Refuses to write what could not be read back.
pub(crate) fn check_writable(a: &ArrayData, path: &str) -> Result<()> {
    if a.shape().len() > MAX_DIMS {
        return Err(fmt_err(
            path,
            format!(
                "cannot write an array of {} dimensions: .npy readers (NumPy's and kiln's) take at most {MAX_DIMS}; reshape it first",
                a.shape().len()
            ),
        ));
    }
    Ok(())
}

/// Writes a `.npy` file.
pub fn write_npy(path: impl AsRef<Path>, a: &ArrayData) -> Result<()> {
    let p = path.as_ref();
    check_writable(a, &p.display().to_string())?;
    let io = |e: std::io::Error| KilnError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    };
    let mut f = std::fs::File::create(p).map_err(io)?;
    f.write_all(&encode_npy(a)).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parser_accepts_numpy_variants() {
        let h = parse_header(
            "{'descr': '<f8', 'fortran_order': False, 'shape': (1, 2, 3), }",
            "t",
        )
        .unwrap();
        assert_eq!(
            h,
            Header {
                descr: "<f8".into(),
                fortran: false,
                shape: vec![1, 2, 3]
            }
        );
        let h = parse_header(
            "{\"descr\":\">i4\",\"fortran_order\":True,\"shape\":(5,)}",
            "t",
        )
        .unwrap();
        assert_eq!(h.shape, vec![5]);
        assert!(h.fortran);
        assert_eq!(
            parse_header(
                "{'descr': '|b1', 'fortran_order': False, 'shape': (), }",
                "t"
            )
            .unwrap()
            .shape,
            Vec::<usize>::new()
        );
        for bad in [
            "",
            "{",
            "{'descr': 3}",
            "{'descr': '<f8', 'shape': (-1,), 'fortran_order': False}",
            "{'descr': [('a','<f8')], 'fortran_order': False, 'shape': ()}",
        ] {
            assert!(parse_header(bad, "t").is_err(), "{bad}");
        }
    }
}
