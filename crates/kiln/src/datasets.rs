//! Loading the shipped datasets and splitting them, as scikit-learn users do.

use crate::array::ArrayData;
use crate::device::Device;
use crate::error::{KilnError, Result};
use crate::tensor::convert_to_tensor;

/// The `x` and `y` arrays of an `.npz` file, as written (float64 features from scikit-learn).
pub fn load_npz(path: &str) -> Result<(ArrayData, ArrayData)> {
    let arrays = crate::io::read_npz(path)?;
    let get = |k: &str| -> Result<ArrayData> {
        arrays
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, a)| a.clone())
            .ok_or_else(|| KilnError::Format {
                path: path.to_string(),
                message: format!("no array named {k:?} (expected x and y)"),
            })
    };
    Ok((get("x")?, get("y")?))
}

/// The rows `idx` of host data, in its own dtype.
pub fn take_rows(a: &ArrayData, idx: &[usize]) -> Result<ArrayData> {
    let t = convert_to_tensor(a, Some(a.dtype()), &Device::Cpu)?;
    let i = ArrayData::from_shape_vec(
        &[idx.len()],
        idx.iter().map(|v| *v as i64).collect::<Vec<_>>(),
    )?;
    let it = convert_to_tensor(&i, Some(crate::DType::Int64), &Device::Cpu)?;
    crate::ops::take(&t, &it, Some(0))?.to_host()
}

/// A seeded shuffle split into train and test sets; the test set has `ceil(n * test_size)`
/// samples (scikit-learn's `train_test_split` sizes; its own shuffle differs).
pub fn train_test_split(
    x: &ArrayData,
    y: &ArrayData,
    test_size: f64,
    seed: u64,
) -> Result<(ArrayData, ArrayData, ArrayData, ArrayData)> {
    let n = x.shape().first().copied().unwrap_or(0);
    if y.shape().first().copied().unwrap_or(0) != n {
        return Err(KilnError::invalid(
            "train_test_split",
            format!(
                "x has {n} samples, y {}",
                y.shape().first().copied().unwrap_or(0)
            ),
        ));
    }
    if !(0.0..1.0).contains(&test_size) {
        return Err(KilnError::invalid(
            "train_test_split",
            "test_size must be in [0, 1)",
        ));
    }
    let (train, test) = split_indices(n, test_size, seed);
    Ok((
        take_rows(x, &train)?,
        take_rows(x, &test)?,
        take_rows(y, &train)?,
        take_rows(y, &test)?,
    ))
}

/// The row indices [`train_test_split`] takes: `(train, test)`.
pub fn split_indices(n: usize, test_size: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_test = (((n as f64) * test_size).ceil() as usize).min(n);
    let order = crate::nn::model::permutation(n, seed);
    let (test, train) = order.split_at(n_test);
    (train.to_vec(), test.to_vec())
}
