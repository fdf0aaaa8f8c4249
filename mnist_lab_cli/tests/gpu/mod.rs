//! The checks a GPU backend must pass against the CPU, for any GPU device: the same starting
//! weights, per-step losses within [`LOSS_TOLERANCE`], and `evaluate` giving the CPU's
//! accuracy, through the library and through the program. `tests/cuda.rs` runs them on CUDA;
//! they are `tests/wgpu.rs`'s checks written once for every backend.
#![allow(dead_code)] // each test binary uses the checks its backend needs

use std::process::Command;
use std::time::Instant;

use mnist_lab::device::{self, device_label, draw_on_cpu, seed};
use mnist_lab::prelude::*;
use mnist_lab::testing::{parameter_values as values, random_numbers};
use mnist_lab_cli::models::ModelKind;

/// Per-step losses of the same model trained on a GPU and on the CPU may differ by this much.
///
/// Both devices start from the same weights and see the same batches, but they sum in a
/// different order (a GPU matmul splits its dot products into tiles; the CPU backends go
/// through the row in blocks of their own). In f32 (24-bit mantissa) each such sum differs in
/// its last bits, about 1e-7 relative. Measured on wgpu (tests/wgpu.rs): at most 2.4e-7 on
/// lavapipe over 4 steps, at most 6e-7 on an NVIDIA H200 over 20 steps. The bound leaves room
/// for longer runs and other drivers, and is ten times smaller than the gap between two
/// different starting draws (about 0.01 at the first step), so a device that started from
/// other weights, skipped an update or computed a wrong gradient fails it.
pub const LOSS_TOLERANCE: f32 = 1e-3;

/// Steps per model: enough for the updates to change the losses.
pub const STEPS: usize = 4;

/// A model of a student's own: built from the crate's layers in its own `new`, as the
/// notebooks do, with its layers in an order of its own.
#[derive(Module, Debug)]
struct StudentNet {
    conv: Conv2d,
    head: Linear,
    hidden: Linear,
    relu: Relu,
}

impl StudentNet {
    fn new(device: &Device) -> Self {
        Self {
            conv: Conv2dConfig::new([1, 4], [5, 5]).init(device),
            hidden: LinearConfig::new(4 * 24 * 24, 32).init(device),
            head: LinearConfig::new(32, 10).init(device),
            relu: Relu::new(),
        }
    }
}

impl Classifier for StudentNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv.forward(images).flatten(1, 3);
        self.head.forward(self.relu.forward(self.hidden.forward(x)))
    }
}

/// Builds a model after `seed`, runs it once on a sample batch (which draws its weights in
/// the order the forward pass uses them) and returns its values.
fn starting_weights(kind: ModelKind, device: &Device) -> Vec<f32> {
    seed(device, 7);
    let model = kind.init(784, 600, 10, device);
    let _ = model.forward(Tensor::zeros([1, 1, 28, 28], device));
    values(&model)
}

/// Every lecture model, a student's own struct, and a Burn layer passed through
/// `draw_on_cpu` start on `gpu` from exactly the CPU's weights after the same seed.
pub fn every_model_starts_from_the_cpus_weights(gpu: &Device) {
    let _random = random_numbers();
    let cpu = device::cpu();
    for kind in ModelKind::ALL {
        let on_cpu = starting_weights(kind, &cpu);
        let started = Instant::now();
        let on_gpu = starting_weights(kind, gpu);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(on_cpu.len(), on_gpu.len(), "{kind}");
        // Bit for bit: the values were drawn on the CPU and copied.
        assert!(on_cpu == on_gpu, "{kind}: the starting weights differ");
        println!(
            "{kind}: {} parameters, the CPU's starting weights on {} (built, drawn on the CPU, \
             copied and run once in {seconds:.3} s)",
            on_cpu.len(),
            device_label(gpu)
        );
    }
    let student = |device: &Device| {
        seed(device, 3);
        let model = StudentNet::new(device);
        let _ = model.forward(Tensor::zeros([1, 1, 28, 28], device));
        values(&model)
    };
    assert!(student(&cpu) == student(gpu), "StudentNet's weights differ");
    // Burn's own layer draws on the device's generator (other weights) unless moved.
    let burn_layer = |device: &Device| {
        seed(device, 5);
        values(&burn::nn::LinearConfig::new(20, 10).init(device))
    };
    let moved = |device: &Device| {
        seed(device, 5);
        let layer = burn::nn::LinearConfig::new(20, 10).init(device);
        values(&draw_on_cpu(layer, device))
    };
    assert!(burn_layer(&cpu) != burn_layer(gpu), "the generators agree?");
    assert!(burn_layer(&cpu) == moved(gpu));
}

/// Each lecture model trained [`STEPS`] steps on `gpu` and on the CPU from the same seed:
/// the same per-step losses within [`LOSS_TOLERANCE`], losses that move, and the CPU's
/// trained weights evaluated on `gpu` give the CPU's accuracy.
pub fn every_lecture_model_trains_with_the_cpus_losses(gpu: &Device) {
    let _random = random_numbers();
    let cpu = device::cpu();
    let name = device_label(gpu);
    let data = Mnist::synthetic(200, 100, 11);
    // A learning rate 50 times the lecture's, so that each step's update shows in the next
    // step's loss.
    let config = TrainingConfig::new()
        .with_batch_size(20)
        .with_learning_rate(0.05)
        .with_max_steps(Some(STEPS))
        .with_seed(21);
    let run = |kind: ModelKind, device: &Device, evaluate_on: &[Device]| {
        seed(device, config.seed);
        let model = kind.init(784, 600, 10, device);
        let (model, report) = train(model, &data, &config, device).unwrap();
        let accuracies: Vec<f64> = evaluate_on
            .iter()
            .map(|device| evaluate(&model, &data, &config, device).unwrap())
            .collect();
        (report.losses, accuracies)
    };
    for kind in ModelKind::ALL {
        let (cpu_losses, accuracies) = run(kind, &cpu, &[cpu.clone(), gpu.clone()]);
        let started = Instant::now();
        let (gpu_losses, _) = run(kind, gpu, &[]);
        let seconds = started.elapsed().as_secs_f64();
        assert_eq!(gpu_losses.len(), STEPS, "{kind}");
        let gap = cpu_losses
            .iter()
            .zip(&gpu_losses)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        println!(
            "{kind}: losses on the CPU {cpu_losses:?}, on {name} {gpu_losses:?}: largest gap \
             {gap:.2e} (tolerance {LOSS_TOLERANCE:.0e}); {STEPS} steps in {seconds:.1} s; \
             accuracy of the CPU's weights: {:.1} % on the CPU, {:.1} % on {name}",
            accuracies[0], accuracies[1]
        );
        assert!(
            gap <= LOSS_TOLERANCE,
            "{kind}: {name}'s losses {gpu_losses:?} are not the CPU's {cpu_losses:?}"
        );
        assert!(
            gpu_losses.windows(2).all(|w| w[0] != w[1]),
            "{kind}: the losses do not move: {gpu_losses:?}"
        );
        // The same weights give the same predictions; an image whose two best scores are
        // closer than the devices' rounding could flip, so one image of slack.
        let images = data.test.len() as f64;
        assert!(
            (accuracies[0] - accuracies[1]).abs() <= 100.0 / images + 1e-9,
            "{kind}: accuracy {:.1} % on the CPU, {:.1} % on {name}",
            accuracies[0],
            accuracies[1]
        );
    }
}

/// `mnist-lab train` with `--device` `device` (e.g. `cuda`) and `cpu`, same seed, on MNIST
/// files the test writes: the same per-step losses, and each report names its device.
pub fn the_program_trains_with_the_cpus_losses(device: &str) {
    let dir = tempfile::tempdir().unwrap();
    mnist_lab::data::write_idx_dir(dir.path(), &Mnist::synthetic(200, 100, 13), true).unwrap();
    let losses = |device: &str| {
        let json = dir.path().join(format!("{device}.json"));
        let out = Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
            .args(["train", "--model", "fc", "--max-steps", "3", "--seed", "0"])
            .arg("--data")
            .arg(dir.path())
            .args(["--batch-size", "50", "--lr", "0.05", "--device", device])
            .arg("--json")
            .arg(&json)
            .env_remove("MNIST_LAB_DEVICE")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let report: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
        let losses: Vec<f32> = report["losses"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap() as f32)
            .collect();
        (losses, report["device"].as_str().unwrap().to_string())
    };
    let (cpu, cpu_device) = losses("cpu");
    let (gpu, gpu_device) = losses(device);
    assert!(cpu_device.starts_with("cpu"), "{cpu_device}");
    assert!(
        gpu_device.starts_with(&format!("{device} (")),
        "{gpu_device}"
    );
    assert_eq!(cpu.len(), gpu.len());
    for (a, b) in cpu.iter().zip(&gpu) {
        assert!(
            (a - b).abs() <= LOSS_TOLERANCE,
            "the program's losses: {cpu:?} on the CPU, {gpu:?} on {device}"
        );
    }
}

/// One epoch of 23 steps on `gpu`, a log line every 5: the losses come back in 5 reads (at
/// steps 5, 10, 15 and 20, and at the epoch's end) where the CPU reads each step's, they are
/// the CPU's within [`LOSS_TOLERANCE`], and `evaluate` reads its 10 batches' right answers
/// once and gives the CPU's accuracy.
pub fn the_losses_come_back_once_per_log_interval(gpu: &Device) {
    use mnist_lab::testing::device_reads;
    let _random = random_numbers();
    let cpu = device::cpu();
    let data = Mnist::synthetic(230, 100, 17);
    let config = TrainingConfig::new()
        .with_batch_size(10)
        .with_learning_rate(0.05)
        .with_num_epochs(1)
        .with_max_steps(None)
        .with_seed(4);
    assert_eq!(mnist_lab::train::log_interval(config.log_every, 23), 5);
    let run = |device: &Device| {
        seed(device, config.seed);
        let model = ModelKind::Fc.init(784, 600, 10, device);
        let before = device_reads();
        let (model, report) = train(model, &data, &config, device).unwrap();
        let train_reads = device_reads() - before;
        let before = device_reads();
        let accuracy = evaluate(&model, &data, &config, device).unwrap();
        let evaluate_reads = device_reads() - before;
        (report.losses, train_reads, accuracy, evaluate_reads)
    };
    let (cpu_losses, cpu_reads, cpu_accuracy, cpu_eval_reads) = run(&cpu);
    let (gpu_losses, gpu_reads, gpu_accuracy, gpu_eval_reads) = run(gpu);
    let name = device_label(gpu);
    println!(
        "reads per epoch of 23 steps: {cpu_reads} on the CPU, {gpu_reads} on {name}; evaluate: \
         {cpu_eval_reads} and {gpu_eval_reads}; accuracy {cpu_accuracy:.1} % and \
         {gpu_accuracy:.1} %"
    );
    assert_eq!(cpu_reads, 23, "the CPU reads each step's loss");
    assert_eq!(
        gpu_reads,
        23 / 5 + 1,
        "one read per log interval and one at the end"
    );
    assert_eq!((cpu_eval_reads, gpu_eval_reads), (1, 1));
    assert_eq!(gpu_losses.len(), 23);
    for (a, b) in cpu_losses.iter().zip(&gpu_losses) {
        assert!(
            (a - b).abs() <= LOSS_TOLERANCE,
            "losses {cpu_losses:?} on the CPU, {gpu_losses:?} on {name}"
        );
    }
    assert!(
        (cpu_accuracy - gpu_accuracy).abs() <= 100.0 / data.test.len() as f64 + 1e-9,
        "accuracy {cpu_accuracy:.1} % on the CPU, {gpu_accuracy:.1} % on {name}"
    );
}
