//! The one trait a model implements to be trained, evaluated and inspected by the crate.

use burn::module::Module;
use burn::tensor::Tensor;

/// Any model that maps a batch of MNIST images to one score (logit) per digit.
///
/// Implement it for a model written in a notebook and the crate's loop can train it:
///
/// ```
/// use mnist_lab::prelude::*;
///
/// #[derive(Module, Debug)]
/// pub struct Tiny {
///     fc1: Linear,
/// }
///
/// impl Classifier for Tiny {
///     fn forward(&self, images: Tensor<4>) -> Tensor<2> {
///         let x = images.flatten(1, 3); // [batch, 784]
///         self.fc1.forward(x) // [batch, 10]
///     }
/// }
///
/// let device = mnist_lab::device::cpu();
/// let tiny = Tiny { fc1: LinearConfig::new(784, 10).init(&device) };
/// let logits = tiny.forward(Tensor::zeros([2, 1, 28, 28], &device));
/// assert_eq!(logits.dims(), [2, 10]);
/// ```
pub trait Classifier: Module {
    /// Scores for each digit.
    ///
    /// # Shapes
    /// - images: `[batch, 1, 28, 28]`, pixels in [0, 1]
    /// - output: `[batch, 10]`
    fn forward(&self, images: Tensor<4>) -> Tensor<2>;
}
