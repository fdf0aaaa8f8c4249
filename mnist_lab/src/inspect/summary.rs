//! [`summary`]: a model's layers, in the order the data flows, with measured output shapes.

use std::fmt;

use burn::module::{Content, DisplaySettings, ModuleDisplay, ParamId};
use burn::tensor::Tensor;

use crate::models::Classifier;
use crate::nn::record::{LayerCall, record_calls};
use crate::save::parameter_shapes;
use crate::train::thousands;
use crate::{Result, check};

/// One row of a [`Summary`]: a layer, or a part of the model that could not be measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The field's name, e.g. `conv1` (a dotted path when nested; `fc1 (call 2)` when
    /// `forward` calls the same layer again).
    pub name: String,
    /// Kind and settings, e.g. `Conv2d 1 -> 10, 7 x 7`.
    pub kind: String,
    /// The output shape per image (the batch axis left out), e.g. `[55, 21, 21]`; empty when
    /// it could not be measured (see [`Row::note`]).
    pub output: Vec<usize>,
    /// Parameters (weights and biases) this row holds.
    pub params: usize,
    /// Multiply-adds per image.
    pub multiply_adds: u64,
    /// Why the shape is missing, for a row that was not measured.
    pub note: Option<String>,
}

impl Row {
    /// Values per image in the output (`55 x 21 x 21 = 24255`); 0 when not measured.
    pub fn values(&self) -> usize {
        if self.output.is_empty() {
            0
        } else {
            self.output.iter().product()
        }
    }

    /// The output shape as text, e.g. `55 x 21 x 21`.
    pub fn shape_text(&self) -> String {
        let dims: Vec<String> = self.output.iter().map(usize::to_string).collect();
        dims.join(" x ")
    }
}

/// A table of a model's layers: see [`summary`]. `println!("{summary}")` prints it as
/// aligned text; in a notebook it shows as an HTML table.
#[derive(Clone, Debug)]
pub struct Summary {
    /// The model's type name, e.g. `Conv2Net`.
    pub model: String,
    /// The rows, in the order the data flows through the layers.
    pub rows: Vec<Row>,
    /// All the model's parameters.
    pub total_params: usize,
    /// Multiply-adds per image of the measured layers.
    pub total_multiply_adds: u64,
}

impl Summary {
    /// The first row named `name`.
    pub fn row(&self, name: &str) -> Option<&Row> {
        self.rows.iter().find(|row| row.name == name)
    }

    /// The table as HTML, for notebooks.
    pub fn html(&self) -> String {
        let mut html = format!(
            "<table><caption style=\"text-align:left\"><b>{}</b></caption>\
             <thead><tr><th style=\"text-align:left\">Layer</th>\
             <th style=\"text-align:left\">Kind</th>\
             <th style=\"text-align:right\">Output shape</th>\
             <th style=\"text-align:right\">Values</th>\
             <th style=\"text-align:right\">Parameters</th></tr></thead><tbody>",
            escape(&self.model)
        );
        for row in &self.rows {
            html += &format!(
                "<tr><td style=\"text-align:left\"><code>{}</code></td>\
                 <td style=\"text-align:left\">{}</td>",
                escape(&row.name),
                escape(&row.kind)
            );
            match &row.note {
                Some(note) => {
                    html += &format!(
                        "<td colspan=\"2\" style=\"text-align:left\"><i>{}</i></td>",
                        escape(note)
                    )
                }
                None => {
                    html += &format!(
                        "<td style=\"text-align:right\">{}</td>\
                         <td style=\"text-align:right\">{}</td>",
                        row.shape_text(),
                        thousands(row.values() as f64)
                    )
                }
            }
            html += &format!(
                "<td style=\"text-align:right\">{}</td></tr>",
                thousands(row.params as f64)
            );
        }
        html += &format!("</tbody></table><p>{}</p>", escape(&self.totals_line()));
        html
    }

    fn totals_line(&self) -> String {
        format!(
            "Total: {} parameters, {} multiply-adds per image",
            thousands(self.total_params as f64),
            thousands(self.total_multiply_adds as f64)
        )
    }

    /// Shows the table inline in an evcxr notebook (HTML, with the text as a fallback).
    pub fn evcxr_display(&self) {
        println!(
            "EVCXR_BEGIN_CONTENT text/html\n{}\nEVCXR_END_CONTENT\n\
             EVCXR_BEGIN_CONTENT text/plain\n{self}\nEVCXR_END_CONTENT",
            self.html()
        );
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let header = ["Layer", "Kind", "Output shape", "Values", "Parameters"];
        let cells: Vec<[String; 5]> = self
            .rows
            .iter()
            .map(|row| {
                let (shape, values) = match &row.note {
                    Some(note) => (note.clone(), String::new()),
                    None => (row.shape_text(), thousands(row.values() as f64)),
                };
                [
                    row.name.clone(),
                    row.kind.clone(),
                    shape,
                    values,
                    thousands(row.params as f64),
                ]
            })
            .collect();
        let mut widths = header.map(str::len);
        for row in cells.iter().filter(|row| !row[3].is_empty()) {
            for (width, cell) in widths.iter_mut().zip(row) {
                *width = (*width).max(cell.chars().count());
            }
        }
        for row in cells.iter().filter(|row| row[3].is_empty()) {
            widths[0] = widths[0].max(row[0].len());
            widths[1] = widths[1].max(row[1].len());
        }
        let [w0, w1, w2, w3, w4] = widths;
        writeln!(f, "{}", self.model)?;
        writeln!(
            f,
            "{:w0$}  {:w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
            header[0], header[1], header[2], header[3], header[4]
        )?;
        writeln!(f, "{}", "-".repeat(w0 + w1 + w2 + w3 + w4 + 8))?;
        for (row, cells) in self.rows.iter().zip(&cells) {
            if row.note.is_some() {
                writeln!(f, "{:w0$}  {:w1$}  {}", cells[0], cells[1], cells[2])?;
            } else {
                writeln!(
                    f,
                    "{:w0$}  {:w1$}  {:>w2$}  {:>w3$}  {:>w4$}",
                    cells[0], cells[1], cells[2], cells[3], cells[4]
                )?;
            }
        }
        writeln!(f, "{}", "-".repeat(w0 + w1 + w2 + w3 + w4 + 8))?;
        write!(f, "{}", self.totals_line())
    }
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A table of `model`'s layers in the order the data flows through them: each layer's kind
/// and settings, its output shape per image, the values in that output, its parameters;
/// then the totals, parameters and multiply-adds per image.
///
/// The shapes are measured: one blank 28 x 28 image goes through the model's `forward`, and
/// each of mnist_lab's layers ([`Linear`](crate::nn::Linear), [`Conv2d`](crate::nn::Conv2d))
/// notes its output as it runs. A part of the model that is not one of them (Burn's `Relu`,
/// say) cannot be measured on its own; its row says so, placed after the field it follows
/// in the struct.
///
/// A model whose sizes do not fit MNIST's images gets the error that
/// [`train`](crate::train::train)'s check gives ([`crate::Error::ModelShape`]).
///
/// ```
/// use mnist_lab::models::ConvNet;
/// use mnist_lab::prelude::*;
///
/// let device = mnist_lab::device::cpu();
/// let table = summary(&ConvNet::new(600, 10, &device)).unwrap();
/// let conv1 = table.row("conv1").unwrap();
/// assert_eq!((conv1.shape_text(), conv1.values()), ("10 x 22 x 22".to_string(), 4840));
/// ```
pub fn summary<M: Classifier + ModuleDisplay>(model: &M) -> Result<Summary> {
    let device = model
        .devices()
        .into_iter()
        .next()
        .unwrap_or_else(crate::device::cpu);
    check::check_model(model, &device, 10)?;
    let model = model.valid();
    let image = Tensor::<4>::zeros([1, 1, 28, 28], &device);
    let (_, calls) = record_calls(|| model.forward(image));
    let names = layer_names(&model);
    let shapes = parameter_shapes(&model);
    let params_under = |prefix: &str| -> usize {
        shapes
            .iter()
            .filter(|(path, _)| path.starts_with(&format!("{prefix}.")))
            .map(|(_, dims)| dims.iter().product::<usize>())
            .sum()
    };

    let mut rows: Vec<Row> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    for LayerCall {
        weight,
        kind,
        output,
        fan_in,
    } in calls
    {
        let name = names
            .iter()
            .find(|(id, _)| *id == weight)
            .map(|(_, name)| name.clone())
            .unwrap_or_else(|| "(a layer outside the model)".into());
        let calls_before = seen.iter().filter(|n| **n == name).count();
        seen.push(name.clone());
        let per_image = output[1..].to_vec();
        let values: usize = per_image.iter().product();
        rows.push(Row {
            name: if calls_before == 0 {
                name.clone()
            } else {
                format!("{name} (call {})", calls_before + 1)
            },
            kind,
            output: per_image,
            params: if calls_before == 0 {
                params_under(&name)
            } else {
                0
            },
            multiply_adds: (values * fan_in) as u64,
            note: None,
        });
    }

    // The struct's fields that no measured row covers: other modules (a Relu), and layers
    // that `forward` never calls.
    let fields = fields_of(&model);
    let covers = |field: &str, row: &str| row == field || row.starts_with(&format!("{field}."));
    for (i, (field, kind)) in fields.iter().enumerate() {
        if rows.iter().any(|row| covers(field, &row.name)) {
            continue;
        }
        let params = params_under(field);
        let note = if names.iter().any(|(_, name)| covers(field, name)) {
            "not measured: forward does not use it".to_string()
        } else {
            format!(
                "not measured: {kind} is not a mnist_lab layer{}",
                if kind == "Relu" {
                    " (ReLU keeps its input's shape)"
                } else {
                    ""
                }
            )
        };
        let row = Row {
            name: field.clone(),
            kind: kind.clone(),
            output: Vec::new(),
            params,
            multiply_adds: 0,
            note: Some(note),
        };
        // After the last row of the nearest field declared before it, else first.
        let at = fields[..i]
            .iter()
            .rev()
            .find_map(|(before, _)| rows.iter().position(|row| covers(before, &row.name)))
            .map_or(0, |position| position + 1);
        rows.insert(at, row);
    }

    Ok(Summary {
        model: short_name(std::any::type_name::<M>()),
        total_multiply_adds: rows.iter().map(|row| row.multiply_adds).sum(),
        total_params: burn::module::Module::num_params(&model),
        rows,
    })
}

/// The id of every layer's weight, with the layer's name (`conv1`, `block.fc1`).
fn layer_names<M: burn::module::Module>(model: &M) -> Vec<(ParamId, String)> {
    crate::save::parameters(model)
        .into_iter()
        .filter_map(|(path, id, _)| {
            let layer = match path.as_str() {
                "weight" => "model", // the model is a single layer
                path => path.strip_suffix(".weight")?,
            };
            Some((id, layer.to_string()))
        })
        .collect()
}

/// The model's top-level fields that are modules, in declaration order, with their type's
/// short name (`relu`, `Relu`).
fn fields_of<M: ModuleDisplay>(model: &M) -> Vec<(String, String)> {
    let Some(content) = model.content(Content::new(DisplaySettings::new())) else {
        return Vec::new();
    };
    content
        .attributes
        .into_iter()
        .filter(|attribute| attribute.ty.contains("::") && !attribute.ty.starts_with("core::"))
        .map(|attribute| (attribute.name, short_name(&attribute.ty)))
        .collect()
}

/// `burn_nn::activation::relu::Relu` as `Relu` (generic arguments dropped).
fn short_name(type_name: &str) -> String {
    let base = type_name.split('<').next().unwrap_or(type_name);
    base.rsplit("::").next().unwrap_or(base).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_drop_paths_and_generics() {
        assert_eq!(short_name("burn_nn::activation::relu::Relu"), "Relu");
        assert_eq!(short_name("a::Wrapper<b::C>"), "Wrapper");
    }
}
