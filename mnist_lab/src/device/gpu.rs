//! The GPU backends' probes: the first CUDA device, the best wgpu adapter and what kind it is
//! ([`Adapter`]), the one decision of what [`DeviceChoice::Auto`](super::DeviceChoice::Auto)
//! trains on when there is a GPU, and the Vulkan loader's quiet start.

use burn::tensor::Device;

#[cfg(any(feature = "cuda", feature = "wgpu"))]
use crate::panics::quietly;

/// The GPU that [`DeviceChoice::Auto`](super::DeviceChoice::Auto) trains on, with the line that
/// says so: the first CUDA device, else a hardware GPU through wgpu, never a software
/// renderer. Else why not, in words for the line that says it trains on the CPU instead.
pub(super) fn auto_gpu() -> Result<(Device, String), String> {
    let cuda_why = match cuda() {
        Ok(device) => {
            let line = cuda_line(&device);
            return Ok((device, line));
        }
        Err(why) => why,
    };
    match wgpu_adapter() {
        Ok(found) if !found.adapter.is_software() => Ok(found.into_choice()),
        Ok(found) => Err(format!(
            "wgpu adapter {} is a software renderer",
            found.adapter.name
        )),
        Err(why) if cfg!(feature = "wgpu") => Err(format!(
            "CUDA not available ({cuda_why}), wgpu not available ({why})"
        )),
        Err(_) => Err(format!("CUDA not available ({cuda_why})")),
    }
}

/// The name the GPU behind `device` gives itself, when the backend reports one.
#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub(super) fn gpu_name(device: &Device) -> Option<String> {
    quietly(|| device.identity())
        .ok()
        .flatten()
        .map(|identity| identity.name)
}

#[cfg(not(any(feature = "cuda", feature = "wgpu")))]
pub(super) fn gpu_name(_device: &Device) -> Option<String> {
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
    pub(super) fn new(name: String, device_debug: &str) -> Adapter {
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

pub(super) fn cuda_line(device: &Device) -> String {
    match gpu_name(device) {
        Some(name) => format!("CUDA GPU found: training on cuda ({name})"),
        None => "CUDA GPU found: training on cuda:0".into(),
    }
}

/// The NVIDIA driver's library, which Burn's CUDA backend (through cudarc) loads at run time:
/// no CUDA toolkit is needed, but without the driver there is no CUDA device.
#[cfg(feature = "cuda")]
pub(super) const CUDA_DRIVER: [&str; 2] = ["libcuda.so.1", "libcuda.so"];

/// The first CUDA device, touched once; or why there is none: no driver (the loader's own
/// words, e.g. `no NVIDIA driver: libcuda.so.1: cannot open shared object file: No such file
/// or directory`), a driver that lists no GPU, or a driver that fails.
#[cfg(feature = "cuda")]
pub(super) fn cuda() -> std::result::Result<Device, String> {
    use burn::tensor::DeviceType;
    let found = quietly(|| {
        // An empty list when the driver's library is not there (cubecl asks before loading it).
        let devices = Device::enumerate(DeviceType::Cuda).into_vec();
        let device = devices.into_iter().next()?;
        // Touch the device once so a broken driver shows up here, not mid-training.
        let _ = burn::tensor::Tensor::<1>::zeros([1], &device).into_data();
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
pub(super) fn load_library(names: &[&str]) -> std::result::Result<String, String> {
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
pub(super) fn load_library(_names: &[&str]) -> std::result::Result<String, String> {
    Err("the NVIDIA driver's library was not found".into())
}

#[cfg(not(feature = "cuda"))]
pub(super) fn cuda() -> std::result::Result<Device, String> {
    Err("this build has no `cuda` feature".into())
}

/// A wgpu device and the adapter behind it.
#[cfg_attr(not(feature = "wgpu"), allow(dead_code))]
pub(super) struct FoundAdapter {
    pub(super) device: Device,
    pub(super) adapter: Adapter,
}

impl FoundAdapter {
    /// The device and the line for training on it: `GPU found: training on wgpu (NVIDIA
    /// GeForce RTX 3060, discrete GPU, Vulkan)`, or, for a software renderer (which only
    /// `--device wgpu` picks), that it is one.
    pub(super) fn into_choice(self) -> (Device, String) {
        let line = if self.adapter.is_software() {
            format!(
                "wgpu adapter {} is a software renderer (the GPU's work done on the CPU, far \
                 slower than the CPU backend): training on wgpu as asked",
                self.adapter.name
            )
        } else {
            format!(
                "GPU found: training on wgpu ({}, {})",
                self.adapter.describe(),
                graphics_api()
            )
        };
        (self.device, line)
    }
}

/// The best wgpu adapter here: the first hardware GPU (discrete, then integrated, virtual,
/// other), else a software renderer; opened and touched once, so that a broken driver shows
/// up here and not mid-training.
#[cfg(feature = "wgpu")]
pub(super) fn wgpu_adapter() -> std::result::Result<FoundAdapter, String> {
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
            let _ = burn::tensor::Tensor::<1>::zeros([1], &device).into_data();
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
pub(super) fn wgpu_adapter() -> std::result::Result<FoundAdapter, String> {
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
