//! The fuzz targets of `kiln::io::fuzzing` (the same `fn(&[u8])` that
//! `crates/kiln/fuzz/` hands to libFuzzer) on a seed corpus of real files and on mutations of
//! it: byte overwrites, insertions, deletions and truncation. Any result is fine; a panic
//! fails the test (an abort or a hang would stop it). Inputs that once failed are kept in
//! `tests/data/fuzz/<target>/` and replayed first.

use kiln::io::fuzzing::TARGETS;
use proptest::prelude::*;
use std::path::{Path, PathBuf};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

fn files(dir: &Path, ext: &str) -> Vec<Vec<u8>> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.retain(|p| p.to_string_lossy().ends_with(ext));
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// A zip member's bytes (the `.keras` fixtures' HDF5 weights and configs).
fn member(zip: &[u8], name: &str) -> Vec<u8> {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut f = z.by_name(name).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out).unwrap();
    out
}

/// A small `.kiln` file, saved by kiln (a compiled, trained model with optimizer state).
fn kiln_seed() -> Vec<u8> {
    use kiln::nn::{Adam, Dense, FitArgs, Input, Loss, Sequential, Verbose};
    let mut m = Sequential::new().add(Input::new(&[3])).add(Dense::new(2));
    m.compile(Adam::new(1e-2), Loss::MeanSquaredError, &[])
        .unwrap();
    let x = kiln::ArrayData::from_shape_vec(&[4, 3], vec![0.5f32; 12]).unwrap();
    let y = kiln::ArrayData::from_shape_vec(&[4, 2], vec![1f32; 8]).unwrap();
    m.fit(&x, &y, FitArgs::default().verbose(Verbose::Silent))
        .unwrap();
    let p = std::env::temp_dir().join(format!("kiln-fuzz-seed-{}.kiln", std::process::id()));
    m.save(p.to_str().unwrap()).unwrap();
    let b = std::fs::read(&p).unwrap();
    let _ = std::fs::remove_file(p);
    b
}

/// The seed corpus of each target: real files (NumPy's, Keras's, kiln's), then the kept
/// regressions.
fn seeds(target: &str) -> Vec<Vec<u8>> {
    let npy = data().join("npy");
    let keras = data().join("keras");
    // Small Keras files keep each mutation's load cheap.
    let small: Vec<Vec<u8>> = ["uncompiled.keras", "mlp.keras"]
        .iter()
        .map(|f| std::fs::read(keras.join(f)).unwrap())
        .collect();
    let mut s = match target {
        "npy" => files(&npy, ".npy"),
        "npz" => files(&npy, ".npz"),
        "safetensors" => files(&npy, ".safetensors"),
        "h5" => small
            .iter()
            .map(|z| member(z, "model.weights.h5"))
            .collect(),
        "keras" => small,
        "kiln" => vec![kiln_seed()],
        "model_config" => [
            "convnet.keras",
            "multi.keras",
            "zoo_img.keras",
            "zoo_seq.keras",
        ]
        .iter()
        .map(|f| member(&std::fs::read(keras.join(f)).unwrap(), "config.json"))
        .collect(),
        other => panic!("no seeds for {other}"),
    };
    s.extend(files(&data().join("fuzz").join(target), ""));
    assert!(!s.is_empty(), "{target}: empty corpus");
    s
}

fn run(target: &str, input: &[u8]) {
    let f = TARGETS.iter().find(|(n, _)| *n == target).unwrap().1;
    let r = std::panic::catch_unwind(|| f(input));
    if std::env::var("KILN_FUZZ_SHOW").is_ok() {
        if let Ok(Err(e)) = &r {
            let m = e.to_string();
            eprintln!("ERR {target}: {}", &m[m.len().saturating_sub(90)..]);
        } else {
            eprintln!("OK {target}");
        }
    }
    assert!(
        r.is_ok(),
        "{target} panicked on a {}-byte input",
        input.len()
    );
}

#[test]
fn every_seed_reads_and_no_regression_panics() {
    for (t, f) in TARGETS {
        for (i, s) in seeds(t).iter().enumerate() {
            let r = std::panic::catch_unwind(|| f(s));
            assert!(r.is_ok(), "{t}: seed {i} panicked");
        }
    }
    // The real files themselves are read without error.
    for t in [
        "npy",
        "npz",
        "safetensors",
        "h5",
        "keras",
        "kiln",
        "model_config",
    ] {
        let f = TARGETS.iter().find(|(n, _)| *n == t).unwrap().1;
        let s = seeds(t);
        assert!(f(&s[0]).is_ok(), "{t}: {:?}", f(&s[0]).err());
    }
}

#[derive(Clone, Debug)]
enum Edit {
    Set(prop::sample::Index, u8),
    Insert(prop::sample::Index, Vec<u8>),
    Delete(prop::sample::Index, usize),
    Truncate(prop::sample::Index),
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), any::<u8>()).prop_map(|(i, b)| Edit::Set(i, b)),
        1 => (any::<prop::sample::Index>(), prop::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, b)| Edit::Insert(i, b)),
        1 => (any::<prop::sample::Index>(), 1usize..64).prop_map(|(i, n)| Edit::Delete(i, n)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Truncate),
    ]
}

fn mutate(mut b: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for e in edits {
        if b.is_empty() {
            break;
        }
        match e {
            Edit::Set(i, v) => {
                let i = i.index(b.len());
                b[i] = *v;
            }
            Edit::Insert(i, v) => {
                let i = i.index(b.len());
                b.splice(i..i, v.iter().copied());
            }
            Edit::Delete(i, n) => {
                let i = i.index(b.len());
                let j = (i + n).min(b.len());
                b.drain(i..j);
            }
            Edit::Truncate(i) => b.truncate(i.index(b.len())),
        }
    }
    b
}

fn mutations(target: &'static str, cases: u32) {
    let corpus = seeds(target);
    proptest!(ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() },
    |(pick in any::<prop::sample::Index>(), edits in prop::collection::vec(edit(), 1..8))| {
        let input = mutate(corpus[pick.index(corpus.len())].clone(), &edits);
        run(target, &input);
    });
}

#[test]
fn mutated_npy() {
    mutations("npy", 512);
}
#[test]
fn mutated_npz() {
    mutations("npz", 256);
}
#[test]
fn mutated_safetensors() {
    mutations("safetensors", 512);
}
#[test]
fn mutated_h5() {
    mutations("h5", 512);
}
#[test]
fn mutated_keras() {
    mutations("keras", 128);
}
#[test]
fn mutated_kiln() {
    mutations("kiln", 128);
}
#[test]
fn mutated_model_configs() {
    mutations("model_config", 256);
}

/// A zip of `members` (stored), as Keras writes `.keras` files.
fn zip_of(members: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut z = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let o =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (n, b) in members {
        z.start_file(n.as_str(), o).unwrap();
        std::io::Write::write_all(&mut z, b).unwrap();
    }
    z.finish().unwrap().into_inner()
}

fn members(zip: &[u8]) -> Vec<(String, Vec<u8>)> {
    let z = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let names: Vec<String> = z.file_names().map(String::from).collect();
    names.iter().map(|n| (n.clone(), member(zip, n))).collect()
}

/// Structure-aware: one member of a real `.keras` / `.kiln` file mutated and the archive
/// rebuilt with valid CRCs, so the mutations reach the config, HDF5 and safetensors readers
/// behind the zip layer (byte edits of the archive itself mostly stop at its CRC-32s).
fn member_mutations(target: &'static str, cases: u32) {
    let corpus: Vec<Vec<(String, Vec<u8>)>> =
        seeds(target).iter().take(2).map(|z| members(z)).collect();
    proptest!(ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() },
    |(pick in any::<prop::sample::Index>(), which in any::<prop::sample::Index>(),
      edits in prop::collection::vec(edit(), 1..6))| {
        let mut ms = corpus[pick.index(corpus.len())].clone();
        let k = which.index(ms.len());
        ms[k].1 = mutate(ms[k].1.clone(), &edits);
        run(target, &zip_of(&ms));
    });
}

#[test]
fn mutated_keras_members() {
    member_mutations("keras", 384);
}
#[test]
fn mutated_kiln_members() {
    member_mutations("kiln", 256);
}

/// Every value node of a JSON document, by index, for the value mutations.
fn nodes(v: &mut serde_json::Value) -> Vec<*mut serde_json::Value> {
    let mut out = vec![v as *mut serde_json::Value];
    match v {
        serde_json::Value::Object(m) => m.values_mut().for_each(|x| out.extend(nodes(x))),
        serde_json::Value::Array(a) => a.iter_mut().for_each(|x| out.extend(nodes(x))),
        _ => {}
    }
    out
}

fn hostile_value() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::json;
    prop_oneof![
        Just(json!(null)),
        Just(json!(0)),
        Just(json!(-1)),
        Just(json!(1u64 << 62)),
        Just(json!(1u64 << 39)),
        Just(json!(65536)),
        Just(json!(1e308)),
        Just(json!(-0.5)),
        Just(json!("")),
        Just(json!("Lambda")),
        Just(json!("same")),
        Just(json!("channels_first")),
        Just(json!([])),
        Just(json!({})),
        Just(json!([null, 1u64 << 40])),
        Just(json!([1, 2, 3, 4, 5])),
        Just(json!(true)),
        any::<i32>().prop_map(|n| json!(n)),
    ]
}

/// Structure-aware: real Keras configs with up to 4 values replaced by hostile ones (huge,
/// negative, zero sizes, wrong types, other classes): an error or a model, never a panic or
/// an abort on an allocation.
#[test]
fn mutated_config_values() {
    let corpus: Vec<serde_json::Value> = seeds("model_config")
        .iter()
        .map(|b| serde_json::from_slice(b).unwrap())
        .collect();
    proptest!(ProptestConfig { cases: 768, failure_persistence: None, ..ProptestConfig::default() },
    |(pick in any::<prop::sample::Index>(),
      edits in prop::collection::vec((any::<prop::sample::Index>(), hostile_value()), 1..4))| {
        let mut v = corpus[pick.index(corpus.len())].clone();
        for (at, new) in &edits {
            let ns = nodes(&mut v);
            let p = ns[at.index(ns.len())];
            // SAFETY: `p` points into `v`, which outlives this write, and no other
            // reference into `v` is alive (`ns` holds raw pointers only).
            unsafe { *p = new.clone() };
        }
        run("model_config", &serde_json::to_vec(&v).unwrap());
    });
}

/// Sizes a config chooses are checked like any user's: a layer asked for more memory than
/// there is is an error naming it, not an abort.
#[test]
fn huge_sizes_in_configs_are_errors() {
    use serde_json::json;
    let keras = data().join("keras");
    let plain: serde_json::Value = serde_json::from_slice(&member(
        &std::fs::read(keras.join("uncompiled.keras")).unwrap(),
        "config.json",
    ))
    .unwrap();
    let mut cases = Vec::new();
    for units in [1u64 << 39, 1 << 33, 1 << 62] {
        let mut c = plain.clone();
        c["config"]["layers"][1]["config"]["units"] = json!(units);
        cases.push(c);
    }
    let mut c = plain.clone();
    c["config"]["layers"][0]["config"]["batch_shape"] = json!([null, 1u64 << 31]);
    cases.push(c);
    for (i, c) in cases.iter().enumerate() {
        let r = kiln::io::fuzzing::model_config(&serde_json::to_vec(c).unwrap());
        let e = r.err().unwrap_or_else(|| panic!("case {i} loaded"));
        assert!(e.to_string().len() < 700, "case {i}: {e}");
    }
}
