//! Loss curves and digit grids as SVG, shown inline in evcxr notebooks or saved to files.
//!
//! A [`Chart`] holds an SVG document. In a notebook, a cell whose last expression is a
//! `Chart` displays it (evcxr calls [`Chart::evcxr_display`]); elsewhere,
//! [`Chart::save`] writes it out.
//!
//! ```
//! use mnist_lab::plot::loss_chart;
//! # use mnist_lab::train::TrainingReport;
//! # let report: TrainingReport = serde_json::from_str(r#"{"model":"fc","epochs":1,"steps":3,
//! #   "batch_size":100,"learning_rate":0.001,"seed":1,"losses":[2.3,2.2,2.0],
//! #   "epoch_seconds":[1.0],"epoch_images_per_second":[300.0],"train_seconds":1.0,
//! #   "images_per_second":300.0,"test_accuracy":null,"test_total":null,"device":"cpu (flex)"}"#).unwrap();
//! let chart = loss_chart(&report).unwrap();
//! assert!(chart.svg().starts_with("<svg"));
//! ```

use std::fmt;
use std::path::Path;
use std::sync::Once;

use base64::Engine;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::data::{IMAGE_SIDE, Split};
use crate::report::TrainingReport;
use crate::{Error, Result};

/// A chart: an SVG document, the same picture as a PNG, and a one-line description.
///
/// In a notebook it shows as the SVG, with the PNG for viewers that do not render SVG from
/// an untrusted notebook (JupyterLab) and the description as its text.
#[derive(Clone)]
pub struct Chart {
    svg: String,
    png: Vec<u8>,
    description: String,
}

impl Chart {
    /// The SVG document.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// The same chart as a PNG file's bytes.
    pub fn png(&self) -> &[u8] {
        &self.png
    }

    /// A one-line description, e.g. `Training loss: fc, 240 steps, last 2.21`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Writes the chart to `path`: SVG for a `.svg` name, PNG for a `.png` name.
    ///
    /// The file is written whole or not at all (a temporary file, then a rename), and a
    /// folder that does not exist is reported before anything is drawn or written.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let extension = path.extension().and_then(|e| e.to_str());
        let bytes = match extension.map(str::to_ascii_lowercase).as_deref() {
            Some("svg") => self.svg.as_bytes(),
            Some("png") => self.png.as_slice(),
            _ => {
                return Err(plot_error(format!(
                    "cannot tell which format to write to {}: name the file .svg or .png",
                    path.display()
                )));
            }
        };
        crate::output::check_file(path)?;
        crate::output::write_atomic(path, bytes)
    }

    /// Shows the chart inline in an evcxr notebook (evcxr calls this for a cell's value):
    /// the PNG, the SVG and the description, for the notebook viewer to pick from.
    pub fn evcxr_display(&self) {
        let png = base64::engine::general_purpose::STANDARD.encode(&self.png);
        println!(
            "EVCXR_BEGIN_CONTENT image/png\n{png}\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/plain\n{}\nEVCXR_END_CONTENT",
            self.svg, self.description
        );
    }

    /// Draws a chart of `size` pixels as SVG only (the live display redraws this way).
    pub(crate) fn svg_of(size: (u32, u32), paint: &impl Paint) -> Result<String> {
        register_font();
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
            root.fill(&WHITE).map_err(plot_error)?;
            paint.paint(&root)?;
            root.present().map_err(plot_error)?;
        }
        Ok(svg)
    }

    /// Draws a chart of `size` pixels twice, as SVG and as PNG, with `paint`.
    pub(crate) fn draw(
        size: (u32, u32),
        description: impl Into<String>,
        paint: &impl Paint,
    ) -> Result<Chart> {
        register_font();
        let svg = Chart::svg_of(size, paint)?;
        let mut pixels = vec![255u8; size.0 as usize * size.1 as usize * 3];
        {
            let root = BitMapBackend::with_buffer(&mut pixels, size).into_drawing_area();
            paint.paint(&root)?;
            root.present().map_err(plot_error)?;
        }
        Ok(Chart {
            svg,
            png: encode_png(&pixels, size)?,
            description: description.into(),
        })
    }
}

/// Shows the sizes of the SVG and the PNG, not their contents (`{:?}` of a chart).
impl fmt::Debug for Chart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chart")
            .field("svg", &format_args!("{} bytes", self.svg.len()))
            .field("png", &format_args!("{} bytes", self.png.len()))
            .field("description", &self.description)
            .finish()
    }
}

/// The description.
impl fmt::Display for Chart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.description)
    }
}

/// A chart's drawing, done once on an SVG canvas and once on a bitmap.
pub(crate) trait Paint {
    /// Draws on `root`, already filled white.
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()>;
}

/// The font every chart's text is drawn in ("sans-serif" in the SVG; in the PNG, this
/// subset of DejaVu Sans, so that no font needs to be installed: see `assets/`).
const FONT: &[u8] = include_bytes!("../assets/DejaVuSans-subset.ttf");

fn register_font() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // The font is part of the crate; a failure here is a bug, caught by the tests.
        let _ = plotters::style::register_font("sans-serif", FontStyle::Normal, FONT);
    });
}

/// `pixels` (RGB, row by row) as a PNG file.
fn encode_png(pixels: &[u8], (width, height): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, width, height);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    encoder.set_compression(png::Compression::High);
    let mut writer = encoder.write_header().map_err(plot_error)?;
    writer.write_image_data(pixels).map_err(plot_error)?;
    writer.finish().map_err(plot_error)?;
    Ok(out)
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

pub(crate) fn plot_error(e: impl std::fmt::Display) -> Error {
    Error::Plot {
        message: e.to_string(),
    }
}

/// A moving average over `window` steps (shorter at the start).
pub fn smooth(values: &[f32], window: usize) -> Vec<f32> {
    let window = window.max(1);
    let mut sum = 0.0f64;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            sum += v as f64;
            if i >= window {
                sum -= values[i - window] as f64;
            }
            (sum / (i + 1).min(window) as f64) as f32
        })
        .collect()
}

fn smoothing_window(steps: usize) -> usize {
    (steps / 30).clamp(1, 50)
}

/// One run's loss per step (thin) and its moving average (thick).
pub fn loss_chart(report: &TrainingReport) -> Result<Chart> {
    let title = format!("Training loss: {}", report.name);
    let last = smooth(&report.losses, smoothing_window(report.losses.len()))
        .last()
        .copied();
    let description = match last {
        Some(last) => format!("{title}, {} steps, last {last:.2}", report.losses.len()),
        None => title.clone(),
    };
    draw_losses(title, description, std::slice::from_ref(report), true)
}

/// [`loss_chart`]'s SVG alone: the live display of a training run redraws it about once a
/// second, and needs no PNG.
pub fn loss_chart_svg(report: &TrainingReport) -> Result<String> {
    let title = format!("Training loss: {}", report.name);
    Chart::svg_of(SIZE, &losses(title, std::slice::from_ref(report), true)?)
}

/// Several runs' smoothed losses on one chart, with a legend.
pub fn compare_chart(reports: &[TrainingReport]) -> Result<Chart> {
    let runs: Vec<String> = reports
        .iter()
        .map(|r| match r.test_accuracy {
            Some(accuracy) => format!("{} ({accuracy:.1} %)", r.name),
            None => r.name.clone(),
        })
        .collect();
    let title = "Training loss per step (smoothed)";
    let description = format!("{title}: {}", runs.join(", "));
    draw_losses(title.into(), description, reports, false)
}

/// The loss curves of [`loss_chart`] and [`compare_chart`].
struct Losses<'a> {
    title: String,
    reports: &'a [TrainingReport],
    raw: bool,
    steps: usize,
    bottom: f32,
    top: f32,
}

fn draw_losses(
    title: String,
    description: String,
    reports: &[TrainingReport],
    raw: bool,
) -> Result<Chart> {
    Chart::draw(SIZE, description, &losses(title, reports, raw)?)
}

/// The size of the loss charts, in pixels.
const SIZE: (u32, u32) = (760, 420);

/// The drawing of [`loss_chart`] and [`compare_chart`].
fn losses(title: String, reports: &[TrainingReport], raw: bool) -> Result<Losses<'_>> {
    let steps = reports.iter().map(|r| r.losses.len()).max().unwrap_or(0);
    if steps == 0 {
        return Err(plot_error("no training steps to plot; train a model first"));
    }
    let finite: Vec<f32> = reports
        .iter()
        .flat_map(|r| r.losses.iter().copied())
        .filter(|v| v.is_finite())
        .collect();
    if finite.is_empty() {
        return Err(plot_error("every loss is NaN or infinite; nothing to plot"));
    }
    let high = finite.iter().copied().fold(f32::MIN, f32::max);
    let low = finite.iter().copied().fold(f32::MAX, f32::min);
    // Zoom on the data (losses near 2.3 that fall slowly would look flat from 0).
    let pad = ((high - low) * 0.05).max(1e-3);
    Ok(Losses {
        title,
        reports,
        raw,
        steps,
        bottom: (low - pad).max(0.0),
        top: high + pad,
    })
}

impl Paint for Losses<'_> {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let mut chart = ChartBuilder::on(root)
            .caption(&self.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0..self.steps, self.bottom..self.top)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        for (i, report) in self.reports.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if self.raw {
                let points = report.losses.iter().enumerate().map(|(s, &l)| (s, l));
                chart
                    .draw_series(LineSeries::new(points, color.mix(0.3)))
                    .map_err(plot_error)?
                    .label("loss per step")
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.mix(0.3))
                    });
            }
            let smoothed = smooth(&report.losses, smoothing_window(report.losses.len()));
            let label = if self.raw {
                "moving average".to_string()
            } else {
                match report.test_accuracy {
                    Some(accuracy) => format!("{} ({accuracy:.1} %)", report.name),
                    None => report.name.clone(),
                }
            };
            let style = color.stroke_width(2);
            chart
                .draw_series(LineSeries::new(smoothed.into_iter().enumerate(), style))
                .map_err(plot_error)?
                .label(label)
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], style));
        }
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .position(SeriesLabelPosition::LowerLeft)
            .draw()
            .map_err(plot_error)?;
        Ok(())
    }
}

/// Draws a greyscale image of `side` x `side` pixels (`0` white, `255` black) with its top
/// left corner at `at`, each pixel a square of `scale` x `scale`.
pub(crate) fn draw_digit<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    pixels: &[u8],
    side: usize,
    at: (i32, i32),
    scale: i32,
) -> Result<()> {
    for (p, &v) in pixels.iter().enumerate() {
        if v == 0 {
            continue;
        }
        let (px, py) = ((p % side) as i32, (p / side) as i32);
        let shade = 255 - v;
        let top_left = (at.0 + px * scale, at.1 + py * scale);
        let bottom_right = (top_left.0 + scale, top_left.1 + scale);
        root.draw(&Rectangle::new(
            [top_left, bottom_right],
            RGBColor(shade, shade, shade).filled(),
        ))
        .map_err(plot_error)?;
    }
    Ok(())
}

/// A grid of captioned digits: [`digits_chart`] and the top losses.
pub(crate) struct DigitGrid {
    /// A title above the grid, if any.
    pub title: Option<String>,
    /// Each digit's pixels (28 x 28) and its caption.
    pub digits: Vec<(Vec<u8>, String)>,
    /// Digits per row.
    pub columns: usize,
    /// Pixels per image pixel.
    pub scale: i32,
    /// Extra width per cell, for long captions.
    pub pad: i32,
}

impl DigitGrid {
    const LABEL_H: i32 = 16;

    fn cell(&self) -> (i32, i32) {
        let side = IMAGE_SIDE as i32 * self.scale;
        (side + 8 + self.pad, side + Self::LABEL_H + 8)
    }

    fn title_h(&self) -> i32 {
        if self.title.is_some() { 30 } else { 0 }
    }

    /// The grid's size in pixels.
    pub fn size(&self) -> (u32, u32) {
        let (w, h) = self.cell();
        let rows = self.digits.len().div_ceil(self.columns.max(1));
        let width = (self.columns as i32 * w).max(if self.title.is_some() { 400 } else { 0 });
        (width as u32, (rows as i32 * h + self.title_h()) as u32)
    }
}

impl Paint for DigitGrid {
    fn paint<DB: DrawingBackend>(&self, root: &DrawingArea<DB, Shift>) -> Result<()> {
        let (cell_w, cell_h) = self.cell();
        if let Some(title) = &self.title {
            let style = ("sans-serif", 16)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Center));
            let width = root.dim_in_pixel().0 as i32;
            root.draw(&Text::new(title.clone(), (width / 2, 15), style))
                .map_err(plot_error)?;
        }
        for (i, (pixels, caption)) in self.digits.iter().enumerate() {
            let x0 = (i % self.columns) as i32 * cell_w;
            let y0 = (i / self.columns) as i32 * cell_h + self.title_h();
            let style = ("sans-serif", 13)
                .into_font()
                .color(&BLACK)
                .pos(Pos::new(HPos::Center, VPos::Top));
            root.draw(&Text::new(
                caption.clone(),
                (x0 + cell_w / 2, y0 + 2),
                style,
            ))
            .map_err(plot_error)?;
            let left = x0 + (cell_w - IMAGE_SIDE as i32 * self.scale) / 2;
            draw_digit(
                root,
                pixels,
                IMAGE_SIDE,
                (left, y0 + Self::LABEL_H),
                self.scale,
            )?;
        }
        Ok(())
    }
}

/// The first `count` images of `split` in a grid, each with its label.
pub fn digits_chart(split: &Split, count: usize) -> Result<Chart> {
    let count = count.min(split.len());
    if count == 0 {
        return Err(plot_error("the split holds no images"));
    }
    let labels: Vec<String> = (0..count).map(|i| split.label(i).to_string()).collect();
    let grid = DigitGrid {
        title: None,
        digits: (0..count)
            .map(|i| (split.image(i).to_vec(), labels[i].clone()))
            .collect(),
        columns: count.min(10),
        scale: 3,
        pad: 0,
    };
    let description = format!("{count} digits, labelled {}", labels.join(" "));
    Chart::draw(grid.size(), description, &grid)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_averages_the_last_window() {
        assert_eq!(smooth(&[1.0, 3.0, 5.0, 7.0], 2), vec![1.0, 2.0, 4.0, 6.0]);
    }
}
