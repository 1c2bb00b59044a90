//! Keras's config schema, both ways: every kiln layer to and from its
//! `{"module", "class_name", "config", "registered_name", "build_config"}` entry, and
//! compile configs (losses, metrics; the optimizer's is in `optimizers/saving.rs`).
//!
//! A config is data from strangers. Only Keras's own layer classes are built, from the
//! `keras.layers` / `keras` modules; `Lambda`, any `__lambda__` or function value, custom
//! `registered_name`s, other modules, and options kiln does not have are refused with an
//! error naming the layer's class, its name and its path in the model (the classes of
//! Keras's CVE-2024-3660, CVE-2025-1550, CVE-2025-8747, CVE-2025-12058). Nothing in a
//! config is ever run, imported, fetched or opened.

use super::super::layers::{self as L, Layer, Shape};
use super::super::losses::Loss;
use super::super::optimizers::saving::{escape, short};
use super::super::{DTypePolicy, Initializer, Regularizer};
use crate::error::{KilnError, Result};
use serde_json::{json, Value};

/// The options every kernel-and-bias layer shares (`kernel_layer_builders!`'s).
macro_rules! kernel_options {
    ($l:expr, $f:expr) => {{
        let mut l = $l
            .activation(&$f.activation("activation")?)
            .use_bias($f.bool("use_bias", true)?)
            .kernel_initializer($f.initializer("kernel_initializer", Initializer::GlorotUniform)?)
            .bias_initializer($f.initializer("bias_initializer", Initializer::Zeros)?);
        if let Some(r) = $f.regularizer("kernel_regularizer")? {
            l = l.kernel_regularizer(r);
        }
        if let Some(r) = $f.regularizer("bias_regularizer")? {
            l = l.bias_regularizer(r);
        }
        if let Some(p) = $f.policy()? {
            l = l.dtype(p);
        }
        l
    }};
}

/// The options every normalization layer shares (`norm_builders!`'s).
macro_rules! norm_options {
    ($l:expr, $f:expr) => {{
        let mut l = $l
            .epsilon($f.f64("epsilon", 1e-3)?)
            .center($f.bool("center", true)?)
            .scale($f.bool("scale", true)?);
        if let Some(p) = $f.policy()? {
            l = l.dtype(p);
        }
        l
    }};
}

/// A layer's place in Keras's weights file: its name, how many variables it owns
/// (`vars/0..`), and the layers inside it (a nested model's `layers/<key>/...`), each under
/// its key (snake-case class name, `_1`, `_2`... among the same class).
#[derive(Clone, Debug, Default)]
pub struct KerasTree {
    /// The layer's name (the `name` attribute of its `vars` group).
    pub name: String,
    /// The number of variables it owns.
    pub vars: usize,
    /// Nested layers, keyed.
    pub layers: Vec<(String, KerasTree)>,
}

impl KerasTree {
    /// Keys `layers` as Keras's `_save_container_state` does: snake-case class name, then
    /// `_1`, `_2`... for the next ones of that class.
    pub fn keyed(items: Vec<(&str, KerasTree)>) -> Vec<(String, KerasTree)> {
        let mut used: std::collections::BTreeMap<String, usize> = Default::default();
        items
            .into_iter()
            .map(|(class, t)| {
                let base = super::super::model::snake(class);
                let n = used.entry(base.clone()).or_insert(0);
                let key = if *n == 0 {
                    base.clone()
                } else {
                    format!("{base}_{n}")
                };
                *n += 1;
                (key, t)
            })
            .collect()
    }
    /// Each variable's path, in the owner's `variables()` order (own first, then nested).
    pub fn var_paths(&self, prefix: &str) -> Vec<String> {
        let mut out: Vec<String> = (0..self.vars)
            .map(|i| format!("{prefix}vars/{i}"))
            .collect();
        for (k, t) in &self.layers {
            out.extend(t.var_paths(&format!("{prefix}layers/{k}/")));
        }
        out
    }
}

fn shape_json(s: &[Option<usize>]) -> Value {
    json!(s)
}

/// A layer's entry, as Keras serializes it.
pub(crate) fn wrap(l: &dyn Layer, input: Option<Value>, model_policy: Option<&str>) -> Value {
    let mut config = l.config();
    if let (Some(p), Some(d)) = (model_policy, config.get_mut("dtype")) {
        // Layers that keep no policy of their own run in the model's.
        if d == "float32" && p != "float32" {
            *d = json!(p);
        }
    }
    let (module, registered) = match l.class_name() {
        "Functional" => ("keras.src.models.functional", json!("Functional")),
        "Sequential" => ("keras", Value::Null),
        _ => ("keras.layers", Value::Null),
    };
    let mut e = json!({"module": module, "class_name": l.class_name(), "config": config, "registered_name": registered});
    if let Some(s) = input {
        e["build_config"] = json!({ "input_shape": s });
    }
    e
}

/// An `InputLayer` entry.
pub(crate) fn input_entry(name: &str, shape: &[Option<usize>], dtype: &str) -> Value {
    json!({
        "module": "keras.layers",
        "class_name": "InputLayer",
        "config": {"batch_shape": shape_json(shape), "dtype": dtype, "sparse": false, "ragged": false, "name": name, "optional": false},
        "registered_name": null,
    })
}

/// Reads one layer's config, naming it in every error.
pub(crate) struct Cfg<'a> {
    pub c: &'a Value,
    pub class: &'a str,
    pub name: String,
    pub path: &'a str,
}

impl<'a> Cfg<'a> {
    pub fn err(&self, msg: impl std::fmt::Display) -> KilnError {
        KilnError::invalid(
            "load_model",
            format!(
                "layer {} {:?} at {}: {msg}",
                self.class,
                escape(&self.name),
                escape(self.path)
            ),
        )
    }
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.c.get(key).filter(|v| !v.is_null())
    }
    pub fn usize(&self, key: &str, default: Option<usize>) -> Result<usize> {
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("needs {key:?}"))),
            Some(v) => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n < (1 << 40))
                .ok_or_else(|| self.err(format!("{key:?} must be a count, got {}", short(v)))),
        }
    }
    pub fn isize(&self, key: &str, default: isize) -> Result<isize> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_i64()
                .filter(|n| n.abs() < 1 << 20)
                .map(|n| n as isize)
                .ok_or_else(|| self.err(format!("{key:?} must be an integer, got {}", short(v)))),
        }
    }
    pub fn f64(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite()).ok_or_else(|| {
                self.err(format!("{key:?} must be a finite number, got {}", short(v)))
            }),
        }
    }
    pub fn bool(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v.as_bool().ok_or_else(|| {
                self.err(format!("{key:?} must be true or false, got {}", short(v)))
            }),
        }
    }
    pub fn string(&self, key: &str, default: &str) -> Result<String> {
        match self.get(key) {
            None => Ok(default.to_string()),
            Some(v) => v
                .as_str()
                .filter(|s| s.len() < 256)
                .map(String::from)
                .ok_or_else(|| self.err(format!("{key:?} must be a string, got {}", short(v)))),
        }
    }
    /// One of `allowed` (a Keras enum such as `padding`).
    pub fn choice(&self, key: &str, default: &str, allowed: &[&str]) -> Result<String> {
        let s = self.string(key, default)?;
        if allowed.contains(&s.as_str()) {
            Ok(s)
        } else {
            Err(self.err(format!(
                "{key:?} is {:?}; kiln has {}",
                escape(&s),
                allowed.join(", ")
            )))
        }
    }
    /// A size per spatial axis: one integer for all, or a list of `N`.
    pub fn size<const N: usize>(
        &self,
        key: &str,
        default: Option<[usize; N]>,
    ) -> Result<[usize; N]> {
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n < (1 << 32))
        };
        match self.get(key) {
            None => default.ok_or_else(|| self.err(format!("needs {key:?}"))),
            Some(v) => {
                if let Some(n) = one(v) {
                    return Ok([n; N]);
                }
                let list = v.as_array().filter(|l| l.len() == N).ok_or_else(|| {
                    self.err(format!(
                        "{key:?} must be an integer or a list of {N}, got {}",
                        short(v)
                    ))
                })?;
                let mut out = [0usize; N];
                for (o, x) in out.iter_mut().zip(list) {
                    *o = one(x).ok_or_else(|| {
                        self.err(format!("{key:?} holds {}, not a size", short(x)))
                    })?;
                }
                Ok(out)
            }
        }
    }
    /// Margins per spatial axis (`ZeroPadding`, `Cropping`): an integer, a list of `N`
    /// integers, or a list of `N` pairs (for `N == 1`, one pair).
    pub fn margins<const N: usize>(
        &self,
        key: &str,
        default: usize,
    ) -> Result<[(usize, usize); N]> {
        let one = |v: &Value| {
            v.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n < (1 << 32))
        };
        let Some(v) = self.get(key) else {
            return Ok([(default, default); N]);
        };
        let bad = || {
            self.err(format!(
                "{key:?} must be an integer, {N} integers or {N} pairs, got {}",
                short(v)
            ))
        };
        if let Some(n) = one(v) {
            return Ok([(n, n); N]);
        }
        let list = v.as_array().ok_or_else(bad)?;
        let mut out = [(0usize, 0usize); N];
        if N == 1 && list.len() == 2 && list.iter().all(|x| one(x).is_some()) {
            out[0] = (
                one(&list[0]).ok_or_else(bad)?,
                one(&list[1]).ok_or_else(bad)?,
            );
            return Ok(out);
        }
        if list.len() != N {
            return Err(bad());
        }
        for (o, x) in out.iter_mut().zip(list) {
            *o = match (one(x), x.as_array()) {
                (Some(n), _) => (n, n),
                (None, Some(p)) if p.len() == 2 => (
                    p.first().and_then(one).ok_or_else(bad)?,
                    p.get(1).and_then(one).ok_or_else(bad)?,
                ),
                _ => return Err(bad()),
            };
        }
        Ok(out)
    }
    /// An option kiln does not have must be absent or at its neutral value.
    pub fn unsupported(&self, keys: &[&str]) -> Result<()> {
        for k in keys {
            if let Some(v) = self.get(k) {
                let neutral =
                    v == &json!(false) || v == &json!(0) || v == &json!({}) || v == &json!([]);
                if !neutral {
                    return Err(self.err(format!(
                        "{k:?} is {}, an option kiln does not have; remove it (or set it to null) to load the model",
                        short(v)
                    )));
                }
            }
        }
        Ok(())
    }
    pub fn policy(&self) -> Result<Option<DTypePolicy>> {
        let Some(v) = self.get("dtype") else {
            return Ok(None);
        };
        let name = match v {
            Value::String(s) => s.as_str(),
            Value::Object(_) => {
                let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
                if !matches!(class, "DTypePolicy" | "FloatDTypePolicy") {
                    return Err(self.err(format!(
                        "dtype policy {:?} is not one kiln has (quantized policies are not)",
                        escape(class)
                    )));
                }
                v.get("config")
                    .and_then(|c| c.get("name"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| self.err("its dtype policy has no name"))?
            }
            _ => return Err(self.err(format!("\"dtype\" must be a policy, got {}", short(v)))),
        };
        DTypePolicy::new(name).map(Some).map_err(|e| self.err(e))
    }
    pub fn initializer(&self, key: &str, default: Initializer) -> Result<Initializer> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        let (class, c) = match v {
            Value::String(s) => (s.as_str(), json!({})),
            Value::Object(_) => (
                v.get("class_name").and_then(Value::as_str).unwrap_or(""),
                v.get("config").cloned().unwrap_or(json!({})),
            ),
            _ => return Err(self.err(format!("{key:?} must be an initializer, got {}", short(v)))),
        };
        let sub = Cfg {
            c: &c,
            class: self.class,
            name: self.name.clone(),
            path: self.path,
        };
        let mut init = Initializer::get(class).map_err(|e| self.err(e))?;
        match &mut init {
            Initializer::RandomNormal { mean, stddev }
            | Initializer::TruncatedNormal { mean, stddev } => {
                *mean = sub.f64("mean", *mean)?;
                *stddev = sub.f64("stddev", *stddev)?;
            }
            Initializer::RandomUniform { minval, maxval } => {
                *minval = sub.f64("minval", *minval)?;
                *maxval = sub.f64("maxval", *maxval)?;
            }
            Initializer::Constant(v) => *v = sub.f64("value", *v)?,
            Initializer::Orthogonal { gain } => *gain = sub.f64("gain", *gain)?,
            _ => {}
        }
        Ok(init)
    }
    pub fn regularizer(&self, key: &str) -> Result<Option<Regularizer>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        let class = v.get("class_name").and_then(Value::as_str).unwrap_or("");
        let c = v.get("config").cloned().unwrap_or(json!({}));
        let sub = Cfg {
            c: &c,
            class: self.class,
            name: self.name.clone(),
            path: self.path,
        };
        Ok(Some(match class {
            "L1" => Regularizer::L1(sub.f64("l1", 0.01)?),
            "L2" => Regularizer::L2(sub.f64("l2", 0.01)?),
            "L1L2" => Regularizer::L1L2 {
                l1: sub.f64("l1", 0.0)?,
                l2: sub.f64("l2", 0.0)?,
            },
            other => {
                return Err(self.err(format!(
                    "{key:?} is regularizer {:?}; kiln has L1, L2 and L1L2",
                    escape(other)
                )))
            }
        }))
    }
    pub fn activation(&self, key: &str) -> Result<String> {
        let a = match self.get(key) {
            None => "linear".to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(v) => {
                return Err(self.err(format!(
                    "{key:?} must be an activation's name, got {} (serialized functions are never loaded)",
                    short(v)
                )))
            }
        };
        super::super::activations::ActivationFn::get(&a).map_err(|e| self.err(e))?;
        Ok(a)
    }
    fn data_format(&self) -> Result<String> {
        self.choice(
            "data_format",
            "channels_last",
            &["channels_last", "channels_first"],
        )
    }
}

/// Refuses what must never be acted on anywhere in a config: a `__lambda__`, a serialized
/// function, a module outside Keras's.
pub(crate) fn scan_hostile(v: &Value, path: &str, depth: usize) -> Result<()> {
    if depth > 64 {
        return Err(KilnError::invalid(
            "load_model",
            format!("the config nests deeper than 64 levels at {}", escape(path)),
        ));
    }
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                if k == "__lambda__" || k == "function" && x.is_object() || k == "function_type" {
                    return Err(KilnError::invalid(
                        "load_model",
                        format!("the config holds serialized code ({k:?}) at {}; kiln never runs code from a model file", escape(path)),
                    ));
                }
                if k == "module" {
                    if let Some(m) = x.as_str() {
                        if !(m == "keras" || m.starts_with("keras.")) || m.contains("..") {
                            return Err(KilnError::invalid(
                                "load_model",
                                format!("the config names module {:?} at {}; kiln loads only Keras's own classes", escape(m), escape(path)),
                            ));
                        }
                    }
                }
                if let Value::String(s) = x {
                    if k == "class_name"
                        && (s == "Lambda" || s == "TFSMLayer" || s.contains('>') || s.contains('.'))
                    {
                        return Err(KilnError::invalid(
                            "load_model",
                            format!(
                                "layer class {:?} at {} is refused: it would run or fetch code",
                                escape(s),
                                escape(path)
                            ),
                        ));
                    }
                }
                scan_hostile(x, &format!("{path}/{k}"), depth + 1)?;
            }
        }
        Value::Array(a) => {
            for (i, x) in a.iter().enumerate() {
                scan_hostile(x, &format!("{path}[{i}]"), depth + 1)?;
            }
        }
        _ => {}
    }
    Ok(())
}

/// A layer from its Keras entry; `path` is where it sits in the model (for errors).
pub(crate) fn layer_from_keras(entry: &Value, path: &str) -> Result<Box<dyn Layer>> {
    let class = entry
        .get("class_name")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            KilnError::invalid(
                "load_model",
                format!("the entry at {} has no class_name", escape(path)),
            )
        })?;
    let empty = json!({});
    let c = entry.get("config").unwrap_or(&empty);
    if !c.is_object() {
        return Err(KilnError::invalid(
            "load_model",
            format!(
                "layer {} at {}: its config is not an object",
                escape(class),
                escape(path)
            ),
        ));
    }
    if let Some(r) = entry.get("registered_name").and_then(Value::as_str) {
        if r != class && !(r == "Functional" && class == "Functional") {
            return Err(KilnError::invalid(
                "load_model",
                format!("layer {} at {} is registered as {:?}, a custom class; kiln builds only Keras's own layers", escape(class), escape(path), escape(r)),
            ));
        }
    }
    let name = c
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_string();
    let f = Cfg {
        c,
        class,
        name: name.clone(),
        path,
    };
    let common = [
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
        "quantization_config",
        "lora_rank",
    ];
    let mut layer: Box<dyn Layer> = match class {
        "Sequential" | "Functional" => Box::new(super::model_config::functional_from_keras(entry, path)?),
        "Dense" => {
            f.unsupported(&common)?;
            Box::new(kernel_options!(L::Dense::new(f.usize("units", None)?), f))
        }
        "Activation" => Box::new(L::Activation::new(&f.activation("activation")?)),
        "Dropout" => {
            f.unsupported(&["noise_shape"])?;
            let mut d = L::Dropout::new(f.f64("rate", 0.5)?);
            if let Some(s) = f.get("seed") {
                d = d.seed(s.as_u64().ok_or_else(|| f.err("\"seed\" must be a non-negative integer"))?);
            }
            Box::new(d)
        }
        "Flatten" => {
            if f.data_format()? != "channels_last" {
                return Err(f.err("data_format channels_first is not one kiln's Flatten has"));
            }
            Box::new(L::Flatten::new())
        }
        "Reshape" => {
            let t = f
                .get("target_shape")
                .and_then(Value::as_array)
                .ok_or_else(|| f.err("needs \"target_shape\" (a list)"))?;
            let t: Vec<isize> = t
                .iter()
                .map(|x| x.as_i64().filter(|n| *n >= -1 && *n < 1 << 40).map(|n| n as isize))
                .collect::<Option<_>>()
                .ok_or_else(|| f.err("\"target_shape\" must hold sizes (and at most one -1)"))?;
            Box::new(L::Reshape::new(&t))
        }
        "Identity" => Box::new(L::Identity::new()),
        "Conv1D" => Box::new(conv::<1>(&f)?),
        "Conv2D" => Box::new(conv::<2>(&f)?),
        "Conv3D" => Box::new(conv::<3>(&f)?),
        "Conv1DTranspose" => Box::new(conv_t::<1>(&f)?),
        "Conv2DTranspose" => Box::new(conv_t::<2>(&f)?),
        "Conv3DTranspose" => Box::new(conv_t::<3>(&f)?),
        "DepthwiseConv1D" => Box::new(depthwise::<1>(&f)?),
        "DepthwiseConv2D" => Box::new(depthwise::<2>(&f)?),
        "SeparableConv1D" => Box::new(separable::<1>(&f)?),
        "SeparableConv2D" => Box::new(separable::<2>(&f)?),
        "Embedding" => {
            f.unsupported(&["activity_regularizer", "embeddings_constraint", "mask_zero", "quantization_config", "lora_rank", "input_length", "sparse"])?;
            let mut e = L::Embedding::new(f.usize("input_dim", None)?, f.usize("output_dim", None)?)
                .embeddings_initializer(f.initializer("embeddings_initializer", Initializer::RandomUniform { minval: -0.05, maxval: 0.05 })?);
            if let Some(r) = f.regularizer("embeddings_regularizer")? {
                e = e.embeddings_regularizer(r);
            }
            if let Some(p) = f.policy()? {
                e = e.dtype(p);
            }
            Box::new(e)
        }
        "Add" => Box::new(L::Add::new()),
        "Subtract" => Box::new(L::Subtract::new()),
        "Multiply" => Box::new(L::Multiply::new()),
        "Average" => Box::new(L::Average::new()),
        "Maximum" => Box::new(L::Maximum::new()),
        "Minimum" => Box::new(L::Minimum::new()),
        "Concatenate" => Box::new(L::Concatenate::new().axis(f.isize("axis", -1)?)),
        "BatchNormalization" => {
            norm_checks(&f)?;
            f.unsupported(&["synchronized", "renorm", "renorm_clipping"])?;
            let axis = one_axis(&f)?;
            let b = L::BatchNormalization::new()
                .axis(axis)
                .momentum(f.f64("momentum", 0.99)?);
            Box::new(norm_options!(b, f))
        }
        "LayerNormalization" => {
            norm_checks(&f)?;
            f.unsupported(&["rms_scaling"])?;
            let b = L::LayerNormalization::new()
                .axis(one_axis(&f)?);
            Box::new(norm_options!(b, f))
        }
        "GroupNormalization" => {
            norm_checks(&f)?;
            let b = L::GroupNormalization::new()
                .groups(f.usize("groups", Some(32))?)
                .axis(one_axis(&f)?);
            Box::new(norm_options!(b, f))
        }
        "MaxPooling1D" => Box::new(pool::<1, true>(&f)?),
        "MaxPooling2D" => Box::new(pool::<2, true>(&f)?),
        "MaxPooling3D" => Box::new(pool::<3, true>(&f)?),
        "AveragePooling1D" => Box::new(pool::<1, false>(&f)?),
        "AveragePooling2D" => Box::new(pool::<2, false>(&f)?),
        "AveragePooling3D" => Box::new(pool::<3, false>(&f)?),
        "GlobalMaxPooling1D" => Box::new(gpool::<1, true>(&f)?),
        "GlobalMaxPooling2D" => Box::new(gpool::<2, true>(&f)?),
        "GlobalMaxPooling3D" => Box::new(gpool::<3, true>(&f)?),
        "GlobalAveragePooling1D" => Box::new(gpool::<1, false>(&f)?),
        "GlobalAveragePooling2D" => Box::new(gpool::<2, false>(&f)?),
        "GlobalAveragePooling3D" => Box::new(gpool::<3, false>(&f)?),
        "ZeroPadding1D" => Box::new(L::ZeroPadding::<1>::new(f.margins::<1>("padding", 1)?).data_format(&f.data_format()?)),
        "ZeroPadding2D" => Box::new(L::ZeroPadding::<2>::new(f.margins::<2>("padding", 1)?).data_format(&f.data_format()?)),
        "ZeroPadding3D" => Box::new(L::ZeroPadding::<3>::new(f.margins::<3>("padding", 1)?).data_format(&f.data_format()?)),
        "Cropping1D" => Box::new(L::Cropping::<1>::new(f.margins::<1>("cropping", 1)?)),
        "Cropping2D" => Box::new(L::Cropping::<2>::new(f.margins::<2>("cropping", 0)?).data_format(&f.data_format()?)),
        "Cropping3D" => Box::new(L::Cropping::<3>::new(f.margins::<3>("cropping", 1)?).data_format(&f.data_format()?)),
        "UpSampling1D" => Box::new(L::UpSampling::<1>::new(f.size::<1>("size", Some([2]))?)),
        "UpSampling2D" => {
            f.choice("interpolation", "nearest", &["nearest"])?;
            Box::new(L::UpSampling::<2>::new(f.size::<2>("size", Some([2, 2]))?).data_format(&f.data_format()?))
        }
        "UpSampling3D" => Box::new(L::UpSampling::<3>::new(f.size::<3>("size", Some([2, 2, 2]))?).data_format(&f.data_format()?)),
        "SpatialDropout1D" => Box::new(spatial_dropout::<1>(&f)?),
        "SpatialDropout2D" => Box::new(spatial_dropout::<2>(&f)?),
        "SpatialDropout3D" => Box::new(spatial_dropout::<3>(&f)?),
        "InputLayer" => return Err(f.err("an InputLayer is a model's input, not a layer inside a stack here")),
        other => {
            return Err(KilnError::invalid(
                "load_model",
                format!(
                    "layer {} {:?} at {}: kiln has no layer class {:?}; the model cannot be loaded (see the README's layer list)",
                    escape(other),
                    escape(&name),
                    escape(path),
                    escape(other)
                ),
            ))
        }
    };
    if !name.is_empty() {
        layer.set_name(name);
    }
    Ok(layer)
}

fn one_axis(f: &Cfg) -> Result<isize> {
    match f.get("axis") {
        Some(Value::Array(a)) if a.len() == 1 => a[0]
            .as_i64()
            .filter(|n| n.abs() < 64)
            .map(|n| n as isize)
            .ok_or_else(|| f.err("\"axis\" must be an integer")),
        Some(Value::Array(a)) => {
            Err(f.err(format!("\"axis\" is {a:?}; kiln normalizes over one axis")))
        }
        _ => f.isize("axis", -1),
    }
}

fn norm_checks(f: &Cfg) -> Result<()> {
    f.unsupported(&[
        "beta_regularizer",
        "gamma_regularizer",
        "beta_constraint",
        "gamma_constraint",
    ])?;
    for (k, want) in [
        ("beta_initializer", Initializer::Zeros),
        ("gamma_initializer", Initializer::Ones),
        ("moving_mean_initializer", Initializer::Zeros),
        ("moving_variance_initializer", Initializer::Ones),
    ] {
        let got = f.initializer(k, want.clone())?;
        if got.keras_name() != want.keras_name() {
            return Err(f.err(format!(
                "{k:?} is {}; kiln's normalization layers start from {}",
                got.keras_name(),
                want.keras_name()
            )));
        }
    }
    Ok(())
}

fn padding(f: &Cfg) -> Result<String> {
    f.choice("padding", "valid", &["valid", "same"])
}

fn conv<const N: usize>(f: &Cfg) -> Result<L::Conv<N>> {
    f.unsupported(&[
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
        "lora_rank",
    ])?;
    let mut c = L::Conv::<N>::new(f.usize("filters", None)?, f.size::<N>("kernel_size", None)?)
        .strides(f.size::<N>("strides", Some([1; N]))?)
        .padding(&f.choice("padding", "valid", &["valid", "same", "causal"])?)
        .data_format(&f.data_format()?)
        .dilation_rate(f.size::<N>("dilation_rate", Some([1; N]))?)
        .groups(f.usize("groups", Some(1))?);
    c = kernel_options!(c, f);
    Ok(c)
}

fn conv_t<const N: usize>(f: &Cfg) -> Result<L::ConvTranspose<N>> {
    f.unsupported(&[
        "activity_regularizer",
        "kernel_constraint",
        "bias_constraint",
    ])?;
    let mut c =
        L::ConvTranspose::<N>::new(f.usize("filters", None)?, f.size::<N>("kernel_size", None)?)
            .strides(f.size::<N>("strides", Some([1; N]))?)
            .padding(&padding(f)?)
            .data_format(&f.data_format()?)
            .dilation_rate(f.size::<N>("dilation_rate", Some([1; N]))?);
    if f.get("output_padding").is_some() {
        c = c.output_padding(f.size::<N>("output_padding", None)?);
    }
    c = kernel_options!(c, f);
    Ok(c)
}

fn depthwise<const N: usize>(f: &Cfg) -> Result<L::DepthwiseConv<N>> {
    f.unsupported(&[
        "activity_regularizer",
        "depthwise_regularizer",
        "bias_regularizer",
        "depthwise_constraint",
        "bias_constraint",
    ])?;
    let mut c = L::DepthwiseConv::<N>::new(f.size::<N>("kernel_size", None)?)
        .strides(f.size::<N>("strides", Some([1; N]))?)
        .padding(&padding(f)?)
        .data_format(&f.data_format()?)
        .dilation_rate(f.size::<N>("dilation_rate", Some([1; N]))?)
        .depth_multiplier(f.usize("depth_multiplier", Some(1))?)
        .activation(&f.activation("activation")?)
        .use_bias(f.bool("use_bias", true)?)
        .depthwise_initializer(f.initializer("depthwise_initializer", Initializer::GlorotUniform)?);
    if let Some(p) = f.policy()? {
        c = c.dtype(p);
    }
    Ok(c)
}

fn separable<const N: usize>(f: &Cfg) -> Result<L::SeparableConv<N>> {
    f.unsupported(&[
        "activity_regularizer",
        "depthwise_regularizer",
        "pointwise_regularizer",
        "bias_regularizer",
        "depthwise_constraint",
        "pointwise_constraint",
        "bias_constraint",
    ])?;
    let mut c =
        L::SeparableConv::<N>::new(f.usize("filters", None)?, f.size::<N>("kernel_size", None)?)
            .strides(f.size::<N>("strides", Some([1; N]))?)
            .padding(&padding(f)?)
            .data_format(&f.data_format()?)
            .dilation_rate(f.size::<N>("dilation_rate", Some([1; N]))?)
            .depth_multiplier(f.usize("depth_multiplier", Some(1))?)
            .activation(&f.activation("activation")?)
            .use_bias(f.bool("use_bias", true)?);
    if let Some(p) = f.policy()? {
        c = c.dtype(p);
    }
    Ok(c)
}

fn pool<const N: usize, const MAX: bool>(f: &Cfg) -> Result<L::Pool<N, MAX>> {
    let size = f.size::<N>("pool_size", Some([2; N]))?;
    Ok(L::Pool::<N, MAX>::new(size)
        .strides(f.size::<N>("strides", Some(size))?)
        .padding(&padding(f)?)
        .data_format(&f.data_format()?))
}

fn gpool<const N: usize, const MAX: bool>(f: &Cfg) -> Result<L::GlobalPool<N, MAX>> {
    Ok(L::GlobalPool::<N, MAX>::new()
        .data_format(&f.data_format()?)
        .keepdims(f.bool("keepdims", false)?))
}

fn spatial_dropout<const N: usize>(f: &Cfg) -> Result<L::SpatialDropout<N>> {
    let mut d = L::SpatialDropout::<N>::new(f.f64("rate", 0.5)?).data_format(&f.data_format()?);
    if let Some(s) = f.get("seed") {
        d = d.seed(
            s.as_u64()
                .ok_or_else(|| f.err("\"seed\" must be a non-negative integer"))?,
        );
    }
    Ok(d)
}

/// A loss as Keras serializes it in a compile config.
pub(crate) fn loss_to_keras(l: &Loss) -> Value {
    let (class, extra) = match *l {
        Loss::MeanSquaredError => ("MeanSquaredError", json!({})),
        Loss::MeanAbsoluteError => ("MeanAbsoluteError", json!({})),
        Loss::MeanAbsolutePercentageError => ("MeanAbsolutePercentageError", json!({})),
        Loss::Huber { delta } => ("Huber", json!({ "delta": delta })),
        Loss::LogCosh => ("LogCosh", json!({})),
        Loss::BinaryCrossentropy {
            from_logits,
            label_smoothing,
        } => (
            "BinaryCrossentropy",
            json!({"from_logits": from_logits, "label_smoothing": label_smoothing, "axis": -1}),
        ),
        Loss::CategoricalCrossentropy {
            from_logits,
            label_smoothing,
        } => (
            "CategoricalCrossentropy",
            json!({"from_logits": from_logits, "label_smoothing": label_smoothing, "axis": -1}),
        ),
        Loss::SparseCategoricalCrossentropy { from_logits } => (
            "SparseCategoricalCrossentropy",
            json!({"from_logits": from_logits, "ignore_class": null}),
        ),
        Loss::KLDivergence => ("KLDivergence", json!({})),
        Loss::Hinge => ("Hinge", json!({})),
    };
    let mut c = json!({"name": l.name(), "reduction": "sum_over_batch_size"});
    if let (Some(c), Some(e)) = (c.as_object_mut(), extra.as_object()) {
        c.extend(e.clone());
    }
    json!({"module": "keras.losses", "class_name": class, "config": c, "registered_name": null})
}

/// A loss from a compile config: a name (`"mse"`) or a serialized loss.
pub(crate) fn loss_from_keras(v: &Value) -> Result<Loss> {
    let err = |m: String| KilnError::invalid("load_model", format!("compile_config loss: {m}"));
    if let Some(s) = v.as_str() {
        return Loss::get(s).map_err(|e| err(e.to_string()));
    }
    let class = v.get("class_name").and_then(Value::as_str).ok_or_else(|| {
        err(format!(
            "must be a name or a serialized loss, got {}",
            short(v)
        ))
    })?;
    let empty = json!({});
    let c = v.get("config").unwrap_or(&empty);
    let f = Cfg {
        c,
        class,
        name: String::new(),
        path: "compile_config.loss",
    };
    f.choice("reduction", "sum_over_batch_size", &["sum_over_batch_size"])?;
    f.unsupported(&["ignore_class"])?;
    if f.isize("axis", -1)? != -1 {
        return Err(f.err("kiln's crossentropies take the last axis"));
    }
    let mut l = Loss::get(class).map_err(|e| err(e.to_string()))?;
    match &mut l {
        Loss::Huber { delta } => *delta = f.f64("delta", 1.0)?,
        Loss::BinaryCrossentropy {
            from_logits,
            label_smoothing,
        }
        | Loss::CategoricalCrossentropy {
            from_logits,
            label_smoothing,
        } => {
            *from_logits = f.bool("from_logits", false)?;
            *label_smoothing = f.f64("label_smoothing", 0.0)?;
        }
        Loss::SparseCategoricalCrossentropy { from_logits } => {
            *from_logits = f.bool("from_logits", false)?
        }
        _ => {}
    }
    Ok(l)
}

/// A metric's name from a compile config (a name, or a serialized metric's config name).
pub(crate) fn metric_from_keras(v: &Value) -> Result<String> {
    if let Some(s) = v.as_str() {
        return Ok(s.to_string());
    }
    v.get("config")
        .and_then(|c| c.get("name"))
        .and_then(Value::as_str)
        .map(String::from)
        .ok_or_else(|| {
            KilnError::invalid(
                "load_model",
                format!(
                    "compile_config metric {} is not a metric kiln knows",
                    short(v)
                ),
            )
        })
}

/// Shapes for a `build_config`: one shape, or a list for several inputs.
pub(crate) fn build_shape(shapes: &[Shape]) -> Value {
    match shapes {
        [s] => shape_json(s),
        many => json!(many),
    }
}
