//! Accuracy on the test split: [`evaluate`] and its loop, [`count_correct_in`].

use burn::tensor::{Device, Int, Tensor};

use super::memory::ReleaseOnReturn;
use super::{TrainingConfig, loader, tune_allocator};
use crate::data::{Mnist, MnistBatch};
use crate::device::read;
use crate::live::StopSignal;
use crate::models::Classifier;
use crate::nn::fused::on_pool;
use crate::{Error, Result};

/// Measures accuracy on the test split, prints the lecture's accuracy line and returns the
/// accuracy in percent. The right answers add up on the device, read back once at the end.
pub fn evaluate<M: Classifier>(
    model: &M,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
) -> Result<f64> {
    config.validate()?;
    tune_allocator();
    let _release = ReleaseOnReturn;
    let model = model.valid().fork(device);
    let stop = StopSignal::new();
    on_pool(move || evaluate_loop(&model, data, config, device, &stop))
        .map(|(accuracy, _)| accuracy)
}

/// [`evaluate`]'s loop, on the model without autodiff: the accuracy and the images counted.
pub(super) fn evaluate_loop<M: Classifier>(
    model: &M,
    data: &Mnist,
    config: &TrainingConfig,
    device: &Device,
    stop: &StopSignal,
) -> Result<(f64, usize)> {
    let loader = loader(&data.test, config.batch_size, None, device);
    let batches = loader
        .iter()
        .map(|batch| batch.map_err(|e| Error::data_loader("a test batch", e)));
    let (correct, total) = count_correct_in(model, batches, |total| {
        !stop.requested_after(
            total,
            data.test.len(),
            "test images: the accuracy below is on those",
        )
    })?;
    let accuracy = 100.0 * correct as f64 / total.max(1) as f64;
    println!("Accuracy of the network on the {total} test images: {accuracy:.1} %");
    Ok((accuracy, total))
}

/// `model`'s right answers on each batch of `batches` in turn, for [`evaluate`] and the
/// benchmark, through the one evaluation loop ([`score_batches`]): until the batches run out
/// or `after_batch(images so far)` returns `false`. Returns the right answers and the images
/// counted.
///
/// The right answers add up on the device, and one read at the end brings the total back: on
/// a GPU the CPU does not wait for each batch.
pub fn count_correct_in<M: Classifier>(
    model: &M,
    batches: impl Iterator<Item = Result<MnistBatch>>,
    mut after_batch: impl FnMut(usize) -> bool,
) -> Result<(i64, usize)> {
    let mut correct: Option<Tensor<1, Int>> = None;
    let total = score_batches(model, batches, |scores, targets, total| {
        let right = count_correct(scores, targets);
        correct = Some(match correct.take() {
            Some(so_far) => so_far + right,
            None => right,
        });
        Ok(after_batch(total))
    })?;
    let correct = correct.map_or(0, |correct| {
        read(correct).iter::<i64>().next().unwrap_or_default()
    });
    Ok((correct, total))
}

/// The evaluation loop, for [`evaluate`], the benchmark and
/// [`Interpretation`](crate::inspect::Interpretation) alike: runs `model` on each batch of
/// `batches` in turn and hands its scores (`[batch, 10]`, still on the device) and the batch's
/// digits to `each`, with the images seen so far, until the batches run out or `each` returns
/// `Ok(false)`. Returns the images seen.
pub(crate) fn score_batches<M: Classifier>(
    model: &M,
    batches: impl Iterator<Item = Result<MnistBatch>>,
    mut each: impl FnMut(Tensor<2>, Tensor<1, Int>, usize) -> Result<bool>,
) -> Result<usize> {
    let mut images = 0usize;
    for batch in batches {
        let batch = batch?;
        images += batch.targets.dims()[0];
        if !each(model.forward(batch.images), batch.targets, images)? {
            break;
        }
    }
    Ok(images)
}

/// The right answers among `logits`, the scores of a batch whose digits are `targets`, as a
/// one-value tensor on their device.
fn count_correct(logits: Tensor<2>, targets: Tensor<1, Int>) -> Tensor<1, Int> {
    let predicted = logits.argmax(1).flatten::<1>(0, 1);
    predicted.equal(targets).int().sum()
}
