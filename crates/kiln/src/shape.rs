//! Shape arithmetic shared by the frontend and the engines: NumPy broadcasting and axis
//! normalisation. It sits below `ops` and `backend`, so engines use it without importing
//! the frontend.

use crate::error::{KilnError, Result};

/// NumPy broadcasting of two shapes.
///
/// ```
/// assert_eq!(kiln::shape::broadcast_shapes(&[3, 1, 5], &[4, 5], "add").unwrap(), vec![3, 4, 5]);
/// assert!(kiln::shape::broadcast_shapes(&[3], &[4], "add").is_err());
/// ```
pub fn broadcast_shapes(a: &[usize], b: &[usize], op: &str) -> Result<Vec<usize>> {
    if a == b {
        return Ok(a.to_vec()); // (every same-shape op: one copy, no per-axis checks)
    }
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let x = if i + a.len() >= n {
            a[i + a.len() - n]
        } else {
            1
        };
        let y = if i + b.len() >= n {
            b[i + b.len() - n]
        } else {
            1
        };
        out[i] = match (x, y) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => {
                return Err(KilnError::shape(
                    op,
                    a,
                    b,
                    format!(
                    "dimension {i} (from the right: {}) is {x} vs {y}; sizes must match or be 1",
                    n - i
                ),
                ))
            }
        };
    }
    Ok(out)
}

/// Normalises a possibly negative axis against `ndim`.
pub fn normalize_axis(axis: isize, ndim: usize, op: &str) -> Result<usize> {
    let n = ndim as isize;
    let a = if axis < 0 { axis + n } else { axis };
    if a < 0 || a >= n {
        return Err(KilnError::invalid(
            op,
            if ndim == 0 {
                format!("axis {axis} given for a 0-d tensor, which has no axes; pass no axis")
            } else {
                format!(
                    "axis {axis} is out of range for a tensor with {ndim} axes (valid: {} to {})",
                    -n,
                    n - 1
                )
            },
        ));
    }
    Ok(a as usize)
}

/// Normalises a list of axes (`None` means all), sorted and unique.
pub fn normalize_axes(axes: Option<&[isize]>, ndim: usize, op: &str) -> Result<Vec<usize>> {
    match axes {
        None => Ok((0..ndim).collect()),
        Some(ax) => {
            let mut v = ax
                .iter()
                .map(|a| normalize_axis(*a, ndim, op))
                .collect::<Result<Vec<_>>>()?;
            v.sort_unstable();
            let len = v.len();
            v.dedup();
            if v.len() != len {
                return Err(KilnError::invalid(op, format!("repeated axis in {ax:?}")));
            }
            Ok(v)
        }
    }
}
