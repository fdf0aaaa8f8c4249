//! What a convolution's filters look like, what they make of a digit, and one digit's
//! prediction.

use std::fmt;

use burn::tensor::{Device, Tensor, TensorData};
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::data::{IMAGE_PIXELS, IMAGE_SIDE};
use crate::models::Classifier;
use crate::nn::Conv2d;
use crate::plot::{Chart, Paint, draw_digit, plot_error};
use crate::{Error, Result};

/// The most output channels [`filters_chart`] and [`feature_maps_chart`] draw.
const MAX_CHANNELS: usize = 64;

/// Negative values in blue, zero white, positive values in red; `value` in `[-1, 1]`.
fn diverging(value: f32) -> RGBColor {
    let v = value.clamp(-1.0, 1.0) as f64;
    let (r, g, b) = if v < 0.0 {
        (33.0, 102.0, 172.0)
    } else {
        (178.0, 24.0, 43.0)
    };
    let a = v.abs();
    let mix = |c: f64| (255.0 - (255.0 - c) * a).round() as u8;
    RGBColor(mix(r), mix(g), mix(b))
}

/// Tiles of signed values on a diverging scale, with a legend: the filters and the feature
/// maps.
struct Tiles {
    title: String,
    /// The digit drawn first, at the left (feature maps only).
    digit: Option<Vec<u8>>,
    /// Each tile's values (row by row), its height and width, and its caption.
    tiles: Vec<(Vec<f32>, usize, usize, String)>,
    columns: usize,
    scale: i32,
    /// The value drawn at full colour (the largest absolute value).
    limit: f32,
}

impl Tiles {
    const TITLE_H: i32 = 34;
    const CAPTION_H: i32 = 16;
    const LEGEND_H: i32 = 46;
    const DIGIT_SCALE: i32 = 4;

    fn tile_size(&self) -> (i32, i32) {
        let (h, w) = self
            .tiles
            .first()
            .map_or((1, 1), |(_, h, w, _)| (*h as i32, *w as i32));
        (w * self.scale + 10, h * self.scale + Self::CAPTION_H + 6)
    }

    fn digit_width(&self) -> i32 {
        if self.digit.is_some() {
            IMAGE_SIDE as i32 * Self::DIGIT_SCALE + 30
        } else {
            0
        }
    }

    fn size(&self) -> (u32, u32) {
        let (tw, th) = self.tile_size();
        let rows = self.tiles.len().div_ceil(self.columns) as i32;
        let width = (self.digit_width() + self.columns as i32 * tw + 20).max(420);
        let digit_h = if self.digit.is_some() {
            IMAGE_SIDE as i32 * Self::DIGIT_SCALE + Self::CAPTION_H
        } else {
            0
        };
        let height = Self::TITLE_H + (rows * th).max(digit_h) + Self::LEGEND_H;
        (width as u32, height as u32)
    }
}

impl Paint for Tiles {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (width, height) = root.dim_in_pixel();
        let (width, height) = (width as i32, height as i32);
        let centred = |size| {
            ("sans-serif", size)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top))
        };
        root.draw(&Text::new(self.title.clone(), (width / 2, 8), centred(16)))
            .map_err(plot_error)?;
        let left = 10 + self.digit_width();
        if let Some(digit) = &self.digit {
            let side = IMAGE_SIDE as i32 * Self::DIGIT_SCALE;
            root.draw(&Text::new(
                "the digit",
                (10 + side / 2, Self::TITLE_H),
                centred(13),
            ))
            .map_err(plot_error)?;
            let top = Self::TITLE_H + Self::CAPTION_H;
            root.draw(&Rectangle::new(
                [(9, top - 1), (11 + side, top + side + 1)],
                RGBColor(200, 200, 200),
            ))
            .map_err(plot_error)?;
            draw_digit(root, digit, IMAGE_SIDE, (10, top), Self::DIGIT_SCALE)?;
        }
        let (tw, th) = self.tile_size();
        let limit = self.limit.max(f32::MIN_POSITIVE);
        for (i, (values, h, w, caption)) in self.tiles.iter().enumerate() {
            let x0 = left + (i % self.columns) as i32 * tw;
            let y0 = Self::TITLE_H + (i / self.columns) as i32 * th;
            root.draw(&Text::new(
                caption.clone(),
                (x0 + tw / 2 - 5, y0),
                centred(12),
            ))
            .map_err(plot_error)?;
            let top = y0 + Self::CAPTION_H;
            for (p, &v) in values.iter().enumerate() {
                let (px, py) = ((p % w) as i32, (p / w) as i32);
                let corner = (x0 + px * self.scale, top + py * self.scale);
                root.draw(&Rectangle::new(
                    [corner, (corner.0 + self.scale, corner.1 + self.scale)],
                    diverging(v / limit).filled(),
                ))
                .map_err(plot_error)?;
            }
            let (w, h) = (*w as i32 * self.scale, *h as i32 * self.scale);
            root.draw(&Rectangle::new(
                [(x0 - 1, top - 1), (x0 + w, top + h)],
                RGBColor(200, 200, 200),
            ))
            .map_err(plot_error)?;
        }
        // The legend: the colour scale from -limit to +limit.
        let (bar_w, bar_h) = (240, 12);
        let x0 = (width - bar_w) / 2;
        let y0 = height - Self::LEGEND_H + 8;
        for x in 0..bar_w {
            let v = 2.0 * x as f32 / (bar_w - 1) as f32 - 1.0;
            root.draw(&Rectangle::new(
                [(x0 + x, y0), (x0 + x + 1, y0 + bar_h)],
                diverging(v).filled(),
            ))
            .map_err(plot_error)?;
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + bar_w, y0 + bar_h)],
            RGBColor(160, 160, 160),
        ))
        .map_err(plot_error)?;
        let labels = [
            (x0, format!("{:.2}", -self.limit)),
            (x0 + bar_w / 2, "0".to_string()),
            (x0 + bar_w, format!("+{:.2}", self.limit)),
        ];
        for (x, label) in labels {
            root.draw(&Text::new(label, (x, y0 + bar_h + 3), centred(12)))
                .map_err(plot_error)?;
        }
        Ok(())
    }
}

/// The values of a tensor as `f32`s.
fn values_of<const D: usize>(tensor: Tensor<D>) -> Result<Vec<f32>> {
    crate::device::read(tensor)
        .convert::<f32>()
        .try_to_vec::<f32>()
        .map_err(|e| Error::Device {
            message: format!("could not read the tensor's values: {e:?}"),
        })
}

fn largest_magnitude(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// Each kernel of `conv` as a small image, on a diverging scale (blue below zero, white at
/// zero, red above, the legend giving the largest weight).
///
/// A layer with one input channel (the lecture's `conv1`) shows one tile per filter; a
/// layer with several (`conv2`) shows one row per filter, one tile per input channel.
///
/// ```
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// let conv1 = Conv2dConfig::new([1, 10], [7, 7]).init(&device);
/// let chart = filters_chart(&conv1).unwrap();
/// assert!(chart.svg().contains("10 filters"));
/// ```
pub fn filters_chart(conv: &Conv2d) -> Result<Chart> {
    let [c_out, c_in, kh, kw] = conv.weight.dims();
    let shown = c_out.min(MAX_CHANNELS);
    let values = values_of(conv.weight.val())?;
    let kernel = kh * kw;
    let mut tiles = Vec::new();
    for o in 0..shown {
        for i in 0..c_in {
            let start = (o * c_in + i) * kernel;
            let caption = if c_in == 1 {
                format!("{o}")
            } else {
                format!("{o}.{i}")
            };
            tiles.push((values[start..start + kernel].to_vec(), kh, kw, caption));
        }
    }
    let limit = largest_magnitude(&values);
    let more = if shown < c_out {
        format!(" (the first {shown})")
    } else {
        String::new()
    };
    let title = if c_in == 1 {
        format!("{c_out} filters of {kh} x {kw}{more}")
    } else {
        format!("{c_out} filters of {c_in} x {kh} x {kw}{more}: filter.channel")
    };
    let scale = (70 / kh.max(kw) as i32).clamp(3, 12);
    let grid = Tiles {
        title: title.clone(),
        digit: None,
        tiles,
        columns: if c_in == 1 { shown.min(10) } else { c_in },
        scale,
        limit,
    };
    let description = format!(
        "{title}; weights from {:.3} to {:.3}",
        min(&values),
        max(&values)
    );
    Chart::draw(grid.size(), description, &grid)
}

fn min(values: &[f32]) -> f32 {
    values.iter().copied().fold(f32::INFINITY, f32::min)
}

fn max(values: &[f32]) -> f32 {
    values.iter().copied().fold(f32::NEG_INFINITY, f32::max)
}

/// `image` (784 pixels, as `data.test.image(i)` gives them) as a batch of one on `device`,
/// scaled as training sees it (pixel / 255).
fn image_tensor(image: &[u8], device: &Device) -> Result<Tensor<4>> {
    if image.len() != IMAGE_PIXELS {
        return Err(Error::setting(
            "image",
            format!("{} pixels", image.len()),
            format!(
                "it must be one MNIST image of {IMAGE_SIDE} x {IMAGE_SIDE} = {IMAGE_PIXELS} \
                 pixels, e.g. data.test.image(0)"
            ),
        ));
    }
    let pixels: Vec<f32> = image.iter().map(|&p| f32::from(p) / 255.0).collect();
    Ok(Tensor::from_data(
        TensorData::new(pixels, [1, 1, IMAGE_SIDE, IMAGE_SIDE]),
        device,
    ))
}

/// What `conv` makes of one digit: the digit, then each output channel (feature map) on a
/// diverging scale. `conv` must take the images themselves (one input channel), as the
/// lecture's `conv1` does.
///
/// ```
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// let conv1 = Conv2dConfig::new([1, 10], [7, 7]).init(&device);
/// let data = Mnist::synthetic(10, 10, 1);
/// let chart = feature_maps_chart(&conv1, data.test.image(0)).unwrap();
/// assert!(chart.description().contains("10 feature maps of 22 x 22"));
/// ```
pub fn feature_maps_chart(conv: &Conv2d, image: &[u8]) -> Result<Chart> {
    let [_, c_in, _, _] = conv.weight.dims();
    if c_in != 1 {
        return Err(Error::setting(
            "conv",
            format!("a layer taking {c_in} channels"),
            "feature_maps_chart takes a first convolution, which sees the image itself (one \
             channel), such as the lecture's conv1",
        ));
    }
    let device = conv.weight.val().device();
    let maps = conv.forward(image_tensor(image, &device)?);
    let [_, channels, h, w] = maps.dims();
    let values = values_of(maps)?;
    let shown = channels.min(MAX_CHANNELS);
    let tiles = (0..shown)
        .map(|c| {
            (
                values[c * h * w..(c + 1) * h * w].to_vec(),
                h,
                w,
                format!("{c}"),
            )
        })
        .collect();
    let title = format!("{channels} feature maps of {h} x {w}, one per filter");
    let grid = Tiles {
        title: title.clone(),
        digit: Some(image.to_vec()),
        tiles,
        columns: shown.min(5),
        scale: 3,
        limit: largest_magnitude(&values),
    };
    let description = format!(
        "{title}; values from {:.2} to {:.2}",
        min(&values),
        max(&values)
    );
    Chart::draw(grid.size(), description, &grid)
}

/// The ten probabilities (softmax of the scores) a model gives one digit: see [`predict`].
#[derive(Clone, Debug)]
pub struct Prediction {
    /// The probability of each digit, 0 to 9; they sum to 1.
    pub probabilities: [f32; 10],
    image: Vec<u8>,
}

impl Prediction {
    /// The most probable digit.
    pub fn digit(&self) -> u8 {
        (0..10).fold(0, |best, d| {
            if self.probabilities[d] > self.probabilities[best] {
                d
            } else {
                best
            }
        }) as u8
    }

    /// The digit next to a bar chart of the ten probabilities.
    pub fn chart(&self) -> Result<Chart> {
        Chart::draw((640, 240), self.to_string(), self)
    }

    /// Shows [`Prediction::chart`] in an evcxr notebook.
    pub fn evcxr_display(&self) {
        match self.chart() {
            Ok(chart) => chart.evcxr_display(),
            Err(error) => println!("{self} (the chart could not be drawn: {error})"),
        }
    }
}

/// `predicted 7 (98 %); 1: 1 %, 9: 1 %`: the prediction, then the other digits given 1 % or
/// more.
impl fmt::Display for Prediction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let best = self.digit();
        write!(
            f,
            "predicted {best} ({:.0} %)",
            100.0 * self.probabilities[best as usize]
        )?;
        let mut others: Vec<(usize, f32)> = self
            .probabilities
            .iter()
            .copied()
            .enumerate()
            .filter(|&(d, p)| d != best as usize && p >= 0.01)
            .collect();
        others.sort_by(|a, b| b.1.total_cmp(&a.1));
        if !others.is_empty() {
            let parts: Vec<String> = others
                .iter()
                .map(|(d, p)| format!("{d}: {:.0} %", 100.0 * p))
                .collect();
            write!(f, "; {}", parts.join(", "))?;
        }
        Ok(())
    }
}

impl Paint for Prediction {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let scale = 6;
        let side = IMAGE_SIDE as i32 * scale;
        let top = (root.dim_in_pixel().1 as i32 - side) / 2;
        root.draw(&Rectangle::new(
            [(11, top - 1), (13 + side, top + side + 1)],
            RGBColor(200, 200, 200),
        ))
        .map_err(plot_error)?;
        draw_digit(root, &self.image, IMAGE_SIDE, (12, top), scale)?;
        let (_, bars) = root.split_horizontally(side + 30);
        let mut chart = ChartBuilder::on(&bars)
            .caption(format!("Prediction: {}", self.digit()), ("sans-serif", 16))
            .margin(8)
            .x_label_area_size(28)
            .y_label_area_size(44)
            .build_cartesian_2d(-0.5f64..9.5f64, 0f64..1.0f64)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .disable_x_mesh()
            .x_labels(10)
            .x_label_formatter(&|x| format!("{:.0}", x))
            .y_labels(5)
            .y_label_formatter(&|y| format!("{:.0} %", y * 100.0))
            .y_desc("probability")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        let best = self.digit() as usize;
        chart
            .draw_series(self.probabilities.iter().enumerate().map(|(d, &p)| {
                let color = if d == best {
                    RGBColor(31, 119, 180)
                } else {
                    RGBColor(150, 150, 150)
                };
                let x = d as f64;
                Rectangle::new([(x - 0.35, 0.0), (x + 0.35, p as f64)], color.filled())
            }))
            .map_err(plot_error)?;
        Ok(())
    }
}

/// The ten probabilities `model` gives `image` (784 pixels, e.g. `data.test.image(0)`):
/// the softmax of its scores, the probabilities cross-entropy trains. In a notebook the
/// result shows as the digit next to a bar chart of them.
///
/// ```
/// use mnist_lab::models::FcNet;
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// let model = FcNet::new(784, 32, 10, &device);
/// let data = Mnist::synthetic(10, 10, 1);
/// let prediction = predict(&model, data.test.image(0)).unwrap();
/// let total: f32 = prediction.probabilities.iter().sum();
/// assert!((total - 1.0).abs() < 1e-5);
/// ```
pub fn predict<M: Classifier>(model: &M, image: &[u8]) -> Result<Prediction> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(crate::device::cpu);
    let model = model.valid();
    let scores = values_of(model.forward(image_tensor(image, &device)?))?;
    if scores.len() != 10 {
        return Err(Error::ModelShape {
            message: format!(
                "the model gives {} scores per image, but a digit needs 10, one per digit",
                scores.len()
            ),
        });
    }
    let mut row = [0.0f32; 10];
    row.copy_from_slice(&scores);
    Ok(Prediction {
        probabilities: super::interpret::softmax(&row),
        image: image.to_vec(),
    })
}
