//! .npy/.npz against files NumPy wrote (tests/data/npy, scripts/gen_npy_fixtures.py), round
//! trips for every dtype, and hostile inputs.

use half::bf16;
use kiln::element::C128;
use kiln::io::{decode_npy, encode_npy, read_npy, read_npz, write_npy, write_npz};
use kiln::{ArrayData, DType};
use proptest::prelude::*;

fn data(name: &str) -> String {
    format!("{}/tests/data/npy/{name}", env!("CARGO_MANIFEST_DIR"))
}

const NUMPY_DTYPES: [&str; 14] = [
    "bool",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "int8",
    "int16",
    "int32",
    "int64",
    "float16",
    "float32",
    "float64",
    "complex64",
    "complex128",
];

/// np.arange(24).reshape(2, 3, 4) as the fixture script builds it.
fn expected(d: &str) -> Vec<C128> {
    (0..24)
        .map(|i| match d {
            "bool" => C128::new((i % 3 == 0) as u8 as f64, 0.0),
            c if c.starts_with("complex") => C128::new(i as f64, 0.5 * i as f64),
            _ => C128::new(i as f64, 0.0),
        })
        .collect()
}

fn values(a: &ArrayData) -> Vec<C128> {
    a.to_scalars().into_iter().map(|s| s.as_c128()).collect()
}

#[test]
fn reads_numpy_files_little_and_big_endian_c_and_fortran() {
    for d in NUMPY_DTYPES {
        let a = read_npy(data(&format!("{d}.npy"))).unwrap();
        assert_eq!(a.dtype().name(), d);
        assert_eq!(a.shape(), &[2, 3, 4]);
        assert_eq!(values(&a), expected(d), "{d}");
        if a.dtype().itemsize() > 1 {
            let b = read_npy(data(&format!("{d}_be_f.npy"))).unwrap();
            assert_eq!(b, a, "{d} big-endian Fortran order");
        }
    }
}

#[test]
fn writes_the_same_bytes_numpy_writes() {
    for d in NUMPY_DTYPES {
        let bytes = std::fs::read(data(&format!("{d}.npy"))).unwrap();
        let a = decode_npy(&bytes[..], d).unwrap();
        assert_eq!(encode_npy(&a), bytes, "{d}");
    }
}

#[test]
fn reads_npz_stored_and_deflated() {
    for f in ["all.npz", "all_compressed.npz"] {
        let arrays = read_npz(data(f)).unwrap();
        assert_eq!(arrays.len(), NUMPY_DTYPES.len());
        for (name, a) in &arrays {
            assert_eq!(a.dtype().name(), name);
            assert_eq!(values(a), expected(name), "{f}:{name}");
        }
    }
}

#[test]
fn npz_round_trip_every_dtype_including_bfloat16() {
    let dir = tempfile::tempdir().unwrap();
    let mut arrays: Vec<(String, ArrayData)> = DType::ALL
        .iter()
        .map(|d| {
            (
                d.name().to_string(),
                ArrayData::full(&[3, 2], kiln::Scalar::Float(1.5), *d).unwrap(),
            )
        })
        .collect();
    arrays.push((
        "bf".into(),
        ArrayData::from(vec![bf16::from_f32(0.1), bf16::from_f32(-3.0)]),
    ));
    for compressed in [false, true] {
        let p = dir.path().join(format!("x{compressed}.npz"));
        let refs: Vec<(&str, &ArrayData)> = arrays.iter().map(|(k, v)| (k.as_str(), v)).collect();
        write_npz(&p, &refs, compressed).unwrap();
        let back = read_npz(&p).unwrap();
        assert_eq!(back, arrays);
    }
}

fn err_of(bytes: &[u8]) -> String {
    match decode_npy(bytes, "test.npy") {
        Err(e) => {
            assert_eq!(e.kind_name(), "format", "{e}");
            e.to_string()
        }
        Ok(a) => panic!("accepted hostile input as {:?}", a.shape()),
    }
}

fn with_header(h: &str, data: &[u8]) -> Vec<u8> {
    let mut v = b"\x93NUMPY\x01\x00".to_vec();
    v.extend_from_slice(&(h.len() as u16).to_le_bytes());
    v.extend_from_slice(h.as_bytes());
    v.extend_from_slice(data);
    v
}

#[test]
fn refuses_hostile_files_with_clear_errors() {
    let good = std::fs::read(data("float64.npy")).unwrap();
    assert!(err_of(&good[..good.len() - 1]).contains("truncated"));
    assert!(err_of(&good[..5]).contains("truncated"));
    assert!(err_of(b"PK\x03\x04 not npy at all").contains("magic"));
    let obj = with_header(
        "{'descr': '|O', 'fortran_order': False, 'shape': (2,), }\n",
        &[0; 16],
    );
    assert!(err_of(&obj).contains("pickle"));
    let lie = with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (1000000,), }\n",
        &[0; 64],
    );
    assert!(err_of(&lie).contains("truncated"));
    let overflow = with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (4611686018427387904, 4), }\n",
        &[],
    );
    assert!(err_of(&overflow).contains("overflow"));
    let big_dims = with_header(
        "{'descr': '<c16', 'fortran_order': False, 'shape': (1152921504606846976,), }\n",
        &[],
    );
    assert!(err_of(&big_dims).contains("overflow"));
    let mut huge = b"\x93NUMPY\x02\x00".to_vec();
    huge.extend_from_slice(&u32::MAX.to_le_bytes());
    assert!(err_of(&huge).contains("limit"));
    let neg = with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,), }\n",
        &[],
    );
    assert!(err_of(&neg).contains("non-negative"));
    let void = with_header(
        "{'descr': '<V2', 'fortran_order': False, 'shape': (1,), }\n",
        &[0, 0],
    );
    assert!(err_of(&void).contains("void"));
    let structured = with_header(
        "{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,), }\n",
        &[0; 8],
    );
    assert!(err_of(&structured).contains("structured"));
    let mut v9 = good.clone();
    v9[6] = 9;
    assert!(err_of(&v9).contains("version"));
    let missing = kiln::io::read_npy("/definitely/not/here.npy").unwrap_err();
    assert_eq!(missing.kind_name(), "io");
}

fn arb_array() -> impl Strategy<Value = ArrayData> {
    let shape = prop::collection::vec(0usize..4, 0..4);
    (shape, 0usize..DType::ALL.len(), any::<u64>()).prop_map(|(shape, di, seed)| {
        let n: usize = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|i| ((seed.wrapping_mul(i as u64 + 1) % 2001) as f64 - 1000.0) / 8.0)
            .collect();
        let a = ArrayData::from_shape_vec(&shape, v).unwrap();
        let (b, _) = kiln::precision::report::convert_with_report(&a, DType::ALL[di]);
        b
    })
}

proptest! {
    #[test]
    fn npy_round_trip(a in arb_array()) {
        let bytes = encode_npy(&a);
        let b = decode_npy(&bytes[..], "rt").unwrap();
        prop_assert_eq!(b, a);
    }

    #[test]
    fn arbitrary_bytes_never_panic(tail in prop::collection::vec(any::<u8>(), 0..200)) {
        let mut v = b"\x93NUMPY\x01\x00".to_vec();
        v.extend_from_slice(&tail);
        let _ = decode_npy(&v[..], "fuzz");
    }

    #[test]
    fn arbitrary_headers_never_panic(h in "\\{'descr': '[<>|=]?[a-zA-Z]{1,2}[0-9]{0,2}', 'fortran_order': (True|False), 'shape': \\(([0-9]{1,20}, ){0,3}\\), \\}") {
        let v = with_header(&h, &[0u8; 64]);
        let _ = decode_npy(&v[..], "fuzz");
    }
}

#[test]
fn write_then_read_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x.npy");
    let a = ArrayData::from_shape_vec(&[2, 2], vec![1.0f32, 2.0, f32::NAN, -0.0]).unwrap();
    write_npy(&p, &a).unwrap();
    let b = read_npy(&p).unwrap();
    assert_eq!(b.to_vec::<f32>().unwrap()[..2], [1.0, 2.0]);
    assert!(b.to_vec::<f32>().unwrap()[2].is_nan());
    assert!(b.to_vec::<f32>().unwrap()[3].is_sign_negative());
}
