//! The crate's error type: every failure a student can cause, with what to do next.

use std::fmt;
use std::path::PathBuf;

/// A specialised `Result` for mnist_lab.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in mnist_lab.
///
/// Each variant's `Display` is one paragraph a student can act on: what happened, where,
/// and what to try next. None of them carries a backtrace. `Debug` prints the same
/// paragraph, so an error that reaches a notebook through `?` or `unwrap()` reads the same.
#[non_exhaustive]
pub enum Error {
    /// A file or folder could not be read or written.
    Io {
        /// What we were doing, e.g. "reading" or "writing the cache file".
        action: String,
        /// The file or folder concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An MNIST file exists but its contents are not a valid IDX file.
    BadIdx {
        /// The file concerned.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
    },
    /// No data folder holds the MNIST files and they could not be downloaded.
    DataNotFound {
        /// The file names that were missing.
        missing: Vec<String>,
        /// Where they were looked for.
        looked_in: Vec<PathBuf>,
        /// Why downloading did not help (if a download was tried).
        download: Option<String>,
    },
    /// A download failed after its retries.
    Download {
        /// The file being downloaded.
        file: String,
        /// What went wrong, mirror by mirror.
        problem: String,
    },
    /// A setting is out of range.
    Setting {
        /// The setting's name, as in [`crate::train::TrainingConfig`] or on the command line.
        name: String,
        /// The value it was given.
        value: String,
        /// What would be valid.
        hint: String,
    },
    /// A model does not fit MNIST's images or its ten classes.
    ModelShape {
        /// The full explanation, layer by layer.
        message: String,
    },
    /// The loss became NaN or infinite during training.
    Diverged {
        /// The global step (1-based) at which it happened.
        step: usize,
        /// The epoch (1-based) at which it happened.
        epoch: usize,
        /// The loss value seen.
        loss: f32,
        /// The learning rate in use.
        learning_rate: f64,
    },
    /// The data loader could not make a batch of images (training, evaluation or the
    /// benchmark).
    DataLoader {
        /// Which batch, e.g. "a training batch".
        batch: String,
        /// What the loader reported.
        problem: String,
    },
    /// The requested device cannot be used.
    Device {
        /// What went wrong and what to do.
        message: String,
    },
    /// An output file (a report, a chart, a saved model) cannot be written there.
    Output {
        /// The file or folder concerned.
        path: PathBuf,
        /// Why not.
        source: std::io::Error,
    },
    /// A plot could not be drawn or saved.
    Plot {
        /// What went wrong.
        message: String,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io {
                action,
                path,
                source,
            } => {
                write!(f, "error {action} {}: {source}.", path.display())?;
                match source.kind() {
                    std::io::ErrorKind::NotFound => {
                        write!(f, " Check that the path exists and is spelled right.")
                    }
                    std::io::ErrorKind::PermissionDenied
                    | std::io::ErrorKind::ReadOnlyFilesystem => {
                        write!(
                            f,
                            " The folder is not writable: fix its permissions, or download the \
                             four MNIST files elsewhere and set MNIST_LAB_DATA to that folder."
                        )
                    }
                    std::io::ErrorKind::StorageFull => write!(
                        f,
                        " The disk is full: free some space, or download the four MNIST files \
                         onto another disk and set MNIST_LAB_DATA to that folder."
                    ),
                    _ => Ok(()),
                }
            }
            Error::BadIdx { path, problem } => write!(
                f,
                "{} is not a valid MNIST IDX file: {problem}. The file is damaged or is not an \
                 MNIST file: replace it with the original (in the download cache, deleting it \
                 is enough: the next run downloads it again).",
                path.display()
            ),
            Error::DataNotFound {
                missing,
                looked_in,
                download,
            } => {
                write!(f, "MNIST data not found: missing {}.", missing.join(", "))?;
                let places: Vec<String> =
                    looked_in.iter().map(|p| p.display().to_string()).collect();
                write!(f, " Looked in: {}.", places.join("; "))?;
                match download {
                    Some(why) => write!(
                        f,
                        " Downloading failed: {why}. If this machine is offline, copy the four \
                         MNIST .gz files into a folder and set MNIST_LAB_DATA to it (e.g. \
                         `export MNIST_LAB_DATA=/path/to/mnist`), or pass that folder with --data."
                    ),
                    None => write!(
                        f,
                        " Check the folder's name, or copy the four MNIST .gz files into it; \
                         MNIST_LAB_DATA or --data can point at any folder that holds them."
                    ),
                }
            }
            Error::Download { file, problem } => write!(
                f,
                "could not download {file}: {problem}. Check the internet connection, or copy \
                 the MNIST files into a folder and set MNIST_LAB_DATA to it."
            ),
            Error::Setting { name, value, hint } => {
                write!(f, "invalid setting `{name}` = {value}: {hint}.")
            }
            Error::ModelShape { message } => write!(f, "{message}"),
            Error::Diverged {
                step,
                epoch,
                loss,
                learning_rate,
            } => {
                let high = (learning_rate / 10.0).min(0.1);
                let low = (high / 10.0).min(0.001);
                write!(
                    f,
                    "training stopped: the loss became {loss} at step {step} (epoch {epoch}) \
                     with learning_rate = {learning_rate}. The steps were too large and the \
                     weights blew up. Try a learning rate between {low} and {high}, re-create \
                     the model, and train again."
                )
            }
            Error::DataLoader { batch, problem } => write!(
                f,
                "could not load {batch}: {problem}. The images are already in memory, so no file \
                 is at fault: load the data again (`Mnist::load()`) and run the cell or command \
                 again; if it happens again, report it with this message."
            ),
            Error::Device { message } => write!(f, "{message}"),
            Error::Output { path, source } => write!(
                f,
                "cannot write {}: {source}. Choose a file in a folder that exists and that you \
                 can write to, and run again.",
                path.display()
            ),
            Error::Plot { message } => write!(f, "could not draw the plot: {message}"),
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { source, .. } | Error::Output { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl Error {
    /// An [`Error::Io`] for `path`, while doing `action`.
    pub fn io(action: impl Into<String>, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            action: action.into(),
            path: path.into(),
            source,
        }
    }

    /// An [`Error::DataLoader`] for `batch` (e.g. "a training batch").
    pub fn data_loader(batch: &str, problem: impl fmt::Display) -> Self {
        Error::DataLoader {
            batch: batch.to_string(),
            problem: problem.to_string(),
        }
    }

    /// An [`Error::Setting`] for setting `name`.
    pub fn setting(name: &str, value: impl fmt::Display, hint: impl Into<String>) -> Self {
        Error::Setting {
            name: name.to_string(),
            value: value.to_string(),
            hint: hint.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_reads_like_display() {
        let error = Error::setting("batch_size", 0, "it must be at least 1");
        assert_eq!(format!("{error:?}"), error.to_string());
        assert_eq!(
            error.to_string(),
            "invalid setting `batch_size` = 0: it must be at least 1."
        );
    }

    #[test]
    fn divergence_advice_stays_in_a_sensible_range() {
        let message = |learning_rate| {
            Error::Diverged {
                step: 3,
                epoch: 1,
                loss: f32::NAN,
                learning_rate,
            }
            .to_string()
        };
        assert!(message(10.0).contains("between 0.001 and 0.1"));
        assert!(message(0.5).contains("between 0.001 and 0.05"));
    }
}
