//! Criterion benchmarks for the core issue's targets; scripts/bench_compare.py runs these
//! and the same work in NumPy in one run and prints the ratios.
//!
//! * f64 -> f32 conversion of 32M elements with the loss report;
//! * add / multiply / exp on 10M float32, with and without broadcasting;
//! * 1024^3 float32 matmul.

use criterion::{criterion_group, criterion_main, Criterion};
use kiln::precision::report::{convert_f64_to_f32_into, convert_with_report};
use kiln::{convert_to_tensor, ops, ArrayData, DType, Device};
use std::hint::black_box;
use std::time::Duration;

fn data_f64(n: usize) -> ArrayData {
    // A cheap deterministic spread of magnitudes (not all exactly representable in f32).
    let v: Vec<f64> = (0..n)
        .map(|i| ((i as f64) * 0.618_033_988_749_895).fract() * 200.0 - 100.0)
        .collect();
    ArrayData::from(v)
}

fn f32_tensor(shape: &[usize], seed: u64) -> kiln::Tensor {
    ops::random_uniform(
        shape,
        -2.0,
        2.0,
        Some(DType::Float32),
        seed,
        Some(Device::Cpu),
    )
    .unwrap()
}

fn conversion(c: &mut Criterion) {
    let x = data_f64(32 << 20);
    let mut g = c.benchmark_group("convert");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("f64_to_f32_report_32M", |b| {
        b.iter(|| black_box(convert_with_report(black_box(&x), DType::Float32)))
    });
    // The same into a ready buffer: the like-for-like comparison with np.copyto.
    let src = x.to_vec::<f64>().unwrap();
    let mut out = vec![0f32; src.len()];
    g.bench_function("f64_to_f32_report_32M_into", |b| {
        b.iter(|| black_box(convert_f64_to_f32_into(black_box(&src), &mut out).unwrap()))
    });
    g.finish();
}

fn elementwise(c: &mut Criterion) {
    let n = 10_000_000;
    let a = f32_tensor(&[n], 1);
    let b = f32_tensor(&[n], 2);
    let a2 = f32_tensor(&[10_000, 1000], 3);
    let row = f32_tensor(&[1000], 4);
    let mut g = c.benchmark_group("elementwise_10M_f32");
    g.sample_size(20).measurement_time(Duration::from_secs(6));
    g.bench_function("add", |bn| bn.iter(|| black_box(ops::add(&a, &b).unwrap())));
    g.bench_function("multiply", |bn| {
        bn.iter(|| black_box(ops::multiply(&a, &b).unwrap()))
    });
    g.bench_function("exp", |bn| bn.iter(|| black_box(ops::exp(&a).unwrap())));
    g.bench_function("add_broadcast_row", |bn| {
        bn.iter(|| black_box(ops::add(&a2, &row).unwrap()))
    });
    g.bench_function("multiply_broadcast_row", |bn| {
        bn.iter(|| black_box(ops::multiply(&a2, &row).unwrap()))
    });
    g.finish();
}

fn matmul(c: &mut Criterion) {
    let a = f32_tensor(&[1024, 1024], 5);
    let b = f32_tensor(&[1024, 1024], 6);
    let mut g = c.benchmark_group("matmul");
    g.sample_size(10).measurement_time(Duration::from_secs(8));
    g.bench_function("f32_1024", |bn| {
        bn.iter(|| black_box(ops::matmul(&a, &b).unwrap()))
    });
    g.finish();
    let _ = convert_to_tensor;
}

criterion_group!(benches, conversion, elementwise, matmul);
criterion_main!(benches);
