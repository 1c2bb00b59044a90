//! File formats: NumPy's `.npy` and `.npz`, safetensors (model files: `nn::saving`).

#[doc(hidden)]
pub mod fuzzing;
pub mod npy;
pub mod npz;
pub mod safetensors;
pub mod zipread;

pub use npy::{decode_npy, encode_npy, read_npy, write_npy};
pub use npz::{read_npz, read_npz_with, write_npz};
pub use safetensors::{read_safetensors, write_safetensors};
pub use zipread::ZipLimits;

use crate::array::ArrayData;
use crate::error::{KilnError, Result};

/// Named arrays from a weights file of any format kiln reads, by its extension: `.npz`,
/// `.safetensors`, or `.npy` (one array, named by the file's stem).
pub fn load_weights(path: impl AsRef<std::path::Path>) -> Result<Vec<(String, ArrayData)>> {
    let p = path.as_ref();
    match p.extension().and_then(|e| e.to_str()) {
        Some("npz") => read_npz(p),
        Some("safetensors") => read_safetensors(p),
        Some("npy") => Ok(vec![(
            p.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("array")
                .to_string(),
            read_npy(p)?,
        )]),
        _ => Err(KilnError::invalid(
            "load_weights",
            format!(
                "{}: unknown weights format; kiln reads .npz, .safetensors and .npy",
                p.display()
            ),
        )),
    }
}
