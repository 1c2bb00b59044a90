//! `.npz` archives (zip files of `.npy` members, stored or deflated).

use super::npy::{decode_npy_limited, encode_npy};
use super::zipread::{Archive, ZipLimits};
use crate::array::ArrayData;
use crate::error::{KilnError, Result};
use std::io::Write;
use std::path::Path;

/// Reads every array in a `.npz` file, in archive order, named without the `.npy` suffix,
/// through kiln's hardened zip reader (see [`read_npz_with`] for its limits).
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, ArrayData)>> {
    read_npz_with(path, ZipLimits::default())
}

/// [`read_npz`] with explicit bounds on what the archive may inflate. Every member's size is
/// checked against the archive before anything is allocated, its CRC-32 is verified, and
/// names are validated (`a` and `a.npy` in one file are refused: both would be `a`).
pub fn read_npz_with(
    path: impl AsRef<Path>,
    limits: ZipLimits,
) -> Result<Vec<(String, ArrayData)>> {
    let mut z = Archive::open(path.as_ref(), limits)?;
    let mut out: Vec<(String, ArrayData)> = Vec::with_capacity(z.members.len());
    for i in 0..z.members.len() {
        let member = z.members[i].name.clone();
        let size = z.members[i].size;
        let key = member.strip_suffix(".npy").unwrap_or(&member).to_string();
        let r = z.member(i)?;
        let label = r.label();
        if out.iter().any(|(k, _)| *k == key) {
            return Err(KilnError::Format {
                path: label,
                message: format!("two members hold the array {}", super::zipread::shown(&key)),
            });
        }
        let mut r = r;
        let arr = decode_npy_limited(&mut r, &label, size)?;
        r.finish()?;
        out.push((key, arr));
    }
    Ok(out)
}

/// Writes arrays to a `.npz` file (`compressed` uses deflate, like `np.savez_compressed`).
pub fn write_npz(
    path: impl AsRef<Path>,
    arrays: &[(&str, &ArrayData)],
    compressed: bool,
) -> Result<()> {
    let p = path.as_ref();
    let io = |m: String| KilnError::Io {
        path: p.display().to_string(),
        message: m,
    };
    for (k, a) in arrays {
        super::npy::check_writable(a, &format!("{}[{k}]", p.display()))?;
    }
    let f = std::fs::File::create(p).map_err(|e| io(e.to_string()))?;
    let mut z = zip::ZipWriter::new(f);
    let method = if compressed {
        zip::CompressionMethod::Deflated
    } else {
        zip::CompressionMethod::Stored
    };
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(method)
        .large_file(true);
    for (k, a) in arrays {
        z.start_file(format!("{k}.npy"), opts)
            .map_err(|e| io(e.to_string()))?;
        z.write_all(&encode_npy(a)).map_err(|e| io(e.to_string()))?;
    }
    z.finish().map_err(|e| io(e.to_string()))?;
    Ok(())
}
