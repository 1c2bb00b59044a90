//! Reads a `.npy` or `.npz` file and prints each array's name, dtype and shape:
//! `cargo run --release -p kiln --example read_npy -- FILE`.
fn main() -> Result<(), kiln::KilnError> {
    let path = std::env::args().nth(1).unwrap_or_else(|| "x.npy".into());
    let arrays = if path.ends_with(".npz") {
        kiln::io::read_npz(&path)?
    } else {
        vec![("".to_string(), kiln::io::read_npy(&path)?)]
    };
    for (name, a) in arrays {
        println!("{name} {} {:?}", a.dtype(), a.shape());
    }
    Ok(())
}
