//! Where a training step's time goes: the CPU backend's matmuls and convolutions at the
//! lecture's shapes, and one step of each model split into forward, backward and update.
//!
//! `cargo bench -p mnist_lab --bench ops [matmul|conv|step|batch|live]` prints milliseconds per
//! call (median of the repeats) and GFLOP/s. `OPS_SQUARE=1` times 1024 and 2048 square
//! matmuls instead of the lecture's shapes; `GEMM_THREADING`, `GEMM_RHS_PACK`,
//! `GEMM_LHS_PACK1` and `GEMM_LHS_PACKN` set gemm's thresholds (see bench/README.md).
//! Without a group name it runs them all. Cargo passes `--bench` (and any flag after `--`) to
//! a `harness = false` bench; words starting with `-` are not group names.

use std::time::Instant;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::optim::{GradientsParams, SgdConfig};
use burn::tensor::{Distribution, Int, Tensor, TensorData};
use mnist_lab::models::{
    Classifier, Conv2Net, Conv2NetConfig, ConvNet, ConvNetConfig, FcNet, FcNetConfig,
};

fn time<F: FnMut()>(label: &str, flops: f64, reps: usize, mut f: F) {
    f();
    f();
    let mut times = Vec::new();
    for _ in 0..reps {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let t = times[times.len() / 2];
    let gflops = if flops > 0.0 { flops / t / 1e9 } else { 0.0 };
    println!("{label:48} {:9.3} ms {gflops:8.1} GFLOP/s", t * 1e3);
}

fn matmuls(device: &burn::tensor::Device) {
    let shapes: &[(usize, usize, usize)] = if std::env::var("OPS_SQUARE").is_ok() {
        &[(1024, 1024, 1024), (2048, 2048, 2048)]
    } else {
        &[
            (100, 784, 600),
            (100, 600, 600),
            (100, 4840, 600),
            (100, 24255, 600),
        ]
    };
    for &(m, k, n) in shapes {
        let x = Tensor::<2>::random([m, k], Distribution::Default, device);
        let w = Tensor::<2>::random([k, n], Distribution::Default, device);
        let g = Tensor::<2>::random([m, n], Distribution::Default, device);
        let flops = 2.0 * (m * k * n) as f64;
        time(&format!("x[{m}x{k}] @ w[{k}x{n}]"), flops, 20, || {
            let _ = x.clone().matmul(w.clone());
        });
        time(&format!("g[{m}x{n}] @ w^T (grad x)"), flops, 20, || {
            let _ = g.clone().matmul(w.clone().transpose());
        });
        time(&format!("x^T @ g[{m}x{n}] (grad w)"), flops, 20, || {
            let _ = x.clone().transpose().matmul(g.clone());
        });
    }
}

fn step<M: Classifier>(name: &str, model: M, macs: f64, device: &burn::tensor::Device) {
    let ad = device.clone().autodiff();
    let mut model = model.fork(&ad).train();
    let images = Tensor::<4>::random([100, 1, 28, 28], Distribution::Default, &ad);
    let targets = Tensor::<1, Int>::from_data(
        TensorData::new((0..100).map(|i| (i % 10) as i64).collect::<Vec<_>>(), [100]),
        &ad,
    );
    let loss_fn = CrossEntropyLossConfig::new().init(&ad);
    let mut optim = SgdConfig::new().init();
    let (mut tf, mut tb, mut tu) = (Vec::new(), Vec::new(), Vec::new());
    for i in 0..12 {
        let t0 = Instant::now();
        let loss = loss_fn.forward(model.forward(images.clone()), targets.clone());
        let _: f32 = loss.clone().into_scalar();
        let t1 = Instant::now();
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let t2 = Instant::now();
        model = optim.step(0.001, model, grads);
        let t3 = Instant::now();
        if i >= 2 {
            tf.push((t1 - t0).as_secs_f64());
            tb.push((t2 - t1).as_secs_f64());
            tu.push((t3 - t2).as_secs_f64());
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2] * 1e3
    };
    let (f, b, u) = (med(&mut tf), med(&mut tb), med(&mut tu));
    let total = f + b + u;
    println!(
        "{name:8} step {total:7.2} ms = forward {f:6.2} + backward {b:6.2} + update {u:6.2}  \
         ({:.0} images/s, {:.0} GFLOP/s)",
        100.0 / total * 1e3,
        100.0 * macs * 6.0 / (total / 1e3) / 1e9
    );
}

fn convs(device: &burn::tensor::Device) {
    let ad = device.clone().autodiff();
    // (in channels, side, out channels, kernel): conv1 and conv2 of the lecture, batch 100,
    // through Burn's Conv2d and through mnist_lab's (its fused flex op).
    for (c_in, side, c_out, k) in [(1, 28, 10, 7), (10, 22, 55, 2)] {
        let ours = mnist_lab::nn::Conv2dConfig::new([c_in, c_out], [k, k]).init(&ad);
        let burns = ours.as_burn();
        let out = side - k + 1;
        let macs = (100 * c_out * out * out * c_in * k * k) as f64;
        let x = Tensor::<4>::random([100, c_in, side, side], Distribution::Default, &ad);
        let xt = x.clone().require_grad();
        // A random upstream gradient, as training gives (a plain `sum()` would send ones).
        let g = Tensor::<4>::random([100, c_out, out, out], Distribution::Default, &ad);
        // Forward alone is timed without autodiff, as evaluation runs it.
        let (ours_valid, burns_valid, x_valid) = (ours.valid(), burns.valid(), x.clone().inner());
        time(
            &format!("burn      conv {c_in}->{c_out} k{k} forward"),
            2.0 * macs,
            20,
            || {
                let _ = burns_valid.forward(x_valid.clone());
            },
        );
        time(
            &format!("mnist_lab conv {c_in}->{c_out} k{k} forward"),
            2.0 * macs,
            20,
            || {
                let _ = ours_valid.forward(x_valid.clone());
            },
        );
        let forwards: [(&str, &dyn Fn(Tensor<4>) -> Tensor<4>); 2] = [
            ("burn", &|x| burns.forward(x)),
            ("mnist_lab", &|x| ours.forward(x)),
        ];
        for (name, forward) in forwards {
            let label = format!("{name:9} conv {c_in}->{c_out} k{k}");
            time(
                &format!("{label} fwd+bwd (x, w, b)"),
                6.0 * macs,
                10,
                || {
                    let _ = (forward(xt.clone()) * g.clone()).sum().backward();
                },
            );
            time(&format!("{label} fwd+bwd (w, b)"), 4.0 * macs, 10, || {
                let _ = (forward(x.clone()) * g.clone()).sum().backward();
            });
        }
    }
}

fn batching(device: &burn::tensor::Device) {
    use burn::data::dataloader::DataLoaderBuilder;
    use mnist_lab::data::{Mnist, MnistBatcher};
    let data = Mnist::synthetic(10_000, 100, 1);
    for (label, dev) in [
        ("", device.clone()),
        (" (autodiff)", device.clone().autodiff()),
    ] {
        let loader = DataLoaderBuilder::new(MnistBatcher)
            .batch_size(100)
            .shuffle(1)
            .set_device(dev)
            .build(data.train.clone());
        time(
            &format!("100 batches of 100 images{label}"),
            0.0,
            10,
            || {
                for batch in loader.iter() {
                    let _ = batch.unwrap();
                }
            },
        );
    }
}

/// What the notebook kernel's live training adds: the stop-file check of every step, and a
/// redraw of the progress display (at most once a second) for a 2,400-step run.
fn live() {
    let dir = std::env::temp_dir().join(format!("mnist-lab-ops-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // SAFETY: the bench is single-threaded here; nothing else reads the environment.
    unsafe { std::env::set_var(mnist_lab::live::STOP_FILE_VAR, dir.join("stop")) };
    let signal = mnist_lab::live::StopSignal::new();
    time(
        "stop check (one stat of a missing file) x 1000",
        0.0,
        20,
        || {
            for _ in 0..1000 {
                assert!(!signal.requested());
            }
        },
    );
    let losses: Vec<f32> = (0..2400).map(|i| 2.3 / (1.0 + i as f32 / 300.0)).collect();
    let report: mnist_lab::train::TrainingReport = serde_json::from_value(serde_json::json!({
        "model": "conv2", "epochs": 30, "steps": 2400, "batch_size": 100,
        "learning_rate": 0.001, "seed": 42, "losses": losses, "epoch_seconds": [],
        "epoch_images_per_second": [], "train_seconds": 0.0, "images_per_second": 0.0,
        "test_accuracy": null, "test_total": null, "device": "cpu"
    }))
    .unwrap();
    time("live redraw: loss chart of 2,400 steps", 0.0, 10, || {
        let chart = mnist_lab::plot::loss_chart(&report).unwrap();
        let line =
            serde_json::json!({"id": "x", "update": true, "data": {"text/html": chart.svg()}});
        assert!(line.to_string().len() > 1000);
    });
    let _ = std::fs::remove_dir_all(&dir);
}

fn env(name: &str) -> Option<usize> {
    std::env::var(name).ok()?.parse().ok()
}

fn main() {
    mnist_lab::train::tune_allocator();
    if let Some(v) = env("GEMM_THREADING") {
        gemm::set_threading_threshold(v);
    }
    if let Some(v) = env("GEMM_RHS_PACK") {
        gemm::set_rhs_packing_threshold(v);
    }
    if let Some(v) = env("GEMM_LHS_PACK1") {
        gemm::set_lhs_packing_threshold_single_thread(v);
    }
    if let Some(v) = env("GEMM_LHS_PACKN") {
        gemm::set_lhs_packing_threshold_multi_thread(v);
    }
    let device = mnist_lab::device::cpu();
    // The first argument that is not a flag: `cargo bench` runs this as `ops --bench [group]`.
    let filter = std::env::args()
        .skip(1)
        .find(|arg| !arg.starts_with('-'))
        .unwrap_or_default();
    if filter.is_empty() || filter == "matmul" {
        matmuls(&device);
    }
    if filter.is_empty() || filter == "batch" {
        batching(&device);
    }
    if filter.is_empty() || filter == "conv" {
        convs(&device);
    }
    if filter.is_empty() || filter == "live" {
        live();
    }
    if filter.is_empty() || filter == "step" {
        let macs = FcNetConfig::new(784, 600, 10).forward_macs() as f64;
        step("fc", FcNet::new(784, 600, 10, &device), macs, &device);
        let macs = ConvNetConfig::new(600, 10).forward_macs() as f64;
        step("conv", ConvNet::new(600, 10, &device), macs, &device);
        let macs = Conv2NetConfig::new(600, 10).forward_macs() as f64;
        step("conv2", Conv2Net::new(600, 10, &device), macs, &device);
    }
}
