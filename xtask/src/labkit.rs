//! The hand-over to scripts/labkit, the Python package that holds the kernel tooling: xtask
//! finds evcxr_jupyter and the Python with JupyterLab (crate::setup), then runs
//! `python scripts/labkit COMMAND` with what the command needs as arguments.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::setup::{Tools, Warm, absolute, run};
use crate::{Options, Project, Result};

/// Training steps per run when the notebooks are executed as tests: enough for every loss
/// curve to fall and every accuracy line to print, short enough for CI.
const TEST_MAX_STEPS: usize = 60;

/// `python scripts/labkit COMMAND`, run in the project's root, ready for its arguments.
fn labkit(project: &Project, tools: &Tools, command: &str) -> Command {
    let mut labkit = Command::new(&tools.python);
    labkit
        .arg(project.labkit())
        .arg(command)
        .current_dir(&project.root);
    labkit
}

/// `labkit setup`: writes the kernelspec (naming `evcxr`), the build slots' template and the
/// kernel's `features` crate, and builds the kernel as `warm` says. `elapsed`: what the
/// set-up took so far, for the time it prints.
pub fn setup(
    project: &Project,
    tools: &Tools,
    evcxr: &Path,
    warm: Warm,
    features: &[String],
    elapsed: Duration,
) -> Result {
    let mut command = labkit(project, tools, "setup");
    command
        .arg("--root")
        .arg(&project.root)
        .arg("--python")
        .arg(&tools.python)
        .arg("--evcxr")
        .arg(evcxr)
        .arg("--warm")
        .arg(match warm {
            Warm::Always => "always",
            Warm::IfNeeded => "if-needed",
            Warm::Never => "never",
        })
        .arg("--elapsed")
        .arg(format!("{:.1}", elapsed.as_secs_f64()));
    if !features.is_empty() {
        command.arg("--features").arg(features.join(","));
    }
    run(&mut command, "the kernel's set-up (labkit setup)")
}

/// `labkit notebooks`: executes the notebooks (all of them, or those named) and checks their
/// outputs; the executed copies go to `.lab/runs`.
pub fn notebooks(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = labkit(project, tools, "notebooks");
    command.arg("--out").arg(project.lab().join("runs"));
    if let Some(data) = &options.data {
        command.arg("--data").arg(absolute(data)?);
    }
    if options.full {
        command.arg("--full");
    } else {
        let steps = options.max_steps.unwrap_or(TEST_MAX_STEPS);
        command.arg("--max-steps").arg(steps.to_string());
    }
    command.args(notebook_files(project, options)?);
    run(&mut command, "the notebook runner")
}

/// `labkit test`: the checks that need no kernel (every notebook's first cell against the
/// warm-up's lines), then the kernel proxy's tests: one real kernel, driven through
/// jupyter_client; the stop button and the live displays.
pub fn test(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = labkit(project, tools, "test");
    if let Some(data) = &options.data {
        command.env("MNIST_LAB_DATA", absolute(data)?);
    }
    run(&mut command, "the kernel proxy's tests")
}

/// `labkit strip`: removes outputs and execution counts from the notebooks.
pub fn strip(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = labkit(project, tools, "strip");
    command.args(notebook_files(project, options)?);
    run(&mut command, "stripping the notebooks")
}

/// `labkit lab`: JupyterLab on `notebooks/`, with the project's kernel.
pub fn lab(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = labkit(project, tools, "lab");
    command.arg("--root").arg(&project.root);
    if let Some(data) = &options.data {
        command.arg("--data").arg(absolute(data)?);
    }
    run(&mut command, "jupyter lab")
}

fn notebook_files(project: &Project, options: &Options) -> Result<Vec<PathBuf>> {
    if !options.files.is_empty() {
        return options.files.iter().map(|f| absolute(f)).collect();
    }
    let dir = project.notebooks();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("could not list {}: {e}", dir.display()))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "ipynb"))
        .collect();
    // setup_check first: when it fails, the others would too.
    files.sort_by_key(|path| (!path.ends_with("setup_check.ipynb"), path.clone()));
    if files.is_empty() {
        return Err(format!("no notebooks in {}", dir.display()));
    }
    Ok(files)
}
