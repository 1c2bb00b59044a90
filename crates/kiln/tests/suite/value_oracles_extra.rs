//! The ops that take parameters (where, clip, reshape, joins, gathers, padding, slicing,
//! one_hot, tensordot, einsum) and `cast` between every pair of dtypes, on every dtype,
//! against NumPy (tests/data/value_oracles_extra.json, scripts/gen_value_oracles.py), with
//! x64 on so that every input keeps its dtype, on every engine and device of this build
//! (`common::targets`).

use crate::common::*;
use kiln::ops::{self, SliceArg, Split};
use kiln::{convert_to_tensor, DType, Device, Tensor};

fn run(op: &str, x: &[Tensor], device: Device) -> kiln::Result<Tensor> {
    let a = &x[0];
    Ok(match op {
        "where_gt0" => ops::r#where(&ops::greater(a, 0)?, a, &x[1])?,
        "reshape_3_8" => ops::reshape(a, &[3, 8])?,
        "expand_dims_1" => ops::expand_dims(a, 1)?,
        "broadcast_row_to_3x6" => {
            ops::broadcast_to(&ops::strided_slice(a, &[SliceArg::range(0, 1)])?, &[3, 6])?
        }
        "concatenate_ax1" => ops::concatenate(&[a, &x[1]], 1)?,
        "stack_ax0" => ops::stack(&[a, &x[1]], 0)?,
        "split2_ax0_second" => ops::split(a, Split::Sections(2), 0)?.remove(1),
        "tile_2_1" => ops::tile(a, &[2, 1])?,
        "repeat_2_ax1" => ops::repeat(a, 2, Some(1))?,
        "pad_1_0_0_2" => ops::pad(a, &[(1, 0), (0, 2)], 0)?,
        "take_3_0_m1_ax1" => {
            let idx = convert_to_tensor(&kiln::ArrayData::from(vec![3i32, 0, -1]), None, &device)?;
            ops::take(a, &idx, Some(1))?
        }
        "take_along_argsort_ax1" => ops::take_along_axis(a, &ops::argsort(a, 1)?, 1)?,
        "slice_rev_1_5_2" => ops::strided_slice(
            a,
            &[
                SliceArg::new(None, None, -1),
                SliceArg::new(Some(1), Some(5), 2),
            ],
        )?,
        "clip_1_5" => ops::clip(a, 1, 5)?,
        "one_hot_4" => ops::one_hot(a, 4, None)?,
        "tensordot_bT_1" => ops::tensordot(a, &ops::transpose(&x[1], None)?, ops::Axes::N(1))?,
        "einsum_ij_kj_ik" => ops::einsum("ij,kj->ik", &[a, &x[1]])?,
        cast if cast.starts_with("cast_") => ops::cast(a, DType::parse(&cast[5..])?)?,
        other => panic!("unknown extra op {other}"),
    })
}

#[test]
fn parameterised_ops_and_every_cast_match_numpy() {
    let cases = load_cases("value_oracles_extra.json");
    assert!(cases.len() > 400, "{}", cases.len());
    let mut failures = vec![];
    for (engine, device) in targets() {
        let _g = target_scope(engine, device, true);
        let mut ran = 0;
        for c in &cases {
            let op = c["op"].as_str().unwrap();
            let mut dtypes = case_dtypes(c);
            if let Some(t) = op.strip_prefix("cast_") {
                dtypes.push(DType::parse(t).unwrap());
            }
            if !dtypes
                .iter()
                .all(|d| engine_supports(engine, device, *d, true))
            {
                continue;
            }
            ran += 1;
            let ins = case_inputs(c, device);
            let want = decode(&c["result"]);
            let tag = format!("{engine}@{device}: {op}({})", ins[0].dtype());
            let got = match run(op, &ins, device) {
                Ok(t) => t,
                Err(e) => {
                    failures.push(format!("{tag}: {e}"));
                    continue;
                }
            };
            let tol = if c["approx"].as_bool().unwrap() {
                64.0 * want.dtype().eps().max(f32::EPSILON as f64)
            } else {
                0.0
            };
            if let Some(m) = check(&got, &want, tol, engine, device) {
                failures.push(format!("{tag}: {m}"));
            }
        }
        ran_enough(engine, device, ran, 150);
    }
    assert_none_differ(&failures, cases.len());
}
