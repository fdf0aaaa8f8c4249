//! The lecture's training loop (cross-entropy loss, plain SGD) and its evaluation.
//!
//! [`train`] prints the familiar log lines as it goes, one whole line at a time so that
//! notebooks stream them, a few per epoch whatever its length (every 100 steps on the full
//! MNIST's 600, every 20 on mnist-mini's 80; see [`log_interval`]):
//!
//! ```text
//! Epoch [1/3], Step [100/600], Loss: 2.2301
//! Epoch [1/3] done: mean loss 2.2507, 4.1 s, 14,600 images/s
//! ```
//!
//! and [`evaluate`] prints
//! `Accuracy of the network on the 10000 test images: 86.3 %`.
//!
//! On a GPU both read their results back in batches (the losses once per log interval, the
//! right answers once per evaluation), since each read makes the CPU wait for the GPU;
//! [`crate::testing::device_reads`] counts the reads.
//!
//! In the project's notebook kernel, training also shows a progress bar and the loss chart
//! that update in place, and the stop button ends a run early and keeps the model: see
//! [`crate::live`].
//!
//! The parts: the settings ([`TrainingConfig`]), the step and the loop around it
//! ([`sgd_step`], [`TrainingBatches`], [`Trainer`]), the evaluation ([`evaluate`],
//! [`count_correct_in`]) and the allocator's settings ([`tune_allocator`]), each in a file of
//! its own; this file holds [`train`], which puts them together with the live display.

mod config;
mod evaluate;
mod memory;
mod trainer;

use std::time::Instant;

use burn::tensor::Device;

pub use self::config::TrainingConfig;
pub(crate) use self::evaluate::score_batches;
pub use self::evaluate::{count_correct_in, evaluate};
pub(crate) use self::memory::ReleaseOnReturn;
pub use self::memory::{RELEASE_MEMORY_VAR, release_memory, tune_allocator};
use self::trainer::Event;
pub use self::trainer::{Trainer, TrainingBatches, loader, sgd_step};
use crate::data::Mnist;
use crate::live::{self, Progress, StopSignal, Watch};
use crate::models::Classifier;
use crate::nn::fused::on_pool;
pub use crate::report::{TrainingReport, thousands};
use crate::{Result, check};

/// Seeds the random number generator that initialises weights on `device`, so that a model
/// created next is the same every run.
///
/// In an evcxr notebook, call it in the cell that creates the model: evcxr builds each cell
/// as its own library with its own copy of Burn, so the generator a cell seeds is that
/// cell's, and a model built in a later cell would draw from an unseeded one.
pub fn seed(device: &Device, seed: u64) {
    // The CPU's generator too: a model built on a GPU draws its starting weights on the CPU.
    crate::device::seed(device, seed);
}

/// Trains `model` with cross-entropy loss and plain SGD, as the lecture does.
///
/// Before the first step the model is run on one sample batch, so a layer size that does
/// not fit the data is reported with the arithmetic instead of a panic
/// ([`Error::ModelShape`]). A loss that turns NaN or infinite stops the run
/// ([`Error::Diverged`]). Settings are checked first ([`Error::Setting`]).
///
/// On the CPU each step's loss is read as it comes. On a GPU the losses stay on the device
/// and come back in one read per log interval (and one at the end of an epoch or a run), so
/// that the CPU does not wait for the GPU at every step; the log lines, the report's losses
/// and the live chart's points are the same, and the progress bar shows the loss last read.
/// A loss that turns NaN or infinite there is caught at the next read, at most a log interval
/// late: the error names the step that had it, as on the CPU.
///
/// The stop button of the project's notebook kernel (or a first Ctrl+C on the command
/// line) ends the run after the current step: `train` then returns the model as trained so
/// far, and the report's [`stopped_at`](TrainingReport::stopped_at) says where it stopped.
///
/// Returns the trained model and a [`TrainingReport`].
pub fn train<M: Classifier>(
    model: M,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
) -> Result<(M, TrainingReport)> {
    config.validate()?;
    tune_allocator();
    let _release = ReleaseOnReturn;
    check::check_model(&model, device, config.num_classes)?;
    let stop = StopSignal::new();
    let reads = Reads::for_device(device);
    on_pool(|| train_loop(model, data, config, device, &stop, reads))
}

/// The log interval: `log_every`, or a smaller round number when an epoch of
/// `steps_per_epoch` steps would print fewer than four step lines at `log_every`.
///
/// ```
/// use mnist_lab::train::log_interval;
///
/// assert_eq!(log_interval(100, 600), 100); // the full MNIST: Step [100/600], [200/600], ...
/// assert_eq!(log_interval(100, 80), 20); // mnist-mini: Step [20/80], [40/80], ...
/// assert_eq!(log_interval(100, 5), 1);
/// ```
pub fn log_interval(log_every: usize, steps_per_epoch: usize) -> usize {
    const ROUND: [usize; 8] = [100, 50, 25, 20, 10, 5, 2, 1];
    std::iter::once(log_every)
        .chain(ROUND.into_iter().filter(|&n| n < log_every))
        .find(|&n| n > 0 && steps_per_epoch / n >= 4)
        .unwrap_or(1)
}

/// When [`train`]'s loop reads the losses back from the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reads {
    /// Each step's loss as it comes: on the CPU, where a read costs nothing.
    EveryStep,
    /// Once per log interval, and at the end of an epoch or a run: on a GPU, where each read
    /// makes the CPU wait for the GPU.
    PerLogInterval,
}

impl Reads {
    fn for_device(device: &Device) -> Self {
        if crate::device::is_cpu(device) {
            Reads::EveryStep
        } else {
            Reads::PerLogInterval
        }
    }
}

/// [`train`]'s loop, after the checks.
fn train_loop<M: Classifier>(
    model: M,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
    stop: &StopSignal,
    reads: Reads,
) -> Result<(M, TrainingReport)> {
    let mut trainer = Trainer::new(model, device, config.learning_rate);
    let batches = TrainingBatches::new(data, config, &trainer.device);

    let steps_per_epoch = data.train.len().div_ceil(config.batch_size);
    let log_every = log_interval(config.log_every, steps_per_epoch);
    trainer.read_every(match reads {
        Reads::EveryStep => 1,
        Reads::PerLogInterval => log_every,
    });
    let total_steps = steps_per_epoch * config.num_epochs;
    let step_limit = config.max_steps.unwrap_or(usize::MAX).min(total_steps);
    let mut report = TrainingReport {
        name: short_type_name::<M>(),
        epochs: 0,
        steps: 0,
        batch_size: config.batch_size,
        learning_rate: config.learning_rate,
        seed: config.seed,
        losses: Vec::with_capacity(step_limit.min(1 << 20)),
        epoch_seconds: Vec::new(),
        epoch_images_per_second: Vec::new(),
        train_seconds: 0.0,
        images_per_second: 0.0,
        test_accuracy: None,
        test_total: None,
        device: crate::device::device_label(device),
        stopped_at: None,
    };

    let mut watch = Watch::new();
    let mut last = None;
    let mut images_seen = 0usize;
    for epoch in 1..=config.num_epochs {
        if report.steps >= step_limit || report.stopped_at.is_some() {
            break;
        }
        let started = Instant::now();
        let (mut epoch_images, mut epoch_loss) = (0usize, 0.0f64);
        let first_step = report.steps;
        let outcome = trainer.run_with(batches.iter(), |event| match event {
            Event::Losses(losses) => {
                for &value in losses {
                    report.losses.push(value);
                    epoch_loss += value as f64;
                    let i = report.losses.len() - first_step;
                    if i.is_multiple_of(log_every) {
                        watch.line(&format!(
                            "Epoch [{epoch}/{}], Step [{i}/{steps_per_epoch}], Loss: {value:.4}",
                            config.num_epochs,
                        ));
                    }
                }
                true
            }
            Event::Step(n) => {
                report.steps += 1;
                epoch_images += n;
                // The loss shown is the last one read (on a GPU, up to a log interval old).
                if let (true, Some(&loss)) = (watch.is_watched(), report.losses.last()) {
                    let elapsed = watch.elapsed_seconds();
                    let progress = Progress {
                        epoch,
                        num_epochs: config.num_epochs,
                        step: report.steps,
                        total_steps: step_limit,
                        loss,
                        images_per_second: (images_seen + epoch_images) as f64 / elapsed.max(1e-9),
                        elapsed_seconds: elapsed,
                    };
                    watch.step(&report, &progress);
                    last = Some(progress);
                }
                if stop.requested() {
                    report.stopped_at = Some(report.steps);
                    return false;
                }
                report.steps < step_limit
            }
        })?;
        if let Some(loss) = outcome {
            watch.finish(
                last.take(),
                &format!(
                    "Stopped at step {}: the loss became {loss}",
                    trainer.diverged_step()
                ),
            );
            return Err(trainer.diverged(loss, epoch));
        }
        let seconds = started.elapsed().as_secs_f64();
        let rate = epoch_images as f64 / seconds.max(1e-9);
        let mean = epoch_loss / (report.steps - first_step).max(1) as f64;
        watch.line(&format!(
            "Epoch [{epoch}/{}] done: mean loss {mean:.4}, {seconds:.1} s, {} images/s",
            config.num_epochs,
            thousands(rate)
        ));
        report.epochs = epoch;
        report.epoch_seconds.push(seconds);
        report.epoch_images_per_second.push(rate);
        images_seen += epoch_images;
    }
    report.train_seconds = report.epoch_seconds.iter().sum();
    report.images_per_second = images_seen as f64 / report.train_seconds.max(1e-9);
    let summary = match report.stopped_at {
        Some(step) => {
            let line = format!(
                "Stopped at step {step} of {step_limit} (epoch {} of {}): the model keeps what \
                 it learned so far",
                report.epochs, config.num_epochs
            );
            watch.line(&line);
            line
        }
        None => format!(
            "Trained {} steps ({} epochs) in {}, {} images/s",
            report.steps,
            report.epochs,
            live::duration(report.train_seconds),
            thousands(report.images_per_second)
        ),
    };
    watch.finish(last, &summary);
    Ok((trainer.into_model(), report))
}

fn short_type_name<M>() -> String {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::tensor::Tensor;

    use super::evaluate::evaluate_loop;
    use super::*;
    use crate::Error;
    use crate::data::MnistBatch;
    use crate::models::ConvNet;
    use crate::nn::fused::sgd;
    use crate::testing::parameter_values as values;
    use burn::tensor::Distribution;

    #[test]
    fn the_lectures_sgd_steps_exactly_as_burns() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu().autodiff();
        let start = ConvNet::new(32, 10, &device);
        let loss_fn = CrossEntropyLossConfig::new().init(&device);
        let images = Tensor::<4>::random([8, 1, 28, 28], Distribution::Default, &device);
        let batch = || MnistBatch {
            images: images.clone(),
            targets: Tensor::from_ints([0, 1, 2, 3, 4, 5, 6, 7], &device),
        };
        let (ours, _) = sgd_step(start.clone(), &mut sgd(), &loss_fn, batch(), 0.05);
        let mut burns = burn::optim::SgdConfig::new().init();
        let (theirs, _) = sgd_step(start.clone(), &mut burns, &loss_fn, batch(), 0.05);
        let (ours, theirs, start) = (values(&ours), values(&theirs), values(&start));
        assert_eq!(ours.len(), start.len());
        assert!(
            ours.iter().zip(&start).any(|(a, b)| a != b),
            "nothing moved"
        );
        assert_eq!(ours, theirs);
    }

    #[test]
    fn the_stop_file_ends_training_after_the_step_and_keeps_the_model() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let data = Mnist::synthetic(400, 100, 3);
        let config = TrainingConfig::new()
            .with_hidden_size(16)
            .with_num_epochs(5);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stop");
        let stop = StopSignal::with_file(file.clone());
        let start = crate::models::FcNet::new(784, 16, 10, &device);
        let before = values(&start);

        std::fs::write(&file, "").unwrap();
        let (model, report) =
            train_loop(start, &data, &config, &device, &stop, Reads::EveryStep).unwrap();
        assert_eq!(report.stopped_at, Some(1));
        assert_eq!(
            (report.steps, report.losses.len(), report.epochs),
            (1, 1, 1)
        );
        assert!(!file.exists(), "train removes the stop file it took");
        assert_ne!(values(&model), before, "the model keeps its one step");

        // Without the file, the next run goes to the end: 5 epochs of 4 steps.
        let (_, report) =
            train_loop(model, &data, &config, &device, &stop, Reads::EveryStep).unwrap();
        assert_eq!((report.stopped_at, report.steps), (None, 20));
    }

    #[test]
    fn the_stop_file_ends_evaluation_after_the_batch() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let data = Mnist::synthetic(100, 500, 4);
        let config = TrainingConfig::new().with_hidden_size(16);
        let model = crate::models::FcNet::new(784, 16, 10, &device);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stop");
        std::fs::write(&file, "").unwrap();
        let stop = StopSignal::with_file(file.clone());
        let (_, counted) = evaluate_loop(&model, &data, &config, &device, &stop).unwrap();
        assert_eq!(counted, 100, "one batch of the 500 test images");
        assert!(!file.exists());
        let (_, counted) = evaluate_loop(&model, &data, &config, &device, &stop).unwrap();
        assert_eq!(counted, 500);
    }

    /// The log lines and progress a run hands its observer.
    #[derive(Default)]
    struct Seen {
        lines: std::sync::Mutex<Vec<String>>,
        steps: std::sync::Mutex<Vec<usize>>,
    }

    impl live::Observer for Arc<Seen> {
        fn progress(&self, progress: &Progress) {
            self.steps.lock().unwrap().push(progress.step);
        }
        fn line(&self, text: &str) {
            self.lines.lock().unwrap().push(text.to_string());
        }
    }

    /// The CPU with the GPU's reads: the same losses, weights and log lines as reading each
    /// step's loss, in one read per log interval plus one at each epoch's end.
    #[test]
    fn reading_the_losses_once_per_log_interval_changes_nothing_but_the_reads() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        // 23 steps an epoch: a log line every 5 steps (4 lines), and 3 steps after the last.
        let data = Mnist::synthetic(460, 100, 5);
        let config = TrainingConfig::new()
            .with_hidden_size(16)
            .with_batch_size(20)
            .with_learning_rate(0.05)
            .with_num_epochs(2);
        assert_eq!(log_interval(config.log_every, 23), 5);
        let run = |config: &TrainingConfig, reads: Reads, stop: &StopSignal| {
            crate::device::seed(&device, 3);
            let model = crate::models::FcReluNet::new(784, 16, 10, &device);
            let seen = Arc::new(Seen::default());
            live::set_observer(seen.clone());
            let before = crate::testing::device_reads();
            let outcome = train_loop(model, &data, config, &device, stop, reads);
            let reads = crate::testing::device_reads() - before;
            live::clear_observer();
            let (model, report) = outcome.unwrap();
            let lines: Vec<String> = seen.lines.lock().unwrap().clone();
            // The step lines whole, and the epochs' mean losses without their times.
            let lines: Vec<String> = lines
                .iter()
                .map(|line| match line.split_once(" done: ") {
                    Some((epoch, rest)) => format!("{epoch} {}", rest.split(", ").next().unwrap()),
                    None => line.clone(),
                })
                .collect();
            let steps = seen.steps.lock().unwrap().clone();
            (report, values(&model), lines, steps, reads)
        };
        let no_stop = StopSignal::default();
        let (each, each_weights, each_lines, each_steps, each_reads) =
            run(&config, Reads::EveryStep, &no_stop);
        let (batched, weights, lines, steps, reads) = run(&config, Reads::PerLogInterval, &no_stop);
        assert_eq!(each.losses.len(), 46);
        assert_eq!(each_reads, 46, "one read per step");
        assert_eq!(
            reads,
            2 * (23 / 5 + 1),
            "4 log lines and the epoch's end, 2 epochs"
        );
        assert_eq!(batched.losses, each.losses, "bit for bit");
        assert_eq!(batched.steps, each.steps);
        assert!(weights == each_weights, "the same updates");
        assert_eq!(lines.len(), 2 * (4 + 1));
        assert_eq!(lines, each_lines);
        // The progress bar moves every step, from the first step whose loss is known.
        assert_eq!(each_steps, (1..=46).collect::<Vec<_>>());
        assert_eq!(steps, each_steps[4..]);

        // A run cut short by max_steps reads what it has when it stops: at 5, then at 7.
        let short = config.clone().with_max_steps(Some(7));
        let (report, _, _, _, reads) = run(&short, Reads::PerLogInterval, &no_stop);
        assert_eq!((report.losses.len(), reads), (7, 2));
        assert_eq!(report.losses, each.losses[..7]);

        // The stop button: after the first step, with its loss read.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("stop");
        std::fs::write(&file, "").unwrap();
        let stop = StopSignal::with_file(file);
        let (report, _, _, _, reads) = run(&config, Reads::PerLogInterval, &stop);
        assert_eq!(
            (report.stopped_at, report.losses.len(), reads),
            (Some(1), 1, 1)
        );
        assert_eq!(report.losses, each.losses[..1]);
    }

    /// A loss that turns NaN between two reads is caught at the next read, with the step
    /// that had it, as reading each step's loss catches it at once.
    #[test]
    fn a_diverging_loss_read_late_names_the_step_that_diverged() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu();
        let data = Mnist::synthetic(1000, 50, 5);
        let config = TrainingConfig::new()
            .with_hidden_size(32)
            .with_batch_size(50)
            .with_learning_rate(10.0);
        let run = |reads: Reads| {
            crate::device::seed(&device, 2);
            let model = crate::models::FcNet::new(784, 32, 10, &device);
            let stop = StopSignal::default();
            match train_loop(model, &data, &config, &device, &stop, reads) {
                Err(Error::Diverged {
                    step, epoch, loss, ..
                }) => (step, epoch, loss.to_string()),
                other => panic!("expected Diverged, got {:?}", other.map(|(_, r)| r.losses)),
            }
        };
        let each = run(Reads::EveryStep);
        assert_eq!(run(Reads::PerLogInterval), each);
    }

    #[test]
    fn every_epoch_logs_a_few_step_lines() {
        for steps_per_epoch in 1..2000 {
            let every = log_interval(100, steps_per_epoch);
            assert!((1..=100).contains(&every));
            assert!(
                steps_per_epoch / every >= 4 || every == 1,
                "{steps_per_epoch} steps, a line every {every}"
            );
        }
        assert_eq!(log_interval(100, 600), 100);
        assert_eq!(log_interval(100, 80), 20);
        assert_eq!(log_interval(10, 600), 10, "never more than asked for");
        assert_eq!(log_interval(7, 20), 5);
    }

    #[test]
    fn thousands_groups_digits() {
        assert_eq!(thousands(0.4), "0");
        assert_eq!(thousands(999.0), "999");
        assert_eq!(thousands(1234567.8), "1,234,568");
    }

    #[test]
    fn every_bad_setting_is_named() {
        let cases = [
            (TrainingConfig::new().with_batch_size(0), "batch_size"),
            (TrainingConfig::new().with_num_epochs(0), "num_epochs"),
            (TrainingConfig::new().with_hidden_size(0), "hidden_size"),
            (
                TrainingConfig::new().with_learning_rate(0.0),
                "learning_rate",
            ),
            (
                TrainingConfig::new().with_learning_rate(-1.0),
                "learning_rate",
            ),
            (
                TrainingConfig::new().with_learning_rate(f64::NAN),
                "learning_rate",
            ),
            (TrainingConfig::new().with_max_steps(Some(0)), "max_steps"),
        ];
        for (config, name) in cases {
            let message = config.validate().unwrap_err().to_string();
            assert!(message.contains(&format!("`{name}`")), "{message}");
        }
        TrainingConfig::new().validate().unwrap();
    }
}
