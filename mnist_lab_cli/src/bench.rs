//! Training and evaluation speed of the lecture's models: images per second and GFLOP/s.
//!
//! [`bench()`] trains each model with the lecture's loop (the same step as
//! [`mnist_lab::train::train`]: batching, forward, cross-entropy, backward, SGD update and the
//! per-step loss read-back) and times it: a few untimed warm-up steps, then several timed
//! runs of a fixed number of steps; each figure is the median of the runs. Evaluation
//! (forward pass and accuracy count, no autodiff) is timed the same way on the test split.
//!
//! GFLOP/s count the forward pass's multiply-accumulates ([`ModelKind::forward_macs`]) x 6
//! per trained image (2 FLOPs per MAC, forward plus about twice that backward), and x 2 per
//! evaluated image.
//!
//! `mnist-lab bench` prints the [`BenchReport`] as JSON; `bench/compare.py` runs it next to
//! PyTorch (`bench/torch_bench.py`, the same models and settings) and prints the ratios.
//!
//! ```
//! use mnist_lab::data::Mnist;
//! use mnist_lab_cli::bench::{bench, BenchConfig};
//! use mnist_lab_cli::models::ModelKind;
//!
//! let data = Mnist::synthetic(300, 100, 1);
//! let config = BenchConfig::quick().with_models(vec![ModelKind::Fc]);
//! let report = bench(&data, &config, &mnist_lab::device::cpu()).unwrap();
//! assert!(report.models[0].train_images_per_second > 0.0);
//! ```

use std::time::Instant;

use burn::data::dataloader::DataLoader;
use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use mnist_lab::data::{IMAGE_PIXELS, Mnist, MnistBatch, NUM_CLASSES};
use mnist_lab::nn::fused::on_pool;
use mnist_lab::train::{Trainer, TrainingConfig, count_correct_in, loader};
use mnist_lab::{Error, Result};

use crate::models::{LectureModel, ModelKind};

/// What to measure, and how long.
#[derive(Clone, Debug)]
pub struct BenchConfig {
    /// The models to measure, in order.
    pub models: Vec<ModelKind>,
    /// Images per step (the lecture's 100).
    pub batch_size: usize,
    /// Width of the hidden layers (the lecture's 600).
    pub hidden_size: usize,
    /// SGD's step size (the lecture's 0.001).
    pub learning_rate: f64,
    /// Untimed training steps before the timed runs (and half as many evaluation batches).
    pub warmup_steps: usize,
    /// Training steps per timed run; `None` picks about two seconds' worth per model.
    pub steps: Option<usize>,
    /// Evaluation batches per timed run; `None` picks per model.
    pub eval_steps: Option<usize>,
    /// Timed runs per figure; the figure is their median.
    pub runs: usize,
    /// Seed for the weights and the shuffling.
    pub seed: u64,
    /// The machine's peak GFLOP/s, if known, to report the share of it reached.
    pub peak_gflops: Option<f64>,
}

impl Default for BenchConfig {
    fn default() -> Self {
        // The lecture's settings are the library's.
        let lecture = TrainingConfig::new();
        BenchConfig {
            models: ModelKind::ALL.to_vec(),
            batch_size: lecture.batch_size,
            hidden_size: lecture.hidden_size,
            learning_rate: lecture.learning_rate,
            warmup_steps: 20,
            steps: None,
            eval_steps: None,
            runs: 5,
            seed: lecture.seed,
            peak_gflops: None,
        }
    }
}

impl BenchConfig {
    /// A smoke run for CI: a few steps per model, two runs.
    pub fn quick() -> Self {
        BenchConfig {
            warmup_steps: 2,
            steps: Some(3),
            eval_steps: Some(3),
            runs: 2,
            ..BenchConfig::default()
        }
    }

    /// The same, measuring only `models`.
    pub fn with_models(mut self, models: Vec<ModelKind>) -> Self {
        self.models = models;
        self
    }

    /// Training steps per timed run for `kind`: the setting, else about the same work
    /// (some 1 to 2 seconds on a 2-core laptop) for every model.
    pub fn steps_for(&self, kind: ModelKind) -> usize {
        self.steps.unwrap_or(match kind {
            ModelKind::Fc | ModelKind::FcRelu => 100,
            ModelKind::Conv => 40,
            ModelKind::Conv2 => 12,
        })
    }

    /// Evaluation batches per timed run for `kind`.
    pub fn eval_steps_for(&self, kind: ModelKind) -> usize {
        self.eval_steps.unwrap_or(match kind {
            ModelKind::Fc | ModelKind::FcRelu => 100,
            ModelKind::Conv => 50,
            ModelKind::Conv2 => 20,
        })
    }

    fn validate(&self) -> Result<()> {
        for (name, value) in [
            ("batch_size", self.batch_size),
            ("hidden_size", self.hidden_size),
            ("runs", self.runs),
        ] {
            if value == 0 {
                return Err(Error::setting(name, 0, "it must be at least 1"));
            }
        }
        if self.steps == Some(0) || self.eval_steps == Some(0) {
            return Err(Error::setting("steps", 0, "it must be at least 1"));
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(Error::setting(
                "learning_rate",
                self.learning_rate,
                "it must be a positive number",
            ));
        }
        Ok(())
    }
}

/// The speed of one model.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ModelBench {
    /// `fc`, `fc-relu`, `conv` or `conv2`.
    pub model: String,
    /// Multiply-accumulates in one image's forward pass.
    pub forward_macs: u64,
    /// Training images per second: the median of `train_runs`.
    pub train_images_per_second: f64,
    /// Training images per second of each timed run.
    pub train_runs: Vec<f64>,
    /// Achieved training GFLOP/s: images/s x forward MACs x 6.
    pub train_gflops: f64,
    /// Evaluation images per second: the median of `eval_runs`.
    pub eval_images_per_second: f64,
    /// Evaluation images per second of each timed run.
    pub eval_runs: Vec<f64>,
    /// Achieved evaluation GFLOP/s: images/s x forward MACs x 2.
    pub eval_gflops: f64,
    /// `train_gflops` as a percentage of the peak, when the peak was given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub train_percent_of_peak: Option<f64>,
    /// Training steps per timed run.
    pub steps_per_run: usize,
    /// Evaluation batches per timed run.
    pub eval_steps_per_run: usize,
}

/// What [`bench()`] measured, and under which settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BenchReport {
    /// `mnist-lab bench`.
    pub tool: String,
    /// The framework's release series and the backend, e.g. `burn 0.22 (flex)`.
    pub framework: String,
    /// The device, e.g. `cpu (flex)`.
    pub device: String,
    /// Worker threads of the CPU backend.
    pub threads: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Width of the hidden layers.
    pub hidden_size: usize,
    /// SGD's step size.
    pub learning_rate: f64,
    /// Where the images came from.
    pub data: String,
    /// Images in the training split.
    pub train_images: usize,
    /// Untimed steps before the timed runs.
    pub warmup_steps: usize,
    /// Timed runs per figure.
    pub runs: usize,
    /// The peak GFLOP/s given, if any.
    pub peak_gflops: Option<f64>,
    /// The processor, as the system names it.
    pub cpu: String,
    /// One entry per model.
    pub models: Vec<ModelBench>,
}

impl BenchReport {
    /// A text table: model, training and evaluation images/s, GFLOP/s (and % of peak).
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "| model   | train images/s | train GFLOP/s | % of peak | eval images/s |"
        );
        let _ = writeln!(
            out,
            "|---------|---------------:|--------------:|----------:|--------------:|"
        );
        for m in &self.models {
            let peak = m
                .train_percent_of_peak
                .map_or_else(|| "-".to_string(), |p| format!("{p:.0} %"));
            let _ = writeln!(
                out,
                "| {:7} | {:>14} | {:>13.1} | {:>9} | {:>13} |",
                m.model,
                mnist_lab::report::thousands(m.train_images_per_second),
                m.train_gflops,
                peak,
                mnist_lab::report::thousands(m.eval_images_per_second),
            );
        }
        out
    }
}

/// Measures training and evaluation speed of each of `config.models` on `device`, with
/// `data` (its training split for training, its test split for evaluation).
///
/// Prints nothing; the numbers come back in the [`BenchReport`].
///
/// # Errors
///
/// [`Error::Setting`] for a setting out of range or a split with no image,
/// [`Error::Diverged`] if a loss turns NaN, [`Error::DataLoader`] if a batch cannot be loaded.
pub fn bench(data: &Mnist, config: &BenchConfig, device: &Device) -> Result<BenchReport> {
    config.validate()?;
    mnist_lab::train::tune_allocator();
    if data.train.is_empty() || data.test.is_empty() {
        return Err(Error::setting(
            "data",
            data.source.as_str(),
            "the benchmark needs training and test images",
        ));
    }
    let mut models = Vec::with_capacity(config.models.len());
    for &kind in &config.models {
        mnist_lab::train::seed(device, config.seed);
        let model = kind.init(IMAGE_PIXELS, config.hidden_size, NUM_CLASSES, device);
        // On the CPU backend's thread pool, as `train::train` runs.
        let mut result = on_pool(move || measure(model, data, config, device))?;
        result.train_percent_of_peak = config
            .peak_gflops
            .filter(|&p| p > 0.0)
            .map(|p| 100.0 * result.train_gflops / p);
        models.push(result);
    }
    Ok(BenchReport {
        tool: "mnist-lab bench".into(),
        framework: format!("burn {} ({})", burn_version(), backend_name(device)),
        device: mnist_lab::device::device_label(device),
        threads: threads(),
        batch_size: config.batch_size,
        hidden_size: config.hidden_size,
        learning_rate: config.learning_rate,
        data: data.source.clone(),
        train_images: data.train.len(),
        warmup_steps: config.warmup_steps,
        runs: config.runs,
        peak_gflops: config.peak_gflops,
        cpu: cpu_name(),
        models,
    })
}

/// Batches without end: epoch after epoch of the loader, reshuffled each epoch.
struct Batches<'a> {
    loader: &'a dyn DataLoader<MnistBatch>,
    iter: Box<dyn burn::data::dataloader::DataLoaderIterator<MnistBatch> + 'a>,
    /// The epoch (1-based) of the last batch given.
    epoch: usize,
}

impl<'a> Batches<'a> {
    fn new(loader: &'a dyn DataLoader<MnistBatch>) -> Self {
        Batches {
            loader,
            iter: loader.iter(),
            epoch: 1,
        }
    }

    fn next_batch(&mut self) -> Result<MnistBatch> {
        let batch = match self.iter.next() {
            Some(batch) => batch,
            None => {
                self.iter = self.loader.iter();
                self.epoch += 1;
                self.iter
                    .next()
                    .ok_or_else(|| Error::data_loader("a batch", "the split gave none"))?
            }
        };
        batch.map_err(|e| Error::data_loader("a batch", e))
    }
}

impl Iterator for Batches<'_> {
    type Item = Result<MnistBatch>;

    /// Never `None`: after the last batch of an epoch comes the first of the next.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_batch())
    }
}

/// Measures `model`'s training and evaluation speed.
fn measure(
    model: LectureModel,
    data: &Mnist,
    config: &BenchConfig,
    device: &Device,
) -> Result<ModelBench> {
    let kind = model.kind();
    // Training, through `train::train`'s loop.
    let mut trainer = Trainer::new(model, device, config.learning_rate);
    let train_loader = loader(
        &data.train,
        config.batch_size,
        Some(config.seed),
        &trainer.device,
    );
    let mut batches = Batches::new(train_loader.as_ref());
    let mut train_steps = |trainer: &mut Trainer<LectureModel>, n: usize| -> Result<usize> {
        let mut images = 0;
        let outcome = trainer.run(batches.by_ref().take(n), |_, count| {
            images += count;
            true
        })?;
        match outcome {
            Some(loss) => Err(trainer.diverged(loss, batches.epoch)),
            None => Ok(images),
        }
    };
    train_steps(&mut trainer, config.warmup_steps)?;
    let steps = config.steps_for(kind);
    let mut train_runs = Vec::with_capacity(config.runs);
    for _ in 0..config.runs {
        let started = Instant::now();
        let images = train_steps(&mut trainer, steps)?;
        train_runs.push(images as f64 / started.elapsed().as_secs_f64().max(1e-9));
    }

    // Evaluation, through `train::evaluate`'s loop.
    let model = trainer.into_model().valid().fork(device);
    let test_loader = loader(&data.test, config.batch_size, None, device);
    let mut batches = Batches::new(test_loader.as_ref());
    let mut eval_steps = |n: usize| -> Result<usize> {
        let (_, images) = count_correct_in(&model, batches.by_ref().take(n), |_| true)?;
        Ok(images)
    };
    eval_steps(config.warmup_steps.div_ceil(2).max(1))?;
    let eval_n = config.eval_steps_for(kind);
    let mut eval_runs = Vec::with_capacity(config.runs);
    for _ in 0..config.runs {
        let started = Instant::now();
        let images = eval_steps(eval_n)?;
        eval_runs.push(images as f64 / started.elapsed().as_secs_f64().max(1e-9));
    }

    let macs = kind.forward_macs(IMAGE_PIXELS, config.hidden_size, NUM_CLASSES);
    let train_rate = median(&train_runs);
    let eval_rate = median(&eval_runs);
    Ok(ModelBench {
        model: kind.name().into(),
        forward_macs: macs,
        train_images_per_second: train_rate,
        train_runs,
        train_gflops: train_rate * macs as f64 * 6.0 / 1e9,
        eval_images_per_second: eval_rate,
        eval_runs,
        eval_gflops: eval_rate * macs as f64 * 2.0 / 1e9,
        train_percent_of_peak: None,
        steps_per_run: steps,
        eval_steps_per_run: eval_n,
    })
}

/// The median of `values` (the mean of the middle two for an even count); 0 if empty.
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    match sorted.len() {
        0 => 0.0,
        n if n % 2 == 1 => sorted[n / 2],
        n => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Worker threads of the CPU backend (rayon's pool).
pub fn threads() -> usize {
    rayon::current_num_threads()
}

/// The Burn release series this crate is built against (`0.22`; Cargo.toml asks for 0.22.1
/// or a later 0.22 release, and Cargo does not tell a crate which one it got).
fn burn_version() -> &'static str {
    "0.22"
}

fn backend_name(device: &Device) -> String {
    let label = mnist_lab::device::device_label(device);
    match label.strip_prefix("cpu (") {
        Some(rest) => rest.trim_end_matches(')').to_string(),
        None => label,
    }
}

/// The processor's name (from `/proc/cpuinfo` on Linux), else the architecture.
fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| {
            info.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|name| name.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_batches_count_their_epochs() {
        // 250 images in batches of 100: 3 batches an epoch (the last one of 50).
        let data = Mnist::synthetic(250, 10, 5);
        let loader = loader(&data.train, 100, Some(1), &mnist_lab::device::cpu());
        let mut batches = Batches::new(loader.as_ref());
        let sizes: Vec<(usize, usize)> = (0..7)
            .map(|_| {
                let batch = batches.next_batch().unwrap();
                (batch.targets.dims()[0], batches.epoch)
            })
            .collect();
        let expected = [
            (100, 1),
            (100, 1),
            (50, 1),
            (100, 2),
            (100, 2),
            (50, 2),
            (100, 3),
        ];
        assert_eq!(sizes, expected);
    }

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[]), 0.0);
    }

    #[test]
    fn quick_bench_reports_every_model_as_json() {
        let _random = mnist_lab::testing::random_numbers();
        let data = Mnist::synthetic(250, 150, 3);
        let config = BenchConfig {
            steps: Some(1),
            eval_steps: Some(1),
            runs: 1,
            warmup_steps: 1,
            peak_gflops: Some(100.0),
            ..BenchConfig::default()
        }
        .with_models(vec![ModelKind::Fc, ModelKind::Conv]);
        let report = bench(&data, &config, &mnist_lab::device::cpu()).unwrap();
        assert_eq!(report.models.len(), 2);
        for m in &report.models {
            assert!(m.train_images_per_second > 0.0 && m.eval_images_per_second > 0.0);
            assert!(m.train_percent_of_peak.is_some());
        }
        let json = serde_json::to_string(&report).unwrap();
        let back: BenchReport = serde_json::from_str(&json).unwrap();
        assert_eq!(back.models[1].model, "conv");
        assert!(report.table().contains("| conv    |"));
    }
}
