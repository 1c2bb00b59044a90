//! Functional models: a residual block computes what its formula says and trains; a shared
//! layer is one set of weights; models nest; merge layers check their shapes; shape
//! mismatches are errors at build time naming both layers and shapes; the summary has
//! Keras's "Connected to" column.

use kiln::nn::*;
use kiln::{convert_to_tensor, ops, ArrayData, DType, Device, Tensor};

fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
    convert_to_tensor(
        &ArrayData::from_shape_vec(shape, v).unwrap(),
        None,
        &Device::Cpu,
    )
    .unwrap()
}

fn ctx() -> CallContext {
    CallContext {
        training: false,
        seed: 0,
    }
}

fn build(f: &mut Functional, shape: &[Option<usize>]) {
    let mut b = BuildContext {
        policy: DTypePolicy::new("float32").unwrap(),
        device: Device::Cpu,
        seed: 3,
    };
    f.build(shape, &mut b).unwrap();
}

/// `y = dense_1(x + relu(dense(x)))`, computed by the graph and by hand from its weights.
#[test]
fn a_residual_block_computes_its_formula() {
    let mut g = Graph::new();
    let x = g.input(&[4]);
    let h = g.apply(Dense::new(4).activation("relu"), &[x]).unwrap();
    let s = g.apply(Add::new(), &[x, h]).unwrap();
    let out = g.apply(Dense::new(2), &[s]).unwrap();
    assert_eq!(g.shape(out), Some(&[None, Some(2)][..]));
    let mut f = g.build(&[x], &[out]).unwrap();
    build(&mut f, &[None, Some(4)]);
    let names: Vec<&str> = f.layers().iter().map(|l| l.name()).collect();
    assert_eq!(names, ["dense", "add", "dense_1"]);
    let xv = t(&[3, 4], (0..12).map(|i| i as f32 * 0.1 - 0.5).collect());
    let y = f.call(&xv, &ctx()).unwrap();
    let v = f.variables();
    let (k1, b1, k2, b2) = (v[0].value(), v[1].value(), v[2].value(), v[3].value());
    let h = ops::relu(&ops::add(&ops::matmul(&xv, k1).unwrap(), b1).unwrap()).unwrap();
    let want = ops::add(&ops::matmul(&ops::add(&xv, &h).unwrap(), k2).unwrap(), b2).unwrap();
    assert_eq!(y.to_vec::<f32>().unwrap(), want.to_vec::<f32>().unwrap());
}

/// One Dense called on two branches: one kernel, counted once; both calls use it.
#[test]
fn a_shared_layer_is_one_set_of_weights() {
    let mut g = Graph::new();
    let x = g.input(&[3]);
    let shared = g.layer(Dense::new(5));
    let a = g.call(shared, &[x]).unwrap();
    let neg = g.apply(Activation::new("relu"), &[x]).unwrap();
    let b = g.call(shared, &[neg]).unwrap();
    let c = g.apply(Concatenate::new(), &[a, b]).unwrap();
    assert_eq!(g.shape(c), Some(&[None, Some(10)][..]));
    let out = g.apply(Dense::new(1), &[c]).unwrap();
    let mut f = g.build(&[x], &[out]).unwrap();
    build(&mut f, &[None, Some(3)]);
    // shared kernel 3x5 + bias 5, head 10x1 + 1.
    let n: usize = f.variables().iter().map(|v| v.value().size()).sum();
    assert_eq!(n, 15 + 5 + 10 + 1);
    let s = f.summary();
    assert!(s.contains("Connected to"), "{s}");
    assert!(s.contains("concatenate (Concatenate)"), "{s}");
    assert!(s.contains("dense, dense"), "{s}");
    assert!(s.contains("Total params: 31"), "{s}");
    // Both calls of the shared layer in Keras's config.
    let cfg = f.config();
    let inbound = &cfg["layers"][0]["inbound_nodes"];
    assert_eq!(inbound.as_array().unwrap().len(), 2, "{cfg}");
}

/// A shape mismatch is an error when the graph is built, naming both layers and shapes.
#[test]
fn shape_mismatches_are_errors_at_build_time() {
    let mut g = Graph::new();
    let x = g.input(&[16]);
    let a = g.apply(Dense::new(16), &[x]).unwrap();
    let b = g.apply(Dense::new(8), &[x]).unwrap();
    let e = g.apply(Add::new(), &[a, b]).unwrap_err().to_string();
    for want in [
        "\"add\"",
        "\"dense\"",
        "\"dense_1\"",
        "(None, 16)",
        "(None, 8)",
    ] {
        assert!(e.contains(want), "{want} not in {e}");
    }
    let e = g
        .apply(Concatenate::new().axis(0), &[a, b])
        .unwrap_err()
        .to_string();
    assert!(e.contains("do not join"), "{e}");
    let e = g.apply(Add::new(), &[a]).unwrap_err().to_string();
    assert!(e.contains("at least 2"), "{e}");
    // A tensor of another graph, an output that needs an input the model lacks.
    let mut other = Graph::new();
    let y = other.input(&[16]);
    assert!(g.apply(Dense::new(2), &[y]).is_err());
    let x2 = g.input(&[16]);
    let both = g.apply(Multiply::new(), &[a, x2]).unwrap();
    let e = g.build(&[x], &[both]).unwrap_err().to_string();
    assert!(e.contains("not among the model's inputs"), "{e}");
}

/// A functional model trains through `fit`, nests inside another, and gives several outputs
/// through `call_all` (fit takes one of each for now, and says so).
#[test]
fn functional_models_train_nest_and_give_several_outputs() {
    // Three blobs in 4-d.
    let n = 90;
    let xs = ops::random_normal(&[n, 4], 0.0, 0.3, Some(DType::Float64), 4, None).unwrap();
    let mut xv = xs.to_f64_vec().unwrap();
    let y: Vec<i64> = (0..n).map(|i| (i % 3) as i64).collect();
    for i in 0..n {
        xv[i * 4 + i % 3] += 2.0;
    }
    let x = ArrayData::from_shape_vec(&[n, 4], xv).unwrap();
    let y = ArrayData::from_shape_vec(&[n], y).unwrap();
    // An inner block, nested in an outer graph.
    let mut gi = Graph::new();
    let xi = gi.input(&[8]);
    let hi = gi.apply(Dense::new(8).activation("relu"), &[xi]).unwrap();
    let si = gi.apply(Add::new(), &[xi, hi]).unwrap();
    let inner = gi.build(&[xi], &[si]).unwrap().name("block");
    let mut g = Graph::new();
    let x0 = g.input(&[4]);
    let h = g.apply(Dense::new(8).activation("relu"), &[x0]).unwrap();
    let b = g.apply(inner, &[h]).unwrap();
    let out = g.apply(Dense::new(3), &[b]).unwrap();
    let mut m = g.build(&[x0], &[out]).unwrap().into_sequential().unwrap();
    m.compile(
        Adam::new(0.05),
        Loss::sparse_categorical_crossentropy(true),
        &["accuracy"],
    )
    .unwrap();
    let h = m
        .fit(
            &x,
            &y,
            FitArgs::default().epochs(15).verbose(Verbose::Silent),
        )
        .unwrap();
    let acc = h.get("accuracy").unwrap();
    assert!(acc[acc.len() - 1] > 0.95, "{acc:?}");
    let loss = h.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] / 3.0, "{loss:?}");
    // 4*8+8 + (8*8+8) + 8*3+3 parameters, all trainable.
    assert!(m.summary().unwrap().contains("Total params: 139"));

    // Two outputs.
    let mut g = Graph::new();
    let x = g.input(&[2]);
    let a = g.apply(Dense::new(3), &[x]).unwrap();
    let b = g.apply(Dense::new(1), &[x]).unwrap();
    let mut f = g.build(&[x], &[a, b]).unwrap();
    build(&mut f, &[None, Some(2)]);
    let outs = f.call_all(&[t(&[5, 2], vec![0.5; 10])], &ctx()).unwrap();
    assert_eq!(
        (outs[0].shape(), outs[1].shape()),
        (&[5, 3][..], &[5, 1][..])
    );
    let e = f.into_sequential().err().unwrap().to_string();
    assert!(e.contains("one input and one output"), "{e}");
}
