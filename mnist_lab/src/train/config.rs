//! The lecture's hyper-parameters, [`TrainingConfig`], and their checks.

use burn::config::Config;

use crate::{Error, Result};

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
    /// Seed for the shuffling of the training set. [`train`](super::train) uses it for nothing else: the
    /// starting weights are drawn when the model is created, so seed them first with
    /// [`seed`](super::seed)`(&device, config.seed)` (the `mnist-lab` commands do both with this
    /// value).
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
    /// [`log_interval`](super::log_interval)).
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
