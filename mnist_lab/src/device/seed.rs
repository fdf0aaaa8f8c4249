//! The same starting weights on every device: [`seed`] seeds the CPU's generator with the
//! device's, and [`draw_on_cpu`] makes a module draw its weights on the CPU.

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::{Device, Tensor};

use super::cpu_device;

/// Seeds the random number generators that initialise weights: the CPU backend's (where
/// [`draw_on_cpu`] draws a GPU model's starting weights) and `device`'s own.
///
/// With the same seed, a model built next starts from the same weights on every device.
///
/// ```
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// mnist_lab::device::seed(&device, 7);
/// let a = LinearConfig::new(4, 2).init(&device).weight.val();
/// mnist_lab::device::seed(&device, 7);
/// let b = LinearConfig::new(4, 2).init(&device).weight.val();
/// assert_eq!(a.into_data(), b.into_data());
/// ```
pub fn seed(device: &Device, seed: u64) {
    if let Ok(cpu) = cpu_device()
        && cpu != *device
    {
        cpu.seed(seed);
    }
    device.seed(seed);
}

/// Makes `module`'s parameters draw their starting values on the CPU and then move to
/// `device`, so that a module built on a GPU starts from exactly the weights the CPU would
/// give it after the same [`seed`].
///
/// The crate's layers ([`crate::nn::LinearConfig::init`], [`crate::nn::Conv2dConfig::init`])
/// call it, so every model built from them (the lecture's four, a notebook's own struct)
/// gets this without doing anything. For a module built from other layers, call it on the
/// freshly built module:
///
/// ```
/// use mnist_lab::device::{cpu, draw_on_cpu};
///
/// let device = cpu(); // or the device pick_device returned
/// let layer = draw_on_cpu(burn::nn::LinearConfig::new(4, 2).init(&device), &device);
/// assert_eq!(layer.weight.dims(), [4, 2]);
/// ```
///
/// Parameters are still drawn when first used, as Burn draws them (on the CPU, in the
/// order the model first uses them, so the CPU's order and values are kept); only
/// parameters not drawn yet are affected. On the CPU itself, or in a build without a CPU
/// backend, `module` is returned as it is. Drawing conv2's fc1 (14.6 million parameters)
/// and copying it to the device is a one-off cost at the model's first forward pass.
pub fn draw_on_cpu<M: Module>(module: M, device: &Device) -> M {
    let Ok(cpu) = cpu_device() else {
        return module;
    };
    if cpu == *device {
        return module;
    }
    module.map(&mut DrawOnCpu { cpu })
}

/// See [`draw_on_cpu`].
struct DrawOnCpu {
    cpu: Device,
}

impl ModuleMapper for DrawOnCpu {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        if param.is_initialized() {
            return param;
        }
        let id = param.id;
        let shape = param.lazy_shape();
        let device = param.lazy_device();
        // Still lazy: only the device its initialiser will draw on changes.
        let on_cpu = Module::to_device(param, &self.cpu);
        Param::uninitialized(
            id,
            move |device: &Device, require_grad: bool| {
                let values = on_cpu.val().into_data();
                let tensor = Tensor::<D>::from_data(values, device);
                if require_grad {
                    tensor.require_grad()
                } else {
                    tensor
                }
            },
            device,
            true,
            shape,
        )
    }
}
