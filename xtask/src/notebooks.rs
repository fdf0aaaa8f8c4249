//! Executing and stripping the notebooks, through scripts/run_notebooks.py (nbclient).

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::Command;

use crate::setup::{Tools, absolute, run as run_command};
use crate::{Options, Project, Result};

/// Training steps per run when the notebooks are executed as tests: enough for every loss
/// curve to fall and every accuracy line to print, short enough for CI.
const TEST_MAX_STEPS: usize = 60;

/// JUPYTER_PATH with the project's Jupyter folder first.
pub fn jupyter_path(project: &Project) -> OsString {
    let mut paths = vec![project.jupyter_path()];
    if let Some(existing) = std::env::var_os("JUPYTER_PATH") {
        paths.extend(std::env::split_paths(&existing));
    }
    std::env::join_paths(paths).unwrap_or_else(|_| project.jupyter_path().into_os_string())
}

/// The runner, ready for its arguments.
pub fn runner(project: &Project, tools: &Tools) -> Command {
    let mut command = Command::new(&tools.python);
    command
        .arg(project.scripts().join("run_notebooks.py"))
        .arg("--kernel")
        .arg(crate::setup::KERNEL_NAME)
        .arg("--out")
        .arg(project.lab().join("runs"))
        .env("JUPYTER_PATH", jupyter_path(project))
        .current_dir(&project.root);
    command
}

/// Executes the notebooks (all of them, or those named) and checks their outputs.
pub fn run(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = runner(project, tools);
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
    run_command(&mut command, "the notebook runner")
}

/// The kernel proxy's tests (scripts/test_kernel_proxy.py): one real kernel, driven through
/// jupyter_client; the stop button and the live displays.
pub fn test_proxy(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = Command::new(&tools.python);
    command
        .arg(project.scripts().join("test_kernel_proxy.py"))
        .env("JUPYTER_PATH", jupyter_path(project))
        .current_dir(&project.root);
    if let Some(data) = &options.data {
        command.env("MNIST_LAB_DATA", absolute(data)?);
    }
    run_command(&mut command, "the kernel proxy's tests")
}

/// Removes outputs and execution counts from the notebooks.
pub fn strip(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = runner(project, tools);
    command
        .arg("--strip")
        .args(notebook_files(project, options)?);
    run_command(&mut command, "stripping the notebooks")
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
