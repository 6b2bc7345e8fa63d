//! The prediction panel (probability bars, input warnings, the Grad-CAM class) and the
//! image's facts (size, bit depth, format, DICOM tags that are not about the patient).
use super::state::{Loaded, ViewerSettings};
use super::worker::AnalysisKey;
use crate::app::notices::{error_text, warning_text};
use crate::data::gray::GrayImage;
use egui::{Color32, RichText};
use std::path::Path;

/// Colour of the research-use notice.
pub const NOTICE_COLOR: Color32 = Color32::from_rgb(200, 120, 0);

/// "true: COVID-19, predicted: Normal" for an image opened from a review.
pub fn truth_line(classes: &[String], truth: Option<usize>, predicted: Option<usize>) -> String {
    let name = |c: usize| classes.get(c).map(String::as_str).unwrap_or("?");
    match (truth, predicted) {
        (Some(t), Some(p)) => format!("true: {}, predicted: {}", name(t), name(p)),
        (Some(t), None) => format!("true: {}", name(t)),
        (None, Some(p)) => format!("predicted: {}", name(p)),
        (None, None) => String::new(),
    }
}

/// Probabilities, warnings and the Grad-CAM class picker for the shown image.
#[allow(clippy::too_many_arguments)]
pub fn prediction_ui(
    ui: &mut egui::Ui,
    l: &Loaded,
    classes: &[String],
    rule: Option<&str>,
    truth: Option<usize>,
    key: Option<AnalysisKey>,
    settings: &ViewerSettings,
    cam_class: &mut Option<usize>,
) {
    ui.heading("Prediction");
    let Some(key) = key else {
        ui.label("Load a model to see class probabilities.");
        return;
    };
    match &l.analysis {
        None => {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label("predicting…");
            });
        }
        Some((_, Err(e))) => {
            error_text(ui, e);
        }
        Some((k, Ok(a))) => {
            if *k != key || l.pending.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("updating…");
                });
            }
            for (c, name) in classes.iter().enumerate() {
                let p = a.probs.get(c).copied().unwrap_or(0.0);
                let top = c == a.predicted;
                ui.horizontal(|ui| {
                    let label = ui.add_sized(
                        [90.0, 18.0],
                        egui::Label::new(if top {
                            RichText::new(name).strong()
                        } else {
                            RichText::new(name)
                        }),
                    );
                    let bar = egui::ProgressBar::new(p)
                        .desired_width(150.0)
                        .fill(if top {
                            Color32::from_rgb(200, 80, 60)
                        } else {
                            Color32::from_rgb(70, 110, 160)
                        })
                        .text(format!("{:.1} %", 100.0 * p));
                    ui.add(bar).labelled_by(label.id);
                });
            }
            ui.label(
                RichText::new(format!(
                    "Predicted: {}{}",
                    classes.get(a.predicted).map(String::as_str).unwrap_or("?"),
                    if a.tta { " (TTA)" } else { "" }
                ))
                .strong(),
            );
            if let Some(rule) = rule {
                ui.label(RichText::new(rule).small());
            }
            if truth.is_some() {
                ui.label(truth_line(classes, truth, Some(a.predicted)));
            }
            if let Some(d) = &a.disagreement {
                ui.label(format!("Ensemble: {}", d.describe()))
                    .on_hover_text(
                        "How much the ensemble's networks disagree on this image: the spread \
                         (standard deviation) of their probabilities for the predicted class, \
                         and how many predict it themselves",
                    );
            }
            if !a.warnings.is_empty() {
                ui.add_space(4.0);
                ui.label(RichText::new("Input warnings").strong());
                for w in &a.warnings {
                    warning_text(ui, &format!("(!) {w}"));
                }
            }
            ui.add_space(6.0);
            let cl = ui.label("Grad-CAM explains");
            let shown = match cam_class {
                Some(c) => classes.get(*c).cloned().unwrap_or_default(),
                None => format!(
                    "the predicted class ({})",
                    classes.get(a.cam.class).map(String::as_str).unwrap_or("?")
                ),
            };
            egui::ComboBox::from_id_salt("cam-class")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(cam_class, None, "the predicted class");
                    for (c, n) in classes.iter().enumerate() {
                        ui.selectable_value(cam_class, Some(c), n);
                    }
                })
                .response
                .labelled_by(cl.id);
            if a.cam.peak() <= 0.0 {
                ui.label("No positive evidence for this class anywhere (the map is empty).");
            }
            if !settings.show_cam {
                ui.label("(overlay hidden)");
            }
        }
    }
    ui.add_space(4.0);
    ui.colored_label(NOTICE_COLOR, "Research use only, not for diagnosis.");
}

/// What the program read from the file.
pub fn facts_ui(ui: &mut egui::Ui, name: &str, path: &Path, img: &GrayImage) {
    ui.heading("Image");
    egui::Grid::new("image-facts")
        .num_columns(2)
        .show(ui, |ui| {
            let mut row = |k: &str, v: String| {
                ui.label(k);
                ui.label(v);
                ui.end_row();
            };
            row("File", name.to_string());
            row(
                "Folder",
                path.parent()
                    .map(|p| crate::files::shown(p).to_string())
                    .unwrap_or_default(),
            );
            row("Size", format!("{} × {} px", img.width, img.height));
            row("Bit depth", img.bit_depth.to_string());
            row("Format", img.format.clone());
            row("Colour", if img.was_color { "yes" } else { "gray" }.into());
            if let Some(d) = &img.dicom {
                row("Modality", d.modality.clone().unwrap_or_else(|| "-".into()));
                row("Photometric", d.photometric.clone());
                row(
                    "View",
                    d.view_position.clone().unwrap_or_else(|| "-".into()),
                );
                row(
                    "Bits",
                    format!("{} stored of {} allocated", d.bits_stored, d.bits_allocated),
                );
                row("Transfer syntax", d.transfer_syntax_name.clone());
                if !d.meta_header {
                    row("File meta", "none (a bare data set)".into());
                }
                if let Some(note) = d.frames_note() {
                    row("Frames", note);
                }
                row(
                    "Windowed",
                    if d.windowed {
                        "file's window/VOI LUT"
                    } else {
                        "full range"
                    }
                    .into(),
                );
            }
        });
    ui.label("Window/level change the display only; the model sees the full image.");
}
