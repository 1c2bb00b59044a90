//! `.npz` archives (zip files of `.npy` members, stored or deflated).

use super::npy::{decode_npy, encode_npy};
use crate::array::ArrayData;
use crate::error::{KilnError, Result};
use std::io::Write;
use std::path::Path;

/// Reads every array in a `.npz` file, in archive order, named without the `.npy` suffix.
pub fn read_npz(path: impl AsRef<Path>) -> Result<Vec<(String, ArrayData)>> {
    let p = path.as_ref();
    let name = p.display().to_string();
    let f = std::fs::File::open(p).map_err(|e| KilnError::Io {
        path: name.clone(),
        message: e.to_string(),
    })?;
    let mut z =
        zip::ZipArchive::new(std::io::BufReader::new(f)).map_err(|e| KilnError::Format {
            path: name.clone(),
            message: format!("not a valid .npz (zip) archive: {e}"),
        })?;
    let mut out = Vec::with_capacity(z.len().min(4096));
    for i in 0..z.len() {
        let entry = z.by_index(i).map_err(|e| KilnError::Format {
            path: name.clone(),
            message: format!("member {i}: {e}"),
        })?;
        let member = entry.name().to_string();
        let key = member.strip_suffix(".npy").unwrap_or(&member).to_string();
        let arr = decode_npy(entry, &format!("{name}[{member}]"))?;
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
