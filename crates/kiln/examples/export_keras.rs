//! Writes `.keras` files from kiln for Python Keras to load (the check mode of
//! scripts/gen_keras_fixtures.py): every Keras fixture loaded and saved again by kiln, and
//! models built and trained in kiln, each with `NAME_io.npz` holding the inputs and kiln's
//! predictions.
//!
//! ```text
//! cargo run -p kiln --example export_keras -- /tmp/kiln-keras
//! KERAS_BACKEND=jax python scripts/gen_keras_fixtures.py --check /tmp/kiln-keras
//! ```

use kiln::nn::{
    load_model, Adam, BatchNormalization, CompileArgs, Concatenate, Conv2D, Dense, Dropout,
    FitArgs, Flatten, Graph, Input, Loss, MaxPooling2D, Model, Sequential, Verbose, SGD,
};
use kiln::ArrayData;

fn save(m: &mut Model, dir: &str, name: &str, xs: &[ArrayData]) -> kiln::Result<()> {
    m.save(&format!("{dir}/{name}.keras"))?;
    let ys = m.predict_many(xs, 64)?;
    let mut named: Vec<(String, ArrayData)> = xs
        .iter()
        .enumerate()
        .map(|(i, x)| (format!("x{i}"), x.clone()))
        .collect();
    for (i, y) in ys.iter().enumerate() {
        named.push((format!("y{i}"), y.to_host()?));
    }
    let refs: Vec<(&str, &ArrayData)> = named.iter().map(|(n, a)| (n.as_str(), a)).collect();
    kiln::io::write_npz(format!("{dir}/{name}_io.npz"), &refs, false)?;
    println!("{dir}/{name}.keras");
    Ok(())
}

fn grid(shape: &[usize], k: usize) -> ArrayData {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n)
        .map(|i| (((i * k) % 97) as f32 / 48.0) - 1.0)
        .collect();
    ArrayData::from_shape_vec(shape, v).expect("shape")
}

fn main() -> kiln::Result<()> {
    let dir = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/tmp/kiln-keras".into());
    std::fs::create_dir_all(&dir).map_err(|e| kiln::KilnError::Io {
        path: dir.clone(),
        message: e.to_string(),
    })?;
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/keras");
    for name in [
        "mlp",
        "convnet",
        "multi",
        "zoo_seq",
        "zoo_img",
        "uncompiled",
    ] {
        let mut m = load_model(&format!("{fixtures}/{name}.keras"))?;
        let io = kiln::io::read_npz(format!("{fixtures}/{name}_io.npz"))?;
        let xs: Vec<ArrayData> = io
            .iter()
            .filter(|(n, _)| n.starts_with('x'))
            .map(|(_, a)| a.clone())
            .collect();
        save(&mut m, &dir, &format!("kiln_{name}"), &xs)?;
    }
    // Built and trained in kiln: a convnet with BatchNormalization and Dropout.
    let x = grid(&[32, 8, 8, 1], 7);
    let y = ArrayData::from_shape_vec(&[32], (0..32).map(|i| (i % 3) as i64).collect::<Vec<_>>())?;
    let mut cnn = Sequential::new()
        .add(Input::new(&[8, 8, 1]))
        .add(Conv2D::new(4, 3).padding("same").activation("relu"))
        .add(BatchNormalization::new())
        .add(MaxPooling2D::new(2))
        .add(Flatten::new())
        .add(Dropout::new(0.2))
        .add(Dense::new(3))
        .seed(3)
        .into_model();
    cnn.compile(
        Adam::new(1e-2),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )?;
    cnn.fit(
        &x,
        &y,
        FitArgs::default()
            .epochs(2)
            .batch_size(8)
            .verbose(Verbose::Silent),
    )?;
    save(&mut cnn, &dir, "kiln_cnn", &[grid(&[5, 8, 8, 1], 11)])?;
    // A functional model with two inputs and two outputs.
    let mut g = Graph::new();
    let (a, b) = (g.input(&[4]), g.input(&[2]));
    let h = g.apply(Concatenate::new(), &[a, b])?;
    let h = g.apply(Dense::new(8).activation("tanh"), &[h])?;
    let reg = g.apply(Dense::new(1).name("reg"), &[h])?;
    let cls = g.apply(Dense::new(3).name("cls"), &[h])?;
    let mut f = Model::new(g, &[a, b], &[reg, cls])?;
    f.compile_with(
        SGD::new(0.1).momentum(0.9),
        CompileArgs::new()
            .losses([
                Loss::MeanSquaredError,
                Loss::sparse_categorical_crossentropy(true),
            ])
            .loss_weights(&[1.0, 0.5])
            .output_metrics("cls", &["accuracy"]),
    )?;
    let (xa, xb) = (grid(&[16, 4], 5), grid(&[16, 2], 3));
    let yr = grid(&[16, 1], 13);
    let yc = ArrayData::from_shape_vec(&[16], (0..16).map(|i| (i % 3) as i64).collect::<Vec<_>>())?;
    f.fit(
        &[&xa, &xb],
        &[&yr, &yc],
        FitArgs::default()
            .epochs(2)
            .batch_size(4)
            .verbose(Verbose::Silent),
    )?;
    save(
        &mut f,
        &dir,
        "kiln_two_heads",
        &[grid(&[3, 4], 17), grid(&[3, 2], 19)],
    )?;
    Ok(())
}
