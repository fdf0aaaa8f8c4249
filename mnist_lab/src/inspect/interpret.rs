//! [`Interpretation`]: where a model errs, from one pass over a split.

use std::fmt;

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use burn::tensor::Tensor;

use crate::data::Split;
use crate::device::read;
use crate::live::StopSignal;
use crate::models::Classifier;
use crate::nn::fused::on_pool;
use crate::plot::{Chart, DigitGrid, Paint, plot_error};
use crate::train::{ReleaseOnReturn, loader, score_batches, thousands, tune_allocator};
use crate::{Error, Result};

/// Images per batch of the pass (as [`evaluate`](crate::train::evaluate) with the lecture's
/// settings).
const BATCH_SIZE: usize = 100;

/// A model's predictions on every image of a split, and what they say about its mistakes,
/// in the manner of fastai's `ClassificationInterpretation`.
///
/// [`Interpretation::new`] runs the model once over the split, in batches, without
/// gradients, through the loop [`evaluate`](crate::train::evaluate) uses; everything else
/// reads from that pass.
///
/// ```
/// use mnist_lab::prelude::*;
///
/// // Hand-made scores for four images whose true digits are 4, 4, 9 and 1.
/// let mut logits = vec![[0.0f32; 10]; 4];
/// logits[0][4] = 5.0; // right
/// logits[1][9] = 5.0; // a 4 taken for a 9
/// logits[2][9] = 5.0; // right
/// logits[3][1] = 5.0; // right
/// let interp = Interpretation::from_logits(&logits, &[4, 4, 9, 1]).unwrap();
/// assert_eq!(interp.accuracy(), 75.0);
/// assert_eq!(interp.confusion()[4][9], 1); // row: the true digit; column: the prediction
/// assert_eq!(interp.most_confused(1)[0].to_string(), "4 -> 9: 1 time");
/// ```
#[derive(Clone, Debug)]
pub struct Interpretation {
    /// Per image: the true digit.
    labels: Vec<u8>,
    /// Per image: the predicted digit (the highest score).
    predicted: Vec<u8>,
    /// Per image: the probability (softmax) given to the predicted digit.
    confidence: Vec<f32>,
    /// Per image: the cross-entropy loss, `-ln p(true digit)`.
    losses: Vec<f32>,
    /// The images, for the top-loss chart (empty for hand-made logits).
    images: Option<Split>,
}

/// A pair of digits the model confuses: `actual` taken for `predicted`, `count` times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Confusion {
    /// The true digit.
    pub actual: u8,
    /// The digit the model predicted instead.
    pub predicted: u8,
    /// How many test images had this mistake.
    pub count: usize,
}

/// `4 -> 9: 23 times`.
impl fmt::Display for Confusion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let times = if self.count == 1 { "time" } else { "times" };
        write!(
            f,
            "{} -> {}: {} {times}",
            self.actual, self.predicted, self.count
        )
    }
}

/// Batches whose scores [`Interpretation::new`] reads back in one transfer.
const READ_BATCHES: usize = 50;

/// Reads the `waiting` scores (`[batch, 10]` each) back in one transfer, onto the end of
/// `logits`.
fn read_scores(waiting: &mut Vec<Tensor<2>>, logits: &mut Vec<f32>) -> Result<()> {
    if waiting.is_empty() {
        return Ok(());
    }
    let scores = read(Tensor::cat(std::mem::take(waiting), 0)).convert::<f32>();
    logits.extend_from_slice(scores.as_slice::<f32>().map_err(|e| Error::Device {
        message: format!("could not read the model's scores: {e:?}"),
    })?);
    Ok(())
}

impl Interpretation {
    /// Runs `model` over every image of `split` (usually `&data.test`) on `device`, in
    /// batches, and keeps each image's prediction, confidence and loss. The notebook's stop
    /// button ends the pass early, as it ends [`evaluate`](crate::train::evaluate); the
    /// interpretation is then of the images seen so far.
    pub fn new<M: Classifier>(
        model: &M,
        split: &Split,
        device: &burn::tensor::Device,
    ) -> Result<Interpretation> {
        if split.is_empty() {
            return Err(Error::setting(
                "split",
                "an empty split",
                "it must hold at least one image",
            ));
        }
        tune_allocator();
        let _release = ReleaseOnReturn;
        let model = model.valid().fork(device);
        let stop = StopSignal::new();
        let logits = on_pool(move || -> Result<Vec<f32>> {
            let loader = loader(split, BATCH_SIZE, None, device);
            let batches = loader
                .iter()
                .map(|batch| batch.map_err(|e| Error::data_loader("a test batch", e)));
            let mut logits = Vec::with_capacity(split.len() * 10);
            // The scores stay on the device and come back READ_BATCHES batches at a time: on
            // a GPU the CPU waits for it at those reads only.
            let mut waiting = Vec::with_capacity(READ_BATCHES);
            score_batches(&model, batches, |scores, _, images| {
                waiting.push(scores);
                if waiting.len() == READ_BATCHES {
                    read_scores(&mut waiting, &mut logits)?;
                }
                Ok(!stop.requested_after(
                    images,
                    split.len(),
                    "images: the interpretation is of those",
                ))
            })?;
            read_scores(&mut waiting, &mut logits)?;
            Ok(logits)
        })?;
        let rows: Vec<[f32; 10]> = logits
            .chunks(10)
            .map(|row| {
                let mut scores = [0.0; 10];
                scores.copy_from_slice(row);
                scores
            })
            .collect();
        let mut interpretation = Self::from_logits(&rows, &split.labels()[..rows.len()])?;
        interpretation.images = Some(split.clone());
        Ok(interpretation)
    }

    /// An interpretation of given scores (one row of ten per image) against the true
    /// `labels`, for scores computed elsewhere and for tests.
    pub fn from_logits(logits: &[[f32; 10]], labels: &[u8]) -> Result<Interpretation> {
        if logits.len() != labels.len() {
            return Err(Error::setting(
                "logits",
                format!("{} rows", logits.len()),
                format!("it must have one row per label ({})", labels.len()),
            ));
        }
        if let Some(&label) = labels.iter().find(|&&label| label >= 10) {
            return Err(Error::setting("labels", label, "digits are 0 to 9"));
        }
        let mut interpretation = Interpretation {
            labels: labels.to_vec(),
            predicted: Vec::with_capacity(labels.len()),
            confidence: Vec::with_capacity(labels.len()),
            losses: Vec::with_capacity(labels.len()),
            images: None,
        };
        for (scores, &label) in logits.iter().zip(labels) {
            let probabilities = softmax(scores);
            // The first highest score, as `argmax` takes it.
            let best = (0..10).fold(0, |best, i| if scores[i] > scores[best] { i } else { best });
            interpretation.predicted.push(best as u8);
            interpretation.confidence.push(probabilities[best]);
            let p_true = probabilities[label as usize];
            interpretation
                .losses
                .push(-(p_true.max(f32::MIN_POSITIVE)).ln());
        }
        Ok(interpretation)
    }

    /// Images interpreted.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether no image was interpreted (never, for one made by [`Interpretation::new`]).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// The share of images predicted right, in percent (what `evaluate` prints).
    pub fn accuracy(&self) -> f64 {
        let right = self
            .labels
            .iter()
            .zip(&self.predicted)
            .filter(|(a, b)| a == b)
            .count();
        100.0 * right as f64 / self.len().max(1) as f64
    }

    /// The confusion matrix: `confusion()[true_digit][predicted_digit]` images.
    pub fn confusion(&self) -> [[usize; 10]; 10] {
        let mut matrix = [[0; 10]; 10];
        for (&actual, &predicted) in self.labels.iter().zip(&self.predicted) {
            matrix[actual as usize][predicted as usize] += 1;
        }
        matrix
    }

    /// The `n` most frequent mistakes, most frequent first (ties by digits), e.g.
    /// `4 -> 9: 23 times`.
    pub fn most_confused(&self, n: usize) -> Vec<Confusion> {
        let matrix = self.confusion();
        let mut pairs: Vec<Confusion> = (0..10u8)
            .flat_map(|a| (0..10u8).map(move |p| (a, p)))
            .filter(|(a, p)| a != p && matrix[*a as usize][*p as usize] > 0)
            .map(|(actual, predicted)| Confusion {
                actual,
                predicted,
                count: matrix[actual as usize][predicted as usize],
            })
            .collect();
        pairs.sort_by(|x, y| {
            y.count
                .cmp(&x.count)
                .then((x.actual, x.predicted).cmp(&(y.actual, y.predicted)))
        });
        pairs.truncate(n);
        pairs
    }

    /// Per digit, the share of its images predicted right, in percent; `None` for a digit
    /// the split does not hold.
    pub fn per_class_accuracy(&self) -> [Option<f64>; 10] {
        let matrix = self.confusion();
        std::array::from_fn(|digit| {
            let total: usize = matrix[digit].iter().sum();
            (total > 0).then(|| 100.0 * matrix[digit][digit] as f64 / total as f64)
        })
    }

    /// The indices (into the split) of the `n` images with the highest loss, highest first.
    pub fn top_losses(&self, n: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| self.losses[b].total_cmp(&self.losses[a]).then(a.cmp(&b)));
        order.truncate(n);
        order
    }

    /// Image `i`'s loss, `-ln p(true digit)`.
    pub fn loss(&self, i: usize) -> f32 {
        self.losses[i]
    }

    /// Image `i`'s caption: `true 4, predicted 9 (87 %)`, the percentage being the
    /// probability the model gave its prediction.
    pub fn caption(&self, i: usize) -> String {
        format!(
            "true {}, predicted {} ({:.0} %)",
            self.labels[i],
            self.predicted[i],
            100.0 * self.confidence[i]
        )
    }

    /// The confusion matrix as text: rows are true digits, columns predictions.
    pub fn confusion_text(&self) -> String {
        let matrix = self.confusion();
        let width = matrix
            .iter()
            .flatten()
            .map(|c| c.to_string().len())
            .max()
            .unwrap_or(1)
            .max(2);
        let mut text = format!("true \\ predicted{}\n", " ".repeat(2));
        text += &format!("{:>5}", "");
        for p in 0..10 {
            text += &format!(" {p:>width$}");
        }
        text += "\n";
        for (actual, row) in matrix.iter().enumerate() {
            text += &format!("{actual:>5}");
            for count in row {
                text += &format!(" {count:>width$}");
            }
            text += "\n";
        }
        text
    }

    /// A one-paragraph report: the accuracy, the most confused pairs, the per-digit
    /// accuracy.
    pub fn report(&self, pairs: usize) -> String {
        let confused: Vec<String> = self
            .most_confused(pairs)
            .iter()
            .map(|c| c.to_string())
            .collect();
        let per_class: Vec<String> = self
            .per_class_accuracy()
            .iter()
            .enumerate()
            .filter_map(|(digit, a)| a.map(|a| format!("{digit}: {a:.0} %")))
            .collect();
        format!(
            "{:.1} % of {} images right. Most confused: {}. Per digit: {}.",
            self.accuracy(),
            thousands(self.len() as f64),
            if confused.is_empty() {
                "none".to_string()
            } else {
                confused.join(", ")
            },
            per_class.join(", ")
        )
    }

    /// The confusion matrix as a chart: a cell per (true, predicted) pair with its count,
    /// coloured by the share of the true digit's images it holds.
    pub fn confusion_chart(&self) -> Result<Chart> {
        let matrix = self.confusion();
        let description = format!(
            "Confusion matrix of {} images, {:.1} % right; most confused: {}",
            self.len(),
            self.accuracy(),
            self.most_confused(3)
                .iter()
                .map(|c| c.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        Chart::draw((560, 560), description, &ConfusionPaint { matrix })
    }

    /// The `n` images with the highest loss, each captioned `true 4, predicted 9 (87 %)`.
    pub fn top_losses_chart(&self, n: usize) -> Result<Chart> {
        let Some(images) = &self.images else {
            return Err(plot_error(
                "this interpretation was made from scores alone and holds no images; make it \
                 with Interpretation::new(&model, &data.test, &device)",
            ));
        };
        let top = self.top_losses(n);
        if top.is_empty() {
            return Err(plot_error("no images to show; ask for at least one"));
        }
        let grid = DigitGrid {
            title: Some(format!(
                "Top {} losses: true digit, prediction (its probability)",
                top.len()
            )),
            digits: top
                .iter()
                .map(|&i| (images.image(i).to_vec(), self.caption(i)))
                .collect(),
            columns: top.len().min(5),
            scale: 3,
            pad: 100,
        };
        let captions: Vec<String> = top.iter().map(|&i| self.caption(i)).collect();
        let description = format!("Top {} losses: {}", top.len(), captions.join("; "));
        Chart::draw(grid.size(), description, &grid)
    }
}

impl fmt::Display for Interpretation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}\n{}", self.report(5), self.confusion_text())
    }
}

/// Softmax of one row of scores (shifted by the maximum, so no score overflows).
pub(crate) fn softmax(scores: &[f32; 10]) -> [f32; 10] {
    let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps = scores.map(|s| ((s - max) as f64).exp());
    let sum: f64 = exps.iter().sum();
    exps.map(|e| (e / sum) as f32)
}

struct ConfusionPaint {
    matrix: [[usize; 10]; 10],
}

impl Paint for ConfusionPaint {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (left, top, cell) = (70i32, 60i32, 46i32);
        let centred = |size| {
            ("sans-serif", size)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center))
        };
        root.draw(&Text::new(
            "Confusion matrix (rows: true digit)",
            (left + 5 * cell, 18),
            centred(18),
        ))
        .map_err(plot_error)?;
        root.draw(&Text::new(
            "predicted digit",
            (left + 5 * cell, top - 28),
            centred(14),
        ))
        .map_err(plot_error)?;
        root.draw(&Text::new(
            "true digit",
            (18, top + 5 * cell),
            centred(14).transform(FontTransform::Rotate270),
        ))
        .map_err(plot_error)?;
        for d in 0..10 {
            let label = d.to_string();
            root.draw(&Text::new(
                label.clone(),
                (left + d * cell + cell / 2, top - 10),
                centred(14),
            ))
            .map_err(plot_error)?;
            root.draw(&Text::new(
                label,
                (left - 14, top + d * cell + cell / 2),
                centred(14),
            ))
            .map_err(plot_error)?;
        }
        for (actual, row) in self.matrix.iter().enumerate() {
            let total: usize = row.iter().sum();
            for (predicted, &count) in row.iter().enumerate() {
                let share = count as f64 / total.max(1) as f64;
                // Right answers in blue, mistakes in red; darker for a larger share.
                let color = if actual == predicted {
                    shade((31, 119, 180), share)
                } else {
                    shade((214, 39, 40), (share * 3.0).min(1.0))
                };
                let (x, y) = (left + predicted as i32 * cell, top + actual as i32 * cell);
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    color.filled(),
                ))
                .map_err(plot_error)?;
                root.draw(&Rectangle::new(
                    [(x, y), (x + cell, y + cell)],
                    RGBColor(220, 220, 220),
                ))
                .map_err(plot_error)?;
                let ink = if share > 0.5 || (actual != predicted && share > 0.17) {
                    WHITE
                } else {
                    BLACK
                };
                root.draw(&Text::new(
                    count.to_string(),
                    (x + cell / 2, y + cell / 2),
                    ("sans-serif", 13)
                        .into_font()
                        .color(&ink)
                        .pos(Pos::new(HPos::Center, VPos::Center)),
                ))
                .map_err(plot_error)?;
            }
        }
        Ok(())
    }
}

/// `color` mixed with white: white at `amount` 0, `color` at 1.
fn shade((r, g, b): (u8, u8, u8), amount: f64) -> RGBColor {
    let mix = |c: u8| (255.0 - (255.0 - c as f64) * amount.clamp(0.0, 1.0)).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}
