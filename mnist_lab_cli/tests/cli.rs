//! The `mnist-lab` program end to end, on a data folder the test writes itself.

use std::path::Path;
use std::process::{Command, Output};

use mnist_lab::data::{Mnist, write_idx_dir};

fn mnist_lab(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .args(args)
        .env_remove("MNIST_LAB_DATA")
        .env_remove("MNIST_LAB_DEVICE")
        .output()
        .expect("the mnist-lab binary should run")
}

fn data_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write_idx_dir(dir.path(), &Mnist::synthetic(300, 100, 11), true).unwrap();
    dir
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The one-paragraph error contract: non-zero exit, `error:` first, no backtrace.
fn assert_clean_failure(output: &Output) -> String {
    let stderr = text(&output.stderr);
    assert!(!output.status.success(), "should fail; stderr: {stderr}");
    assert!(stderr.starts_with("error:"), "{stderr}");
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{stderr}"
    );
    stderr
}

#[test]
fn train_writes_a_json_report() {
    let data = data_dir();
    let json = data.path().join("run.json");
    let output = mnist_lab(&[
        "train",
        "--model",
        "fc",
        "--epochs",
        "2",
        "--hidden-size",
        "32",
        "--lr",
        "0.05",
        "--data",
        data.path().to_str().unwrap(),
        "--device",
        "cpu",
        "--json",
        json.to_str().unwrap(),
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("training on the CPU"), "{stdout}");
    assert!(stdout.contains("Epoch [2/2] done"), "{stdout}");
    assert!(
        stdout.contains("Accuracy of the network on the 100 test images"),
        "{stdout}"
    );

    let report: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    assert_eq!(report["model"], "fc");
    assert_eq!(report["epochs"], 2);
    assert_eq!(report["steps"], 6);
    assert_eq!(report["batch_size"], 100);
    assert_eq!(report["learning_rate"], 0.05);
    assert_eq!(report["seed"], 42);
    assert_eq!(report["test_total"], 100);
    let cpu = if cfg!(feature = "flex") {
        "cpu (flex)"
    } else {
        "cpu (ndarray)"
    };
    assert_eq!(report["device"], cpu);
    assert_eq!(report["losses"].as_array().unwrap().len(), 6);
    assert_eq!(report["epoch_seconds"].as_array().unwrap().len(), 2);
    let accuracy = report["test_accuracy"].as_f64().unwrap();
    assert!((0.0..=100.0).contains(&accuracy));
    assert!(report["train_seconds"].as_f64().unwrap() > 0.0);
    assert!(report["images_per_second"].as_f64().unwrap() > 0.0);

    // The saved report draws again as a plot.
    let svg = data.path().join("again.svg");
    let output = mnist_lab(&["plot", path(&json), "--out", path(&svg)]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert!(std::fs::read_to_string(&svg).unwrap().contains("fc (")); // legend: fc (acc %)
}

#[test]
fn lecture_runs_every_model_and_writes_plot_and_report() {
    let data = data_dir();
    let out = data.path().join("out");
    let output = mnist_lab(&[
        "lecture",
        "--data",
        data.path().to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--max-steps",
        "2",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for name in ["fc x3", "fc-relu x3", "conv x3", "conv2 x3", "conv2 x10"] {
        assert!(
            stdout.contains(&format!("| {name}")),
            "{name} missing:\n{stdout}"
        );
    }
    let svg = std::fs::read_to_string(out.join("loss.svg")).unwrap();
    assert!(svg.contains("<svg") && svg.contains("conv2 x10"));
    let reports: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lecture.json")).unwrap()).unwrap();
    assert_eq!(reports.as_array().unwrap().len(), 5);
    assert_eq!(reports[4]["steps"], 2);
}

#[test]
fn a_missing_data_folder_is_one_clear_paragraph() {
    let output = mnist_lab(&["train", "--model", "fc", "--data", "/nonexistent/mnist"]);
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("MNIST data not found"), "{stderr}");
    assert!(stderr.contains("/nonexistent/mnist"), "{stderr}");
    assert!(stderr.contains("MNIST_LAB_DATA"), "{stderr}");
}

#[test]
fn a_corrupt_file_is_named() {
    let data = data_dir();
    let labels = data.path().join("t10k-labels-idx1-ubyte.gz");
    std::fs::write(&labels, [0x1f, 0x8b, 1, 2, 3, 4, 5]).unwrap();
    let output = mnist_lab(&["train", "--model", "fc", "--data", path(data.path())]);
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("t10k-labels-idx1-ubyte.gz"), "{stderr}");
}

#[test]
fn bad_settings_are_named() {
    let data = data_dir();
    let dir = path(data.path());
    for (flag, value, name) in [
        ("--batch-size", "0", "batch_size"),
        ("--epochs", "0", "num_epochs"),
        ("--lr", "0", "learning_rate"),
        ("--lr", "-0.5", "learning_rate"),
        ("--hidden-size", "0", "hidden_size"),
    ] {
        let output = mnist_lab(&["train", "--model", "fc", "--data", dir, flag, value]);
        let stderr = assert_clean_failure(&output);
        assert!(
            stderr.contains(&format!("`{name}`")),
            "{flag} {value}: {stderr}"
        );
    }
}

#[test]
fn unknown_devices_and_missing_gpus_are_explained() {
    let data = data_dir();
    let dir = path(data.path());
    let output = mnist_lab(&["train", "--model", "fc", "--data", dir, "--device", "tpu"]);
    assert!(!output.status.success());
    assert!(text(&output.stderr).contains("tpu"));

    if !cfg!(feature = "cuda") {
        let output = mnist_lab(&["train", "--model", "fc", "--data", dir, "--device", "cuda"]);
        let stderr = assert_clean_failure(&output);
        assert!(stderr.contains("CUDA is not available"), "{stderr}");
        assert!(stderr.contains("--device cpu"), "{stderr}");
    }
}

#[test]
fn a_diverging_run_stops_with_advice() {
    let data = data_dir();
    let output = mnist_lab(&[
        "train",
        "--model",
        "fc",
        "--data",
        path(data.path()),
        "--lr",
        "10",
        "--epochs",
        "20",
        "--hidden-size",
        "32",
    ]);
    let stderr = assert_clean_failure(&output);
    assert!(
        stderr.contains("training stopped: the loss became"),
        "{stderr}"
    );
    assert!(stderr.contains("learning_rate = 10"), "{stderr}");
}

#[test]
fn offline_without_data_says_where_it_looked_and_leaves_the_cache_empty() {
    let cache = tempfile::tempdir().unwrap();
    // A port with nothing listening: every mirror refuses the connection.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .args(["train", "--model", "fc", "--device", "cpu"])
        .env_remove("MNIST_LAB_DATA")
        .env("MNIST_LAB_CACHE", cache.path())
        .env("MNIST_LAB_MIRROR", format!("http://127.0.0.1:{port}/mnist"))
        .output()
        .unwrap();
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("MNIST data not found"), "{stderr}");
    assert!(stderr.contains("train-images-idx3-ubyte.gz"), "{stderr}");
    assert!(stderr.contains(path(cache.path())), "{stderr}");
    assert!(stderr.contains("MNIST_LAB_DATA"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(cache.path()).unwrap().collect();
    assert!(left.is_empty(), "the cache should stay empty: {left:?}");
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn evaluate_a_saved_model_gives_the_training_runs_accuracy() {
    let data = data_dir();
    let dir = tempfile::tempdir().unwrap();
    let (model, train_json, eval_json) = (
        dir.path().join("conv.bpk"),
        dir.path().join("train.json"),
        dir.path().join("eval.json"),
    );
    let d = path(data.path());
    let output = mnist_lab(&[
        "train",
        "--model",
        "conv",
        "--epochs",
        "1",
        "--hidden-size",
        "16",
        "--lr",
        "0.05",
        "--data",
        d,
        "--device",
        "cpu",
        "--json",
        path(&train_json),
        "--save",
        path(&model),
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(stdout.contains("Saved the trained model to"), "{stdout}");

    // The file keeps its settings: no --model, no --hidden-size.
    let output = mnist_lab(&[
        "evaluate",
        "--load",
        path(&model),
        "--data",
        d,
        "--device",
        "cpu",
        "--json",
        path(&eval_json),
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("Accuracy of the network on the 100 test images"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Confusion matrix (rows: true digit"),
        "{stdout}"
    );
    assert!(stdout.contains("Most confused"), "{stdout}");

    let json = |p: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
    };
    let (trained, evaluated) = (json(&train_json), json(&eval_json));
    assert_eq!(evaluated["test_accuracy"], trained["test_accuracy"]);
    let confusion = evaluated["confusion"].as_array().unwrap();
    assert_eq!(confusion.len(), 10);
    let total: u64 = confusion
        .iter()
        .flat_map(|row| row.as_array().unwrap())
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(total, 100);
    assert_eq!(
        evaluated["per_class_accuracy"].as_array().unwrap().len(),
        10
    );

    let evaluate = |file: &Path, extra: &[&str]| {
        let mut args = vec![
            "evaluate",
            "--load",
            path(file),
            "--data",
            d,
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        mnist_lab(&args)
    };
    // Settings that contradict the file's: a clean error that says what the file holds.
    let stderr = assert_clean_failure(&evaluate(&model, &["--model", "conv2"]));
    assert!(
        stderr.contains("holds a conv with hidden layers of 16, not what --model conv2 says"),
        "{stderr}"
    );

    // A notebook's file (weights alone): --model is needed, and says so.
    let device = mnist_lab::device::cpu();
    let weights = dir.path().join("notebook.bpk");
    let notebook_model = mnist_lab::models::ConvNet::new(16, 10, &device);
    mnist_lab::save::save(&notebook_model, &weights).unwrap();
    let stderr = assert_clean_failure(&evaluate(&weights, &[]));
    assert!(stderr.contains("without its settings"), "{stderr}");
    assert!(stderr.contains("--model"), "{stderr}");
    let output = evaluate(&weights, &["--model", "conv", "--hidden-size", "16"]);
    assert!(output.status.success(), "{}", text(&output.stderr));

    // The wrong model for the file: a clean error naming the layer.
    let stderr = assert_clean_failure(&evaluate(
        &weights,
        &["--model", "conv2", "--hidden-size", "16"],
    ));
    assert!(stderr.contains("does not fit this model"), "{stderr}");

    // Settings from another version of the program.
    let future = dir.path().join("future.bpk");
    let settings = serde_json::json!({"format": 2, "model": "conv", "hidden_size": 16});
    mnist_lab::save::save_with_settings(&notebook_model, &settings, &future).unwrap();
    let stderr = assert_clean_failure(&evaluate(&future, &[]));
    assert!(
        stderr.contains("another version of mnist-lab (format 2"),
        "{stderr}"
    );
}

#[test]
fn train_checks_the_save_path_before_training() {
    let data = data_dir();
    let missing = data.path().join("no-such-folder").join("model.bpk");
    let output = mnist_lab(&[
        "train",
        "--model",
        "fc",
        "--hidden-size",
        "16",
        "--data",
        path(data.path()),
        "--device",
        "cpu",
        "--save",
        path(&missing),
    ]);
    let stderr = assert_clean_failure(&output);
    assert!(stderr.contains("no-such-folder"), "{stderr}");
    assert!(
        !text(&output.stdout).contains("Epoch ["),
        "trained before checking"
    );
}

/// `mnist-lab train | head -1`: the reader goes away early. The program ends as other
/// command-line tools do, on SIGPIPE, with no panic message (and no abort).
#[cfg(unix)]
#[test]
fn a_closed_pipe_ends_the_program_quietly() {
    use std::os::unix::process::ExitStatusExt;
    use std::process::Stdio;

    let data = data_dir();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mnist-lab"))
        .args(["train", "--model", "fc", "--epochs", "50"])
        .args(["--hidden-size", "32", "--device", "cpu"])
        .args(["--data", path(data.path())])
        .env_remove("MNIST_LAB_DEVICE")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The reader closes its end before the program's first line.
    drop(child.stdout.take());
    let output = child.wait_with_output().unwrap();
    let stderr = text(&output.stderr);
    let status = output.status;
    assert_eq!(status.signal(), Some(13), "{status:?}: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}
