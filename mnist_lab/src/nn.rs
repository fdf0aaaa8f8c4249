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
//! is 11.6 MB. Training is 8 to 14 % faster on all four models (`mnist-lab bench`, two cores).
//!
//! **Conv2d.** When the input is not part of the gradient graph (the images themselves, as
//! for the lecture's `conv1`) and the convolution has stride 1, no padding, no dilation and
//! one group, [`Conv2d::forward`] lays the image patches out as columns (im2col) and
//! multiplies them with the filters in one batched matmul. Burn's autodiff then
//! differentiates that matmul for the weight gradient. On two cores this takes conv1 of
//! models 3 and 4 (1 -> 10 channels, 7 x 7, batch 100) from 5.5 to 8.3 ms to 1.7 ms per
//! training step (forward, weight and bias gradients), and its forward alone from 2.2 ms to
//! 0.7 ms (`cargo bench -p mnist_lab --bench ops conv`).
//!
//! Every other case (inputs of other ranks or dtypes, a layer without bias, an input to a
//! convolution that needs its own gradient, as conv2's does in training, padding, strides,
//! groups) and every other device is Burn's own `linear` or `conv2d`.

#[cfg(feature = "flex")]
mod flex_ops;
mod linear;

pub use linear::{Linear, LinearConfig};

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::{DType, Device, Tensor, TensorData};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// The most values the column matrix of the im2col path may hold (64 MiB of `f32`); a larger
/// input takes Burn's `conv2d` instead.
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

/// A 2-D convolution: Burn's `Conv2d` (same fields and parameters), with the im2col path
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
        burn::nn::conv::Conv2dConfig::new(self.channels, self.kernel_size)
            .with_stride(self.stride)
            .with_dilation(self.dilation)
            .with_groups(self.groups)
            .with_padding(self.padding.clone())
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .init(device)
            .into()
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
        if self.takes_im2col_path(&input) {
            self.forward_im2col(input)
        } else {
            self.as_burn().forward(input)
        }
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

    /// Whether `input` goes through the im2col path.
    fn takes_im2col_path(&self, input: &Tensor<4>) -> bool {
        let [batch, channels, height, width] = input.dims();
        let [_, weight_channels, kh, kw] = self.weight.dims();
        let unpadded = matches!(
            self.padding,
            PaddingConfig2d::Valid | PaddingConfig2d::Explicit(0, 0, 0, 0)
        );
        let plain =
            unpadded && self.stride == [1, 1] && self.dilation == [1, 1] && self.groups == 1;
        let fits = channels == weight_channels && height >= kh && width >= kw;
        plain
            && fits
            && !input.is_tracked()
            && is_flex(&input.device())
            && batch * channels * kh * kw * (height - kh + 1) * (width - kw + 1)
                <= MAX_COLUMN_VALUES
    }

    /// The convolution as one batched matmul of the filters with the image patches.
    fn forward_im2col(&self, input: Tensor<4>) -> Tensor<4> {
        let [batch, channels, height, width] = input.dims();
        let [channels_out, _, kh, kw] = self.weight.dims();
        let (height_out, width_out) = (height - kh + 1, width - kw + 1);
        let columns = im2col(input, [kh, kw]); // [batch, channels * kh * kw, h_out * w_out]
        let filters: Tensor<3> = self
            .weight
            .val()
            .reshape([1, channels_out, channels * kh * kw]);
        let mut output: Tensor<3> = filters.matmul(columns); // [batch, channels_out, h_out * w_out]
        if let Some(bias) = &self.bias {
            output = output + bias.val().reshape([1, channels_out, 1]);
        }
        output.reshape([batch, channels_out, height_out, width_out])
    }
}

/// The patches of `input` under a `kernel` moved with stride 1, as columns:
/// `[batch, channels * kh * kw, height_out * width_out]`, row `(c, i, j)` holding
/// `input[b, c, y + i, x + j]` at column `y * width_out + x`.
fn im2col(input: Tensor<4>, [kh, kw]: [usize; 2]) -> Tensor<3> {
    let [batch, channels, height, width] = input.dims();
    let (height_out, width_out) = (height - kh + 1, width - kw + 1);
    let shape = [batch, channels * kh * kw, height_out * width_out];
    if input.dtype() == DType::F32 {
        // One pass of row copies straight from the pixels, a batch per task: twice as fast
        // as Burn's strided copy of the unfolded view below.
        let device = input.device();
        let data = input.into_data();
        if let Ok(pixels) = data.as_slice::<f32>() {
            let patch_len = shape[1] * shape[2];
            // Every value is written below, so the buffer is not zeroed first (9.5 MB for conv1).
            let mut columns: Vec<f32> = Vec::with_capacity(batch * patch_len);
            let fill = |(b, dst): (usize, &mut [MaybeUninit<f32>])| {
                for (row, dst) in dst.chunks_exact_mut(shape[2]).enumerate() {
                    let (c, i, j) = (row / (kh * kw), row / kw % kh, row % kw);
                    for (y, dst) in dst.chunks_exact_mut(width_out).enumerate() {
                        let start = ((b * channels + c) * height + y + i) * width + j;
                        dst.write_copy_of_slice(&pixels[start..start + width_out]);
                    }
                }
            };
            columns.spare_capacity_mut()[..batch * patch_len]
                .par_chunks_mut(patch_len)
                .enumerate()
                .for_each(fill);
            // SAFETY: `fill` wrote all `batch * patch_len` values: the chunks tile each batch's
            // `patch_len` exactly (rows of `height_out * width_out`, runs of `width_out`).
            unsafe { columns.set_len(batch * patch_len) };
            return Tensor::from_data(TensorData::new(columns, shape), &device);
        }
        return im2col_unfold(Tensor::from_data(data, &device), [kh, kw]);
    }
    im2col_unfold(input, [kh, kw])
}

/// [`im2col`] through Burn's ops: the unfolded view, copied once.
fn im2col_unfold(input: Tensor<4>, [kh, kw]: [usize; 2]) -> Tensor<3> {
    let [batch, channels, height, width] = input.dims();
    // [batch, channels, height_out, width_out, kh, kw], a view on the input ...
    let patches: Tensor<5> = input.unfold::<5, usize>(2, kh, 1);
    let patches: Tensor<6> = patches.unfold::<6, usize>(3, kw, 1);
    // ... copied into [batch, channels * kh * kw, height_out * width_out].
    patches.permute([0, 1, 4, 5, 2, 3]).reshape([
        batch,
        channels * kh * kw,
        (height - kh + 1) * (width - kw + 1),
    ])
}

/// Whether `device` is the `flex` CPU backend, where the im2col path was measured.
fn is_flex(device: &Device) -> bool {
    #[cfg(feature = "flex")]
    {
        *device == Device::flex()
    }
    #[cfg(not(feature = "flex"))]
    {
        let _ = device;
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
    fn im2col_path_matches_burn_forward_and_gradients() {
        let device = crate::device::cpu().autodiff();
        crate::train::seed(&device, 7);
        for (c_in, c_out, k, side) in [(1, 10, 7, 28), (3, 4, 3, 9), (2, 5, 2, 6)] {
            let config = Conv2dConfig::new([c_in, c_out], [k, k]);
            let (ours, theirs) = pair(&config, &device);
            let x = Tensor::<4>::random([5, c_in, side, side], Distribution::Default, &device);
            // The path is taken on flex only; its arithmetic is checked on any CPU backend.
            assert_eq!(ours.takes_im2col_path(&x), cfg!(feature = "flex"));
            let out = side - k + 1;
            let g = Tensor::<4>::random([5, c_out, out, out], Distribution::Default, &device);
            let y_ours = ours.forward_im2col(x.clone());
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
        }
    }

    #[test]
    fn im2col_copies_match_burns_unfold() {
        let device = crate::device::cpu();
        let x = Tensor::<4>::random([3, 2, 7, 6], Distribution::Default, &device);
        for kernel in [[3, 2], [1, 1], [7, 6]] {
            let fast = im2col(x.clone(), kernel);
            let unfolded = im2col_unfold(x.clone(), kernel);
            assert_eq!(fast.dims(), unfolded.dims());
            assert_eq!(max_difference(fast, unfolded), 0.0, "{kernel:?}");
        }
        // Pixel (b 1, c 1, y 2, x 3) is column 2 * 5 + 3 of row (c 1, i 0, j 0) for a 2 x 2 kernel.
        let columns = im2col(x.clone(), [2, 2]);
        let at: f32 = columns.slice([1..2, 4..5, 13..14]).into_scalar();
        let pixel: f32 = x.slice([1..2, 1..2, 2..3, 3..4]).into_scalar();
        assert_eq!(at, pixel);
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
    fn a_tracked_input_takes_burns_path() {
        let device = crate::device::cpu().autodiff();
        let conv = Conv2dConfig::new([2, 3], [2, 2]).init(&device);
        let images = Tensor::<4>::ones([1, 2, 5, 5], &device);
        assert_eq!(conv.takes_im2col_path(&images), cfg!(feature = "flex"));
        assert!(!conv.takes_im2col_path(&images.require_grad()));
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
