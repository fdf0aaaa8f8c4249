//! Looking inside models: `summary`, `Interpretation`, the filter and prediction charts.

use mnist_lab::check::check_model;
use mnist_lab::models::{
    Conv2Net, Conv2NetConfig, ConvNet, ConvNetConfig, FcNet, FcNetConfig, FcReluNet,
    FcReluNetConfig,
};
use mnist_lab::prelude::*;

fn cpu() -> Device {
    mnist_lab::device::cpu()
}

/// The rows that were measured, as (name, output shape text, parameters).
fn measured(table: &mnist_lab::inspect::Summary) -> Vec<(String, String, usize)> {
    table
        .rows
        .iter()
        .filter(|row| row.note.is_none())
        .map(|row| (row.name.clone(), row.shape_text(), row.params))
        .collect()
}

fn row(name: &str, shape: &str, params: usize) -> (String, String, usize) {
    (name.to_string(), shape.to_string(), params)
}

#[test]
fn summary_of_the_four_lecture_models() {
    let device = cpu();
    let h = 600;
    let fc = summary(&FcNet::new(784, h, 10, &device)).unwrap();
    let mlp = |first: usize| {
        vec![
            row("fc1", "600", first * 600 + 600),
            row("fc2", "600", 600 * 600 + 600),
            row("fc3", "10", 600 * 10 + 10),
        ]
    };
    assert_eq!(measured(&fc), mlp(784));
    let relu = summary(&FcReluNet::new(784, h, 10, &device)).unwrap();
    assert_eq!(measured(&relu), mlp(784));

    let conv = summary(&ConvNet::new(h, 10, &device)).unwrap();
    let mut expected = vec![row("conv1", "10 x 22 x 22", 10 * 49 + 10)];
    expected.extend(mlp(4840));
    assert_eq!(measured(&conv), expected);

    let conv2 = summary(&Conv2Net::new(h, 10, &device)).unwrap();
    let mut expected = vec![
        row("conv1", "10 x 22 x 22", 10 * 49 + 10),
        row("conv2", "55 x 21 x 21", 55 * 10 * 4 + 55),
    ];
    expected.extend(mlp(24255));
    assert_eq!(measured(&conv2), expected);
    assert_eq!(conv2.row("fc1").unwrap().params, 24_255 * 600 + 600);
    assert_eq!(conv2.row("conv2").unwrap().values(), 24_255);

    // The totals agree with Burn's count and with the configs' multiply-adds (the bench's).
    let models = [
        (&fc, "fc", FcNetConfig::new(784, h, 10).forward_macs()),
        (
            &relu,
            "fc-relu",
            FcReluNetConfig::new(784, h, 10).forward_macs(),
        ),
        (&conv, "conv", ConvNetConfig::new(h, 10).forward_macs()),
        (&conv2, "conv2", Conv2NetConfig::new(h, 10).forward_macs()),
    ];
    for (table, kind, macs) in models {
        assert_eq!(table.total_multiply_adds, macs, "{kind}");
        let rows: usize = table.rows.iter().map(|r| r.params).sum();
        assert_eq!(rows, table.total_params, "{kind}");
    }
    assert_eq!(
        conv2.total_params,
        Conv2Net::new(h, 10, &device).num_params()
    );
}

#[test]
fn summary_text_and_html() {
    let device = cpu();
    let table = summary(&Conv2Net::new(600, 10, &device)).unwrap();
    let text = table.to_string();
    println!("{text}");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "Conv2Net");
    assert!(lines[1].starts_with("Layer"), "{text}");
    let conv2 = lines.iter().find(|l| l.starts_with("conv2")).unwrap();
    assert!(conv2.contains("Conv2d 10 -> 55, 2 x 2"), "{conv2}");
    assert!(conv2.contains("55 x 21 x 21"), "{conv2}");
    assert!(conv2.contains("24,255"), "{conv2}");
    let fc1 = lines.iter().find(|l| l.starts_with("fc1")).unwrap();
    assert!(fc1.contains("Linear 24255 -> 600"), "{fc1}");
    assert!(fc1.contains("14,553,600"), "{fc1}");
    // Every measured row has its columns at the same places.
    let ends: Vec<usize> = lines
        .iter()
        .filter(|l| l.starts_with("conv") || l.starts_with("fc"))
        .map(|l| l.len())
        .collect();
    assert!(ends.windows(2).all(|w| w[0] == w[1]), "{text}");
    // The ReLU is named, after fc1 as in the struct, and said to be unmeasured.
    let names: Vec<&str> = table.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["conv1", "conv2", "fc1", "relu", "fc2", "fc3"]);
    let relu = table.row("relu").unwrap();
    assert!(
        relu.note.as_deref().unwrap().contains("not measured"),
        "{relu:?}"
    );
    assert!(text.lines().last().unwrap().starts_with("Total: "));

    let html = table.html();
    assert!(html.starts_with("<table>"), "{html}");
    assert!(html.contains("<td style=\"text-align:right\">55 x 21 x 21</td>"));
    assert!(html.contains("not measured"));
}

/// A model as a student might write it: fields in another order than the data flows, a
/// layer used twice, one never used, and the convolution's output reshaped by hand.
#[derive(Module, Debug)]
pub struct StudentNet {
    head: Linear,
    relu: Relu,
    spare: Linear,
    hidden: Linear,
    features: Conv2d,
}

impl Classifier for StudentNet {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.features.forward(images); // [batch, 4, 24, 24]
        let x = x.reshape([-1, 4 * 24 * 24]); // [batch, 2304]
        let x = self.relu.forward(self.hidden.forward(x)); // [batch, 32]
        let x = self.relu.forward(self.hidden2(x)); // [batch, 32]
        self.head.forward(x) // [batch, 10]
    }
}

impl StudentNet {
    fn hidden2(&self, x: Tensor<2>) -> Tensor<2> {
        self.spare.forward(x)
    }
}

#[test]
fn summary_follows_the_data_not_the_field_order() {
    let device = cpu();
    let model = StudentNet {
        head: LinearConfig::new(32, 10).init(&device),
        relu: Relu::new(),
        spare: LinearConfig::new(32, 32).init(&device),
        hidden: LinearConfig::new(2304, 32).init(&device),
        features: Conv2dConfig::new([1, 4], [5, 5]).init(&device),
    };
    let table = summary(&model).unwrap();
    assert_eq!(table.model, "StudentNet");
    assert_eq!(
        measured(&table),
        vec![
            row("features", "4 x 24 x 24", 4 * 25 + 4),
            row("hidden", "32", 2304 * 32 + 32),
            row("spare", "32", 32 * 32 + 32),
            row("head", "10", 32 * 10 + 10),
        ]
    );
    // The ReLU is declared right after `head`, which comes last in the flow.
    let names: Vec<&str> = table.rows.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["features", "hidden", "spare", "head", "relu"]);
    assert_eq!(table.total_params, model.num_params());
}

/// Model 3 with fc1 left at 784 inputs: does not fit.
#[derive(Module, Debug)]
pub struct Misfit {
    conv1: Conv2d,
    fc1: Linear,
}

impl Classifier for Misfit {
    fn forward(&self, images: Tensor<4>) -> Tensor<2> {
        let x = self.conv1.forward(images).flatten(1, 3);
        self.fc1.forward(x)
    }
}

#[test]
fn a_model_that_does_not_fit_gets_the_training_check_message() {
    let device = cpu();
    let model = Misfit {
        conv1: Conv2dConfig::new([1, 10], [7, 7]).init(&device),
        fc1: LinearConfig::new(784, 10).init(&device),
    };
    let message = summary(&model).unwrap_err().to_string();
    assert!(
        message.contains("conv1 gives 10 x 22 x 22 = 4840 values per image; fc1 takes 784"),
        "{message}"
    );
    let check = check_model(&model, &device, 10).unwrap_err().to_string();
    assert_eq!(message, check);
}

/// A quickly trained fc model and a small synthetic data set.
fn trained() -> (mnist_lab::models::FcNet, Mnist, TrainingConfig) {
    let device = cpu();
    let data = Mnist::synthetic(600, 230, 5);
    let config = TrainingConfig::new()
        .with_num_epochs(2)
        .with_learning_rate(0.05);
    mnist_lab::train::seed(&device, 3);
    let model = FcNet::new(784, 32, 10, &device);
    let (model, _) = train(model, &data, &config, &device).unwrap();
    (model, data, config)
}

#[test]
fn interpretation_agrees_with_evaluate() {
    let device = cpu();
    let (model, data, config) = trained();
    let interp = Interpretation::new(&model, &data.test, &device).unwrap();
    assert_eq!(interp.len(), data.test.len());
    let confusion = interp.confusion();
    let total: usize = confusion.iter().flatten().sum();
    assert_eq!(total, data.test.len());
    // Rows are the true digits.
    let counts = data.test.class_counts();
    for digit in 0..10 {
        assert_eq!(confusion[digit].iter().sum::<usize>(), counts[digit]);
    }
    let accuracy = evaluate(&model, &data, &config, &device).unwrap();
    assert!((interp.accuracy() - accuracy).abs() < 1e-9, "{accuracy}");
    // Per-class accuracy, weighted by class size, is the accuracy.
    let per_class = interp.per_class_accuracy();
    let weighted: f64 = (0..10)
        .filter_map(|d| per_class[d].map(|a| a * counts[d] as f64))
        .sum::<f64>()
        / data.test.len() as f64;
    assert!((weighted - accuracy).abs() < 1e-9);
    assert!(accuracy < 100.0, "{accuracy}: the test needs some mistakes");

    let pairs = interp.most_confused(5);
    assert!(!pairs.is_empty());
    assert!(pairs.windows(2).all(|w| w[0].count >= w[1].count));
    for pair in &pairs {
        assert_ne!(pair.actual, pair.predicted);
        assert_eq!(
            pair.count,
            confusion[pair.actual as usize][pair.predicted as usize]
        );
    }
    let top = interp.top_losses(4);
    assert!(
        top.windows(2)
            .all(|w| interp.loss(w[0]) >= interp.loss(w[1]))
    );
    let caption = interp.caption(top[0]);
    assert!(caption.starts_with("true "), "{caption}");
    assert!(caption.ends_with(" %)"), "{caption}");
}

#[test]
fn hand_made_logits() {
    // Three 3s: two taken for 8, one right; two 8s taken for 3; one 5 taken for 3.
    let mut logits = vec![[0.0f32; 10]; 6];
    let labels = [3, 3, 3, 8, 8, 5];
    for (row, predicted) in logits.iter_mut().zip([8, 8, 3, 3, 3, 3]) {
        row[predicted] = 2.0;
    }
    logits[0][8] = 6.0; // the most confident mistake: the highest loss
    let interp = Interpretation::from_logits(&logits, &labels).unwrap();
    let pairs: Vec<String> = interp
        .most_confused(10)
        .iter()
        .map(|c| c.to_string())
        .collect();
    assert_eq!(
        pairs,
        ["3 -> 8: 2 times", "8 -> 3: 2 times", "5 -> 3: 1 time"]
    );
    let per_class = interp.per_class_accuracy();
    assert_eq!(per_class[3], Some(100.0 / 3.0));
    assert_eq!(per_class[8], Some(0.0));
    assert_eq!(per_class[0], None);
    assert_eq!(interp.top_losses(1), vec![0]);
    let p = (6.0f64.exp() / (6.0f64.exp() + 9.0)) * 100.0;
    assert_eq!(interp.caption(0), format!("true 3, predicted 8 ({p:.0} %)"));
    // Scores alone hold no images to draw.
    assert!(interp.top_losses_chart(3).is_err());
    assert!(Interpretation::from_logits(&logits, &labels[..5]).is_err());
}

#[test]
fn charts_have_their_titles_a_png_and_a_description() {
    let device = cpu();
    let (model, data, _) = trained();
    let interp = Interpretation::new(&model, &data.test, &device).unwrap();
    let confusion = interp.confusion_chart().unwrap();
    assert!(confusion.svg().contains("Confusion matrix"));
    assert!(
        confusion
            .description()
            .starts_with("Confusion matrix of 230 images")
    );
    let top = interp.top_losses_chart(6).unwrap();
    assert!(top.svg().contains("Top 6 losses"));
    assert!(top.svg().contains(&interp.caption(interp.top_losses(1)[0])));

    let conv = Conv2Net::new(32, 10, &device);
    let table = summary(&conv).unwrap();
    assert_eq!(table.row("conv1").unwrap().output, vec![10, 22, 22]);
    let weights: Conv2d = Conv2dConfig::new([10, 55], [2, 2]).init(&device);
    let filters = filters_chart(&weights).unwrap();
    assert!(filters.svg().contains("55 filters of 10 x 2 x 2"));
    let conv1 = Conv2dConfig::new([1, 10], [7, 7]).init(&device);
    let maps = feature_maps_chart(&conv1, data.test.image(0)).unwrap();
    assert!(maps.svg().contains("10 feature maps of 22 x 22"));
    assert!(feature_maps_chart(&weights, data.test.image(0)).is_err());

    let prediction = predict(&model, data.test.image(0)).unwrap();
    let sum: f32 = prediction.probabilities.iter().sum();
    assert!((sum - 1.0).abs() < 1e-5);
    assert_eq!(
        prediction.digit(),
        interp.caption(0).split(", predicted ").nth(1).unwrap()[..1]
            .parse::<u8>()
            .unwrap()
    );
    let bars = prediction.chart().unwrap();
    assert!(
        bars.svg()
            .contains(&format!("Prediction: {}", prediction.digit()))
    );
    assert!(predict(&model, &[0u8; 10]).is_err());

    for chart in [&confusion, &top, &filters, &maps, &bars] {
        assert!(chart.png().starts_with(b"\x89PNG\r\n\x1a\n"));
        assert!(chart.png().len() < 200_000, "{}", chart.png().len());
        assert!(!chart.description().is_empty());
    }
}

#[test]
fn charts_save_as_svg_or_png() {
    let data = Mnist::synthetic(20, 10, 2);
    let chart = digits_chart(&data.train, 20).unwrap();
    assert!(chart.description().starts_with("20 digits, labelled"));
    let dir = tempfile::tempdir().unwrap();
    chart.save(dir.path().join("d.svg")).unwrap();
    chart.save(dir.path().join("d.png")).unwrap();
    let svg = std::fs::read_to_string(dir.path().join("d.svg")).unwrap();
    assert_eq!(svg, chart.svg());
    assert_eq!(
        std::fs::read(dir.path().join("d.png")).unwrap(),
        chart.png()
    );
    let wrong = chart
        .save(dir.path().join("d.jpg"))
        .unwrap_err()
        .to_string();
    assert!(wrong.contains(".svg or .png"), "{wrong}");
    let missing = chart
        .save(dir.path().join("no/such/folder/d.svg"))
        .unwrap_err()
        .to_string();
    assert!(missing.contains("does not exist"), "{missing}");
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
}
