//! Writing results to files: checked before the work, written whole or not at all.
//!
//! A run that trains for minutes and then cannot write its report has lost those minutes.
//! The command line checks every output path with [`check_file`] or [`check_folder`] before
//! it trains, and everything the crate writes goes through [`write_atomic`]: into a
//! temporary file beside the target, then renamed over it, so a failure (a full disk, a
//! stop) never leaves a half-written file behind.
//!
//! ```
//! let dir = tempfile::tempdir().unwrap();
//! let path = dir.path().join("report.json");
//! mnist_lab::output::check_file(&path).unwrap();
//! mnist_lab::output::write_atomic(&path, b"{}").unwrap();
//! assert_eq!(std::fs::read(&path).unwrap(), b"{}");
//!
//! let error = mnist_lab::output::check_file(dir.path().join("missing/report.json")).unwrap_err();
//! assert!(error.to_string().contains("missing/report.json"));
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Checks that `path` can be written as a file: its folder exists and takes new files, and
/// `path` is not a folder. Creates nothing that stays.
pub fn check_file(path: impl AsRef<Path>) -> Result<()> {
    let path = path.as_ref();
    let fail = |source: io::Error| Error::Output {
        path: path.to_path_buf(),
        source,
    };
    if path.is_dir() {
        return Err(fail(io::Error::new(
            io::ErrorKind::IsADirectory,
            "it is a folder; give a file name",
        )));
    }
    let folder = folder_of(path);
    if !folder.is_dir() {
        let problem = if folder.exists() {
            "its folder is a file"
        } else {
            "its folder does not exist"
        };
        return Err(fail(io::Error::new(io::ErrorKind::NotFound, problem)));
    }
    probe(folder).map_err(fail)
}

/// Checks that `folder` can hold output files, creating it (and its parents) if needed.
pub fn check_folder(folder: impl AsRef<Path>) -> Result<()> {
    let folder = folder.as_ref();
    let fail = |source: io::Error| Error::Output {
        path: folder.to_path_buf(),
        source,
    };
    fs::create_dir_all(folder).map_err(fail)?;
    probe(folder).map_err(fail)
}

/// Writes `bytes` to `path` whole: into a temporary file in the same folder, then renamed
/// over `path`. On failure the temporary file is removed and `path` is left as it was.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let temporary = temporary_beside(path);
    let written = (|| {
        let mut file = File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    written.map_err(|source| {
        let _ = fs::remove_file(&temporary);
        Error::Output {
            path: path.to_path_buf(),
            source,
        }
    })
}

/// The folder a file goes into (`.` for a bare file name).
fn folder_of(path: &Path) -> &Path {
    match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    }
}

/// A temporary name beside `path`: `.name.tmp-<pid>`.
fn temporary_beside(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    folder_of(path).join(format!(".{name}.tmp-{}", std::process::id()))
}

/// Creates and removes a file in `folder`: the one sure test that it takes new files.
fn probe(folder: &Path) -> io::Result<()> {
    let probe = folder.join(format!(".mnist-lab-write-check-{}", std::process::id()));
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)?;
    fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_folder_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nope/r.json");
        let message = check_file(&path).unwrap_err().to_string();
        assert!(message.contains(&path.display().to_string()), "{message}");
        assert!(message.contains("does not exist"), "{message}");
    }

    #[test]
    fn a_folder_is_not_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let message = check_file(dir.path()).unwrap_err().to_string();
        assert!(message.contains("it is a folder"), "{message}");
    }

    #[test]
    fn check_folder_creates_it_and_leaves_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("a/b");
        check_folder(&out).unwrap();
        assert!(out.is_dir());
        assert_eq!(fs::read_dir(&out).unwrap().count(), 0);
    }

    #[test]
    fn a_failed_write_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        fs::write(&path, "old").unwrap();
        // Renaming onto a non-empty folder fails after the temporary file was written.
        let blocked = dir.path().join("blocked");
        fs::create_dir(&blocked).unwrap();
        fs::write(blocked.join("inside"), "x").unwrap();
        assert!(write_atomic(&blocked, b"new").is_err());
        write_atomic(&path, b"new").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "new");
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 2, "only r.json and blocked/: {names:?}");
    }
}
