//! Helpers for tests of code that trains or draws weights: the crate's own unit and
//! integration tests use them, and so can a course's tests of a student's model.
//!
//! ```
//! use mnist_lab::prelude::*;
//! use mnist_lab::testing::{parameter_values, random_numbers};
//!
//! let _random = random_numbers();
//! let device = mnist_lab::device::cpu();
//! let draw = || {
//!     seed(&device, 3);
//!     parameter_values(&mnist_lab::nn::LinearConfig::new(4, 2).init(&device))
//! };
//! assert_eq!(draw().len(), 4 * 2 + 2);
//! assert_eq!(draw(), draw());
//! ```

use std::sync::{Mutex, MutexGuard};

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::Tensor;

/// Holds Burn's random number generators for one test: every test that seeds and draws
/// random numbers (a layer's weights, a random tensor, a training run) takes this first.
///
/// Burn's generator is one per process (per device kind) and Rust runs a binary's tests in
/// parallel, so a draw in one test moves the sequence another test has just seeded. A test
/// that seeds twice and compares the two draws would otherwise fail now and then.
pub fn random_numbers() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Every parameter value of `model` (weights and biases, layer by layer in visiting order),
/// read back as `f32` from whichever device the model is on.
pub fn parameter_values<M: Module>(model: &M) -> Vec<f32> {
    let mut values = Values::default();
    model.visit(&mut values);
    values.0
}

/// Collects the values [`parameter_values`] returns.
#[derive(Default)]
struct Values(Vec<f32>);

impl ModuleVisitor for Values {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let data = param.val().into_data().convert::<f32>();
        self.0.extend_from_slice(
            data.as_slice::<f32>()
                .expect("a tensor converted to f32 should read as f32"),
        );
    }
}
