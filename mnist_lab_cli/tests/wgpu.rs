//! The GPU path, for real: each lecture model trained a few steps on wgpu against the CPU,
//! from the same seed (the checks are `tests/gpu/mod.rs`'s, which `tests/cuda.rs` runs on
//! CUDA).
//!
//! CI runs it on lavapipe, Mesa's Vulkan driver that runs on the CPU (Debian's
//! `mesa-vulkan-drivers`): the same shaders, buffers, autodiff and device plumbing as a GPU,
//! only slower. A build with the `wgpu` feature asks for these tests, so where no wgpu adapter
//! is found they fail, saying how to get one (no test passes by skipping).
//!
//! On wgpu the crate's fused CPU ops (`nn::Linear`, `nn::Conv2d`, the lecture's SGD step)
//! fall back to Burn's own ops; these runs train through those fallbacks.
#![cfg(feature = "wgpu")]

mod gpu;

use mnist_lab::device::{self, device_label, is_cpu, pick_device};
use mnist_lab::prelude::*;

/// The wgpu device. Without one the test fails: these tests are what a build with `wgpu`
/// asks for.
fn wgpu() -> Device {
    pick_device(DeviceChoice::Wgpu).unwrap_or_else(|why| {
        panic!(
            "no wgpu adapter: {why}. These tests need one: a GPU with its Vulkan (Metal, DX12) \
             driver, or lavapipe, Mesa's Vulkan driver on the CPU (Debian and Ubuntu: \
             `apt-get install mesa-vulkan-drivers`)"
        )
    })
}

#[test]
fn every_model_starts_from_the_cpus_weights() {
    gpu::every_model_starts_from_the_cpus_weights(&wgpu());
}

#[test]
fn every_lecture_model_trains_on_wgpu_with_the_cpus_losses() {
    gpu::every_lecture_model_trains_with_the_cpus_losses(&wgpu());
}

/// The losses come back once per log interval and evaluate's counts once, with the CPU's
/// losses and accuracy.
#[test]
fn wgpu_reads_the_losses_once_per_log_interval() {
    gpu::the_losses_come_back_once_per_log_interval(&wgpu());
}

#[test]
fn auto_never_trains_on_a_software_renderer_and_the_report_names_the_adapter() {
    let gpu = wgpu();
    let label = device_label(&gpu);
    assert!(
        label.starts_with("wgpu (") && label.len() > "wgpu ()".len(),
        "{label}"
    );
    let software = label.ends_with("software renderer)");
    let auto = pick_device(DeviceChoice::Auto).unwrap();
    if software {
        assert!(is_cpu(&auto), "Auto picked {}", device_label(&auto));
        let line = device::gpu_report();
        assert!(line.contains("software renderer"), "{line}");
    } else {
        assert!(!is_cpu(&auto), "Auto passed over {label}");
    }
}

/// The program on wgpu, without XDG_RUNTIME_DIR (as in CI, a container, or a kernel started
/// without a desktop session): the Vulkan stack's noise about it must not show, the device
/// line must name the adapter.
#[test]
fn the_program_on_wgpu_prints_no_driver_noise() {
    let gpu = wgpu();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .args(["bench", "--quick", "--models", "fc", "--device", "wgpu"])
        .args(["--batch-size", "10", "--steps", "1", "--eval-steps", "1"])
        .env_remove("XDG_RUNTIME_DIR")
        .env_remove("MNIST_LAB_DEVICE")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(
        !stderr.contains("XDG_RUNTIME_DIR") && !stdout.contains("XDG_RUNTIME_DIR"),
        "{stderr}"
    );
    let adapter = device_label(&gpu);
    let name = adapter
        .trim_start_matches("wgpu (")
        .split(", ")
        .next()
        .unwrap();
    assert!(
        stdout.contains(name) || stderr.contains(name),
        "the device line does not name {name}:\n{stdout}\n{stderr}"
    );
}

/// `mnist-lab train` on wgpu and on the CPU, same seed: the same per-step losses, through the
/// program's own seeding and data loading, on MNIST files the test writes.
#[test]
fn the_program_trains_on_wgpu_with_the_cpus_losses() {
    let _gpu = wgpu();
    gpu::the_program_trains_with_the_cpus_losses("wgpu");
}
