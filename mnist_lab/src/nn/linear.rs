//! The lecture's fully-connected layer: a look-alike of Burn's `Linear`, with a fused CPU path
//! ([`super::fused`]).

use burn::config::Config;
use burn::module::{Content, DisplaySettings, Module, ModuleDisplay, Param};
use burn::nn::{Initializer, LinearLayout};
use burn::tensor::{Device, Tensor, assert_shape};

use super::fused;

/// Configuration of a [`Linear`] layer, field for field Burn's `LinearConfig`.
///
/// ```
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// let fc1 = LinearConfig::new(784, 600).init(&device);
/// let images = Tensor::<2>::zeros([2, 784], &device);
/// assert_eq!(fc1.forward(images).dims(), [2, 600]);
/// ```
#[derive(Config, Debug)]
pub struct LinearConfig {
    /// Values each input row has.
    pub d_input: usize,
    /// Values each output row has.
    pub d_output: usize,
    /// Whether the layer adds a bias.
    #[config(default = true)]
    pub bias: bool,
    /// How the weights and bias start (Burn's default, from burn-nn 0.22's `LinearConfig`).
    #[config(default = "Initializer::KaimingUniform{gain:1.0/3.0f64.sqrt(),fan_out_only:false}")]
    pub initializer: Initializer,
    /// How the weight is stored (Burn's `LinearLayout`).
    #[config(default = "LinearLayout::Row")]
    pub layout: LinearLayout,
}

/// A fully-connected layer, `output = input @ weight + bias`: the crate's look-alike of Burn's
/// `Linear` (same fields and parameters; [`Linear::as_burn`] and `From` convert), with the fused
/// path described in [`super::fused`].
#[derive(Module, Debug)]
#[module(custom_display)]
pub struct Linear {
    /// `[d_input, d_output]`.
    pub weight: Param<Tensor<2>>,
    /// `[d_output]`, if the layer has a bias.
    pub bias: Option<Param<Tensor<1>>>,
}

impl LinearConfig {
    /// Builds the layer on `device`, drawing its weights exactly as Burn's `LinearConfig` does.
    pub fn init(&self, device: &Device) -> Linear {
        let layer = burn::nn::LinearConfig::new(self.d_input, self.d_output)
            .with_bias(self.bias)
            .with_initializer(self.initializer.clone())
            .with_layout(self.layout)
            .init(device);
        // The same starting weights on every device: drawn on the CPU, then moved.
        crate::device::draw_on_cpu(layer, device).into()
    }
}

impl From<burn::nn::Linear> for Linear {
    fn from(layer: burn::nn::Linear) -> Self {
        Self {
            weight: layer.weight,
            bias: layer.bias,
        }
    }
}

impl ModuleDisplay for Linear {
    fn custom_settings(&self) -> Option<DisplaySettings> {
        DisplaySettings::new()
            .with_new_line_after_attribute(false)
            .optional()
    }

    fn custom_content(&self, content: Content) -> Option<Content> {
        let [d_input, d_output] = self.weight.shape().dims();
        content
            .add("d_input", &d_input)
            .add("d_output", &d_output)
            .add("bias", &self.bias.is_some())
            .optional()
    }
}

impl Linear {
    /// Applies the layer to the last axis of `input`.
    ///
    /// # Shapes
    ///
    /// - input: `[..., d_input]`
    /// - output: `[..., d_output]`
    ///
    /// # Panics
    ///
    /// If the last axis of `input` is not `d_input` (Burn's message).
    pub fn forward<const D: usize>(&self, input: Tensor<D>) -> Tensor<D> {
        let weight = self.weight.val();
        let [d_input, _] = weight.dims();
        assert_shape!(input, [.., d_input]);
        let bias = self.bias.as_ref().map(|b| b.val());
        if let Some(bias) = &bias
            && fused::takes_linear(&input, &weight, bias)
        {
            return self.recorded(fused::linear(input, weight, bias.clone()));
        }
        self.recorded(burn::tensor::module::linear(input, weight, bias))
    }

    /// Hands `output` back, noting its shape first when a summary is measuring the model.
    fn recorded<const D: usize>(&self, output: Tensor<D>) -> Tensor<D> {
        if super::record::recording() {
            let [d_input, d_output] = self.weight.dims();
            super::record::record(super::record::LayerCall {
                weight: self.weight.id,
                kind: format!("Linear {d_input} -> {d_output}"),
                output: output.dims().to_vec(),
                fan_in: d_input,
            });
        }
        output
    }

    /// The same layer as Burn's `Linear`, sharing these parameters (gradients included).
    pub fn as_burn(&self) -> burn::nn::Linear {
        burn::nn::Linear {
            weight: self.weight.clone(),
            bias: self.bias.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::testing::{assert_close, max_difference};
    use burn::tensor::Distribution;

    /// Both layers start from the same parameters: ours, and Burn's holding a copy of them.
    fn pair(config: &LinearConfig, device: &Device) -> (Linear, burn::nn::Linear) {
        let ours = config.init(device);
        let theirs = burn::nn::Linear {
            weight: Param::from_tensor(ours.weight.val()),
            bias: ours.bias.as_ref().map(|b| Param::from_tensor(b.val())),
        };
        (ours, theirs)
    }

    #[test]
    fn fused_path_matches_burn_forward_and_gradients() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu().autodiff();
        crate::train::seed(&device, 11);
        let shapes = [(100, 784, 600), (5, 7, 3), (1, 4, 2), (3, 600, 10)];
        for ((batch, d_in, d_out), layout) in shapes
            .into_iter()
            .flat_map(|s| [(s, LinearLayout::Row), (s, LinearLayout::Col)])
        {
            let config = LinearConfig::new(d_in, d_out).with_layout(layout);
            let (ours, theirs) = pair(&config, &device);
            for tracked in [true, false] {
                let x = Tensor::<2>::random([batch, d_in], Distribution::Default, &device);
                let x = if tracked { x.require_grad() } else { x };
                let b = ours.bias.as_ref().unwrap().val();
                assert_eq!(
                    fused::takes_linear(&x, &ours.weight.val(), &b),
                    cfg!(feature = "fused")
                );
                let g = Tensor::<2>::random([batch, d_out], Distribution::Default, &device);
                let y_ours = ours.forward(x.clone());
                let y_theirs = theirs.forward(x.clone());
                assert_close(y_ours.clone(), y_theirs.clone());

                let grads_ours = (y_ours * g.clone()).sum().backward();
                let grads_theirs = (y_theirs * g).sum().backward();
                let grad = |param: Tensor<2>, grads| param.grad(grads).unwrap();
                assert_close(
                    grad(ours.weight.val(), &grads_ours),
                    grad(theirs.weight.val(), &grads_theirs),
                );
                let bias = |layer: &Option<Param<Tensor<1>>>, grads| {
                    layer.as_ref().unwrap().val().grad(grads).unwrap()
                };
                assert_close(
                    bias(&ours.bias, &grads_ours),
                    bias(&theirs.bias, &grads_theirs),
                );
                let input_grad = x.grad(&grads_ours);
                assert_eq!(input_grad.is_some(), tracked);
                if let Some(input_grad) = input_grad {
                    assert_close(input_grad, x.grad(&grads_theirs).unwrap());
                }
            }
        }
    }

    #[test]
    fn evaluation_and_strided_inputs_match_burn() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        crate::train::seed(&device, 12);
        let (ours, theirs) = pair(&LinearConfig::new(6, 4), &device);
        let x = Tensor::<2>::random([6, 5], Distribution::Default, &device).transpose();
        assert_close(ours.forward(x.clone()), theirs.forward(x.clone()));
        let rows = x.slice([1..4, 0..6]);
        assert_close(ours.forward(rows.clone()), theirs.forward(rows));
    }

    #[test]
    fn other_cases_are_burns_linear() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu().autodiff();
        crate::train::seed(&device, 13);
        let (ours, theirs) = pair(&LinearConfig::new(5, 3), &device);
        let x = Tensor::<3>::random([2, 4, 5], Distribution::Default, &device);
        assert!(max_difference(ours.forward(x.clone()), theirs.forward(x)) <= 1e-6);
        let (ours, theirs) = pair(&LinearConfig::new(5, 3).with_bias(false), &device);
        let x = Tensor::<2>::random([4, 5], Distribution::Default, &device);
        assert!(max_difference(ours.forward(x.clone()), theirs.forward(x)) <= 1e-6);
    }

    #[test]
    #[should_panic(expected = "axis 1 expected 4, got 3")]
    fn a_wrong_input_width_panics_with_burns_message() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let layer = LinearConfig::new(4, 2).init(&device);
        let _ = layer.forward(Tensor::<2>::zeros([1, 3], &device));
    }

    #[test]
    fn initialisation_and_display_match_burns() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        // Parameters are drawn on first use, so each layer's are drawn right after its seed.
        crate::train::seed(&device, 14);
        let ours = LinearConfig::new(784, 600).init(&device);
        let _ = (ours.weight.val(), ours.bias.as_ref().map(|b| b.val()));
        crate::train::seed(&device, 14);
        let theirs = burn::nn::LinearConfig::new(784, 600).init(&device);
        let _ = (theirs.weight.val(), theirs.bias.as_ref().map(|b| b.val()));
        assert_eq!(max_difference(ours.weight.val(), theirs.weight.val()), 0.0);
        assert_eq!(ours.num_params(), theirs.num_params());
        assert_eq!(format!("{ours}"), format!("{theirs}"));
        let from: Linear = theirs.into();
        assert_eq!(max_difference(ours.weight.val(), from.weight.val()), 0.0);
    }
}
