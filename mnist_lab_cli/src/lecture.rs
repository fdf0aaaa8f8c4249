//! The lecture's plan of runs, and whole runs of its models (create, train, evaluate, report,
//! save), for the `mnist-lab` program, which alone parses arguments. The lesson's own API is
//! mnist_lab's: [`mnist_lab::data`], [`mnist_lab::models`], [`mnist_lab::train`],
//! [`mnist_lab::plot`] and [`mnist_lab::device`].

use std::path::Path;

use burn::tensor::Device;
use mnist_lab::Result;
use mnist_lab::data::Mnist;
use mnist_lab::train::{self, TrainingConfig, TrainingReport};

use crate::models::{ModelKind, ModelSettings};

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

/// [`run_model`], then, when `save` names a file, saves the trained model there with its
/// settings ([`LectureModel::save`](crate::models::LectureModel::save); `mnist-lab train
/// --save`).
pub fn run_model_and_save(
    kind: ModelKind,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
    save: Option<&Path>,
) -> Result<TrainingReport> {
    config.validate()?;
    train::seed(device, config.seed);
    let settings = ModelSettings::new(
        kind,
        config.input_size,
        config.hidden_size,
        config.num_classes,
    );
    let model = settings.init(device);
    let (model, report) = train::train(model, data, config, device)?;
    let mut report = report.named(kind.name());
    report.set_accuracy(
        train::evaluate(&model, data, config, device)?,
        data.test.len(),
    );
    if let Some(path) = save {
        model.save(&settings, path)?;
    }
    Ok(report)
}
