//! ndarray engine vs candle engine on the CPU, side by side in one run: 1024^3 matmul in
//! float32 and float64, elementwise add on 10M float32, and a three-layer MLP forward pass.
//! Built with `--features cuda` on a machine with a GPU, the same four run on candle's
//! `cuda:0` too (each timed op is followed by a device synchronize, so the figure is the
//! kernel's time, not the time to queue it; inputs are on the device beforehand).

use criterion::{criterion_group, criterion_main, Criterion};
use kiln::backend::BackendKind;
use kiln::precision::Scope;
use kiln::{ops, DType, Device, Tensor};
use std::hint::black_box;
use std::time::Duration;

fn t(target: (BackendKind, Device), shape: &[usize], dtype: DType, seed: u64) -> Tensor {
    let (engine, device) = target;
    let _g = Scope::new().backend(Some(engine)).x64(true).enter();
    // Generated on the cpu (the same numbers everywhere), then moved to the device.
    let h = ops::random_uniform(shape, -1.0, 1.0, Some(dtype), seed, Some(Device::Cpu)).unwrap();
    h.to_device(device).unwrap()
}

/// Each engine on the cpu, and candle on `cuda:0` / `metal:0` when built with that feature
/// and the device opens.
fn targets() -> Vec<(BackendKind, Device)> {
    let mut v: Vec<_> = BackendKind::available()
        .into_iter()
        .map(|e| (e, Device::Cpu))
        .collect();
    v.extend(
        kiln::doctor::devices_here()
            .into_iter()
            .filter(|d| !d.runs_on_host())
            .map(|d| (BackendKind::Candle, d)),
    );
    v
}

/// Waits until the device has finished computing `r`.
fn done(r: Tensor) -> Tensor {
    r.synchronize().unwrap();
    r
}

fn mlp(x: &Tensor, layers: &[(Tensor, Tensor)]) -> Tensor {
    let mut h = x.clone();
    for (i, (w, b)) in layers.iter().enumerate() {
        h = ops::add(&ops::matmul(&h, w).unwrap(), b).unwrap();
        if i + 1 < layers.len() {
            h = ops::relu(&h).unwrap();
        }
    }
    h
}

fn engines(c: &mut Criterion) {
    let mut g = c.benchmark_group("engines");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    for target in targets() {
        let (engine, device) = target;
        let e = if device == Device::Cpu {
            engine.name().to_string()
        } else {
            format!("{}@{device}", engine.name())
        };
        for dtype in [DType::Float32, DType::Float64] {
            let (a, b) = (
                t(target, &[1024, 1024], dtype, 1),
                t(target, &[1024, 1024], dtype, 2),
            );
            g.bench_function(format!("matmul_1024_{dtype}/{e}"), |bn| {
                bn.iter(|| black_box(done(ops::matmul(&a, &b).unwrap())))
            });
        }
        let (x, y) = (
            t(target, &[10_000_000], DType::Float32, 3),
            t(target, &[10_000_000], DType::Float32, 4),
        );
        g.bench_function(format!("add_10M_float32/{e}"), |bn| {
            bn.iter(|| black_box(done(ops::add(&x, &y).unwrap())))
        });
        let input = t(target, &[256, 784], DType::Float32, 5);
        let dims = [(784, 512), (512, 512), (512, 10)];
        let layers: Vec<(Tensor, Tensor)> = dims
            .iter()
            .enumerate()
            .map(|(i, (n, m))| {
                (
                    t(target, &[*n, *m], DType::Float32, 10 + i as u64),
                    t(target, &[*m], DType::Float32, 20 + i as u64),
                )
            })
            .collect();
        g.bench_function(format!("mlp_forward_256x784_float32/{e}"), |bn| {
            bn.iter(|| black_box(done(mlp(&input, &layers))))
        });
    }
    g.finish();
}

criterion_group!(benches, engines);
criterion_main!(benches);
