//! The lecture's convolution: a look-alike of Burn's `Conv2d`, with a fused CPU path
//! ([`super::fused`]).

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::{Initializer, PaddingConfig2d};
use burn::tensor::{Device, Tensor};

use super::fused;

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

/// A 2-D convolution: the crate's look-alike of Burn's `Conv2d` (same fields and parameters;
/// [`Conv2d::as_burn`] and `From` convert), with the fused path
/// described in [`super::fused`].
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
        if let Some(bias) = &self.bias
            && fused::takes_conv2d(self, &input)
        {
            return self.recorded(fused::conv2d(input, self.weight.val(), bias.val()));
        }
        self.recorded(self.as_burn().forward(input))
    }

    /// Hands `output` back, noting its shape first when a summary is measuring the model.
    fn recorded(&self, output: Tensor<4>) -> Tensor<4> {
        if super::record::recording() {
            let [c_out, c_in, kh, kw] = self.weight.dims();
            let mut kind = format!("Conv2d {} -> {c_out}, {kh} x {kw}", c_in * self.groups);
            if self.stride != [1, 1] {
                kind += &format!(", stride {:?}", self.stride);
            }
            if !matches!(self.padding, PaddingConfig2d::Valid) {
                kind += &format!(", padding {:?}", self.padding);
            }
            super::record::record(super::record::LayerCall {
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testing::{assert_close, max_difference};
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
        let _random = crate::testing::random_numbers();
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
                assert_eq!(fused::takes_conv2d(&ours, &x), cfg!(feature = "fused"));
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
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        crate::train::seed(&device, 10);
        let (ours, theirs) = pair(&Conv2dConfig::new([2, 3], [3, 2]), &device);
        // [3, 2, 8, 7] as a permuted view: not contiguous.
        let x = Tensor::<4>::random([8, 2, 3, 7], Distribution::Default, &device).swap_dims(0, 2);
        assert_eq!(fused::takes_conv2d(&ours, &x), cfg!(feature = "fused"));
        assert_close(ours.forward(x.clone()), theirs.forward(x));
    }

    #[test]
    fn other_cases_are_burns_conv2d() {
        let _random = crate::testing::random_numbers();
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
        let _random = crate::testing::random_numbers();
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
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let shown = format!("{}", Conv2dConfig::new([1, 10], [7, 7]).init(&device));
        assert!(shown.contains("ch_in: 1"), "{shown}");
        assert!(shown.contains("ch_out: 10"), "{shown}");
        assert!(shown.contains("kernel_size: [7, 7]"), "{shown}");
    }
}
