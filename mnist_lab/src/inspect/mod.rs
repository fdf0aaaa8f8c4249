//! Looking inside a model: its layers and their output shapes, what the filters learned,
//! where it errs, and what it predicts for one digit.
//!
//! Each question is one call, in the manner of Keras' `model.summary()` and fastai's
//! `ClassificationInterpretation`:
//!
//! - [`summary`]: a table of the layers in the order the data flows through them, with the
//!   output shape per image measured by running one image through the model, and the
//!   parameters and multiply-adds;
//! - [`Interpretation`]: one pass over the test set, then the confusion matrix, the most
//!   confused pairs, the digits with the highest loss and the accuracy of each digit;
//! - [`filters_chart`] and [`feature_maps_chart`]: a convolution's kernels, and what they
//!   make of one digit;
//! - [`predict`]: the ten probabilities the model gives one digit.
//!
//! ```
//! use mnist_lab::models::Conv2Net;
//! use mnist_lab::prelude::*;
//!
//! let device = mnist_lab::device::cpu();
//! let model = Conv2Net::new(600, 10, &device);
//! let table = summary(&model).unwrap();
//! println!("{table}");
//! assert_eq!(table.row("conv2").unwrap().output, vec![55, 21, 21]);
//! ```

mod filters;
mod interpret;
mod summary;

pub use filters::{Prediction, feature_maps_chart, filters_chart, predict};
pub use interpret::{Confusion, Interpretation};
pub use summary::{Row, Summary, summary};
