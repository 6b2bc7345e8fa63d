//! The run's set-up: dataset folder (with what it holds), pretrained weights, backbone,
//! device, batch size, seed, augmentation and run folder.
use super::plan_editor::{rows_of, PlanRow};
use super::Command;
use crate::app::notices::{error_text, warning_text};
use crate::data::augment::{AugmentConfig, Flip};
use crate::data::check::DatasetSummary;
use crate::model::Backbone;
use crate::train::schedule::Plan;
use crate::CLASS_NAMES;
use serde::{Deserialize, Serialize};

/// Settings of the tab that persist between runs of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingSettings {
    /// Dataset folder (the Viewer's test-set review uses it too).
    pub data_dir: String,
    /// Pretrained weights file (empty: random init).
    pub weights: String,
    /// Run folder for the next run.
    pub run_dir: String,
    /// Backbone.
    pub backbone: Backbone,
    /// Device name (auto, cpu, cuda:0, ...).
    pub device: String,
    /// Batch size.
    pub batch_size: usize,
    /// Seed.
    pub seed: u64,
    /// Augmentation on.
    pub augment: bool,
    /// Flip kind.
    pub flip: Flip,
    /// Plan name.
    pub plan_name: String,
    /// Plan rows.
    pub plan_rows: Vec<PlanRow>,
    /// Replace a finished or stopped run in the run folder (asked each time, not kept).
    #[serde(skip)]
    pub overwrite: bool,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            data_dir: String::new(),
            weights: String::new(),
            run_dir: "runs/app-run".into(),
            backbone: Backbone::Resnet50,
            device: "auto".into(),
            batch_size: 32,
            seed: 42,
            augment: true,
            flip: Flip::Vertical,
            plan_name: "paper".into(),
            plan_rows: rows_of(&Plan::paper()),
            overwrite: false,
        }
    }
}

impl TrainingSettings {
    /// The augmentation these settings ask for.
    pub fn augment_config(&self, on: bool) -> AugmentConfig {
        if on {
            AugmentConfig {
                flip: self.flip,
                ..AugmentConfig::paper()
            }
        } else {
            AugmentConfig::off()
        }
    }
}

/// The dataset scan as the tab knows it.
pub type Scan = Option<Result<DatasetSummary, String>>;

/// A text field for a path with a "Browse…" button that sends `browse`.
fn path_field(
    ui: &mut egui::Ui,
    label: &str,
    hint: &str,
    text: &mut String,
    browse: Command,
    commands: &mut Vec<Command>,
) {
    let id = ui
        .horizontal(|ui| {
            let l = ui.label(label);
            if ui.button("Browse…").clicked() {
                commands.push(browse);
            }
            l.id
        })
        .inner;
    ui.add(
        egui::TextEdit::singleline(text)
            .hint_text(hint)
            .desired_width(f32::INFINITY),
    )
    .labelled_by(id);
}

/// Draws the set-up; edits go to `s`, actions to `commands`.
pub fn setup_ui(
    ui: &mut egui::Ui,
    s: &mut TrainingSettings,
    scan: &Scan,
    fetching: Option<(u64, Option<u64>)>,
    enabled: bool,
    commands: &mut Vec<Command>,
) {
    ui.heading("Set-up");
    ui.add_enabled_ui(enabled, |ui| {
        path_field(
            ui,
            "Dataset folder",
            "folder with train/ and test/",
            &mut s.data_dir,
            Command::BrowseData,
            commands,
        );
        dataset_ui(ui, &s.data_dir, scan);
        path_field(
            ui,
            "Pretrained weights",
            "optional: torchvision/timm .pth or .safetensors",
            &mut s.weights,
            Command::BrowseWeights,
            commands,
        );
        let entry = crate::model::zoo::for_backbone(s.backbone);
        ui.horizontal_wrapped(|ui| {
            if s.weights.trim().is_empty() {
                ui.label("No weights: training starts from random initialisation.");
            }
            let label = format!(
                "Fetch ImageNet weights ({}, {:.0} MB)",
                entry.file, entry.size_mb
            );
            if ui
                .add_enabled(fetching.is_none(), egui::Button::new(label))
                .on_hover_text(
                    "download torchvision's weights for this backbone over HTTPS, check their \
                     SHA-256 and start training from them",
                )
                .clicked()
            {
                commands.push(Command::FetchWeights);
            }
        });
        if let Some((done, total)) = fetching {
            let frac = total.map(|t| done as f32 / t.max(1) as f32).unwrap_or(0.0);
            ui.add(egui::ProgressBar::new(frac).text(format!(
                "downloading {}: {:.1} MB{}",
                entry.file,
                done as f64 / 1e6,
                total
                    .map(|t| format!(" of {:.1}", t as f64 / 1e6))
                    .unwrap_or_default()
            )));
        }
        egui::Grid::new("setup-grid").num_columns(2).show(ui, |ui| {
            let l = ui.label("Backbone");
            egui::ComboBox::from_id_salt("backbone")
                .selected_text(s.backbone.name())
                .show_ui(ui, |ui| {
                    for b in Backbone::ALL {
                        ui.selectable_value(&mut s.backbone, b, b.name());
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Device");
            egui::ComboBox::from_id_salt("device")
                .selected_text(s.device.clone())
                .show_ui(ui, |ui| {
                    for d in ["auto", "cpu", "cuda:0", "metal"] {
                        ui.selectable_value(&mut s.device, d.to_string(), d);
                    }
                })
                .response
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut s.batch_size).range(2..=512))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.seed)).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Augmentation");
            ui.vertical(|ui| {
                ui.checkbox(&mut s.augment, "on (rotation, lighting and flips)");
                ui.add_enabled_ui(s.augment, |ui| {
                    egui::ComboBox::from_id_salt("flip")
                        .selected_text(s.flip.describe())
                        .width(260.0)
                        .show_ui(ui, |ui| {
                            for f in Flip::ALL {
                                ui.selectable_value(&mut s.flip, f, f.describe());
                            }
                        })
                        .response
                        .labelled_by(l.id)
                        .on_hover_text(
                            "The paper flips radiographs upside down; most chest X-ray work \
                             flips them left-right only.",
                        );
                });
            });
            ui.end_row();
            let l = ui.label("Run folder");
            ui.vertical(|ui| {
                ui.text_edit_singleline(&mut s.run_dir).labelled_by(l.id);
                ui.checkbox(&mut s.overwrite, "overwrite an earlier run there");
            });
            ui.end_row();
        });
    });
}

fn dataset_ui(ui: &mut egui::Ui, dir: &str, scan: &Scan) {
    match scan {
        None if !dir.trim().is_empty() => {
            ui.label("scanning…");
        }
        None => {
            ui.label("Choose a dataset folder (COVIDx split files or class folders).");
        }
        Some(Err(e)) => {
            error_text(ui, e);
        }
        Some(Ok(d)) => {
            ui.label(format!(
                "{}: {} train / {} test images",
                d.layout,
                d.train.iter().sum::<usize>(),
                d.test.iter().sum::<usize>()
            ));
            class_bars_ui(ui, &d.train, &d.test);
            if d.missing > 0 {
                error_text(ui, &format!("{} listed files are missing", d.missing));
            }
            if d.leaked > 0 {
                warning_text(
                    ui,
                    &format!("{} patients are in both train and test", d.leaked),
                );
            }
        }
    }
}

fn class_bars_ui(ui: &mut egui::Ui, train: &[usize; 4], test: &[usize; 4]) {
    let max = train.iter().chain(test).copied().max().unwrap_or(1).max(1) as f32;
    egui::Grid::new("class-bars").num_columns(3).show(ui, |ui| {
        for (i, c) in CLASS_NAMES.iter().enumerate() {
            ui.label(*c);
            ui.add(
                egui::ProgressBar::new(train[i] as f32 / max)
                    .desired_width(120.0)
                    .text(format!("train {}", train[i])),
            );
            ui.add(
                egui::ProgressBar::new(test[i] as f32 / max)
                    .desired_width(120.0)
                    .text(format!("test {}", test[i])),
            );
            ui.end_row();
        }
    });
}
