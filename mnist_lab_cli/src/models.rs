//! The lecture's four models as one type, for the tools: [`ModelKind`] names a model on the
//! command line and in reports, [`LectureModel`] holds whichever was created.
//!
//! The models themselves are mnist_lab's ([`mnist_lab::models`]); a notebook defines its own
//! and never needs these.

use burn::module::Module;
use burn::tensor::{Device, Tensor};
use mnist_lab::models::{
    Classifier, Conv2Net, Conv2NetConfig, ConvNet, ConvNetConfig, FcNet, FcNetConfig, FcReluNet,
    FcReluNetConfig,
};
use serde::{Deserialize, Serialize};

/// The lecture's models, by the names the command line uses (`"fc-relu".parse()`).
///
/// ```
/// use mnist_lab_cli::models::ModelKind;
///
/// assert_eq!("fc-relu".parse::<ModelKind>().unwrap(), ModelKind::FcRelu);
/// assert_eq!(ModelKind::Conv2.to_string(), "conv2");
/// assert!("conv3".parse::<ModelKind>().unwrap_err().to_string().contains("fc, fc-relu"));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ModelKind {
    /// Model 1: three Linear layers, no nonlinearity.
    Fc,
    /// Model 2: the same with ReLU between the layers.
    FcRelu,
    /// Model 3: one convolution before the ReLU network.
    Conv,
    /// Model 4: two convolutions before the ReLU network.
    Conv2,
}

impl ModelKind {
    /// The four models, in the lecture's order.
    pub const ALL: [ModelKind; 4] = [
        ModelKind::Fc,
        ModelKind::FcRelu,
        ModelKind::Conv,
        ModelKind::Conv2,
    ];

    /// The name used on the command line and in reports, e.g. `fc-relu`.
    pub fn name(self) -> &'static str {
        match self {
            ModelKind::Fc => "fc",
            ModelKind::FcRelu => "fc-relu",
            ModelKind::Conv => "conv",
            ModelKind::Conv2 => "conv2",
        }
    }

    /// Creates this model with freshly initialised weights on `device`, as one
    /// [`LectureModel`] whichever it is.
    ///
    /// ```
    /// use mnist_lab::models::Classifier;
    /// use mnist_lab_cli::models::ModelKind;
    /// use mnist_lab::prelude::Tensor;
    ///
    /// let device = mnist_lab::device::cpu();
    /// let model = ModelKind::Conv.init(784, 600, 10, &device);
    /// assert_eq!(model.kind(), ModelKind::Conv);
    /// assert_eq!(model.forward(Tensor::zeros([2, 1, 28, 28], &device)).dims(), [2, 10]);
    /// ```
    pub fn init(
        self,
        input_size: usize,
        hidden_size: usize,
        num_classes: usize,
        device: &Device,
    ) -> LectureModel {
        let (h, c) = (hidden_size, num_classes);
        match self {
            ModelKind::Fc => LectureModel::Fc(FcNet::new(input_size, h, c, device)),
            ModelKind::FcRelu => LectureModel::FcRelu(FcReluNet::new(input_size, h, c, device)),
            ModelKind::Conv => LectureModel::Conv(ConvNet::new(h, c, device)),
            ModelKind::Conv2 => LectureModel::Conv2(Conv2Net::new(h, c, device)),
        }
    }

    /// Multiply-accumulates in one image's forward pass (for GFLOP/s figures), for the sizes
    /// [`ModelKind::init`] takes: the sum over the layers of outputs x inputs per output,
    /// from each model's config.
    ///
    /// ```
    /// use mnist_lab_cli::models::ModelKind;
    ///
    /// // fc: 784 x 600 + 600 x 600 + 600 x 10
    /// assert_eq!(ModelKind::Fc.forward_macs(784, 600, 10), 836_400);
    /// ```
    pub fn forward_macs(self, input_size: usize, hidden_size: usize, num_classes: usize) -> u64 {
        let (h, c) = (hidden_size, num_classes);
        match self {
            ModelKind::Fc => FcNetConfig::new(input_size, h, c).forward_macs(),
            ModelKind::FcRelu => FcReluNetConfig::new(input_size, h, c).forward_macs(),
            ModelKind::Conv => ConvNetConfig::new(h, c).forward_macs(),
            ModelKind::Conv2 => Conv2NetConfig::new(h, c).forward_macs(),
        }
    }
}

/// One of the lecture's four models, whichever [`ModelKind`] names: the one type that the
/// command line and the benchmark create ([`ModelKind::init`]), train, save and measure, where
/// candle's MNIST example uses one `match`.
///
/// Each variant holds the model's own struct, so a saved file ([`LectureModel::save`]) is
/// the struct's: a notebook's model of the same shape loads it.
// The variants differ in size by a few parameter handles (the tensors are elsewhere), and a
// run holds one model: boxing them would gain nothing (and Burn's derive takes no Box).
#[allow(clippy::large_enum_variant)]
#[derive(Module, Debug)]
pub enum LectureModel {
    /// Model 1.
    Fc(FcNet),
    /// Model 2.
    FcRelu(FcReluNet),
    /// Model 3.
    Conv(ConvNet),
    /// Model 4.
    Conv2(Conv2Net),
}

impl LectureModel {
    /// Which of the four it is.
    pub fn kind(&self) -> ModelKind {
        match self {
            LectureModel::Fc(_) => ModelKind::Fc,
            LectureModel::FcRelu(_) => ModelKind::FcRelu,
            LectureModel::Conv(_) => ModelKind::Conv,
            LectureModel::Conv2(_) => ModelKind::Conv2,
        }
    }

    /// Saves the model's own struct to `path` with `settings`, which must be its own
    /// ([`mnist_lab::save::save_with_settings`]): the file loads into a notebook's model of
    /// the same shape, and [`ModelSettings::read`] gives back what rebuilds it.
    pub fn save(
        &self,
        settings: &ModelSettings,
        path: impl AsRef<std::path::Path>,
    ) -> mnist_lab::Result<()> {
        assert_eq!(settings.model, self.kind(), "the settings of another model");
        use mnist_lab::save::save_with_settings as save;
        match self {
            LectureModel::Fc(model) => save(model, settings, path),
            LectureModel::FcRelu(model) => save(model, settings, path),
            LectureModel::Conv(model) => save(model, settings, path),
            LectureModel::Conv2(model) => save(model, settings, path),
        }
    }

    /// Loads the weights saved in `path` into this model ([`mnist_lab::save::load`]), which gives
    /// the shapes they must have.
    pub fn load(self, path: impl AsRef<std::path::Path>) -> mnist_lab::Result<Self> {
        use mnist_lab::save::load;
        Ok(match self {
            LectureModel::Fc(model) => LectureModel::Fc(load(model, path)?),
            LectureModel::FcRelu(model) => LectureModel::FcRelu(load(model, path)?),
            LectureModel::Conv(model) => LectureModel::Conv(load(model, path)?),
            LectureModel::Conv2(model) => LectureModel::Conv2(load(model, path)?),
        })
    }
}

impl Classifier for LectureModel {
    /// The variant's own forward pass.
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        match self {
            LectureModel::Fc(model) => model.forward(images),
            LectureModel::FcRelu(model) => model.forward(images),
            LectureModel::Conv(model) => model.forward(images),
            LectureModel::Conv2(model) => model.forward(images),
        }
    }
}

impl std::fmt::Display for ModelKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for ModelKind {
    type Err = mnist_lab::Error;

    /// A model by its name (`fc`, `fc-relu`, `conv`, `conv2`), in any case.
    fn from_str(s: &str) -> mnist_lab::Result<Self> {
        let name = s.trim();
        ModelKind::ALL
            .into_iter()
            .find(|kind| kind.name().eq_ignore_ascii_case(name))
            .ok_or_else(|| {
                mnist_lab::Error::setting("model", s, "use one of fc, fc-relu, conv, conv2")
            })
    }
}

/// What rebuilds a saved model: which of the four it is and its sizes. `mnist-lab train
/// --save` keeps them in the model's file ([`LectureModel::save`]), and `evaluate --load`
/// reads them back ([`ModelSettings::read`]), so that a saved model is evaluated without
/// repeating `--model` and `--hidden-size`.
///
/// ```
/// use mnist_lab_cli::models::{ModelKind, ModelSettings};
///
/// let settings = ModelSettings::new(ModelKind::Conv, 784, 64, 10);
/// let model = settings.init(&mnist_lab::device::cpu());
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("conv.bpk");
/// model.save(&settings, &path).unwrap();
/// assert_eq!(ModelSettings::read(&path).unwrap(), Some(settings));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelSettings {
    /// The version of these settings' layout ([`ModelSettings::FORMAT`]), so that a file
    /// from another version of the program is recognised as such.
    pub format: u32,
    /// Which model.
    pub model: ModelKind,
    /// Pixels per image (784 for MNIST).
    pub input_size: usize,
    /// Width of the hidden layers.
    pub hidden_size: usize,
    /// Classes (10 digits).
    pub num_classes: usize,
}

impl ModelSettings {
    /// The layout this version writes and reads.
    pub const FORMAT: u32 = 1;

    /// The settings of `model` with these sizes.
    pub fn new(
        model: ModelKind,
        input_size: usize,
        hidden_size: usize,
        num_classes: usize,
    ) -> Self {
        ModelSettings {
            format: Self::FORMAT,
            model,
            input_size,
            hidden_size,
            num_classes,
        }
    }

    /// The model these settings describe, with fresh weights ([`ModelKind::init`]).
    pub fn init(&self, device: &Device) -> LectureModel {
        let model = self.model;
        model.init(self.input_size, self.hidden_size, self.num_classes, device)
    }

    /// The settings kept in the saved model `path`, or `None` when it has none (saved by a
    /// notebook's `save`, or by a version of the program from before settings were kept).
    ///
    /// Errors: the file's own ([`mnist_lab::save::saved_settings`]), and settings from another
    /// version of the program, which say so and what to do.
    pub fn read(path: impl AsRef<std::path::Path>) -> mnist_lab::Result<Option<Self>> {
        let path = path.as_ref();
        let Some(json) = mnist_lab::save::saved_settings(path)? else {
            return Ok(None);
        };
        let other_version = |found: String| {
            mnist_lab::Error::setting(
                "saved model",
                path.display(),
                format!(
                    "its settings were written by another version of mnist-lab ({found}; this \
                     one reads format {}): evaluate it with the version that saved it, or train \
                     and save it again with this one",
                    Self::FORMAT
                ),
            )
        };
        let value: serde_json::Value =
            serde_json::from_str(&json).map_err(|e| other_version(format!("unreadable: {e}")))?;
        match value.get("format").and_then(serde_json::Value::as_u64) {
            Some(format) if format == u64::from(Self::FORMAT) => {}
            Some(format) => return Err(other_version(format!("format {format}"))),
            None => return Err(other_version("no format number".into())),
        }
        serde_json::from_value(value)
            .map(Some)
            .map_err(|e| other_version(format!("format 1, but {e}")))
    }
}
