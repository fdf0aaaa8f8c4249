//! The command line's side of the crate: the lecture's plan of runs, whole runs of its models
//! (create, train, evaluate, report, save), and the table of results.
//!
//! The `mnist-lab` program (`src/bin/mnist-lab.rs`, which alone parses arguments) runs on
//! these; the notebooks use only [`results_table`], which the prelude brings. The lesson's own
//! API is [`crate::data`], [`crate::models`], [`crate::train`], [`crate::plot`] and
//! [`crate::device`].

use std::path::Path;

use burn::tensor::Device;

use crate::Result;
use crate::data::Mnist;
use crate::models::ModelKind;
pub use crate::report::results_table;
use crate::train::{self, TrainingConfig, TrainingReport};

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
