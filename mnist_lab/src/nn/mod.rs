//! The building blocks of a model: the [`Classifier`] trait, and the lecture's layers,
//! `Linear` and `Conv2d`, the crate's own look-alikes of Burn's with faster paths on the CPU.
//!
//! [`LinearConfig`], [`Linear`], [`Conv2dConfig`] and [`Conv2d`] are not Burn's types: they
//! are the crate's, with the fields, defaults, initialisation and results of
//! `burn::nn::{LinearConfig, Linear}` and `burn::nn::conv::{Conv2dConfig, Conv2d}`, so a model
//! cell reads exactly as it would with Burn's: `LinearConfig::new(784, 600).init(device)`,
//! `self.fc1.forward(x)`. `as_burn()` gives Burn's layer on the same parameters, and `From`
//! turns Burn's layer into the crate's.
//!
//! The difference is speed. On the `flex` CPU backend, with the `fused` feature (on by
//! default), the lecture's cases of each layer are one hand-written op with its own backward
//! step: the speed layer, [`fused`], behind one door. Every other case, every other device,
//! and every build without the feature run Burn's own `linear` and `conv2d`. The tests hold
//! both paths to Burn's results and gradients (1e-5 relative), and the lecture's seeded
//! figures are the same either way.
//!
//! | file | what |
//! |------|------|
//! | `nn/linear.rs` | [`Linear`], [`LinearConfig`] |
//! | `nn/conv2d.rs` | [`Conv2d`], [`Conv2dConfig`] |
//! | `nn/record.rs` | the layer calls that [`crate::inspect::summary`] records |
//! | `nn/fused/` | the speed layer: when the fused ops apply, the ops, the SGD update, the thread pool |

mod classifier;
mod conv2d;
pub mod fused;
mod linear;
pub(crate) mod record;

pub use classifier::Classifier;

pub use conv2d::{Conv2d, Conv2dConfig};
pub use linear::{Linear, LinearConfig};

/// Comparisons of two layers' results, for the tests of both layers.
#[cfg(test)]
mod testing {
    use burn::tensor::Tensor;

    /// The largest absolute difference between `a` and `b`.
    pub fn max_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        (a - b).abs().max().into_scalar()
    }

    /// The largest absolute value in `a`.
    pub fn max_abs<const D: usize>(a: Tensor<D>) -> f32 {
        a.abs().max().into_scalar()
    }

    /// `ours` has `theirs`'s shape and values, to 1e-5 of `theirs`'s largest value (or 1e-5).
    pub fn assert_close<const D: usize>(ours: Tensor<D>, theirs: Tensor<D>) {
        assert_eq!(ours.dims(), theirs.dims());
        let scale = max_abs(theirs.clone()).max(1.0);
        let difference = max_difference(ours, theirs);
        assert!(
            difference <= 1e-5 * scale,
            "differ by {difference} (scale {scale})"
        );
    }
}
