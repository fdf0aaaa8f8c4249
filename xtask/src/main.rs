//! `cargo xtask`: the project's tasks, in Rust so that they run wherever Cargo does.
//!
//! - `cargo xtask lab`: set up the notebooks (the first time) and open JupyterLab on them.
//! - `cargo xtask setup`: the same set-up, without opening anything (for CI).
//! - `cargo xtask test`: `cargo test --workspace`, then the kernel proxy's tests and every
//!   notebook executed and checked.
//! - `cargo xtask notebooks`: only the notebooks.
//! - `cargo xtask strip`: removes outputs from the notebooks, before a commit.
//! - `cargo xtask cuda-llvm`: the LLVM that `--features cuda` links, from PyPI
//!   (`cuda_llvm`); `lab`/`setup --features cuda` run it first.
//!
//! Everything the set-up creates lives in the project: `.venv/` (JupyterLab, nbclient) and
//! `.lab/` (the kernel, its build folders, executed notebooks). Delete both to start over.
//!
//! xtask finds (or installs) evcxr_jupyter, rust-src and the Python with JupyterLab
//! (`setup`), then hands over to the Python package `scripts/labkit` for the rest: the
//! kernelspec, the kernel's build, the notebooks, the kernel proxy's tests, JupyterLab
//! (`labkit`).

mod cuda_llvm;
mod labkit;
mod setup;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

const USAGE: &str = "\
usage: cargo xtask <task> [options]

tasks:
  lab        set up the notebooks (first time: evcxr_jupyter, JupyterLab, a warm kernel)
             and open JupyterLab on notebooks/
  setup      the same set-up, without opening anything (CI)
  test       cargo test --workspace, then test the kernel proxy and execute and check
             every notebook
  notebooks  execute and check the notebooks only [NOTEBOOK.ipynb ...]
  strip      remove outputs from the notebooks (they are committed without)
  cuda-llvm  install the LLVM that `--features cuda` links from PyPI into .venv and seed
             the bundler's folder with it, so that the cuda build downloads nothing
             (lab/setup with `--features cuda` run it first)

options:
  --data DIR         MNIST folder for the notebooks (sets MNIST_LAB_DATA) [default: the
                     MNIST_LAB_DATA already set, else the crate's download cache]
  --max-steps N      training steps per run in test/notebooks [default: 60]
  --full             train every run in full in test/notebooks (no step limit)
  --skip-notebooks   test: run cargo test only (no kernel proxy tests, no notebooks), and
                     say so
  --no-open          lab: set up only, like `setup`
  --features LIST    lab/setup: build the notebook kernel's mnist_lab with GPU features
                     (wgpu, cuda; comma-separated); without it, the CPU kernel.
                     test: build `cargo test`'s mnist_lab and mnist_lab_cli with them too
                     (wgpu runs mnist_lab_cli's tests/wgpu.rs, which needs a wgpu adapter:
                     CI uses lavapipe); the notebooks run on the kernel that set-up built
";

/// Where things are.
pub struct Project {
    /// The workspace root.
    pub root: PathBuf,
}

impl Project {
    fn find() -> Project {
        let xtask = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = xtask
            .parent()
            .expect("xtask should sit in the workspace root");
        Project {
            root: root.canonicalize().unwrap_or_else(|_| root.to_path_buf()),
        }
    }

    /// `.lab/`: the kernel, its build folders, executed notebooks.
    pub fn lab(&self) -> PathBuf {
        self.root.join(".lab")
    }

    /// The notebooks.
    pub fn notebooks(&self) -> PathBuf {
        self.root.join("notebooks")
    }

    /// The Python package with the kernel tooling (`python scripts/labkit COMMAND`).
    pub fn labkit(&self) -> PathBuf {
        self.root.join("scripts").join("labkit")
    }
}

/// Options shared by the tasks.
#[derive(Default)]
pub struct Options {
    pub data: Option<PathBuf>,
    pub max_steps: Option<usize>,
    pub full: bool,
    pub skip_notebooks: bool,
    pub no_open: bool,
    /// mnist_lab features for the notebook kernel (`lab`, `setup`), or for `cargo test`
    /// (`test`).
    pub features: Vec<String>,
    pub files: Vec<PathBuf>,
}

type Result<T = ()> = std::result::Result<T, String>;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> Result {
    let Some((task, rest)) = args.split_first() else {
        print!("{USAGE}");
        return Ok(());
    };
    let options = parse(rest)?;
    let project = Project::find();
    if matches!(task.as_str(), "lab" | "setup") && options.features.iter().any(|f| f == "cuda") {
        cuda_llvm::run(&project)?;
    }
    match task.as_str() {
        "lab" => {
            let tools = setup::setup_with(&project, setup::Warm::IfNeeded, &options.features)?;
            if options.no_open {
                return Ok(());
            }
            labkit::lab(&project, &tools, &options)
        }
        "setup" => setup::setup_with(&project, setup::Warm::Always, &options.features).map(|_| ()),
        "test" => test(&project, &options),
        "cuda-llvm" => cuda_llvm::run(&project),
        "notebooks" => {
            let tools = setup::setup(&project, setup::Warm::Never)?;
            labkit::notebooks(&project, &tools, &options)
        }
        "strip" => {
            let tools = setup::setup_python(&project)?;
            labkit::strip(&project, &tools, &options)
        }
        "help" | "--help" | "-h" => {
            print!("{USAGE}");
            Ok(())
        }
        other => Err(format!("unknown task `{other}`\n\n{USAGE}")),
    }
}

fn parse(args: &[String]) -> Result<Options> {
    let mut options = Options::default();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let mut value = |name: &str| {
            args.next()
                .cloned()
                .ok_or_else(|| format!("{name} needs a value"))
        };
        match arg.as_str() {
            "--data" => options.data = Some(PathBuf::from(value("--data")?)),
            "--max-steps" => {
                let n = value("--max-steps")?;
                let n = n.parse().ok().filter(|&n: &usize| n > 0).ok_or_else(|| {
                    format!("--max-steps takes a whole number above 0, not `{n}`")
                })?;
                options.max_steps = Some(n);
            }
            "--full" => options.full = true,
            "--skip-notebooks" => options.skip_notebooks = true,
            "--no-open" => options.no_open = true,
            "--features" => {
                let list = value("--features")?;
                options.features = list
                    .split([',', ' '])
                    .filter(|f| !f.is_empty())
                    .map(str::to_string)
                    .collect();
            }
            flag if flag.starts_with("--") => return Err(format!("unknown option `{flag}`")),
            file => options.files.push(PathBuf::from(file)),
        }
    }
    Ok(options)
}

/// `cargo test --workspace` (with `--features`' backends), then, unless
/// `--skip-notebooks` says otherwise, the kernel proxy's tests on a real kernel and the
/// notebooks.
fn test(project: &Project, options: &Options) -> Result {
    let features = cargo_features(&options.features);
    println!("== cargo test --workspace {}", features.join(" "));
    let status = Command::new(cargo())
        .args(["test", "--workspace"])
        .args(&features)
        .current_dir(&project.root)
        .status()
        .map_err(|e| format!("could not run cargo: {e}"))?;
    if !status.success() {
        return Err("cargo test --workspace failed".into());
    }
    if options.skip_notebooks {
        println!(
            "notebooks: SKIPPED, as asked (--skip-notebooks); neither the notebooks nor the \
             kernel proxy's tests were run"
        );
        return Ok(());
    }
    let tools = setup::setup(project, setup::Warm::Never)?;
    println!("\n== the kernel proxy (stop button, live displays)");
    let proxy = labkit::test(project, &tools, options);
    println!("\n== notebooks");
    let notebooks = labkit::notebooks(project, &tools, options);
    // Both run, so that one failing does not hide what the other finds.
    match (proxy, notebooks) {
        (Err(a), Err(b)) => Err(format!("{a}; {b}")),
        (proxy, notebooks) => proxy.and(notebooks),
    }
}

/// Cargo's arguments for the backends `features`: none, or `--features mnist_lab_cli/A,...`
/// (each of the tools crate's backend features turns on mnist_lab's).
fn cargo_features(features: &[String]) -> Vec<String> {
    if features.is_empty() {
        return Vec::new();
    }
    let list: Vec<String> = features
        .iter()
        .map(|f| format!("mnist_lab_cli/{f}"))
        .collect();
    vec!["--features".into(), list.join(",")]
}

/// The cargo that runs us, so that the same toolchain builds everything.
pub fn cargo() -> PathBuf {
    std::env::var_os("CARGO")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("cargo"))
}
