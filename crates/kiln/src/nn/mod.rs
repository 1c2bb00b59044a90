//! The Keras layer: layers, models, losses, metrics, optimizers, initializers and dtype
//! policies, with Keras's names, arguments, defaults and config keys, built on
//! [`crate::ops`] and [`crate::autodiff`].
//!
//! ```
//! use kiln::nn::{Adam, Dense, FitArgs, Input, Loss, Sequential, Verbose};
//! use kiln::ArrayData;
//! // y = 1 where x0 + x1 > 1: a two-feature binary problem.
//! let xs: Vec<f64> = (0..200).map(|i| ((i * 37) % 100) as f64 / 100.0).collect();
//! let ys: Vec<f64> = xs.chunks(2).map(|p| f64::from(p[0] + p[1] > 1.0)).collect();
//! let x = ArrayData::from_shape_vec(&[100, 2], xs).unwrap();
//! let y = ArrayData::from_shape_vec(&[100, 1], ys).unwrap();
//! let mut model = Sequential::new().seed(1)
//!     .add(Input::new(&[2]))
//!     .add(Dense::new(8).activation("relu"))
//!     .add(Dense::new(1));
//! model.compile(Adam::new(0.05), Loss::binary_crossentropy(true), &["accuracy"]).unwrap();
//! let h = model.fit(&x, &y, FitArgs::default().epochs(30).verbose(Verbose::Silent)).unwrap();
//! assert!(h.get("accuracy").unwrap().last().unwrap() > &0.9);
//! ```

pub mod activations;
pub mod callbacks;
pub mod functional;
pub mod initializers;
pub mod layers;
pub mod losses;
pub mod metrics;
pub mod model;
pub mod optimizers;
pub mod policy;
pub mod regularizers;
pub mod saving;

pub use activations::ActivationFn;
pub use callbacks::builtin::{
    CSVLogger, EarlyStopping, LearningRateScheduler, ModelCheckpoint, ReduceLROnPlateau,
    TerminateOnNaN,
};
pub use callbacks::precision::{PrecisionMonitor, PrecisionReport};
pub use callbacks::{
    Callback, History, Logs, ProgbarLogger, StepInfo, TrainControl, TrainParams, Verbose,
};
pub use functional::{Functional, Graph, KerasTensor};
pub use initializers::Initializer;
pub use layers::reshaping::{
    Cropping1D, Cropping2D, Cropping3D, SpatialDropout1D, SpatialDropout2D, SpatialDropout3D,
    UpSampling1D, UpSampling2D, UpSampling3D, ZeroPadding1D, ZeroPadding2D, ZeroPadding3D,
};
pub use layers::{
    stateless_call, Activation, Add, Average, AveragePooling1D, AveragePooling2D, AveragePooling3D,
    BatchNormalization, BuildContext, CallContext, Concatenate, Conv, Conv1D, Conv1DTranspose,
    Conv2D, Conv2DTranspose, Conv3D, Conv3DTranspose, Dense, DepthwiseConv1D, DepthwiseConv2D,
    Dropout, Embedding, Flatten, GlobalAveragePooling1D, GlobalAveragePooling2D,
    GlobalAveragePooling3D, GlobalMaxPooling1D, GlobalMaxPooling2D, GlobalMaxPooling3D, GlobalPool,
    GroupNormalization, Identity, Input, Layer, LayerNormalization, MaxPooling1D, MaxPooling2D,
    MaxPooling3D, Maximum, Minimum, Multiply, Pool, Reshape, SeparableConv1D, SeparableConv2D,
    Size, Subtract,
};
pub use losses::Loss;
pub use metrics::{Metric, MetricKind};
pub use model::{CompileArgs, FitArgs, Model, ModelData, Sequential};
pub use optimizers::{
    Adagrad, Adam, AdamW, Adamax, LearningRate, Lion, LossScaleOptimizer, Nadam, Optimizer,
    RMSprop, SGD,
};
pub use policy::DTypePolicy;
pub use regularizers::Regularizer;
pub use saving::{load_model, save_model, KerasTree, ModelFormat};
