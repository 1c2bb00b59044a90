//! The device matrix (see `kiln::doctor`): every op x dtype x engine x {cpu, sim:mps,
//! sim:mps-macos13, sim:tpu, sim:webgpu, and cuda:0 when built with `--features cuda` on a
//! machine with a GPU} x {x64 off, on}. Zero failed cells is the bar; run
//! with `--nocapture` (or `kiln doctor --matrix`) to see it.

use crate::common;
use kiln::backend::BackendKind;
use kiln::doctor::{counts, devices_here, matrix, render, CellKind};

#[test]
fn every_op_every_dtype_every_engine_and_device() {
    // Also sets up the emulated cuda:0 under KILN_TEST_EMULATE_GPU=1 and checks
    // KILN_TEST_REQUIRE_GPU=1; `devices_here` then lists the GPU.
    common::targets();
    let cells = matrix(&BackendKind::available(), &devices_here(), &[false, true]);
    println!("{}", render(&cells));
    let c = counts(&cells);
    assert_eq!(
        c.get(&CellKind::Failed),
        None,
        "failed cells:\n{}",
        render(&cells)
            .lines()
            .filter(|l| l.starts_with("FAILED"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    for engine in BackendKind::available() {
        let pass = cells
            .iter()
            .filter(|x| x.engine == engine && x.kind == CellKind::Pass)
            .count();
        assert!(pass > 2000, "{engine}: only {pass} passing cells");
    }
}
