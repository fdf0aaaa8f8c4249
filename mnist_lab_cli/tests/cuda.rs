//! The CUDA path: `tests/wgpu.rs`'s checks (the same starting weights as the CPU, per-step
//! losses within the stated tolerance, `evaluate` giving the CPU's accuracy) on an NVIDIA GPU.
//!
//! They need an NVIDIA GPU and its driver, so they are `#[ignore]`d: on such a machine run
//! `cargo test -p mnist_lab_cli --features cuda -- --ignored` (`scripts/gpu_check.sh` does).
//! There they fail, saying why, when no CUDA device opens: nothing passes by skipping.
//!
//! One test runs everywhere: the program with `--device cuda` and `--device auto` on
//! whatever machine runs it (on one without a driver: a one-line error, and the CPU).
#![cfg(feature = "cuda")]

mod gpu;

use std::process::Command;

use mnist_lab::device::{device_label, is_cpu, pick_device};
use mnist_lab::prelude::*;

/// The CUDA device. Without one the test fails: these tests are what a run with `--ignored`
/// on an NVIDIA machine asks for.
fn cuda() -> Device {
    pick_device(DeviceChoice::Cuda)
        .unwrap_or_else(|why| panic!("{why} These tests need an NVIDIA GPU with its driver."))
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: cargo test -p mnist_lab_cli --features cuda -- --ignored"]
fn every_model_starts_from_the_cpus_weights_on_cuda() {
    gpu::every_model_starts_from_the_cpus_weights(&cuda());
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: cargo test -p mnist_lab_cli --features cuda -- --ignored"]
fn every_lecture_model_trains_on_cuda_with_the_cpus_losses() {
    gpu::every_lecture_model_trains_with_the_cpus_losses(&cuda());
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: cargo test -p mnist_lab_cli --features cuda -- --ignored"]
fn cuda_reads_the_losses_once_per_log_interval() {
    gpu::the_losses_come_back_once_per_log_interval(&cuda());
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: cargo test -p mnist_lab_cli --features cuda -- --ignored"]
fn the_program_trains_on_cuda_with_the_cpus_losses() {
    let _gpu = cuda();
    gpu::the_program_trains_with_the_cpus_losses("cuda");
}

#[test]
#[ignore = "needs an NVIDIA GPU and its driver: cargo test -p mnist_lab_cli --features cuda -- --ignored"]
fn auto_trains_on_the_nvidia_gpu_and_the_report_names_it() {
    let gpu = cuda();
    let label = device_label(&gpu);
    assert!(
        label.starts_with("cuda (") && label.len() > "cuda ()".len(),
        "{label}"
    );
    let auto = pick_device(DeviceChoice::Auto).unwrap();
    assert!(!is_cpu(&auto), "Auto passed over {label}");
    assert_eq!(device_label(&auto), label);
}

/// `mnist-lab train --device cuda` and `--device auto`, on whatever machine runs the test.
/// With an NVIDIA GPU both train on it. Without one, `cuda` fails with one line that says
/// why (without a driver: `no NVIDIA driver: libcuda.so.1: cannot open shared object
/// file...`) and what to do, with no panic; `auto` says the same reason and trains on the CPU.
#[test]
fn the_program_trains_on_cuda_or_says_why_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    mnist_lab::data::write_idx_dir(dir.path(), &Mnist::synthetic(100, 50, 5), true).unwrap();
    let run = |device: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
            .args(["train", "--model", "fc", "--max-steps", "2", "--seed", "0"])
            .arg("--data")
            .arg(dir.path())
            .args(["--batch-size", "50", "--device", device])
            .env_remove("MNIST_LAB_DEVICE")
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        (out.status.success(), stdout, stderr)
    };
    let (cuda_ok, cuda_out, cuda_err) = run("cuda");
    let (auto_ok, auto_out, auto_err) = run("auto");
    assert!(auto_ok, "--device auto failed:\n{auto_out}\n{auto_err}");
    if cuda_ok {
        assert!(cuda_out.contains("training on cuda"), "{cuda_out}");
        assert!(auto_out.contains("training on cuda"), "{auto_out}");
        return;
    }
    assert!(!cuda_err.contains("panicked"), "{cuda_err}");
    let error = cuda_err.trim();
    assert_eq!(error.lines().count(), 1, "more than one line:\n{error}");
    assert!(
        error.starts_with("error: device `cuda` was asked for, but CUDA is not available (")
            && error.contains("--device cpu"),
        "{error}"
    );
    // The reason, between the first "(" and the ")" before ". Use".
    let reason = &error[error.find('(').unwrap() + 1..error.find("). Use").unwrap()];
    let line = auto_out
        .lines()
        .find(|l| l.contains("training on the CPU"))
        .unwrap_or_else(|| panic!("auto did not say it trains on the CPU:\n{auto_out}"));
    assert!(
        line.contains(&format!("CUDA not available ({reason})")),
        "{line}"
    );
}
