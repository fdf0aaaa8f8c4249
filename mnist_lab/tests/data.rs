//! The data pipeline on small IDX files built in temporary folders: reading, every kind of
//! damaged file, the batcher, the synthetic data, and a no-panic property test for the
//! parsers. No network, no real MNIST needed.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use burn::data::dataloader::batcher::Batcher;
use burn::data::dataset::Dataset;
use mnist_lab::Error;
use mnist_lab::data::{
    FILES, IMAGE_PIXELS, Mnist, MnistBatcher, MnistItem, Split, TEST_IMAGES, TEST_LABELS,
    TRAIN_IMAGES, TRAIN_LABELS, idx_images_bytes, idx_labels_bytes, parse_images, parse_labels,
    write_idx_dir,
};

/// A small data set: 30 training and 10 test images.
fn small() -> Mnist {
    Mnist::synthetic(30, 10, 1)
}

/// A temporary folder holding `small()` as IDX files.
fn folder(gzip: bool) -> (tempfile::TempDir, Mnist) {
    let dir = tempfile::tempdir().unwrap();
    let data = small();
    write_idx_dir(dir.path(), &data, gzip).unwrap();
    (dir, data)
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(bytes).unwrap();
    encoder.finish().unwrap()
}

fn assert_same(a: &Mnist, b: &Mnist) {
    assert_eq!(a.train.images(), b.train.images());
    assert_eq!(a.train.labels(), b.train.labels());
    assert_eq!(a.test.images(), b.test.images());
    assert_eq!(a.test.labels(), b.test.labels());
}

/// Replaces `name` in `dir` with `bytes` and returns the error from reading the folder.
fn error_with(dir: &Path, name: &str, bytes: &[u8]) -> Error {
    std::fs::write(dir.join(name), bytes).unwrap();
    Mnist::from_dir(dir).expect_err("the damaged folder should not load")
}

/// Asserts that `error` is a `BadIdx` for the file `name` whose message holds every word.
fn assert_bad_idx(error: &Error, name: &str, words: &[&str]) {
    let message = error.to_string();
    match error {
        Error::BadIdx { path, .. } => assert!(path.ends_with(name), "{path:?} is not {name}"),
        other => panic!("expected BadIdx for {name}, got {other:?}"),
    }
    assert!(message.contains(name), "{message:?} does not name {name}");
    for word in words {
        assert!(
            message.contains(word),
            "{message:?} does not contain {word:?}"
        );
    }
}

#[test]
fn gzip_folder_round_trips() {
    let (dir, data) = folder(true);
    for name in FILES {
        assert!(dir.path().join(name).is_file(), "{name} was not written");
    }
    let back = Mnist::from_dir(dir.path()).unwrap();
    assert_same(&back, &data);
    assert_eq!(back.source, dir.path().display().to_string());
    assert_eq!((back.train.len(), back.test.len()), (30, 10));
}

#[test]
fn raw_folder_round_trips() {
    let (dir, data) = folder(false);
    assert!(dir.path().join("train-images-idx3-ubyte").is_file());
    assert!(!dir.path().join(TRAIN_IMAGES).exists());
    let back = Mnist::from_dir(dir.path()).unwrap();
    assert_same(&back, &data);
}

#[test]
fn gzip_is_recognised_by_content_not_name() {
    // A raw file under the .gz name, and a compressed one without it.
    let (dir, data) = folder(false);
    let path = dir.path();
    std::fs::rename(
        path.join("train-labels-idx1-ubyte"),
        path.join(TRAIN_LABELS),
    )
    .unwrap();
    let raw = std::fs::read(path.join("t10k-images-idx3-ubyte")).unwrap();
    std::fs::write(path.join("t10k-images-idx3-ubyte"), gzip(&raw)).unwrap();
    assert_same(&Mnist::from_dir(path).unwrap(), &data);
}

#[test]
fn kaggle_and_torchvision_layouts_are_found() {
    let (dir, data) = folder(false);
    let path = dir.path();
    std::fs::rename(
        path.join("train-images-idx3-ubyte"),
        path.join("train-images.idx3-ubyte"),
    )
    .unwrap();
    assert_same(&Mnist::from_dir(path).unwrap(), &data);

    let root = tempfile::tempdir().unwrap();
    write_idx_dir(&root.path().join("MNIST").join("raw"), &data, true).unwrap();
    assert_same(&Mnist::from_dir(root.path()).unwrap(), &data);
}

#[test]
fn bad_magic_is_reported() {
    let (dir, data) = folder(true);
    let mut bytes = idx_images_bytes(data.train.images(), data.train.len());
    bytes[..4].copy_from_slice(&1234u32.to_be_bytes());
    let error = error_with(dir.path(), TRAIN_IMAGES, &gzip(&bytes));
    assert_bad_idx(&error, TRAIN_IMAGES, &["magic number 1234", "2051"]);
}

#[test]
fn swapped_files_are_reported() {
    let (dir, data) = folder(true);
    let labels = gzip(&idx_labels_bytes(data.test.labels()));
    let error = error_with(dir.path(), TEST_IMAGES, &labels);
    assert_bad_idx(&error, TEST_IMAGES, &["magic number 2049", "swapped"]);
}

#[test]
fn truncated_files_are_reported() {
    let (dir, data) = folder(false);
    let bytes = idx_images_bytes(data.train.images(), data.train.len());
    let error = error_with(
        dir.path(),
        "train-images-idx3-ubyte",
        &bytes[..bytes.len() - 100],
    );
    assert_bad_idx(
        &error,
        "train-images-idx3-ubyte",
        &["truncated", "30 images", "23420 bytes"],
    );

    let error = error_with(dir.path(), "train-images-idx3-ubyte", &bytes[..10]);
    assert_bad_idx(
        &error,
        "train-images-idx3-ubyte",
        &["truncated", "10 bytes", "header"],
    );

    let error = error_with(dir.path(), "train-images-idx3-ubyte", &[]);
    assert_bad_idx(&error, "train-images-idx3-ubyte", &["truncated", "0 bytes"]);
}

#[test]
fn cut_gzip_download_is_reported() {
    let (dir, data) = folder(true);
    let bytes = gzip(&idx_labels_bytes(data.train.labels()));
    let error = error_with(dir.path(), TRAIN_LABELS, &bytes[..bytes.len() / 2]);
    assert_bad_idx(&error, TRAIN_LABELS, &["gzip"]);
}

#[test]
fn too_long_files_are_reported() {
    let (dir, data) = folder(false);
    let mut bytes = idx_labels_bytes(data.test.labels());
    bytes.extend_from_slice(&[1, 2, 3]);
    let raw = "t10k-labels-idx1-ubyte";
    let error = error_with(dir.path(), raw, &bytes);
    assert_bad_idx(&error, raw, &["too long", "10 labels", "3 more bytes"]);

    std::fs::remove_file(dir.path().join(raw)).unwrap();
    let error = error_with(dir.path(), TEST_LABELS, &gzip(&bytes));
    assert_bad_idx(&error, TEST_LABELS, &["too long", "10 labels", "more data"]);
}

#[test]
fn wrong_dimensions_are_reported() {
    let (dir, _) = folder(true);
    let mut bytes = idx_images_bytes(&vec![0u8; 5 * 27 * 28], 5);
    bytes[8..12].copy_from_slice(&27u32.to_be_bytes());
    let error = error_with(dir.path(), TRAIN_IMAGES, &gzip(&bytes));
    assert_bad_idx(&error, TRAIN_IMAGES, &["27 x 28", "28 x 28"]);
}

#[test]
fn count_mismatch_names_both_files() {
    let (dir, data) = folder(true);
    let labels = gzip(&idx_labels_bytes(&data.train.labels()[..29]));
    let error = error_with(dir.path(), TRAIN_LABELS, &labels);
    assert_bad_idx(
        &error,
        TRAIN_LABELS,
        &[TRAIN_IMAGES, "29 labels", "30 images"],
    );
}

#[test]
fn corrupt_gzip_is_reported() {
    let (dir, _) = folder(true);
    let mut bytes = vec![0x1f, 0x8b];
    bytes.extend_from_slice(b"this is not a deflate stream at all, just junk");
    let error = error_with(dir.path(), TEST_IMAGES, &bytes);
    assert_bad_idx(&error, TEST_IMAGES, &["corrupt gzip stream"]);
}

#[test]
fn out_of_range_label_is_reported_with_its_index() {
    let (dir, data) = folder(true);
    let mut labels = data.test.labels().to_vec();
    labels[7] = 11;
    let error = error_with(dir.path(), TEST_LABELS, &gzip(&idx_labels_bytes(&labels)));
    assert_bad_idx(&error, TEST_LABELS, &["index 7", "is 11", "0 to 9"]);
}

#[test]
fn missing_folder_lists_every_file_and_the_folder() {
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("no-such-folder");
    let error = Mnist::from_dir(&dir).unwrap_err();
    let message = error.to_string();
    match &error {
        Error::DataNotFound {
            missing, looked_in, ..
        } => {
            assert_eq!(missing, &FILES.map(String::from).to_vec());
            assert_eq!(looked_in, &vec![dir.clone()]);
        }
        other => panic!("expected DataNotFound, got {other:?}"),
    }
    for name in FILES {
        assert!(message.contains(name), "{message:?} does not name {name}");
    }
    assert!(message.contains(&dir.display().to_string()), "{message:?}");
    assert!(message.contains("MNIST_LAB_DATA"), "{message:?}");
}

#[test]
fn missing_file_is_named() {
    let (dir, _) = folder(true);
    std::fs::remove_file(dir.path().join(TEST_LABELS)).unwrap();
    let error = Mnist::from_dir(dir.path()).unwrap_err();
    match &error {
        Error::DataNotFound { missing, .. } => assert_eq!(missing, &vec![TEST_LABELS.to_string()]),
        other => panic!("expected DataNotFound, got {other:?}"),
    }
    let message = error.to_string();
    assert!(
        message.contains("missing t10k-labels-idx1-ubyte.gz"),
        "{message:?}"
    );
    assert!(!message.contains(TRAIN_IMAGES), "{message:?}");
}

#[test]
fn unreadable_file_is_an_io_error() {
    // A folder where a file should be is skipped as missing; a dangling symbolic link is
    // not a file either. So check the reader directly on a folder.
    let dir = tempfile::tempdir().unwrap();
    let error = mnist_lab::data::read_images(dir.path()).unwrap_err();
    assert!(matches!(error, Error::Io { .. }), "{error:?}");
    assert!(
        error
            .to_string()
            .contains(&dir.path().display().to_string())
    );
}

#[test]
fn batcher_builds_scaled_tensors() {
    // The CPU: Burn's default device in a wgpu build is the GPU's.
    let device = mnist_lab::device::cpu();
    let mut white = MnistItem {
        image: [255; IMAGE_PIXELS],
        label: 9,
    };
    white.image[0] = 0;
    white.image[1] = 51;
    let data = small();
    let items = vec![
        white,
        data.train.get(0).unwrap(),
        data.train.get(1).unwrap(),
    ];
    let batch = MnistBatcher.batch(items, &device);
    assert_eq!(batch.images.dims(), [3, 1, 28, 28]);
    assert_eq!(batch.targets.dims(), [3]);

    let pixels: Vec<f32> = batch
        .images
        .clone()
        .into_data()
        .try_to_vec::<f32>()
        .unwrap();
    assert_eq!(pixels.len(), 3 * IMAGE_PIXELS);
    assert!(pixels.iter().all(|p| (0.0..=1.0).contains(p)));
    assert_eq!(pixels[0], 0.0);
    assert!((pixels[1] - 0.2).abs() < 1e-6);
    assert_eq!(pixels[2], 1.0, "pixel 255 should be exactly 1.0");
    let second = &pixels[IMAGE_PIXELS..2 * IMAGE_PIXELS];
    for (scaled, raw) in second.iter().zip(data.train.image(0)) {
        assert_eq!(*scaled, f32::from(*raw) / 255.0);
    }

    let targets: Vec<i64> = batch
        .targets
        .into_data()
        .convert::<i64>()
        .try_to_vec::<i64>()
        .unwrap();
    assert_eq!(
        targets,
        vec![
            9,
            i64::from(data.train.label(0)),
            i64::from(data.train.label(1))
        ]
    );
}

#[test]
fn split_is_a_dataset() {
    let data = small();
    assert_eq!(Dataset::len(&data.train), 30);
    let item = data.train.get(4).unwrap();
    assert_eq!(&item.image[..], data.train.image(4));
    assert_eq!(item.label, data.train.label(4));
    let first = data.train.take(5);
    assert_eq!(first.len(), 5);
    assert_eq!(first.images(), &data.train.images()[..5 * IMAGE_PIXELS]);
    assert!(data.train.take(0).is_empty());
    assert_eq!(data.train.take(1000).len(), 30);
    // Debug is a summary, not 23,520 pixel values.
    assert!(format!("{data:?}").len() < 500);
}

#[test]
fn split_new_checks_its_input() {
    assert!(Split::new(vec![0; 2 * IMAGE_PIXELS], vec![0, 9]).is_ok());
    let error = Split::new(vec![0; IMAGE_PIXELS + 1], vec![1]).unwrap_err();
    assert!(error.to_string().contains("785 bytes"), "{error}");
    let error = Split::new(vec![0; 2 * IMAGE_PIXELS], vec![1, 10]).unwrap_err();
    assert!(error.to_string().contains("index 1 is 10"), "{error}");
}

#[test]
fn synthetic_data_is_deterministic_and_balanced() {
    let a = Mnist::synthetic(100, 50, 42);
    let b = Mnist::synthetic(100, 50, 42);
    let c = Mnist::synthetic(100, 50, 43);
    assert_same(&a, &b);
    assert_ne!(a.train.images(), c.train.images());
    assert_eq!(a.train.class_counts(), [10; 10]);
    assert_eq!(a.test.class_counts(), [5; 10]);
    assert_eq!(a.source, "synthetic");
    assert!(a.train.images().iter().any(|&p| p > 200));
    let empty = Mnist::synthetic(0, 0, 1);
    assert!(empty.train.is_empty() && empty.test.is_empty());
}

/// Plain softmax regression, written out: the synthetic data must be learnable by a
/// linear model at lr 0.05 in a few dozen steps, but not solved by a single step.
#[test]
fn synthetic_data_is_learnable_but_not_trivial() {
    let data = Mnist::synthetic(2000, 500, 7);
    let mut weights = vec![0f32; 10 * IMAGE_PIXELS];
    let mut bias = [0f32; 10];
    let batch = 64;
    let lr = 0.05;
    let accuracy = |weights: &[f32], bias: &[f32; 10]| {
        let correct = (0..data.test.len())
            .filter(|&i| {
                let logits = logits(weights, bias, data.test.image(i));
                argmax(&logits) == usize::from(data.test.label(i))
            })
            .count();
        100.0 * correct as f32 / data.test.len() as f32
    };
    let mut after_one = 0.0;
    for step in 0..40 {
        let mut grad_w = vec![0f32; 10 * IMAGE_PIXELS];
        let mut grad_b = [0f32; 10];
        for k in 0..batch {
            let i = (step * batch + k) % data.train.len();
            let image = data.train.image(i);
            let probs = softmax(&logits(&weights, &bias, image));
            for class in 0..10 {
                let delta = probs[class]
                    - if class == usize::from(data.train.label(i)) {
                        1.0
                    } else {
                        0.0
                    };
                grad_b[class] += delta / batch as f32;
                let row = &mut grad_w[class * IMAGE_PIXELS..(class + 1) * IMAGE_PIXELS];
                for (g, &p) in row.iter_mut().zip(image) {
                    *g += delta * f32::from(p) / 255.0 / batch as f32;
                }
            }
        }
        for (w, g) in weights.iter_mut().zip(&grad_w) {
            *w -= lr * g;
        }
        for (b, g) in bias.iter_mut().zip(&grad_b) {
            *b -= lr * g;
        }
        if step == 0 {
            after_one = accuracy(&weights, &bias);
        }
    }
    let after_forty = accuracy(&weights, &bias);
    println!(
        "synthetic data, linear model: {after_one:.1}% after 1 step, {after_forty:.1}% after 40"
    );
    assert!(after_one < 90.0, "one step already reaches {after_one}%");
    assert!(after_forty > 70.0, "40 steps reach only {after_forty}%");
    assert!(after_forty > after_one, "{after_one}% -> {after_forty}%");
}

fn logits(weights: &[f32], bias: &[f32; 10], image: &[u8]) -> [f32; 10] {
    let mut out = *bias;
    for (class, logit) in out.iter_mut().enumerate() {
        let row = &weights[class * IMAGE_PIXELS..(class + 1) * IMAGE_PIXELS];
        *logit += row
            .iter()
            .zip(image)
            .map(|(w, &p)| w * f32::from(p) / 255.0)
            .sum::<f32>();
    }
    out
}

fn softmax(logits: &[f32; 10]) -> [f32; 10] {
    let max = logits.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
    let exps = logits.map(|l| (l - max).exp());
    let sum: f32 = exps.iter().sum();
    exps.map(|e| e / sum)
}

fn argmax(values: &[f32; 10]) -> usize {
    (0..10)
        .max_by(|&a, &b| values[a].total_cmp(&values[b]))
        .unwrap()
}

/// xorshift64*, for the property test's inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Feeds 2,000 random inputs, many of them nearly valid, to both parsers: they must return
/// `Ok` or `Err`, never panic.
#[test]
fn parsers_never_panic_on_arbitrary_bytes() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let valid_images = idx_images_bytes(&rng.bytes(3 * IMAGE_PIXELS), 3);
    let valid_labels = idx_labels_bytes(&[1, 2, 3, 4, 5]);
    let path = Path::new("fuzz-input");
    let mut oks = 0;
    for case in 0..2000 {
        let mut bytes = match case % 8 {
            // Pure noise of any length, including empty.
            0 => {
                let n = rng.below(64);
                rng.bytes(n)
            }
            // A valid magic followed by random header fields and data.
            1 | 2 => {
                let magic: u32 = if case % 8 == 1 { 2051 } else { 2049 };
                let mut bytes = magic.to_be_bytes().to_vec();
                let n = rng.below(40);
                bytes.extend(rng.bytes(n));
                bytes
            }
            // A lying header: huge counts or sizes with little data behind them.
            3 => {
                let mut bytes = if rng.below(2) == 0 {
                    valid_images.clone()
                } else {
                    valid_labels.clone()
                };
                bytes[4..8].copy_from_slice(&(u32::MAX - rng.below(3) as u32).to_be_bytes());
                if bytes.len() > 16 && rng.below(2) == 0 {
                    bytes[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
                }
                bytes
            }
            // Valid files with a few bytes flipped, truncated or extended.
            4..=6 => {
                let mut bytes = if rng.below(2) == 0 {
                    valid_images.clone()
                } else {
                    valid_labels.clone()
                };
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(bytes.len());
                    bytes[at] = rng.next() as u8;
                }
                match rng.below(3) {
                    0 => {
                        let keep = rng.below(bytes.len() + 1);
                        bytes.truncate(keep);
                    }
                    1 => {
                        let n = rng.below(10);
                        bytes.extend(rng.bytes(n));
                    }
                    _ => {}
                }
                bytes
            }
            // Gzip streams: of valid files, then possibly damaged.
            _ => {
                let inner = if rng.below(2) == 0 {
                    &valid_images
                } else {
                    &valid_labels
                };
                let mut bytes = gzip(inner);
                if rng.below(4) != 0 {
                    let at = 2 + rng.below(bytes.len() - 2);
                    bytes[at] ^= 1 << rng.below(8);
                }
                if rng.below(3) == 0 {
                    let keep = rng.below(bytes.len() + 1);
                    bytes.truncate(keep);
                }
                bytes
            }
        };
        if case % 50 == 0 {
            // Now and then, a bare gzip magic with noise behind it.
            let n = rng.below(30);
            bytes = [0x1f, 0x8b].into_iter().chain(rng.bytes(n)).collect();
        }
        let images = std::panic::catch_unwind(|| parse_images(&bytes, path).is_ok());
        let labels = std::panic::catch_unwind(|| parse_labels(&bytes, path).is_ok());
        match (images, labels) {
            (Ok(a), Ok(b)) => oks += usize::from(a) + usize::from(b),
            _ => panic!("a parser panicked on case {case}: {bytes:?}"),
        }
    }
    // Some of the mutated files are still valid, so both outcomes were exercised.
    assert!(oks > 0);
}

#[test]
fn lying_header_does_not_allocate_its_promise() {
    let mut bytes = idx_images_bytes(&[0; IMAGE_PIXELS], 1);
    bytes[4..8].copy_from_slice(&u32::MAX.to_be_bytes());
    let error = parse_images(&gzip(&bytes), Path::new("liar.gz")).unwrap_err();
    let message = error.to_string();
    assert!(
        message.contains("truncated") && message.contains("4294967295 images"),
        "{message}"
    );
}

const CHILD: &str = "MNIST_LAB_TEST_CHILD";

/// Runs `env_child` in a fresh process of this test binary with MNIST_LAB_DATA set, so that
/// no test changes the environment of this process.
fn run_child(mode: &str, data_dir: &Path) -> String {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "env_child", "--nocapture", "--test-threads=1"])
        .env(CHILD, mode)
        .env("MNIST_LAB_DATA", data_dir)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).to_string()
        + &String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "child {mode} failed: {text}");
    assert!(
        text.contains("child done"),
        "the child test did not run: {text}"
    );
    text
}

/// Not a test on its own: the body of `load_reads_mnist_lab_data_as_is` in a child process.
#[test]
fn env_child() {
    let Some(mode) = std::env::var_os(CHILD) else {
        return;
    };
    let dir = PathBuf::from(std::env::var_os("MNIST_LAB_DATA").unwrap());
    match mode.to_str().unwrap() {
        "present" => {
            let data = Mnist::load().unwrap();
            assert_eq!(data.source, dir.display().to_string());
            assert_same(&data, &small());
        }
        "missing" => {
            let error = Mnist::load().unwrap_err();
            assert!(matches!(error, Error::DataNotFound { .. }), "{error:?}");
            let message = error.to_string();
            assert!(message.contains("MNIST_LAB_DATA is set to"), "{message}");
            assert!(message.contains(TRAIN_LABELS), "{message}");
            assert!(message.contains(&dir.display().to_string()), "{message}");
            // Nothing was downloaded into the folder.
            assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        }
        "absent" => {
            let message = Mnist::load().unwrap_err().to_string();
            assert!(
                message.contains("a folder that does not exist"),
                "{message}"
            );
            assert!(!dir.exists(), "a folder was created for MNIST_LAB_DATA");
        }
        other => panic!("unknown mode {other}"),
    }
    println!("child done");
}

#[test]
fn load_reads_mnist_lab_data_as_is() {
    let (dir, _) = folder(true);
    run_child("present", dir.path());
    for name in FILES.iter().filter(|&&name| name != TEST_IMAGES) {
        std::fs::remove_file(dir.path().join(name)).unwrap();
    }
    run_child("missing", dir.path());
    run_child("absent", &dir.path().join("no-such-folder"));
}
