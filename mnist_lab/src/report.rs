//! What a training run did ([`TrainingReport`]), a table of runs ([`results_table`]), and
//! how the crate writes large numbers ([`thousands`]). A leaf module: the loop fills the
//! report, the plots and the tables read it.

use std::fmt::Write;

use serde::{Deserialize, Serialize};

/// What a training run did: every step's loss and the time it took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainingReport {
    /// A name for legends and tables, e.g. `fc-relu` (`model` in JSON).
    #[serde(rename = "model")]
    pub name: String,
    /// Epochs run (the last may be partial when `max_steps` cut it short).
    pub epochs: usize,
    /// SGD steps taken.
    pub steps: usize,
    /// Images per step.
    pub batch_size: usize,
    /// SGD's step size.
    pub learning_rate: f64,
    /// The shuffling seed.
    pub seed: u64,
    /// The loss at every step, in order.
    pub losses: Vec<f32>,
    /// Wall-clock seconds of each epoch.
    pub epoch_seconds: Vec<f64>,
    /// Training images per second in each epoch.
    pub epoch_images_per_second: Vec<f64>,
    /// Total training seconds.
    pub train_seconds: f64,
    /// Training images per second over the whole run.
    pub images_per_second: f64,
    /// Test accuracy in percent, once [`TrainingReport::set_accuracy`] was called.
    pub test_accuracy: Option<f64>,
    /// Test images the accuracy was measured on.
    pub test_total: Option<usize>,
    /// The device trained on, e.g. `cpu (flex)`.
    pub device: String,
    /// The step after which the stop button (or Ctrl+C) ended the run early; `None` when it
    /// ran to the end.
    #[serde(default)]
    pub stopped_at: Option<usize>,
}

impl TrainingReport {
    /// Renames the run (the name shows in legends and tables).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Records the test accuracy, in percent, measured on `total` images.
    pub fn set_accuracy(&mut self, accuracy: f64, total: usize) {
        self.test_accuracy = Some(accuracy);
        self.test_total = Some(total);
    }

    /// The mean loss over the last `n` steps (or all, if fewer): a steadier figure for where
    /// a run ended than the last batch's loss alone.
    ///
    /// ```
    /// # let mut report: mnist_lab::train::TrainingReport = serde_json::from_str(r#"{"model":"fc",
    /// #   "epochs":1,"steps":3,"batch_size":100,"learning_rate":0.001,"seed":1,"losses":[],
    /// #   "epoch_seconds":[],"epoch_images_per_second":[],"train_seconds":0.0,
    /// #   "images_per_second":0.0,"test_accuracy":null,"test_total":null,"device":"cpu"}"#).unwrap();
    /// report.losses = vec![3.0, 1.0, 2.0];
    /// assert_eq!(report.mean_loss_of_last(2), 1.5);
    /// assert_eq!(report.mean_loss_of_last(10), 2.0); // all three
    /// ```
    pub fn mean_loss_of_last(&self, n: usize) -> f32 {
        let tail = &self.losses[self.losses.len().saturating_sub(n)..];
        tail.iter().sum::<f32>() / tail.len().max(1) as f32
    }
}

/// A text table of runs: model, epochs, steps, test accuracy, seconds, images/s.
///
/// ```
/// # use mnist_lab::train::TrainingReport;
/// # let report: TrainingReport = serde_json::from_str(r#"{"model":"fc","epochs":3,"steps":240,
/// #   "batch_size":100,"learning_rate":0.001,"seed":1,"losses":[],"epoch_seconds":[1.0],
/// #   "epoch_images_per_second":[8000.0],"train_seconds":3.0,"images_per_second":8000.0,
/// #   "test_accuracy":36.5,"test_total":2000,"device":"cpu (flex)"}"#).unwrap();
/// let table = mnist_lab::report::results_table(&[report]);
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

/// `1234567.8` as `1,234,568`.
pub fn thousands(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
