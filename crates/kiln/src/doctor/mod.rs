//! The device matrix as a product feature: every op on every dtype on every engine x device
//! available here (real and simulated), in each x64 mode. Each cell ends in
//!
//! * `.` **pass**: the input kept its dtype and the result equals the reference (the ndarray
//!   engine on the cpu, from the same inputs: exactly on that engine, within 64 ulps of the
//!   result dtype on another engine);
//! * `a` **adapted**: the resolver substituted a dtype the device has (and said so), and
//!   the result matches the reference computed from the adapted inputs;
//! * `r` **refused**: a documented error (Keras refuses the dtype, or the device lacks it
//!   and has no stand-in), with its message;
//! * `F` **failed**: a panic, an undocumented error, a result in a dtype the device lacks,
//!   or a value that differs from the reference. Zero failed cells is the bar.
//!
//! `kiln doctor --matrix` prints it; the `device_matrix` test asserts it. `kiln doctor FILE`
//! asks the same of a file's arrays ([`file`]).

pub mod file;

use crate::array::ArrayData;
use crate::backend::BackendKind;
use crate::device::{Capabilities, Device, SimProfile};
use crate::dtype::DType;
use crate::error::KilnError;
use crate::ops::registry::{call_binary, call_unary, BINARY, UNARY};
use crate::ops::Operand;
use crate::precision::{Scope, WarnMode};
use crate::tensor::{convert_to_tensor, Tensor};
use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

/// How a cell ended.
#[derive(Copy, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum CellKind {
    /// Correct result in the requested dtype.
    Pass,
    /// Correct result after a documented dtype adaptation.
    Adapted,
    /// A documented refusal.
    Refused,
    /// Anything else.
    Failed,
}

impl CellKind {
    /// The one-character symbol of the printed matrix.
    pub fn symbol(self) -> char {
        match self {
            CellKind::Pass => '.',
            CellKind::Adapted => 'a',
            CellKind::Refused => 'r',
            CellKind::Failed => 'F',
        }
    }
}

/// One cell: an op on a dtype on an engine and device in one x64 mode.
#[derive(Clone, Debug)]
pub struct Cell {
    /// The op's name (see [`crate::ops::registry`]).
    pub op: &'static str,
    /// The input dtype.
    pub dtype: DType,
    /// The device.
    pub device: Device,
    /// The engine.
    pub engine: BackendKind,
    /// x64 mode.
    pub x64: bool,
    /// How it ended.
    pub kind: CellKind,
    /// The decision, the error, or what failed.
    pub detail: String,
}

/// The devices this build and machine can run: the cpu, every simulated profile, and
/// `cuda:0` / `metal:0` when kiln was built with that feature and the device opens.
pub fn devices_here() -> Vec<Device> {
    let mut v = vec![Device::Cpu];
    v.extend(SimProfile::ALL.iter().map(|p| Device::Sim(*p)));
    for gpu in [Device::Cuda(0), Device::Metal(0)] {
        if BackendKind::available()
            .into_iter()
            .any(|e| available(e, gpu).is_ok())
        {
            v.push(gpu);
        }
    }
    v
}

fn input(d: DType, salt: u64, transpose: bool) -> ArrayData {
    // Small values that fit every dtype (and keep integer powers and products in range).
    let v: Vec<f64> = (0..6u64)
        .map(|i| ((i * 7 + salt * 3) % 5) as f64 - 1.0 + 0.25 * (i % 2) as f64)
        .collect();
    let shape: &[usize] = if transpose { &[3, 2] } else { &[2, 3] };
    let a = ArrayData::from_shape_vec(shape, v).expect("6 values");
    crate::precision::report::convert_with_report(&a, d).0
}

fn documented(e: &KilnError) -> bool {
    matches!(
        e,
        KilnError::UnsupportedDType { .. }
            | KilnError::DTypeNotAllowed { .. }
            | KilnError::UnsupportedOp { .. }
    )
}

fn run(op: &str, xs: &[Tensor]) -> crate::Result<Tensor> {
    if xs.len() == 1 {
        call_unary(op, &xs[0])
    } else {
        call_binary(op, Operand::Tensor(&xs[0]), Operand::Tensor(&xs[1]))
    }
}

fn same(a: &Tensor, b: &Tensor, tol: f64) -> crate::Result<bool> {
    let (x, y) = (a.to_host()?.to_scalars(), b.to_host()?.to_scalars());
    let eq = |p: f64, q: f64| {
        p == q || (p.is_nan() && q.is_nan()) || (p - q).abs() <= tol * (q.abs() + 1.0)
    };
    Ok(x.len() == y.len()
        && x.iter().zip(&y).all(|(p, q)| {
            let (p, q) = (p.as_c128(), q.as_c128());
            eq(p.re, q.re) && eq(p.im, q.im)
        }))
}

fn cell(
    op: &'static str,
    arity: usize,
    d: DType,
    dev: Device,
    engine: BackendKind,
) -> (CellKind, String) {
    let r = catch_unwind(AssertUnwindSafe(|| -> crate::Result<(CellKind, String)> {
        let hosts: Vec<ArrayData> = (0..arity as u64)
            .map(|s| input(d, s, s == 1 && (op == "matmul" || op == "dot")))
            .collect();
        let xs = match hosts
            .iter()
            .map(|h| convert_to_tensor(h, None, &dev))
            .collect::<crate::Result<Vec<_>>>()
        {
            Ok(x) => x,
            Err(e) if documented(&e) => return Ok((CellKind::Refused, e.to_string())),
            Err(e) => return Ok((CellKind::Failed, format!("conversion: {e}"))),
        };
        let adapted = xs[0].dtype() != d;
        let y = match run(op, &xs) {
            Err(e) if documented(&e) => return Ok((CellKind::Refused, e.to_string())),
            Err(e) => return Ok((CellKind::Failed, format!("undocumented error: {e}"))),
            Ok(y) => y,
        };
        let caps = Capabilities::of_engine(y.device(), y.backend_kind());
        if !caps.supports(y.dtype()) {
            return Ok((
                CellKind::Failed,
                format!(
                    "result {} is not supported by {engine} on {}",
                    y.dtype(),
                    y.device()
                ),
            ));
        }
        // The reference: the ndarray engine on the cpu, from the same (possibly adapted) inputs.
        let reference = {
            let _g = Scope::new().backend(Some(BackendKind::Ndarray)).enter();
            let cpu = xs
                .iter()
                .map(|t| convert_to_tensor(&t.to_host()?, Some(t.dtype()), &Device::Cpu))
                .collect::<crate::Result<Vec<_>>>()?;
            run(op, &cpu)
        };
        let want = match reference {
            Ok(w) => w,
            Err(e) => {
                return Ok((
                    CellKind::Failed,
                    format!("the reference failed where {engine} on {dev} passed: {e}"),
                ))
            }
        };
        // Where the device adapted a dtype the cpu keeps (x64 on), the reference computes
        // in the wider dtype: compare within the adapted dtype's rounding.
        let widened = want.dtype() != y.dtype();
        let tol = if widened || engine != BackendKind::Ndarray {
            64.0 * y.dtype().eps()
        } else {
            0.0
        };
        if same(&y, &want, tol)? {
            Ok((
                if adapted || widened {
                    CellKind::Adapted
                } else {
                    CellKind::Pass
                },
                String::new(),
            ))
        } else {
            Ok((
                CellKind::Failed,
                format!(
                    "{engine} on {dev} gave {:?}, reference {:?}",
                    y.to_f64_vec(),
                    want.to_f64_vec()
                ),
            ))
        }
    }));
    match r {
        Ok(Ok(c)) => c,
        Ok(Err(e)) => (CellKind::Failed, format!("harness error: {e}")),
        Err(p) => (
            CellKind::Failed,
            format!("panic: {}", crate::backend::panic_message(&*p)),
        ),
    }
}

/// Runs the matrix for the given engines, devices and x64 modes, skipping the engine x
/// device pairs this build cannot run (see [`available`]).
pub fn matrix(engines: &[BackendKind], devices: &[Device], x64_modes: &[bool]) -> Vec<Cell> {
    let ops: Vec<(&'static str, usize)> = UNARY
        .iter()
        .map(|o| (*o, 1))
        .chain(BINARY.iter().map(|o| (*o, 2)))
        .collect();
    let mut cells = vec![];
    for &x64 in x64_modes {
        for &engine in engines {
            for &device in devices {
                // Only engine x device pairs this build (and machine) can run.
                if crate::tensor::engine(engine, device).is_err() {
                    continue;
                }
                let _g = Scope::new()
                    .x64(x64)
                    .backend(Some(engine))
                    .warnings(WarnMode::Off)
                    .enter();
                for &(op, arity) in &ops {
                    for dtype in DType::ALL {
                        let (kind, detail) = cell(op, arity, dtype, device, engine);
                        cells.push(Cell {
                            op,
                            dtype,
                            device,
                            engine,
                            x64,
                            kind,
                            detail,
                        });
                    }
                }
            }
        }
    }
    cells
}

/// Whether `engine` can run on `device` in this build and on this machine, and if not, why.
pub fn available(engine: BackendKind, device: Device) -> Result<(), String> {
    crate::tensor::engine(engine, device)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

/// Counts per cell kind.
pub fn counts(cells: &[Cell]) -> BTreeMap<CellKind, usize> {
    let mut m = BTreeMap::new();
    for c in cells {
        *m.entry(c.kind).or_insert(0) += 1;
    }
    m
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

/// The matrix as text: one table per (engine, device, x64 mode), then the counts and every
/// failed cell.
pub fn render(cells: &[Cell]) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let mut i = 0;
    while i < cells.len() {
        let (e, dev, x64) = (cells[i].engine, cells[i].device, cells[i].x64);
        let _ = writeln!(
            out,
            "\n{e} on {dev}, x64 {}: . pass, a adapted, r refused, F failed",
            if x64 { "on" } else { "off" }
        );
        let _ = write!(out, "{:<14}", "op");
        for d in DType::ALL {
            let _ = write!(out, "{:>4}", short(d));
        }
        out.push('\n');
        while i < cells.len() && (cells[i].engine, cells[i].device, cells[i].x64) == (e, dev, x64) {
            let op = cells[i].op;
            let _ = write!(out, "{op:<14}");
            while i < cells.len()
                && cells[i].op == op
                && (cells[i].engine, cells[i].device, cells[i].x64) == (e, dev, x64)
            {
                let _ = write!(out, "{:>4}", cells[i].kind.symbol());
                i += 1;
            }
            out.push('\n');
        }
    }
    let c = counts(cells);
    let _ = writeln!(
        out,
        "\ncells: {} pass, {} adapted, {} refused, {} failed",
        c.get(&CellKind::Pass).unwrap_or(&0),
        c.get(&CellKind::Adapted).unwrap_or(&0),
        c.get(&CellKind::Refused).unwrap_or(&0),
        c.get(&CellKind::Failed).unwrap_or(&0)
    );
    for f in cells.iter().filter(|c| c.kind == CellKind::Failed) {
        let _ = writeln!(
            out,
            "FAILED {} {} {} on {} x64={}: {}",
            f.op, f.dtype, f.engine, f.device, f.x64, f.detail
        );
    }
    out
}
