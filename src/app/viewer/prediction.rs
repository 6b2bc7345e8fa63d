//! The prediction panel (probability bars, input warnings, the Grad-CAM class) and the
//! image's facts (size, bit depth, format, DICOM tags that are not about the patient).
use super::state::{Loaded, Truth, ViewerSettings};
use super::worker::AnalysisKey;
use crate::app::notices::{error_text, warning_text};
use crate::data::gray::GrayImage;
use crate::infer::predictor::Analysis;
use egui::{Color32, RichText};
use std::path::Path;

/// Colour of the research-use notice.
pub const NOTICE_COLOR: Color32 = Color32::from_rgb(200, 120, 0);

/// "true: COVID-19, predicted: Normal" for an image opened from a review ("true findings:
/// Effusion, Mass" for a multi-label one).
pub fn truth_line(classes: &[String], truth: Option<&Truth>, predicted: Option<usize>) -> String {
    let name = |c: usize| classes.get(c).map(String::as_str).unwrap_or("?");
    match (truth, predicted) {
        (Some(Truth::Findings(f)), _) => {
            let present: Vec<&str> = f
                .iter()
                .enumerate()
                .filter(|(_, t)| **t == Some(true))
                .map(|(i, _)| name(i))
                .collect();
            if present.is_empty() {
                "true findings: none".into()
            } else {
                format!("true findings: {}", present.join(", "))
            }
        }
        (Some(Truth::Class(t)), Some(p)) => format!("true: {}, predicted: {}", name(*t), name(p)),
        (Some(Truth::Class(t)), None) => format!("true: {}", name(*t)),
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
    truth: Option<&Truth>,
    key: Option<AnalysisKey>,
    settings: &ViewerSettings,
    cam_class: &mut Option<usize>,
    thresholds: &[f64],
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
            match &a.present {
                Some(present) => findings_ui(ui, a, present, classes, thresholds),
                None => classes_ui(ui, a, classes, rule),
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
            let multi = a.present.is_some();
            let cl = ui.label("Grad-CAM explains");
            let default = if multi {
                "the most probable finding"
            } else {
                "the predicted class"
            };
            let shown = match cam_class {
                Some(c) => classes.get(*c).cloned().unwrap_or_default(),
                None => format!(
                    "{default} ({})",
                    classes.get(a.cam.class).map(String::as_str).unwrap_or("?")
                ),
            };
            egui::ComboBox::from_id_salt("cam-class")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(cam_class, None, default);
                    for (c, n) in classes.iter().enumerate() {
                        ui.selectable_value(cam_class, Some(c), n);
                    }
                })
                .response
                .labelled_by(cl.id);
            if a.cam.peak() <= 0.0 {
                ui.label(if multi {
                    "No positive evidence for this finding anywhere (the map is empty)."
                } else {
                    "No positive evidence for this class anywhere (the map is empty)."
                });
            }
            if !settings.show_cam {
                ui.label("(overlay hidden)");
            }
        }
    }
    ui.add_space(4.0);
    ui.colored_label(NOTICE_COLOR, "Research use only, not for diagnosis.");
}

/// One bar a class (the probabilities sum to 1), the predicted class and the model's rule.
fn classes_ui(ui: &mut egui::Ui, a: &Analysis, classes: &[String], rule: Option<&str>) {
    for (c, name) in classes.iter().enumerate() {
        let p = a.probs.get(c).copied().unwrap_or(0.0);
        let top = c == a.predicted;
        probability_bar(ui, name, p, top, None);
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
}

/// One bar a finding: independent probabilities (they do not sum to 1), each finding's
/// threshold marked on its bar, and the findings at or above it.
fn findings_ui(
    ui: &mut egui::Ui,
    a: &Analysis,
    present: &[bool],
    labels: &[String],
    thresholds: &[f64],
) {
    ui.label(
        RichText::new(
            "Findings: one independent probability each (they do not sum to 1); \
             the line across each bar is the threshold the model file records",
        )
        .small(),
    );
    for (i, name) in labels.iter().enumerate() {
        let p = a.probs.get(i).copied().unwrap_or(0.0);
        let on = present.get(i).copied().unwrap_or(false);
        probability_bar(ui, name, p, on, thresholds.get(i).copied());
    }
    let found: Vec<&str> = labels
        .iter()
        .zip(present)
        .filter(|(_, &on)| on)
        .map(|(l, _)| l.as_str())
        .collect();
    let tta = if a.tta { " (TTA)" } else { "" };
    ui.label(
        RichText::new(if found.is_empty() {
            format!("No finding at or above its threshold{tta}")
        } else {
            format!("Present: {}{tta}", found.join(", "))
        })
        .strong(),
    );
}

/// A labelled probability bar, highlighted when `strong`, with `threshold` marked on it.
fn probability_bar(ui: &mut egui::Ui, name: &str, p: f32, strong: bool, threshold: Option<f64>) {
    ui.horizontal(|ui| {
        let label = ui.add_sized(
            [110.0, 18.0],
            egui::Label::new(if strong {
                RichText::new(name).strong()
            } else {
                RichText::new(name)
            })
            .truncate(),
        );
        let bar = egui::ProgressBar::new(p)
            .desired_width(150.0)
            .fill(if strong {
                Color32::from_rgb(200, 80, 60)
            } else {
                Color32::from_rgb(70, 110, 160)
            })
            .text(format!("{:.1} %", 100.0 * p));
        let r = ui.add(bar).labelled_by(label.id);
        if let Some(t) = threshold.filter(|t| t.is_finite()) {
            let x = r.rect.left() + r.rect.width() * (t as f32).clamp(0.0, 1.0);
            ui.painter().vline(
                x,
                r.rect.y_range(),
                egui::Stroke::new(2.0, ui.visuals().strong_text_color()),
            );
            ui.label(RichText::new(format!("t {}", crate::fmt::fine(t))).small())
                .on_hover_text("present when the probability is at least this threshold");
        }
    });
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
