//! Every `mnist-lab` command that writes files checks its output paths before any work:
//! an unwritable path fails at once, naming the path, and nothing is trained.

use std::path::Path;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use mnist_lab::data::{Mnist, write_idx_dir};

/// The user the read-only case runs `mnist-lab` as when the tests run as root (root may write
/// into a read-only folder): Debian's unprivileged `nobody`, through util-linux's `setpriv`.
const UNPRIVILEGED: [&str; 4] = ["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"];

/// Runs `mnist-lab` with `args` (as `nobody` when `unprivileged`).
fn mnist_lab(args: &[&str], unprivileged: bool) -> Output {
    let program = env!("CARGO_BIN_EXE_mnist-lab");
    let mut command = if unprivileged {
        let mut setpriv = Command::new("setpriv");
        setpriv.args(UNPRIVILEGED).arg(program);
        setpriv
    } else {
        Command::new(program)
    };
    command
        .args(args)
        .env_remove("MNIST_LAB_DATA")
        .env_remove("MNIST_LAB_DEVICE")
        .output()
        .expect("the mnist-lab binary should run (and setpriv, for the unprivileged case)")
}

/// Asserts a clean failure that names `path`, with nothing trained: the command checked its
/// output before it read the data or built a model.
fn assert_refused_at_once(args: &[&str], path: &Path) {
    assert_refused(args, path, false)
}

/// [`assert_refused_at_once`], run as `nobody` when `unprivileged`.
fn assert_refused(args: &[&str], path: &Path, unprivileged: bool) {
    let output = mnist_lab(args, unprivileged);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} should fail: {stdout}");
    assert!(stderr.starts_with("error: cannot write"), "{stderr}");
    assert!(stderr.contains(&path.display().to_string()), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(
        !stdout.contains("Epoch") && !stdout.contains("Data:"),
        "{args:?} started work before checking its output: {stdout}"
    );
}

/// Every output-writing command, with `out` (a file or a folder, as the command takes).
fn commands<'a>(data: &'a str, out: &'a str, report: &'a str) -> Vec<Vec<&'a str>> {
    vec![
        vec!["train", "--model", "fc", "--data", data, "--json", out],
        vec!["lecture", "--data", data, "--out", out],
        vec!["plot", report, "--out", out],
        vec!["bench", "--quick", "--models", "fc", "--json", out],
    ]
}

#[test]
fn a_missing_folder_is_reported_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    write_idx_dir(dir.path(), &Mnist::synthetic(200, 100, 5), true).unwrap();
    let data = dir.path().to_str().unwrap();
    let report = dir.path().join("run.json");
    std::fs::write(&report, "{}").unwrap();
    let report = report.to_str().unwrap();
    // A folder that cannot be created: its parent is a file.
    let blocked = dir.path().join("run.json/out");
    let out = blocked.to_str().unwrap();
    for args in commands(data, out, report) {
        assert_refused_at_once(&args, &blocked);
    }
    // And a file in a folder that does not exist.
    let missing = dir.path().join("no/such/folder/out.json");
    for args in commands(data, missing.to_str().unwrap(), report) {
        if args[0] != "lecture" {
            assert_refused_at_once(&args, &missing);
        }
    }
}

/// Root may write into a read-only folder, so as root (CI) the program runs as `nobody`; the
/// test folder is then opened to every user, except the read-only folder itself.
#[cfg(unix)]
#[test]
fn a_read_only_folder_is_reported_before_any_work() {
    use std::os::unix::fs::PermissionsExt;
    let unprivileged = is_root();
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    write_idx_dir(dir.path(), &Mnist::synthetic(200, 100, 5), true).unwrap();
    let locked = dir.path().join("locked");
    std::fs::create_dir(&locked).unwrap();
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o555)).unwrap();
    let report = dir.path().join("run.json");
    std::fs::write(&report, "{}").unwrap();
    let out = locked.join("out.json");
    for args in commands(
        dir.path().to_str().unwrap(),
        out.to_str().unwrap(),
        report.to_str().unwrap(),
    ) {
        assert_refused(&args, &out, unprivileged);
    }
    std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim() == "0")
}

/// The first Ctrl+C (SIGINT) stops a run after its step and still writes the report.
#[cfg(unix)]
#[test]
fn ctrl_c_stops_the_run_and_keeps_its_results() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;

    let dir = tempfile::tempdir().unwrap();
    write_idx_dir(dir.path(), &Mnist::synthetic(2000, 100, 5), true).unwrap();
    let json = dir.path().join("run.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .args([
            "train",
            "--model",
            "fc",
            "--hidden-size",
            "32",
            "--epochs",
            "1000",
        ])
        .arg("--data")
        .arg(dir.path())
        .arg("--json")
        .arg(&json)
        .args(["--device", "cpu"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until training runs (its first epoch line), then press Ctrl+C once.
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let started = Instant::now();
    for line in lines.by_ref() {
        if line.unwrap().starts_with("Epoch [1/1000] done") {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "no epoch line");
    }
    let pressed = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(pressed.success());
    let rest: Vec<String> = lines.map(|l| l.unwrap()).collect();
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    assert!(stderr.contains("Stopping after this step"), "{stderr}");
    assert!(
        rest.iter().any(|l| l.starts_with("Stopped at step")),
        "{rest:?}"
    );
    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stopped_at = report["stopped_at"].as_u64().expect("stopped_at is set");
    assert_eq!(report["steps"].as_u64(), Some(stopped_at));
    assert!(stopped_at < 1000 * 20, "it stopped long before the end");
    assert!(
        report["test_accuracy"].is_number(),
        "evaluated after the stop"
    );
}
