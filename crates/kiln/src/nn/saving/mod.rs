//! Model files: Keras 3's `.keras` (both ways), Keras's `.weights.h5`, and kiln's native
//! `.kiln`, all through [`save_model`] / [`load_model`] (and [`Model::save`]).
//!
//! | file | what it holds |
//! | --- | --- |
//! | `.keras` | a zip of `metadata.json`, `config.json` (Keras's config schema) and `model.weights.h5` (HDF5: `layers/<key>/vars/<i>`, `optimizer/vars/<i>`) |
//! | `.kiln` | the same zip layout and config, with `model.weights.safetensors` (the same paths as keys) and kiln's exact training state (f64 scalars, step, seed) so a resumed run continues bit for bit |
//! | `.weights.h5` | Keras's weights file alone |
//!
//! Both archives are read by kiln's hardened zip reader (declared sizes, inflation bound,
//! CRC-32, names), HDF5 through `hdf5-pure` with every dataset's size checked against the
//! file before it is read, and configs are only ever interpreted as data (see
//! [`config`]).
//!
//! ```
//! use kiln::nn::{load_model, Dense, Input, Sequential, SGD, Loss};
//! use kiln::ops;
//! let mut m = Sequential::new().add(Input::new(&[3])).add(Dense::new(2));
//! m.compile(SGD::new(0.1), Loss::MeanSquaredError, &[]).unwrap();
//! let x = ops::ones(&[4, 3], None, None).unwrap();
//! let before = m.predict(&x, 4).unwrap().to_vec::<f32>().unwrap();
//! let dir = std::env::temp_dir().join(format!("kiln-doc-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let path = dir.join("m.keras");
//! m.save(path.to_str().unwrap()).unwrap();
//! let mut back = load_model(path.to_str().unwrap()).unwrap();
//! assert_eq!(back.predict(&x, 4).unwrap().to_vec::<f32>().unwrap(), before);
//! ```

pub(crate) mod config;
pub(crate) mod model_config;

pub use config::KerasTree;

use crate::array::ArrayData;
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::io::zipread::{Archive, ZipLimits};
use crate::nn::Model;
use serde_json::{json, Value};
use std::io::Read;
use std::path::Path;

/// The Keras version kiln's files say they follow (Keras reads it from `metadata.json`).
pub const KERAS_VERSION: &str = "3.15.1";
/// The version of kiln's own file layout.
pub const KILN_FORMAT_VERSION: u64 = 1;

/// The formats [`load_model`] and [`save_model`] know, by file name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ModelFormat {
    /// Keras 3's `.keras` zip.
    Keras,
    /// kiln's `.kiln` zip (safetensors weights, exact training state).
    Kiln,
}

impl ModelFormat {
    /// The format a path names, or an error saying which exist.
    pub fn of(path: &str) -> Result<ModelFormat> {
        if path.ends_with(".keras") {
            Ok(ModelFormat::Keras)
        } else if path.ends_with(".kiln") {
            Ok(ModelFormat::Kiln)
        } else {
            Err(KilnError::invalid(
                "save_model",
                format!(
                    "{:?}: a model file ends in .keras (Keras 3) or .kiln (kiln's own); weights alone go to .weights.h5, .safetensors or .npz with save_weights",
                    crate::io::zipread::shown(path)
                ),
            ))
        }
    }
}

fn format_err(path: &str, m: impl Into<String>) -> KilnError {
    KilnError::Format {
        path: path.to_string(),
        message: m.into(),
    }
}

fn io_err(path: &str, e: impl std::fmt::Display) -> KilnError {
    KilnError::Io {
        path: path.to_string(),
        message: e.to_string(),
    }
}

// ---------- weights: HDF5 ----------

fn dataset_of(a: &ArrayData, ds: &mut hdf5_pure::DatasetBuilder, path: &str) -> Result<()> {
    let shape: Vec<u64> = a.shape().iter().map(|d| *d as u64).collect();
    macro_rules! put {
        ($t:ty, $f:ident) => {{
            let v = a.to_vec::<$t>()?;
            ds.$f(&v).with_shape(&shape);
        }};
    }
    match a.dtype() {
        DType::Float32 => put!(f32, with_f32_data),
        DType::Float64 => put!(f64, with_f64_data),
        DType::Int8 => put!(i8, with_i8_data),
        DType::Int16 => put!(i16, with_i16_data),
        DType::Int32 => put!(i32, with_i32_data),
        DType::Int64 => put!(i64, with_i64_data),
        DType::UInt8 => put!(u8, with_u8_data),
        DType::UInt16 => put!(u16, with_u16_data),
        DType::UInt32 => put!(u32, with_u32_data),
        DType::UInt64 => put!(u64, with_u64_data),
        d => {
            return Err(KilnError::invalid(
                "save_model",
                format!("weight {path} is {d}, which kiln does not write to HDF5; save to .kiln (safetensors keeps every dtype) or cast the model to float32"),
            ))
        }
    }
    Ok(())
}

fn h5_group(
    parent: &mut hdf5_pure::GroupBuilder,
    key: &str,
    tree: &KerasTree,
    vars: &mut std::slice::Iter<'_, ArrayData>,
    path: &str,
) -> Result<()> {
    let mut g = parent.create_group(key);
    if !tree.layers.is_empty() {
        let mut ls = g.create_group("layers");
        for (k, t) in &tree.layers {
            h5_group(&mut ls, k, t, vars, &format!("{path}/layers/{k}"))?;
        }
        g.add_group(ls.finish());
    }
    let mut v = g.create_group("vars");
    v.set_attr(
        "name",
        hdf5_pure::AttrValue::VarLenString(tree.name.clone()),
    );
    for i in 0..tree.vars {
        let a = vars
            .next()
            .ok_or_else(|| KilnError::invalid("save_model", "fewer weights than variables"))?;
        dataset_of(
            a,
            v.create_dataset(&i.to_string()),
            &format!("{path}/vars/{i}"),
        )?;
    }
    g.add_group(v.finish());
    parent.add_group(g.finish());
    Ok(())
}

/// Keras's `model.weights.h5` bytes: the model's weights along `tree`, and the optimizer's
/// variables (Keras's order) when given.
pub(crate) fn weights_h5(
    tree: &KerasTree,
    weights: &[ArrayData],
    optimizer: Option<(&str, &[ArrayData])>,
) -> Result<Vec<u8>> {
    let mut fb = hdf5_pure::FileBuilder::new();
    let mut it = weights.iter();
    let mut layers = fb.create_group("layers");
    for (k, t) in &tree.layers {
        h5_group(&mut layers, k, t, &mut it, &format!("layers/{k}"))?;
    }
    fb.add_group(layers.finish());
    if let Some((name, arrays)) = optimizer {
        let mut o = fb.create_group("optimizer");
        let mut v = o.create_group("vars");
        v.set_attr("name", hdf5_pure::AttrValue::VarLenString(name.to_string()));
        for (i, a) in arrays.iter().enumerate() {
            dataset_of(
                a,
                v.create_dataset(&i.to_string()),
                &format!("optimizer/vars/{i}"),
            )?;
        }
        o.add_group(v.finish());
        fb.add_group(o.finish());
    }
    let mut v = fb.create_group("vars");
    v.set_attr(
        "name",
        hdf5_pure::AttrValue::VarLenString(tree.name.clone()),
    );
    fb.add_group(v.finish());
    fb.finish()
        .map_err(|e| KilnError::invalid("save_model", format!("writing HDF5: {e}")))
}

/// An HDF5 weights file, opened with its size for the read bounds.
pub(crate) struct H5 {
    file: hdf5_pure::File,
    label: String,
    budget: u64,
}

impl H5 {
    pub(crate) fn from_bytes(bytes: Vec<u8>, label: &str, limits: ZipLimits) -> Result<H5> {
        let len = bytes.len() as u64;
        let file = hdf5_pure::File::from_bytes(bytes)
            .map_err(|e| format_err(label, format!("not a readable HDF5 file: {e}")))?;
        Ok(H5 {
            file,
            label: label.to_string(),
            budget: len.saturating_mul(limits.max_ratio).min(limits.max_total),
        })
    }

    /// The dataset at `path` as an array, its declared size checked before it is read.
    pub(crate) fn read(&self, path: &str) -> Result<ArrayData> {
        let shown = crate::io::zipread::shown(path);
        let err = |m: String| format_err(&format!("{}[{shown}]", self.label), m);
        let ds = self
            .file
            .dataset(path)
            .map_err(|e| err(format!("no dataset: {e}")))?;
        let shape: Vec<usize> = ds
            .shape()
            .map_err(|e| err(e.to_string()))?
            .iter()
            .map(|d| usize::try_from(*d).map_err(|_| err(format!("axis of {d} elements"))))
            .collect::<Result<_>>()?;
        if shape.len() > 64 {
            return Err(err(format!("{} axes", shape.len())));
        }
        let elem = ds.element_size().map_err(|e| err(e.to_string()))?;
        let bytes = shape
            .iter()
            .try_fold(elem, |acc, d| acc.checked_mul(*d as u64))
            .ok_or_else(|| err(format!("shape {shape:?} overflows")))?;
        if bytes > self.budget {
            return Err(err(format!(
                "declares {bytes} bytes of data, more than the file can hold ({} bytes allowed for it)",
                self.budget
            )));
        }
        let dtype = ds.dtype().map_err(|e| err(e.to_string()))?;
        macro_rules! get {
            ($f:ident) => {
                ArrayData::from_shape_vec(&shape, ds.$f().map_err(|e| err(e.to_string()))?)
            };
        }
        use hdf5_pure::DType as H;
        match dtype {
            H::F32 => get!(read_f32),
            H::F64 => get!(read_f64),
            H::I8 => get!(read_i8),
            H::I16 => get!(read_i16),
            H::I32 => get!(read_i32),
            H::I64 => get!(read_i64),
            H::U8 => get!(read_u8),
            H::U16 => get!(read_u16),
            H::U32 => get!(read_u32),
            H::U64 => get!(read_u64),
            other => Err(err(format!(
                "has HDF5 type {other}, which kiln does not read (it reads float32/64 and integers)"
            ))),
        }
    }

    /// Every dataset, by path (groups walked depth first, at most 32 deep and 100,000
    /// datasets).
    pub(crate) fn all(&self) -> Result<Vec<(String, ArrayData)>> {
        let mut out = Vec::new();
        let mut stack = vec![(String::new(), 0usize)];
        while let Some((g, depth)) = stack.pop() {
            let group = if g.is_empty() {
                self.file.root()
            } else {
                self.file
                    .group(&g)
                    .map_err(|e| format_err(&self.label, format!("group {g:?}: {e}")))?
            };
            let join = |n: &str| {
                if g.is_empty() {
                    n.to_string()
                } else {
                    format!("{g}/{n}")
                }
            };
            let mut names = group
                .datasets()
                .map_err(|e| format_err(&self.label, format!("group {g:?}: {e}")))?;
            names.sort_by_key(|n| (n.parse::<u64>().unwrap_or(u64::MAX), n.clone()));
            for d in names {
                if out.len() >= 100_000 {
                    return Err(format_err(&self.label, "more than 100,000 datasets"));
                }
                let p = join(&d);
                out.push((p.clone(), self.read(&p)?));
            }
            let mut subs = group
                .groups()
                .map_err(|e| format_err(&self.label, format!("group {g:?}: {e}")))?;
            if depth >= 32 && !subs.is_empty() {
                return Err(format_err(&self.label, "groups nest deeper than 32"));
            }
            subs.sort();
            for s in subs.into_iter().rev() {
                stack.push((join(&s), depth + 1));
            }
        }
        Ok(out)
    }
}

// ---------- archives ----------

fn read_member(a: &mut Archive, name: &str, path: &str) -> Result<Vec<u8>> {
    let i = a
        .members
        .iter()
        .position(|m| m.name == name)
        .ok_or_else(|| format_err(path, format!("the archive has no {name:?}")))?;
    let size = a.members[i].size;
    let mut buf = Vec::new();
    let n =
        usize::try_from(size).map_err(|_| format_err(path, format!("{name:?} is too large")))?;
    buf.try_reserve_exact(n)
        .map_err(|_| format_err(path, format!("{name:?}: cannot allocate {size} bytes")))?;
    let mut r = a.member(i)?;
    let label = r.label();
    r.read_to_end(&mut buf)
        .map_err(|e| format_err(&label, e.to_string()))?;
    r.finish()?;
    Ok(buf)
}

fn json_member(a: &mut Archive, name: &str, path: &str) -> Result<Value> {
    let b = read_member(a, name, path)?;
    serde_json::from_slice(&b)
        .map_err(|e| format_err(&format!("{path}[{name:?}]"), format!("not valid JSON: {e}")))
}

fn write_zip(path: &str, members: &[(&str, &[u8])]) -> Result<()> {
    if let Some(dir) = Path::new(path).parent() {
        if !dir.as_os_str().is_empty() && !dir.exists() {
            std::fs::create_dir_all(dir).map_err(|e| io_err(path, e))?;
        }
    }
    let f = std::fs::File::create(path).map_err(|e| io_err(path, e))?;
    let mut z = zip::ZipWriter::new(f);
    // Stored, as Keras writes them: the weights do not compress and readers can bound them.
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Stored)
        .large_file(
            members
                .iter()
                .any(|(_, b)| b.len() as u64 >= u32::MAX as u64),
        );
    for (name, bytes) in members {
        z.start_file(*name, opts).map_err(|e| io_err(path, e))?;
        std::io::Write::write_all(&mut z, bytes).map_err(|e| io_err(path, e))?;
    }
    z.finish().map_err(|e| io_err(path, e))?;
    Ok(())
}

fn date_saved() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let (days, rem) = ((secs / 86400) as i64, secs % 86400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}@{:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Saves `model` to `path`: a `.keras` file Python Keras 3 loads, or a `.kiln` file (see
/// the module docs). The model is built first if it is not.
pub fn save_model(model: &mut Model, path: &str) -> Result<()> {
    let format = ModelFormat::of(path)?;
    model.build_if_needed()?;
    let mut config = model_config::model_to_keras(model);
    config["compile_config"] = model_config::compile_to_keras(model);
    let tree = model.keras_tree();
    let weights = model.get_weights()?;
    let opt_state = match model.compiled_parts() {
        Some((o, ..)) => Some((o.name().to_string(), o.state_arrays()?)),
        None => None,
    };
    match format {
        ModelFormat::Keras => {
            let meta = json!({"keras_version": KERAS_VERSION, "date_saved": date_saved()});
            let h5 = weights_h5(
                &tree,
                &weights,
                opt_state.as_ref().map(|(n, a)| (n.as_str(), a.as_slice())),
            )?;
            write_zip(
                path,
                &[
                    ("metadata.json", meta.to_string().as_bytes()),
                    ("config.json", config.to_string().as_bytes()),
                    ("model.weights.h5", &h5),
                ],
            )
        }
        ModelFormat::Kiln => {
            let (step, seed) = model.train_counters();
            let mut named: Vec<(String, ArrayData)> =
                tree.var_paths("").into_iter().zip(weights).collect();
            let mut kiln_opt = Value::Null;
            if let Some((_, arrays)) = &opt_state {
                for (i, a) in arrays.iter().enumerate() {
                    named.push((format!("optimizer/vars/{i}"), a.clone()));
                }
                if let Some((o, ..)) = model.compiled_parts() {
                    let (extra, comp) = o.kiln_state()?;
                    kiln_opt = extra;
                    for (i, c) in comp.into_iter().enumerate() {
                        if let Some(c) = c {
                            named.push((format!("optimizer/kiln/compensation/{i}"), c));
                        }
                    }
                }
            }
            let refs: Vec<(&str, &ArrayData)> =
                named.iter().map(|(n, a)| (n.as_str(), a)).collect();
            let st = crate::io::safetensors::safetensors_to_bytes(&refs)?;
            let meta = json!({
                "format": "kiln",
                "format_version": KILN_FORMAT_VERSION,
                "kiln_version": env!("CARGO_PKG_VERSION"),
                "keras_version": KERAS_VERSION,
                "date_saved": date_saved(),
                "training": {"step": step, "seed": seed, "optimizer": kiln_opt},
            });
            write_zip(
                path,
                &[
                    ("metadata.json", meta.to_string().as_bytes()),
                    ("config.json", config.to_string().as_bytes()),
                    ("model.weights.safetensors", &st),
                ],
            )
        }
    }
}

/// Loads a model saved by Keras 3 (`.keras`) or by kiln (`.kiln`, `.keras`), built,
/// compiled where the file has a compile config, with its weights and optimizer state.
pub fn load_model(path: &str) -> Result<Model> {
    load_model_with(path, ZipLimits::default())
}

/// [`load_model`] with explicit bounds on what the archive may inflate to.
pub fn load_model_with(path: &str, limits: ZipLimits) -> Result<Model> {
    let parts = read_parts(path, limits)?;
    assemble(parts, path)
}

/// What a model archive holds: its config, metadata and every array by its path
/// (`layers/dense/vars/0`, `optimizer/vars/0`, `optimizer/kiln/compensation/0`).
pub(crate) struct Parts {
    format: ModelFormat,
    config: Value,
    meta: Value,
    arrays: Vec<(String, ArrayData)>,
}

pub(crate) fn read_parts(path: &str, limits: ZipLimits) -> Result<Parts> {
    let format = ModelFormat::of(path)?;
    let mut a = Archive::open(Path::new(path), limits)?;
    let config = json_member(&mut a, "config.json", path)?;
    let meta = json_member(&mut a, "metadata.json", path)?;
    let arrays = match format {
        ModelFormat::Keras => {
            let bytes = read_member(&mut a, "model.weights.h5", path)?;
            H5::from_bytes(bytes, &format!("{path}[\"model.weights.h5\"]"), limits)?.all()?
        }
        ModelFormat::Kiln => {
            if meta.get("format").and_then(Value::as_str) != Some("kiln") {
                return Err(format_err(
                    path,
                    "metadata.json does not say format \"kiln\"",
                ));
            }
            if meta
                .get("format_version")
                .and_then(Value::as_u64)
                .is_none_or(|v| v > KILN_FORMAT_VERSION)
            {
                return Err(format_err(
                    path,
                    format!(
                        "written by a newer kiln (format_version {}); this kiln reads {KILN_FORMAT_VERSION}",
                        short_json(meta.get("format_version"))
                    ),
                ));
            }
            let bytes = read_member(&mut a, "model.weights.safetensors", path)?;
            crate::io::safetensors::safetensors_from_bytes(
                &bytes,
                &format!("{path}[\"model.weights.safetensors\"]"),
            )?
        }
    };
    Ok(Parts {
        format,
        config,
        meta,
        arrays,
    })
}

/// The model a file's parts describe: built, compiled, weights and optimizer state set.
pub(crate) fn assemble(parts: Parts, path: &str) -> Result<Model> {
    let Parts {
        format,
        config,
        meta,
        mut arrays,
    } = parts;
    let mut model = model_config::model_from_keras(&config).map_err(|e| with_path(e, path))?;
    let compiled = match config.get("compile_config") {
        Some(cc) => {
            model_config::compile_from_keras(&mut model, cc).map_err(|e| with_path(e, path))?
        }
        None => false,
    };
    let paths = model.keras_tree().var_paths("");
    let cur = model.get_weights()?;
    let mut take = |k: &str| {
        arrays
            .iter()
            .position(|(n, _)| n == k)
            .map(|i| arrays.swap_remove(i).1)
    };
    let weights = paths
        .iter()
        .map(|p| take(p).ok_or_else(|| format_err(path, format!("the weights have no {p:?}"))))
        .collect::<Result<Vec<_>>>()?;
    let mut opt_arrays = Vec::new();
    while let Some(x) = take(&format!("optimizer/vars/{}", opt_arrays.len())) {
        opt_arrays.push(x);
    }
    let n_train = model.trainable_variables().len();
    let comp: Vec<Option<ArrayData>> = (0..n_train)
        .map(|i| take(&format!("optimizer/kiln/compensation/{i}")))
        .collect();
    if let (ModelFormat::Kiln, Some((k, _))) = (format, arrays.first()) {
        return Err(format_err(
            path,
            format!(
                "the weights hold {}, which the model does not have",
                crate::io::zipread::shown(k)
            ),
        ));
    }
    for ((p, w), c) in paths.iter().zip(&weights).zip(&cur) {
        if w.shape() != c.shape() {
            return Err(format_err(
                path,
                format!(
                    "weight {p} has shape {:?}; the model's config makes it {:?}",
                    w.shape(),
                    c.shape()
                ),
            ));
        }
        if w.dtype() != c.dtype() {
            return Err(format_err(path, format!("weight {p} is {}; the model's config makes it {} (the file's dtype policy and its weights disagree)", w.dtype(), c.dtype())));
        }
    }
    model.set_weights(&weights)?;
    let training = meta.get("training").cloned().unwrap_or(Value::Null);
    if compiled && !opt_arrays.is_empty() {
        let vars: Vec<crate::tensor::Variable> =
            model.trainable_variables().into_iter().cloned().collect();
        let refs: Vec<&crate::tensor::Variable> = vars.iter().collect();
        if let Some(o) = model.optimizer_mut() {
            o.load_state_arrays(&opt_arrays, &refs)
                .map_err(|e| with_path(e, path))?;
            if let Some(extra) = training.get("optimizer").filter(|v| !v.is_null()) {
                o.load_kiln_state(extra, comp)?;
            }
        }
    }
    if let (Some(step), Some(seed)) = (
        training.get("step").and_then(Value::as_u64),
        training.get("seed").and_then(Value::as_u64),
    ) {
        model.set_train_counters(step, seed);
    }
    Ok(model)
}

/// Every array of a `.keras` or `.kiln` file, by its path in the file.
pub(crate) fn archive_arrays(path: &str) -> Result<Vec<(String, ArrayData)>> {
    Ok(read_parts(path, ZipLimits::default())?.arrays)
}

/// Every dataset of an HDF5 file, by its path.
pub(crate) fn h5_arrays(path: &str) -> Result<Vec<(String, ArrayData)>> {
    let limits = ZipLimits::default();
    let len = std::fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    if len > limits.max_total {
        return Err(format_err(
            path,
            format!("{len} bytes, over the {} byte cap", limits.max_total),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    H5::from_bytes(bytes, path, limits)?.all()
}

/// Rewrites a model archive with `arrays` (its own, converted): the config's dtype
/// policies follow the weights' new float dtype, and the model is rebuilt, checked and
/// saved in `output`'s format.
pub(crate) fn convert_archive(
    input: &str,
    output: &str,
    arrays: &[(String, ArrayData)],
) -> Result<()> {
    let mut parts = read_parts(input, ZipLimits::default())?;
    let change = parts.arrays.iter().find_map(|(n, a)| {
        let to = arrays.iter().find(|(m, _)| m == n)?.1.dtype();
        (a.dtype().is_float() && to != a.dtype()).then(|| (a.dtype(), to))
    });
    if let Some((from, to)) = change {
        rewrite_policies(&mut parts.config, from.name(), to.name(), 0);
    }
    parts.arrays = arrays.to_vec();
    let mut model = assemble(parts, input)?;
    save_model(&mut model, output)
}

fn rewrite_policies(v: &mut Value, from: &str, to: &str, depth: usize) {
    if depth > 64 {
        return;
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "dtype" {
                    match x {
                        Value::String(s) if s == from => *x = json!(to),
                        Value::Object(p) => {
                            if let Some(n) = p.get_mut("config").and_then(|c| c.get_mut("name")) {
                                if n == from {
                                    *n = json!(to);
                                }
                            }
                        }
                        _ => {}
                    }
                } else {
                    rewrite_policies(x, from, to, depth + 1);
                }
            }
        }
        Value::Array(a) => a
            .iter_mut()
            .for_each(|x| rewrite_policies(x, from, to, depth + 1)),
        _ => {}
    }
}

fn short_json(v: Option<&Value>) -> String {
    v.map(crate::nn::optimizers::saving::short)
        .unwrap_or_else(|| "none".into())
}

fn with_path(e: KilnError, path: &str) -> KilnError {
    match e {
        KilnError::InvalidArgument { op, message } => KilnError::InvalidArgument {
            op,
            message: format!("{}: {message}", crate::io::zipread::shown(path)),
        },
        other => other,
    }
}

/// Saves the weights alone in Keras's `.weights.h5` layout (`model.save_weights` in Keras).
pub(crate) fn save_weights_h5(model: &Model, path: &str) -> Result<()> {
    let bytes = weights_h5(&model.keras_tree(), &model.get_weights()?, None)?;
    std::fs::write(path, bytes).map_err(|e| io_err(path, e))
}

/// Loads Keras's `.weights.h5` into a built model, every weight by its Keras path.
pub(crate) fn load_weights_h5(model: &mut Model, path: &str) -> Result<()> {
    let len = std::fs::metadata(path).map_err(|e| io_err(path, e))?.len();
    let limits = ZipLimits::default();
    if len > limits.max_total {
        return Err(format_err(
            path,
            format!("{len} bytes, over the {} byte cap", limits.max_total),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| io_err(path, e))?;
    let h5 = H5::from_bytes(
        bytes,
        path,
        ZipLimits {
            max_ratio: 1,
            ..limits
        },
    )?;
    let cur = model.get_weights()?;
    let mut w = Vec::with_capacity(cur.len());
    for (p, c) in model.keras_tree().var_paths("").iter().zip(&cur) {
        let a = h5.read(p)?;
        if a.shape() != c.shape() || a.dtype() != c.dtype() {
            return Err(format_err(
                path,
                format!(
                    "weight {p} is {} {:?}; the model's is {} {:?}",
                    a.dtype(),
                    a.shape(),
                    c.dtype(),
                    c.shape()
                ),
            ));
        }
        w.push(a);
    }
    model.set_weights(&w)
}
