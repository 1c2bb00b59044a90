//! Gradient checks: every differentiable op of the registry (and the ops with arguments the
//! registry calls with defaults) against central finite differences in float64 on the cpu,
//! on every engine; the conventions at kinks (JAX's); the graph's memory; the errors.

use kiln::autodiff::{self, gradients, live_nodes, stop_gradient, watch};
use kiln::ops::{self, Operand, SliceArg};
use kiln::{convert_to_tensor, ArrayData, DType, Device, Result, Tensor};

/// Deterministic draws in `[lo, hi)`, with `|x| >= away` from each point of `kinks`.
struct Draw(u64);
impl Draw {
    fn next(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (self.0 >> 11) as f64 / (1u64 << 53) as f64
    }
    fn values(&mut self, n: usize, lo: f64, hi: f64, kinks: &[f64]) -> Vec<f64> {
        (0..n)
            .map(|_| loop {
                let v = lo + (hi - lo) * self.next();
                if kinks.iter().all(|k| (v - k).abs() > 0.05) {
                    break v;
                }
            })
            .collect()
    }
}

fn t64(shape: &[usize], v: Vec<f64>) -> Tensor {
    convert_to_tensor(
        &ArrayData::from_shape_vec(shape, v).unwrap(),
        Some(DType::Float64),
        &Device::Cpu,
    )
    .unwrap()
}

type F<'a> = &'a dyn Fn(&[Tensor]) -> Result<Tensor>;

/// `sum(f(x) * w)` for a fixed random `w`: every output element weighs in differently.
fn weighted(f: F<'_>, xs: &[Tensor], w: &mut Option<Tensor>) -> Result<Tensor> {
    let y = f(xs)?;
    let y = if y.dtype() == DType::Float64 {
        y
    } else {
        ops::cast(&y, DType::Float64)?
    };
    if w.as_ref().map(|w| w.shape() != y.shape()).unwrap_or(true) {
        let mut d = Draw(y.size() as u64 + 7);
        *w = Some(t64(y.shape(), d.values(y.size(), 0.5, 1.5, &[])));
    }
    let w = w.as_ref().unwrap().to_backend(y.backend_kind())?;
    ops::sum(&ops::multiply(&y, &w)?, None, false)
}

/// The analytic gradient of each input against central differences; the worst mismatch
/// as a message.
fn check(name: &str, f: F<'_>, inputs: &[Tensor]) -> Option<String> {
    let mut w = None;
    let watched: Vec<Tensor> = inputs.iter().map(|x| watch(x).unwrap()).collect();
    let loss = match weighted(f, &watched, &mut w) {
        Ok(l) => l,
        Err(e) => return Some(format!("{name}: forward failed: {e}")),
    };
    let refs: Vec<&Tensor> = watched.iter().collect();
    let grads = match gradients(&loss, &refs) {
        Ok(g) => g,
        Err(e) => return Some(format!("{name}: backward failed: {e}")),
    };
    let _quiet = autodiff::no_grad();
    for (i, x) in inputs.iter().enumerate() {
        if grads[i].shape() != x.shape() || grads[i].dtype() != x.dtype() {
            return Some(format!(
                "{name}: gradient {i} is {} {:?} for a {} {:?} input",
                grads[i].dtype(),
                grads[i].shape(),
                x.dtype(),
                x.shape()
            ));
        }
        let analytic = grads[i].to_f64_vec().unwrap();
        let base = x.to_f64_vec().unwrap();
        for j in 0..base.len() {
            let eps = 1e-6 * base[j].abs().max(1.0);
            let mut at = |d: f64| {
                let mut v = base.clone();
                v[j] += d;
                let mut xs = inputs.to_vec();
                xs[i] = t64(x.shape(), v).to_backend(x.backend_kind()).unwrap();
                weighted(f, &xs, &mut w).unwrap().to_f64_vec().unwrap()[0]
            };
            let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
            let a = analytic[j];
            if (a - numeric).abs() > 1e-6 + 1e-5 * numeric.abs() || a.is_nan() != numeric.is_nan() {
                return Some(format!(
                    "{name}: d/d input {i}[{j}] analytic {a} vs numeric {numeric}"
                ));
            }
        }
    }
    None
}

/// The input range of a unary op (values a finite difference can step around).
fn unary_domain(name: &str) -> (f64, f64, Vec<f64>) {
    match name {
        "sqrt" | "rsqrt" | "log" | "log1p" | "log2" | "log10" | "reciprocal" => (0.5, 2.0, vec![]),
        "arcsin" | "arccos" => (-0.9, 0.9, vec![]),
        "tan" => (-1.2, 1.2, vec![]),
        "relu6" => (-2.0, 8.0, vec![0.0, 6.0]),
        "abs" | "relu" | "elu" | "leaky_relu" => (-2.0, 2.0, vec![0.0]),
        _ => (-2.0, 2.0, vec![]),
    }
}

#[test]
fn every_registry_op_matches_finite_differences() {
    let mut failures = Vec::new();
    let mut checked = 0;
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new().backend(Some(engine)).enter();
        let mut d = Draw(1);
        for name in ops::registry::UNARY {
            if ops::registry::differentiable(name) != Some(true) {
                continue;
            }
            let (lo, hi, kinks) = unary_domain(name);
            // Square inputs, so triu/tril/diag/trace see a matrix.
            let x = t64(&[4, 4], d.values(16, lo, hi, &kinks))
                .to_backend(engine)
                .unwrap();
            let f = |p: &[Tensor]| ops::registry::call_unary(name, &p[0]);
            if let Some(m) = check(&format!("{engine} {name}"), &f, &[x]) {
                failures.push(m);
            }
            checked += 1;
        }
        for name in ops::registry::BINARY {
            if ops::registry::differentiable(name) != Some(true) {
                continue;
            }
            let (sa, sb): (&[usize], &[usize]) = match *name {
                "matmul" | "dot" => (&[3, 4], &[4, 2]),
                _ => (&[3, 4], &[4]),
            };
            let (a, b) = match *name {
                "power" => (d.values(12, 0.5, 2.0, &[]), d.values(4, -1.5, 1.5, &[])),
                // floor(a / b) == 1 everywhere: away from the jumps.
                "mod" => (d.values(12, 3.3, 5.7, &[]), d.values(4, 3.0, 3.2, &[])),
                _ => (
                    d.values(12, -2.0, 2.0, &[0.0]),
                    d.values(4, -2.0, 2.0, &[0.0]),
                ),
            };
            let n = sb.iter().product();
            let b = if b.len() == n {
                b
            } else {
                d.values(n, -2.0, 2.0, &[0.0])
            };
            let xa = t64(sa, a).to_backend(engine).unwrap();
            let xb = t64(sb, b).to_backend(engine).unwrap();
            let f = |p: &[Tensor]| {
                ops::registry::call_binary(name, Operand::Tensor(&p[0]), Operand::Tensor(&p[1]))
            };
            if let Some(m) = check(&format!("{engine} {name}"), &f, &[xa, xb]) {
                failures.push(m);
            }
            checked += 1;
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {checked} checks failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(checked >= 2 * 60, "only {checked} checks ran");
    // Integer, bool and piecewise-constant ops are marked in the registry; an op marked
    // differentiable whose gradient fails is caught above.
    assert_eq!(ops::registry::differentiable("argmax"), Some(false));
    assert_eq!(ops::registry::differentiable("no_such_op"), None);
}

/// The ops the registry calls with default arguments, with the arguments that exercise each
/// gradient rule: axes and keepdims, broadcasting, strides, indices, ties of zeros.
#[test]
fn ops_with_arguments_match_finite_differences() {
    type Case = (
        &'static str,
        Vec<Vec<usize>>,
        Box<dyn Fn(&[Tensor]) -> Result<Tensor>>,
    );
    let cases: Vec<Case> = vec![
        (
            "add [3,1]+[1,4]",
            vec![vec![3, 1], vec![1, 4]],
            Box::new(|p| ops::add(&p[0], &p[1])),
        ),
        (
            "multiply [2,3,4]*[3,1]",
            vec![vec![2, 3, 4], vec![3, 1]],
            Box::new(|p| ops::multiply(&p[0], &p[1])),
        ),
        (
            "divide scalar by tensor",
            vec![vec![3, 4]],
            Box::new(|p| ops::divide(2.0, &p[0])),
        ),
        (
            "matmul batched",
            vec![vec![2, 3, 4], vec![4, 5]],
            Box::new(|p| ops::matmul(&p[0], &p[1])),
        ),
        (
            "matmul batch broadcast",
            vec![vec![2, 1, 3, 4], vec![3, 4, 2]],
            Box::new(|p| ops::matmul(&p[0], &p[1])),
        ),
        (
            "matmul vector",
            vec![vec![4], vec![4, 3]],
            Box::new(|p| ops::matmul(&p[0], &p[1])),
        ),
        (
            "matmul a.T @ b",
            vec![vec![4, 3], vec![4, 2]],
            Box::new(|p| ops::matmul_transposed(&p[0], &p[1], true, false)),
        ),
        (
            "matmul a @ b.T",
            vec![vec![3, 4], vec![2, 4]],
            Box::new(|p| ops::matmul_transposed(&p[0], &p[1], false, true)),
        ),
        (
            "matmul a.T @ b.T",
            vec![vec![4, 3], vec![2, 4]],
            Box::new(|p| ops::matmul_transposed(&p[0], &p[1], true, true)),
        ),
        (
            "tensordot",
            vec![vec![2, 3, 4], vec![3, 4, 2]],
            Box::new(|p| ops::tensordot(&p[0], &p[1], ops::Axes::N(2))),
        ),
        (
            "einsum bij,bjk->bik",
            vec![vec![2, 3, 4], vec![2, 4, 2]],
            Box::new(|p| ops::einsum("bij,bjk->bik", &[&p[0], &p[1]])),
        ),
        (
            "sum axis 1 keepdims",
            vec![vec![3, 4]],
            Box::new(|p| ops::sum(&p[0], Some(&[1]), true)),
        ),
        (
            "mean axis 0",
            vec![vec![3, 4]],
            Box::new(|p| ops::mean(&p[0], Some(&[0]), false)),
        ),
        (
            "max axis -1",
            vec![vec![3, 4]],
            Box::new(|p| ops::max(&p[0], Some(&[-1]), false)),
        ),
        (
            "min axes 0,2",
            vec![vec![2, 3, 4]],
            Box::new(|p| ops::min(&p[0], Some(&[0, 2]), true)),
        ),
        (
            "prod axis 1",
            vec![vec![3, 4]],
            Box::new(|p| ops::prod(&p[0], Some(&[1]), false)),
        ),
        (
            "std axis 1",
            vec![vec![3, 4]],
            Box::new(|p| ops::std(&p[0], Some(&[1]), false)),
        ),
        (
            "var axis 0 keepdims",
            vec![vec![3, 4]],
            Box::new(|p| ops::var(&p[0], Some(&[0]), true)),
        ),
        (
            "logsumexp axis 1",
            vec![vec![3, 4]],
            Box::new(|p| ops::logsumexp(&p[0], Some(&[1]), false)),
        ),
        (
            "cumsum axis 0",
            vec![vec![3, 4]],
            Box::new(|p| ops::cumsum(&p[0], Some(0))),
        ),
        (
            "cumprod axis 1",
            vec![vec![3, 4]],
            Box::new(|p| ops::cumprod(&p[0], Some(1))),
        ),
        (
            "softmax axis 0",
            vec![vec![3, 4]],
            Box::new(|p| ops::softmax(&p[0], 0)),
        ),
        (
            "log_softmax axis 0",
            vec![vec![3, 4]],
            Box::new(|p| ops::log_softmax(&p[0], 0)),
        ),
        (
            "gelu exact",
            vec![vec![3, 4]],
            Box::new(|p| ops::gelu(&p[0], false)),
        ),
        (
            "elu alpha 0.5",
            vec![vec![3, 4]],
            Box::new(|p| ops::elu(&p[0], 0.5)),
        ),
        (
            "clip",
            vec![vec![3, 4]],
            Box::new(|p| ops::clip(&p[0], -0.52, 0.47)),
        ),
        (
            "where broadcast",
            vec![vec![3, 4], vec![4]],
            Box::new(|p| {
                let c = ops::greater(&p[0], 0.0)?;
                ops::r#where(&c, &ops::multiply(&p[0], 2.0)?, &p[1])
            }),
        ),
        (
            "reshape",
            vec![vec![3, 4]],
            Box::new(|p| ops::reshape(&p[0], &[2, -1])),
        ),
        (
            "transpose 3-d",
            vec![vec![2, 3, 4]],
            Box::new(|p| ops::transpose(&p[0], Some(&[2, 0, 1]))),
        ),
        (
            "expand+squeeze",
            vec![vec![3, 4]],
            Box::new(|p| ops::squeeze(&ops::expand_dims(&p[0], 1)?, Some(1))),
        ),
        (
            "broadcast_to",
            vec![vec![3, 1]],
            Box::new(|p| ops::broadcast_to(&p[0], &[2, 3, 4])),
        ),
        (
            "slice step 2",
            vec![vec![7, 4]],
            Box::new(|p| ops::strided_slice(&p[0], &[SliceArg::new(Some(1), None, 2)])),
        ),
        (
            "slice step -2",
            vec![vec![7, 4]],
            Box::new(|p| {
                ops::strided_slice(
                    &p[0],
                    &[
                        SliceArg::new(Some(5), Some(0), -2),
                        SliceArg::new(Some(1), Some(3), 1),
                    ],
                )
            }),
        ),
        (
            "slice step 3 both axes",
            vec![vec![7, 8]],
            Box::new(|p| {
                ops::strided_slice(
                    &p[0],
                    &[
                        SliceArg::new(None, None, 3),
                        SliceArg::new(Some(-1), None, -3),
                    ],
                )
            }),
        ),
        (
            "flip axis 0",
            vec![vec![3, 4]],
            Box::new(|p| ops::flip(&p[0], Some(&[0]))),
        ),
        (
            "concatenate",
            vec![vec![2, 4], vec![3, 4]],
            Box::new(|p| ops::concatenate(&[&p[0], &p[1]], 0)),
        ),
        (
            "stack",
            vec![vec![3, 4], vec![3, 4]],
            Box::new(|p| ops::stack(&[&p[0], &p[1]], 1)),
        ),
        (
            "split",
            vec![vec![6, 2]],
            Box::new(|p| {
                let parts = ops::split(&p[0], ops::Split::Sections(3), 0)?;
                ops::concatenate(&[&ops::multiply(&parts[0], 3.0)?, &parts[2]], 0)
            }),
        ),
        (
            "tile",
            vec![vec![2, 3]],
            Box::new(|p| ops::tile(&p[0], &[2, 2])),
        ),
        (
            "repeat axis 1",
            vec![vec![2, 3]],
            Box::new(|p| ops::repeat(&p[0], 3, Some(1))),
        ),
        (
            "pad",
            vec![vec![2, 3]],
            Box::new(|p| ops::pad(&p[0], &[(1, 2), (0, 1)], 0.5)),
        ),
        (
            "take with repeats",
            vec![vec![4, 3]],
            Box::new(|p| {
                let i =
                    convert_to_tensor(&ArrayData::from(vec![3i64, 0, 3, 1]), None, &p[0].device())?
                        .to_backend(p[0].backend_kind())?;
                ops::take(&p[0], &i, Some(0))
            }),
        ),
        (
            "take_along_axis",
            vec![vec![3, 4]],
            Box::new(|p| {
                let i = convert_to_tensor(
                    &ArrayData::from_shape_vec(&[3, 2], vec![1i64, 1, 0, 3, 2, 2])?,
                    None,
                    &p[0].device(),
                )?
                .to_backend(p[0].backend_kind())?;
                ops::take_along_axis(&p[0], &i, 1)
            }),
        ),
        (
            "take_along_axis broadcasting x",
            vec![vec![1, 5]],
            Box::new(|p| {
                let i = convert_to_tensor(
                    &ArrayData::from_shape_vec(&[3, 2], vec![4i64, 1, 0, 0, 2, 4])?,
                    None,
                    &p[0].device(),
                )?
                .to_backend(p[0].backend_kind())?;
                ops::take_along_axis(&p[0], &i, 1)
            }),
        ),
        (
            "sort axis 0",
            vec![vec![3, 4]],
            Box::new(|p| ops::sort(&p[0], 0)),
        ),
        (
            "triu k=1",
            vec![vec![4, 4]],
            Box::new(|p| ops::triu(&p[0], 1)),
        ),
        (
            "outer composite: mlp + cross-entropy",
            vec![vec![5, 3], vec![3, 4], vec![4]],
            Box::new(|p| {
                let h = ops::add(&ops::matmul(&p[0], &p[1])?, &p[2])?;
                let ls = ops::log_softmax(&ops::tanh(&h)?, -1)?;
                ops::mean(&ls, None, false)
            }),
        ),
        (
            "conv 2-d same, stride 2, 2 groups",
            vec![vec![2, 5, 4, 4], vec![3, 2, 2, 4]],
            Box::new(|p| {
                use kiln::ops::conv::{conv, DataFormat, Padding};
                conv(
                    &p[0],
                    &p[1],
                    &[2],
                    Padding::Same,
                    DataFormat::ChannelsLast,
                    &[1],
                )
            }),
        ),
        (
            "conv 1-d causal, dilated",
            vec![vec![2, 6, 2], vec![2, 2, 3]],
            Box::new(|p| {
                use kiln::ops::conv::{conv, DataFormat, Padding};
                conv(
                    &p[0],
                    &p[1],
                    &[1],
                    Padding::Causal,
                    DataFormat::ChannelsLast,
                    &[2],
                )
            }),
        ),
        (
            "depthwise_conv channels_first",
            vec![vec![1, 2, 5, 5], vec![3, 3, 2, 2]],
            Box::new(|p| {
                use kiln::ops::conv::{depthwise_conv, DataFormat, Padding};
                depthwise_conv(
                    &p[0],
                    &p[1],
                    &[1],
                    Padding::Valid,
                    DataFormat::ChannelsFirst,
                    &[1],
                )
            }),
        ),
        (
            "max_pool 2-d same",
            vec![vec![2, 5, 5, 2]],
            Box::new(|p| {
                use kiln::ops::conv::{DataFormat, Padding};
                ops::max_pool(&p[0], &[2], None, Padding::Same, DataFormat::ChannelsLast)
            }),
        ),
        (
            "conv_transpose 2-d same, stride 2",
            vec![vec![1, 3, 2, 2], vec![3, 3, 3, 2]],
            Box::new(|p| {
                use kiln::ops::conv::{conv_transpose, DataFormat, Padding};
                conv_transpose(
                    &p[0],
                    &p[1],
                    &[2],
                    Padding::Same,
                    None,
                    DataFormat::ChannelsLast,
                    &[1],
                )
            }),
        ),
        (
            "batch_normalization with scale and offset",
            vec![vec![5, 3], vec![3], vec![3], vec![3], vec![3]],
            Box::new(|p| {
                let var = ops::add(&ops::square(&p[2])?, 0.5)?;
                ops::batch_normalization(&p[0], &p[1], &var, -1, Some(&p[3]), Some(&p[4]), 1e-3)
            }),
        ),
        (
            "moments over two axes",
            vec![vec![3, 2, 4]],
            Box::new(|p| {
                let (m, v) = ops::moments(&p[0], &[0, 2], false)?;
                ops::add(&m, &ops::multiply(&v, 3.0)?)
            }),
        ),
        (
            "average_pool 2-d same, stride 1",
            vec![vec![1, 4, 5, 2]],
            Box::new(|p| {
                use kiln::ops::conv::{DataFormat, Padding};
                ops::average_pool(
                    &p[0],
                    &[3],
                    Some(&[1]),
                    Padding::Same,
                    DataFormat::ChannelsLast,
                )
            }),
        ),
    ];
    let mut failures = Vec::new();
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new().backend(Some(engine)).enter();
        let mut d = Draw(99);
        for (name, shapes, f) in &cases {
            let xs: Vec<Tensor> = shapes
                .iter()
                .map(|s| {
                    let n = s.iter().product();
                    let v = if name.starts_with("clip") {
                        d.values(n, -2.0, 2.0, &[-0.52, 0.47])
                    } else {
                        d.values(n, -2.0, 2.0, &[0.0])
                    };
                    t64(s, v).to_backend(engine).unwrap()
                })
                .collect();
            if let Some(m) = check(&format!("{engine} {name}"), f.as_ref(), &xs) {
                failures.push(m);
            }
        }
        // Products through zeros: one zero in a row, two zeros in another, a zero mid-scan.
        let z = t64(
            &[3, 4],
            vec![1.5, 0.0, -2.0, 0.5, 0.0, 3.0, 0.0, 1.2, 0.7, -1.1, 1.3, 0.9],
        )
        .to_backend(engine)
        .unwrap();
        for (name, f) in [
            (
                "prod with zeros",
                &(|p: &[Tensor]| ops::prod(&p[0], Some(&[1]), false)) as F<'_>,
            ),
            ("cumprod with zeros", &|p: &[Tensor]| {
                ops::cumprod(&p[0], Some(1))
            }),
        ] {
            if let Some(m) = check(&format!("{engine} {name}"), f, std::slice::from_ref(&z)) {
                failures.push(m);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn t32(v: Vec<f32>) -> Tensor {
    convert_to_tensor(&ArrayData::from(v), None, &Device::Cpu).unwrap()
}

fn grad1(f: impl FnOnce(&Tensor) -> Result<Tensor>, x: &Tensor) -> Vec<f32> {
    autodiff::grad(|p| ops::sum(&f(&p[0])?, None, false), &[x]).unwrap()[0]
        .to_vec::<f32>()
        .unwrap()
}

/// JAX's values at the kinks (jax.grad at exactly these points).
#[test]
fn kinks_follow_jax() {
    for engine in crate::common::engines() {
        let _s = kiln::precision::Scope::new().backend(Some(engine)).enter();
        let x = t32(vec![-1.0, 0.0, 2.0, 6.0]).to_backend(engine).unwrap();
        assert_eq!(
            grad1(ops::relu, &x),
            vec![0.0, 0.0, 1.0, 1.0],
            "{engine} relu"
        );
        assert_eq!(
            grad1(ops::relu6, &x),
            vec![0.0, 0.0, 1.0, 0.0],
            "{engine} relu6"
        );
        assert_eq!(
            grad1(|x| ops::leaky_relu(x, 0.2), &x),
            vec![0.2, 1.0, 1.0, 1.0],
            "{engine} leaky_relu"
        );
        assert_eq!(
            grad1(|x| ops::maximum(x, 0.0), &x),
            vec![0.0, 0.5, 1.0, 1.0],
            "{engine} maximum tie"
        );
        assert_eq!(
            grad1(|x| ops::abs(x), &x),
            vec![-1.0, 1.0, 1.0, 1.0],
            "{engine} abs"
        );
        let ties = t32(vec![3.0, 1.0, 3.0, 2.0]).to_backend(engine).unwrap();
        assert_eq!(
            grad1(|x| ops::max(x, None, false), &ties),
            vec![0.5, 0.0, 0.5, 0.0],
            "{engine} max ties"
        );
        let at0 = t32(vec![0.0]).to_backend(engine).unwrap();
        let g = grad1(|x| ops::sqrt(&ops::multiply(x, x)?), &at0);
        assert!(
            g[0].is_nan(),
            "{engine}: d sqrt(x*x) at 0 is 0 * inf, NaN as in JAX"
        );
    }
}

#[test]
fn cast_gradients_come_back_in_the_input_dtype() {
    let x = t64(&[3], vec![1.0, 2.0, 3.0]);
    let g = autodiff::grad(
        |p| {
            let h = ops::cast(&p[0], DType::Float16)?;
            ops::sum(&ops::multiply(&h, 3.0)?, None, false)
        },
        &[&x],
    )
    .unwrap();
    assert_eq!(g[0].dtype(), DType::Float64);
    assert_eq!(g[0].to_vec::<f64>().unwrap(), vec![3.0, 3.0, 3.0]);
    // Through an integer cast nothing flows: the value is piecewise constant.
    let g = autodiff::grad(
        |p| {
            ops::sum(
                &ops::cast(&ops::cast(&p[0], DType::Int32)?, DType::Float64)?,
                None,
                false,
            )
        },
        &[&x],
    )
    .unwrap();
    assert_eq!(g[0].to_vec::<f64>().unwrap(), vec![0.0, 0.0, 0.0]);
}

#[test]
fn graph_errors_are_clear() {
    let x = t32(vec![1.0, 2.0]);
    let e = autodiff::grad(|p| ops::argmax(&p[0], None, false), &[&x]).unwrap_err();
    assert!(e.to_string().contains("int"), "{e}");
    let e = autodiff::grad(|p| ops::multiply(&p[0], 2.0), &[&x]).unwrap_err();
    assert!(e.to_string().contains("scalar"), "{e}");
    let e = gradients(&ops::sum(&x, None, false).unwrap(), &[&x]).unwrap_err();
    assert!(e.to_string().contains("watch"), "{e}");
    let i = convert_to_tensor(&ArrayData::from(vec![1i32]), None, &Device::Cpu).unwrap();
    assert!(watch(&i).is_err());
    // A watched input the output does not use gets zeros.
    let y = t32(vec![5.0]);
    let g = autodiff::grad(
        |p| ops::sum(&ops::multiply(&p[0], 1.0)?, None, false),
        &[&x, &y],
    )
    .unwrap();
    assert_eq!(g[1].to_vec::<f32>().unwrap(), vec![0.0]);
}

#[test]
fn stop_gradient_and_custom_gradients() {
    let x = t32(vec![2.0, 3.0]);
    // d/dx (x * stop(x)) = stop(x)
    let g = grad1(|x| ops::multiply(x, &stop_gradient(x)), &x);
    assert_eq!(g, vec![2.0, 3.0]);
    // A custom rule that doubles the cotangent, used twice in a graph.
    let g = grad1(
        |x| {
            let y = autodiff::custom_gradient(&[x], &ops::exp(x)?, |g| {
                Ok(vec![ops::multiply(g, 2.0)?])
            })?;
            ops::add(&y, &y)
        },
        &x,
    );
    assert_eq!(g, vec![4.0, 4.0]);
    // A rule returning the wrong shape is an error, not a wrong gradient.
    let e = autodiff::grad(
        |p| {
            let y = autodiff::custom_gradient(&[&p[0]], &p[0], |_| Ok(vec![t32(vec![1.0])]))?;
            ops::sum(&y, None, false)
        },
        &[&x],
    )
    .unwrap_err();
    assert!(e.to_string().contains("shape"), "{e}");
}

/// The graph is freed with the tensors that hold it: a training-like loop keeps a constant
/// number of live nodes, and a long chain is dropped without deep recursion.
#[test]
fn graphs_are_freed_after_backward() {
    let w0 = t32(vec![0.5; 64]);
    let x = t32((0..64).map(|i| i as f32 / 64.0).collect());
    let mut w = w0;
    let step = |w: &Tensor| -> Tensor {
        let g = autodiff::grad(
            |p| {
                ops::mean(
                    &ops::square(&ops::subtract(&ops::multiply(&p[0], &x)?, 1.0)?)?,
                    None,
                    false,
                )
            },
            &[w],
        )
        .unwrap();
        ops::subtract(w, &ops::multiply(&g[0], 0.1).unwrap()).unwrap()
    };
    w = step(&w);
    let before = live_nodes();
    for _ in 0..50 {
        w = step(&w);
    }
    assert!(!autodiff::is_tracked(&w));
    // Other tests run in parallel threads and hold graphs of their own: allow their share,
    // but 50 steps' worth of leaks (hundreds of nodes) would show.
    assert!(live_nodes() <= before + 100, "{before} -> {}", live_nodes());
    // A chain of 100k ops builds and drops without overflowing the stack.
    let mut y = watch(&t32(vec![1.0])).unwrap();
    for _ in 0..100_000 {
        y = ops::multiply(&y, 1.0).unwrap();
    }
    drop(y);
}
