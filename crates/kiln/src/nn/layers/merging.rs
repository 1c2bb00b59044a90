//! Merge layers (Keras's `layers.merging`): `Add`, `Subtract`, `Multiply`, `Average`,
//! `Maximum`, `Minimum` (elementwise over inputs of one shape, with broadcasting of size-1
//! axes as in Keras) and `Concatenate` (along an axis). They take several inputs, so they
//! are used in functional models ([`crate::nn::functional`]).

use super::{base_config, merge, CallContext, Layer, Shape};
use crate::error::{KilnError, Result};
use crate::ops;
use crate::tensor::Tensor;
use serde_json::json;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Op {
    Add,
    Subtract,
    Multiply,
    Average,
    Maximum,
    Minimum,
}

/// The broadcast of several per-layer shapes (None is unknown and matches anything).
fn broadcast(class: &str, name: &str, shapes: &[Shape]) -> Result<Shape> {
    let nd = shapes.iter().map(|s| s.len()).max().unwrap_or(0);
    let mut out: Shape = vec![Some(1); nd];
    for s in shapes {
        for (i, d) in s.iter().enumerate() {
            let o = &mut out[nd - s.len() + i];
            *o = match (*o, *d) {
                (Some(1), x) | (x, Some(1)) => x,
                (None, x) | (x, None) => x,
                (Some(a), Some(b)) if a == b => Some(a),
                (Some(a), Some(b)) => {
                    return Err(KilnError::invalid(
                        class,
                        format!(
                            "layer {name:?}: inputs of shapes {shapes:?} do not broadcast ({a} vs {b} on axis {i})"
                        ),
                    ))
                }
            };
        }
    }
    if let Some(b) = out.first_mut() {
        if shapes.iter().any(|s| s.first() == Some(&None)) {
            *b = None;
        }
    }
    Ok(out)
}

macro_rules! elementwise_merge {
    ($($(#[$m:meta])* $ty:ident => $op:ident, $min:expr;)*) => {$(
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $ty {
            name: String,
        }
        impl $ty {
            /// The layer.
            pub fn new() -> Self {
                Self::default()
            }
            /// A name.
            pub fn name(mut self, n: &str) -> Self {
                self.name = n.into();
                self
            }
        }
        impl Layer for $ty {
            fn name(&self) -> &str {
                &self.name
            }
            fn set_name(&mut self, name: String) {
                self.name = name;
            }
            fn class_name(&self) -> &'static str {
                stringify!($ty)
            }
            fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
                self.output_shape_many(&[s.to_vec()])
            }
            fn output_shape_many(&self, shapes: &[Shape]) -> Result<Shape> {
                check_count(stringify!($ty), &self.name, shapes.len(), $min)?;
                broadcast(stringify!($ty), &self.name, shapes)
            }
            fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor> {
                self.call_many(std::slice::from_ref(x), ctx)
            }
            fn call_many(&self, xs: &[Tensor], _ctx: &CallContext) -> Result<Tensor> {
                check_count(stringify!($ty), &self.name, xs.len(), $min)?;
                combine(Op::$op, xs)
            }
            fn config(&self) -> serde_json::Value {
                base_config(&self.name, true, None)
            }
        }
    )*};
}

fn check_count(class: &str, name: &str, n: usize, min: usize) -> Result<()> {
    let exact_two = class == "Subtract";
    if n < min || (exact_two && n != 2) {
        return Err(KilnError::invalid(
            class,
            format!(
                "layer {name:?} takes {} inputs, got {n}",
                if exact_two {
                    "exactly 2".to_string()
                } else {
                    format!("at least {min}")
                }
            ),
        ));
    }
    Ok(())
}

fn combine(op: Op, xs: &[Tensor]) -> Result<Tensor> {
    let mut acc = xs[0].clone();
    for x in &xs[1..] {
        acc = match op {
            Op::Add | Op::Average => ops::add(&acc, x)?,
            Op::Subtract => ops::subtract(&acc, x)?,
            Op::Multiply => ops::multiply(&acc, x)?,
            Op::Maximum => ops::maximum(&acc, x)?,
            Op::Minimum => ops::minimum(&acc, x)?,
        };
    }
    if op == Op::Average {
        acc = ops::divide(&acc, xs.len() as f64)?;
    }
    Ok(acc)
}

elementwise_merge! {
    /// The sum of its inputs (Keras's `Add`).
    Add => Add, 2;
    /// The first input minus the second (Keras's `Subtract`; exactly two).
    Subtract => Subtract, 2;
    /// The product of its inputs (Keras's `Multiply`).
    Multiply => Multiply, 2;
    /// The mean of its inputs (Keras's `Average`).
    Average => Average, 2;
    /// The elementwise maximum (Keras's `Maximum`).
    Maximum => Maximum, 2;
    /// The elementwise minimum (Keras's `Minimum`).
    Minimum => Minimum, 2;
}

/// Joins its inputs along `axis` (Keras's `Concatenate`, default axis -1).
#[derive(Debug)]
pub struct Concatenate {
    name: String,
    axis: isize,
}

impl Default for Concatenate {
    fn default() -> Self {
        Concatenate {
            name: String::new(),
            axis: -1,
        }
    }
}

impl Concatenate {
    /// Along the last axis.
    pub fn new() -> Self {
        Self::default()
    }
    /// Along `axis`.
    pub fn axis(mut self, a: isize) -> Self {
        self.axis = a;
        self
    }
    /// A name.
    pub fn name(mut self, n: &str) -> Self {
        self.name = n.into();
        self
    }
}

impl Layer for Concatenate {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Concatenate"
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        self.output_shape_many(&[s.to_vec()])
    }
    fn output_shape_many(&self, shapes: &[Shape]) -> Result<Shape> {
        check_count("Concatenate", &self.name, shapes.len(), 2)?;
        let nd = shapes[0].len();
        let bad = || {
            KilnError::invalid(
                "Concatenate",
                format!(
                    "layer {:?}: inputs of shapes {shapes:?} do not join on axis {}; every other axis must match",
                    self.name, self.axis
                ),
            )
        };
        let ax = if self.axis < 0 {
            self.axis + nd as isize
        } else {
            self.axis
        };
        if ax < 1 || ax >= nd as isize || shapes.iter().any(|s| s.len() != nd) {
            return Err(bad());
        }
        let ax = ax as usize;
        let mut out = shapes[0].clone();
        for s in &shapes[1..] {
            for i in 0..nd {
                if i == ax {
                    out[i] = match (out[i], s[i]) {
                        (Some(a), Some(b)) => Some(a + b),
                        _ => None,
                    };
                } else if let (Some(a), Some(b)) = (out[i], s[i]) {
                    if a != b {
                        return Err(bad());
                    }
                } else if out[i].is_none() {
                    out[i] = s[i];
                }
            }
        }
        Ok(out)
    }
    fn call(&self, x: &Tensor, ctx: &CallContext) -> Result<Tensor> {
        self.call_many(std::slice::from_ref(x), ctx)
    }
    fn call_many(&self, xs: &[Tensor], _ctx: &CallContext) -> Result<Tensor> {
        check_count("Concatenate", &self.name, xs.len(), 2)?;
        let refs: Vec<&Tensor> = xs.iter().collect();
        ops::concatenate(&refs, self.axis)
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, true, None),
            json!({"axis": self.axis}),
        )
    }
}
