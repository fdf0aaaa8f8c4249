//! `mnist-lab`: the lecture from the command line.
//!
//! - `mnist-lab lecture` runs the lecture's five trainings in order and writes a loss plot
//!   and a JSON report.
//! - `mnist-lab train --model conv` trains one model.
//! - `mnist-lab bench` measures training and evaluation images/s and prints JSON.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use mnist_lab::bench::{self, BenchConfig};
use mnist_lab::data::Mnist;
use mnist_lab::device::{DeviceChoice, pick_device};
use mnist_lab::models::ModelKind;
use mnist_lab::plot::compare_chart;
use mnist_lab::run::{LECTURE_RUNS, results_table, run_model};
use mnist_lab::train::{TrainingConfig, TrainingReport};

#[derive(Parser)]
#[command(
    name = "mnist-lab",
    version,
    about = "The MNIST lecture on Burn: train, evaluate, plot"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
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
        #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
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
}

#[derive(Args)]
struct BenchArgs {
    /// Which models, comma-separated [default: all four]
    #[arg(long, value_enum, value_delimiter = ',')]
    models: Vec<ModelKind>,
    /// Folder with the four MNIST files [default: synthetic images, 10,000 + 2,000]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to run
    #[arg(long, value_enum, default_value_t = DeviceChoice::Cpu)]
    device: DeviceChoice,
    /// Worker threads of the CPU backend [default: RAYON_NUM_THREADS, else one per core]
    #[arg(long)]
    threads: Option<usize>,
    /// Images per step
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Untimed training steps before the timed runs
    #[arg(long, default_value_t = 20)]
    warmup_steps: usize,
    /// Training steps per timed run [default: 100 for fc and fc-relu, 40 for conv, 12 for conv2]
    #[arg(long)]
    steps: Option<usize>,
    /// Evaluation batches per timed run [default: 100, 100, 50, 20]
    #[arg(long)]
    eval_steps: Option<usize>,
    /// Timed runs per figure (the figure is their median)
    #[arg(long, default_value_t = 5)]
    runs: usize,
    /// The machine's peak GFLOP/s, to report the share of it reached
    #[arg(long)]
    peak_gflops: Option<f64>,
    /// A smoke run: 2 warm-up steps, then 2 runs of 3 steps per model
    #[arg(long)]
    quick: bool,
    /// Also write the JSON report to this file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Print a table to stderr as well
    #[arg(long)]
    table: bool,
}

#[derive(Args)]
struct TrainArgs {
    /// Which model
    #[arg(long, value_enum)]
    model: ModelKind,
    /// Passes over the training set
    #[arg(long, default_value_t = 3)]
    epochs: usize,
    /// Learning rate of plain SGD
    #[arg(long, default_value_t = 0.001, allow_negative_numbers = true)]
    lr: f64,
    /// Images per step
    #[arg(long, default_value_t = 100)]
    batch_size: usize,
    /// Width of the hidden layers
    #[arg(long, default_value_t = 600)]
    hidden_size: usize,
    /// Seed for the weights and the shuffling
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Folder with the four MNIST files [default: MNIST_LAB_DATA, else the cache, downloading]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to train
    #[arg(long, value_enum, default_value_t = DeviceChoice::Auto)]
    device: DeviceChoice,
    /// Stop after this many steps (quick runs)
    #[arg(long)]
    max_steps: Option<usize>,
    /// Write the run's report (settings, losses, timings, accuracy) to this JSON file
    #[arg(long)]
    json: Option<PathBuf>,
}

fn main() -> ExitCode {
    mnist_lab::check::install_panic_hook();
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Lecture {
            data,
            out,
            max_steps,
            device,
        } => lecture(data, out, max_steps, device),
        Command::Train(args) => train(args),
        Command::Plot { reports, out } => plot(&reports, &out),
        Command::Bench(args) => bench(args),
    }
}

fn lecture(
    data: Option<PathBuf>,
    out: PathBuf,
    max_steps: Option<usize>,
    device: DeviceChoice,
) -> Result<()> {
    let config = TrainingConfig::new().with_max_steps(max_steps);
    config.validate()?;
    let data = Mnist::load_from(data.as_deref())?;
    let device = pick_device(device)?;
    println!(
        "Data: {} training and {} test images from {}",
        data.train.len(),
        data.test.len(),
        data.source
    );
    let mut reports = Vec::new();
    for (kind, epochs) in LECTURE_RUNS {
        println!("\n== {kind}, {epochs} epochs ==");
        let config = TrainingConfig::new()
            .with_num_epochs(epochs)
            .with_max_steps(max_steps);
        let report = run_model(kind, &data, &config, &device)?;
        reports.push(report.named(format!("{kind} x{epochs}")));
    }
    println!("\n{}", results_table(&reports));

    std::fs::create_dir_all(&out)
        .with_context(|| format!("cannot create the output folder {}", out.display()))?;
    let plot = out.join("loss.svg");
    compare_chart(&reports)?.save(&plot)?;
    let json = out.join("lecture.json");
    write_json(&json, &reports)?;
    println!("Wrote {} and {}", plot.display(), json.display());
    Ok(())
}

fn train(args: TrainArgs) -> Result<()> {
    let config = TrainingConfig::new()
        .with_num_epochs(args.epochs)
        .with_learning_rate(args.lr)
        .with_batch_size(args.batch_size)
        .with_hidden_size(args.hidden_size)
        .with_seed(args.seed)
        .with_max_steps(args.max_steps);
    config.validate()?;
    let data = Mnist::load_from(args.data.as_deref())?;
    let device = pick_device(args.device)?;
    let report = run_model(args.model, &data, &config, &device)?;
    println!("\n{}", results_table(std::slice::from_ref(&report)));
    if let Some(path) = args.json {
        write_json(&path, &report)?;
        println!("Wrote {}", path.display());
    }
    Ok(())
}

fn plot(files: &[PathBuf], out: &std::path::Path) -> Result<()> {
    let mut reports: Vec<TrainingReport> = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", file.display()))?;
        let runs = match value {
            serde_json::Value::Array(runs) => runs,
            run => vec![run],
        };
        for run in runs {
            reports.push(
                serde_json::from_value(run)
                    .with_context(|| format!("{} is not a mnist-lab report", file.display()))?,
            );
        }
    }
    compare_chart(&reports)?.save(out)?;
    println!("Wrote {}", out.display());
    Ok(())
}

fn bench(args: BenchArgs) -> Result<()> {
    if let Some(threads) = args.threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build_global()
            .context("cannot set the number of threads")?;
    }
    let mut config = if args.quick {
        BenchConfig::quick()
    } else {
        BenchConfig {
            warmup_steps: args.warmup_steps,
            runs: args.runs,
            ..BenchConfig::default()
        }
    };
    config.batch_size = args.batch_size;
    if !args.models.is_empty() {
        config.models = args.models;
    }
    config.steps = args.steps.or(config.steps);
    config.eval_steps = args.eval_steps.or(config.eval_steps);
    config.peak_gflops = args.peak_gflops;
    // On the CPU nothing else goes to stdout, so it holds the JSON alone; `pick_device`
    // prints its choice of a GPU there first (`--json` writes a clean file either way).
    let device = match args.device {
        DeviceChoice::Cpu => mnist_lab::device::cpu(),
        choice => pick_device(choice)?,
    };
    let data = match &args.data {
        Some(dir) => Mnist::from_dir(dir)?,
        None => Mnist::synthetic(10_000, 2_000, 42),
    };
    let report = bench::bench(&data, &config, &device)?;
    if args.table {
        eprintln!("{}", report.table());
    }
    let text = serde_json::to_string_pretty(&report)?;
    println!("{text}");
    if let Some(path) = args.json {
        std::fs::write(&path, text + "\n")
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

fn write_json(path: &std::path::Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    std::fs::write(path, text).with_context(|| format!("cannot write {}", path.display()))
}
