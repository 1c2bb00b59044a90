//! Plain `fn(&[u8])` entry points into every reader of files from strangers, for the
//! cargo-fuzz targets (`crates/kiln/fuzz/`) and the seed-corpus test
//! (`tests/suite/fuzz_readers.rs`). Each one runs the reader users run (the zip-based ones
//! through a temporary file, as their readers take paths) and returns its result: an error
//! is fine, a panic, an abort or a hang is the bug.

use crate::error::{KilnError, Result};
use crate::io::ZipLimits;
use std::sync::atomic::{AtomicU64, Ordering};

static N: AtomicU64 = AtomicU64::new(0);

/// Runs `f` on `data` written to a temporary file ending in `ext` (removed after).
fn via_file<T>(data: &[u8], ext: &str, f: impl FnOnce(&str) -> Result<T>) -> Result<T> {
    let p = std::env::temp_dir().join(format!(
        "kiln-fuzz-{}-{}{ext}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::write(&p, data).map_err(|e| KilnError::Io {
        path: p.display().to_string(),
        message: e.to_string(),
    })?;
    let r = f(&p.display().to_string());
    let _ = std::fs::remove_file(&p);
    r
}

/// Bounds small enough that a fuzzer's inputs cannot make the readers allocate gigabytes
/// legitimately (64 MiB in all).
fn limits() -> ZipLimits {
    ZipLimits {
        max_total: 64 << 20,
        ..ZipLimits::default()
    }
}

/// `.npy` bytes.
pub fn npy(data: &[u8]) -> Result<()> {
    crate::io::npy::decode_npy_limited(data, "<fuzz>", data.len() as u64).map(|_| ())
}

/// `.npz` bytes.
pub fn npz(data: &[u8]) -> Result<()> {
    via_file(data, ".npz", |p| crate::io::read_npz_with(p, limits())).map(|_| ())
}

/// safetensors bytes.
pub fn safetensors(data: &[u8]) -> Result<()> {
    crate::io::safetensors::safetensors_from_bytes(data, "<fuzz>").map(|_| ())
}

/// HDF5 bytes (every dataset read, as `kiln doctor` and `load_weights` do).
pub fn h5(data: &[u8]) -> Result<()> {
    crate::nn::saving::H5::from_bytes(data.to_vec(), "<fuzz>", limits())?
        .all()
        .map(|_| ())
}

/// `.keras` bytes: loaded as a model (config, weights, optimizer state).
pub fn keras(data: &[u8]) -> Result<()> {
    via_file(data, ".keras", |p| {
        crate::nn::saving::load_model_with(p, limits())
    })
    .map(|_| ())
}

/// `.kiln` bytes.
pub fn kiln(data: &[u8]) -> Result<()> {
    via_file(data, ".kiln", |p| {
        crate::nn::saving::load_model_with(p, limits())
    })
    .map(|_| ())
}

/// A model config (`config.json` of a `.keras` file) alone.
pub fn model_config(data: &[u8]) -> Result<()> {
    let v: serde_json::Value =
        serde_json::from_slice(data).map_err(|e| KilnError::invalid("fuzz", e.to_string()))?;
    let mut m = crate::nn::saving::model_config::model_from_keras(&v)?;
    if let Some(cc) = v.get("compile_config") {
        crate::nn::saving::model_config::compile_from_keras(&mut m, cc)?;
    }
    Ok(())
}

/// A fuzz target.
pub type Target = fn(&[u8]) -> Result<()>;

/// The targets by name (for the corpus test and `cargo fuzz run <name>`).
pub const TARGETS: [(&str, Target); 7] = [
    ("npy", npy),
    ("npz", npz),
    ("safetensors", safetensors),
    ("h5", h5),
    ("keras", keras),
    ("kiln", kiln),
    ("model_config", model_config),
];
