//! Functional models (Keras's functional API): layers called on symbolic tensors, so a model
//! can branch, merge (`Add`, `Concatenate`, `Multiply`...), share a layer between calls and
//! nest another model. Shapes are inferred as the graph is built, and a mismatch is an error
//! naming both layers and both shapes.
//!
//! ```
//! use kiln::nn::{functional::Graph, Add, Dense, Layer};
//! let mut g = Graph::new();
//! let x = g.input(&[16]);
//! let h = g.apply(Dense::new(16).activation("relu"), &[x]).unwrap();
//! let y = g.apply(Add::new(), &[x, h]).unwrap(); // a residual connection
//! let out = g.apply(Dense::new(3), &[y]).unwrap();
//! let model = g.build(&[x], &[out]).unwrap();
//! assert_eq!(model.output_shape(&[None, Some(16)]).unwrap(), vec![None, Some(3)]);
//! ```
//!
//! Train it as a [`Model`](super::Model) (`Model::new(graph, &inputs, &outputs)`: a loss
//! per output, several inputs); a `Functional` is also a [`Layer`], so it nests inside
//! another model.

use super::layers::{BuildContext, CallContext, Layer, Shape};
use super::saving::KerasTree;
use crate::error::{KilnError, Result};
use crate::tensor::{Tensor, Variable};
use serde_json::json;
use std::sync::atomic::{AtomicUsize, Ordering};

static GRAPHS: AtomicUsize = AtomicUsize::new(0);

/// A symbolic tensor: the output of a node of one [`Graph`] (Keras's `KerasTensor`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KerasTensor {
    graph: usize,
    node: usize,
}

/// A layer added to a graph, to be called (and shared) by [`Graph::call`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LayerId {
    graph: usize,
    index: usize,
}

#[derive(Clone, Debug)]
struct Node {
    /// `None` for an input.
    layer: Option<usize>,
    /// An input's own name (Keras's `InputLayer` name), where it was given one.
    name: Option<String>,
    inputs: Vec<usize>,
    /// With the batch axis (`None`).
    shape: Shape,
}

/// Builds a functional model one call at a time.
#[derive(Debug)]
pub struct Graph {
    id: usize,
    layers: Vec<Box<dyn Layer>>,
    nodes: Vec<Node>,
}

impl Default for Graph {
    fn default() -> Self {
        Graph {
            id: GRAPHS.fetch_add(1, Ordering::Relaxed),
            layers: Vec::new(),
            nodes: Vec::new(),
        }
    }
}

impl Graph {
    /// An empty graph.
    pub fn new() -> Graph {
        Graph::default()
    }
    /// A model input of `shape` per sample (Keras's `keras.Input(shape=...)`).
    pub fn input(&mut self, shape: &[usize]) -> KerasTensor {
        self.nodes.push(Node {
            layer: None,
            name: None,
            inputs: Vec::new(),
            shape: std::iter::once(None)
                .chain(shape.iter().map(|d| Some(*d)))
                .collect(),
        });
        KerasTensor {
            graph: self.id,
            node: self.nodes.len() - 1,
        }
    }
    /// An input with its own name (Keras's `keras.Input(shape, name=...)`).
    pub fn named_input(&mut self, shape: &[usize], name: &str) -> KerasTensor {
        let t = self.input(shape);
        self.nodes[t.node].name = Some(name.to_string());
        t
    }
    /// Adds a layer without calling it (call it, once or more, with [`call`](Self::call)).
    pub fn layer(&mut self, layer: impl Layer + 'static) -> LayerId {
        self.layer_boxed(Box::new(layer))
    }
    /// Adds a boxed layer without calling it (see [`layer`](Self::layer)).
    pub fn layer_boxed(&mut self, mut layer: Box<dyn Layer>) -> LayerId {
        // Keras names a layer when it is made: `dense`, `dense_1`, ... (so errors can say).
        if layer.name().is_empty() {
            let base = super::model::snake(layer.class_name());
            let n = self
                .layers
                .iter()
                .filter(|l| {
                    l.name() == base
                        || l.name()
                            .strip_prefix(&format!("{base}_"))
                            .is_some_and(|r| r.parse::<usize>().is_ok())
                })
                .count();
            layer.set_name(if n == 0 { base } else { format!("{base}_{n}") });
        }
        self.layers.push(layer);
        LayerId {
            graph: self.id,
            index: self.layers.len() - 1,
        }
    }
    /// Calls a layer of this graph on symbolic tensors: its output, with the shape inferred.
    pub fn call(&mut self, layer: LayerId, inputs: &[KerasTensor]) -> Result<KerasTensor> {
        if layer.graph != self.id || layer.index >= self.layers.len() {
            return Err(KilnError::invalid(
                "Graph::call",
                "the layer belongs to another graph",
            ));
        }
        if inputs.is_empty() {
            return Err(KilnError::invalid("Graph::call", "a layer needs an input"));
        }
        for t in inputs {
            if t.graph != self.id || t.node >= self.nodes.len() {
                return Err(KilnError::invalid(
                    "Graph::call",
                    "a symbolic input belongs to another graph",
                ));
            }
        }
        let shapes: Vec<Shape> = inputs
            .iter()
            .map(|t| self.nodes[t.node].shape.clone())
            .collect();
        let l = &self.layers[layer.index];
        let shape = l.output_shape_many(&shapes).map_err(|e| {
            let from: Vec<String> = inputs.iter().map(|t| self.describe(t.node)).collect();
            KilnError::invalid(
                "Graph::call",
                format!(
                    "layer {} ({}) cannot take {} of shape {}: {e}",
                    self.layer_label(layer.index),
                    l.class_name(),
                    from.join(" and "),
                    shapes
                        .iter()
                        .map(|s| super::model::fmt_shape(s))
                        .collect::<Vec<_>>()
                        .join(" and ")
                ),
            )
        })?;
        self.nodes.push(Node {
            layer: Some(layer.index),
            name: None,
            inputs: inputs.iter().map(|t| t.node).collect(),
            shape,
        });
        Ok(KerasTensor {
            graph: self.id,
            node: self.nodes.len() - 1,
        })
    }
    /// Adds a layer and calls it (Keras's `layer(x)`).
    pub fn apply(
        &mut self,
        layer: impl Layer + 'static,
        inputs: &[KerasTensor],
    ) -> Result<KerasTensor> {
        let id = self.layer(layer);
        self.call(id, inputs)
    }
    /// The shape a symbolic tensor will have (batch axis `None`).
    pub fn shape(&self, t: KerasTensor) -> Option<&[Option<usize>]> {
        self.nodes.get(t.node).map(|n| n.shape.as_slice())
    }

    fn layer_label(&self, i: usize) -> String {
        let n = self.layers[i].name();
        if n.is_empty() {
            format!("#{} ({})", i, self.layers[i].class_name())
        } else {
            format!("{n:?}")
        }
    }

    fn describe(&self, node: usize) -> String {
        match self.nodes[node].layer {
            None => format!("input {node}"),
            Some(l) => format!("the output of {}", self.layer_label(l)),
        }
    }

    /// The model from `inputs` to `outputs` (Keras's `Model(inputs, outputs)`).
    pub fn build(self, inputs: &[KerasTensor], outputs: &[KerasTensor]) -> Result<Functional> {
        if inputs.is_empty() || outputs.is_empty() {
            return Err(KilnError::invalid(
                "Model",
                "a model needs at least one input and one output",
            ));
        }
        for t in inputs.iter().chain(outputs) {
            if t.graph != self.id || t.node >= self.nodes.len() {
                return Err(KilnError::invalid(
                    "Model",
                    "a symbolic tensor belongs to another graph",
                ));
            }
        }
        for t in inputs {
            if self.nodes[t.node].layer.is_some() {
                return Err(KilnError::invalid(
                    "Model",
                    format!(
                        "inputs must be Graph::input tensors; {} is not",
                        self.describe(t.node)
                    ),
                ));
            }
        }
        // Weight paths and log keys are by layer name (Keras refuses duplicates too).
        let mut seen = std::collections::BTreeSet::new();
        for l in &self.layers {
            if !seen.insert(l.name()) {
                return Err(KilnError::invalid(
                    "Model",
                    format!(
                        "two layers are named {:?}; the layers of a model need unique names (rename one with .name(..))",
                        l.name()
                    ),
                ));
            }
        }
        // Every input a needed node reads must be one of the model's inputs.
        let mut needed = vec![false; self.nodes.len()];
        let mut stack: Vec<usize> = outputs.iter().map(|t| t.node).collect();
        while let Some(n) = stack.pop() {
            if std::mem::replace(&mut needed[n], true) {
                continue;
            }
            stack.extend(&self.nodes[n].inputs);
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if needed[i] && n.layer.is_none() && !inputs.iter().any(|t| t.node == i) {
                return Err(KilnError::invalid(
                    "Model",
                    format!(
                        "the outputs depend on input {i}, which is not among the model's inputs"
                    ),
                ));
            }
        }
        let f = Functional {
            name: String::new(),
            layers: self.layers,
            nodes: self.nodes,
            inputs: inputs.iter().map(|t| t.node).collect(),
            outputs: outputs.iter().map(|t| t.node).collect(),
            built: false,
            sequential: false,
        };
        Ok(f)
    }
}

/// A functional model (Keras's `Functional`): a graph of layer calls from its inputs to its
/// outputs. It is a [`Layer`], so it nests inside other models.
#[derive(Debug)]
pub struct Functional {
    name: String,
    layers: Vec<Box<dyn Layer>>,
    nodes: Vec<Node>,
    inputs: Vec<usize>,
    outputs: Vec<usize>,
    built: bool,
    /// A Keras `Sequential` nested in a model (a chain; saved under that class).
    sequential: bool,
}

impl Functional {
    /// Marks it a Keras `Sequential` (a chain loaded from one), saved under that class.
    pub(crate) fn into_sequential(mut self) -> Self {
        self.sequential = true;
        self
    }

    /// Keras's config of the model (`layers` with their `inbound_nodes`, `input_layers`,
    /// `output_layers`; a nested `Sequential`'s `layers` and `build_input_shape`).
    pub(crate) fn keras_config(&self, policy: Option<&str>) -> serde_json::Value {
        use super::saving::config::{build_shape, input_entry, wrap};
        let name = if self.name.is_empty() {
            "functional"
        } else {
            &self.name
        };
        // Which call of its layer made each node (Keras's node_index).
        let call_of = |n: usize| -> usize {
            match self.nodes[n].layer {
                None => 0,
                Some(l) => self.nodes[..n]
                    .iter()
                    .filter(|m| m.layer == Some(l))
                    .count(),
            }
        };
        let tensor = |n: usize| {
            json!({"class_name": "__keras_tensor__", "config": {
                "shape": self.nodes[n].shape, "dtype": "float32",
                "keras_history": [self.node_name(n), call_of(n), 0]}})
        };
        let in_dtype = policy.filter(|p| *p == "float64").unwrap_or("float32");
        let first_shapes = |i: usize| -> Vec<Shape> {
            self.nodes
                .iter()
                .find(|n| n.layer == Some(i))
                .map(|n| {
                    n.inputs
                        .iter()
                        .map(|j| self.nodes[*j].shape.clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        if self.sequential {
            let first = self.inputs[0];
            let mut layers = vec![input_entry(
                &self.input_name(first),
                &self.nodes[first].shape,
                in_dtype,
            )];
            for (i, l) in self.layers.iter().enumerate() {
                layers.push(wrap(
                    l.as_ref(),
                    Some(build_shape(&first_shapes(i))),
                    policy,
                ));
            }
            return json!({
                "name": name,
                "trainable": self.trainable(),
                "dtype": policy.unwrap_or("float32"),
                "layers": layers,
                "build_input_shape": self.nodes[first].shape,
            });
        }
        let mut layers: Vec<serde_json::Value> = self
            .inputs
            .iter()
            .map(|&i| {
                let mut e = input_entry(&self.input_name(i), &self.nodes[i].shape, in_dtype);
                e["name"] = json!(self.input_name(i));
                e["inbound_nodes"] = json!([]);
                e
            })
            .collect();
        for (i, l) in self.layers.iter().enumerate() {
            let mut e = wrap(l.as_ref(), Some(build_shape(&first_shapes(i))), policy);
            e["name"] = json!(l.name());
            e["inbound_nodes"] = json!(self
                .nodes
                .iter()
                .filter(|n| n.layer == Some(i))
                .map(|n| {
                    let args: Vec<serde_json::Value> =
                        n.inputs.iter().map(|j| tensor(*j)).collect();
                    let first = if args.len() == 1 {
                        args[0].clone()
                    } else {
                        json!(args)
                    };
                    json!({"args": [first], "kwargs": {}})
                })
                .collect::<Vec<_>>());
            layers.push(e);
        }
        let refs = |nodes: &[usize]| -> serde_json::Value {
            let r: Vec<serde_json::Value> = nodes
                .iter()
                .map(|n| json!([self.node_name(*n), call_of(*n), 0]))
                .collect();
            if r.len() == 1 {
                r[0].clone()
            } else {
                json!(r)
            }
        };
        json!({
            "name": name,
            "trainable": self.trainable(),
            "layers": layers,
            "input_layers": refs(&self.inputs),
            "output_layers": refs(&self.outputs),
        })
    }

    /// A name (default `functional`).
    pub fn name(mut self, n: &str) -> Self {
        self.name = n.into();
        self
    }
    /// The model's layers (each once, shared or not).
    pub fn layers(&self) -> &[Box<dyn Layer>] {
        &self.layers
    }
    /// The layers, mutably (to freeze one).
    pub fn layers_mut(&mut self) -> &mut [Box<dyn Layer>] {
        &mut self.layers
    }
    /// The per-sample shape of the first input.
    pub fn input_shape(&self) -> Vec<usize> {
        self.input_shapes().swap_remove(0)
    }
    /// The number of inputs.
    pub fn num_inputs(&self) -> usize {
        self.inputs.len()
    }
    /// The per-sample shape of every input.
    pub fn input_shapes(&self) -> Vec<Vec<usize>> {
        self.inputs
            .iter()
            .map(|i| {
                self.nodes[*i].shape[1..]
                    .iter()
                    .map(|d| d.unwrap_or(0))
                    .collect()
            })
            .collect()
    }
    /// The shape of every output (batch axis `None`).
    pub fn output_shapes(&self) -> Vec<Shape> {
        self.outputs
            .iter()
            .map(|o| self.nodes[*o].shape.clone())
            .collect()
    }
    /// The outputs' names (Keras's `output_names`): the layer that makes each, or the input
    /// an output passes through.
    pub fn output_names(&self) -> Vec<String> {
        self.outputs.iter().map(|o| self.node_name(*o)).collect()
    }
    /// A trainable model of this graph (Keras's `Model(inputs, outputs)`).
    pub fn into_model(self) -> super::model::Model {
        super::model::Model::from_functional(self)
    }

    /// Keras's name of an input node: `input_layer`, `input_layer_1`, ... in creation order.
    fn input_name(&self, node: usize) -> String {
        if let Some(n) = &self.nodes[node].name {
            return n.clone();
        }
        let k = self.nodes[..node]
            .iter()
            .filter(|n| n.layer.is_none())
            .count();
        if k == 0 {
            "input_layer".into()
        } else {
            format!("input_layer_{k}")
        }
    }

    fn node_name(&self, node: usize) -> String {
        match self.nodes[node].layer {
            None => self.input_name(node),
            Some(l) => self.layers[l].name().to_string(),
        }
    }

    /// Keras's `name[call][0]` for the tensor a node makes: which call of its layer it is.
    fn node_ref(&self, node: usize) -> String {
        let call = match self.nodes[node].layer {
            None => 0,
            Some(l) => self.nodes[..node]
                .iter()
                .filter(|n| n.layer == Some(l))
                .count(),
        };
        format!("{}[{call}][0]", self.node_name(node))
    }

    /// Builds every layer from the shapes the graph inferred.
    pub(crate) fn build_graph(&mut self, ctx: &mut BuildContext) -> Result<()> {
        let mut built = vec![false; self.layers.len()];
        for i in 0..self.nodes.len() {
            let Some(l) = self.nodes[i].layer else {
                continue;
            };
            if built[l] {
                continue;
            }
            let shapes: Vec<Shape> = self.nodes[i]
                .inputs
                .iter()
                .map(|j| self.nodes[*j].shape.clone())
                .collect();
            self.layers[l].build_many(&shapes, ctx)?;
            built[l] = true;
        }
        self.built = true;
        Ok(())
    }

    /// Runs the graph on one tensor per input: one tensor per output.
    pub fn call_all(&self, xs: &[Tensor], ctx: &CallContext) -> Result<Vec<Tensor>> {
        if xs.len() != self.inputs.len() {
            return Err(KilnError::invalid(
                "Functional",
                format!(
                    "model {:?} takes {} inputs, got {}",
                    self.name,
                    self.inputs.len(),
                    xs.len()
                ),
            ));
        }
        let mut values: Vec<Option<Tensor>> = vec![None; self.nodes.len()];
        for (i, x) in self.inputs.iter().zip(xs) {
            values[*i] = Some(x.clone());
        }
        // Nodes only read earlier nodes, so creation order is a topological order.
        for (i, n) in self.nodes.iter().enumerate() {
            let Some(l) = n.layer else { continue };
            let ins: Vec<Tensor> = n
                .inputs
                .iter()
                .map(|j| {
                    values[*j].clone().ok_or_else(|| {
                        KilnError::invalid("Functional", "a node reads a value not computed")
                    })
                })
                .collect::<Result<_>>()?;
            values[i] = Some(self.layers[l].call_many(&ins, ctx)?);
        }
        self.outputs
            .iter()
            .map(|o| {
                values[*o]
                    .clone()
                    .ok_or_else(|| KilnError::invalid("Functional", "an output was not computed"))
            })
            .collect()
    }

    /// The rows of Keras's summary of a functional model: each input and layer call with
    /// its output shape, its parameters (a shared layer's once) and what it is connected to.
    pub(crate) fn summary_rows(&self) -> Vec<Vec<String>> {
        let mut counted = vec![false; self.layers.len()];
        let mut rows = Vec::new();
        for (i, n) in self.nodes.iter().enumerate() {
            let (label, params) = match n.layer {
                None => (format!("{} (InputLayer)", self.input_name(i)), 0),
                Some(l) => {
                    let p: usize = if std::mem::replace(&mut counted[l], true) {
                        0
                    } else {
                        self.layers[l]
                            .variables()
                            .iter()
                            .map(|v| v.value().size())
                            .sum()
                    };
                    (
                        format!(
                            "{} ({})",
                            self.layers[l].name(),
                            self.layers[l].class_name()
                        ),
                        p,
                    )
                }
            };
            let from: Vec<String> = n.inputs.iter().map(|j| self.node_ref(*j)).collect();
            rows.push(vec![
                label,
                super::model::fmt_shape(&n.shape),
                params.to_string(),
                if from.is_empty() {
                    "-".into()
                } else {
                    from.join(", ")
                },
            ]);
        }
        rows
    }

    /// Keras's summary table of the graph, with the "Connected to" column (the same as
    /// `Model::summary` without the totals).
    pub fn summary(&self) -> String {
        format!(
            "Model: \"{}\"\n{}",
            if self.name.is_empty() {
                "functional"
            } else {
                &self.name
            },
            super::model::summary_table(
                &["Layer (type)", "Output Shape", "Param #", "Connected to"],
                &self.summary_rows()
            )
        )
    }
}

impl Layer for Functional {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        if self.sequential {
            "Sequential"
        } else {
            "Functional"
        }
    }
    fn build(&mut self, input_shape: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        if self.inputs.len() != 1 {
            return Err(KilnError::invalid(
                "Functional",
                format!(
                    "model {:?} has {} inputs; build it with one",
                    self.name,
                    self.inputs.len()
                ),
            ));
        }
        let want = &self.nodes[self.inputs[0]].shape;
        if want.len() != input_shape.len()
            || want
                .iter()
                .zip(input_shape)
                .skip(1)
                .any(|(a, b)| a.is_some() && b.is_some() && a != b)
        {
            return Err(KilnError::invalid(
                "Functional",
                format!(
                    "model {:?} takes inputs of shape {}, got {}",
                    self.name,
                    super::model::fmt_shape(want),
                    super::model::fmt_shape(input_shape)
                ),
            ));
        }
        self.build_graph(ctx)
    }
    fn output_shape(&self, _input_shape: &[Option<usize>]) -> Result<Shape> {
        if self.outputs.len() != 1 {
            return Err(KilnError::invalid(
                "Functional",
                format!("model {:?} has {} outputs", self.name, self.outputs.len()),
            ));
        }
        Ok(self.nodes[self.outputs[0]].shape.clone())
    }
    fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor> {
        let mut out = self.call_all(std::slice::from_ref(x), ctx)?;
        if out.len() != 1 {
            return Err(KilnError::invalid(
                "Functional",
                format!(
                    "model {:?} has {} outputs; use call_all",
                    self.name,
                    out.len()
                ),
            ));
        }
        Ok(out.remove(0))
    }
    fn finish_step(&mut self) -> Result<()> {
        self.layers.iter_mut().try_for_each(|l| l.finish_step())
    }
    /// Trainable unless every layer is frozen (a frozen layer inside does not freeze the
    /// model, as in Keras; BatchNormalization's statistics are never trainable).
    fn trainable(&self) -> bool {
        self.layers.is_empty() || self.layers.iter().any(|l| l.trainable())
    }
    fn variables(&self) -> Vec<&Variable> {
        let mut v: Vec<&Variable> = Vec::new();
        for l in &self.layers {
            v.extend(l.variables());
        }
        v
    }
    fn variable_paths(&self) -> Vec<String> {
        super::layers::paths_of(&self.layers)
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        let mut v: Vec<&mut Variable> = Vec::new();
        for l in self.layers.iter_mut() {
            v.extend(l.variables_mut());
        }
        v
    }
    fn regularization(&self) -> Result<Option<Tensor>> {
        let mut total: Option<Tensor> = None;
        for l in &self.layers {
            if let Some(p) = l.regularization()? {
                total = Some(match total {
                    Some(t) => crate::ops::add(&t, &p)?,
                    None => p,
                });
            }
        }
        Ok(total)
    }
    fn config(&self) -> serde_json::Value {
        self.keras_config(None)
    }
    fn keras_tree(&self) -> KerasTree {
        let mut items: Vec<(&str, KerasTree)> = Vec::new();
        if !self.sequential {
            for &i in &self.inputs {
                items.push((
                    "InputLayer",
                    KerasTree {
                        name: self.input_name(i),
                        ..Default::default()
                    },
                ));
            }
        }
        for l in &self.layers {
            items.push((l.class_name(), l.keras_tree()));
        }
        KerasTree {
            name: Layer::name(self).to_string(),
            vars: 0,
            layers: KerasTree::keyed(items),
        }
    }
}
