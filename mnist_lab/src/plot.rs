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

use std::path::Path;

use plotters::prelude::*;

use crate::data::{IMAGE_SIDE, Split};
use crate::train::TrainingReport;
use crate::{Error, Result};

/// An SVG chart.
#[derive(Clone, Debug)]
pub struct Chart {
    svg: String,
}

impl Chart {
    /// The SVG document.
    pub fn svg(&self) -> &str {
        &self.svg
    }

    /// Writes the SVG to `path`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        std::fs::write(path, &self.svg).map_err(|e| Error::io("writing the plot", path, e))
    }

    /// Shows the chart inline in an evcxr notebook (evcxr calls this for a cell's value).
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT image/svg+xml\n{}\nEVCXR_END_CONTENT",
            self.svg
        );
    }
}

const COLORS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
];

fn plot_error(e: impl std::fmt::Display) -> Error {
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
    draw(
        &format!("Training loss: {}", report.name),
        std::slice::from_ref(report),
        true,
    )
}

/// Several runs' smoothed losses on one chart, with a legend.
pub fn compare_chart(reports: &[TrainingReport]) -> Result<Chart> {
    draw("Training loss per step (smoothed)", reports, false)
}

fn draw(title: &str, reports: &[TrainingReport], raw: bool) -> Result<Chart> {
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
    let (bottom, top) = ((low - pad).max(0.0), high + pad);

    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (760, 420)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(0..steps, bottom..top)
            .map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc("step")
            .y_desc("loss")
            .light_line_style(WHITE.mix(0.0))
            .draw()
            .map_err(plot_error)?;
        for (i, report) in reports.iter().enumerate() {
            let color = COLORS[i % COLORS.len()];
            if raw {
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
            let label = if raw {
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
        root.present().map_err(plot_error)?;
    }
    Ok(Chart { svg })
}

/// The first `count` images of `split` in a grid, each with its label.
pub fn digits_chart(split: &Split, count: usize) -> Result<Chart> {
    let count = count.min(split.len());
    if count == 0 {
        return Err(plot_error("the split holds no images"));
    }
    let columns = count.min(10);
    let rows = count.div_ceil(columns);
    let (scale, label_h) = (3i32, 16i32);
    let cell_w = IMAGE_SIDE as i32 * scale + 8;
    let cell_h = IMAGE_SIDE as i32 * scale + label_h + 8;
    let size = (
        (columns as i32 * cell_w) as u32,
        (rows as i32 * cell_h) as u32,
    );
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, size).into_drawing_area();
        root.fill(&WHITE).map_err(plot_error)?;
        for i in 0..count {
            let (x0, y0) = (
                (i % columns) as i32 * cell_w + 4,
                (i / columns) as i32 * cell_h,
            );
            let label = format!("{}", split.label(i));
            root.draw(&Text::new(
                label,
                (x0 + cell_w / 2 - 8, y0 + 2),
                ("sans-serif", 14),
            ))
            .map_err(plot_error)?;
            let y0 = y0 + label_h;
            for (p, &v) in split.image(i).iter().enumerate() {
                if v == 0 {
                    continue;
                }
                let (px, py) = ((p % IMAGE_SIDE) as i32, (p / IMAGE_SIDE) as i32);
                let shade = 255 - v;
                let top_left = (x0 + px * scale, y0 + py * scale);
                let bottom_right = (top_left.0 + scale, top_left.1 + scale);
                root.draw(&Rectangle::new(
                    [top_left, bottom_right],
                    RGBColor(shade, shade, shade).filled(),
                ))
                .map_err(plot_error)?;
            }
        }
        root.present().map_err(plot_error)?;
    }
    Ok(Chart { svg })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smoothing_averages_the_last_window() {
        assert_eq!(smooth(&[1.0, 3.0, 5.0, 7.0], 2), vec![1.0, 2.0, 4.0, 6.0]);
    }
}
