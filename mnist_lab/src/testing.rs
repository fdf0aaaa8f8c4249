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
        let data = crate::device::read(param.val()).convert::<f32>();
        self.0.extend_from_slice(
            data.as_slice::<f32>()
                .expect("a tensor converted to f32 should read as f32"),
        );
    }
}

/// How many times this process has read a computed result back from a device to the host:
/// the training loop's losses, the evaluation's right answers, the inspection's scores and
/// weights, and [`parameter_values`].
///
/// On a GPU each read makes the CPU wait for the GPU, so the loops read as seldom as they
/// can: [`train`](crate::train::train) once per log interval (and at the end of an epoch or
/// run), [`evaluate`](crate::train::evaluate) once. The count is for the whole process: a
/// test that compares two counts holds [`random_numbers`] meanwhile, as every test that
/// trains does, so that no other test's training reads in between.
///
/// ```
/// use mnist_lab::models::FcNet;
/// use mnist_lab::prelude::*;
/// use mnist_lab::testing::{device_reads, random_numbers};
///
/// let _random = random_numbers();
/// let device = mnist_lab::device::cpu();
/// let data = Mnist::synthetic(100, 300, 2);
/// let config = TrainingConfig::new().with_hidden_size(16);
/// let model = FcNet::new(784, 16, 10, &device);
/// let before = device_reads();
/// evaluate(&model, &data, &config, &device)?;
/// assert_eq!(device_reads() - before, 1, "three test batches, one read");
/// # Ok::<(), mnist_lab::Error>(())
/// ```
pub fn device_reads() -> usize {
    crate::device::READS.load(std::sync::atomic::Ordering::Relaxed)
}
