//! Models to and from Keras's config: `Sequential` and `Functional` (nested ones too), and
//! the compile config.

use super::config::{
    build_shape, input_entry, layer_from_keras, loss_from_keras, loss_to_keras, metric_from_keras,
    wrap,
};
use crate::error::{KilnError, Result};
use crate::nn::functional::{Functional, Graph, KerasTensor};
use crate::nn::layers::{Input, Shape};
use crate::nn::optimizers::saving::{escape, short};
use crate::nn::{CompileArgs, Loss, Model, Optimizer, Sequential};
use serde_json::{json, Value};
use std::collections::HashMap;

fn bad(msg: impl Into<String>) -> KilnError {
    KilnError::invalid("load_model", msg.into())
}

/// A per-sample shape from a `batch_shape` (`[null, 4]`): every axis after the batch known.
fn sample_shape(v: &Value, what: &str) -> Result<Vec<usize>> {
    let a = v
        .as_array()
        .filter(|a| !a.is_empty() && a.len() <= 16)
        .ok_or_else(|| {
            bad(format!(
                "{what}: the input shape must be a list with a batch axis, got {}",
                short(v)
            ))
        })?;
    a[1..]
        .iter()
        .map(|d| {
            d.as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .filter(|n| *n < (1 << 32))
                .ok_or_else(|| {
                    bad(format!(
                        "{what}: input shape {} has an axis of unknown size; kiln's models take fixed per-sample shapes",
                        short(v)
                    ))
                })
        })
        .collect()
}

fn class_of(e: &Value) -> &str {
    e.get("class_name").and_then(Value::as_str).unwrap_or("")
}

fn input_layer_shape(e: &Value, what: &str) -> Result<Vec<usize>> {
    let c = e.get("config").unwrap_or(&Value::Null);
    let s = c
        .get("batch_shape")
        .or_else(|| c.get("batch_input_shape"))
        .ok_or_else(|| bad(format!("{what}: the InputLayer has no batch_shape")))?;
    if c.get("sparse").is_some_and(|v| v == &json!(true))
        || c.get("ragged").is_some_and(|v| v == &json!(true))
    {
        return Err(bad(format!(
            "{what}: sparse and ragged inputs are not something kiln has"
        )));
    }
    sample_shape(s, what)
}

/// `[name, node_index, tensor_index]` of a Keras tensor reference.
fn history(v: &Value, what: &str) -> Result<(String, usize)> {
    let h = if let Some(c) = v.get("config") {
        c.get("keras_history").unwrap_or(&Value::Null)
    } else {
        v
    };
    let a = h
        .as_array()
        .filter(|a| a.len() >= 3)
        .ok_or_else(|| bad(format!("{what}: {} is not a tensor reference", short(v))))?;
    let name = a[0]
        .as_str()
        .ok_or_else(|| bad(format!("{what}: a tensor reference names no layer")))?;
    let node = a[1]
        .as_u64()
        .filter(|n| *n < 1 << 20)
        .ok_or_else(|| bad(format!("{what}: a bad node index")))? as usize;
    if a[2].as_u64() != Some(0) {
        return Err(bad(format!(
            "{what}: layer {:?} has one output in kiln, the config reads output {}",
            escape(name),
            short(&a[2])
        )));
    }
    Ok((name.to_string(), node))
}

/// The tensors one call reads (Keras 3's `{"args", "kwargs"}` or the legacy list form).
fn call_inputs(node: &Value, what: &str) -> Result<Vec<(String, usize)>> {
    if let Some(args) = node.get("args") {
        if let Some(kw) = node.get("kwargs").and_then(Value::as_object) {
            for (k, v) in kw {
                if !(v.is_null() || k == "training" && v.is_boolean()) {
                    return Err(bad(format!(
                        "{what}: the call passes {k:?} = {}, which kiln's layers do not take",
                        short(v)
                    )));
                }
            }
        }
        let args = args
            .as_array()
            .ok_or_else(|| bad(format!("{what}: \"args\" is not a list")))?;
        if args.len() != 1 {
            return Err(bad(format!(
                "{what}: a call with {} positional arguments; kiln's layers take one",
                args.len()
            )));
        }
        return match &args[0] {
            Value::Array(many) => many.iter().map(|t| history(t, what)).collect(),
            one => Ok(vec![history(one, what)?]),
        };
    }
    // Legacy (Keras 2): [[name, node, tensor, kwargs], ...].
    node.as_array()
        .ok_or_else(|| {
            bad(format!(
                "{what}: an inbound node is neither {{\"args\", \"kwargs\"}} nor a list"
            ))
        })?
        .iter()
        .map(|t| history(t, what))
        .collect()
}

fn refs(v: &Value, what: &str) -> Result<Vec<(String, usize)>> {
    let a = v
        .as_array()
        .ok_or_else(|| bad(format!("{what} is not a list")))?;
    if a.first().is_some_and(Value::is_string) {
        return Ok(vec![history(v, what)?]);
    }
    a.iter().map(|r| history(r, what)).collect()
}

/// A (nested) `Functional` or `Sequential` from its Keras entry.
pub(crate) fn functional_from_keras(entry: &Value, path: &str) -> Result<Functional> {
    let class = class_of(entry);
    let empty = json!({});
    let c = entry.get("config").unwrap_or(&empty);
    let name = c
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or(if class == "Sequential" {
            "sequential"
        } else {
            "functional"
        });
    let here = format!("{path}/{}", escape(name));
    let layers = c.get("layers").and_then(Value::as_array).ok_or_else(|| {
        bad(format!(
            "model {} at {}: no \"layers\" list",
            escape(name),
            escape(path)
        ))
    })?;
    if layers.len() > 100_000 {
        return Err(bad(format!("model at {here}: {} layers", layers.len())));
    }
    let mut g = Graph::new();
    if class == "Sequential" {
        let (shape, in_name, rest) = match layers.first() {
            Some(e) if class_of(e) == "InputLayer" => {
                let n = e["config"]
                    .get("name")
                    .and_then(Value::as_str)
                    .unwrap_or("input_layer");
                (input_layer_shape(e, &here)?, n.to_string(), &layers[1..])
            }
            _ => {
                let s = c
                    .get("build_input_shape")
                    .filter(|v| !v.is_null())
                    .or_else(|| entry.get("build_config").and_then(|b| b.get("input_shape")))
                    .ok_or_else(|| bad(format!("the Sequential at {here} has no input shape (no InputLayer, no build_input_shape)")))?;
                (
                    sample_shape(s, &here)?,
                    "input_layer".to_string(),
                    &layers[..],
                )
            }
        };
        let x0 = g.named_input(&shape, &in_name);
        let mut x = x0;
        for (i, e) in rest.iter().enumerate() {
            let l = layer_from_keras(e, &format!("{here}/layers[{i}]"))?;
            let id = g.layer_boxed(l);
            x = g.call(id, &[x])?;
        }
        return Ok(g.build(&[x0], &[x])?.name(name).into_sequential());
    }
    let mut tensors: HashMap<(String, usize), KerasTensor> = HashMap::new();
    let mut pending = Vec::new();
    for (i, e) in layers.iter().enumerate() {
        let lname = e
            .get("name")
            .or_else(|| e.get("config").and_then(|c| c.get("name")))
            .and_then(Value::as_str)
            .ok_or_else(|| bad(format!("layer {i} of the model at {here} has no name")))?
            .to_string();
        if class_of(e) == "InputLayer" {
            let t = g.named_input(
                &input_layer_shape(e, &format!("{here}/{}", escape(&lname)))?,
                &lname,
            );
            tensors.insert((lname, 0), t);
            continue;
        }
        let at = format!("{here}/{}", escape(&lname));
        let id = g.layer_boxed(layer_from_keras(e, &at)?);
        let nodes = e
            .get("inbound_nodes")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for (k, n) in nodes.iter().enumerate() {
            pending.push((id, lname.clone(), k, call_inputs(n, &at)?, at.clone()));
        }
    }
    // Calls in an order where each one's inputs exist (a shared layer's later call may read
    // a layer listed after it).
    while !pending.is_empty() {
        let before = pending.len();
        let mut rest = Vec::new();
        for (id, lname, k, ins, at) in pending {
            let ready: Option<Vec<KerasTensor>> =
                ins.iter().map(|r| tensors.get(r).copied()).collect();
            match ready {
                Some(xs) => {
                    let t = g.call(id, &xs).map_err(|e| bad(format!("{at}: {e}")))?;
                    tensors.insert((lname, k), t);
                }
                None => rest.push((id, lname, k, ins, at)),
            }
        }
        if rest.len() == before {
            let (_, _, _, ins, at) = &rest[0];
            return Err(bad(format!("{at}: its inputs {ins:?} are never made; the graph in the config is broken or cyclic")));
        }
        pending = rest;
    }
    let find = |r: &(String, usize)| {
        tensors.get(r).copied().ok_or_else(|| {
            bad(format!(
                "the model at {here} names tensor {:?}[{}], which no layer makes",
                escape(&r.0),
                r.1
            ))
        })
    };
    let ins = refs(
        c.get("input_layers").unwrap_or(&Value::Null),
        &format!("{here} input_layers"),
    )?
    .iter()
    .map(find)
    .collect::<Result<Vec<_>>>()?;
    let outs = refs(
        c.get("output_layers").unwrap_or(&Value::Null),
        &format!("{here} output_layers"),
    )?
    .iter()
    .map(find)
    .collect::<Result<Vec<_>>>()?;
    Ok(g.build(&ins, &outs)?.name(name))
}

/// Layer names whose config says `"trainable": false` (frozen after the build).
fn frozen(layers: &[Value]) -> Vec<String> {
    layers
        .iter()
        .filter(|e| e["config"].get("trainable") == Some(&json!(false)))
        .filter_map(|e| {
            e["config"]
                .get("name")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .collect()
}

/// A model from a `.keras` `config.json` (without its weights), built.
pub(crate) fn model_from_keras(entry: &Value) -> Result<Model> {
    super::config::scan_hostile(entry, "config", 0)?;
    let class = class_of(entry);
    let c = entry.get("config").unwrap_or(&Value::Null);
    let layers = c
        .get("layers")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut model = match class {
        "Sequential" => {
            let name = c.get("name").and_then(Value::as_str).unwrap_or("sequential");
            let mut s = Sequential::new().name(name);
            let f = super::config::Cfg { c, class, name: name.to_string(), path: "config" };
            if let Some(p) = f.policy()? {
                if p.name() != "float32" {
                    s = s.dtype_policy(p);
                }
            }
            let mut rest = &layers[..];
            if let Some(e) = layers.first().filter(|e| class_of(e) == "InputLayer") {
                s = s.add(Input::new(&input_layer_shape(e, name)?));
                rest = &layers[1..];
            } else if let Some(shape) = c.get("build_input_shape").filter(|v| !v.is_null()).or_else(|| entry.get("build_config").and_then(|b| b.get("input_shape")).filter(|v| !v.is_null())) {
                s = s.add(Input::new(&sample_shape(shape, name)?));
            }
            for (i, e) in rest.iter().enumerate() {
                s.push(layer_from_keras(e, &format!("{}/layers[{i}]", escape(name)))?);
            }
            s.into_model()
        }
        "Functional" | "Model" => {
            let f = functional_from_keras(&json!({"class_name": "Functional", "config": c}), "")?;
            Model::from_functional(f)
        }
        other => {
            return Err(bad(format!(
                "the file's model is a {:?}; kiln loads Sequential and Functional models (a subclassed model's code is not in the file)",
                escape(other)
            )))
        }
    };
    model.build_if_needed()?;
    let frozen = frozen(&layers);
    for l in model.layers_mut() {
        if frozen.iter().any(|n| n == l.name()) {
            l.set_trainable(false);
        }
    }
    Ok(model)
}

/// A model's Keras entry (without `compile_config`).
pub(crate) fn model_to_keras(m: &Model) -> Value {
    let policy = m.own_policy().map(|p| p.name());
    if let Some((layers, input)) = m.stack_parts() {
        let batch: Option<Shape> = input.map(|s| {
            std::iter::once(None)
                .chain(s.iter().map(|d| Some(*d)))
                .collect()
        });
        let mut entries = Vec::new();
        if let Some(b) = &batch {
            entries.push(input_entry(
                "input_layer",
                b,
                policy.filter(|p| *p == "float64").unwrap_or("float32"),
            ));
        }
        let mut shape = batch.clone();
        for l in layers {
            entries.push(wrap(
                l.as_ref(),
                shape.as_ref().map(|s| build_shape(std::slice::from_ref(s))),
                policy,
            ));
            shape = shape.and_then(|s| l.output_shape(&s).ok());
        }
        return json!({
            "module": "keras",
            "class_name": "Sequential",
            "config": {"name": m.model_name(), "trainable": true, "dtype": policy.unwrap_or("float32"), "layers": entries, "build_input_shape": batch},
            "registered_name": null,
            "build_config": {"input_shape": batch},
        });
    }
    let mut config = m
        .graph_parts()
        .map(|g| g.keras_config(policy))
        .unwrap_or(json!({}));
    config["name"] = json!(m.model_name());
    json!({
        "module": "keras.src.models.functional",
        "class_name": "Functional",
        "config": config,
        "registered_name": "Functional",
        "build_config": {"input_shape": null},
    })
}

/// The `compile_config` of a compiled model (`{}` when it is not).
pub(crate) fn compile_to_keras(m: &Model) -> Value {
    let Some((opt, losses, weights, metrics)) = m.compiled_parts() else {
        return json!({});
    };
    let names = m.output_names();
    let (loss, loss_weights, metrics) = if names.len() == 1 {
        (
            losses[0].as_ref().map(loss_to_keras).unwrap_or(Value::Null),
            if weights[0] == 1.0 {
                Value::Null
            } else {
                json!([weights[0]])
            },
            json!(metrics[0]),
        )
    } else {
        let mut l = serde_json::Map::new();
        let mut w = serde_json::Map::new();
        let mut mm = serde_json::Map::new();
        for (i, n) in names.iter().enumerate() {
            l.insert(
                n.clone(),
                losses[i].as_ref().map(loss_to_keras).unwrap_or(Value::Null),
            );
            w.insert(n.clone(), json!(weights[i]));
            mm.insert(n.clone(), json!(metrics[i]));
        }
        let all_one = weights.iter().all(|w| *w == 1.0);
        (
            Value::Object(l),
            if all_one {
                Value::Null
            } else {
                Value::Object(w)
            },
            Value::Object(mm),
        )
    };
    json!({
        "optimizer": opt.keras_config(),
        "loss": loss,
        "loss_weights": loss_weights,
        "metrics": metrics,
        "weighted_metrics": null,
        "run_eagerly": false,
        "steps_per_execution": 1,
        "jit_compile": true,
    })
}

/// Compiles `m` from a `compile_config`; `false` where there is nothing to compile with
/// (no config, or no loss: Keras saves an uncompiled model with `{}`).
pub(crate) fn compile_from_keras(m: &mut Model, cc: &Value) -> Result<bool> {
    let Some(opt) = cc.get("optimizer").filter(|o| !o.is_null()) else {
        return Ok(false);
    };
    let loss = cc.get("loss").cloned().unwrap_or(Value::Null);
    if loss.is_null() {
        return Ok(false);
    }
    let optimizer = Optimizer::from_keras_config(opt)?;
    let names = m.output_names();
    let mut args = CompileArgs::new();
    let one = |v: &Value| -> Result<Option<Loss>> {
        if v.is_null() {
            Ok(None)
        } else {
            loss_from_keras(v).map(Some)
        }
    };
    match &loss {
        Value::Object(o) if !o.contains_key("class_name") => {
            for (k, v) in o {
                args = match one(v)? {
                    Some(l) => args.output_loss(k, l),
                    None => args.no_loss(k),
                };
            }
        }
        Value::Array(a) => args = args.losses(a.iter().map(one).collect::<Result<Vec<_>>>()?),
        v => {
            let l = one(v)?.ok_or_else(|| bad("compile_config: no loss"))?;
            args = args.loss(l);
        }
    }
    match cc.get("loss_weights").unwrap_or(&Value::Null) {
        Value::Null => {}
        Value::Array(a) => {
            let w: Vec<f64> = a
                .iter()
                .map(|x| {
                    x.as_f64()
                        .ok_or_else(|| bad("compile_config: a loss weight is not a number"))
                })
                .collect::<Result<_>>()?;
            args = args.loss_weights(&w);
        }
        Value::Object(o) => {
            for (k, v) in o {
                args = args.output_loss_weight(
                    k,
                    v.as_f64().ok_or_else(|| {
                        bad(format!(
                            "compile_config: loss weight of {:?} is not a number",
                            escape(k)
                        ))
                    })?,
                );
            }
        }
        v => {
            return Err(bad(format!(
                "compile_config: loss_weights {} is neither a list nor a dict",
                short(v)
            )))
        }
    }
    if cc
        .get("weighted_metrics")
        .is_some_and(|w| !w.is_null() && w != &json!([]))
    {
        return Err(bad("compile_config: weighted_metrics are not something kiln has; remove them to load the model"));
    }
    let list = |v: &Value| -> Result<Vec<String>> {
        match v {
            Value::Null => Ok(vec![]),
            Value::Array(a) => a.iter().map(metric_from_keras).collect(),
            one => Ok(vec![metric_from_keras(one)?]),
        }
    };
    match cc.get("metrics").unwrap_or(&Value::Null) {
        Value::Null => {}
        Value::Object(o) => {
            for (k, v) in o {
                let ms = list(v)?;
                let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
                args = args.output_metrics(k, &refs);
            }
        }
        Value::Array(a) if names.len() > 1 && a.iter().all(|x| x.is_array() || x.is_null()) => {
            let per: Vec<Vec<String>> = a.iter().map(list).collect::<Result<_>>()?;
            let refs: Vec<Vec<&str>> = per
                .iter()
                .map(|m| m.iter().map(String::as_str).collect())
                .collect();
            let slices: Vec<&[&str]> = refs.iter().map(Vec::as_slice).collect();
            args = args.metrics(&slices);
        }
        v => {
            let ms = list(v)?;
            if names.len() > 1 && !ms.is_empty() {
                return Err(bad("compile_config: a flat metrics list for a model of several outputs (Keras refuses it too)"));
            }
            let refs: Vec<&str> = ms.iter().map(String::as_str).collect();
            args = args.metrics(&[refs.as_slice()]);
        }
    }
    m.compile_with(optimizer, args)?;
    Ok(true)
}
