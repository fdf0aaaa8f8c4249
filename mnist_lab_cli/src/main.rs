//! `mnist-lab`: the lecture from the command line.
//!
//! - `mnist-lab lecture` runs the lecture's five trainings in order and writes a loss plot
//!   and a JSON report.
//! - `mnist-lab train --model conv` trains one model.
//! - `mnist-lab bench` measures training and evaluation images/s and prints JSON.
//!
//! Every output path is checked before any work starts. On a terminal, training shows a
//! progress bar; the first Ctrl+C stops the current run after its step and still writes the
//! results so far, a second one exits at once.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Parser, Subcommand};
use mnist_lab::data::Mnist;
use mnist_lab::device::{DeviceChoice, pick_device};
use mnist_lab::inspect::Interpretation;
use mnist_lab::live::{self, Observer, Progress};
use mnist_lab::output;
use mnist_lab::plot::compare_chart;
use mnist_lab::report::results_table;
use mnist_lab::train::{TrainingConfig, TrainingReport};
use mnist_lab_cli::bench::{self, BenchConfig};
use mnist_lab_cli::lecture::{LECTURE_RUNS, run_model, run_model_and_save};
use mnist_lab_cli::models::{ModelKind, ModelSettings};

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
struct BenchArgs {
    /// Which models, comma-separated [default: all four]
    #[arg(long, value_parser = model_kind(), value_delimiter = ',')]
    models: Vec<ModelKind>,
    /// Folder with the four MNIST files [default: synthetic images, 10,000 + 2,000]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to run
    #[arg(long, value_parser = device_choice(), default_value = "cpu")]
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
    #[arg(long, value_parser = model_kind())]
    model: ModelKind,
    /// Passes over the training set
    #[arg(long, default_value_t = defaults().num_epochs)]
    epochs: usize,
    /// Learning rate of plain SGD
    #[arg(long, default_value_t = defaults().learning_rate, allow_negative_numbers = true)]
    lr: f64,
    /// Images per step
    #[arg(long, default_value_t = defaults().batch_size)]
    batch_size: usize,
    /// Width of the hidden layers
    #[arg(long, default_value_t = defaults().hidden_size)]
    hidden_size: usize,
    /// Seed for the weights and the shuffling
    #[arg(long, default_value_t = defaults().seed)]
    seed: u64,
    /// Folder with the four MNIST files [default: MNIST_LAB_DATA, else the cache, downloading]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to train
    #[arg(long, value_parser = device_choice(), default_value = "auto")]
    device: DeviceChoice,
    /// Stop after this many steps (quick runs)
    #[arg(long)]
    max_steps: Option<usize>,
    /// Write the run's report (settings, losses, timings, accuracy) to this JSON file
    #[arg(long)]
    json: Option<PathBuf>,
    /// Save the trained model to this file (burnpack, e.g. conv2.bpk), for `evaluate --load`
    #[arg(long)]
    save: Option<PathBuf>,
}

/// The library's training settings, whose defaults are the command line's.
fn defaults() -> TrainingConfig {
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

fn main() -> ExitCode {
    exit_quietly_on_a_closed_pipe();
    mnist_lab::check::install_panic_hook();
    stop_on_ctrl_c();
    if std::io::stdout().is_terminal() {
        live::set_observer(Bar::default());
    }
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `mnist-lab train | head` closes the pipe early: end as other command-line tools do, at
/// once and without a message, rather than panic at the next line printed (and abort when
/// the panic's own message cannot be printed either). Rust programs ignore SIGPIPE unless
/// told otherwise; this restores the system's default.
fn exit_quietly_on_a_closed_pipe() {
    #[cfg(unix)]
    {
        unsafe extern "C" {
            fn signal(signum: i32, handler: usize) -> usize;
        }
        const SIGPIPE: i32 = 13; // the same number on Linux and macOS
        const SIG_DFL: usize = 0;
        // SAFETY: called first thing in main, before any thread starts; restores a default.
        unsafe {
            signal(SIGPIPE, SIG_DFL);
        }
    }
}

/// The first Ctrl+C asks the running loop to stop after its step (the results so far are
/// still written); the second exits at once.
fn stop_on_ctrl_c() {
    static PRESSED: AtomicUsize = AtomicUsize::new(0);
    let installed = ctrlc::set_handler(|| {
        if PRESSED.fetch_add(1, Ordering::SeqCst) == 0 {
            live::request_stop();
            eprintln!(
                "\nStopping after this step; the results so far will be written. Press Ctrl+C \
                 again to quit at once."
            );
        } else {
            std::process::exit(130);
        }
    });
    if let Err(error) = installed {
        eprintln!("warning: Ctrl+C will quit at once ({error})");
    }
}

/// A one-line progress bar on stderr, for a terminal: the log lines print above it.
#[derive(Default)]
struct Bar {
    /// The bar's text and when it was last drawn.
    state: Mutex<(String, Option<Instant>)>,
}

impl Bar {
    const WIDTH: usize = 24;

    fn draw(text: &str) {
        // Carriage return and "erase line": only ever sent to a terminal.
        let mut err = std::io::stderr().lock();
        let _ = write!(err, "\r\x1b[2K{text}");
        let _ = err.flush();
    }
}

impl Observer for Bar {
    fn progress(&self, progress: &Progress) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .1
            .is_some_and(|at| at.elapsed() < Duration::from_millis(100))
        {
            return;
        }
        let filled = Self::WIDTH * progress.step / progress.total_steps.max(1);
        state.0 = format!(
            "[{}{}] {}",
            "#".repeat(filled),
            "-".repeat(Self::WIDTH - filled.min(Self::WIDTH)),
            progress.line()
        );
        state.1 = Some(Instant::now());
        Self::draw(&state.0);
    }

    fn line(&self, text: &str) {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::draw("");
        println!("{text}");
        if state.1.is_some() {
            Self::draw(&state.0);
        }
    }

    fn finished(&self) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.1.take().is_some() {
            Self::draw("");
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
        Command::Evaluate(args) => evaluate(args),
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
    output::check_folder(&out)?;
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
        let stopped = report.stopped_at.is_some();
        reports.push(report.named(format!("{kind} x{epochs}")));
        if stopped {
            println!("Stopped: the lecture ends here, with the runs so far.");
            break;
        }
    }
    println!("\n{}", results_table(&reports));

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
    if let Some(path) = &args.json {
        output::check_file(path)?;
    }
    if let Some(path) = &args.save {
        output::check_file(path)?;
    }
    let data = Mnist::load_from(args.data.as_deref())?;
    let device = pick_device(args.device)?;
    let save = args.save.as_deref();
    let report = run_model_and_save(args.model, &data, &config, &device, save)?;
    if let Some(path) = save {
        println!("Saved the trained model to {}", path.display());
    }
    println!("\n{}", results_table(std::slice::from_ref(&report)));
    if let Some(path) = args.json {
        write_json(&path, &report)?;
        println!("Wrote {}", path.display());
    }
    Ok(())
}

fn plot(files: &[PathBuf], out: &Path) -> Result<()> {
    output::check_file(out)?;
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
    if let Some(path) = &args.json {
        output::check_file(path)?;
    }
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
        output::write_atomic(&path, (text + "\n").as_bytes())?;
    }
    Ok(())
}

fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    Ok(output::write_atomic(path, text.as_bytes())?)
}

#[derive(Args)]
struct EvaluateArgs {
    /// The saved model (from `train --save`, which keeps its settings in the file)
    #[arg(long)]
    load: PathBuf,
    /// Which model the file holds, for a file saved without its settings (by a notebook)
    #[arg(long, value_parser = model_kind())]
    model: Option<ModelKind>,
    /// Width of the hidden layers, for a file saved without its settings [default: 600]
    #[arg(long)]
    hidden_size: Option<usize>,
    /// Folder with the four MNIST files [default: MNIST_LAB_DATA, else the cache, downloading]
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to run
    #[arg(long, value_parser = device_choice(), default_value = "auto")]
    device: DeviceChoice,
    /// Most confused pairs to list
    #[arg(long, default_value_t = 5)]
    pairs: usize,
    /// Write test_accuracy, confusion (rows: true digit) and per_class_accuracy to this JSON file
    #[arg(long)]
    json: Option<PathBuf>,
}

/// What `evaluate --json` writes.
#[derive(serde::Serialize)]
struct EvaluationReport {
    model: ModelKind,
    test_accuracy: f64,
    test_total: usize,
    /// `confusion[true][predicted]` images.
    confusion: [[usize; 10]; 10],
    /// Percent per digit; `null` for a digit the test set lacks.
    per_class_accuracy: [Option<f64>; 10],
    most_confused: Vec<String>,
}

/// The settings that rebuild `evaluate`'s model: the file's own, which `--model` and
/// `--hidden-size` may repeat but not contradict; for a file without them, those two (the
/// library's defaults for the width).
fn saved_settings(args: &EvaluateArgs) -> Result<ModelSettings> {
    let file = args.load.display();
    let Some(saved) = ModelSettings::read(&args.load)? else {
        let Some(model) = args.model else {
            bail!(
                "{file} holds a model's weights without its settings (it was saved by a \
                 notebook's save(), or by an older mnist-lab): say which model it is with \
                 --model (and --hidden-size if it is not 600)"
            );
        };
        let config = defaults();
        let hidden_size = args.hidden_size.unwrap_or(config.hidden_size);
        return Ok(ModelSettings::new(
            model,
            config.input_size,
            hidden_size,
            config.num_classes,
        ));
    };
    let mut given = Vec::new();
    if let Some(model) = args.model.filter(|&m| m != saved.model) {
        given.push(format!("--model {model}"));
    }
    if let Some(h) = args.hidden_size.filter(|&h| h != saved.hidden_size) {
        given.push(format!("--hidden-size {h}"));
    }
    if !given.is_empty() {
        bail!(
            "{file} holds a {} with hidden layers of {}, not what {} says: leave {} out (the \
             file keeps its settings)",
            saved.model,
            saved.hidden_size,
            given.join(" and "),
            if given.len() == 1 { "it" } else { "them" }
        );
    }
    Ok(saved)
}

fn evaluate(args: EvaluateArgs) -> Result<()> {
    if let Some(path) = &args.json {
        output::check_file(path)?;
    }
    let settings = saved_settings(&args)?;
    let data = Mnist::load_from(args.data.as_deref())?;
    let device = pick_device(args.device)?;
    let skeleton = settings.init(&device);
    let model = skeleton.load(&args.load)?;
    let interpretation = Interpretation::new(&model, &data.test, &device)?;
    println!(
        "Accuracy of the network on the {} test images: {:.1} %",
        interpretation.len(),
        interpretation.accuracy()
    );
    println!("\nConfusion matrix (rows: true digit, columns: predicted):");
    print!("{}", interpretation.confusion_text());
    let pairs: Vec<String> = interpretation
        .most_confused(args.pairs)
        .iter()
        .map(ToString::to_string)
        .collect();
    println!("\nMost confused (true -> predicted):");
    for pair in &pairs {
        println!("  {pair}");
    }
    if let Some(path) = args.json {
        let report = EvaluationReport {
            model: settings.model,
            test_accuracy: interpretation.accuracy(),
            test_total: interpretation.len(),
            confusion: interpretation.confusion(),
            per_class_accuracy: interpretation.per_class_accuracy(),
            most_confused: pairs,
        };
        write_json(&path, &report)?;
        println!("Wrote {}", path.display());
    }
    Ok(())
}
