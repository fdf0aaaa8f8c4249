//! The program's arguments: its commands and their options. The defaults are the library's
//! ([`TrainingConfig`], [`BenchConfig`]), not numbers of their own.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use mnist_lab::device::DeviceChoice;
use mnist_lab::train::TrainingConfig;
use mnist_lab_cli::bench::BenchConfig;
use mnist_lab_cli::models::ModelKind;

#[derive(Parser)]
#[command(
    name = "mnist-lab",
    version,
    about = "The MNIST lecture on Burn: train, evaluate, plot"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the lecture headless: fc, fc-relu, conv, conv2 for 3 epochs each, then conv2 for 10.
    Lecture {
        /// Folder with the four MNIST files [default: MNIST_LAB_DATA, else the cache, downloading]
        #[arg(long)]
        data: Option<PathBuf>,
        /// Folder for the loss plot and the JSON report
        #[arg(long, default_value = "lecture-out")]
        out: PathBuf,
        /// Stop each run after this many steps (quick runs)
        #[arg(long)]
        max_steps: Option<usize>,
        /// Where to train
        #[arg(long, value_parser = device_choice(), default_value = "auto")]
        device: DeviceChoice,
    },
    /// Train and evaluate one of the lecture's models.
    Train(TrainArgs),
    /// Draw the loss curves of saved JSON reports (from `train --json` or `lecture`) as SVG.
    Plot {
        /// JSON report files: one run each, or a list of runs
        #[arg(required = true)]
        reports: Vec<PathBuf>,
        /// The SVG file to write
        #[arg(long, default_value = "loss.svg")]
        out: PathBuf,
    },
    /// Measure training and evaluation images/s (and GFLOP/s) of the lecture's models; prints JSON.
    Bench(BenchArgs),
    /// Evaluate a model saved by `train --save`: accuracy, confusion matrix, most confused pairs.
    Evaluate(EvaluateArgs),
}

#[derive(Args)]
pub struct BenchArgs {
    /// Which models, comma-separated [default: all four]
    #[arg(long, value_parser = model_kind(), value_delimiter = ',')]
    pub models: Vec<ModelKind>,
    /// Folder with the four MNIST files [default: synthetic images, 10,000 + 2,000]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to run
    #[arg(long, value_parser = device_choice(), default_value = "cpu")]
    pub device: DeviceChoice,
    /// Worker threads of the CPU backend [default: RAYON_NUM_THREADS, else one per core]
    #[arg(long)]
    pub threads: Option<usize>,
    /// Images per step
    #[arg(long, default_value_t = BenchConfig::default().batch_size)]
    pub batch_size: usize,
    /// Untimed training steps before the timed runs
    #[arg(long, default_value_t = BenchConfig::default().warmup_steps)]
    pub warmup_steps: usize,
    /// Training steps per timed run [default: 100 for fc and fc-relu, 40 for conv, 12 for conv2]
    #[arg(long)]
    pub steps: Option<usize>,
    /// Evaluation batches per timed run [default: 100, 100, 50, 20]
    #[arg(long)]
    pub eval_steps: Option<usize>,
    /// Timed runs per figure (the figure is their median)
    #[arg(long, default_value_t = BenchConfig::default().runs)]
    pub runs: usize,
    /// The machine's peak GFLOP/s, to report the share of it reached
    #[arg(long)]
    pub peak_gflops: Option<f64>,
    /// A smoke run: 2 warm-up steps, then 2 runs of 3 steps per model
    #[arg(long)]
    pub quick: bool,
    /// Also write the JSON report to this file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Print a table to stderr as well
    #[arg(long)]
    pub table: bool,
}

#[derive(Args)]
pub struct TrainArgs {
    /// Which model
    #[arg(long, value_parser = model_kind())]
    pub model: ModelKind,
    /// Passes over the training set
    #[arg(long, default_value_t = defaults().num_epochs)]
    pub epochs: usize,
    /// Learning rate of plain SGD
    #[arg(long, default_value_t = defaults().learning_rate, allow_negative_numbers = true)]
    pub lr: f64,
    /// Images per step
    #[arg(long, default_value_t = defaults().batch_size)]
    pub batch_size: usize,
    /// Width of the hidden layers
    #[arg(long, default_value_t = defaults().hidden_size)]
    pub hidden_size: usize,
    /// Seed for the weights and the shuffling
    #[arg(long, default_value_t = defaults().seed)]
    pub seed: u64,
    /// Folder with the four MNIST files [default: MNIST_LAB_DATA, else the cache, downloading]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to train
    #[arg(long, value_parser = device_choice(), default_value = "auto")]
    pub device: DeviceChoice,
    /// Stop after this many steps (quick runs)
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// Write the run's report (settings, losses, timings, accuracy) to this JSON file
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Save the trained model to this file (burnpack, e.g. conv2.bpk), for `evaluate --load`
    #[arg(long)]
    pub save: Option<PathBuf>,
}

/// The library's training settings, whose defaults are the command line's.
pub fn defaults() -> TrainingConfig {
    TrainingConfig::new()
}

/// clap's parser of a model name (the library's `FromStr`): `--help` and a wrong name list the
/// four.
fn model_kind() -> impl TypedValueParser<Value = ModelKind> {
    PossibleValuesParser::new(ModelKind::ALL.map(ModelKind::name))
        .map(|name| name.parse().expect("clap has checked the name"))
}

/// clap's parser of a device choice (the library's `FromStr`), listing the choices likewise.
fn device_choice() -> impl TypedValueParser<Value = DeviceChoice> {
    PossibleValuesParser::new(DeviceChoice::ALL.map(DeviceChoice::name))
        .map(|name| name.parse().expect("clap has checked the name"))
}

#[derive(Args)]
pub struct EvaluateArgs {
    /// The saved model (from `train --save`, which keeps its settings in the file)
    #[arg(long)]
    pub load: PathBuf,
    /// Which model the file holds, for a file saved without its settings (by a notebook)
    #[arg(long, value_parser = model_kind())]
    pub model: Option<ModelKind>,
    /// Width of the hidden layers, for a file saved without its settings [default: 600]
    #[arg(long)]
    pub hidden_size: Option<usize>,
    /// Folder with the four MNIST files [default: MNIST_LAB_DATA, else the cache, downloading]
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Where to run
    #[arg(long, value_parser = device_choice(), default_value = "auto")]
    pub device: DeviceChoice,
    /// Most confused pairs to list
    #[arg(long, default_value_t = 5)]
    pub pairs: usize,
    /// Write test_accuracy, confusion (rows: true digit) and per_class_accuracy to this JSON file
    #[arg(long)]
    pub json: Option<PathBuf>,
}
