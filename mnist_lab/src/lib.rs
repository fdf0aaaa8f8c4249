#![warn(missing_docs)]
//! # mnist_lab
//!
//! The "nonlinearities and convolutions" MNIST lecture, in Rust on [Burn](burn), made to be
//! followed cell by cell in Jupyter notebooks on the evcxr kernel.
//!
//! The notebooks keep the code the lecture teaches (hyper-parameters, the model structs and
//! their `forward`); this crate holds the plumbing, in two layers:
//!
//! - **the lesson API**, what a notebook meets (its building blocks in the [prelude]; the
//!   lecture's four [models] by path, as the notebooks define their own): the MNIST [data]
//!   pipeline, the [device] choice, the [train]ing loop and
//!   evaluation with its [report], the loss [plot]s, a look [inspect]ing a model (its layers,
//!   filters and mistakes), [save]d models, the building blocks of [nn] (the layers and the
//!   [`Classifier`](nn::Classifier) trait), the [live] display and [check]s around them, and
//!   helpers for [testing] code that trains;
//! - **the speed layer**, [`nn::fused`] (feature `fused`, on by default): hand-written CPU
//!   ops for the layers and SGD, and the loops on the backend's thread pool. Without the
//!   feature, everything runs on Burn's own layers and optimizer, with the same results.
//!
//! The tools (the `mnist-lab` program, the lecture's plan, the benchmark) are the workspace's
//! `mnist_lab_cli` crate, so that a notebook's build has none of their dependencies.
//!
//! # Example
//!
//! Train the lecture's first model for a few steps on a tiny synthetic data set:
//!
//! ```
//! use mnist_lab::models::FcNet;
//! use mnist_lab::prelude::*;
//!
//! let device = mnist_lab::device::cpu();
//! let data = Mnist::synthetic(200, 100, 7);
//! let config = TrainingConfig::new().with_num_epochs(1).with_max_steps(Some(2));
//! let model = FcNet::new(784, 600, 10, &device);
//! let (model, report) = train(model, &data, &config, &device).unwrap();
//! assert_eq!(report.losses.len(), 2);
//! let accuracy = evaluate(&model, &data, &config, &device).unwrap();
//! assert!((0.0..=100.0).contains(&accuracy));
//! ```

// The lesson API.
pub mod check;
pub mod data;
pub mod device;
mod error;
pub mod inspect;
pub mod live;
pub mod models;
pub mod nn; // the layers; the speed layer is `nn::fused`
pub mod output;
mod panics;
pub mod plot;
pub mod report;
pub mod save;
pub mod testing;
pub mod train;

pub use error::{Error, Result};

/// The names a notebook wants in scope, in one `use mnist_lab::prelude::*;`: the building
/// blocks (data, layers, training, plots), not the lecture's models, which a notebook defines
/// itself (the crate's copies are `mnist_lab::models::FcNet` and so on).
pub mod prelude {
    pub use crate::data::{Mnist, MnistBatch};
    pub use crate::device::{Device, DeviceChoice, pick_device};
    pub use crate::inspect::{Interpretation, feature_maps_chart, filters_chart, predict, summary};
    pub use crate::models::Classifier;
    pub use crate::nn::{Conv2d, Conv2dConfig, Linear, LinearConfig};
    pub use crate::plot::{Chart, compare_chart, digits_chart, loss_chart};
    pub use crate::report::results_table;
    pub use crate::save::{load, save};
    pub use crate::train::{TrainingConfig, TrainingReport, evaluate, seed, train};
    pub use crate::{Error, Result};
    pub use burn::module::Module;
    pub use burn::nn::Relu;
    pub use burn::tensor::Tensor;
}
