//! `kiln doctor FILE --device D`: before a run, what a file's arrays would become on a
//! device, and what that would cost. Every array of a `.npy`, `.npz`, `.safetensors`,
//! `.keras`, `.kiln` or HDF5 (`.h5`, `.weights.h5`) file is put to the precision resolver as
//! data entering `D` in its own dtype (an implicit request, so the policy decides), and every
//! dtype change is measured on the actual values: overflows to inf, values flushed to zero,
//! integer values changed, the largest absolute and relative error.
//!
//! `kiln convert IN OUT` applies the same decisions (or an explicit `--dtype`) and writes the
//! converted file with its report.
//!
//! ```
//! use kiln::doctor::file::{check_arrays, Verdict};
//! use kiln::precision::{Config, Policy};
//! use kiln::{ArrayData, Device};
//! let a = ArrayData::from_shape_vec(&[3], vec![0.1f64, 1e300, 2.0]).unwrap();
//! let cfg = Config { x64: true, ..Config::default() };
//! let mps = Device::parse("sim:mps").unwrap();
//! let c = check_arrays(&[("w".into(), a.clone())], mps, &cfg);
//! assert_eq!(c[0].verdict, Verdict::Downcast);
//! let r = c[0].report.as_ref().unwrap();
//! assert_eq!(r.overflowed_to_inf, 1);
//! let strict = Config { policy: Policy::Error, ..cfg };
//! assert_eq!(check_arrays(&[("w".into(), a)], mps, &strict)[0].verdict, Verdict::Refused);
//! ```

use crate::array::ArrayData;
use crate::device::Device;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::precision::report::{convert_with_report, ConversionReport};
use crate::precision::resolver::{resolve, Action, Request, Site};
use crate::precision::Config;
use serde::Serialize;

/// What the resolver would do with one array.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// Kept as it is.
    Keep,
    /// x64 off narrows it to 32 bits (Keras's default, on every device).
    NarrowX64,
    /// The device lacks the dtype; it becomes the nearest one the device has.
    Downcast,
    /// The device lacks the dtype; it stays in it on the cpu.
    CpuFallback,
    /// An explicit `--dtype` cast it (the resolver honours an explicit request or refuses it).
    Cast,
    /// The policy refuses it: loading this file on the device is an error.
    Refused,
}

/// One array's check.
#[derive(Clone, Debug, Serialize)]
pub struct ArrayCheck {
    /// Its name in the file (`layers/dense/vars/0` in a model file).
    pub name: String,
    /// Its dtype in the file.
    pub dtype: DType,
    /// Its shape.
    pub shape: Vec<usize>,
    /// What would happen.
    pub verdict: Verdict,
    /// The dtype it would have (`None` when refused).
    pub to: Option<DType>,
    /// Where it would live.
    pub device: String,
    /// The resolver's reason, or the refusal's message.
    pub reason: String,
    /// What the dtype change does to the values (only where the dtype changes).
    pub report: Option<ConversionReport>,
    /// How many values come out different (NaN staying NaN is not a change).
    pub values_changed: usize,
}

/// Asks the resolver about each array on `device` under `cfg`, and measures each change.
pub fn check_arrays(
    arrays: &[(String, ArrayData)],
    device: Device,
    cfg: &Config,
) -> Vec<ArrayCheck> {
    decide(arrays, device, cfg, None)
}

/// Each array's decision: as implicit data, or, for float arrays where `cast` is given, as an
/// explicit cast to it (`Site::Cast`: honoured as asked, or refused where the device lacks it).
fn decide(
    arrays: &[(String, ArrayData)],
    device: Device,
    cfg: &Config,
    cast: Option<DType>,
) -> Vec<ArrayCheck> {
    let engine = crate::tensor::engine_kind_for(device, cfg);
    arrays
        .iter()
        .map(|(name, a)| {
            let explicit = cast.filter(|_| a.dtype().is_float());
            let req = Request {
                op: "kiln doctor",
                site: if explicit.is_some() {
                    Site::Cast
                } else {
                    Site::Conversion
                },
                dtype: explicit.unwrap_or(a.dtype()),
                explicit: explicit.is_some(),
                device,
                engine,
                origin: std::panic::Location::caller(),
            };
            let base = ArrayCheck {
                name: name.clone(),
                dtype: a.dtype(),
                shape: a.shape().to_vec(),
                verdict: Verdict::Refused,
                to: None,
                device: device.to_string(),
                reason: String::new(),
                report: None,
                values_changed: 0,
            };
            match resolve(&req, cfg) {
                Err(e) => ArrayCheck {
                    // The refusal names where the value came from: this array, not this code.
                    reason: e.to_string().replace(
                        &format!("value from {}", req.origin),
                        &format!("array {name:?}"),
                    ),
                    ..base
                },
                Ok(d) => {
                    let verdict = match d.action {
                        Action::Keep if d.dtype != a.dtype() => Verdict::Cast,
                        Action::Keep => Verdict::Keep,
                        Action::Narrow64 { .. } => Verdict::NarrowX64,
                        Action::Substitute { .. } => Verdict::Downcast,
                        Action::CpuFallback { .. } => Verdict::CpuFallback,
                    };
                    let (report, values_changed) = measure(a, d.dtype);
                    ArrayCheck {
                        verdict,
                        values_changed,
                        to: Some(d.dtype),
                        device: d.device.to_string(),
                        reason: d.reason(),
                        report,
                        ..base
                    }
                }
            }
        })
        .collect()
}

/// Every array of a file, by its format (extension): `.npy` (named by the file's stem),
/// `.npz`, `.safetensors`, `.keras` / `.kiln` (the weights and optimizer state, by their
/// paths in the file), `.h5` (every dataset).
pub fn read_arrays(path: &str) -> Result<Vec<(String, ArrayData)>> {
    if path.ends_with(".keras") || path.ends_with(".kiln") {
        return crate::nn::saving::archive_arrays(path);
    }
    if path.ends_with(".h5") || path.ends_with(".hdf5") {
        return crate::nn::saving::h5_arrays(path);
    }
    crate::io::load_weights(path)
}

/// A whole file's check (see [`check_arrays`]).
#[derive(Clone, Debug, Serialize)]
pub struct FileCheck {
    /// The file.
    pub path: String,
    /// The device asked about.
    pub device: String,
    /// The precision policy asked under.
    pub policy: String,
    /// Whether x64 mode was on.
    pub x64: bool,
    /// Each array.
    pub arrays: Vec<ArrayCheck>,
}

impl FileCheck {
    /// How many arrays the policy refuses (a non-zero exit status for `kiln doctor`).
    pub fn refused(&self) -> usize {
        self.arrays
            .iter()
            .filter(|a| a.verdict == Verdict::Refused)
            .count()
    }

    /// The human-readable report: one line per array, then each change's loss.
    pub fn render(&self) -> String {
        let mut out = format!(
            "{}: {} arrays, device {}, policy {}, x64 {}\n",
            self.path,
            self.arrays.len(),
            self.device,
            self.policy,
            if self.x64 { "on" } else { "off" }
        );
        let w = self
            .arrays
            .iter()
            .map(|a| a.name.len())
            .max()
            .unwrap_or(4)
            .clamp(4, 48);
        for a in &self.arrays {
            let to = match (a.verdict, a.to) {
                (Verdict::Refused, _) => "REFUSED".to_string(),
                (Verdict::Keep, _) => "kept".to_string(),
                (v, Some(t)) => format!(
                    "-> {t} ({})",
                    serde_json::to_value(v)
                        .ok()
                        .and_then(|v| v.as_str().map(String::from))
                        .unwrap_or_default()
                ),
                (_, None) => String::new(),
            };
            let shape = format!("{:?}", a.shape);
            out += &format!(
                "  {:w$}  {:>9}  {:16}  {to}\n",
                a.name,
                a.dtype.name(),
                shape
            );
            if let Some(r) = &a.report {
                out += &format!(
                    "  {:w$}  loss: {} values, {} changed, max rel error {:.3e}, max abs error {:.3e}, {} overflowed to inf, {} flushed to zero, {} integer values changed\n",
                    "",
                    r.elements,
                    a.values_changed,
                    r.max_rel_error,
                    r.max_abs_error,
                    r.overflowed_to_inf,
                    r.flushed_to_zero,
                    r.integers_changed
                );
            }
            if a.verdict == Verdict::Refused {
                out += &format!("  {:w$}  {}\n", "", a.reason);
            }
        }
        let n = self.refused();
        out += &if n > 0 {
            format!(
                "{n} arrays refused: this file cannot be used on {} under policy {}\n",
                self.device, self.policy
            )
        } else {
            let changed = self.arrays.iter().filter(|a| a.report.is_some()).count();
            format!(
                "ok: {changed} arrays change dtype, {} kept\n",
                self.arrays.len() - changed
            )
        };
        out
    }
}

/// The conversion's report and how many values it changes (`None, 0` when the dtype stays).
fn measure(a: &ArrayData, to: DType) -> (Option<ConversionReport>, usize) {
    if to == a.dtype() {
        return (None, 0);
    }
    let (c, r) = convert_with_report(a, to);
    let n = a
        .to_f64_vec()
        .iter()
        .zip(c.to_f64_vec())
        .filter(|(x, y)| !(x.is_nan() && y.is_nan()) && **x != *y)
        .count();
    (Some(r), n)
}

/// Checks every array of `path` on `device` under `cfg`.
pub fn check_file(path: &str, device: Device, cfg: &Config) -> Result<FileCheck> {
    let arrays = read_arrays(path)?;
    Ok(FileCheck {
        path: path.to_string(),
        device: device.to_string(),
        policy: cfg.policy.name().to_string(),
        x64: cfg.x64,
        arrays: check_arrays(&arrays, device, cfg),
    })
}

/// Converts `input` to `output` for `device`: each array as the resolver decides under
/// `cfg`, or every float array to `dtype` where one is given (an explicit cast, measured
/// the same way). Refusals are errors and nothing is written. Model files (`.keras`,
/// `.kiln`) keep their format and get their dtype policies rewritten to match; array files
/// are written in `output`'s format (`.npz`, `.safetensors`, `.npy` for one array).
pub fn convert_file(
    input: &str,
    output: &str,
    device: Device,
    dtype: Option<DType>,
    cfg: &Config,
) -> Result<FileCheck> {
    if let Some(t) = dtype.filter(|t| !t.is_float()) {
        return Err(KilnError::invalid(
            "kiln convert",
            format!("--dtype {t}: convert casts float arrays, so give a float dtype"),
        ));
    }
    let arrays = read_arrays(input)?;
    let check = decide(&arrays, device, cfg, dtype);
    let refused: Vec<&ArrayCheck> = check
        .iter()
        .filter(|c| c.verdict == Verdict::Refused)
        .collect();
    if let Some(first) = refused.first() {
        return Err(KilnError::invalid(
            "kiln convert",
            format!(
                "{} arrays cannot go to {device} under policy {}; the first, {:?}: {}",
                refused.len(),
                cfg.policy.name(),
                first.name,
                first.reason
            ),
        ));
    }
    let converted: Vec<(String, ArrayData)> = arrays
        .iter()
        .zip(&check)
        .map(|((n, a), c)| match c.to {
            Some(t) if t != a.dtype() => (n.clone(), convert_with_report(a, t).0),
            _ => (n.clone(), a.clone()),
        })
        .collect();
    let is_model = |p: &str| p.ends_with(".keras") || p.ends_with(".kiln");
    if is_model(input) || is_model(output) {
        if !(is_model(input) && is_model(output)) {
            return Err(KilnError::invalid("kiln convert", "a model file converts to a model file (.keras or .kiln); use save_weights for weights alone"));
        }
        crate::nn::saving::convert_archive(input, output, &converted)?;
    } else {
        let refs: Vec<(&str, &ArrayData)> =
            converted.iter().map(|(n, a)| (n.as_str(), a)).collect();
        if output.ends_with(".safetensors") {
            crate::io::write_safetensors(output, &refs)?;
        } else if output.ends_with(".npz") {
            crate::io::write_npz(output, &refs, false)?;
        } else if output.ends_with(".npy") && refs.len() == 1 {
            crate::io::write_npy(output, refs[0].1)?;
        } else {
            return Err(KilnError::invalid(
                "kiln convert",
                format!("{output:?}: write arrays to .npz, .safetensors, or .npy (one array)"),
            ));
        }
    }
    Ok(FileCheck {
        path: output.to_string(),
        device: device.to_string(),
        policy: cfg.policy.name().to_string(),
        x64: cfg.x64,
        arrays: check,
    })
}
