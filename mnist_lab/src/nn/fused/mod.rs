//! The speed layer: hand-written CPU ops for the lecture's layers and its SGD step, and the
//! loops on the CPU backend's thread pool, behind one door.
//!
//! Everything here is on when the crate is built with the `fused` feature (the default; it
//! needs `flex`), and then only for `f32` tensors on the flex device. Otherwise the layers run
//! Burn's own `linear` and `conv2d`, training uses Burn's `Sgd`, and the loops run on the
//! calling thread: the same results, Burn's speed. The rest of the crate calls only the
//! functions of this module; what lies behind it uses Burn's backend extension and autodiff
//! internals (`ops.rs`), so a Burn upgrade that moves those breaks this module alone, and
//! `--no-default-features --features flex` (or `ndarray`, `wgpu`) builds without it.
//!
//! **Linear.** For a 2-D input and a layer with a bias, [`Linear::forward`](super::Linear) is
//! one op instead of Burn's matmul and broadcast add: gemm (the matmul library Burn's flex
//! backend uses) multiplies onto the bias rows already in the output, and its backward writes
//! the input, weight and bias gradients once each, skipping the input's when the input needs
//! none (the images). Burn's matmul zero-fills each output and then copies it into an aligned
//! buffer; the 4840 x 600 weight gradient of model 3's `fc1` alone is 11.6 MB.
//!
//! **Conv2d.** For a convolution with stride 1, no padding, no dilation, one group and a
//! bias (both of the lecture's), [`Conv2d::forward`](super::Conv2d) is one op too: each
//! image's patches are copied into a column matrix (im2col) and one gemm multiplies the
//! filters with it onto the bias rows, images in parallel. The backward builds the columns
//! again and gives the weight gradient as gemms summed over the images, the bias gradient as
//! sums, and, when the input needs one (conv2's, in training), the input gradient as
//! `weight^T @ grad` added back onto the pixels (col2im). Burn's flex kernels take a generic
//! path for these small-channel shapes (a direct forward, a transposed convolution for the
//! input gradient).
//!
//! **SGD.** `sgd()` is the lecture's optimizer, `torch.optim.SGD(params, lr)`: it computes
//! what Burn's `SgdConfig::new().init()` computes, value for value (`param - grad *
//! learning_rate`), in one pass over each parameter, in place, spread over the threads.
//!
//! **The pool.** `on_pool` runs a training or evaluation loop on a thread of the backend's
//! pool, so the ops it starts share their work with it.
//!
//! What each of these gains is measured in the project's `bench/README.md`
//! (`cargo bench -p mnist_lab --bench ops conv` times both convolutions).

#[cfg(feature = "fused")]
mod ops;

use burn::nn::PaddingConfig2d;
use burn::optim::ModuleOptimizer;
use burn::tensor::{DType, Device, Tensor};

use super::Conv2d;

/// The most values one image's column matrix may hold on the fused path (64 MiB of `f32`); a
/// larger image takes Burn's `conv2d` instead.
const MAX_COLUMN_VALUES: usize = 16 * 1024 * 1024;

/// Whether tensors of `dtypes` on `device` go through the hand-written ops: with the `fused`
/// feature, on the `flex` CPU backend, where they were measured, and `f32` throughout.
fn runs_fused_ops(device: &Device, dtypes: &[DType]) -> bool {
    #[cfg(feature = "fused")]
    {
        *device == Device::flex() && dtypes.iter().all(|&dtype| dtype == DType::F32)
    }
    #[cfg(not(feature = "fused"))]
    {
        let _ = (device, dtypes);
        false
    }
}

/// Whether a `Linear` with this weight and bias runs `input` through [`linear`].
pub(crate) fn takes_linear<const D: usize>(
    input: &Tensor<D>,
    weight: &Tensor<2>,
    bias: &Tensor<1>,
) -> bool {
    D == 2
        && runs_fused_ops(
            &input.device(),
            &[input.dtype(), weight.dtype(), bias.dtype()],
        )
}

/// `input @ weight + bias` as one op, for an input that [`takes_linear`].
pub(crate) fn linear<const D: usize>(
    input: Tensor<D>,
    weight: Tensor<2>,
    bias: Tensor<1>,
) -> Tensor<D> {
    #[cfg(feature = "fused")]
    {
        ops::linear(input, weight, bias)
    }
    #[cfg(not(feature = "fused"))]
    {
        burn::tensor::module::linear(input, weight, Some(bias))
    }
}

/// Whether `layer` runs `input` through [`conv2d`].
pub(crate) fn takes_conv2d(layer: &Conv2d, input: &Tensor<4>) -> bool {
    let Some(bias) = &layer.bias else {
        return false;
    };
    let [_, channels, height, width] = input.dims();
    let [_, weight_channels, kh, kw] = layer.weight.dims();
    let unpadded = matches!(
        layer.padding,
        PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
    );
    let plain = unpadded && layer.stride == [1, 1] && layer.dilation == [1, 1] && layer.groups == 1;
    let fits = channels == weight_channels && height >= kh && width >= kw;
    let dtypes = [
        input.dtype(),
        layer.weight.val().dtype(),
        bias.val().dtype(),
    ];
    plain
        && fits
        && runs_fused_ops(&input.device(), &dtypes)
        && channels * kh * kw * (height - kh + 1) * (width - kw + 1) <= MAX_COLUMN_VALUES
}

/// The plain convolution (stride 1, no padding) of `input` with `weight`, plus `bias`, as one
/// op, for an input that [`takes_conv2d`].
pub(crate) fn conv2d(input: Tensor<4>, weight: Tensor<4>, bias: Tensor<1>) -> Tensor<4> {
    #[cfg(feature = "fused")]
    {
        ops::conv2d(input, weight, bias)
    }
    #[cfg(not(feature = "fused"))]
    {
        let options = burn::tensor::ops::ConvOptions::new([1, 1], [0, 0], [1, 1], 1);
        burn::tensor::module::conv2d(input, weight, Some(bias), options)
    }
}

/// The lecture's optimizer, `torch.optim.SGD(params, lr)`: plain SGD, no momentum, no weight
/// decay. With the `fused` feature it updates each parameter in one pass (`sgd_update`); without,
/// it is Burn's `SgdConfig::new().init()`. Both compute the same values.
pub(crate) fn sgd() -> ModuleOptimizer {
    #[cfg(feature = "fused")]
    {
        ModuleOptimizer::from(PlainSgd)
    }
    #[cfg(not(feature = "fused"))]
    {
        burn::optim::SgdConfig::new().init()
    }
}

/// See [`sgd`]. It keeps no state between steps.
#[cfg(feature = "fused")]
#[derive(Clone)]
struct PlainSgd;

#[cfg(feature = "fused")]
impl burn::optim::Optimizer for PlainSgd {
    type State<const D: usize> = burn::optim::SgdState<D>;

    fn step<const D: usize>(
        &self,
        learning_rate: f64,
        param: Tensor<D>,
        grad: Tensor<D>,
        _state: Option<Self::State<D>>,
    ) -> (Tensor<D>, Option<Self::State<D>>) {
        (sgd_update(param, grad, learning_rate), None)
    }

    fn to_device<const D: usize>(state: Self::State<D>, _device: &Device) -> Self::State<D> {
        state
    }
}

/// Plain SGD's update of one parameter's values (outside the gradient graph):
/// `param - grad * learning_rate`, value for value what Burn's `Sgd` computes. On the flex
/// backend it is one pass, in place when the values are the parameter's own, and spread over
/// the threads; elsewhere it is Burn's two tensor ops.
#[cfg(feature = "fused")]
fn sgd_update<const D: usize>(param: Tensor<D>, grad: Tensor<D>, learning_rate: f64) -> Tensor<D> {
    if runs_fused_ops(&param.device(), &[param.dtype(), grad.dtype()]) {
        return ops::sgd_update(param, grad, learning_rate);
    }
    param - grad.mul_scalar(learning_rate)
}

/// Runs `work` and returns what it returns: with the `fused` feature, on a thread of the CPU
/// backend's thread pool (rayon's global pool), waiting for it; without, on this thread.
///
/// The matmuls and other parallel operations a training step starts then split their work
/// with the thread that started them, instead of handing it to the pool and waiting for it
/// to come back. Called from a pool thread, `work` simply runs there. The GPU backends do not
/// use this pool; for them it changes nothing. [`crate::train::train`],
/// [`crate::train::evaluate`], [`crate::inspect::Interpretation`] and the benchmark run their
/// loops through it.
pub fn on_pool<R: Send>(work: impl FnOnce() -> R + Send) -> R {
    #[cfg(feature = "fused")]
    {
        rayon::scope(|_| work())
    }
    #[cfg(not(feature = "fused"))]
    {
        work()
    }
}

#[cfg(all(test, feature = "fused"))]
mod tests {
    use super::*;
    use crate::nn::testing::max_difference;
    use burn::tensor::Distribution;

    #[test]
    fn sgd_update_leaves_shared_values_alone() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let param = Tensor::<2>::random([300, 200], Distribution::Default, &device);
        let grad = Tensor::<2>::random([300, 200], Distribution::Default, &device);
        let expected = param.clone() - grad.clone().mul_scalar(0.1);
        let kept = param.clone(); // the update may not write into `kept`'s values
        let updated = sgd_update(param, grad.clone(), 0.1);
        assert_eq!(max_difference(updated, expected.clone()), 0.0);
        assert!(max_difference(kept.clone(), expected.clone()) > 0.0);
        // A strided parameter, and one whose values are its own.
        let transposed = sgd_update(kept.clone().transpose(), grad.clone().transpose(), 0.1);
        assert_eq!(
            max_difference(transposed.transpose(), expected.clone()),
            0.0
        );
        let own = Tensor::<2>::from_data(kept.into_data(), &device);
        assert_eq!(max_difference(sgd_update(own, grad, 0.1), expected), 0.0);
    }
}
