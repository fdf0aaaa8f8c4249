//! Where the tensors live: a GPU when one is compiled in and present, else the CPU.
//!
//! [`pick_device`] tries, in order, CUDA (feature `cuda`), wgpu (feature `wgpu`) and the CPU
//! backend (`flex` by default, `ndarray` as an alternative), and prints one line saying what
//! it chose and why. It never panics for want of a GPU. The choice can be forced with a
//! [`DeviceChoice`] or the `MNIST_LAB_DEVICE` environment variable (`cpu`, `cuda`, `wgpu`).

use std::str::FromStr;

pub use burn::tensor::Device;
use clap::ValueEnum;

use crate::{Error, Result};

/// Which device to train on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, ValueEnum)]
pub enum DeviceChoice {
    /// The fastest one available: CUDA, then wgpu, then the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// An NVIDIA GPU through CUDA (build with `--features cuda`).
    Cuda,
    /// Any GPU through wgpu (build with `--features wgpu`).
    Wgpu,
}

impl FromStr for DeviceChoice {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        <DeviceChoice as ValueEnum>::from_str(s.trim(), true)
            .map_err(|_| Error::setting("device", s, "use one of auto, cpu, cuda, wgpu"))
    }
}

/// The CPU device of the enabled CPU backend (`flex`, else `ndarray`).
///
/// # Panics
/// When the crate was built with neither `flex` nor `ndarray`; [`pick_device`] returns an
/// error instead.
pub fn cpu() -> Device {
    cpu_device().expect("a CPU backend should be compiled in: enable the `flex` feature")
}

fn cpu_device() -> Result<Device> {
    #[cfg(feature = "flex")]
    {
        Ok(Device::flex())
    }
    #[cfg(all(feature = "ndarray", not(feature = "flex")))]
    {
        #[allow(deprecated)] // ndarray is deprecated upstream; kept as an opt-in backend.
        Ok(Device::ndarray())
    }
    #[cfg(not(any(feature = "flex", feature = "ndarray")))]
    {
        Err(Error::Device {
            message: "no CPU backend was compiled in: rebuild with `--features flex`".into(),
        })
    }
}

/// The CPU backend's name and thread count, e.g. `flex, 2 threads`.
pub fn cpu_description() -> String {
    let backend = if cfg!(feature = "flex") {
        "flex"
    } else {
        "ndarray"
    };
    let threads = std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|n| n.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .or_else(|| std::thread::available_parallelism().ok().map(|n| n.get()))
        .unwrap_or(1);
    let s = if threads == 1 { "" } else { "s" };
    format!("{backend}, {threads} thread{s}")
}

/// A short name for reports: `cpu (flex)`, `cuda`, `wgpu`.
pub fn device_label(device: &Device) -> String {
    let debug = format!("{device:?}");
    if debug.contains("Cuda") {
        "cuda".into()
    } else if debug.contains("Wgpu") || debug.contains("Vulkan") || debug.contains("Metal") {
        "wgpu".into()
    } else if debug.contains("NdArray") {
        "cpu (ndarray)".into()
    } else {
        "cpu (flex)".into()
    }
}

/// Chooses the device to train on and prints one line saying which and why.
///
/// `MNIST_LAB_DEVICE`, when set, overrides `choice`. Asking for a GPU backend that is not
/// compiled in, or for a GPU that is not there, is an error that says what to do; `Auto`
/// falls back to the CPU instead.
///
/// ```
/// use mnist_lab::device::{pick_device, DeviceChoice};
///
/// let device = pick_device(DeviceChoice::Cpu).unwrap();
/// # let _ = device;
/// ```
pub fn pick_device(choice: DeviceChoice) -> Result<Device> {
    let choice = match std::env::var("MNIST_LAB_DEVICE") {
        Ok(value) if !value.trim().is_empty() => value.parse()?,
        _ => choice,
    };
    let (device, line) = choose(choice)?;
    println!("{line}");
    Ok(device)
}

fn choose(choice: DeviceChoice) -> Result<(Device, String)> {
    let cpu_line = |why: &str| format!("{why}: training on the CPU ({})", cpu_description());
    match choice {
        DeviceChoice::Cpu => Ok((cpu_device()?, cpu_line("CPU requested"))),
        DeviceChoice::Cuda => match cuda() {
            Ok(device) => Ok((device, "CUDA GPU found: training on cuda:0".into())),
            Err(why) => Err(Error::Device {
                message: format!(
                    "device `cuda` was asked for, but CUDA is not available ({why}). Use \
                     --device cpu (or DeviceChoice::Cpu), or rebuild with --features cuda on a \
                     machine with an NVIDIA driver."
                ),
            }),
        },
        DeviceChoice::Wgpu => match wgpu() {
            Ok(device) => Ok((device, "GPU adapter found: training on wgpu".into())),
            Err(why) => Err(Error::Device {
                message: format!(
                    "device `wgpu` was asked for, but wgpu is not available ({why}). Use \
                     --device cpu (or DeviceChoice::Cpu), or rebuild with --features wgpu on a \
                     machine with a GPU driver."
                ),
            }),
        },
        DeviceChoice::Auto => {
            let cuda_why = match cuda() {
                Ok(device) => return Ok((device, "CUDA GPU found: training on cuda:0".into())),
                Err(why) => why,
            };
            let wgpu_why = match wgpu() {
                Ok(device) => {
                    let line = format!("CUDA not available ({cuda_why}): training on wgpu");
                    return Ok((device, line));
                }
                Err(why) => why,
            };
            let why = if cfg!(feature = "wgpu") {
                format!("CUDA not available ({cuda_why}), wgpu not available ({wgpu_why})")
            } else {
                format!("CUDA not available ({cuda_why})")
            };
            Ok((cpu_device()?, cpu_line(&why)))
        }
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
use crate::check::quietly;

#[cfg(feature = "cuda")]
fn cuda() -> std::result::Result<Device, String> {
    use burn::tensor::{DeviceType, Tensor};
    let found = quietly(|| {
        let devices = Device::enumerate(DeviceType::Cuda).into_vec();
        let device = devices.into_iter().next()?;
        // Touch the device once so a broken driver shows up here, not mid-training.
        let _ = Tensor::<1>::zeros([1], &device).into_data();
        Some(device)
    });
    match found {
        Ok(Some(device)) => Ok(device),
        Ok(None) => Err("no NVIDIA GPU found".into()),
        Err(_) => Err("no driver found".into()),
    }
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> std::result::Result<Device, String> {
    Err("this build has no `cuda` feature".into())
}

#[cfg(feature = "wgpu")]
fn wgpu() -> std::result::Result<Device, String> {
    use burn::tensor::{DeviceKind, Tensor};
    let found = quietly(|| {
        let device = Device::wgpu(DeviceKind::DefaultDevice);
        let _ = Tensor::<1>::zeros([1], &device).into_data();
        device
    });
    found.map_err(|_| "no GPU adapter found".to_string())
}

#[cfg(not(feature = "wgpu"))]
fn wgpu() -> std::result::Result<Device, String> {
    Err("this build has no `wgpu` feature".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_and_rejects_unknown_ones() {
        assert_eq!("CPU".parse::<DeviceChoice>().unwrap(), DeviceChoice::Cpu);
        let err = "tpu".parse::<DeviceChoice>().unwrap_err().to_string();
        assert!(err.contains("`device`") && err.contains("tpu"), "{err}");
    }

    #[test]
    fn auto_never_fails_without_a_gpu() {
        let (device, line) = choose(DeviceChoice::Auto).unwrap();
        if !cfg!(any(feature = "cuda", feature = "wgpu")) {
            assert!(line.contains("training on the CPU"), "{line}");
            assert!(device_label(&device).starts_with("cpu"));
        }
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn asking_for_cuda_without_it_names_the_fix() {
        let err = choose(DeviceChoice::Cuda).unwrap_err().to_string();
        assert!(
            err.contains("--features cuda") && err.contains("--device cpu"),
            "{err}"
        );
    }
}
