//! The commands: `lecture`, `train`, `plot`, `bench` and `evaluate`. Each checks its output
//! paths before any work starts.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use mnist_lab::data::Mnist;
use mnist_lab::device::{DeviceChoice, pick_device};
use mnist_lab::inspect::Interpretation;
use mnist_lab::output;
use mnist_lab::plot::compare_chart;
use mnist_lab::report::results_table;
use mnist_lab::train::{TrainingConfig, TrainingReport};
use mnist_lab_cli::bench::{self, BenchConfig};
use mnist_lab_cli::lecture::{LECTURE_RUNS, run_model, run_model_and_save};
use mnist_lab_cli::models::{ModelKind, ModelSettings};

use crate::args::{BenchArgs, Cli, Command, EvaluateArgs, TrainArgs, defaults};

/// Runs the command `cli` names.
pub fn run(cli: Cli) -> Result<()> {
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
