//! Student-proofing: a model checked on one sample batch before training, and panics turned
//! into short messages.

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{Device, Tensor};

use crate::nn::Classifier;
use crate::panics::{first_line, quietly};
pub use crate::panics::{install_panic_hook, panic_message};
use crate::{Error, Result};

/// A layer found in a model, in field order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layer {
    /// The field's name (a dotted path when nested), e.g. `fc1`.
    pub name: String,
    /// What kind of layer it is.
    pub kind: LayerKind,
}

/// The layers [`layers`] knows how to reason about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LayerKind {
    /// A fully-connected layer taking `inputs` values and giving `outputs`.
    Linear {
        /// Values it takes per image.
        inputs: usize,
        /// Values it gives per image.
        outputs: usize,
    },
    /// A 2-D convolution (assumed stride 1, no padding, as in the lecture).
    Conv2d {
        /// Channels it takes.
        in_channels: usize,
        /// Channels (filters) it gives.
        out_channels: usize,
        /// Kernel height and width.
        kernel: [usize; 2],
    },
}

#[derive(Default)]
struct LayerCollector {
    path: Vec<(String, String)>,
    layers: Vec<Layer>,
}

impl ModuleVisitor for LayerCollector {
    fn enter_module(&mut self, name: &str, container_type: &str) {
        self.path
            .push((name.to_string(), container_type.to_string()));
    }

    fn exit_module(&mut self, _name: &str, _container_type: &str) {
        self.path.pop();
    }

    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let Some(at) = self
            .path
            .iter()
            .rposition(|(_, kind)| kind == "Struct:Linear" || kind == "Struct:Conv2d")
        else {
            return;
        };
        // `enter_module` names the parameter (`weight`) with its container's type, so the
        // layer's own name is the entry before it.
        let name: Vec<&str> = self.path[..at].iter().map(|(n, _)| n.as_str()).collect();
        let name = if name.is_empty() {
            "model".to_string()
        } else {
            name.join(".")
        };
        if self.layers.last().is_some_and(|layer| layer.name == name) {
            return; // the bias of a layer already recorded
        }
        let dims = param.lazy_shape().dims::<D>();
        let kind = match (self.path[at].1.as_str(), dims.as_slice()) {
            ("Struct:Linear", &[inputs, outputs]) => LayerKind::Linear { inputs, outputs },
            ("Struct:Conv2d", &[out_channels, in_channels, kh, kw]) => LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel: [kh, kw],
            },
            _ => return,
        };
        self.layers.push(Layer { name, kind });
    }
}

/// The Linear and Conv2d layers of `model`, in the order its struct declares them.
pub fn layers<M: Module>(model: &M) -> Vec<Layer> {
    let mut collector = LayerCollector::default();
    model.visit(&mut collector);
    collector.layers
}

/// Runs `model` on two blank images and explains, layer by layer, any size that does not fit
/// MNIST's 1 x 28 x 28 images or its `num_classes` classes.
///
/// ```
/// use mnist_lab::models::ConvNet;
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// // Model 3 as the lecture builds it: conv1 gives 4840 values and fc1 takes 4840.
/// let model = ConvNet::new(600, 10, &device);
/// assert!(mnist_lab::check::check_model(&model, &device, 10).is_ok());
/// ```
pub fn check_model<M: Classifier>(model: &M, device: &Device, num_classes: usize) -> Result<()> {
    let sample = Tensor::<4>::zeros([2, 1, 28, 28], device);
    let model = model.valid();
    let outcome = quietly(|| model.forward(sample).dims());
    let layers = layers(&model);
    match outcome {
        Ok([_, outputs]) if outputs == num_classes => Ok(()),
        Ok([_, outputs]) => {
            let last = layers
                .iter()
                .rev()
                .find(|layer| matches!(layer.kind, LayerKind::Linear { .. }));
            let (name, fix) = match last {
                Some(Layer {
                    name,
                    kind: LayerKind::Linear { inputs, .. },
                }) => (
                    name.clone(),
                    format!(
                        " Make {name} a LinearConfig::new({inputs}, {num_classes}) (num_classes) \
                         in the model cell, then re-run that cell and the ones after it."
                    ),
                ),
                _ => ("the last layer".to_string(), String::new()),
            };
            Err(Error::ModelShape {
                message: format!(
                    "the model does not fit the task: {name} gives {outputs} outputs per image, \
                     but the loss needs {num_classes}, one score per digit.{fix}"
                ),
            })
        }
        Err(panic) => Err(Error::ModelShape {
            message: match explain(&layers) {
                Some(message) => message,
                None => format!(
                    "the model failed on a sample batch of MNIST images ([2, 1, 28, 28]): {}. \
                     Check the layer sizes in the model cell and its forward.",
                    first_line(&panic)
                ),
            },
        }),
    }
}

/// Follows an image through `layers` and describes the first size that does not fit.
fn explain(layers: &[Layer]) -> Option<String> {
    // What the previous layer gives: channels x height x width, or a flat vector.
    enum Shape {
        Image(usize, usize, usize),
        Flat(usize),
    }
    let mut shape = Shape::Image(1, 28, 28);
    let mut source = "the image".to_string();
    for layer in layers {
        let name = &layer.name;
        match (&layer.kind, &shape) {
            (
                &LayerKind::Conv2d {
                    in_channels,
                    out_channels,
                    kernel: [kh, kw],
                },
                &Shape::Image(c, h, w),
            ) => {
                if in_channels != c {
                    return Some(format!(
                        "the model does not fit the data: {source} gives {c} channels; {name} \
                         takes {in_channels}. Make {name} a Conv2dConfig::new([{c}, \
                         {out_channels}], [{kh}, {kw}]) in the model cell, then re-run that cell \
                         and the ones after it."
                    ));
                }
                if kh > h || kw > w {
                    return Some(format!(
                        "the model does not fit the data: {source} gives {h} x {w} images, \
                         smaller than {name}'s {kh} x {kw} kernel. Use a smaller kernel."
                    ));
                }
                shape = Shape::Image(out_channels, h - kh + 1, w - kw + 1);
                source = name.clone();
            }
            (&LayerKind::Conv2d { .. }, &Shape::Flat(_)) => return None,
            (&LayerKind::Linear { inputs, outputs }, _) => {
                let (values, arithmetic) = match shape {
                    Shape::Image(c, h, w) => {
                        (c * h * w, format!("{c} x {h} x {w} = {}", c * h * w))
                    }
                    Shape::Flat(n) => (n, n.to_string()),
                };
                if inputs != values {
                    return Some(format!(
                        "the model does not fit the data: {source} gives {arithmetic} values per \
                         image; {name} takes {inputs}. Make {name} a LinearConfig::new({values}, \
                         {outputs}) in the model cell (a k x k kernel takes n x n to (n - k + 1) \
                         x (n - k + 1)), then re-run that cell and the ones after it."
                    ));
                }
                shape = Shape::Flat(outputs);
                source = name.clone();
            }
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{Conv2Net, ConvNet, FcNet};

    fn linear(name: &str, inputs: usize, outputs: usize) -> Layer {
        Layer {
            name: name.into(),
            kind: LayerKind::Linear { inputs, outputs },
        }
    }

    fn conv(name: &str, in_channels: usize, out_channels: usize, k: usize) -> Layer {
        Layer {
            name: name.into(),
            kind: LayerKind::Conv2d {
                in_channels,
                out_channels,
                kernel: [k, k],
            },
        }
    }

    #[test]
    fn lists_the_lecture_layers_in_order() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let found = layers(&Conv2Net::new(600, 10, &device));
        assert_eq!(
            found,
            vec![
                conv("conv1", 1, 10, 7),
                conv("conv2", 10, 55, 2),
                linear("fc1", 24255, 600),
                linear("fc2", 600, 600),
                linear("fc3", 600, 10),
            ]
        );
        assert_eq!(layers(&FcNet::new(784, 600, 10, &device)).len(), 3);
    }

    #[test]
    fn explains_fc1_left_at_784_after_conv1() {
        let message = explain(&[conv("conv1", 1, 10, 7), linear("fc1", 784, 600)]).unwrap();
        assert!(
            message.contains("conv1 gives 10 x 22 x 22 = 4840 values per image; fc1 takes 784"),
            "{message}"
        );
    }

    #[test]
    fn explains_fc1_left_at_4840_after_conv2() {
        let layers = [
            conv("conv1", 1, 10, 7),
            conv("conv2", 10, 55, 2),
            linear("fc1", 4840, 600),
        ];
        let message = explain(&layers).unwrap();
        assert!(
            message.contains("conv2 gives 55 x 21 x 21 = 24255 values per image; fc1 takes 4840"),
            "{message}"
        );
    }

    #[test]
    fn the_lecture_models_pass_the_check() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        check_model(&ConvNet::new(32, 10, &device), &device, 10).unwrap();
        check_model(&FcNet::new(784, 32, 10, &device), &device, 10).unwrap();
    }

    #[test]
    fn a_wrong_number_of_outputs_is_reported() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let model = FcNet::new(784, 32, 7, &device);
        let message = check_model(&model, &device, 10).unwrap_err().to_string();
        assert!(
            message.contains("fc3 gives 7 outputs per image"),
            "{message}"
        );
        assert!(message.contains("LinearConfig::new(32, 10)"), "{message}");
    }
}
