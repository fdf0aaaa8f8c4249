//! The training step and the loop around it: [`sgd_step`], the batches it takes
//! ([`TrainingBatches`], [`loader`]) and the [`Trainer`] that [`train`](super::train) and the
//! benchmark run.

use std::collections::VecDeque;
use std::sync::Arc;

use burn::data::dataloader::{DataLoader, DataLoaderBuilder};
use burn::nn::loss::{CrossEntropyLoss, CrossEntropyLossConfig};
use burn::optim::{GradientsParams, ModuleOptimizer};
use burn::tensor::{Device, Tensor};

use super::TrainingConfig;
use crate::data::{Mnist, MnistBatch, MnistBatcher, Split};
use crate::device::read;
use crate::models::Classifier;
use crate::nn::fused::sgd;
use crate::{Error, Result};

/// The training batches, in the order [`train`] takes them: the training split in batches of
/// `config.batch_size`, shuffled from `config.seed`, and shuffled anew by each call to
/// [`iter`](TrainingBatches::iter) (one call per epoch). Each pass stops after
/// `config.max_steps` batches when that is set.
///
/// The lecture's loop, by hand, for one epoch (what [`train`] does, without its display, stop
/// button and report):
///
/// ```
/// use burn::nn::loss::CrossEntropyLossConfig;
/// use burn::optim::SgdConfig;
/// use mnist_lab::models::FcNet;
/// use mnist_lab::prelude::*;
/// use mnist_lab::train::{TrainingBatches, sgd_step};
///
/// let data = Mnist::synthetic(200, 100, 7);
/// let config = TrainingConfig::new().with_hidden_size(32).with_max_steps(Some(2));
/// let device = mnist_lab::device::cpu().autodiff(); // gradients are recorded on this device
/// let criterion = CrossEntropyLossConfig::new().init(&device);
/// let mut optimizer = SgdConfig::new().init();
/// let mut model = FcNet::new(784, 32, 10, &device);
/// let mut losses = Vec::new();
/// for batch in TrainingBatches::new(&data, &config, &device).iter() {
///     let (next, loss) = sgd_step(model, &mut optimizer, &criterion, batch?, config.learning_rate);
///     model = next;
///     losses.push(loss);
/// }
/// assert_eq!(losses.len(), 2);
/// # Ok::<(), mnist_lab::Error>(())
/// ```
pub struct TrainingBatches {
    loader: Arc<dyn DataLoader<MnistBatch>>,
    limit: usize,
}

impl TrainingBatches {
    /// The batches of `data`'s training split for `config`, on `device` (the autodiff device
    /// the model trains on).
    pub fn new(data: &Mnist, config: &TrainingConfig, device: &Device) -> Self {
        TrainingBatches {
            loader: loader(&data.train, config.batch_size, Some(config.seed), device),
            limit: config.max_steps.unwrap_or(usize::MAX),
        }
    }

    /// One pass over the training split (one epoch), shuffled anew on each call.
    pub fn iter(&self) -> impl Iterator<Item = Result<MnistBatch>> + '_ {
        self.loader
            .iter()
            .take(self.limit)
            .map(|batch| batch.map_err(|e| Error::data_loader("a training batch", e)))
    }
}

/// Batches of `split` on `device`, reshuffled each pass when `shuffle` holds a seed.
/// [`train`], [`evaluate`] and the benchmark all load through this.
pub fn loader(
    split: &Split,
    batch_size: usize,
    shuffle: Option<u64>,
    device: &Device,
) -> Arc<dyn DataLoader<MnistBatch>> {
    let builder = DataLoaderBuilder::new(MnistBatcher)
        .batch_size(batch_size)
        .set_device(device.clone());
    match shuffle {
        Some(seed) => builder.shuffle(seed),
        None => builder,
    }
    .build(split.clone())
}

/// The lecture's training, for [`train`] and the benchmark alike: the model on the autodiff
/// device, its optimizer and loss, the steps taken, and the one training loop
/// ([`Trainer::run_with`]).
pub struct Trainer<M> {
    /// The model being trained (`None` only while a step holds it).
    model: Option<M>,
    optimizer: ModuleOptimizer,
    loss_fn: CrossEntropyLoss,
    learning_rate: f64,
    /// The autodiff device the model trains on; its batches go there.
    pub device: Device,
    /// Steps taken, the one that diverged included (on a GPU, also those taken after it
    /// until the read that found it).
    pub steps: usize,
    /// Steps whose losses are read back in one transfer: 1 reads each step's loss as it
    /// comes (the CPU's way); more keeps them on the device until that many are waiting.
    read_every: usize,
    /// The step whose loss a read found not finite.
    diverged_at: Option<usize>,
}

/// What [`Trainer::run_with`] tells its caller as it goes.
pub(crate) enum Event<'a> {
    /// Losses just read back from the device, in step order: those of the steps taken since
    /// the last read (one, when each loss is read as it comes). A read comes before the
    /// [`Event::Step`] of the step at which it is made.
    Losses(&'a [f32]),
    /// A step was taken on this many images; its loss may not be read yet. The caller
    /// returns `false` to end the run after it.
    Step(usize),
}

impl<M: Classifier> Trainer<M> {
    /// Losses kept on a GPU before a read, unless [`Trainer::read_every`] says otherwise.
    const GPU_READ_EVERY: usize = 100;

    /// `model` moved to the autodiff twin of `device` in training mode, with the lecture's loss
    /// (cross-entropy) and optimizer ([`crate::nn::fused::sgd`]). On the CPU each step's loss
    /// is read as it comes; on a GPU, 100 steps' losses in one read.
    pub fn new(model: M, device: &Device, learning_rate: f64) -> Self {
        let device = device.clone().autodiff();
        let read_every = if crate::device::is_cpu(&device) {
            1
        } else {
            Self::GPU_READ_EVERY
        };
        Trainer {
            model: Some(model.fork(&device).train()),
            optimizer: sgd(),
            loss_fn: CrossEntropyLossConfig::new().init(&device),
            learning_rate,
            device,
            steps: 0,
            read_every,
            diverged_at: None,
        }
    }

    /// Reads the losses back every `steps` steps (at least 1) from now on.
    pub(crate) fn read_every(&mut self, steps: usize) {
        self.read_every = steps.max(1);
    }

    /// The training loop, as [`Trainer::run_with`] runs it, with `after_step(loss, images)`
    /// called once per step in step order, as each step's loss is read. Where the losses are
    /// read in batches (a GPU), the calls come in a burst at each read, and a `false` from one
    /// ends the run after the last step read.
    pub fn run(
        &mut self,
        batches: impl Iterator<Item = Result<MnistBatch>>,
        mut after_step: impl FnMut(f32, usize) -> bool,
    ) -> Result<Option<f32>> {
        let (mut losses, mut images) = (VecDeque::new(), VecDeque::new());
        let mut go_on = true;
        self.run_with(batches, |event| {
            match event {
                Event::Losses(read) => losses.extend(read.iter().copied()),
                Event::Step(n) => images.push_back(n),
            }
            while !losses.is_empty() && !images.is_empty() {
                let (loss, n) = (losses.pop_front(), images.pop_front());
                go_on &= after_step(loss.unwrap_or_default(), n.unwrap_or_default());
            }
            go_on
        })
    }

    /// The training loop: one SGD step on each batch of `batches` in turn, until they run out
    /// or `on(Event::Step(..))` returns `false`, telling `on` of each step and each read.
    ///
    /// With [`Trainer::read_every`] at 1 (the CPU), each step is [`sgd_step`]: its loss is read
    /// at once, and the loop stops before the update when it is not finite. Otherwise the
    /// steps keep their losses on the device, and one transfer reads them when
    /// `read_every` are waiting and when the run ends (the batches run out, or `on` ends it);
    /// the CPU then waits for the GPU only at those reads.
    ///
    /// Returns `Some(loss)` when a step's loss was not finite: `on` has had the losses before
    /// it, not that one, and the caller reports it with [`Trainer::diverged`]. Where the losses
    /// are read in batches, the steps after it until the read were taken too (on weights that
    /// are no longer numbers); the run stops at that read, at most `read_every - 1` steps late.
    pub(crate) fn run_with(
        &mut self,
        batches: impl Iterator<Item = Result<MnistBatch>>,
        mut on: impl FnMut(Event<'_>) -> bool,
    ) -> Result<Option<f32>> {
        let mut waiting: Vec<Tensor<1>> = Vec::new();
        for batch in batches {
            let batch = batch?;
            let images = batch.targets.dims()[0];
            let model = self
                .model
                .take()
                .expect("the trainer holds its model between steps");
            let args = (
                &mut self.optimizer,
                &self.loss_fn,
                batch,
                self.learning_rate,
            );
            if self.read_every == 1 {
                let (model, loss) = sgd_step(model, args.0, args.1, args.2, args.3);
                self.model = Some(model);
                self.steps += 1;
                if !loss.is_finite() {
                    self.diverged_at = Some(self.steps);
                    return Ok(Some(loss));
                }
                on(Event::Losses(&[loss]));
            } else {
                let (model, loss) = sgd_step_unread(model, args.0, args.1, args.2, args.3);
                self.model = Some(model);
                self.steps += 1;
                waiting.push(loss);
                if waiting.len() >= self.read_every
                    && let Some(loss) = self.read_losses(&mut waiting, &mut on)
                {
                    return Ok(Some(loss));
                }
            }
            if !on(Event::Step(images)) {
                break;
            }
        }
        Ok(self.read_losses(&mut waiting, &mut on))
    }

    /// Reads the `waiting` losses (the last steps') in one transfer and hands them to `on`;
    /// `Some(loss)` for the first that is not finite, with only those before it handed on.
    fn read_losses(
        &mut self,
        waiting: &mut Vec<Tensor<1>>,
        on: &mut impl FnMut(Event<'_>) -> bool,
    ) -> Option<f32> {
        if waiting.is_empty() {
            return None;
        }
        let first_step = self.steps + 1 - waiting.len();
        let losses: Vec<f32> = read(Tensor::cat(std::mem::take(waiting), 0))
            .iter::<f32>()
            .collect();
        let finite = losses.iter().take_while(|loss| loss.is_finite()).count();
        if finite > 0 {
            on(Event::Losses(&losses[..finite]));
        }
        let loss = *losses.get(finite)?;
        self.diverged_at = Some(first_step + finite);
        Some(loss)
    }

    /// The error for a loss that [`Trainer::run`] found not finite, at the step that had it,
    /// in `epoch`.
    pub fn diverged(&self, loss: f32, epoch: usize) -> Error {
        Error::Diverged {
            step: self.diverged_step(),
            epoch,
            loss,
            learning_rate: self.learning_rate,
        }
    }

    /// The step whose loss was not finite (the last step taken, before any was found).
    pub(crate) fn diverged_step(&self) -> usize {
        self.diverged_at.unwrap_or(self.steps)
    }

    /// The trained model.
    pub fn into_model(self) -> M {
        self.model
            .expect("the trainer holds its model between steps")
    }
}

/// One step of the lecture's training on `batch`: the forward pass, the loss, the backward
/// pass (the gradients), and the optimizer's step, which moves every weight by
/// `learning_rate` times its gradient.
///
/// Returns the updated model and the batch's loss. A loss that is not finite is returned
/// with the model untouched (no backward pass, no update), for the caller to report.
/// [`train`] takes every step through this function, with the lecture's SGD; the model and
/// `loss_fn` must be on an autodiff device (`device.autodiff()`). [`TrainingBatches`] shows
/// the loop around it.
pub fn sgd_step<M: Classifier>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: MnistBatch,
    learning_rate: f64,
) -> (M, f32) {
    let logits = model.forward(batch.images);
    let loss = loss_fn.forward(logits, batch.targets);
    let value = read(loss.clone()).iter::<f32>().next().unwrap_or(f32::NAN);
    if !value.is_finite() {
        return (model, value);
    }
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optimizer.step(learning_rate, model, grads), value)
}

/// [`sgd_step`] without reading the loss: the updated model and the batch's loss, still on
/// the device (without autodiff), for [`Trainer::run_with`] to read with others. The update is
/// made whatever the loss.
fn sgd_step_unread<M: Classifier>(
    model: M,
    optimizer: &mut ModuleOptimizer,
    loss_fn: &CrossEntropyLoss,
    batch: MnistBatch,
    learning_rate: f64,
) -> (M, Tensor<1>) {
    let logits = model.forward(batch.images);
    let loss = loss_fn.forward(logits, batch.targets);
    let grads = GradientsParams::from_grads(loss.backward(), &model);
    (optimizer.step(learning_rate, model, grads), loss.inner())
}
