//! The lecture's four models, and the [`Classifier`] trait any model implements to be
//! trained by [`crate::train::train`].
//!
//! | model | layers |
//! |-------|--------|
//! | [`FcNet`] | Linear 784->600->600->10, no nonlinearity |
//! | [`FcReluNet`] | the same with ReLU between the layers |
//! | [`ConvNet`] | Conv2d(1, 10, k=7) -> 10x22x22 = 4840 -> fc-relu |
//! | [`Conv2Net`] | + Conv2d(10, 55, k=2) -> 55x21x21 = 24255 -> fc-relu |
//!
//! As in the lecture, no ReLU follows the convolutions. Each is built as the lecture builds
//! it, `FcNet::new(784, 600, 10, &device)`, the idiom the notebooks' own structs follow; their
//! accuracies are in the README ("Results on mnist-mini").

use crate::data::IMAGE_SIDE;
pub use crate::nn::Classifier;
use crate::nn::{Conv2d, Conv2dConfig, Linear, LinearConfig};
use burn::config::Config;
use burn::module::Module;
use burn::nn::Relu;
use burn::tensor::{Device, Tensor};

/// Multiply-accumulates of the three Linear layers `input -> hidden -> hidden -> classes`.
fn mlp_macs(input: usize, hidden: usize, classes: usize) -> u64 {
    (input * hidden + hidden * hidden + hidden * classes) as u64
}

/// Multiply-accumulates of a stride-1 convolution that gives `channels_out` maps of
/// `side_out x side_out` from `channels_in` channels with a `kernel x kernel` kernel.
fn conv_macs(channels_in: usize, channels_out: usize, kernel: usize, side_out: usize) -> u64 {
    (channels_out * side_out * side_out * channels_in * kernel * kernel) as u64
}

/// Model 1: three fully-connected layers back to back, no nonlinearity.
#[derive(Module, Debug)]
pub struct FcNet {
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

/// The sizes of an [`FcNet`] (what [`FcNet::new`] takes), as one value: for its count of
/// multiply-accumulates and to save beside its weights.
#[derive(Config, Debug)]
pub struct FcNetConfig {
    /// Pixels per image: 28 x 28 = 784.
    pub input_size: usize,
    /// Width of the two hidden layers (the lecture uses 600).
    pub hidden_size: usize,
    /// Digits to tell apart: 10.
    pub num_classes: usize,
}

impl FcNetConfig {
    /// Multiply-accumulates in one image's forward pass.
    pub fn forward_macs(&self) -> u64 {
        mlp_macs(self.input_size, self.hidden_size, self.num_classes)
    }

    /// Creates the model with freshly initialised weights on `device` (what `new` does).
    pub(crate) fn init(&self, device: &Device) -> FcNet {
        FcNet {
            fc1: LinearConfig::new(self.input_size, self.hidden_size).init(device),
            fc2: LinearConfig::new(self.hidden_size, self.hidden_size).init(device),
            fc3: LinearConfig::new(self.hidden_size, self.num_classes).init(device),
        }
    }
}

impl FcNet {
    /// Model 1 with freshly initialised weights on `device`: `input_size` pixels in, two hidden
    /// layers of `hidden_size`, `num_classes` scores out, as the lecture builds it.
    ///
    /// ```
    /// use mnist_lab::models::FcNet;
    ///
    /// let model = FcNet::new(784, 600, 10, &mnist_lab::device::cpu());
    /// # let _ = model;
    /// ```
    pub fn new(input_size: usize, hidden_size: usize, num_classes: usize, device: &Device) -> Self {
        FcNetConfig::new(input_size, hidden_size, num_classes).init(device)
    }
}

impl Classifier for FcNet {
    /// # Shapes
    /// - images: `[batch, 1, 28, 28]`
    /// - output: `[batch, num_classes]`
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = images.flatten(1, 3); // [batch, 784]
        let x = self.fc1.forward(x); // [batch, hidden]
        let x = self.fc2.forward(x); // [batch, hidden]
        self.fc3.forward(x) // [batch, 10]
    }
}

/// Model 2: [`FcNet`] with one ReLU reused between the layers (not after the last).
#[derive(Module, Debug)]
pub struct FcReluNet {
    fc1: Linear,
    relu: Relu,
    fc2: Linear,
    fc3: Linear,
}

/// The sizes of an [`FcReluNet`] (what [`FcReluNet::new`] takes), as one value: for its count of
/// multiply-accumulates and to save beside its weights.
#[derive(Config, Debug)]
pub struct FcReluNetConfig {
    /// Pixels per image: 28 x 28 = 784.
    pub input_size: usize,
    /// Width of the two hidden layers (the lecture uses 600).
    pub hidden_size: usize,
    /// Digits to tell apart: 10.
    pub num_classes: usize,
}

impl FcReluNetConfig {
    /// Multiply-accumulates in one image's forward pass (the ReLU adds none).
    pub fn forward_macs(&self) -> u64 {
        mlp_macs(self.input_size, self.hidden_size, self.num_classes)
    }

    /// Creates the model with freshly initialised weights on `device` (what `new` does).
    pub(crate) fn init(&self, device: &Device) -> FcReluNet {
        FcReluNet {
            fc1: LinearConfig::new(self.input_size, self.hidden_size).init(device),
            relu: Relu::new(),
            fc2: LinearConfig::new(self.hidden_size, self.hidden_size).init(device),
            fc3: LinearConfig::new(self.hidden_size, self.num_classes).init(device),
        }
    }
}

impl FcReluNet {
    /// Model 2 with freshly initialised weights on `device`, as the lecture builds it: the sizes
    /// of [`FcNet::new`].
    pub fn new(input_size: usize, hidden_size: usize, num_classes: usize, device: &Device) -> Self {
        FcReluNetConfig::new(input_size, hidden_size, num_classes).init(device)
    }
}

impl Classifier for FcReluNet {
    /// # Shapes
    /// - images: `[batch, 1, 28, 28]`
    /// - output: `[batch, num_classes]`
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = images.flatten(1, 3); // [batch, 784]
        let x = self.relu.forward(self.fc1.forward(x)); // [batch, hidden]
        let x = self.relu.forward(self.fc2.forward(x)); // [batch, hidden]
        self.fc3.forward(x) // [batch, 10]
    }
}

/// Model 3: one convolution, then the ReLU network on its 10 x 22 x 22 = 4840 outputs.
#[derive(Module, Debug)]
pub struct ConvNet {
    conv1: Conv2d,
    fc1: Linear,
    relu: Relu,
    fc2: Linear,
    fc3: Linear,
}

/// The sizes of a [`ConvNet`] (the widths [`ConvNet::new`] takes, and the lecture's kernel), as
/// one value: for its count of multiply-accumulates and to save beside its weights.
#[derive(Config, Debug)]
pub struct ConvNetConfig {
    /// Width of the two hidden layers (the lecture uses 600).
    pub hidden_size: usize,
    /// Digits to tell apart: 10.
    pub num_classes: usize,
    /// Filters in `conv1`.
    #[config(default = 10)]
    pub conv1_channels: usize,
    /// `conv1`'s kernel side.
    #[config(default = 7)]
    pub conv1_kernel: usize,
}

impl ConvNetConfig {
    /// The side of `conv1`'s output maps: image side - kernel + 1 (28 - 7 + 1 = 22).
    pub fn conv1_side(&self) -> usize {
        IMAGE_SIDE - self.conv1_kernel + 1
    }

    /// Values per image after `conv1`: channels x side x side (10 x 22 x 22 = 4840).
    pub fn flat_size(&self) -> usize {
        self.conv1_channels * self.conv1_side() * self.conv1_side()
    }

    /// Multiply-accumulates in one image's forward pass.
    pub fn forward_macs(&self) -> u64 {
        let (channels, kernel) = (self.conv1_channels, self.conv1_kernel);
        conv_macs(1, channels, kernel, self.conv1_side())
            + mlp_macs(self.flat_size(), self.hidden_size, self.num_classes)
    }

    /// Creates the model with freshly initialised weights on `device` (what `new` does).
    pub(crate) fn init(&self, device: &Device) -> ConvNet {
        let k = self.conv1_kernel;
        ConvNet {
            conv1: Conv2dConfig::new([1, self.conv1_channels], [k, k]).init(device),
            fc1: LinearConfig::new(self.flat_size(), self.hidden_size).init(device),
            relu: Relu::new(),
            fc2: LinearConfig::new(self.hidden_size, self.hidden_size).init(device),
            fc3: LinearConfig::new(self.hidden_size, self.num_classes).init(device),
        }
    }
}

impl ConvNet {
    /// Model 3 with freshly initialised weights on `device`, as the lecture builds it: `conv1`
    /// (10 filters of 7 x 7), then two hidden layers of `hidden_size` and `num_classes` scores.
    ///
    /// ```
    /// use mnist_lab::models::ConvNet;
    ///
    /// let model = ConvNet::new(600, 10, &mnist_lab::device::cpu());
    /// # let _ = model;
    /// ```
    pub fn new(hidden_size: usize, num_classes: usize, device: &Device) -> Self {
        ConvNetConfig::new(hidden_size, num_classes).init(device)
    }
}

impl Classifier for ConvNet {
    /// # Shapes
    /// - images: `[batch, 1, 28, 28]`
    /// - output: `[batch, num_classes]`
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv1.forward(images); // [batch, 10, 22, 22]
        let x = x.flatten(1, 3); // [batch, 4840]
        let x = self.relu.forward(self.fc1.forward(x)); // [batch, hidden]
        let x = self.relu.forward(self.fc2.forward(x)); // [batch, hidden]
        self.fc3.forward(x) // [batch, 10]
    }
}

/// Model 4: two convolutions, then the ReLU network on 55 x 21 x 21 = 24255 values.
#[derive(Module, Debug)]
pub struct Conv2Net {
    conv1: Conv2d,
    conv2: Conv2d,
    fc1: Linear,
    relu: Relu,
    fc2: Linear,
    fc3: Linear,
}

/// The sizes of a [`Conv2Net`] (the widths [`Conv2Net::new`] takes, and the lecture's
/// kernels), as one value: for its count of multiply-accumulates and to save beside its
/// weights.
#[derive(Config, Debug)]
pub struct Conv2NetConfig {
    /// Width of the two hidden layers (the lecture uses 600).
    pub hidden_size: usize,
    /// Digits to tell apart: 10.
    pub num_classes: usize,
    /// Filters in `conv1`.
    #[config(default = 10)]
    pub conv1_channels: usize,
    /// `conv1`'s kernel side.
    #[config(default = 7)]
    pub conv1_kernel: usize,
    /// Filters in `conv2`.
    #[config(default = 55)]
    pub conv2_channels: usize,
    /// `conv2`'s kernel side.
    #[config(default = 2)]
    pub conv2_kernel: usize,
}

impl Conv2NetConfig {
    /// The side of `conv1`'s output maps: image side - kernel + 1 (28 - 7 + 1 = 22).
    pub fn conv1_side(&self) -> usize {
        IMAGE_SIDE - self.conv1_kernel + 1
    }

    /// The side of `conv2`'s output maps: conv1's side - kernel + 1 (22 - 2 + 1 = 21).
    pub fn conv2_side(&self) -> usize {
        self.conv1_side() - self.conv2_kernel + 1
    }

    /// Values per image after `conv2`: channels x side x side (55 x 21 x 21 = 24255).
    pub fn flat_size(&self) -> usize {
        self.conv2_channels * self.conv2_side() * self.conv2_side()
    }

    /// Multiply-accumulates in one image's forward pass.
    pub fn forward_macs(&self) -> u64 {
        let (c1, c2) = (self.conv1_channels, self.conv2_channels);
        conv_macs(1, c1, self.conv1_kernel, self.conv1_side())
            + conv_macs(c1, c2, self.conv2_kernel, self.conv2_side())
            + mlp_macs(self.flat_size(), self.hidden_size, self.num_classes)
    }

    /// Creates the model with freshly initialised weights on `device` (what `new` does).
    pub(crate) fn init(&self, device: &Device) -> Conv2Net {
        let (k1, k2) = (self.conv1_kernel, self.conv2_kernel);
        let (c1, c2) = (self.conv1_channels, self.conv2_channels);
        Conv2Net {
            conv1: Conv2dConfig::new([1, c1], [k1, k1]).init(device),
            conv2: Conv2dConfig::new([c1, c2], [k2, k2]).init(device),
            fc1: LinearConfig::new(self.flat_size(), self.hidden_size).init(device),
            relu: Relu::new(),
            fc2: LinearConfig::new(self.hidden_size, self.hidden_size).init(device),
            fc3: LinearConfig::new(self.hidden_size, self.num_classes).init(device),
        }
    }
}

impl Conv2Net {
    /// Model 4 with freshly initialised weights on `device`, as the lecture builds it: `conv1`
    /// (10 filters of 7 x 7), `conv2` (55 of 2 x 2), then two hidden layers of `hidden_size`
    /// and `num_classes` scores.
    pub fn new(hidden_size: usize, num_classes: usize, device: &Device) -> Self {
        Conv2NetConfig::new(hidden_size, num_classes).init(device)
    }
}

impl Classifier for Conv2Net {
    /// # Shapes
    /// - images: `[batch, 1, 28, 28]`
    /// - output: `[batch, num_classes]`
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv1.forward(images); // [batch, 10, 22, 22]
        let x = self.conv2.forward(x); // [batch, 55, 21, 21]
        let x = x.flatten(1, 3); // [batch, 24255]
        let x = self.relu.forward(self.fc1.forward(x)); // [batch, hidden]
        let x = self.relu.forward(self.fc2.forward(x)); // [batch, hidden]
        self.fc3.forward(x) // [batch, 10]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_the_kernel_settings() {
        let _random = crate::testing::random_numbers();
        // The lecture's models are checked against a measured summary in tests/inspect.rs.
        let conv = ConvNetConfig::new(8, 10).with_conv1_kernel(5);
        assert_eq!(conv.flat_size(), 10 * 24 * 24);
        let conv2 = Conv2NetConfig::new(8, 10).with_conv2_kernel(3);
        assert_eq!(conv2.flat_size(), 55 * 20 * 20);
        let measured = crate::inspect::summary(&conv2.init(&crate::device::cpu())).unwrap();
        assert_eq!(conv2.forward_macs(), measured.total_multiply_adds);
    }
}
