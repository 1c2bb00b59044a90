//! Every op of the registry on every dtype Keras accepts, against NumPy's values
//! (tests/data/value_oracles.json, written by scripts/gen_value_oracles.py), in x64-off mode
//! (inputs narrowed as Keras does) and, for 64-bit inputs, in x64 mode, on every engine and
//! device of this build (`common::targets`: cuda:0 too with `--features cuda` and a GPU).

use crate::common::*;
use kiln::ops::registry::{call_binary, call_unary};
use kiln::ops::Operand;
use kiln::DType;

/// Tolerance in units of the result dtype's epsilon. Reductions and compositions
/// accumulate more rounding than single kernels; complex transcendental functions differ
/// between libm implementations by a few ulps.
fn ulps(op: &str, dtype: DType) -> f64 {
    let base = match op {
        "sum" | "prod" | "mean" | "std" | "var" | "cumsum" | "cumprod" | "trace" | "logsumexp"
        | "softmax" | "log_softmax" | "matmul" | "dot" => 64.0,
        "power" | "tan" | "gelu" | "softplus" | "silu" | "sigmoid" | "elu" => 8.0,
        _ => 4.0,
    };
    if dtype.is_complex() {
        base * 4.0
    } else {
        base
    }
}

#[test]
fn every_op_matches_numpy() {
    let cases = load_cases("value_oracles.json");
    assert!(cases.len() > 1500, "{} cases", cases.len());
    let mut failures = vec![];
    for (engine, device) in targets() {
        let mut ran = 0;
        for c in &cases {
            let op = c["op"].as_str().unwrap();
            let x64 = c["x64"].as_bool().unwrap();
            // Dtypes an engine lacks never reach it (the resolver substitutes or refuses them).
            let dtypes = case_dtypes(c);
            if !dtypes
                .iter()
                .all(|d| engine_supports(engine, device, *d, x64))
            {
                continue;
            }
            ran += 1;
            let _g = target_scope(engine, device, x64);
            let ins = case_inputs(c, device);
            let want = decode(&c["result"]);
            let got = if ins.len() == 1 {
                call_unary(op, &ins[0])
            } else {
                call_binary(op, Operand::Tensor(&ins[0]), Operand::Tensor(&ins[1]))
            };
            let tag = format!(
                "{engine}@{device}: {op}({}) x64={x64}",
                ins.iter()
                    .map(|t| t.dtype().name())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let got = match got {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{tag}: error {e}"));
                    continue;
                }
            };
            // NumPy's SIMD complex loops fuse multiply-adds (and use their own hypot), so
            // complex "exact" ops may differ from the unfused result by an ulp or two.
            let complex_in = ins.iter().any(|t| t.dtype().is_complex());
            let tol = if c["approx"].as_bool().unwrap() {
                ulps(op, want.dtype()) * want.dtype().eps()
            } else if complex_in {
                2.0 * want.dtype().eps()
            } else {
                0.0
            };
            // Engines sum in their own order (kiln's kernels in blocks of SIMD lanes combined
            // pairwise, a GPU in a parallel tree), so an ill-conditioned sum (the int64
            // extremes cancelling) may differ from NumPy's eight-accumulator order by the
            // classical summation bound, n * eps * sum(|x|), rather than by ulps of the result
            // (kiln gives the exact 4.75 for the int64 mean case where NumPy gives 9.125).
            // (`mismatch` allows tol * (|value| + 1); dividing by the largest |value| + 1
            // keeps the allowed error within the bound for every element.)
            let order_bound = matches!(op, "sum" | "mean" | "std" | "var" | "trace" | "logsumexp")
                && want.dtype().is_float();
            let tol = if order_bound {
                let x = ins[0].to_host().unwrap().to_f64_vec();
                let abs_sum: f64 = x.iter().map(|v| v.abs()).sum();
                let largest = want.to_f64_vec().iter().fold(0.0f64, |m, v| m.max(v.abs()));
                tol.max(x.len() as f64 * want.dtype().eps() * abs_sum / (largest + 1.0))
            } else {
                tol
            };
            if let Some(m) = check(&got, &want, tol, engine, device) {
                failures.push(format!("{tag}: {m}"));
            }
        }
        ran_enough(engine, device, ran, 800);
    }
    assert_none_differ(&failures, cases.len());
}
