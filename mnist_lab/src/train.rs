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

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use burn::config::Config;
use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Int, Tensor};

use crate::data::{Mnist, MnistBatch, MnistBatcher, Split};
use crate::device::read;
use crate::live::{self, LiveDisplay, Progress, StopSignal};
use crate::models::Classifier;
use crate::nn::fused::{on_pool, sgd};
pub use crate::report::{TrainingReport, thousands};
use crate::{Error, Result, check};

/// The lecture's hyper-parameters, with its values as defaults.
///
/// ```
/// use mnist_lab::train::TrainingConfig;
///
/// let config = TrainingConfig::new().with_num_epochs(10);
/// assert_eq!((config.batch_size, config.learning_rate), (100, 0.001));
/// ```
///
/// `max_steps` starts as `MNIST_LAB_MAX_STEPS` when that is set, as in the notebook tests:
///
/// ```
/// use mnist_lab::train::TrainingConfig;
///
/// // SAFETY: no other thread of this doctest reads the environment.
/// unsafe { std::env::set_var("MNIST_LAB_MAX_STEPS", "60") };
/// assert_eq!(TrainingConfig::new().max_steps, Some(60));
/// assert_eq!(TrainingConfig::new().with_max_steps(None).max_steps, None);
/// unsafe { std::env::remove_var("MNIST_LAB_MAX_STEPS") };
/// assert_eq!(TrainingConfig::new().max_steps, None);
/// ```
#[derive(Config, Debug)]
pub struct TrainingConfig {
    /// Pixels per image, 28 x 28: set by the task.
    #[config(default = 784)]
    pub input_size: usize,
    /// Width of the hidden layers: free to choose.
    #[config(default = 600)]
    pub hidden_size: usize,
    /// Digits to tell apart: set by the task.
    #[config(default = 10)]
    pub num_classes: usize,
    /// Passes over the training set.
    #[config(default = 3)]
    pub num_epochs: usize,
    /// Images per gradient step.
    #[config(default = 100)]
    pub batch_size: usize,
    /// SGD's step size.
    #[config(default = 0.001)]
    pub learning_rate: f64,
    /// Seed for the shuffling of the training set. [`train`] uses it for nothing else: the
    /// starting weights are drawn when the model is created, so seed them first with
    /// [`seed`]`(&device, config.seed)` (the `mnist-lab` commands and
    /// [`run_model`](crate::cli::run_model) do both with this value).
    #[config(default = 42)]
    pub seed: u64,
    /// Stop after this many steps in all (for quick runs); `None` runs every epoch in full.
    ///
    /// It starts as the `MNIST_LAB_MAX_STEPS` environment variable when that is set (the
    /// notebook tests set it to keep every training cell short), else `None`; a value that is
    /// not a whole number is ignored with a warning. `with_max_steps` overrides it, and
    /// `with_max_steps(None)` lifts it (see the example on [`TrainingConfig`]).
    #[config(default = "max_steps_from_env()")]
    pub max_steps: Option<usize>,
    /// Print a log line every this many steps (fewer when an epoch is short: see
    /// [`log_interval`]).
    #[config(default = 100)]
    pub log_every: usize,
}

impl TrainingConfig {
    /// Checks every setting, naming the first one that is out of range.
    pub fn validate(&self) -> Result<()> {
        let positive = [
            ("input_size", self.input_size),
            ("hidden_size", self.hidden_size),
            ("num_classes", self.num_classes),
            ("num_epochs", self.num_epochs),
            ("batch_size", self.batch_size),
            ("log_every", self.log_every),
        ];
        for (name, value) in positive {
            if value == 0 {
                return Err(Error::setting(name, 0, "it must be at least 1"));
            }
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::setting(
                "learning_rate",
                self.learning_rate,
                "it must be a positive number; the lecture uses 0.001, and 0.001 to 0.1 all train",
            ));
        }
        if self.max_steps == Some(0) {
            return Err(Error::setting(
                "max_steps",
                0,
                "it must be at least 1, or None to run every epoch",
            ));
        }
        Ok(())
    }
}

/// `MNIST_LAB_MAX_STEPS`, the default of [`TrainingConfig::max_steps`].
fn max_steps_from_env() -> Option<usize> {
    let value = std::env::var("MNIST_LAB_MAX_STEPS").ok()?;
    match value.trim().parse() {
        Ok(steps) => Some(steps),
        Err(_) => {
            eprintln!("MNIST_LAB_MAX_STEPS = {value:?} is not a whole number; no step limit");
            None
        }
    }
}

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

/// Keeps freed tensor buffers in the process for reuse instead of handing them back to
/// the operating system (Linux with glibc; elsewhere it does nothing). Called by [`train`],
/// [`evaluate`] and the benchmark; calling it again does nothing.
///
/// Every operation on the CPU backends allocates its output, and a training step frees
/// megabytes of them (conv2's first Linear layer alone is 58 MB, its gradient another 58).
/// glibc serves blocks from 128 KB up (32 MB at most, as it adapts) with fresh `mmap`s and
/// returns them on `free`, so the next step pays a page fault for every 4 KB it touches:
/// a fifth to a third of the training time here. Telling malloc to keep such blocks in its
/// heap (no `mmap`, no trimming) makes training 1.3x (conv2) to 1.7x (fc) faster on the
/// lecture's 2-core machine. The price: memory freed after a run stays with the process
/// until it exits, or until [`release_memory`], which `train`, `evaluate` and
/// [`Interpretation::new`](crate::inspect::Interpretation::new) call when they end (it gives
/// memory back only when asked to, through [`RELEASE_MEMORY_VAR`]).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| {
            // SAFETY: mallopt only changes malloc's settings; it is thread-safe in glibc.
            unsafe {
                // Serve every block from the heap, never from a private mmap...
                libc::mallopt(libc::M_MMAP_MAX, 0);
                // ... never give the heap's free top back to the system ...
                libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
                // ... and grow it 64 MB at a time.
                libc::mallopt(libc::M_TOP_PAD, 64 << 20);
            }
        });
    }
}

/// The environment variable that says whether [`release_memory`] gives memory back: `1`
/// does; unset or anything else, it does not.
///
/// Off by default: measured in the notebook kernel, giving memory back did not stop the cells'
/// process from growing over three lecture runs, and the next run pays the page faults for
/// what it takes back (see the README's set-up section).
pub const RELEASE_MEMORY_VAR: &str = "MNIST_LAB_RELEASE_MEMORY";

/// Gives the memory that [`tune_allocator`] keeps, the freed blocks, back to the operating
/// system (glibc's `malloc_trim`; elsewhere it does nothing), when [`RELEASE_MEMORY_VAR`] is
/// `1`.
///
/// A command-line run ends its process soon after training, but a notebook kernel lives on:
/// without this, the process that runs the cells keeps the peak of its largest run (conv2's
/// steps free hundreds of MB) for as long as the kernel runs. The next run pays the page
/// faults for the memory it takes back once, at its start, not at every step.
///
/// ```
/// // Safe to call at any time, as often as wanted.
/// mnist_lab::train::release_memory();
/// ```
pub fn release_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var(RELEASE_MEMORY_VAR).as_deref() == Ok("1") {
            // SAFETY: malloc_trim only returns free memory; it is thread-safe in glibc.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}

/// Calls [`release_memory`] when dropped, so that a function holding one releases memory
/// whichever way it returns.
pub(crate) struct ReleaseOnReturn;

impl Drop for ReleaseOnReturn {
    fn drop(&mut self) {
        release_memory();
    }
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

/// What [`train`] shows as it goes: the log lines, the live display of the project's
/// notebook kernel, and the command line's progress bar.
struct Watch {
    observer: Option<Arc<dyn live::Observer>>,
    display: LiveDisplay,
    started: Instant,
    last_drawn: Option<Instant>,
}

impl Watch {
    /// Redraws of the live display are at most this often.
    const REDRAW_EVERY: Duration = Duration::from_secs(1);

    fn new() -> Self {
        Watch {
            observer: live::observer(),
            display: LiveDisplay::new(),
            started: Instant::now(),
            last_drawn: None,
        }
    }

    fn line(&self, text: &str) {
        live::log(self.observer.as_ref(), text);
    }

    /// Whether anything watches the steps (outside the notebook kernel and a terminal,
    /// nothing does, and a step costs nothing more).
    fn is_watched(&self) -> bool {
        self.observer.is_some() || self.display.is_active()
    }

    /// After each step.
    fn step(&mut self, report: &TrainingReport, progress: &Progress) {
        if let Some(observer) = &self.observer {
            observer.progress(progress);
        }
        let due = self
            .last_drawn
            .is_none_or(|at| at.elapsed() >= Self::REDRAW_EVERY);
        if self.display.is_active() && due {
            let chart = crate::plot::loss_chart_svg(report).unwrap_or_default();
            self.display
                .show(&progress.line(), &format!("{}{chart}", progress.html()));
            self.last_drawn = Some(Instant::now());
        }
    }

    /// At the end: the finished bar and its summary stay, without the chart (the cell
    /// draws its own).
    fn finish(&mut self, last: Option<Progress>, summary: &str) {
        if let Some(observer) = &self.observer {
            observer.finished();
        }
        if let (true, Some(progress)) = (self.display.is_active(), last) {
            let html = progress.html().replace(
                &live::html_escape(&progress.line()),
                &live::html_escape(summary),
            );
            self.display.show(summary, &html);
        }
    }
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
                    let elapsed = watch.started.elapsed().as_secs_f64();
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

/// The training batches, in the order [`train`] takes them: the training split in batches of
/// `config.batch_size`, shuffled from `config.seed`, and shuffled anew by each call to
/// [`iter`](TrainingBatches::iter) (one call per epoch). Each pass stops after
/// `config.max_steps` batches when that is set.
///
/// The lecture's loop, by hand, for one epoch (what [`train`] does, without its display, stop
/// button and report):
///
/// ```
/// use burn::nn::loss::CrossEntropyLossConfig;
/// use burn::optim::SgdConfig;
/// use mnist_lab::prelude::*;
/// use mnist_lab::train::{TrainingBatches, sgd_step};
///
/// let data = Mnist::synthetic(200, 100, 7);
/// let config = TrainingConfig::new().with_hidden_size(32).with_max_steps(Some(2));
/// let device = mnist_lab::device::cpu().autodiff(); // gradients are recorded on this device
/// let criterion = CrossEntropyLossConfig::new().init(&device);
/// let mut optimizer = SgdConfig::new().init();
/// let mut model = FcNetConfig::new(784, 32, 10).init(&device);
/// let mut losses = Vec::new();
/// for batch in TrainingBatches::new(&data, &config, &device).iter() {
///     let (next, loss) = sgd_step(model, &mut optimizer, &criterion, batch?, config.learning_rate);
///     model = next;
///     losses.push(loss);
/// }
/// assert_eq!(losses.len(), 2);
/// # Ok::<(), mnist_lab::Error>(())
/// ```
pub struct TrainingBatches {
    loader: Arc<dyn DataLoader<MnistBatch>>,
    limit: usize,
}

impl TrainingBatches {
    /// The batches of `data`'s training split for `config`, on `device` (the autodiff device
    /// the model trains on).
    pub fn new(data: &Mnist, config: &TrainingConfig, device: &Device) -> Self {
        TrainingBatches {
            loader: loader(&data.train, config.batch_size, Some(config.seed), device),
            limit: config.max_steps.unwrap_or(usize::MAX),
        }
    }

    /// One pass over the training split (one epoch), shuffled anew on each call.
    pub fn iter(&self) -> impl Iterator<Item = Result<MnistBatch>> + '_ {
        self.loader
            .iter()
            .take(self.limit)
            .map(|batch| batch.map_err(|e| Error::data_loader("a training batch", e)))
    }
}

/// Batches of `split` on `device`, reshuffled each pass when `shuffle` holds a seed.
/// [`train`], [`evaluate`] and the benchmark all load through this.
pub fn loader(
    split: &Split,
    batch_size: usize,
    shuffle: Option<u64>,
    device: &Device,
) -> Arc<dyn DataLoader<MnistBatch>> {
    let builder = DataLoaderBuilder::new(MnistBatcher)
        .batch_size(batch_size)
        .set_device(device.clone());
    match shuffle {
        Some(seed) => builder.shuffle(seed),
        None => builder,
    }
    .build(split.clone())
}

/// The lecture's training, for [`train`] and the benchmark alike: the model on the autodiff
/// device, its optimizer and loss, the steps taken, and the one training loop
/// ([`Trainer::run_with`]).
pub struct Trainer<M> {
    /// The model being trained (`None` only while a step holds it).
    model: Option<M>,
    optimizer: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
    learning_rate: f64,
    /// The autodiff device the model trains on; its batches go there.
    pub device: Device,
    /// Steps taken, the one that diverged included (on a GPU, also those taken after it
    /// until the read that found it).
    pub steps: usize,
    /// Steps whose losses are read back in one transfer: 1 reads each step's loss as it
    /// comes (the CPU's way); more keeps them on the device until that many are waiting.
    read_every: usize,
    /// The step whose loss a read found not finite.
    diverged_at: Option<usize>,
}

/// What [`Trainer::run_with`] tells its caller as it goes.
pub(crate) enum Event<'a> {
    /// Losses just read back from the device, in step order: those of the steps taken since
    /// the last read (one, when each loss is read as it comes). A read comes before the
    /// [`Event::Step`] of the step at which it is made.
    Losses(&'a [f32]),
    /// A step was taken on this many images; its loss may not be read yet. The caller
    /// returns `false` to end the run after it.
    Step(usize),
}

impl<M: Classifier> Trainer<M> {
    /// Losses kept on a GPU before a read, unless [`Trainer::read_every`] says otherwise.
    const GPU_READ_EVERY: usize = 100;

    /// `model` moved to the autodiff twin of `device` in training mode, with the lecture's loss
    /// (cross-entropy) and optimizer ([`crate::nn::fused::sgd`]). On the CPU each step's loss
    /// is read as it comes; on a GPU, 100 steps' losses in one read.
    pub fn new(model: M, device: &Device, learning_rate: f64) -> Self {
        let device = device.clone().autodiff();
        let read_every = if crate::device::is_cpu(&device) {
            1
        } else {
            Self::GPU_READ_EVERY
        };
        Trainer {
            model: Some(model.fork(&device).train()),
            optimizer: sgd(),
            loss_fn: CrossEntropyLossConfig::new().init(&device),
            learning_rate,
            device,
            steps: 0,
            read_every,
            diverged_at: None,
        }
    }

    /// Reads the losses back every `steps` steps (at least 1) from now on.
    pub(crate) fn read_every(&mut self, steps: usize) {
        self.read_every = steps.max(1);
    }

    /// The training loop, as [`Trainer::run_with`] runs it, with `after_step(loss, images)`
    /// called once per step in step order, as each step's loss is read. Where the losses are
    /// read in batches (a GPU), the calls come in a burst at each read, and a `false` from one
    /// ends the run after the last step read.
    pub fn run(
        &mut self,
        batches: impl Iterator<Item = Result<MnistBatch>>,
        mut after_step: impl FnMut(f32, usize) -> bool,
    ) -> Result<Option<f32>> {
        let (mut losses, mut images) = (VecDeque::new(), VecDeque::new());
        let mut go_on = true;
        self.run_with(batches, |event| {
            match event {
                Event::Losses(read) => losses.extend(read.iter().copied()),
                Event::Step(n) => images.push_back(n),
            }
            while !losses.is_empty() && !images.is_empty() {
                let (loss, n) = (losses.pop_front(), images.pop_front());
                go_on &= after_step(loss.unwrap_or_default(), n.unwrap_or_default());
            }
            go_on
        })
    }

    /// The training loop: one SGD step on each batch of `batches` in turn, until they run out
    /// or `on(Event::Step(..))` returns `false`, telling `on` of each step and each read.
    ///
    /// With [`Trainer::read_every`] at 1 (the CPU), each step is [`sgd_step`]: its loss is read
    /// at once, and the loop stops before the update when it is not finite. Otherwise the
    /// steps keep their losses on the device, and one transfer reads them when
    /// `read_every` are waiting and when the run ends (the batches run out, or `on` ends it);
    /// the CPU then waits for the GPU only at those reads.
    ///
    /// Returns `Some(loss)` when a step's loss was not finite: `on` has had the losses before
    /// it, not that one, and the caller reports it with [`Trainer::diverged`]. Where the losses
    /// are read in batches, the steps after it until the read were taken too (on weights that
    /// are no longer numbers); the run stops at that read, at most `read_every - 1` steps late.
    pub(crate) fn run_with(
        &mut self,
        batches: impl Iterator<Item = Result<MnistBatch>>,
        mut on: impl FnMut(Event<'_>) -> bool,
    ) -> Result<Option<f32>> {
        let mut waiting: Vec<Tensor<1>> = Vec::new();
        for batch in batches {
            let batch = batch?;
            let images = batch.targets.dims()[0];
            let model = self
                .model
                .take()
                .expect("the trainer holds its model between steps");
            let args = (
                &mut self.optimizer,
                &self.loss_fn,
                batch,
                self.learning_rate,
            );
            if self.read_every == 1 {
                let (model, loss) = sgd_step(model, args.0, args.1, args.2, args.3);
                self.model = Some(model);
                self.steps += 1;
                if !loss.is_finite() {
                    self.diverged_at = Some(self.steps);
                    return Ok(Some(loss));
                }
                on(Event::Losses(&[loss]));
            } else {
                let (model, loss) = sgd_step_unread(model, args.0, args.1, args.2, args.3);
                self.model = Some(model);
                self.steps += 1;
                waiting.push(loss);
                if waiting.len() >= self.read_every
                    && let Some(loss) = self.read_losses(&mut waiting, &mut on)
                {
                    return Ok(Some(loss));
                }
            }
            if !on(Event::Step(images)) {
                break;
            }
        }
        Ok(self.read_losses(&mut waiting, &mut on))
    }

    /// Reads the `waiting` losses (the last steps') in one transfer and hands them to `on`;
    /// `Some(loss)` for the first that is not finite, with only those before it handed on.
    fn read_losses(
        &mut self,
        waiting: &mut Vec<Tensor<1>>,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) -> Option<f32> {
        if waiting.is_empty() {
            return None;
        }
        let first_step = self.steps + 1 - waiting.len();
        let losses: Vec<f32> = read(Tensor::cat(std::mem::take(waiting), 0))
            .iter::<f32>()
            .collect();
        let finite = losses.iter().take_while(|loss| loss.is_finite()).count();
        if finite > 0 {
            on(Event::Losses(&losses[..finite]));
        }
        let loss = *losses.get(finite)?;
        self.diverged_at = Some(first_step + finite);
        Some(loss)
    }

    /// The error for a loss that [`Trainer::run`] found not finite, at the step that had it,
    /// in `epoch`.
    pub fn diverged(&self, loss: f32, epoch: usize) -> Error {
        Error::Diverged {
            step: self.diverged_step(),
            epoch,
            loss,
            learning_rate: self.learning_rate,
        }
    }

    /// The step whose loss was not finite (the last step taken, before any was found).
    fn diverged_step(&self) -> usize {
        self.diverged_at.unwrap_or(self.steps)
    }

    /// The trained model.
    pub fn into_model(self) -> M {
        self.model
            .expect("the trainer holds its model between steps")
    }
}

/// One step of the lecture's training on `batch`: the forward pass, the loss, the backward
/// pass (the gradients), and the optimizer's step, which moves every weight by
/// `learning_rate` times its gradient.
///
/// Returns the updated model and the batch's loss. A loss that is not finite is returned
/// with the model untouched (no backward pass, no update), for the caller to report.
/// [`train`] takes every step through this function, with the lecture's SGD; the model and
/// `loss_fn` must be on an autodiff device (`device.autodiff()`). [`TrainingBatches`] shows
/// the loop around it.
pub fn sgd_step<M: Classifier>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: MnistBatch,
    learning_rate: f64,
) -> (M, f32) {
    let logits = model.forward(batch.images);
    let loss = loss_fn.forward(logits, batch.targets);
    let value = read(loss.clone()).iter::<f32>().next().unwrap_or(f32::NAN);
    if !value.is_finite() {
        return (model, value);
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optimizer.step(learning_rate, model, grads), value)
}

/// [`sgd_step`] without reading the loss: the updated model and the batch's loss, still on
/// the device (without autodiff), for [`Trainer::run_with`] to read with others. The update is
/// made whatever the loss.
fn sgd_step_unread<M: Classifier>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: MnistBatch,
    learning_rate: f64,
) -> (M, Tensor<1>) {
    let logits = model.forward(batch.images);
    let loss = loss_fn.forward(logits, batch.targets);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optimizer.step(learning_rate, model, grads), loss.inner())
}

/// Measures accuracy on the test split, prints the lecture's accuracy line and returns the
/// accuracy in percent. The right answers add up on the device, read back once at the end.
pub fn evaluate<M: Classifier>(
    model: &M,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
) -> Result<f64> {
    config.validate()?;
    tune_allocator();
    let _release = ReleaseOnReturn;
    let model = model.valid().fork(device);
    let stop = StopSignal::new();
    on_pool(move || evaluate_loop(&model, data, config, device, &stop))
        .map(|(accuracy, _)| accuracy)
}

/// [`evaluate`]'s loop, on the model without autodiff: the accuracy and the images counted.
fn evaluate_loop<M: Classifier>(
    model: &M,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
    stop: &StopSignal,
) -> Result<(f64, usize)> {
    let loader = loader(&data.test, config.batch_size, None, device);
    let batches = loader
        .iter()
        .map(|batch| batch.map_err(|e| Error::data_loader("a test batch", e)));
    let (correct, total) = count_correct_in(model, batches, |total| {
        let stop = stop.requested();
        if stop {
            println!(
                "Stopped after {total} of the {} test images: the accuracy below is on those",
                data.test.len()
            );
        }
        !stop
    })?;
    let accuracy = 100.0 * correct as f64 / total.max(1) as f64;
    println!("Accuracy of the network on the {total} test images: {accuracy:.1} %");
    Ok((accuracy, total))
}

/// The evaluation loop, for [`evaluate`] and the benchmark alike: `model`'s right answers on
/// each batch of `batches` in turn, until they run out or `after_batch(images so far)` returns
/// `false`. Returns the right answers and the images counted.
///
/// The right answers add up on the device, and one read at the end brings the total back: on
/// a GPU the CPU does not wait for each batch.
pub fn count_correct_in<M: Classifier>(
    model: &M,
    batches: impl Iterator<Item = Result<MnistBatch>>,
    mut after_batch: impl FnMut(usize) -> bool,
) -> Result<(i64, usize)> {
    let (mut correct, mut total) = (None, 0usize);
    for batch in batches {
        let batch = batch?;
        total += batch.targets.dims()[0];
        let right = count_correct(model.forward(batch.images), batch.targets);
        correct = Some(match correct {
            Some(so_far) => so_far + right,
            None => right,
        });
        if !after_batch(total) {
            break;
        }
    }
    let correct = correct.map_or(0, |correct| {
        read(correct).iter::<i64>().next().unwrap_or_default()
    });
    Ok((correct, total))
}

/// The right answers among `logits`, the scores of a batch whose digits are `targets`, as a
/// one-value tensor on their device.
fn count_correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1, Int> {
    let predicted = logits.argmax(1).flatten::<1>(0, 1);
    predicted.equal(targets).int().sum()
}

fn short_type_name<M>() -> String {
    let full = std::any::type_name::<M>();
    full.rsplit("::").next().unwrap_or(full).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::ConvNetConfig;
    use crate::testing::parameter_values as values;
    use burn::tensor::Distribution;

    #[test]
    fn the_lectures_sgd_steps_exactly_as_burns() {
        let _random = crate::testing::random_numbers();
        let device = crate::device::cpu().autodiff();
        let start = ConvNetConfig::new(32, 10).init(&device);
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
        let start = crate::models::FcNetConfig::new(784, 16, 10).init(&device);
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
        let model = crate::models::FcNetConfig::new(784, 16, 10).init(&device);
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
            let model = crate::models::FcReluNetConfig::new(784, 16, 10).init(&device);
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
            let model = crate::models::FcNetConfig::new(784, 32, 10).init(&device);
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
