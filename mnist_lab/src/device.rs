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

use std::str::FromStr;

use burn::module::{Module, ModuleMapper, Param};
pub use burn::tensor::Device;
use burn::tensor::Tensor;

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

/// The name the GPU behind `device` gives itself, when the backend reports one.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
fn gpu_name(device: &Device) -> Option<String> {
    quietly(|| device.identity())
        .ok()
        .flatten()
        .map(|identity| identity.name)
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
fn gpu_name(_device: &Device) -> Option<String> {
    None
}

/// A wgpu adapter: the name it gives itself and what kind of device it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Adapter {
    /// As the driver names it, e.g. `NVIDIA GeForce RTX 3060` or
    /// `llvmpipe (LLVM 15.0.6, 256 bits)`.
    pub name: String,
    /// Discrete, integrated, virtual GPU, or a software renderer.
    pub kind: AdapterKind,
}

/// What kind of device a wgpu adapter is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdapterKind {
    /// A graphics card of its own.
    Discrete,
    /// A GPU built into the processor.
    Integrated,
    /// A GPU handed to a virtual machine.
    Virtual,
    /// A software renderer: the GPU's work done on the CPU (lavapipe/llvmpipe, SwiftShader,
    /// Microsoft Basic Render Driver / WARP).
    Software,
    /// Anything else the driver reports.
    Other,
}

/// Names of the common software renderers, lower case: a driver may report one as a GPU.
const SOFTWARE_RENDERERS: [&str; 5] = [
    "llvmpipe",
    "lavapipe",
    "swiftshader",
    "microsoft basic render",
    "warp",
];

impl Adapter {
    /// An adapter named `name`, its kind read from its device's `Debug` text (cubecl's
    /// `WgpuDeviceKind`) and, for software renderers, from the name itself.
    fn new(name: String, device_debug: &str) -> Adapter {
        let lower = name.to_lowercase();
        let kind = if SOFTWARE_RENDERERS.iter().any(|s| lower.contains(s))
            || device_debug.contains("Cpu")
        {
            AdapterKind::Software
        } else if device_debug.contains("DiscreteGpu") {
            AdapterKind::Discrete
        } else if device_debug.contains("IntegratedGpu") {
            AdapterKind::Integrated
        } else if device_debug.contains("VirtualGpu") {
            AdapterKind::Virtual
        } else {
            AdapterKind::Other
        };
        Adapter { name, kind }
    }

    /// Whether this adapter runs the GPU's work on the CPU.
    pub fn is_software(&self) -> bool {
        self.kind == AdapterKind::Software
    }

    /// `NVIDIA GeForce RTX 3060, discrete GPU`.
    pub fn describe(&self) -> String {
        let kind = match self.kind {
            AdapterKind::Discrete => "discrete GPU",
            AdapterKind::Integrated => "integrated GPU",
            AdapterKind::Virtual => "virtual GPU",
            AdapterKind::Software => "software renderer",
            AdapterKind::Other => "GPU",
        };
        format!("{}, {kind}", self.name)
    }
}

/// The graphics API wgpu runs on here: Metal on macOS, else Vulkan first (DX12 or OpenGL on
/// a Windows or Linux machine without a Vulkan driver).
fn graphics_api() -> &'static str {
    if cfg!(target_os = "macos") {
        "Metal"
    } else if cfg!(windows) {
        "Vulkan or DX12"
    } else {
        "Vulkan"
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
    let cuda_why = match cuda() {
        Ok(device) => return format!("GPU: {} (CUDA)", device_label(&device)),
        Err(why) => why,
    };
    match wgpu_adapter() {
        Ok(found) if !found.adapter.is_software() => format!(
            "GPU: {} through wgpu ({}); `Auto` trains on it",
            found.adapter.describe(),
            graphics_api()
        ),
        Ok(found) => format!(
            "GPU: none; wgpu found only {}, a software renderer, so `Auto` trains on the CPU \
             ({}), which is far faster",
            found.adapter.name,
            cpu_description()
        ),
        Err(why) if cfg!(any(feature = "cuda", feature = "wgpu")) => format!(
            "GPU: none (CUDA: {cuda_why}; wgpu: {why}); `Auto` trains on the CPU ({})",
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
            Ok(device) => Ok((device.clone(), cuda_line(&device))),
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
            Ok(found) if found.adapter.is_software() => {
                let line = format!(
                    "wgpu adapter {} is a software renderer (the GPU's work done on the CPU, \
                     far slower than the CPU backend): training on wgpu as asked",
                    found.adapter.name
                );
                Ok((found.device, line))
            }
            Ok(found) => {
                let line = format!(
                    "GPU found: training on wgpu ({}, {})",
                    found.adapter.describe(),
                    graphics_api()
                );
                Ok((found.device, line))
            }
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
                Ok(device) => return Ok((device.clone(), cuda_line(&device))),
                Err(why) => why,
            };
            let why = match wgpu_adapter() {
                Ok(found) if !found.adapter.is_software() => {
                    let line = format!(
                        "GPU found: training on wgpu ({}, {})",
                        found.adapter.describe(),
                        graphics_api()
                    );
                    return Ok((found.device, line));
                }
                Ok(found) => format!("wgpu adapter {} is a software renderer", found.adapter.name),
                Err(why) if cfg!(feature = "wgpu") => {
                    format!("CUDA not available ({cuda_why}), wgpu not available ({why})")
                }
                Err(_) => format!("CUDA not available ({cuda_why})"),
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

fn cuda_line(device: &Device) -> String {
    match gpu_name(device) {
        Some(name) => format!("CUDA GPU found: training on cuda ({name})"),
        None => "CUDA GPU found: training on cuda:0".into(),
    }
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
use crate::panics::quietly;

/// The NVIDIA driver's library, which Burn's CUDA backend (through cudarc) loads at run time:
/// no CUDA toolkit is needed, but without the driver there is no CUDA device.
#[cfg(feature = "cuda")]
const CUDA_DRIVER: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

/// The first CUDA device, touched once; or why there is none: no driver (the loader's own
/// words, e.g. `no NVIDIA driver: libcuda.so.1: cannot open shared object file: No such file
/// or directory`), a driver that lists no GPU, or a driver that fails.
#[cfg(feature = "cuda")]
fn cuda() -> std::result::Result<Device, String> {
    use burn::tensor::DeviceType;
    let found = quietly(|| {
        // An empty list when the driver's library is not there (cubecl asks before loading it).
        let devices = Device::enumerate(DeviceType::Cuda).into_vec();
        let device = devices.into_iter().next()?;
        // Touch the device once so a broken driver shows up here, not mid-training.
        let _ = Tensor::<1>::zeros([1], &device).into_data();
        Some(device)
    });
    match found {
        Ok(Some(device)) => Ok(device),
        Ok(None) => Err(match load_library(&CUDA_DRIVER) {
            Err(why) => format!("no NVIDIA driver: {why}"),
            Ok(name) => format!("the NVIDIA driver ({name}) lists no GPU"),
        }),
        Err(panic) => Err(format!(
            "the CUDA driver failed: {}",
            panic.lines().next().unwrap_or_default()
        )),
    }
}

/// Loads (and unloads again) the first of `names` that the system's loader finds, and returns
/// its name; else the loader's error for the first one.
#[cfg(all(feature = "cuda", target_os = "linux", target_env = "gnu"))]
fn load_library(names: &[&str]) -> std::result::Result<String, String> {
    use std::ffi::{CStr, CString};
    let mut first_error = None;
    for name in names {
        let Ok(c_name) = CString::new(*name) else {
            continue;
        };
        // SAFETY: dlopen with a valid C string; the handle is closed at once and no symbol
        // is used. dlerror's text is copied before the next dl call.
        unsafe {
            let handle = libc::dlopen(c_name.as_ptr(), libc::RTLD_LAZY | libc::RTLD_LOCAL);
            if !handle.is_null() {
                libc::dlclose(handle);
                return Ok((*name).to_string());
            }
            let error = libc::dlerror();
            if first_error.is_none() && !error.is_null() {
                first_error = Some(CStr::from_ptr(error).to_string_lossy().into_owned());
            }
        }
    }
    Err(first_error.unwrap_or_else(|| format!("none of {} would load", names.join(", "))))
}

#[cfg(all(feature = "cuda", not(all(target_os = "linux", target_env = "gnu"))))]
fn load_library(_names: &[&str]) -> std::result::Result<String, String> {
    Err("the NVIDIA driver's library was not found".into())
}

#[cfg(not(feature = "cuda"))]
fn cuda() -> std::result::Result<Device, String> {
    Err("this build has no `cuda` feature".into())
}

/// A wgpu device and the adapter behind it.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
struct FoundAdapter {
    device: Device,
    adapter: Adapter,
}

/// The best wgpu adapter here: the first hardware GPU (discrete, then integrated, virtual,
/// other), else a software renderer; opened and touched once, so that a broken driver shows
/// up here and not mid-training.
#[cfg(feature = "wgpu")]
fn wgpu_adapter() -> std::result::Result<FoundAdapter, String> {
    use burn::tensor::DeviceType;
    quiet_vulkan_loader();
    let listed = quietly(|| Device::enumerate(DeviceType::Wgpu).into_vec())
        .map_err(|_| "the graphics driver failed while listing its adapters".to_string())?;
    let rank = |debug: &str| {
        ["DiscreteGpu", "IntegratedGpu", "VirtualGpu", "Other", "Cpu"]
            .iter()
            .position(|kind| debug.contains(kind))
            .unwrap_or(3)
    };
    let mut listed: Vec<(usize, Device)> = listed
        .into_iter()
        .map(|device| (rank(&format!("{device:?}")), device))
        .collect();
    listed.sort_by_key(|(rank, _)| *rank);
    let mut failures = Vec::new();
    for (_, device) in listed {
        let opened = quietly(|| {
            let _ = Tensor::<1>::zeros([1], &device).into_data();
            device.identity().map(|identity| identity.name)
        });
        match opened {
            Ok(name) => {
                let debug = format!("{device:?}");
                let name = name.unwrap_or_else(|| "an unnamed adapter".into());
                let adapter = Adapter::new(name, &debug);
                return Ok(FoundAdapter { device, adapter });
            }
            Err(panic) => failures.push(panic.lines().next().unwrap_or_default().to_string()),
        }
    }
    Err(match failures.first() {
        None => "no GPU adapter found".to_string(),
        Some(first) => format!("no adapter would open: {first}"),
    })
}

#[cfg(not(feature = "wgpu"))]
fn wgpu_adapter() -> std::result::Result<FoundAdapter, String> {
    Err("this build has no `wgpu` feature".into())
}

/// Keeps the Vulkan stack quiet on a machine without a desktop session.
///
/// Vulkan drivers ask libwayland whether a Wayland display is there, and libwayland prints
/// `error: XDG_RUNTIME_DIR is invalid or not set in the environment.` to stderr, several
/// times, when that variable is not set (a server, a container, CI, some notebook
/// launchers). Nothing is wrong, but a notebook cell would show it. So when it is unset,
/// it is set to a private, empty folder before the first Vulkan call: libwayland then finds
/// no display there and says nothing, and every real error still shows. Done once.
pub fn quiet_vulkan_loader() {
    #[cfg(all(unix, not(target_os = "macos")))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            let set = std::env::var_os("XDG_RUNTIME_DIR")
                .is_some_and(|dir| std::path::Path::new(&dir).is_absolute());
            if set {
                return;
            }
            let dir = private_runtime_dir();
            // SAFETY: set once, before this process creates its first Vulkan instance (the
            // only code here that reads the variable); the crate's own threads do not read
            // the environment meanwhile.
            unsafe { std::env::set_var("XDG_RUNTIME_DIR", &dir) };
        });
    }
}

/// `<temp>/mnist-lab-runtime-<uid>`, created empty and private (mode 700) if it is not there.
#[cfg(all(unix, not(target_os = "macos")))]
fn private_runtime_dir() -> std::path::PathBuf {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt};
    let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    let dir = std::env::temp_dir().join(format!("mnist-lab-runtime-{uid}"));
    // Even if this fails, libwayland only checks that the path is absolute before it looks
    // for a display there, which is all that is needed.
    let _ = std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir);
    dir
}

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
