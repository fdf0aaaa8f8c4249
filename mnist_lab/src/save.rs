//! Saving a trained model to a file and loading it back.
//!
//! The file is Burn's burnpack format (what `Module::save_file` writes in Burn 0.22): every
//! parameter by its path in the model (`fc1.weight`), with its shape and values. [`save`]
//! writes it whole or not at all; [`load`] checks the file against the model it loads into
//! and names the first layer whose shape differs, instead of Burn's panic.
//!
//! ```
//! use mnist_lab::models::FcNet;
//! use mnist_lab::prelude::*;
//!
//! let device = mnist_lab::device::cpu();
//! let model = FcNet::new(784, 32, 10, &device);
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("fc.bpk");
//! save(&model, &path).unwrap();
//!
//! // A skeleton of the same architecture (its weights are replaced), then the file's weights.
//! let loaded = load(FcNet::new(784, 32, 10, &device), &path).unwrap();
//! let images = Tensor::<4>::ones([1, 1, 28, 28], &device);
//! assert_eq!(
//!     model.forward(images.clone()).into_data(),
//!     loaded.forward(images).into_data()
//! );
//!
//! // A model of another shape is refused, naming the parameter and both shapes.
//! let wrong = load(FcNet::new(784, 64, 10, &device), &path).unwrap_err();
//! assert!(wrong.to_string().contains("fc1.bias is 32 in the file but 64 in the model"));
//! ```

use std::collections::BTreeMap;
use std::io;
use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::store::ModuleRecord;
use burn::tensor::Tensor;

use crate::{Error, Result, output};

/// Saves `model`'s parameters to `path` (Burn's burnpack format; `.bpk` is the usual name).
///
/// The file is written to a temporary file in the same folder, then renamed
/// ([`crate::output::write_atomic`]): a failed or interrupted save leaves any earlier file at
/// `path` as it was, and no partial file.
pub fn save<M: Module>(model: &M, path: impl AsRef<Path>) -> Result<()> {
    write_model(model, path.as_ref(), None)
}

/// The key under which [`save_with_settings`] keeps a model's settings in its file.
pub const SETTINGS_KEY: &str = "mnist_lab.settings";

/// [`save`], with `settings` kept in the same file: whatever rebuilds the model (its kind and
/// sizes), as JSON in the file's metadata under [`SETTINGS_KEY`], so that the weights never
/// travel without them. [`saved_settings`] reads them back.
///
/// ```
/// use mnist_lab::models::{FcNet, FcNetConfig};
/// use mnist_lab::prelude::*;
/// use mnist_lab::save::{save_with_settings, saved_settings};
///
/// let device = mnist_lab::device::cpu();
/// let sizes = FcNetConfig::new(784, 32, 10);
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("fc.bpk");
/// save_with_settings(&FcNet::new(784, 32, 10, &device), &sizes, &path).unwrap();
///
/// let json = saved_settings(&path).unwrap().expect("the settings were saved");
/// let again: FcNetConfig = serde_json::from_str(&json).unwrap();
/// assert_eq!(again.hidden_size, 32);
/// let skeleton = FcNet::new(again.input_size, again.hidden_size, again.num_classes, &device);
/// let loaded = load(skeleton, &path).unwrap();
///
/// // A file from `save` alone has none.
/// save(&loaded, &path).unwrap();
/// assert_eq!(saved_settings(&path).unwrap(), None);
/// ```
pub fn save_with_settings<M: Module>(
    model: &M,
    settings: &impl serde::Serialize,
    path: impl AsRef<Path>,
) -> Result<()> {
    let path = path.as_ref();
    let json = serde_json::to_string(settings).map_err(|e| Error::Output {
        path: path.to_path_buf(),
        source: io::Error::other(format!("the settings could not be written as JSON: {e}")),
    })?;
    write_model(model, path, Some(json))
}

/// The settings [`save_with_settings`] kept in `path`, as the JSON text it wrote, or `None`
/// for a file saved without them ([`save`]). Only the file's header is read, not its weights.
///
/// Errors as [`load`]'s: a missing file, or one that is not a whole saved model.
pub fn saved_settings(path: impl AsRef<Path>) -> Result<Option<String>> {
    let path = path.as_ref();
    if let Err(e) = std::fs::metadata(path) {
        return Err(Error::io(LOADING, path, e));
    }
    let reader = burn_pack::Reader::from_file(path).map_err(|e| damaged(path, e))?;
    Ok(reader.metadata().get(SETTINGS_KEY).cloned())
}

/// Writes `model` to `path` whole or not at all, with `settings` under [`SETTINGS_KEY`].
fn write_model<M: Module>(model: &M, path: &Path, settings: Option<String>) -> Result<()> {
    output::check_file(path)?;
    let failed = |e: &dyn std::fmt::Display| Error::Output {
        path: path.to_path_buf(),
        source: io::Error::other(e.to_string()),
    };
    let bytes = model
        .clone()
        .into_record()
        .into_bytes()
        .map_err(|e| failed(&e))?;
    let bytes = match settings {
        None => bytes,
        // Burn's record writes the tensors and its own metadata; the same tensors (views of
        // those bytes, no copy) are written again with the settings added.
        Some(json) => {
            let reader = burn_pack::Reader::from_bytes(bytes).map_err(|e| failed(&e))?;
            let metadata = reader.metadata().clone();
            let scalars = reader.scalars().clone();
            let tensors = reader.into_tensors().map_err(|e| failed(&e))?;
            let mut writer = burn_pack::Writer::new(tensors);
            for (key, value) in &metadata {
                writer = writer.with_metadata(key, value);
            }
            for (key, value) in scalars {
                writer = writer.with_scalar(&key, value);
            }
            writer
                .with_metadata(SETTINGS_KEY, &json)
                .into_bytes()
                .map_err(|e| failed(&e))?
        }
    };
    output::write_atomic(path, &bytes)
}

/// What [`load`] and [`saved_settings`] are doing, for their errors.
const LOADING: &str = "loading the model from";

/// The error for a file at `path` that is not a whole saved model.
fn damaged(path: &Path, problem: impl std::fmt::Display) -> Error {
    Error::io(
        LOADING,
        path,
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the file is not a whole saved model ({problem}); it is truncated, damaged or \
                 not a model file. Save the model again (save(&model, path) or `mnist-lab train \
                 --save`)"
            ),
        ),
    )
}

/// Loads the parameters saved in `path` into `skeleton`, a model of the same architecture
/// (built as for training; its own weights are replaced), and returns it.
///
/// Errors, never a panic: a missing file ([`Error::Io`]); a file that is not a whole saved
/// model, truncated or damaged ([`Error::Io`] with the reason); a file saved from a model of
/// another shape ([`Error::ModelShape`], naming the first parameter that differs and both
/// shapes, or the parameters one has and the other lacks).
pub fn load<M: Module>(skeleton: M, path: impl AsRef<Path>) -> Result<M> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| Error::io(LOADING, path, e))?;
    let damaged = |problem: String| damaged(path, problem);
    let in_file: BTreeMap<String, Vec<usize>> =
        burn_pack::Reader::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes.clone()))
            .and_then(|reader| reader.into_tensors())
            .map_err(|e| damaged(e.to_string()))?
            .into_iter()
            .map(|t| (t.name, t.shape.to_vec()))
            .collect();
    compare(&parameter_shapes(&skeleton), &in_file, path)?;
    let record = ModuleRecord::from_bytes(burn_pack::Bytes::from_bytes_vec(bytes))
        .map_err(|e| damaged(e.to_string()))?;
    // Each parameter is loaded onto the device of the skeleton's parameter it replaces.
    crate::panics::quietly(|| skeleton.try_load_record(record))
        .map_err(damaged)?
        .map_err(|e| damaged(e.to_string()))
}

/// Every float parameter of `model` by its path (`fc1.weight`), with its shape.
pub(crate) fn parameter_shapes<M: Module>(model: &M) -> BTreeMap<String, Vec<usize>> {
    parameters(model)
        .into_iter()
        .map(|(path, _, shape)| (path, shape))
        .collect()
}

/// Every float parameter of `model`, in visiting order: its path (`fc1.weight`), its id and
/// its shape.
pub(crate) fn parameters<M: Module>(model: &M) -> Vec<(String, ParamId, Vec<usize>)> {
    #[derive(Default)]
    struct Walk {
        path: Vec<String>,
        found: Vec<(String, ParamId, Vec<usize>)>,
    }
    impl ModuleVisitor for Walk {
        fn enter_module(&mut self, name: &str, _container_type: &str) {
            self.path.push(name.to_string());
        }
        fn exit_module(&mut self, _name: &str, _container_type: &str) {
            self.path.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let dims = param.lazy_shape().dims::<D>().to_vec();
            self.found.push((self.path.join("."), param.id, dims));
        }
    }
    let mut walk = Walk::default();
    model.visit(&mut walk);
    walk.found
}

/// Explains the first difference between the model's parameters and the file's.
fn compare(
    in_model: &BTreeMap<String, Vec<usize>>,
    in_file: &BTreeMap<String, Vec<usize>>,
    path: &Path,
) -> Result<()> {
    let file = path.display();
    let advice = "Load it into a model built exactly as the saved one was (same layers, same \
                  sizes), or train this model instead.";
    for (name, model_shape) in in_model {
        if let Some(file_shape) = in_file.get(name)
            && file_shape != model_shape
        {
            return Err(Error::ModelShape {
                message: format!(
                    "the model saved in {file} does not fit this model: {name} is {} in the \
                     file but {} in the model. {advice}",
                    shape_text(file_shape),
                    shape_text(model_shape)
                ),
            });
        }
    }
    let only_model: Vec<&str> = in_model
        .keys()
        .filter(|k| !in_file.contains_key(*k))
        .map(String::as_str)
        .collect();
    let only_file: Vec<&str> = in_file
        .keys()
        .filter(|k| !in_model.contains_key(*k))
        .map(String::as_str)
        .collect();
    if only_model.is_empty() && only_file.is_empty() {
        return Ok(());
    }
    let mut parts = Vec::new();
    if !only_model.is_empty() {
        parts.push(format!(
            "the model has {} that the file lacks",
            only_model.join(", ")
        ));
    }
    if !only_file.is_empty() {
        parts.push(format!(
            "the file has {} that the model lacks",
            only_file.join(", ")
        ));
    }
    Err(Error::ModelShape {
        message: format!(
            "the model saved in {file} does not fit this model: {}. {advice}",
            parts.join(", and ")
        ),
    })
}

/// `[24255, 600]` as `24255 x 600`.
fn shape_text(dims: &[usize]) -> String {
    let parts: Vec<String> = dims.iter().map(usize::to_string).collect();
    parts.join(" x ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_read_as_products() {
        assert_eq!(shape_text(&[24255, 600]), "24255 x 600");
    }
}
