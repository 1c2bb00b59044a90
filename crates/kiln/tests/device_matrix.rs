//! The device matrix: every op x every dtype x {cpu, sim:mps, sim:tpu, sim:webgpu}, in both
//! x64 modes, under the default `downcast` policy. Each cell must end in
//!
//! * `.` pass: the input kept its dtype and the result equals the cpu engine's;
//! * `a` adapted: the resolver substituted a supported dtype (and said so), and the
//!   result equals the cpu engine's on the adapted input;
//! * `r` refused: a documented error (Keras refuses the dtype, or the device lacks it and
//!   has no stand-in);
//!
//! never `F` (a panic, an undocumented error, a result in a dtype the device lacks, or a
//! value that differs from the cpu's). Run with `--nocapture` to see the matrix.

use kiln::ops::registry::{call_binary, call_unary, BINARY, UNARY};
use kiln::ops::Operand;
use kiln::precision::{warnings, Scope, WarnMode};
use kiln::{convert_to_tensor, ArrayData, DType, Device, KilnError, Tensor};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn input(d: DType, salt: u64) -> ArrayData {
    // Small values that fit every dtype (and keep int powers/products in range).
    let v: Vec<f64> = (0..6u64)
        .map(|i| ((i * 7 + salt * 3) % 5) as f64 - 1.0 + 0.25 * (i % 2) as f64)
        .collect();
    let a = ArrayData::from_shape_vec(&[2, 3], v).unwrap();
    kiln::precision::report::convert_with_report(&a, d).0
}

fn documented(e: &KilnError) -> bool {
    matches!(
        e,
        KilnError::UnsupportedDType { .. } | KilnError::DTypeNotAllowed { .. }
    )
}

fn run(op: &str, xs: &[Tensor]) -> kiln::Result<Tensor> {
    if xs.len() == 1 {
        call_unary(op, &xs[0])
    } else {
        call_binary(op, Operand::Tensor(&xs[0]), Operand::Tensor(&xs[1]))
    }
}

/// Equal values; `tol` (relative) allows for a result computed in a narrower adapted dtype.
fn same(a: &Tensor, b: &Tensor, tol: f64) -> bool {
    let (x, y) = (
        a.to_host().unwrap().to_scalars(),
        b.to_host().unwrap().to_scalars(),
    );
    let eq = |p: f64, q: f64| {
        p == q || (p.is_nan() && q.is_nan()) || (p - q).abs() <= tol * (q.abs() + 1.0)
    };
    x.len() == y.len()
        && x.iter().zip(&y).all(|(p, q)| {
            let (p, q) = (p.as_c128(), q.as_c128());
            eq(p.re, q.re) && eq(p.im, q.im)
        })
}

fn cell(op: &str, arity: usize, d: DType, dev: Device) -> (char, String) {
    let r = catch_unwind(AssertUnwindSafe(|| -> (char, String) {
        let mut hosts: Vec<ArrayData> = (0..arity as u64).map(|s| input(d, s)).collect();
        if op == "matmul" || op == "dot" {
            let t = convert_to_tensor(&hosts[1], None, &Device::Cpu).unwrap();
            hosts[1] = kiln::ops::transpose(&t, None).unwrap().to_host().unwrap();
            hosts[1] = kiln::precision::report::convert_with_report(&hosts[1], d).0;
        }
        let xs = match hosts
            .iter()
            .map(|h| convert_to_tensor(h, None, &dev))
            .collect::<kiln::Result<Vec<_>>>()
        {
            Ok(x) => x,
            Err(e) if documented(&e) => return ('r', e.to_string()),
            Err(e) => return ('F', format!("conversion: {e}")),
        };
        let adapted = xs[0].dtype() != d;
        let caps = dev.capabilities();
        match run(op, &xs) {
            Err(e) if documented(&e) => ('r', e.to_string()),
            Err(e) => ('F', format!("undocumented error: {e}")),
            Ok(y) => {
                if !caps.supports(y.dtype()) {
                    return (
                        'F',
                        format!("result {} is not supported on {dev}", y.dtype()),
                    );
                }
                // The same op on the cpu engine, from the same (possibly adapted) inputs.
                let cpu: Vec<Tensor> = xs
                    .iter()
                    .map(|t| t.to_device(Device::Cpu).unwrap())
                    .collect();
                // Where the device adapted a dtype the cpu keeps (x64 on), the cpu computes
                // in the wider dtype: compare within the adapted dtype's rounding.
                let widened = |want: &Tensor| want.dtype() != y.dtype();
                match run(op, &cpu) {
                    Ok(want) if !widened(&want) && same(&y, &want, 0.0) => {
                        (if adapted { 'a' } else { '.' }, String::new())
                    }
                    Ok(want) if widened(&want) && same(&y, &want, 64.0 * y.dtype().eps()) => {
                        ('a', String::new())
                    }
                    Ok(want) => (
                        'F',
                        format!(
                            "{dev} gave {:?}, cpu {:?}",
                            y.to_f64_vec(),
                            want.to_f64_vec()
                        ),
                    ),
                    Err(e) => ('F', format!("cpu failed where {dev} passed: {e}")),
                }
            }
        }
    }));
    r.unwrap_or_else(|p| {
        (
            'F',
            format!(
                "panic: {:?}",
                p.downcast_ref::<String>()
                    .cloned()
                    .or(p.downcast_ref::<&str>().map(|s| s.to_string()))
            ),
        )
    })
}

#[test]
fn every_op_every_dtype_every_device() {
    let devices = ["cpu", "sim:mps", "sim:tpu", "sim:webgpu"].map(|d| Device::parse(d).unwrap());
    let ops: Vec<(&str, usize)> = UNARY
        .iter()
        .map(|o| (*o, 1))
        .chain(BINARY.iter().map(|o| (*o, 2)))
        .collect();
    let mut failures = vec![];
    let mut totals = std::collections::BTreeMap::new();
    for x64 in [false, true] {
        for dev in devices {
            let _g = Scope::new().x64(x64).warnings(WarnMode::Off).enter();
            println!(
                "\n{dev}, x64 {}: . pass, a adapted, r refused, F failed",
                if x64 { "on" } else { "off" }
            );
            print!("{:<14}", "op");
            for d in DType::ALL {
                print!("{:>4}", short(d));
            }
            println!();
            for (op, arity) in &ops {
                print!("{op:<14}");
                for d in DType::ALL {
                    let (c, why) = cell(op, *arity, d, dev);
                    *totals.entry(c).or_insert(0usize) += 1;
                    if c == 'F' {
                        failures.push(format!("{op} {d} {dev} x64={x64}: {why}"));
                    }
                    print!("{c:>4}");
                }
                println!();
            }
        }
    }
    warnings::reset();
    println!("\ncells: {totals:?}");
    assert!(totals.get(&'.').copied().unwrap_or(0) > 3000, "{totals:?}");
    assert!(
        failures.is_empty(),
        "{} failed cells:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn short(d: DType) -> &'static str {
    match d {
        DType::Bool => "b1",
        DType::UInt8 => "u1",
        DType::UInt16 => "u2",
        DType::UInt32 => "u4",
        DType::UInt64 => "u8",
        DType::Int8 => "i1",
        DType::Int16 => "i2",
        DType::Int32 => "i4",
        DType::Int64 => "i8",
        DType::BFloat16 => "bf",
        DType::Float16 => "f2",
        DType::Float32 => "f4",
        DType::Float64 => "f8",
        DType::Complex64 => "c8",
        DType::Complex128 => "c16",
    }
}
