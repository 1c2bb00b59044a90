//! File formats: NumPy's `.npy` and `.npz`.

pub mod npy;
pub mod npz;
pub mod zipread;

pub use npy::{decode_npy, encode_npy, read_npy, write_npy};
pub use npz::{read_npz, read_npz_with, write_npz};
pub use zipread::ZipLimits;
