//! Fused optimizer updates: one pass over a variable, its gradient and its slots, writing the
//! new variable and slots (instead of a dozen elementwise kernels and their temporaries). The
//! arithmetic is the composed update's, operation for operation in the variable's dtype, so
//! both paths give the same bits (tested).

use super::{simd, ArrView};
use crate::array::ArrayData;
use crate::backend::OptimizerStep;
use crate::error::Result;
use ndarray::ArrayViewD;
use num_traits::Float;

/// The update on contiguous float32/float64 operands of one shape; `Ok(None)` otherwise.
pub(super) fn step(step: OptimizerStep, views: &[ArrView<'_>]) -> Result<Option<Vec<ArrayData>>> {
    macro_rules! typed {
        ($variant:ident) => {{
            let mut vs = Vec::with_capacity(views.len());
            for v in views {
                match v {
                    ArrView::$variant(a) => vs.push(a.view()),
                    _ => return Ok(None),
                }
            }
            run(step, &vs)
        }};
    }
    match views.first() {
        Some(ArrView::F32(_)) => typed!(F32),
        Some(ArrView::F64(_)) => typed!(F64),
        _ => Ok(None),
    }
}

fn slots_needed(step: &OptimizerStep) -> usize {
    match step {
        OptimizerStep::Sgd { .. } => 0,
        OptimizerStep::SgdMomentum { .. } => 1,
        OptimizerStep::Adam { amsgrad, .. } => 2 + usize::from(*amsgrad),
        OptimizerStep::RmsProp {
            momentum, centered, ..
        } => 1 + usize::from(*momentum > 0.0) + usize::from(*centered),
        OptimizerStep::Adagrad { .. } | OptimizerStep::Lion { .. } => 1,
        OptimizerStep::Adamax { .. } | OptimizerStep::Nadam { .. } => 2,
    }
}

fn nan_max<T: Float>(a: T, b: T) -> T {
    if Float::is_nan(a) || Float::is_nan(b) {
        Float::nan()
    } else if b > a {
        b
    } else {
        a
    }
}

fn run<T: Float + crate::element::Element + crate::array::HostElement>(
    step: OptimizerStep,
    vs: &[ArrayViewD<'_, T>],
) -> Result<Option<Vec<ArrayData>>> {
    let shape = vs[0].shape().to_vec();
    if vs.len() != 2 + slots_needed(&step)
        || vs
            .iter()
            .any(|v| v.shape() != shape.as_slice() || !v.is_standard_layout())
    {
        return Ok(None);
    }
    let slices: Vec<&[T]> = match vs.iter().map(|v| v.as_slice()).collect::<Option<Vec<_>>>() {
        Some(s) => s,
        None => return Ok(None),
    };
    let n = slices[0].len();
    let c = |v: f64| T::from(v).unwrap_or_else(T::nan);
    let mut outs: Vec<Vec<T>> = (0..vs.len() - 1)
        .map(|_| crate::hostmem::alloc_for::<T>(n, "optimizer_step", &shape))
        .collect::<Result<_>>()?;
    let (w, g) = (slices[0], slices[1]);
    let decayed = |i: usize, decay: T, has: bool| if has { w[i] - w[i] * decay } else { w[i] };
    match step {
        OptimizerStep::Sgd { lr, decay } => {
            let (lr, d) = (c(lr), c(decay));
            outs[0].extend((0..n).map(|i| decayed(i, d, decay != 0.0) - g[i] * lr));
        }
        OptimizerStep::SgdMomentum {
            lr,
            momentum,
            nesterov,
            decay,
        } => {
            let (neg_lr, mo, d) = (c(-lr), c(momentum), c(decay));
            let m = slices[2];
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let m2 = g[i] * neg_lr + m[i] * mo;
                let w2 = if nesterov {
                    wi + (g[i] * neg_lr + m2 * mo)
                } else {
                    wi + m2
                };
                outs[0].push(w2);
                outs[1].push(m2);
            }
        }
        OptimizerStep::Adam {
            alpha,
            beta_1,
            beta_2,
            epsilon,
            amsgrad,
            decay,
        } => {
            let (a, c1, c2, eps, d) = (
                c(alpha),
                c(1.0 - beta_1),
                c(1.0 - beta_2),
                c(epsilon),
                c(decay),
            );
            let (m, v) = (slices[2], slices[3]);
            if !amsgrad {
                // The common case, vectorised (same operations, same order).
                let mut o: Vec<Vec<T>> = (0..3)
                    .map(|_| crate::hostmem::zeroed_for::<T>(n, "optimizer_step", &shape))
                    .collect::<Result<_>>()?;
                let (ow, rest) = o.split_at_mut(1);
                let (om, ov) = rest.split_at_mut(1);
                adam_k(
                    w,
                    g,
                    m,
                    v,
                    &mut ow[0],
                    &mut om[0],
                    &mut ov[0],
                    [a, c1, c2, eps, d],
                    decay != 0.0,
                );
                return o
                    .into_iter()
                    .map(|o| ArrayData::from_shape_vec(&shape, o))
                    .collect::<Result<Vec<_>>>()
                    .map(Some);
            }
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let m2 = m[i] + (g[i] - m[i]) * c1;
                let v2 = v[i] + (g[i] * g[i] - v[i]) * c2;
                let h = nan_max(slices[4][i], v2);
                outs[3].push(h);
                outs[0].push(wi - (m2 * a) / (h.sqrt() + eps));
                outs[1].push(m2);
                outs[2].push(v2);
            }
        }
        OptimizerStep::RmsProp {
            lr,
            rho,
            momentum,
            epsilon,
            centered,
            decay,
        } => {
            let (lr_, rho_, c, mo, eps, d) = (
                c(lr),
                c(rho),
                c(1.0 - rho),
                c(momentum),
                c(epsilon),
                c(decay),
            );
            let has_mom = momentum > 0.0;
            let avg_at = slices.len() - 1;
            let avg_out = outs.len() - 1;
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let v2 = slices[2][i] * rho_ + (g[i] * g[i]) * c;
                let denom = if centered {
                    let a2 = slices[avg_at][i] * rho_ + g[i] * c;
                    outs[avg_out].push(a2);
                    (v2 - a2 * a2) + eps
                } else {
                    v2 + eps
                };
                let inc = (g[i] * lr_) / denom.sqrt();
                outs[1].push(v2);
                if has_mom {
                    let m2 = slices[3][i] * mo + inc;
                    outs[2].push(m2);
                    outs[0].push(wi - m2);
                } else {
                    outs[0].push(wi - inc);
                }
            }
        }
        OptimizerStep::Adagrad { lr, epsilon, decay } => {
            let (lr_, eps, d) = (c(lr), c(epsilon), c(decay));
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let acc = slices[2][i] + g[i] * g[i];
                outs[0].push(wi - (g[i] * lr_) / (acc + eps).sqrt());
                outs[1].push(acc);
            }
        }
        OptimizerStep::Adamax {
            lr,
            beta_1,
            beta_2,
            epsilon,
            bias,
            decay,
        } => {
            let (lr_, c1, b2, eps, k, d) = (
                c(lr),
                c(1.0 - beta_1),
                c(beta_2),
                c(epsilon),
                c(bias),
                c(decay),
            );
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let m2 = slices[2][i] + (g[i] - slices[2][i]) * c1;
                let u2 = nan_max(slices[3][i] * b2, g[i].abs());
                outs[0].push(wi - (m2 * lr_) / ((u2 + eps) * k));
                outs[1].push(m2);
                outs[2].push(u2);
            }
        }
        OptimizerStep::Nadam {
            lr,
            beta_1,
            beta_2,
            epsilon,
            k_m,
            k_g,
            k_v,
            decay,
        } => {
            let (lr_, c1, c2, eps, km, kg, kv, d) = (
                c(lr),
                c(1.0 - beta_1),
                c(1.0 - beta_2),
                c(epsilon),
                c(k_m),
                c(k_g),
                c(k_v),
                c(decay),
            );
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let m2 = slices[2][i] + (g[i] - slices[2][i]) * c1;
                let v2 = slices[3][i] + (g[i] * g[i] - slices[3][i]) * c2;
                let m_hat = m2 * km + g[i] * kg;
                let v_hat = v2 / kv;
                outs[0].push(wi - (m_hat * lr_) / (v_hat.sqrt() + eps));
                outs[1].push(m2);
                outs[2].push(v2);
            }
        }
        OptimizerStep::Lion {
            lr,
            beta_1,
            beta_2,
            decay,
        } => {
            let (lr_, b1, c1, b2, c2, d) = (
                c(lr),
                c(beta_1),
                c(1.0 - beta_1),
                c(beta_2),
                c(1.0 - beta_2),
                c(decay),
            );
            for i in 0..n {
                let wi = decayed(i, d, decay != 0.0);
                let m = slices[2][i];
                let x = m * b1 + g[i] * c1;
                let (zero, one) = (
                    <T as num_traits::Zero>::zero(),
                    <T as num_traits::One>::one(),
                );
                let dir = if Float::is_nan(x) {
                    x
                } else if x > zero {
                    one
                } else if x < zero {
                    -one
                } else {
                    zero
                };
                outs[0].push(wi - dir * lr_);
                outs[1].push(m * b2 + g[i] * c2);
            }
        }
    }
    outs.into_iter()
        .map(|o| ArrayData::from_shape_vec(&shape, o))
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

simd::kernel! {
    /// Adam without AMSGrad over contiguous slices of one length: written as index loops over
    /// re-sliced operands so the bounds checks go and the loop vectorises.
    fn adam_k[T: Float](w: &[T], g: &[T], m: &[T], v: &[T], ow: &mut [T], om: &mut [T], ov: &mut [T], k: [T; 5], decay: bool) where [] {
        let [a, c1, c2, eps, d] = k;
        let n = w.len();
        let (g, m, v) = (&g[..n], &m[..n], &v[..n]);
        let (ow, om, ov) = (&mut ow[..n], &mut om[..n], &mut ov[..n]);
        for i in 0..n {
            let wi = if decay { w[i] - w[i] * d } else { w[i] };
            let m2 = m[i] + (g[i] - m[i]) * c1;
            let v2 = v[i] + (g[i] * g[i] - v[i]) * c2;
            ow[i] = wi - (m2 * a) / (v2.sqrt() + eps);
            om[i] = m2;
            ov[i] = v2;
        }
    }
}
