//! The run's set-up: dataset folder (with what it holds), pretrained weights, backbone,
//! device, batch size, seed, augmentation and run folder.
use super::plan_editor::{rows_of, PlanRow};
use super::Command;
use crate::app::notices::warning_text;
use crate::data::augment::{AugmentConfig, Flip};
use crate::data::cache::CacheSettings;
use crate::data::check::DatasetSummary;
use crate::data::sampler::Sampling;
use crate::data::split::{DataOptions, ValidChoice};
use crate::model::ops::precision::Precision;
use crate::model::Backbone;
use crate::train::config::TrainConfig;
use crate::train::loss::ClassWeights;
use crate::train::schedule::Plan;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Settings of the tab that persist between runs of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingSettings {
    /// Dataset folder (the Viewer's test-set review uses it too).
    pub data_dir: String,
    /// Pretrained weights file (empty: random init).
    pub weights: String,
    /// Run folder for the next run (empty: a new dated folder under the user's runs folder
    /// for each run).
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
    /// The classes in their order, comma-separated (empty: as the data set has them).
    pub classes: String,
    /// Where validation images come from (auto: as the data set's `dataset.toml` says, else
    /// its own validation split, else 10 % of the training patients).
    pub valid: ValidChoice,
    /// Kermany's layout: pneumonia split into bacterial and viral by file name.
    pub split_pneumonia: bool,
    /// Class-balanced sampling.
    pub balanced: bool,
    /// Cross-entropy weighted by inverse class frequency.
    pub class_weights: bool,
    /// Multi-label sets: the uncertain-label policies as `--uncertain` takes them (empty:
    /// ignore).
    pub uncertain: String,
    /// Multi-label sets: the views kept, comma-separated (empty: all).
    pub views: String,
    /// Precision of the convolutions.
    pub precision: Precision,
    /// Networks trained as one ensemble (1: a single network).
    pub members: usize,
    /// A teacher model to distil from (empty: none).
    pub teacher: String,
    /// The weight of the teacher's term, 0 to 1.
    pub distill_weight: f64,
    /// The temperature of the teacher's and the student's probabilities.
    pub distill_temperature: f64,
    /// Where new runs go when no run folder is typed (None: the user's runs folder; tests).
    #[doc(hidden)]
    #[serde(skip)]
    pub runs_root: Option<PathBuf>,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        Self {
            data_dir: String::new(),
            weights: String::new(),
            run_dir: String::new(),
            backbone: Backbone::Resnet50,
            device: "auto".into(),
            batch_size: 32,
            seed: 42,
            augment: true,
            flip: Flip::Vertical,
            plan_name: "paper".into(),
            plan_rows: rows_of(&Plan::paper()),
            overwrite: false,
            classes: String::new(),
            valid: ValidChoice::Auto,
            split_pneumonia: false,
            balanced: false,
            class_weights: false,
            uncertain: String::new(),
            views: String::new(),
            precision: Precision::F32,
            members: 1,
            teacher: String::new(),
            distill_weight: crate::train::distill::DEFAULT_WEIGHT,
            distill_temperature: crate::train::distill::DEFAULT_TEMPERATURE,
            runs_root: None,
        }
    }
}

impl TrainingSettings {
    /// The sampler the "class-balanced sampling" box asks for.
    pub fn sampling(&self) -> Sampling {
        if self.balanced {
            Sampling::Balanced
        } else {
            Sampling::Shuffle
        }
    }

    /// The loss weighting the "class weights" box asks for.
    pub fn class_weights(&self) -> ClassWeights {
        if self.class_weights {
            ClassWeights::Auto
        } else {
            ClassWeights::None
        }
    }

    /// The run folder the next run writes to: the one typed, else a new dated one under
    /// the user's runs folder.
    pub fn next_run_dir(&self) -> PathBuf {
        let typed = self.run_dir.trim();
        if typed.is_empty() {
            let root = self
                .runs_root
                .clone()
                .unwrap_or_else(crate::train::run_dir::default_runs_root);
            let today = crate::train::run_dir::utc_date(std::time::SystemTime::now());
            crate::train::run_dir::next_run_dir(&root, &today)
        } else {
            PathBuf::from(typed)
        }
    }

    /// The engine's configuration for a run of `plan` with these settings, writing to
    /// `out_dir`.
    pub fn train_config(&self, plan: Plan, out_dir: PathBuf) -> TrainConfig {
        let s = self;
        let mut c = TrainConfig::new(PathBuf::from(s.data_dir.trim()), out_dir);
        c.backbone = s.backbone;
        c.weights = (!s.weights.trim().is_empty()).then(|| PathBuf::from(s.weights.trim()));
        c.plan = plan;
        c.batch_size = s.batch_size;
        c.seed = s.seed;
        c.augment = s.augment_config(s.augment);
        c.overwrite = s.overwrite;
        c.classes = s.class_list();
        c.valid = s.valid_choice();
        c.split_pneumonia = s.split_pneumonia.then_some(true);
        c.sampling = s.sampling();
        c.class_weights = s.class_weights();
        c.uncertain = s.uncertain_policies().ok().flatten();
        c.views = s.view_list();
        c.cache = CacheSettings::user_default();
        c.precision = s.precision;
        c.distill = s.distill().ok().flatten();
        c
    }

    /// The teacher typed with its weight and temperature (None: no teacher), or why they
    /// cannot be used.
    pub fn distill(&self) -> Result<Option<crate::train::distill::DistillConfig>, String> {
        let t = self.teacher.trim();
        if t.is_empty() {
            return Ok(None);
        }
        crate::train::distill::DistillConfig::new(
            PathBuf::from(t),
            self.distill_weight,
            self.distill_temperature,
        )
        .map(Some)
        .map_err(|e| e.to_string())
    }

    /// The class order typed, if any.
    pub fn class_list(&self) -> Option<Vec<String>> {
        let v: Vec<String> = self
            .classes
            .split(',')
            .map(|c| c.trim().to_string())
            .filter(|c| !c.is_empty())
            .collect();
        (!v.is_empty()).then_some(v)
    }

    /// The uncertain-label policies typed (None: empty, the default "ignore"), or why they
    /// cannot be read.
    pub fn uncertain_policies(&self) -> Result<Option<crate::data::findings::Policies>, String> {
        let t = self.uncertain.trim();
        if t.is_empty() {
            return Ok(None);
        }
        t.parse().map(Some)
    }

    /// The views typed (empty: all).
    pub fn view_list(&self) -> Vec<String> {
        self.views
            .split(',')
            .map(|v| v.trim().to_string())
            .filter(|v| !v.is_empty())
            .collect()
    }

    /// The validation choice to pass on (None for auto: the data set's own choice stands).
    pub fn valid_choice(&self) -> Option<ValidChoice> {
        (self.valid != ValidChoice::Auto).then_some(self.valid)
    }

    /// How the data set is read with these settings.
    pub fn data_options(&self) -> DataOptions {
        DataOptions {
            classes: self.class_list(),
            valid: self.valid_choice(),
            seed: self.seed,
            split_pneumonia: self.split_pneumonia.then_some(true),
            uncertain: self.uncertain_policies().ok().flatten(),
            views: self.view_list(),
            ..DataOptions::default()
        }
    }

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
        super::data_setup::data_options_ui(ui, s);
        super::data_setup::dataset_ui(ui, &s.data_dir, scan);
        path_field(
            ui,
            "Pretrained weights",
            "optional: torchvision/timm .pth or .safetensors",
            &mut s.weights,
            Command::BrowseWeights,
            commands,
        );
        distill_ui(ui, s, commands);
        let entry = crate::model::io::zoo::for_backbone(s.backbone);
        ui.horizontal_wrapped(|ui| {
            if s.weights.trim().is_empty() {
                ui.label("No weights: training starts from random initialisation.");
            }
            let label = format!(
                "Fetch ImageNet weights ({}, {:.0} MB)",
                entry.file,
                entry.size_mb()
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
            let l = ui.label("Precision");
            precision_picker(ui, "precision", &mut s.precision).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Batch size");
            ui.add(egui::DragValue::new(&mut s.batch_size).range(2..=512))
                .labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Seed");
            ui.add(egui::DragValue::new(&mut s.seed)).labelled_by(l.id);
            ui.end_row();
            let l = ui.label("Networks");
            ui.horizontal(|ui| {
                ui.add(egui::DragValue::new(&mut s.members).range(1..=16))
                    .labelled_by(l.id)
                    .on_hover_text(
                        "More than one trains an ensemble: network i with seed + i - 1, all on \
                         one validation split, each in its own folder of the run folder; the \
                         ensemble file is their mean, tested once at the end",
                    );
                if s.members > 1 {
                    ui.label(format!(
                        "an ensemble of {} (seeds {}..={})",
                        s.members,
                        s.seed,
                        s.seed + s.members as u64 - 1
                    ));
                }
            });
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
                ui.add(
                    egui::TextEdit::singleline(&mut s.run_dir)
                        .hint_text("empty: a new folder for each run"),
                )
                .labelled_by(l.id);
                let next = s.next_run_dir();
                let next_abs = std::path::absolute(&next).unwrap_or(next.clone());
                ui.add(
                    egui::Label::new(format!(
                        "Next run writes to {}",
                        crate::files::shown(&next_abs)
                    ))
                    .wrap(),
                );
                if s.run_dir.trim().is_empty() {
                    return;
                }
                let held = crate::train::run_dir::run_state(&next);
                if held != crate::train::run_dir::RunState::Empty {
                    warning_text(
                        ui,
                        if held == crate::train::run_dir::RunState::Finished {
                            "It holds a finished run: Start needs \"overwrite\", or empty the \
                             field for a new folder."
                        } else {
                            "It holds a stopped run: resume it, tick \"overwrite\", or empty \
                             the field for a new folder."
                        },
                    );
                }
                ui.checkbox(&mut s.overwrite, "overwrite an earlier run there");
            });
            ui.end_row();
        });
    });
}

/// The teacher to distil from, with its weight and temperature, folded away until used.
fn distill_ui(ui: &mut egui::Ui, s: &mut TrainingSettings, commands: &mut Vec<Command>) {
    let title = if s.teacher.trim().is_empty() {
        "Distillation (learn from a teacher model)".to_string()
    } else {
        format!(
            "Distillation: from {}",
            std::path::Path::new(s.teacher.trim())
                .file_name()
                .map(|n| n.to_string_lossy().to_string())
                .unwrap_or_default()
        )
    };
    egui::CollapsingHeader::new(title)
        .id_salt("distill")
        .show(ui, |ui| {
            ui.add(
                egui::Label::new(
                    "One network trained on a model's probabilities as well as on the labels \
                     (Hinton et al. 2015): an ensemble's knowledge at one network's cost. The \
                     teacher (one network or an ensemble file) needs the data set's classes in \
                     their order; its probabilities of every training image are computed when \
                     the run starts.",
                )
                .wrap(),
            );
            path_field(
                ui,
                "Teacher model",
                "optional: a .safetensors model or ensemble file",
                &mut s.teacher,
                Command::BrowseTeacher,
                commands,
            );
            ui.add_enabled_ui(!s.teacher.trim().is_empty(), |ui| {
                egui::Grid::new("distill-grid")
                    .num_columns(2)
                    .show(ui, |ui| {
                        let l = ui.label("Teacher's weight w");
                        ui.add(
                            egui::DragValue::new(&mut s.distill_weight)
                                .range(0.0..=1.0)
                                .speed(0.01),
                        )
                        .labelled_by(l.id)
                        .on_hover_text(
                            "loss = (1 - w) x cross-entropy with the labels + w x T² x \
                             cross-entropy with the teacher's probabilities",
                        );
                        ui.end_row();
                        let l = ui.label("Temperature T");
                        ui.add(
                            egui::DragValue::new(&mut s.distill_temperature)
                                .range(0.1..=20.0)
                                .speed(0.05),
                        )
                        .labelled_by(l.id)
                        .on_hover_text(
                            "above 1 softens both distributions, so the teacher's other \
                             classes carry more of what it knows",
                        );
                        ui.end_row();
                    });
            });
        });
}

/// A picker for the convolutions' precision, explained on hover.
pub fn precision_picker(ui: &mut egui::Ui, id: &str, p: &mut Precision) -> egui::Response {
    let text = |p: Precision| match p {
        Precision::F32 => "f32",
        Precision::Bf16 => "bf16 mixed",
    };
    egui::ComboBox::from_id_salt(id)
        .selected_text(text(*p))
        .show_ui(ui, |ui| {
            for v in Precision::ALL {
                ui.selectable_value(p, v, text(v));
            }
        })
        .response
        .on_hover_text(format!(
            "bf16 mixed precision multiplies in bfloat16 (8 significant bits) and keeps \
             weights, sums and BatchNorm in float32, as PyTorch's autocast. Measured on a CPU \
             with AVX512_BF16: training 1.04-1.55x and inference 1.2-1.6x faster than f32; \
             models trained in bf16 tested a few points lower in two of three runs of a \
             longer plan, so train models you keep in f32. This CPU: {}.",
            crate::model::ops::precision::bf16_kernels()
        ))
}
