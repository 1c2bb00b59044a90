//! The op benchmark's Rust side: times every case of a JSON case list (written by
//! `scripts/bench_ops.py`, which times the same cases in NumPy in the same run and prints
//! NumPy time / kiln time) and writes one JSON line per case.
//!
//! ```text
//! cargo bench -p kiln --bench ops -- --cases cases.json --out kiln.jsonl [--engine candle]
//! cargo bench -p kiln --bench ops -- --registry   # the registry's op names, as JSON
//! ```
//!
//! Timing (the same on both sides): one warm-up call, then batches of `reps` calls (`reps`
//! chosen so a batch takes about 2 ms), and the best batch mean of `batches` batches (at
//! most ~0.6 s of timing per case after warm-up). The op's result is dropped inside the
//! timed loop, as NumPy's is.

use kiln::backend::BackendKind;
use kiln::ops::{self, Operand};
use kiln::precision::Scope;
use kiln::{DType, Device, Result, Tensor};
use serde::Deserialize;
use std::hint::black_box;
use std::io::Write;
use std::time::{Duration, Instant};

#[derive(Deserialize, Debug)]
struct Case {
    id: String,
    op: String,
    dtype: String,
    shapes: Vec<Vec<usize>>,
    #[serde(default)]
    axis: Option<Vec<isize>>,
    #[serde(default)]
    range: Option<(f64, f64)>,
    #[serde(default)]
    n: Option<usize>,
}

fn input(shape: &[usize], dtype: DType, range: (f64, f64), seed: u64) -> Result<Tensor> {
    let d = match dtype {
        DType::Bool => DType::Float32,
        d if d.is_integer() => DType::Float64,
        d => d,
    };
    let t = ops::random_uniform(shape, range.0, range.1, Some(d), seed, Some(Device::Cpu))?;
    let t = match dtype {
        DType::Bool => ops::greater(&t, 0.0)?,
        d if d.is_integer() => ops::cast(&ops::floor(&t)?, d)?,
        _ => t,
    };
    // Into the configured engine (candle with --engine candle).
    t.to_backend(kiln::tensor::engine_kind_for(
        Device::Cpu,
        &kiln::precision::config::current()?,
    ))
}

type Thunk = Box<dyn Fn() -> Result<Tensor>>;

fn axis1(c: &Case) -> isize {
    c.axis.as_ref().map(|a| a[0]).unwrap_or(-1)
}

/// Builds the closure timed for one case.
fn build(c: &Case) -> Result<Thunk> {
    let dtype = DType::parse(&c.dtype)?;
    let range = c.range.unwrap_or((-2.0, 2.0));
    let xs: Vec<Tensor> = c
        .shapes
        .iter()
        .enumerate()
        .map(|(i, s)| input(s, dtype, range, 1 + i as u64))
        .collect::<Result<_>>()?;
    let x = xs[0].clone();
    let y = xs.get(1).cloned();
    let axes = c.axis.clone();
    Ok(match c.op.as_str() {
        "sum" | "mean" | "prod" | "max" | "min" | "all" | "any" | "std" | "var" | "logsumexp"
        | "count_nonzero"
            if axes.is_some() =>
        {
            let name = c.op.clone();
            Box::new(move || {
                let a = axes.as_deref();
                match name.as_str() {
                    "sum" => ops::sum(&x, a, false),
                    "mean" => ops::mean(&x, a, false),
                    "prod" => ops::prod(&x, a, false),
                    "max" => ops::max(&x, a, false),
                    "min" => ops::min(&x, a, false),
                    "all" => ops::all(&x, a, false),
                    "any" => ops::any(&x, a, false),
                    "std" => ops::std(&x, a, false),
                    "var" => ops::var(&x, a, false),
                    "logsumexp" => ops::logsumexp(&x, a, false),
                    _ => ops::count_nonzero(&x, a),
                }
            })
        }
        "argmax" | "argmin" if axes.is_some() => {
            let ax = axis1(c);
            if c.op == "argmax" {
                Box::new(move || ops::argmax(&x, Some(ax), false))
            } else {
                Box::new(move || ops::argmin(&x, Some(ax), false))
            }
        }
        "softmax" | "log_softmax" if axes.is_some() => {
            let ax = axis1(c);
            if c.op == "softmax" {
                Box::new(move || ops::softmax(&x, ax))
            } else {
                Box::new(move || ops::log_softmax(&x, ax))
            }
        }
        "transpose" => Box::new(move || ops::transpose(&x, None)),
        "matmul" => {
            let y = y.expect("two inputs");
            Box::new(move || ops::matmul(&x, &y))
        }
        // a @ b.T with b stored [n, k]; a.T @ b with a stored [k, m].
        "matmul_bt" => {
            let y = y.expect("two inputs");
            Box::new(move || ops::matmul_transposed(&x, &y, false, true))
        }
        "matmul_at" => {
            let y = y.expect("two inputs");
            Box::new(move || ops::matmul_transposed(&x, &y, true, false))
        }
        "take" => {
            let rows = c.n.unwrap_or(256);
            let n0 = x.shape()[0] as f64;
            let idx = ops::cast(
                &ops::floor(&ops::random_uniform(
                    &[rows],
                    0.0,
                    n0,
                    Some(DType::Float64),
                    9,
                    Some(Device::Cpu),
                )?)?,
                DType::Int32,
            )?
            .to_backend(x.backend_kind())?;
            Box::new(move || ops::take(&x, &idx, Some(0)))
        }
        "one_hot" => {
            let classes = c.n.unwrap_or(10);
            let idx = ops::cast(
                &ops::floor(&ops::random_uniform(
                    &[c.shapes[0][0]],
                    0.0,
                    classes as f64,
                    Some(DType::Float64),
                    9,
                    Some(Device::Cpu),
                )?)?,
                DType::Int32,
            )?
            .to_backend(x.backend_kind())?;
            Box::new(move || ops::one_hot(&idx, classes, Some(dtype)))
        }
        "where" => {
            let y = y.expect("two inputs");
            let cond = ops::greater(&x, 0.0)?;
            Box::new(move || ops::r#where(&cond, &x, &y))
        }
        "clip" => Box::new(move || ops::clip(&x, -1.0, 1.0)),
        // The registry's `gelu` is Keras's default (tanh form); this is approximate=False.
        "gelu_exact" => Box::new(move || ops::nn::gelu(&x, false)),
        "concatenate" => {
            let y = y.expect("two inputs");
            let ax = axis1(c);
            Box::new(move || ops::concatenate(&[&x, &y], ax))
        }
        "add_row" => {
            let y = y.expect("two inputs");
            Box::new(move || ops::add(&x, &y))
        }
        name if ops::registry::BINARY.contains(&name) => {
            let y = y.expect("two inputs");
            // (Looked up once, as NumPy's side binds `np.add` once.)
            let f = ops::registry::binary_fn(name)?;
            Box::new(move || f(Operand::Tensor(&x), (&y).into()))
        }
        name if ops::registry::UNARY.contains(&name) => {
            let f = ops::registry::unary_fn(name)?;
            Box::new(move || f(&x))
        }
        other => {
            return Err(kiln::KilnError::InvalidArgument {
                op: "bench".into(),
                message: format!("no bench case for {other:?}"),
            })
        }
    })
}

/// Best batch mean in seconds.
fn time(f: &Thunk) -> Result<f64> {
    let t0 = Instant::now();
    black_box(f()?);
    let once = t0.elapsed().as_secs_f64().max(1e-8);
    let reps = ((2e-3 / once).ceil() as usize).clamp(1, 100_000);
    let batches = ((0.6 / (once * reps as f64)) as usize).clamp(3, 7);
    let mut best = f64::INFINITY;
    for _ in 0..batches {
        let t = Instant::now();
        for _ in 0..reps {
            black_box(f()?);
        }
        best = best.min(t.elapsed().as_secs_f64() / reps as f64);
    }
    Ok(best)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let get = |k: &str| {
        args.iter()
            .position(|a| a == k)
            .and_then(|i| args.get(i + 1).cloned())
    };
    if args.iter().any(|a| a == "--registry") {
        let list = |names: &[&str]| {
            let quoted: Vec<String> = names.iter().map(|n| format!("{n:?}")).collect();
            format!("[{}]", quoted.join(", "))
        };
        println!(
            "{{\"unary\": {}, \"binary\": {}}}",
            list(ops::registry::UNARY),
            list(ops::registry::BINARY)
        );
        return;
    }
    let Some(cases) = get("--cases") else {
        // `cargo bench` without arguments (CI's `cargo bench --no-run` builds it; a plain run
        // says how to use it).
        eprintln!("usage: ops --cases cases.json --out kiln.jsonl [--engine ndarray|candle]");
        return;
    };
    let out = get("--out").unwrap_or_else(|| "/dev/stdout".into());
    // `--loop ID N`: run one case N times and nothing else (for a profiler).
    let looped = get("--loop").map(|id| {
        let n: usize = args
            .iter()
            .position(|a| a == "--loop")
            .and_then(|i| args.get(i + 2))
            .and_then(|v| v.parse().ok())
            .unwrap_or(100_000);
        (id, n)
    });
    let engine = get("--engine")
        .map(|e| BackendKind::parse(&e).expect("engine"))
        .unwrap_or(BackendKind::Ndarray);
    let _g = Scope::new().backend(Some(engine)).enter();
    let text = std::fs::read_to_string(&cases).expect("read cases");
    let cases: Vec<Case> = serde_json::from_str(&text).expect("parse cases");
    if let Some((id, n)) = looped {
        let c = cases
            .iter()
            .find(|c| c.id == id)
            .expect("no case with that id");
        let f = build(c).expect("build case");
        let t = Instant::now();
        for _ in 0..n {
            black_box(f().expect("op"));
        }
        eprintln!(
            "{id}: {:.3} us per call",
            t.elapsed().as_secs_f64() / n as f64 * 1e6
        );
        return;
    }
    let mut w = std::fs::File::create(&out).expect("open out");
    let start = Instant::now();
    for c in &cases {
        let r = build(c).and_then(|f| time(&f));
        let line = match r {
            Ok(s) => serde_json::json!({"id": c.id, "seconds": s}),
            Err(e) => serde_json::json!({"id": c.id, "error": e.to_string()}),
        };
        writeln!(w, "{line}").expect("write");
        w.flush().ok();
        if start.elapsed() > Duration::from_secs(3600) {
            eprintln!("ops bench: over an hour; stopping");
            break;
        }
    }
}
