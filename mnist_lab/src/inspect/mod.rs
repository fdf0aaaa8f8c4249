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
//! use mnist_lab::prelude::*;
//!
//! let device = mnist_lab::device::cpu();
//! let model = Conv2NetConfig::new(600, 10).init(&device);
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

use std::cell::RefCell;

use burn::module::ParamId;

/// One call of a mnist_lab layer's `forward`, recorded while [`summary`] measures a model.
#[derive(Clone, Debug)]
pub(crate) struct LayerCall {
    /// The id of the layer's weight, which names the layer.
    pub weight: ParamId,
    /// The layer's kind and settings, e.g. `Conv2d 1 -> 10, 7 x 7`.
    pub kind: String,
    /// Its output's shape, batch axis included.
    pub output: Vec<usize>,
    /// The inputs each output value is a weighted sum of (multiply-adds per output value).
    pub fan_in: usize,
}

thread_local! {
    /// The calls recorded on this thread; `None` when nothing records (almost always).
    static CALLS: RefCell<Option<Vec<LayerCall>>> = const { RefCell::new(None) };
}

/// Whether a [`summary`] is recording layer calls on this thread: one thread-local read,
/// which is all a layer's `forward` pays when nothing records.
#[inline]
pub(crate) fn recording() -> bool {
    CALLS.with(|calls| calls.borrow().is_some())
}

/// Records a layer call (only while [`recording`]; the layers check that first).
pub(crate) fn record(call: LayerCall) {
    CALLS.with(|calls| {
        if let Some(calls) = calls.borrow_mut().as_mut() {
            calls.push(call);
        }
    });
}

/// Runs `f` while recording the mnist_lab layers it calls on this thread, in order.
pub(crate) fn record_calls<T>(f: impl FnOnce() -> T) -> (T, Vec<LayerCall>) {
    /// Puts back what was recording before, even when `f` panics.
    struct Restore(Option<Option<Vec<LayerCall>>>);
    impl Drop for Restore {
        fn drop(&mut self) {
            if let Some(previous) = self.0.take() {
                CALLS.with(|calls| *calls.borrow_mut() = previous);
            }
        }
    }
    let mut restore = Restore(Some(
        CALLS.with(|calls| calls.borrow_mut().replace(Vec::new())),
    ));
    let value = f();
    let previous = restore.0.take().unwrap_or_default();
    let calls = CALLS.with(|calls| std::mem::replace(&mut *calls.borrow_mut(), previous));
    (value, calls.unwrap_or_default())
}
