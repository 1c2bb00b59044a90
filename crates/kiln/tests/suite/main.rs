//! kiln's integration suites that share no process-wide state, linked as one test binary.
//!
//! Each integration-test binary links all of kiln and both engines (about 90 MB unoptimised),
//! and a clean `cargo test` once filled CI's disk; one binary instead of eight saves most of
//! that and most of the linking. Suites that reset the warn-once record, install a logger or
//! set the global configuration keep a process of their own: `precision_policy`,
//! `seed_scenario` and `config_env` (tests/*.rs).
//!
//! Run one suite with `cargo test -p kiln --test suite engines::` (a name prefix filters).

#[path = "../common/mod.rs"]
mod common;

mod callbacks;
mod conv;
mod device_matrix;
mod dtype_tables;
mod engines;
mod functional;
mod fused;
mod fuzz_readers;
mod gradients;
mod model_files;
mod no_panics;
mod npy_io;
mod ops_semantics;
mod spec;
mod training;
mod value_oracles;
mod value_oracles_extra;
