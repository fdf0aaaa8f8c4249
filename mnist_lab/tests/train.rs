//! The models' shapes and the training loop, on small synthetic data (no files, no network).

use mnist_lab::Error;
use mnist_lab::models::{Conv2Net, Conv2NetConfig, ConvNet, ConvNetConfig, FcNet, FcReluNet};
use mnist_lab::prelude::*;
use mnist_lab::testing::random_numbers;
use mnist_lab::train::seed;

fn device() -> Device {
    mnist_lab::device::cpu()
}

fn quick(epochs: usize) -> TrainingConfig {
    TrainingConfig::new()
        .with_num_epochs(epochs)
        .with_learning_rate(0.05)
        .with_batch_size(50)
        .with_hidden_size(32)
}

#[test]
fn every_lecture_model_maps_images_to_ten_scores() {
    let _random = random_numbers();
    let device = device();
    let images = || Tensor::<4>::zeros([3, 1, 28, 28], &device);
    let fc = FcNet::new(784, 16, 10, &device);
    let fc_relu = FcReluNet::new(784, 16, 10, &device);
    let conv = ConvNet::new(16, 10, &device);
    let conv2 = Conv2Net::new(16, 10, &device);
    assert_eq!(fc.forward(images()).dims(), [3, 10]);
    assert_eq!(fc_relu.forward(images()).dims(), [3, 10]);
    assert_eq!(conv.forward(images()).dims(), [3, 10]);
    assert_eq!(conv2.forward(images()).dims(), [3, 10]);
}

#[test]
fn flatten_sizes_are_the_lectures() {
    let _random = random_numbers();
    assert_eq!(ConvNetConfig::new(600, 10).flat_size(), 22 * 22 * 10);
    assert_eq!(ConvNetConfig::new(600, 10).flat_size(), 4840);
    assert_eq!(Conv2NetConfig::new(600, 10).flat_size(), 24255);
    // The layers really are that wide: fc1 takes the flattened convolution output.
    let device = device();
    let layers = mnist_lab::check::layers(&Conv2Net::new(600, 10, &device));
    let fc1 = layers.iter().find(|l| l.name == "fc1").unwrap();
    assert_eq!(
        fc1.kind,
        mnist_lab::check::LayerKind::Linear {
            inputs: 24255,
            outputs: 600
        }
    );
}

#[test]
fn training_lowers_the_loss_and_raises_accuracy() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(1000, 500, 3);
    let config = quick(3).with_learning_rate(0.3);
    seed(&device, 1);
    let model = FcReluNet::new(784, 32, 10, &device);
    let before = evaluate(&model, &data, &config, &device).unwrap();
    let (model, report) = train(model, &data, &config, &device).unwrap();
    let after = evaluate(&model, &data, &config, &device).unwrap();

    assert_eq!(report.steps, 60);
    assert_eq!(report.losses.len(), 60);
    let first: f32 = report.losses[..5].iter().sum::<f32>() / 5.0;
    assert!(
        report.mean_loss_of_last(5) < 0.7 * first,
        "loss {first} -> {}",
        report.mean_loss_of_last(5)
    );
    assert!(after > before + 30.0, "accuracy {before} -> {after}");
    assert_eq!(report.epoch_seconds.len(), 3);
    assert!(report.images_per_second > 0.0);
}

#[test]
fn the_same_seed_gives_the_same_losses() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(300, 50, 5);
    let config = quick(1).with_seed(9);
    let run = || {
        seed(&device, 9);
        let model = ConvNet::new(16, 10, &device);
        train(model, &data, &config, &device).unwrap().1.losses
    };
    let (first, second) = (run(), run());
    assert_eq!(first.len(), 6);
    assert_eq!(first, second);
}

#[test]
fn max_steps_cuts_a_run_short() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(500, 50, 5);
    let config = quick(3).with_max_steps(Some(4));
    let model = FcNet::new(784, 16, 10, &device);
    let (_, report) = train(model, &data, &config, &device).unwrap();
    assert_eq!((report.steps, report.epochs), (4, 1));
}

/// A model written the way a student writes one in a notebook.
#[derive(Module, Debug)]
struct StudentNet {
    conv1: Conv2d,
    fc1: Linear,
    relu: Relu,
    fc2: Linear,
}

impl Classifier for StudentNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv1.forward(images); // [batch, 4, 24, 24]
        let x = x.flatten(1, 3); // [batch, 2304]
        let x = self.relu.forward(self.fc1.forward(x));
        self.fc2.forward(x)
    }
}

fn student_net(fc1_inputs: usize, device: &Device) -> StudentNet {
    StudentNet {
        conv1: Conv2dConfig::new([1, 4], [5, 5]).init(device),
        fc1: LinearConfig::new(fc1_inputs, 16).init(device),
        relu: Relu::new(),
        fc2: LinearConfig::new(16, 10).init(device),
    }
}

#[test]
fn a_students_own_model_trains() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(200, 50, 5);
    let (_, report) = train(student_net(4 * 24 * 24, &device), &data, &quick(1), &device).unwrap();
    assert_eq!(report.name, "StudentNet");
    assert_eq!(report.steps, 4);
}

#[test]
fn a_layer_that_does_not_fit_is_explained_before_training() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(200, 50, 5);
    let error = train(student_net(784, &device), &data, &quick(1), &device).unwrap_err();
    assert!(matches!(error, Error::ModelShape { .. }));
    let message = error.to_string();
    assert!(
        message.contains("conv1 gives 4 x 24 x 24 = 2304 values per image; fc1 takes 784"),
        "{message}"
    );
    assert!(message.contains("LinearConfig::new(2304, 16)"), "{message}");
}

#[test]
fn a_loss_that_blows_up_stops_training_with_advice() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(1000, 50, 5);
    let config = quick(3).with_learning_rate(10.0);
    seed(&device, 2);
    let model = FcNet::new(784, 32, 10, &device);
    let error = train(model, &data, &config, &device).unwrap_err();
    let Error::Diverged {
        step,
        learning_rate,
        ..
    } = error
    else {
        panic!("expected Diverged, got {error}");
    };
    assert!((1..=60).contains(&step), "step {step}");
    assert_eq!(learning_rate, 10.0);
    let message = error.to_string();
    assert!(message.contains(&format!("at step {step}")), "{message}");
    assert!(message.contains("learning_rate = 10"), "{message}");
    assert!(message.contains("between 0.001 and 0.1"), "{message}");
}

#[test]
fn bad_settings_are_refused_before_any_work() {
    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(100, 50, 5);
    let model = FcNet::new(784, 16, 10, &device);
    let error = train(model, &data, &quick(1).with_batch_size(0), &device).unwrap_err();
    assert!(error.to_string().contains("`batch_size`"), "{error}");
}

/// The lecture notebook's loop, written out by hand for one epoch (the criterion, Burn's SGD,
/// forward, loss, backward, step), gives `train`'s losses to the last bit: `train` takes the
/// same steps, plus its display, stop button and report.
#[test]
fn the_loop_by_hand_gives_trains_losses() {
    use burn::nn::loss::CrossEntropyLossConfig;
    use burn::optim::{GradientsParams, SgdConfig};
    use mnist_lab::train::TrainingBatches;

    let _random = random_numbers();
    let device = device();
    let data = Mnist::synthetic(300, 100, 17);
    let config = quick(1).with_seed(5);
    seed(&device, config.seed);
    let model = FcNet::new(784, 32, 10, &device);
    let (_, report) = train(model, &data, &config, &device).unwrap();
    assert_eq!(report.losses.len(), 6);

    // The notebook's cell.
    seed(&device, config.seed);
    let train_device = device.clone().autodiff(); // gradients are recorded here
    let criterion = CrossEntropyLossConfig::new().init(&train_device);
    let mut optimizer = SgdConfig::new().init();
    let mut model = FcNet::new(784, 32, 10, &train_device);
    let mut losses: Vec<f32> = Vec::new();
    for batch in TrainingBatches::new(&data, &config, &train_device).iter() {
        let batch = batch.unwrap();
        let outputs = model.forward(batch.images); // forward pass
        let loss = criterion.forward(outputs, batch.targets); // the loss
        losses.push(loss.clone().into_scalar());
        let grads = GradientsParams::from_grads(loss.backward(), &model); // backward pass
        model = optimizer.step(config.learning_rate, model, grads); // the step
    }
    assert_eq!(losses, report.losses);
}
