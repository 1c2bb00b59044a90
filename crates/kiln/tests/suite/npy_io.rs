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

    /// Fuzz-style: NumPy-written archives (stored and deflated) with up to 8 bytes
    /// overwritten and possibly truncated never panic, and never read back other values
    /// than the original's.
    #[test]
    fn mutated_archives_error_or_read_the_same(
        compressed in any::<bool>(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let name = if compressed { "all_compressed.npz" } else { "all.npz" };
        let mut bytes = std::fs::read(data(name)).unwrap();
        let want = read_npz(data(name)).unwrap();
        for (at, v) in &edits {
            let i = at.index(bytes.len());
            bytes[i] = *v;
        }
        if let Some(c) = cut {
            bytes.truncate(c.index(bytes.len()));
        }
        let f = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(f.path(), &bytes).unwrap();
        if let Ok(got) = read_npz(f.path()) {
            prop_assert_eq!(got, want);
        }
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

// ---- hostile zip archives: each hole the model-files issue found, closed ----------------

/// One member of a hand-built archive: what the central directory declares may differ from
/// the data (that is the point).
struct Raw {
    name: Vec<u8>,
    local_name: Option<Vec<u8>>,
    data: Vec<u8>,
    deflate: bool,
    crc: u32,
    size: u64,
}

fn deflated(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn member(name: &str, payload: &[u8], deflate: bool) -> Raw {
    Raw {
        name: name.as_bytes().to_vec(),
        local_name: None,
        data: if deflate {
            deflated(payload)
        } else {
            payload.to_vec()
        },
        deflate,
        crc: crc32fast::hash(payload),
        size: payload.len() as u64,
    }
}

/// A zip file of `members`; `offsets` overrides the central directory's local offsets.
fn zip_of(members: &[Raw], offsets: Option<&[u32]>) -> Vec<u8> {
    let mut out = Vec::new();
    let mut locals = Vec::new();
    for m in members {
        locals.push(out.len() as u32);
        let name = m.local_name.as_ref().unwrap_or(&m.name);
        out.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 0, 0]);
        out.extend_from_slice(&(if m.deflate { 8u16 } else { 0 }).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&m.crc.to_le_bytes());
        out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(m.size as u32).to_le_bytes());
        out.extend_from_slice(&(name.len() as u16).to_le_bytes());
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(name);
        out.extend_from_slice(&m.data);
    }
    let cd = out.len() as u32;
    for (i, m) in members.iter().enumerate() {
        out.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        out.extend_from_slice(&[20, 0, 20, 0, 0, 0]);
        out.extend_from_slice(&(if m.deflate { 8u16 } else { 0 }).to_le_bytes());
        out.extend_from_slice(&[0; 4]);
        out.extend_from_slice(&m.crc.to_le_bytes());
        out.extend_from_slice(&(m.data.len() as u32).to_le_bytes());
        out.extend_from_slice(&(m.size.min(u32::MAX as u64 - 1) as u32).to_le_bytes());
        out.extend_from_slice(&(m.name.len() as u16).to_le_bytes());
        out.extend_from_slice(&[0; 12]);
        let off = offsets.map(|o| o[i]).unwrap_or(locals[i]);
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&m.name);
    }
    let cd_size = out.len() as u32 - cd;
    out.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    let n = (members.len() as u16).to_le_bytes();
    out.extend_from_slice(&n);
    out.extend_from_slice(&n);
    out.extend_from_slice(&cd_size.to_le_bytes());
    out.extend_from_slice(&cd.to_le_bytes());
    out.extend_from_slice(&[0, 0]);
    out
}

#[track_caller]
fn npz_err(bytes: &[u8]) -> String {
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(f.path(), bytes).unwrap();
    read_npz(f.path()).unwrap_err().to_string()
}

fn small_npy() -> Vec<u8> {
    encode_npy(&ArrayData::from_shape_vec(&[4], vec![1.0f64, 2.0, 3.0, 4.0]).unwrap())
}

#[test]
fn the_zip_reader_builds_what_it_reads() {
    // The test's own archive builder is right: a well-formed pair of members reads back.
    let f = tempfile::NamedTempFile::new().unwrap();
    let bytes = zip_of(
        &[
            member("a.npy", &small_npy(), true),
            member("b.npy", &small_npy(), false),
        ],
        None,
    );
    std::fs::write(f.path(), bytes).unwrap();
    let got = read_npz(f.path()).unwrap();
    assert_eq!(got.len(), 2);
    assert_eq!(got[1].1.to_f64_vec(), [1.0, 2.0, 3.0, 4.0]);
}

/// A member that inflates past what the directory declares, a declared size beyond the
/// ratio limit, and headers that claim more than the member holds: refused before any
/// allocation of that size.
#[test]
fn members_never_inflate_past_their_declared_size() {
    // 4 small values, then 64 MiB of zeros in the deflate stream (about 64 KiB compressed).
    let mut payload = small_npy();
    let declared = payload.len() as u64;
    payload.resize(payload.len() + (64 << 20), 0);
    let mut m = member("x.npy", &payload, true);
    m.size = declared;
    m.crc = crc32fast::hash(&payload[..declared as usize]);
    let e = npz_err(&zip_of(&[m], None));
    assert!(e.contains("inflates past its declared"), "{e}");
    // A directory that declares 3 GiB from a few KB.
    let mut m = member("x.npy", &small_npy(), true);
    m.size = 3 << 30;
    let e = npz_err(&zip_of(&[m], None));
    assert!(e.contains("1100:1 limit"), "{e}");
    // A header that declares a 6 GiB array in a member of 200 bytes.
    let lie = with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (805306368,), }\n",
        &[0; 8],
    );
    let e = npz_err(&zip_of(&[member("x.npy", &lie, true)], None));
    assert!(e.contains("holds only"), "{e}");
    // The total cap is configurable.
    let f = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        f.path(),
        zip_of(&[member("x.npy", &small_npy(), true)], None),
    )
    .unwrap();
    let tight = kiln::io::ZipLimits {
        max_total: 10,
        ..Default::default()
    };
    let e = kiln::io::read_npz_with(f.path(), tight)
        .unwrap_err()
        .to_string();
    assert!(e.contains("max_total"), "{e}");
}

/// A wrong CRC is an error (NumPy: `Bad CRC-32`); and flipping any one byte of a NumPy-written
/// `savez_compressed` file never gives different values silently.
#[test]
fn corrupted_members_are_errors_not_other_values() {
    let mut m = member("x.npy", &small_npy(), false);
    m.crc ^= 1;
    let e = npz_err(&zip_of(&[m], None));
    assert!(e.contains("Bad CRC-32"), "{e}");
    let mut m = member("x.npy", &small_npy(), false);
    let last = m.data.len() - 1;
    m.data[last] ^= 0x40; // the last value's top byte
    let e = npz_err(&zip_of(&[m], None));
    assert!(e.contains("Bad CRC-32"), "{e}");
    let good = std::fs::read(data("all_compressed.npz")).unwrap();
    let want = read_npz(data("all_compressed.npz")).unwrap();
    let f = tempfile::NamedTempFile::new().unwrap();
    let (mut refused, mut same) = (0, 0);
    for i in 0..good.len() {
        let mut bad = good.clone();
        bad[i] ^= 0x10;
        std::fs::write(f.path(), &bad).unwrap();
        match read_npz(f.path()) {
            Err(_) => refused += 1,
            Ok(got) => {
                // Bytes no reader looks at (timestamps, version fields) may change freely.
                assert_eq!(got.len(), want.len(), "byte {i}");
                for ((kg, g), (kw, w)) in got.iter().zip(&want) {
                    assert_eq!(kg, kw, "byte {i}");
                    assert_eq!(g, w, "byte {i}: a flipped byte changed {kw}'s values");
                }
                same += 1;
            }
        }
    }
    println!(
        "{} single-byte flips: {refused} refused, {same} read back unchanged",
        good.len()
    );
    assert!(
        refused > good.len() / 2,
        "{refused} refused, {same} unchanged"
    );
}

/// Directory entries that alias one member, names that disagree, repeated end records.
#[test]
fn archive_structure_is_checked() {
    // 200 directory entries at offset 0, under one name and under distinct names.
    let one: Vec<Raw> = (0..200)
        .map(|_| member("x.npy", &small_npy(), true))
        .collect();
    let e = npz_err(&zip_of(&one, Some(&[0; 200])));
    assert!(e.contains("appears twice"), "{e}");
    let named: Vec<Raw> = (0..200)
        .map(|i| member(&format!("x{i}.npy"), &small_npy(), true))
        .collect();
    let e = npz_err(&zip_of(&named, Some(&[0; 200])));
    assert!(e.contains("local header names it"), "{e}");
    // The local header names another member than the directory does.
    let mut m = member("a.npy", &small_npy(), true);
    m.local_name = Some(b"b.npy".to_vec());
    let e = npz_err(&zip_of(&[m], None));
    assert!(e.contains("local header names it \"b.npy\""), "{e}");
    // 4 MiB of end-of-directory records: one scan of the last 64 KiB, then an error.
    let mut eocds = Vec::new();
    while eocds.len() < (4 << 20) {
        eocds.extend_from_slice(b"PK\x05\x06");
        eocds.extend_from_slice(&[0; 18]);
    }
    let e = npz_err(&eocds);
    assert!(e.contains("not a valid zip"), "{e}");
    // A directory that claims more entries than it has room for.
    let mut bytes = zip_of(&[member("x.npy", &small_npy(), true)], None);
    let n = bytes.len();
    for at in [n - 14, n - 12] {
        bytes[at..at + 2].copy_from_slice(&60000u16.to_le_bytes());
    }
    let e = npz_err(&bytes);
    assert!(e.contains("cannot fit"), "{e}");
}

/// Member names: no `..`, no absolute paths, no control characters (shown escaped), no two
/// members for one array.
#[test]
fn member_names_are_validated_and_shown_escaped() {
    for (name, why) in [
        ("../x.npy", "'..'"),
        ("/etc/x.npy", "absolute"),
        ("C:x.npy", "drive letter"),
        ("a\u{1b}[31mred.npy", "control characters"),
    ] {
        let e = npz_err(&zip_of(&[member(name, &small_npy(), false)], None));
        assert!(e.contains(why), "{name}: {e}");
        assert!(
            !e.contains('\u{1b}'),
            "an escape byte reached the message: {e:?}"
        );
    }
    let e = npz_err(&zip_of(
        &[
            member("a", &small_npy(), false),
            member("a.npy", &small_npy(), false),
        ],
        None,
    ));
    assert!(e.contains("two members hold the array \"a\""), "{e}");
}

/// A zero-size array whose other axes could not be addressed is refused; messages do not
/// echo a whole 9 kB header; kiln does not write a file it could not read back.
#[test]
fn absurd_shapes_long_headers_and_unreadable_writes() {
    let zero = with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 4611686018427387904), }\n",
        &[],
    );
    assert!(err_of(&zero).contains("address space"), "{}", err_of(&zero));
    let ok = with_header(
        "{'descr': '<f8', 'fortran_order': False, 'shape': (0, 3), }\n",
        &[],
    );
    assert_eq!(decode_npy(&ok[..], "<mem>").unwrap().shape(), &[0, 3]);
    let long = format!("{{'descr': '<f8', 'junk': '{}' }}\n", "x".repeat(9000));
    let e = err_of(&with_header(&long, &[]));
    assert!(e.len() < 400, "{} bytes: {e}", e.len());
    let dims = vec![1usize; 4000];
    let a = ArrayData::from_shape_vec(&dims, vec![1.0f32]).unwrap();
    let f = tempfile::NamedTempFile::new().unwrap();
    let e = write_npy(f.path(), &a).unwrap_err().to_string();
    assert!(e.contains("at most 64"), "{e}");
    let e = write_npz(f.path(), &[("a", &a)], false)
        .unwrap_err()
        .to_string();
    assert!(e.contains("at most 64"), "{e}");
}

/// safetensors written by the `safetensors` package (scripts/gen_safetensors_fixtures.py)
/// read back with NumPy's values, and every kiln dtype but complex128 round-trips, bfloat16
/// included; a truncated or lying file is an error.
#[test]
fn safetensors_from_python_and_round_trips() {
    use kiln::io::{load_weights, read_safetensors, write_safetensors};
    let got = read_safetensors(data("all.safetensors")).unwrap();
    assert_eq!(got.len(), 12);
    for (name, a) in &got {
        assert_eq!(a.dtype().name(), name.as_str(), "{name}");
        assert_eq!(a.shape(), &[2, 3, 4], "{name}");
        let want: Vec<f64> = expected(name).iter().map(|c| c.re).collect();
        assert_eq!(a.to_f64_vec(), want, "{name}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("w.safetensors");
    let v = [0.0f64, 1.0, 2.0, -3.0, 0.5, 1.5];
    let sh = [2usize, 3];
    let arrays: Vec<(String, ArrayData)> = vec![
        ArrayData::from_shape_vec(&sh, v.map(|x| x > 0.0).to_vec()).unwrap(),
        ArrayData::from_shape_vec(&sh, v.map(|x| x as i8).to_vec()).unwrap(),
        ArrayData::from_shape_vec(&sh, v.map(|x| x.abs() as u64 + (1 << 63)).to_vec()).unwrap(),
        ArrayData::from_shape_vec(&sh, v.map(half::f16::from_f64).to_vec()).unwrap(),
        ArrayData::from_shape_vec(&sh, v.map(bf16::from_f64).to_vec()).unwrap(),
        ArrayData::from_shape_vec(&sh, v.map(|x| x as f32).to_vec()).unwrap(),
        ArrayData::from_shape_vec(&sh, v.to_vec()).unwrap(),
        ArrayData::from_shape_vec(
            &sh,
            v.map(|x| kiln::element::C64::new(x as f32, 2.0)).to_vec(),
        )
        .unwrap(),
    ]
    .into_iter()
    .map(|a| (a.dtype().name().to_string(), a))
    .collect();
    let refs: Vec<(&str, &ArrayData)> = arrays.iter().map(|(n, a)| (n.as_str(), a)).collect();
    write_safetensors(&p, &refs).unwrap();
    let back = load_weights(&p).unwrap();
    for (n, a) in &arrays {
        let b = &back.iter().find(|(m, _)| m == n).unwrap().1;
        assert_eq!(a, b, "{n}");
    }
    let c128 = ArrayData::from_shape_vec(&[1], vec![C128::new(1.0, 0.0)]).unwrap();
    let e = write_safetensors(&p, &[("c", &c128)])
        .unwrap_err()
        .to_string();
    assert!(e.contains("complex64"), "{e}");
    let bytes = std::fs::read(data("all.safetensors")).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() - 3]).unwrap();
    assert!(read_safetensors(&cut).is_err());
    let mut lie = bytes.clone();
    lie[0] = 0xFF; // a header length past the file
    std::fs::write(&cut, &lie).unwrap();
    assert!(read_safetensors(&cut).is_err());
    assert!(load_weights(dir.path().join("w.pt")).is_err());
}
