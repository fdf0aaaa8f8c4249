//! The lecture's layers: Burn's `Linear` and `Conv2d`, with faster paths on the CPU.
//!
//! [`LinearConfig`], [`Linear`], [`Conv2dConfig`] and [`Conv2d`] have the fields, defaults,
//! initialisation and results of `burn::nn::{LinearConfig, Linear}` and
//! `burn::nn::conv::{Conv2dConfig, Conv2d}`, so a model cell reads exactly as it would with
//! Burn's: `LinearConfig::new(784, 600).init(device)`, `self.fc1.forward(x)`. `as_burn()`
//! gives Burn's layer on the same parameters. The difference is speed on the `flex` backend.
//!
//! **Linear.** For a 2-D `f32` input and a layer with a bias, [`Linear::forward`] is one
//! hand-written backend op instead of Burn's matmul and broadcast add: gemm (the matmul
//! library Burn's flex backend uses) multiplies onto the bias rows already in the output, and
//! its backward writes the input, weight and bias gradients once each, skipping the input's
//! when the input needs none (the images). Burn's matmul zero-fills each output and then
//! copies it into an aligned buffer; the 4840 x 600 weight gradient of model 3's `fc1` alone
//! is 11.6 MB.
//!
//! **Conv2d.** For a convolution with stride 1, no padding, no dilation, one group and a
//! bias (both of the lecture's), on an `f32` input, [`Conv2d::forward`] is one hand-written
//! backend op too: each image's patches are copied into a column matrix (im2col) and one gemm
//! multiplies the filters with it onto the bias rows, images in parallel. The backward
//! builds the columns again and gives the weight gradient as gemms summed over the images,
//! the bias gradient as sums, and, when the input needs one (conv2's, in training), the input
//! gradient as `weight^T @ grad` added back onto the pixels (col2im). Burn's flex kernels take
//! a generic path for these small-channel shapes (a direct forward, a transposed convolution
//! for the input gradient).
//!
//! What each op gains, layer by layer and model by model, is measured in the project's
//! `bench/README.md` (`cargo bench -p mnist_lab --bench ops conv` times both layers).
//!
//! Both ops are a Burn backend extension ([`burn::backend::backend_extension`]) with a
//! hand-written backward step for the autodiff backend. Every other case (other ranks or
//! dtypes, a layer without bias, padding, strides, dilation, groups) and every other device
//! is Burn's own `linear` or `conv2d`. The tests hold both paths to Burn's results and
//! gradients (1e-5 relative), and the lecture's seeded figures are unchanged.

#[cfg(feature = "flex")]
mod flex_ops;
mod linear;

pub use linear::{Linear, LinearConfig};

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::{DType, Device, Tensor};

/// The most values one image's column matrix may hold on the fused path (64 MiB of `f32`); a
/// larger image takes Burn's `conv2d` instead.
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
const MAX_COLUMN_VALUES: usize = 16 * 1024 * 1024;

/// Configuration of a [`Conv2d`] layer, field for field Burn's `Conv2dConfig`.
///
/// ```
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// let conv1 = Conv2dConfig::new([1, 10], [7, 7]).init(&device);
/// let images = Tensor::<4>::zeros([2, 1, 28, 28], &device);
/// assert_eq!(conv1.forward(images).dims(), [2, 10, 22, 22]); // 28 - 7 + 1 = 22
/// ```
#[derive(Config, Debug)]
pub struct Conv2dConfig {
    /// Input and output channels: `[in, out]`.
    pub channels: [usize; 2],
    /// Kernel height and width.
    pub kernel_size: [usize; 2],
    /// Step between two applications of the kernel.
    #[config(default = "[1, 1]")]
    pub stride: [usize; 2],
    /// Spacing between kernel elements.
    #[config(default = "[1, 1]")]
    pub dilation: [usize; 2],
    /// Number of channel groups.
    #[config(default = "1")]
    pub groups: usize,
    /// Padding around the input.
    #[config(default = "PaddingConfig2d::Valid")]
    pub padding: PaddingConfig2d,
    /// Whether the layer adds a bias per output channel.
    #[config(default = true)]
    pub bias: bool,
    /// How the weights and bias start (Burn's default, from burn-nn 0.22's `Conv2dConfig`).
    #[config(default = "Initializer::KaimingUniform{gain:1.0/3.0f64.sqrt(),fan_out_only:false}")]
    pub initializer: Initializer,
}

/// A 2-D convolution: Burn's `Conv2d` (same fields and parameters), with the fused path
/// described in [the module docs](self).
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct Conv2d {
    /// Filters: `[channels_out, channels_in / groups, kernel_h, kernel_w]`.
    pub weight: Param<Tensor<4>>,
    /// One bias per output channel, if the layer has one.
    pub bias: Option<Param<Tensor<1>>>,
    /// Step between two applications of the kernel.
    pub stride: [usize; 2],
    /// Kernel height and width.
    pub kernel_size: [usize; 2],
    /// Spacing between kernel elements.
    pub dilation: [usize; 2],
    /// Number of channel groups.
    pub groups: usize,
    /// Padding around the input.
    #[module(skip)]
    pub padding: PaddingConfig2d,
}

impl Conv2dConfig {
    /// Builds the layer on `device`, drawing its weights exactly as Burn's `Conv2dConfig` does.
    pub fn init(&self, device: &Device) -> Conv2d {
        let layer = burn::nn::conv::Conv2dConfig::new(self.channels, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding(self.padding.clone())
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device);
        // The same starting weights on every device: drawn on the CPU, then moved.
        crate::device::draw_on_cpu(layer, device).into()
    }
}

impl From<burn::nn::conv::Conv2d> for Conv2d {
    fn from(layer: burn::nn::conv::Conv2d) -> Self {
        Self {
            weight: layer.weight,
            bias: layer.bias,
            stride: layer.stride,
            kernel_size: layer.kernel_size,
            dilation: layer.dilation,
            groups: layer.groups,
            padding: layer.padding,
        }
    }
}

impl ModuleDisplay for Conv2d {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [channels_out, group_channels_in, _, _] = self.weight.dims();
        content
            .add("ch_in", &format!("{}", group_channels_in * self.groups))
            .add("ch_out", &format!("{channels_out}"))
            .add("stride", &format!("{:?}", self.stride))
            .add("kernel_size", &format!("{:?}", self.kernel_size))
            .add("dilation", &format!("{:?}", self.dilation))
            .add("groups", &self.groups)
            .add_debug_attribute("padding", &self.padding)
            .optional()
    }
}

impl Conv2d {
    /// Applies the convolution.
    ///
    /// # Shapes
    ///
    /// - input: `[batch, channels_in, height, width]`
    /// - output: `[batch, channels_out, height_out, width_out]`, where for stride 1 and no
    ///   padding `height_out = height - kernel_h + 1` (28 - 7 + 1 = 22 for conv1).
    pub fn forward(&self, input: Tensor<4>) -> Tensor<4> {
        #[cfg(feature = "flex")]
        if let Some(bias) = &self.bias
            && self.takes_fused_path(&input)
        {
            return self.recorded(flex_ops::conv2d(input, self.weight.val(), bias.val()));
        }
        self.recorded(self.as_burn().forward(input))
    }

    /// Hands `output` back, noting its shape first when a summary is measuring the model.
    fn recorded(&self, output: Tensor<4>) -> Tensor<4> {
        if crate::inspect::recording() {
            let [c_out, c_in, kh, kw] = self.weight.dims();
            let mut kind = format!("Conv2d {} -> {c_out}, {kh} x {kw}", c_in * self.groups);
            if self.stride != [1, 1] {
                kind += &format!(", stride {:?}", self.stride);
            }
            if !matches!(self.padding, PaddingConfig2d::Valid) {
                kind += &format!(", padding {:?}", self.padding);
            }
            crate::inspect::record(crate::inspect::LayerCall {
                weight: self.weight.id,
                kind,
                output: output.dims().to_vec(),
                fan_in: c_in * kh * kw,
            });
        }
        output
    }

    /// The same layer as Burn's `Conv2d`, sharing these parameters (gradients included).
    pub fn as_burn(&self) -> burn::nn::conv::Conv2d {
        burn::nn::conv::Conv2d {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
            stride: self.stride,
            kernel_size: self.kernel_size,
            dilation: self.dilation,
            groups: self.groups,
            padding: self.padding.clone(),
        }
    }

    /// Whether `input` goes through the fused flex convolution ([`flex_ops`]).
    #[cfg_attr(not(feature = "flex"), allow(dead_code))]
    fn takes_fused_path(&self, input: &Tensor<4>) -> bool {
        let Some(bias) = &self.bias else {
            return false;
        };
        let [_, channels, height, width] = input.dims();
        let [_, weight_channels, kh, kw] = self.weight.dims();
        let unpadded = matches!(
            self.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
        let plain =
            unpadded && self.stride == [1, 1] && self.dilation == [1, 1] && self.groups == 1;
        let fits = channels == weight_channels && height >= kh && width >= kw;
        let dtypes = [input.dtype(), self.weight.val().dtype(), bias.val().dtype()];
        plain
            && fits
            && runs_flex_ops(&input.device(), &dtypes)
            && channels * kh * kw * (height - kh + 1) * (width - kw + 1) <= MAX_COLUMN_VALUES
    }
}

/// Plain SGD's update of one parameter's values (outside the gradient graph):
/// `param - grad * learning_rate`, value for value what Burn's `Sgd` computes. On the flex
/// backend it is one pass, in place when the values are the parameter's own, and spread over
/// the threads; elsewhere it is Burn's two tensor ops.
pub(crate) fn sgd_update<const D: usize>(
    param: Tensor<D>,
    grad: Tensor<D>,
    learning_rate: f64,
) -> Tensor<D> {
    #[cfg(feature = "flex")]
    if runs_flex_ops(&param.device(), &[param.dtype(), grad.dtype()]) {
        return flex_ops::sgd_update(param, grad, learning_rate);
    }
    param - grad.mul_scalar(learning_rate)
}

/// Whether tensors of `dtypes` on `device` go through the hand-written ops of [`flex_ops`]:
/// on the `flex` CPU backend, where they were measured, and `f32` throughout. (Without the
/// `flex` feature it and the layers' guards that call it are only the tests' business.)
#[cfg_attr(not(feature = "flex"), allow(dead_code))]
fn runs_flex_ops(device: &Device, dtypes: &[DType]) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex() && dtypes.iter().all(|&dtype| dtype == DType::F32)
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = (device, dtypes);
        false
    }
}

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

#[cfg(test)]
mod tests {
    use super::testing::{assert_close, max_difference};
    use super::*;
    use burn::tensor::Distribution;

    /// Both layers start from the same parameters: ours, and Burn's holding a copy of them.
    fn pair(config: &Conv2dConfig, device: &Device) -> (Conv2d, burn::nn::conv::Conv2d) {
        let ours = config.init(device);
        let theirs = burn::nn::conv::Conv2d {
            weight: Param::from_tensor(ours.weight.val()),
            bias: ours.bias.as_ref().map(|b| Param::from_tensor(b.val())),
            ..ours.as_burn()
        };
        (ours, theirs)
    }

    #[test]
    fn fused_path_matches_burn_forward_and_gradients() {
        let device = crate::device::cpu().autodiff();
        crate::train::seed(&device, 7);
        for (c_in, c_out, k, side) in [(1, 10, 7, 28), (10, 55, 2, 22), (3, 4, 3, 9), (2, 5, 2, 6)]
        {
            let config = Conv2dConfig::new([c_in, c_out], [k, k]);
            let (ours, theirs) = pair(&config, &device);
            for tracked in [false, true] {
                let x = Tensor::<4>::random([5, c_in, side, side], Distribution::Default, &device);
                let x = if tracked { x.require_grad() } else { x };
                // The path is taken on flex only; elsewhere this compares Burn with Burn.
                assert_eq!(ours.takes_fused_path(&x), cfg!(feature = "flex"));
                let out = side - k + 1;
                let g = Tensor::<4>::random([5, c_out, out, out], Distribution::Default, &device);
                let y_ours = ours.forward(x.clone());
                let y_theirs = theirs.forward(x.clone());
                assert_close(y_ours.clone(), y_theirs.clone());

                let grads_ours = (y_ours * g.clone()).sum().backward();
                let grads_theirs = (y_theirs * g).sum().backward();
                let w_ours = ours.weight.val().grad(&grads_ours).unwrap();
                let w_theirs = theirs.weight.val().grad(&grads_theirs).unwrap();
                assert_close(w_ours, w_theirs);
                let b_ours = ours.bias.as_ref().unwrap().val().grad(&grads_ours).unwrap();
                let b_theirs = theirs.bias.as_ref().unwrap().val().grad(&grads_theirs);
                assert_close(b_ours, b_theirs.unwrap());
                let x_ours = x.grad(&grads_ours);
                assert_eq!(x_ours.is_some(), tracked);
                if let Some(x_ours) = x_ours {
                    assert_close(x_ours, x.grad(&grads_theirs).unwrap());
                }
            }
        }
    }

    #[test]
    fn evaluation_on_a_strided_input_matches_burn() {
        let device = crate::device::cpu();
        crate::train::seed(&device, 10);
        let (ours, theirs) = pair(&Conv2dConfig::new([2, 3], [3, 2]), &device);
        // [3, 2, 8, 7] as a permuted view: not contiguous.
        let x = Tensor::<4>::random([8, 2, 3, 7], Distribution::Default, &device).swap_dims(0, 2);
        assert_eq!(ours.takes_fused_path(&x), cfg!(feature = "flex"));
        assert_close(ours.forward(x.clone()), theirs.forward(x));
    }

    #[test]
    fn sgd_update_leaves_shared_values_alone() {
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

    #[test]
    fn other_cases_are_burns_conv2d() {
        let device = crate::device::cpu().autodiff();
        crate::train::seed(&device, 8);
        let configs = [
            Conv2dConfig::new([2, 3], [3, 3]).with_padding(PaddingConfig2d::Same),
            Conv2dConfig::new([2, 3], [3, 3]).with_stride([2, 2]),
            Conv2dConfig::new([2, 4], [2, 2]).with_groups(2),
            Conv2dConfig::new([2, 3], [3, 3]).with_bias(false),
        ];
        for config in configs {
            let (ours, theirs) = pair(&config, &device);
            let x = Tensor::<4>::random([3, 2, 8, 8], Distribution::Default, &device);
            let y_ours = ours.forward(x.clone());
            let y_theirs = theirs.forward(x);
            assert_eq!(y_ours.dims(), y_theirs.dims());
            assert!(max_difference(y_ours, y_theirs) <= 1e-6, "{config:?}");
        }
    }

    #[test]
    fn initialisation_matches_burns_config() {
        let device = crate::device::cpu();
        // Parameters are drawn on first use, so each layer's are drawn right after its seed.
        crate::train::seed(&device, 9);
        let ours = Conv2dConfig::new([1, 10], [7, 7]).init(&device);
        let _ = (ours.weight.val(), ours.bias.as_ref().map(|b| b.val()));
        crate::train::seed(&device, 9);
        let theirs = burn::nn::conv::Conv2dConfig::new([1, 10], [7, 7]).init(&device);
        let _ = (theirs.weight.val(), theirs.bias.as_ref().map(|b| b.val()));
        assert_eq!(max_difference(ours.weight.val(), theirs.weight.val()), 0.0);
        assert_eq!(ours.num_params(), theirs.num_params());
        let from: Conv2d = theirs.into();
        assert_eq!(max_difference(ours.weight.val(), from.weight.val()), 0.0);
    }

    #[test]
    fn shows_like_burns_layer() {
        let device = crate::device::cpu();
        let shown = format!("{}", Conv2dConfig::new([1, 10], [7, 7]).init(&device));
        assert!(shown.contains("ch_in: 1"), "{shown}");
        assert!(shown.contains("ch_out: 10"), "{shown}");
        assert!(shown.contains("kernel_size: [7, 7]"), "{shown}");
    }
}
