//! The command line's side of the crate: the lecture's plan of runs, whole runs of its models
//! (create, train, evaluate, report, save), and the table of results.
//!
//! The `mnist-lab` program (`src/bin/mnist-lab.rs`, which alone parses arguments) runs on
//! these; the notebooks use only [`results_table`], which the prelude brings. The lesson's own
//! API is [`crate::data`], [`crate::models`], [`crate::train`], [`crate::plot`] and
//! [`crate::device`].

use std::fmt::Write;
use std::path::Path;

use burn::tensor::Device;

use crate::Result;
use crate::data::Mnist;
use crate::models::ModelKind;
use crate::train::{self, TrainingConfig, TrainingReport, thousands};

/// The lecture's runs, in its order: each model for 3 epochs, then conv2 for 10.
pub const LECTURE_RUNS: [(ModelKind, usize); 5] = [
    (ModelKind::Fc, 3),
    (ModelKind::FcRelu, 3),
    (ModelKind::Conv, 3),
    (ModelKind::Conv2, 3),
    (ModelKind::Conv2, 10),
];

/// Seeds `device`, creates `kind` with `config`'s sizes, trains and evaluates it.
///
/// The report is named after the model and holds its test accuracy.
pub fn run_model(
    kind: ModelKind,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
) -> Result<TrainingReport> {
    run_model_and_save(kind, data, config, device, None)
}

/// [`run_model`], then, when `save` names a file, saves the trained model there
/// ([`crate::save::save`]; `mnist-lab train --save`).
pub fn run_model_and_save(
    kind: ModelKind,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
    save: Option<&Path>,
) -> Result<TrainingReport> {
    config.validate()?;
    train::seed(device, config.seed);
    let (h, c) = (config.hidden_size, config.num_classes);
    let model = kind.init(config.input_size, h, c, device);
    let (model, report) = train::train(model, data, config, device)?;
    let mut report = report.named(kind.name());
    report.set_accuracy(
        train::evaluate(&model, data, config, device)?,
        data.test.len(),
    );
    if let Some(path) = save {
        model.save(path)?;
    }
    Ok(report)
}

/// A text table of runs: model, epochs, steps, test accuracy, seconds, images/s.
///
/// ```
/// # use mnist_lab::train::TrainingReport;
/// # let report: TrainingReport = serde_json::from_str(r#"{"model":"fc","epochs":3,"steps":240,
/// #   "batch_size":100,"learning_rate":0.001,"seed":1,"losses":[],"epoch_seconds":[1.0],
/// #   "epoch_images_per_second":[8000.0],"train_seconds":3.0,"images_per_second":8000.0,
/// #   "test_accuracy":36.5,"test_total":2000,"device":"cpu (flex)"}"#).unwrap();
/// let table = mnist_lab::cli::results_table(&[report]);
/// assert!(table.contains("| fc    |      3 |   240 |   36.5 % |"));
/// ```
pub fn results_table(reports: &[TrainingReport]) -> String {
    let width = reports
        .iter()
        .map(|r| r.name.len())
        .max()
        .unwrap_or(5)
        .max(5);
    let mut out = String::new();
    let _ = writeln!(
        out,
        "| {:width$} | epochs | steps | accuracy | train s | images/s |",
        "model"
    );
    let _ = writeln!(
        out,
        "|{:-<w$}|--------|-------|----------|---------|----------|",
        "",
        w = width + 2
    );
    for r in reports {
        let accuracy = r
            .test_accuracy
            .map(|a| format!("{a:6.1} %"))
            .unwrap_or_else(|| "       -".into());
        let _ = writeln!(
            out,
            "| {:width$} | {:>6} | {:>5} | {accuracy} | {:>7.1} | {:>8} |",
            r.name,
            r.epochs,
            r.steps,
            r.train_seconds,
            thousands(r.images_per_second)
        );
    }
    out
}
