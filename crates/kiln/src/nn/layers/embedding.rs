//! `Embedding` (Keras's `layers.Embedding`): integer indices to rows of a trainable table.

use super::{base_config, merge, BuildContext, CallContext, Layer, Shape};
use crate::dtype::DType;
use crate::error::{KilnError, Result};
use crate::nn::initializers::Initializer;
use crate::nn::policy::DTypePolicy;
use crate::nn::regularizers::Regularizer;
use crate::ops;
use crate::tensor::{Tensor, Variable};
use serde_json::json;

/// Maps each index in `[0, input_dim)` to a trainable vector of `output_dim` (Keras's
/// `Embedding`; embeddings initializer `uniform`, i.e. U(-0.05, 0.05)). Inputs may arrive as
/// floats (a model's data is converted once): they must hold whole numbers in range, else
/// the call is an error naming the bad index. Its gradient is a scatter-add of the rows
/// (the `IndexAdd` primitive), so it costs what the lookup costs.
///
/// ```
/// use kiln::nn::{Embedding, Layer};
/// let e = Embedding::new(1000, 16);
/// assert_eq!(e.output_shape(&[None, Some(10)]).unwrap(), vec![None, Some(10), Some(16)]);
/// ```
#[derive(Debug)]
pub struct Embedding {
    name: String,
    input_dim: usize,
    output_dim: usize,
    embeddings_initializer: Initializer,
    embeddings_regularizer: Option<Regularizer>,
    policy: Option<DTypePolicy>,
    embeddings: Option<Variable>,
}

impl Embedding {
    /// A table of `input_dim` rows of `output_dim`.
    pub fn new(input_dim: usize, output_dim: usize) -> Embedding {
        Embedding {
            name: String::new(),
            input_dim,
            output_dim,
            embeddings_initializer: Initializer::RandomUniform {
                minval: -0.05,
                maxval: 0.05,
            },
            embeddings_regularizer: None,
            policy: None,
            embeddings: None,
        }
    }
    /// The table's initializer.
    pub fn embeddings_initializer(mut self, i: Initializer) -> Self {
        self.embeddings_initializer = i;
        self
    }
    /// A penalty on the table.
    pub fn embeddings_regularizer(mut self, r: Regularizer) -> Self {
        self.embeddings_regularizer = Some(r);
        self
    }
    /// The dtype policy.
    pub fn dtype(mut self, p: DTypePolicy) -> Self {
        self.policy = Some(p);
        self
    }
    /// A name.
    pub fn name(mut self, n: &str) -> Self {
        self.name = n.into();
        self
    }
    /// The table, once built.
    pub fn embeddings(&self) -> Option<&Variable> {
        self.embeddings.as_ref()
    }
}

impl Layer for Embedding {
    fn name(&self) -> &str {
        &self.name
    }
    fn set_name(&mut self, name: String) {
        self.name = name;
    }
    fn class_name(&self) -> &'static str {
        "Embedding"
    }
    fn build(&mut self, _s: &[Option<usize>], ctx: &mut BuildContext) -> Result<()> {
        if self.input_dim == 0 || self.output_dim == 0 {
            return Err(KilnError::invalid(
                "Embedding",
                format!(
                    "layer {:?}: input_dim and output_dim must be at least 1, got {} and {}",
                    self.name, self.input_dim, self.output_dim
                ),
            ));
        }
        let policy = *self.policy.get_or_insert(ctx.policy);
        let mut b = BuildContext {
            policy,
            ..ctx.clone()
        };
        self.embeddings = Some(b.variable(
            "embeddings",
            &[self.input_dim, self.output_dim],
            &self.embeddings_initializer,
        )?);
        ctx.seed = b.seed;
        Ok(())
    }
    fn output_shape(&self, s: &[Option<usize>]) -> Result<Shape> {
        let mut o = s.to_vec();
        o.push(Some(self.output_dim));
        Ok(o)
    }
    fn call(&self, x: &Tensor, _ctx: &CallContext) -> Result<Tensor> {
        let table = self.embeddings.as_ref().ok_or_else(|| {
            KilnError::invalid("Embedding", format!("layer {:?} is not built", self.name))
        })?;
        let idx = if x.dtype().is_float() {
            let whole = {
                let _q = crate::autodiff::no_grad();
                ops::all(&ops::equal(&ops::floor(x)?, x)?, None, false)?.to_f64_vec()?[0] != 0.0
            };
            if !whole {
                return Err(KilnError::invalid(
                    "Embedding",
                    format!(
                        "layer {:?} takes integer indices; its input holds fractions",
                        self.name
                    ),
                ));
            }
            ops::cast(x, DType::Int32)?
        } else {
            x.clone()
        };
        let (lo, hi) = {
            let _q = crate::autodiff::no_grad();
            (
                ops::min(&idx, None, false)?.to_f64_vec()?[0],
                ops::max(&idx, None, false)?.to_f64_vec()?[0],
            )
        };
        if idx.size() > 0 && (lo < 0.0 || hi >= self.input_dim as f64) {
            return Err(KilnError::invalid(
                "Embedding",
                format!(
                    "layer {:?} has {} rows; its input holds index {}",
                    self.name,
                    self.input_dim,
                    if lo < 0.0 { lo } else { hi }
                ),
            ));
        }
        let t = super::autocast(table.value(), &self.policy)?;
        ops::take(&t, &idx, Some(0))
    }
    fn variables(&self) -> Vec<&Variable> {
        self.embeddings.iter().collect()
    }
    fn variables_mut(&mut self) -> Vec<&mut Variable> {
        self.embeddings.iter_mut().collect()
    }
    fn regularization(&self) -> Result<Option<Tensor>> {
        super::penalties(&[(&self.embeddings_regularizer, &self.embeddings)])
    }
    fn config(&self) -> serde_json::Value {
        merge(
            base_config(&self.name, self.trainable(), self.policy),
            json!({
                "input_dim": self.input_dim,
                "output_dim": self.output_dim,
                "embeddings_initializer": {"class_name": self.embeddings_initializer.keras_name(), "config": {}},
                "embeddings_regularizer": self.embeddings_regularizer.as_ref().map(|r| r.config()),
                "activity_regularizer": null,
                "embeddings_constraint": null,
                "mask_zero": false,
                "quantization_config": null,
            }),
        )
    }
}
