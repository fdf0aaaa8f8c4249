//! Where the tensors live: a GPU when one is compiled in and present, else the CPU.
//!
//! [`pick_device`] tries, in order, CUDA (feature `cuda`), wgpu (feature `wgpu`) and the CPU
//! backend (`flex` by default, `ndarray` as an alternative), and prints one line saying what
//! it chose and why, naming the GPU:
//!
//! ```text
//! GPU found: training on wgpu (NVIDIA GeForce RTX 3060, discrete GPU, Vulkan)
//! wgpu adapter llvmpipe (LLVM 15.0.6, 256 bits) is a software renderer: training on the CPU (flex, 8 threads) instead
//! ```
//!
//! It never panics for want of a GPU. The choice can be forced with a [`DeviceChoice`] or the
//! `MNIST_LAB_DEVICE` environment variable (`cpu`, `cuda`, `wgpu`). `Auto` never picks a
//! software renderer (lavapipe/llvmpipe, SwiftShader, Microsoft Basic Render): it runs the
//! GPU's shaders on the CPU, hundreds of times slower than the CPU backend. `wgpu` uses one
//! when it is all there is, and says so.
//!
//! # The same starting weights on every device
//!
//! Each backend has its own random number generator, so a model drawn on a GPU would start
//! from other weights than on the CPU with the same seed. The crate's layers
//! ([`crate::nn::Linear`], [`crate::nn::Conv2d`]) therefore draw their weights on the CPU
//! and move them to the device ([`draw_on_cpu`]), and [`seed`] seeds the CPU's generator
//! as well as the device's: with the same seed, a model built on wgpu or CUDA starts from
//! exactly the weights it has on the CPU, and its first losses match the CPU's.

mod gpu;
mod seed;

use std::str::FromStr;

pub use burn::tensor::Device;
use burn::tensor::Tensor;

pub use self::gpu::{Adapter, AdapterKind, quiet_vulkan_loader};
use self::gpu::{auto_gpu, cuda, cuda_line, gpu_name, wgpu_adapter};
pub use self::seed::{draw_on_cpu, seed};
use crate::{Error, Result};

/// Which device to train on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The fastest one available: CUDA, then a hardware GPU through wgpu, then the CPU.
    #[default]
    Auto,
    /// The CPU backend.
    Cpu,
    /// An NVIDIA GPU through CUDA (build with `--features cuda`).
    Cuda,
    /// Any GPU through wgpu (build with `--features wgpu`), a software renderer included.
    Wgpu,
}

impl DeviceChoice {
    /// Every choice, in the order the command line lists them.
    pub const ALL: [DeviceChoice; 4] = [
        DeviceChoice::Auto,
        DeviceChoice::Cpu,
        DeviceChoice::Cuda,
        DeviceChoice::Wgpu,
    ];

    /// The name used on the command line and in `MNIST_LAB_DEVICE`, e.g. `cpu`.
    pub fn name(self) -> &'static str {
        match self {
            DeviceChoice::Auto => "auto",
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Cuda => "cuda",
            DeviceChoice::Wgpu => "wgpu",
        }
    }
}

impl FromStr for DeviceChoice {
    type Err = Error;

    /// A choice by its name (`auto`, `cpu`, `cuda`, `wgpu`), in any case.
    fn from_str(s: &str) -> Result<Self> {
        let name = s.trim();
        DeviceChoice::ALL
            .into_iter()
            .find(|choice| choice.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| Error::setting("device", s, "use one of auto, cpu, cuda, wgpu"))
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

pub(crate) fn cpu_device() -> Result<Device> {
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

/// Whether `device` is the CPU backend's device (autodiff or not).
pub fn is_cpu(device: &Device) -> bool {
    cpu_device().is_ok_and(|cpu| cpu == *device)
}

/// Reads `tensor`'s values back to the host: the one way the crate's training loop, its
/// evaluation loops and its inspection tools read a computed result, so that
/// [`crate::testing::device_reads`] counts every such read. On a GPU each read makes the CPU
/// wait until the GPU has run every operation queued before it; the loops keep their results
/// on the device and read them in batches (see [`crate::train`]).
///
/// Not counted: the one-value probe that opens a device ([`pick_device`]), and the copy of
/// starting weights from the CPU ([`draw_on_cpu`]).
pub(crate) fn read<const D: usize, K: burn::tensor::kind::Basic>(
    tensor: Tensor<D, K>,
) -> burn::tensor::TensorData {
    READS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tensor.into_data()
}

/// The reads [`read`] has made in this process.
pub(crate) static READS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

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

/// A name for reports that says which device trained: `cpu (flex)`, `cpu (ndarray)`,
/// `wgpu (NVIDIA GeForce RTX 3060, discrete GPU)`, `wgpu (llvmpipe (LLVM 15.0.6, 256 bits),
/// software renderer)`, `cuda (NVIDIA H100 PCIe)`.
pub fn device_label(device: &Device) -> String {
    let debug = format!("{device:?}");
    if debug.contains("Cuda") {
        match gpu_name(device) {
            Some(name) => format!("cuda ({name})"),
            None => "cuda".into(),
        }
    } else if debug.contains("Wgpu") || debug.contains("Vulkan") || debug.contains("Metal") {
        match gpu_name(device) {
            Some(name) => format!("wgpu ({})", Adapter::new(name, &debug).describe()),
            None => "wgpu".into(),
        }
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
/// falls back to the CPU instead, and never picks a software renderer over it.
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

/// One line on the GPU this build can use, for a set-up check: the adapter `Auto` would
/// train on, or why it trains on the CPU.
///
/// ```
/// let line = mnist_lab::device::gpu_report();
/// assert!(line.starts_with("GPU: "), "{line}");
/// ```
pub fn gpu_report() -> String {
    match auto_gpu() {
        Ok((device, _)) => format!("GPU: {}; `Auto` trains on it", device_label(&device)),
        Err(why) if cfg!(any(feature = "cuda", feature = "wgpu")) => format!(
            "GPU: none ({why}); `Auto` trains on the CPU ({})",
            cpu_description()
        ),
        Err(_) => format!(
            "GPU: none; this build has no GPU backend (build the kernel with `cargo xtask lab \
             --features wgpu`, or `--features cuda`); training on the CPU ({})",
            cpu_description()
        ),
    }
}

fn choose(choice: DeviceChoice) -> Result<(Device, String)> {
    let cpu_line = |why: &str| format!("{why}: training on the CPU ({})", cpu_description());
    match choice {
        DeviceChoice::Cpu => Ok((cpu_device()?, cpu_line("CPU requested"))),
        DeviceChoice::Cuda => match cuda() {
            Ok(device) => {
                let line = cuda_line(&device);
                Ok((device, line))
            }
            Err(why) => Err(Error::Device {
                message: format!(
                    "device `cuda` was asked for, but CUDA is not available ({why}). Use \
                     --device cpu (or DeviceChoice::Cpu), or {}.",
                    if cfg!(feature = "cuda") {
                        "run on a machine with an NVIDIA GPU and its driver"
                    } else {
                        "rebuild with --features cuda on a machine with an NVIDIA driver"
                    }
                ),
            }),
        },
        DeviceChoice::Wgpu => match wgpu_adapter() {
            Ok(found) => Ok(found.into_choice()),
            Err(why) => Err(Error::Device {
                message: format!(
                    "device `wgpu` was asked for, but wgpu is not available ({why}). Use \
                     --device cpu (or DeviceChoice::Cpu), or rebuild with --features wgpu on a \
                     machine with a GPU driver."
                ),
            }),
        },
        DeviceChoice::Auto => {
            let why = match auto_gpu() {
                Ok(choice) => return Ok(choice),
                Err(why) => why,
            };
            let line = cpu_line(&why);
            // "software renderer: training on the CPU (...) instead" reads better.
            let line = if why.ends_with("software renderer") {
                format!("{line} instead")
            } else {
                line
            };
            Ok((cpu_device()?, line))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(feature = "cuda")]
    use crate::device::gpu::{CUDA_DRIVER, load_library};

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

    #[cfg(all(feature = "cuda", target_os = "linux", target_env = "gnu"))]
    #[test]
    fn a_driver_library_that_is_not_there_is_named_with_the_loaders_words() {
        let why = load_library(&["libcuda-mnist-lab-absent.so.1"]).unwrap_err();
        assert!(
            why.contains("libcuda-mnist-lab-absent.so.1") && why.contains("cannot open"),
            "{why}"
        );
        // The C library is always there: the loader itself works.
        assert_eq!(load_library(&["libc.so.6"]).unwrap(), "libc.so.6");
    }

    /// On any machine: `cuda` and `auto` agree. With an NVIDIA GPU both train on it; without
    /// one, `cuda` fails in one line that says why and what to do, and `auto` trains on the
    /// CPU giving the same reason (without a driver: `no NVIDIA driver: libcuda.so.1: ...`).
    #[cfg(feature = "cuda")]
    #[test]
    fn cuda_and_auto_agree_on_whether_there_is_an_nvidia_gpu() {
        let (auto, auto_line) = choose(DeviceChoice::Auto).unwrap();
        match choose(DeviceChoice::Cuda) {
            Ok((gpu, line)) => {
                assert!(line.contains("training on cuda"), "{line}");
                assert!(device_label(&gpu).starts_with("cuda"), "{gpu:?}");
                assert_eq!(auto, gpu, "{auto_line}");
            }
            Err(err) => {
                let err = err.to_string();
                assert_eq!(err.lines().count(), 1, "{err}");
                assert!(err.contains("--device cpu"), "{err}");
                assert!(!err.contains("--features cuda"), "a cuda build: {err}");
                let why = cuda().unwrap_err();
                assert!(err.contains(&format!("({why})")), "{err}");
                if let Err(loader) = load_library(&CUDA_DRIVER) {
                    assert_eq!(why, format!("no NVIDIA driver: {loader}"));
                }
                if !cfg!(feature = "wgpu") {
                    assert!(is_cpu(&auto), "{auto_line}");
                    assert!(auto_line.contains(&why), "{auto_line}");
                    assert!(auto_line.contains("training on the CPU"), "{auto_line}");
                }
            }
        }
    }

    #[test]
    fn software_renderers_are_told_apart_from_gpus() {
        let software = [
            (
                "llvmpipe (LLVM 15.0.6, 256 bits)",
                "Wgpu(WgpuDevice { kind: Cpu })",
            ),
            (
                "SwiftShader Device (Subzero)",
                "Wgpu(WgpuDevice { kind: Other(0) })",
            ),
            (
                "Microsoft Basic Render Driver",
                "Wgpu(WgpuDevice { kind: Other(0) })",
            ),
        ];
        for (name, debug) in software {
            let adapter = Adapter::new(name.into(), debug);
            assert!(adapter.is_software(), "{adapter:?}");
            assert!(adapter.describe().ends_with("software renderer"));
        }
        let gpu = Adapter::new(
            "NVIDIA GeForce RTX 3060".into(),
            "Wgpu(WgpuDevice { kind: DiscreteGpu(0) })",
        );
        assert_eq!(gpu.kind, AdapterKind::Discrete);
        assert_eq!(gpu.describe(), "NVIDIA GeForce RTX 3060, discrete GPU");
    }

    #[test]
    fn the_cpu_keeps_its_lazy_draws() {
        let _random = crate::testing::random_numbers();
        // On the CPU, draw_on_cpu changes nothing: parameters stay undrawn until first used.
        let device = cpu();
        let layer = draw_on_cpu(crate::nn::LinearConfig::new(3, 2).init(&device), &device);
        assert!(!layer.weight.is_initialized());
        assert!(is_cpu(&device) && is_cpu(&device.clone().autodiff()));
    }

    #[test]
    fn the_report_line_says_what_auto_does() {
        let line = gpu_report();
        assert!(line.starts_with("GPU: "), "{line}");
        if !cfg!(any(feature = "cuda", feature = "wgpu")) {
            assert!(line.contains("--features wgpu"), "{line}");
        }
    }
}
