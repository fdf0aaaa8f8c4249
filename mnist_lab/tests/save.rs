//! Saving a trained model and loading it back.

use mnist_lab::models::{Conv2Net, ConvNet, FcNet};
use mnist_lab::prelude::*;

/// [`mnist_lab::models::FcNet`]'s layers with a 1 x 1 convolution in front.
#[derive(Module, Debug)]
struct ConvInFront {
    conv1: Conv2d,
    fc1: Linear,
    fc2: Linear,
    fc3: Linear,
}

fn cpu() -> Device {
    mnist_lab::device::cpu()
}

fn conv2(hidden: usize, seed: u64) -> Conv2Net {
    let device = cpu();
    mnist_lab::train::seed(&device, seed);
    Conv2Net::new(hidden, 10, &device)
}

fn logits(model: &Conv2Net) -> Vec<f32> {
    let data = Mnist::synthetic(10, 20, 4);
    let batch = data.test.batch(0..20, &cpu()).unwrap();
    model
        .forward(batch.images)
        .into_data()
        .try_to_vec()
        .unwrap()
}

#[test]
fn a_loaded_model_gives_bit_identical_logits() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv2.bpk");
    let model = conv2(32, 1);
    save(&model, &path).unwrap();
    let skeleton = conv2(32, 2);
    assert_ne!(
        logits(&model),
        logits(&skeleton),
        "the skeleton starts elsewhere"
    );
    let loaded = load(skeleton, &path).unwrap();
    let (a, b) = (logits(&model), logits(&loaded));
    assert_eq!(
        a.iter().map(|v| v.to_bits()).collect::<Vec<_>>(),
        b.iter().map(|v| v.to_bits()).collect::<Vec<_>>()
    );
    // Saving again over the file replaces it whole, and leaves nothing else behind.
    save(&loaded, &path).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
}

#[test]
fn a_trained_model_survives_the_round_trip() {
    let device = cpu();
    let data = Mnist::synthetic(200, 100, 6);
    let config = TrainingConfig::new()
        .with_num_epochs(1)
        .with_learning_rate(0.05);
    let model = FcNet::new(784, 16, 10, &device);
    let (model, _) = train(model, &data, &config, &device).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fc.bpk");
    save(&model, &path).unwrap();
    let loaded = load(FcNet::new(784, 16, 10, &device), &path).unwrap();
    assert_eq!(
        evaluate(&model, &data, &config, &device).unwrap(),
        evaluate(&loaded, &data, &config, &device).unwrap()
    );
}

#[test]
fn a_wrong_architecture_names_the_layer_and_both_shapes() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv2.bpk");
    save(&conv2(32, 1), &path).unwrap();
    let device = cpu();
    let conv = ConvNet::new(32, 10, &device);
    let message = load(conv, &path).unwrap_err().to_string();
    assert!(
        message.contains("fc1.weight is 24255 x 32 in the file but 4840 x 32 in the model"),
        "{message}"
    );
    let wider = Conv2Net::new(64, 10, &device);
    let message = load(wider, &path).unwrap_err().to_string();
    assert!(
        message.contains("fc1.bias is 32 in the file but 64"),
        "{message}"
    );
    // Same shapes for the layers both have, but one layer more in the model: a 1 x 1
    // convolution in front keeps 784 values for fc1.
    let fc_path = dir.path().join("fc.bpk");
    save(&FcNet::new(784, 32, 10, &device), &fc_path).unwrap();
    let conv = ConvInFront {
        conv1: Conv2dConfig::new([1, 1], [1, 1]).init(&device),
        fc1: LinearConfig::new(784, 32).init(&device),
        fc2: LinearConfig::new(32, 32).init(&device),
        fc3: LinearConfig::new(32, 10).init(&device),
    };
    let message = load(conv, &fc_path).unwrap_err().to_string();
    assert!(
        message.contains("the model has conv1.bias, conv1.weight that the file lacks"),
        "{message}"
    );
}

#[test]
fn truncated_damaged_and_missing_files_are_explained() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("conv2.bpk");
    save(&conv2(16, 1), &path).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let truncated = dir.path().join("truncated.bpk");
    std::fs::write(&truncated, &bytes[..bytes.len() / 2]).unwrap();
    let message = load(conv2(16, 2), &truncated).unwrap_err().to_string();
    assert!(message.contains("truncated.bpk"), "{message}");
    assert!(message.contains("not a whole saved model"), "{message}");

    let text = dir.path().join("notes.bpk");
    std::fs::write(&text, "these are my notes, not a model").unwrap();
    let message = load(conv2(16, 2), &text).unwrap_err().to_string();
    assert!(message.contains("not a whole saved model"), "{message}");

    let missing = dir.path().join("missing.bpk");
    let message = load(conv2(16, 2), &missing).unwrap_err().to_string();
    assert!(message.contains("missing.bpk"), "{message}");
    assert!(message.contains("Check that the path exists"), "{message}");
}

#[test]
fn a_failed_save_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let model = conv2(16, 1);
    // A folder that does not exist: refused before anything is written.
    let nowhere = dir.path().join("no-such-folder").join("model.bpk");
    let message = save(&model, &nowhere).unwrap_err().to_string();
    assert!(message.contains("does not exist"), "{message}");
    // A path that is a folder.
    let message = save(&model, dir.path()).unwrap_err().to_string();
    assert!(message.contains("folder"), "{message}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
