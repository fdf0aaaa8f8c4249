//! The notebook set-up: finds (or installs) the Python with JupyterLab, evcxr_jupyter and
//! rust-src, then hands over to the Python package scripts/labkit, which writes the
//! project's kernel and builds it (`labkit setup`, see crate::labkit).
//!
//! evcxr_jupyter, when none of the tested version is there, comes from evcxr's release
//! binary for the platform where one is published and its SHA-256 is recorded in the
//! repository, else from `cargo install`: `labkit evcxr` (scripts/labkit/evcxr_release.py)
//! decides, downloads, checks and falls back. The download lives in Python, not here: xtask
//! stays std-only (no HTTP client, no SHA-256, no tar: it compiles in seconds), `curl` is not
//! on every machine (nor is `tar` on every Windows), and the check that the program runs and
//! reports 0.22.x starts it as a Jupyter kernel, which needs jupyter_client anyway; so the
//! Python environment is made first.
//!
//! Each step checks first and does nothing when already done, so `cargo xtask lab` is quick
//! the second time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{Project, Result, cargo};

/// The evcxr_jupyter versions the notebooks are tested with.
const EVCXR_VERSION: &str = "0.22";
/// What the project's Python environment needs, for pip: JupyterLab and the notebook runner;
/// jsonschema and PyYAML for the test that checks deploy/jupyterhub/config.yaml against the
/// Zero to JupyterHub chart's schema (`labkit test`).
const PYTHON_PACKAGES: [&str; 5] = [
    "jupyterlab>=4,<5",
    "nbclient>=0.10,<1",
    "nbformat>=5,<6",
    "jsonschema>=4,<5",
    "pyyaml>=6,<7",
];
/// What has_packages imports to tell that they are there.
const PYTHON_IMPORTS: &str = "import jupyterlab, nbclient, nbformat, jsonschema, yaml";

/// The programs the tasks run.
pub struct Tools {
    /// The Python that has JupyterLab and nbclient.
    pub python: PathBuf,
}

/// When the set-up builds the kernel's dependencies (and times a fresh kernel): `labkit
/// setup --warm always|if-needed|never`.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// Every time (`cargo xtask setup`).
    Always,
    /// When no build is there yet (`cargo xtask lab`: quick the second time).
    IfNeeded,
    /// Never (the notebook runner builds on its first kernel anyway).
    Never,
}

/// Sets everything up for a CPU kernel, building the kernel's dependencies as `warm` says.
pub fn setup(project: &Project, warm: Warm) -> Result<Tools> {
    setup_with(project, warm, &[])
}

/// Sets everything up, the kernel's crate built with mnist_lab's `features` (`wgpu`, `cuda`:
/// `cargo xtask lab --features wgpu`), and builds the kernel's dependencies as `warm` says.
pub fn setup_with(project: &Project, warm: Warm, features: &[String]) -> Result<Tools> {
    let started = Instant::now();
    check_features(features)?;
    let tools = setup_python(project)?;
    let evcxr = ensure_evcxr(project, &tools)?;
    ensure_rust_src();
    crate::labkit::setup(project, &tools, &evcxr, warm, features, started.elapsed())?;
    Ok(tools)
}

/// mnist_lab's features a kernel can be built with.
const KERNEL_FEATURES: [&str; 2] = ["wgpu", "cuda"];

fn check_features(features: &[String]) -> Result {
    match features
        .iter()
        .find(|f| !KERNEL_FEATURES.contains(&f.as_str()))
    {
        Some(other) => Err(format!(
            "--features takes {} (comma-separated), not `{other}`",
            KERNEL_FEATURES.join(", ")
        )),
        None => Ok(()),
    }
}

/// Finds evcxr_jupyter 0.22 (on PATH, conda's included, in Cargo's bin folder, or the one
/// set-up downloaded into `.lab/bin`); when none of the tested version is there, installs it
/// with `labkit evcxr`: evcxr's release binary, checked, else `cargo install`.
fn ensure_evcxr(project: &Project, tools: &Tools) -> Result<PathBuf> {
    let cargo_bin = cargo_home().join("bin").join(exe("evcxr_jupyter"));
    let downloaded = project.lab().join("bin").join(exe("evcxr_jupyter"));
    let installed = [cargo_bin.as_path(), downloaded.as_path()];
    let candidates = evcxr_candidates(which("evcxr_jupyter"), &installed);
    let why = match choose_evcxr(&candidates) {
        Ok(found) => {
            println!(
                "setup: evcxr_jupyter {} found at {}",
                found.version.as_deref().unwrap_or("?"),
                found.path.display()
            );
            return Ok(found.path.clone());
        }
        Err(why) => why,
    };
    println!(
        "setup: {why}: installing evcxr_jupyter {EVCXR_VERSION} (evcxr's release binary where \
         one is published and its checksum recorded, else `cargo install`)"
    );
    run(
        Command::new(&tools.python)
            .arg(project.labkit())
            .arg("evcxr")
            .arg("--dest")
            .arg(project.lab().join("bin"))
            .arg("--series")
            .arg(EVCXR_VERSION)
            .arg("--cargo")
            .arg(cargo())
            .current_dir(&project.root),
        "installing evcxr_jupyter (labkit evcxr)",
    )?;
    let candidates = evcxr_candidates(None, &installed);
    choose_evcxr(&candidates)
        .map(|found| found.path.clone())
        .map_err(|why| format!("after installing evcxr_jupyter: {why}"))
}

/// An evcxr_jupyter program and its version, when it can be told.
#[derive(Debug, Clone, PartialEq)]
struct Evcxr {
    path: PathBuf,
    version: Option<String>,
}

/// The evcxr_jupyter programs to consider, in order: the one on PATH (what a user's own
/// Jupyter would start), then those set-up installs (Cargo's, the downloaded one).
fn evcxr_candidates(on_path: Option<PathBuf>, installed: &[&Path]) -> Vec<Evcxr> {
    let mut paths: Vec<PathBuf> = on_path.into_iter().collect();
    for program in installed {
        if program.is_file() && !paths.iter().any(|p| same_file(p, program)) {
            paths.push(program.to_path_buf());
        }
    }
    paths
        .into_iter()
        .map(|path| Evcxr {
            version: evcxr_version(&path),
            path,
        })
        .collect()
}

/// The first candidate of the tested version, or why there is none (one line).
fn choose_evcxr(candidates: &[Evcxr]) -> std::result::Result<&Evcxr, String> {
    if let Some(found) = candidates.iter().find(|c| {
        c.version
            .as_deref()
            .is_some_and(|v| v.starts_with(&format!("{EVCXR_VERSION}.")))
    }) {
        return Ok(found);
    }
    Err(match candidates.first() {
        None => "evcxr_jupyter is not installed".to_string(),
        Some(Evcxr {
            path,
            version: Some(v),
        }) => format!(
            "evcxr_jupyter {v} at {} is not the {EVCXR_VERSION}.x the notebooks are tested with \
             (the stop button and live progress need {EVCXR_VERSION}'s interrupt replies)",
            path.display()
        ),
        Some(Evcxr {
            path,
            version: None,
        }) => format!(
            "the version of evcxr_jupyter at {} cannot be told, and the notebooks are tested \
             with {EVCXR_VERSION}.x",
            path.display()
        ),
    })
}

/// The version of the evcxr_jupyter at `path` (which has no `--version` option), from what
/// installed it: `evcxr_jupyter.version` beside it for the one set-up downloaded (written
/// once the program answered as a kernel with that version), `cargo install --list` for
/// Cargo's bin folder, `conda-meta/` for a conda environment, else the crate paths Cargo
/// compiles into the program (`evcxr_jupyter-0.22.0/src/...`).
fn evcxr_version(path: &Path) -> Option<String> {
    let dir = path.parent()?;
    if let Ok(recorded) = std::fs::read_to_string(dir.join("evcxr_jupyter.version")) {
        return Some(recorded.trim().to_string());
    }
    if same_dir(dir, &cargo_home().join("bin")) {
        let listed = Command::new(cargo())
            .args(["install", "--list"])
            .output()
            .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
            .unwrap_or_default();
        if let Some(v) = listed
            .lines()
            .find_map(|line| line.strip_prefix("evcxr_jupyter v"))
        {
            return Some(v.trim_end_matches(':').to_string());
        }
    }
    // A conda environment: <env>/bin/evcxr_jupyter (Scripts\ or Library\bin\ on Windows) and
    // <env>/conda-meta/evcxr-0.21.0-h1234_0.json.
    for env in dir.ancestors().skip(1).take(2) {
        if let Ok(entries) = std::fs::read_dir(env.join("conda-meta")) {
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                for package in ["evcxr_jupyter-", "evcxr-"] {
                    if let Some(rest) = name.strip_prefix(package)
                        && let Some(version) = rest.split('-').next()
                        && version.starts_with(|c: char| c.is_ascii_digit())
                    {
                        return Some(version.to_string());
                    }
                }
            }
        }
    }
    let bytes = std::fs::read(path).ok()?;
    version_after(&bytes, b"evcxr_jupyter-").or_else(|| version_after(&bytes, b"evcxr-"))
}

/// The first `N.N.N` right after `prefix` in `bytes`.
fn version_after(bytes: &[u8], prefix: &[u8]) -> Option<String> {
    let mut rest = bytes;
    while let Some(at) = rest.windows(prefix.len()).position(|w| w == prefix) {
        let tail = &rest[at + prefix.len()..];
        let version: String = tail
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .map(|&b| b as char)
            .collect();
        if version.split('.').count() == 3 && version.split('.').all(|p| !p.is_empty()) {
            return Some(version);
        }
        rest = tail;
    }
    None
}

fn same_dir(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    same_dir(a, b)
}

/// evcxr infers the types of a cell's variables with rust-analyzer, which reads the standard
/// library's sources (the `rust-src` component).
fn ensure_rust_src() {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .output()
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
        .unwrap_or_default();
    if sysroot.join("lib/rustlib/src/rust/library").is_dir() {
        return;
    }
    println!("setup: adding the rust-src component (evcxr reads std's sources to infer types)");
    // Bounded: on a machine that cannot reach rustup's server this must not hang the set-up.
    let added = Command::new("rustup")
        .args(["component", "add", "rust-src"])
        .spawn()
        .is_ok_and(|mut child| {
            let deadline = Instant::now() + std::time::Duration::from_secs(180);
            loop {
                match child.try_wait() {
                    Ok(Some(status)) => return status.success(),
                    Ok(None) if Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(200))
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return false;
                    }
                }
            }
        });
    if !added {
        println!(
            "setup: warning: could not add rust-src; install it (`rustup component add rust-src`, \
             or conda's `rust-src`), else some `let` cells will ask for an explicit type"
        );
    }
}

/// Finds or makes the Python environment with JupyterLab and nbclient: an active conda
/// environment that has them (see environment.yml), else the project's `.venv`.
pub fn setup_python(project: &Project) -> Result<Tools> {
    if let Some(prefix) = std::env::var_os("CONDA_PREFIX") {
        let python = venv_python(Path::new(&prefix));
        if has_packages(&python) {
            println!(
                "setup: JupyterLab found in the conda environment {}",
                prefix.display()
            );
            return Ok(Tools { python });
        }
    }
    let venv = project.root.join(".venv");
    let python = venv_python(&venv);
    if !python.exists() {
        let base = ["python3", "python"]
            .into_iter()
            .find(|name| which(name).is_some())
            .ok_or("Python 3.9 or newer is needed for JupyterLab; install it and run again")?;
        println!("setup: creating the Python environment {}", venv.display());
        run(
            Command::new(base).args(["-m", "venv"]).arg(&venv),
            "python -m venv",
        )?;
    }
    if !has_packages(&python) {
        println!(
            "setup: installing JupyterLab, nbclient, jsonschema and PyYAML into .venv (about 250 MB)"
        );
        run(
            Command::new(&python)
                .args(["-m", "pip", "install", "--quiet", "--upgrade"])
                .args(PYTHON_PACKAGES),
            "pip install",
        )?;
    } else {
        println!("setup: JupyterLab found in .venv");
    }
    Ok(Tools { python })
}

fn venv_python(prefix: &Path) -> PathBuf {
    if cfg!(windows) {
        prefix.join("Scripts").join("python.exe")
    } else {
        prefix.join("bin").join("python")
    }
}

fn has_packages(python: &Path) -> bool {
    Command::new(python)
        .args(["-c", PYTHON_IMPORTS])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Runs `command`, its output going to ours; an error names `what` when it fails.
pub fn run(command: &mut Command, what: &str) -> Result {
    let status = command
        .status()
        .map_err(|e| format!("could not start {what}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{what} failed ({status})"))
    }
}

pub fn absolute(path: &Path) -> Result<PathBuf> {
    path.canonicalize()
        .map_err(|e| format!("{}: {e}", path.display()))
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| home().map(|h| h.join(".cargo")))
        .unwrap_or_else(|| PathBuf::from(".cargo"))
}

fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .or_else(|| std::env::var_os("USERPROFILE"))
        .map(PathBuf::from)
}

fn exe(name: &str) -> String {
    format!("{name}{}", std::env::consts::EXE_SUFFIX)
}

/// The first `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    which_in(name, &std::env::var_os("PATH")?)
}

/// The first `name` in the folders of `path` (PATH's format).
fn which_in(name: &str, path: &std::ffi::OsStr) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(exe(name)))
        .find(|candidate| candidate.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A scratch folder under the target folder, emptied first.
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/xtask-tests")
            .join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// An executable script at `dir/evcxr_jupyter` whose text is `body`.
    fn fake_evcxr(dir: &Path, body: &str) -> PathBuf {
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(exe("evcxr_jupyter"));
        std::fs::write(&path, body).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        path
    }

    /// PATH with `dir` in front of the real one.
    fn path_with(dir: &Path) -> std::ffi::OsString {
        let mut dirs = vec![dir.to_path_buf()];
        dirs.extend(std::env::split_paths(
            &std::env::var_os("PATH").unwrap_or_default(),
        ));
        std::env::join_paths(dirs).unwrap()
    }

    #[test]
    fn a_conda_evcxr_0_21_on_path_is_not_used() {
        let env = scratch("conda-env");
        let bin = env.join("bin");
        fake_evcxr(&bin, "#!/bin/sh\necho 'evcxr_jupyter from conda-forge'\n");
        std::fs::create_dir_all(env.join("conda-meta")).unwrap();
        std::fs::write(env.join("conda-meta/evcxr-0.21.0-h5a7c7b1_0.json"), "{}").unwrap();

        let found = which_in("evcxr_jupyter", &path_with(&bin)).unwrap();
        assert!(found.starts_with(&bin), "{}", found.display());
        let none = env.join("no-cargo/evcxr_jupyter");
        let candidates = evcxr_candidates(Some(found), &[&none]);
        assert_eq!(candidates.len(), 1);
        assert_eq!(candidates[0].version.as_deref(), Some("0.21.0"));
        let why = choose_evcxr(&candidates).unwrap_err();
        assert!(
            why.contains("0.21.0") && why.contains("0.22.x") && !why.contains('\n'),
            "{why}"
        );
    }

    #[test]
    fn a_cargo_built_evcxr_tells_its_version_by_its_crate_paths() {
        let dir = scratch("built");
        let old = fake_evcxr(
            &dir.join("old"),
            "panicked at /home/u/.cargo/registry/src/x/evcxr_jupyter-0.21.1/src/core.rs",
        );
        let new = fake_evcxr(
            &dir.join("new"),
            "panicked at /home/u/.cargo/registry/src/x/evcxr-0.22.0/src/module.rs",
        );
        let candidates = evcxr_candidates(Some(old), &[&new]);
        assert_eq!(candidates[0].version.as_deref(), Some("0.21.1"));
        assert_eq!(candidates[1].version.as_deref(), Some("0.22.0"));
        // The tested version is used even when an older one comes first on PATH.
        assert_eq!(choose_evcxr(&candidates).unwrap().path, candidates[1].path);
    }

    #[test]
    fn a_downloaded_evcxr_tells_its_version_by_the_file_beside_it() {
        // A release binary has no crate path with a version in it (evcxr builds it from its
        // own workspace); set-up writes the version it reported as a kernel beside it.
        let dir = scratch("downloaded");
        let old = fake_evcxr(&dir.join("path"), "#!/bin/sh\n");
        let downloaded = fake_evcxr(&dir.join("lab-bin"), "#!/bin/sh\n");
        std::fs::write(dir.join("lab-bin/evcxr_jupyter.version"), "0.22.0\n").unwrap();
        let candidates = evcxr_candidates(Some(old), &[&dir.join("none"), &downloaded]);
        assert_eq!(candidates.len(), 2);
        assert_eq!(candidates[0].version, None);
        assert_eq!(candidates[1].version.as_deref(), Some("0.22.0"));
        assert_eq!(choose_evcxr(&candidates).unwrap().path, downloaded);
    }

    #[test]
    fn an_evcxr_of_unknown_version_is_not_used() {
        let dir = scratch("unknown");
        let fake = fake_evcxr(&dir, "#!/bin/sh\n");
        let candidates = evcxr_candidates(Some(fake), &[&dir.join("none")]);
        let why = choose_evcxr(&candidates).unwrap_err();
        assert!(why.contains("cannot be told"), "{why}");
        assert_eq!(
            choose_evcxr(&[]).unwrap_err(),
            "evcxr_jupyter is not installed"
        );
    }
}
