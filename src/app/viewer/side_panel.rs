//! The Viewer's left panel: the model, the opened images with their predicted class, and
//! the test-set review's controls.
use super::state::{ImageState, Mode};
use super::{Ask, Command, ViewerTab};
use crate::app::notices::error_text;
use crate::app::Shared;
use egui::RichText;
use std::path::Path;

impl ViewerTab {
    pub(super) fn side_ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared<'_>) {
        self.model_ui(ui, shared.last_model);
        ui.separator();
        self.images_ui(ui);
        ui.separator();
        self.review_side_ui(ui, shared.data_dir);
    }

    fn model_ui(&mut self, ui: &mut egui::Ui, last_model: Option<&Path>) {
        ui.heading("Model");
        ui.horizontal_wrapped(|ui| {
            if ui.button("Load model…").clicked() {
                self.commands.push(Command::Pick(Ask::Model));
            }
            if let Some(last) = last_model {
                let current = self.model.as_ref().map(|m| m.path.as_path());
                if current != Some(last)
                    && ui
                        .button("Use the last run's model")
                        .on_hover_text(crate::files::shown(last).to_string())
                        .clicked()
                {
                    self.commands.push(Command::LoadModel(last.to_path_buf()));
                }
            }
        });
        if let Some(p) = &self.model_loading {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("loading {}", crate::files::shown(p)));
            });
        }
        match &self.model {
            Some(m) => {
                let meta = m.predictor.meta();
                ui.label(
                    RichText::new(
                        m.path
                            .file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    )
                    .strong(),
                )
                .on_hover_text(crate::files::shown(&m.path).to_string());
                if crate::model::io::shipped::is_shipped(&m.path) {
                    ui.label(
                        "The model that ships with the program (trained by `train` on COVIDx v1).",
                    );
                }
                ui.add(egui::Label::new(crate::model::io::shipped::describe(meta)).wrap());
            }
            None => {
                ui.label("No model loaded: load a model file written by training.");
            }
        }
        ui.checkbox(
            &mut self.settings.tta,
            "Test-time augmentation (average over flips)",
        );
        ui.horizontal(|ui| {
            let l = ui.label("Precision");
            crate::app::training::setup::precision_picker(
                ui,
                "viewer-precision",
                &mut self.settings.precision,
            )
            .labelled_by(l.id);
        });
    }

    fn images_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Images");
        ui.horizontal_wrapped(|ui| {
            if ui.button("Open…").clicked() {
                self.commands.push(Command::Pick(Ask::Images));
            }
            if crate::model::io::shipped::samples_dir().is_some() {
                if ui
                    .button("Open samples")
                    .on_hover_text("a few COVIDx v1 radiographs that ship with the program")
                    .clicked()
                {
                    self.commands.push(Command::OpenSamples);
                }
                if self.model.is_some()
                    && self.review.running.is_none()
                    && ui
                        .button("Review the samples")
                        .on_hover_text(
                            "the model over the sample radiographs: a demonstration of the \
                             review, not a test set",
                        )
                        .clicked()
                {
                    self.commands.push(Command::ReviewSamples);
                }
            }
            if !self.images.is_empty() && ui.button("Close all").clicked() {
                self.commands.push(Command::CloseAll);
            }
        });
        if self.images.is_empty() {
            ui.label("Drop X-ray files on the window or use Open… (PNG, JPEG, BMP, TIFF, DICOM).");
        }
        let classes = self.class_names();
        let thumb = egui::vec2(44.0, 44.0);
        // The list scrolls on its own, so the review's controls below stay in sight.
        egui::ScrollArea::vertical()
            .id_salt("viewer-images")
            .max_height(300.0)
            .auto_shrink([false, true])
            .show(ui, |ui| self.image_list_ui(ui, &classes, thumb));
    }

    fn image_list_ui(&mut self, ui: &mut egui::Ui, classes: &[String], thumb: egui::Vec2) {
        for (i, im) in self.images.iter().enumerate() {
            ui.horizontal(|ui| match &im.state {
                ImageState::Loading => {
                    ui.spinner();
                    ui.label(&im.name);
                }
                ImageState::Failed(e) => {
                    if ui.small_button("x").on_hover_text("remove").clicked() {
                        self.commands.push(Command::Remove(i));
                    }
                    ui.vertical(|ui| {
                        error_text(ui, e);
                    });
                }
                ImageState::Ready(l) => {
                    ui.add(egui::Image::new((l.thumb.id(), thumb)).fit_to_exact_size(thumb));
                    let sel = self.selected == Some(i);
                    let text = match l.analysis.as_ref().map(|(_, a)| a) {
                        Some(Ok(a)) => format!(
                            "{}\n{}{}",
                            im.name,
                            match &a.present {
                                // A multi-label model: how many findings it finds.
                                Some(p) => match p.iter().filter(|&&x| x).count() {
                                    0 => "no finding".to_string(),
                                    1 => "1 finding".to_string(),
                                    n => format!("{n} findings"),
                                },
                                None => format!(
                                    "{} {:.0} %",
                                    classes.get(a.predicted).map(String::as_str).unwrap_or("?"),
                                    100.0 * a.probs[a.predicted]
                                ),
                            },
                            if a.warnings.is_empty() { "" } else { "  (!)" }
                        ),
                        _ => im.name.clone(),
                    };
                    if ui.selectable_label(sel, text).clicked() {
                        self.commands.push(Command::Select(i));
                    }
                }
            });
        }
    }

    fn review_side_ui(&mut self, ui: &mut egui::Ui, data_dir: &mut String) {
        ui.heading("Test-set review");
        let dl = ui.label("Dataset folder (shared with the Training tab)");
        ui.horizontal(|ui| {
            ui.add(egui::TextEdit::singleline(data_dir).desired_width(200.0))
                .labelled_by(dl.id);
            if ui.button("…").on_hover_text("choose a folder").clicked() {
                self.commands.push(Command::Pick(Ask::DataFolder));
            }
        });
        let why_not = if self.model.is_none() {
            Some("load a model first")
        } else if self.review.running.is_some() {
            Some("a test-set run is in progress")
        } else if data_dir.trim().is_empty() {
            Some("choose the dataset folder above")
        } else {
            None
        };
        ui.horizontal(|ui| {
            let run = ui.add_enabled(why_not.is_none(), egui::Button::new("Run test set"));
            if let Some(w) = why_not {
                run.clone().on_disabled_hover_text(w);
            }
            if run.clicked() {
                self.commands.push(Command::RunTestSet);
            }
            if ui.button("Open report…").clicked() {
                self.commands.push(Command::Pick(Ask::Report));
            }
        });
        if let Some(w) = why_not.filter(|_| self.review.running.is_none()) {
            ui.label(RichText::new(format!("Run test set: {w}.")).weak());
        }
        if let Some((d, t)) = self.review.running {
            ui.add(
                egui::ProgressBar::new(if t > 0 { d as f32 / t as f32 } else { 0.0 })
                    .text(format!("{d} / {t} images")),
            );
        }
        if self.review.report.is_some() && ui.button("Show the review").clicked() {
            self.mode = Mode::Review;
        }
    }
}
