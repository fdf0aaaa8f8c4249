//! The notebook set-up: evcxr_jupyter, JupyterLab, the project's kernel and its warm build.
//!
//! Each step checks first and does nothing when already done, so `cargo xtask lab` is quick
//! the second time.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use crate::{Options, Project, Result, cargo};

/// The evcxr_jupyter versions the notebooks are tested with.
const EVCXR_VERSION: &str = "0.22";
/// What the project's Python environment needs, for pip.
const PYTHON_PACKAGES: [&str; 3] = ["jupyterlab>=4,<5", "nbclient>=0.10,<1", "nbformat>=5,<6"];
/// The kernel's name, as the notebooks' metadata give it.
pub const KERNEL_NAME: &str = "mnist_lab";

/// The programs the tasks run.
pub struct Tools {
    /// The Python that has JupyterLab and nbclient.
    pub python: PathBuf,
}

/// When the set-up builds the kernel's dependencies (and times a fresh kernel).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Warm {
    /// Every time (`cargo xtask setup`).
    Always,
    /// When no build is there yet (`cargo xtask lab`: quick the second time).
    IfNeeded,
    /// Never (the notebook runner builds on its first kernel anyway).
    Never,
}

/// Sets everything up, building the kernel's dependencies as `warm` says.
pub fn setup(project: &Project, warm: Warm) -> Result<Tools> {
    let started = Instant::now();
    let evcxr = ensure_evcxr()?;
    ensure_rust_src();
    let tools = setup_python(project)?;
    write_kernel(project, &tools.python, &evcxr)?;
    write_build_template(project)?;
    let built = project.evcxr_dir().join("slot-0/kernel/target").is_dir();
    if warm == Warm::IfNeeded && built {
        println!(
            "setup: the kernel's build is there (after changing mnist_lab or its dependencies, \
             `cargo xtask setup` rebuilds it ahead of the first cell)"
        );
    }
    if warm == Warm::Always || (warm == Warm::IfNeeded && !built) {
        warm_up(project, &tools)?;
        println!(
            "setup: done in {:.0} s. Kernel \"Rust (mnist_lab)\" in {}",
            started.elapsed().as_secs_f64(),
            project.jupyter_path().display()
        );
    }
    Ok(tools)
}

/// Finds evcxr_jupyter 0.22, installing it with cargo when missing.
fn ensure_evcxr() -> Result<PathBuf> {
    let installed = Command::new(cargo())
        .args(["install", "--list"])
        .output()
        .map(|out| String::from_utf8_lossy(&out.stdout).into_owned())
        .unwrap_or_default();
    let version = installed
        .lines()
        .find_map(|line| line.strip_prefix("evcxr_jupyter v"))
        .map(|rest| rest.trim_end_matches(':').to_string());
    let bin = cargo_home().join("bin").join(exe("evcxr_jupyter"));
    match version {
        Some(v) if v.starts_with(&format!("{EVCXR_VERSION}.")) && bin.exists() => {
            println!("setup: evcxr_jupyter {v} found");
            return Ok(bin);
        }
        Some(v) => {
            println!("setup: evcxr_jupyter {v} found, but the notebooks need {EVCXR_VERSION}.x")
        }
        None => {
            if let Some(found) = which("evcxr_jupyter") {
                // Not from `cargo install` (conda's `evcxr` package, for one): use it as it is.
                println!("setup: evcxr_jupyter found at {}", found.display());
                return Ok(found);
            }
        }
    }
    println!(
        "setup: installing evcxr_jupyter {EVCXR_VERSION} with `cargo install` (once; about 10 \
         minutes on 2 cores)"
    );
    let status = Command::new(cargo())
        .args(["install", "evcxr_jupyter", "--locked", "--version"])
        .arg(format!("~{EVCXR_VERSION}"))
        .status()
        .map_err(|e| format!("could not run cargo install: {e}"))?;
    if !status.success() || !bin.exists() {
        return Err(format!(
            "`cargo install evcxr_jupyter --version ~{EVCXR_VERSION}` failed; see its output above"
        ));
    }
    Ok(bin)
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
        println!("setup: installing JupyterLab and nbclient into .venv (about 250 MB)");
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
        .args(["-c", "import jupyterlab, nbclient, nbformat"])
        .output()
        .is_ok_and(|out| out.status.success())
}

/// Writes the kernelspec into the project's own Jupyter folder (`.lab/jupyter`), which
/// `cargo xtask lab` adds to JUPYTER_PATH: the user's own kernels stay as they are.
fn write_kernel(project: &Project, python: &Path, evcxr: &Path) -> Result {
    let dir = project.jupyter_path().join("kernels").join(KERNEL_NAME);
    mkdir(&dir)?;
    let path = |p: &Path| json_string(&p.display().to_string());
    let evcxr_dir = project.evcxr_dir();
    let kernel = format!(
        r#"{{
 "argv": [{python}, {launcher}, "{{connection_file}}"],
 "display_name": "Rust (mnist_lab)",
 "language": "rust",
 "interrupt_mode": "message",
 "env": {{
  "MNIST_LAB_EVCXR_DIR": {evcxr_dir},
  "MNIST_LAB_EVCXR_JUPYTER": {evcxr},
  "EVCXR_CONFIG_DIR": {config},
  "JUPYTER_PATH": {jupyter}
 }}
}}
"#,
        python = path(python),
        launcher = path(&project.scripts().join("evcxr_kernel.py")),
        evcxr_dir = path(&evcxr_dir),
        evcxr = path(evcxr),
        config = path(&evcxr_dir.join("config")),
        jupyter = path(&project.jupyter_path()),
    );
    write(&dir.join("kernel.json"), &kernel)?;
    mkdir(&evcxr_dir.join("config"))?;
    if !dir.join("logo-64x64.png").exists() {
        // evcxr_jupyter --install writes its Rust logos; copy them next to our kernel.json.
        let scratch = project.lab().join("evcxr-install");
        let _ = Command::new(evcxr)
            .arg("--install")
            .env("JUPYTER_PATH", &scratch)
            .output();
        for logo in ["logo-32x32.png", "logo-64x64.png", "logo-LICENSE.md"] {
            let _ = std::fs::copy(scratch.join("kernels/rust").join(logo), dir.join(logo));
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    println!(
        "setup: kernel \"Rust (mnist_lab)\" written to {}",
        dir.display()
    );
    Ok(())
}

/// The Cargo workspace each build slot starts from (see scripts/evcxr_kernel.py).
fn write_build_template(project: &Project) -> Result {
    let template = project.evcxr_dir().join("template");
    mkdir(&template.join("pin"))?;
    write(&template.join("Cargo.toml"), SLOT_MANIFEST)?;
    let crate_dir = project.root.join("mnist_lab");
    write(
        &template.join("pin").join("Cargo.toml"),
        &format!(
            "# Keeps mnist_lab and its dependencies in the slot's Cargo.lock at the workspace's\n\
             # versions: evcxr starts each kernel with a cell crate that has no dependencies,\n\
             # which would otherwise empty the lock (and the next `:dep` would resolve afresh,\n\
             # online, perhaps to newer versions that need building). Never built. `cfg(any())`\n\
             # is false on every platform: Cargo locks the dependency all the same, while\n\
             # rust-analyzer (which evcxr runs on every cell) filters it out and so does not\n\
             # analyse Burn at kernel start, only once the notebook's `:dep` asks for it.\n\
             [package]\nname = \"pin\"\nversion = \"0.0.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\npath = \"lib.rs\"\n\n[target.'cfg(any())'.dependencies]\nmnist_lab = {{ path = {} }}\n",
            json_string(&crate_dir.display().to_string())
        ),
    )?;
    write(&template.join("pin").join("lib.rs"), "")?;
    // The workspace's tested versions of Burn and the rest.
    std::fs::copy(project.root.join("Cargo.lock"), template.join("Cargo.lock"))
        .map_err(|e| format!("could not copy Cargo.lock: {e}"))?;
    Ok(())
}

/// The root manifest of a build slot. The cell crate (evcxr's `ctx`) is a member, so this
/// profile applies and the one evcxr writes is ignored.
const SLOT_MANIFEST: &str = r#"# Written by `cargo xtask setup`; copied into each evcxr build slot (.lab/evcxr/slot-N).
[workspace]
members = ["kernel", "pin"]
resolver = "3"

# The cells: evcxr's own profile, at opt-level 0 so a cell compiles in about a second.
[profile.dev]
opt-level = 0
debug = false
strip = "debuginfo"
rpath = true
lto = false
debug-assertions = true
codegen-units = 16
panic = "unwind"
incremental = true
overflow-checks = true

# Burn, mnist_lab and every other dependency: built once, as fast as a release build.
[profile.dev.package."*"]
opt-level = 3
debug-assertions = false
overflow-checks = false
"#;

/// Builds slot-0 through a real kernel (so the build is exactly the one a notebook gets),
/// then times the first cell of a fresh kernel.
fn warm_up(project: &Project, tools: &Tools) -> Result {
    println!(
        "setup: building the kernel's dependencies (Burn, mnist_lab) in {} (the first time: \
         several minutes)",
        project.evcxr_dir().join("slot-0").display()
    );
    let mut command = crate::notebooks::runner(project, tools);
    command.arg("--warm-up").arg(
        project
            .notebooks()
            .join("nonlinearities_and_convolutions.ipynb"),
    );
    run(&mut command, "the warm-up kernel")
}

/// Opens JupyterLab on `notebooks/`, with the project's kernel.
pub fn open_lab(project: &Project, tools: &Tools, options: &Options) -> Result {
    let mut command = Command::new(&tools.python);
    command
        .args(["-m", "jupyterlab"])
        .arg(format!(
            "--ServerApp.root_dir={}",
            project.notebooks().display()
        ))
        .env("JUPYTER_PATH", crate::notebooks::jupyter_path(project));
    if running_as_root() {
        // JupyterLab refuses root without this (containers, CI images).
        command.arg("--allow-root");
    }
    if let Some(data) = &options.data {
        command.env("MNIST_LAB_DATA", absolute(data)?);
    }
    println!(
        "lab: opening JupyterLab on notebooks/ (kernel \"Rust (mnist_lab)\"); stop it with Ctrl+C"
    );
    run(&mut command, "jupyter lab")
}

fn running_as_root() -> bool {
    cfg!(unix)
        && Command::new("id")
            .arg("-u")
            .output()
            .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
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

fn mkdir(dir: &Path) -> Result {
    std::fs::create_dir_all(dir).map_err(|e| format!("could not create {}: {e}", dir.display()))
}

fn write(path: &Path, text: &str) -> Result {
    std::fs::write(path, text).map_err(|e| format!("could not write {}: {e}", path.display()))
}

fn json_string(s: &str) -> String {
    let mut out = String::from('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
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
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(exe(name)))
        .find(|candidate| candidate.is_file())
}
