//! What the Training tab's buttons ask for ([`Command`]) and how each is carried out, before
//! the next frame is drawn; the file dialogs (or the path window in their place) they open.
use super::{charts, plan_editor, PlanRow, RunState, TrainingTab, TOPIC};
use crate::app::dialogs::{pick, DialogBackend, PathPrompt, Pick, Picked};
use crate::app::notices::Notices;
use crate::device::DeviceChoice;
use crate::train::events::Control;
use crate::train::schedule::{LrSpec, Plan, Trainable};
use crate::train::worker::Job;
use std::path::PathBuf;
use std::sync::Arc;

/// What the user asked for; run after the frame is drawn.
#[derive(Debug, Clone)]
pub enum Command {
    /// Start a new run with the plan as edited.
    Start,
    /// Run the LR finder for the plan's first stage.
    FindLr,
    /// Continue the run in the resume folder.
    Resume,
    /// Pause or continue between batches.
    TogglePause,
    /// Stop after this batch, with a checkpoint.
    Stop,
    /// Draw a new preview batch.
    NewPreview,
    /// Choose the dataset folder with a dialog.
    BrowseData,
    /// Choose the pretrained weights with a dialog.
    BrowseWeights,
    /// Choose the teacher model to distil from with a dialog.
    BrowseTeacher,
    /// Choose the run folder to resume with a dialog.
    BrowseResume,
    /// Load a plan file.
    LoadPlan,
    /// Save the plan to a file.
    SavePlan,
    /// Replace the plan with a preset.
    Preset(Plan),
    /// Add a row (a copy of the last).
    AddRow,
    /// Remove a row.
    RemoveRow(usize),
    /// Use this rate for the next `auto` row.
    ChooseLr(f64),
    /// Write the LR finder's range for `lr` into a row.
    SetRowLr {
        /// Row index.
        row: usize,
        /// The chosen rate.
        lr: f64,
    },
    /// Show the run folder in the system's file manager.
    OpenRunFolder,
    /// Download the ImageNet weights of the chosen backbone.
    FetchWeights,
    /// A path chosen (in a dialog or typed in its place) for a purpose.
    Answer(Browse, PathBuf),
}

/// What a file dialog of this tab (or the typed path that replaces it) is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Browse {
    /// The dataset folder.
    Data,
    /// Pretrained weights.
    Weights,
    /// A teacher model to distil from.
    Teacher,
    /// A run folder to resume.
    Resume,
    /// A plan file to load.
    LoadPlan,
    /// Where to save the plan.
    SavePlan,
}

impl Browse {
    fn pick(self) -> Pick {
        match self {
            Browse::Data | Browse::Resume => Pick::Folder,
            Browse::Weights => Pick::File {
                filter: "weights",
                exts: &["pth", "pt", "safetensors", "bin"],
            },
            Browse::Teacher => Pick::File {
                filter: "model",
                exts: &["safetensors"],
            },
            Browse::LoadPlan => Pick::File {
                filter: "plan",
                exts: &["toml"],
            },
            Browse::SavePlan => Pick::Save {
                filter: "plan",
                exts: &["toml"],
                name: "plan.toml",
            },
        }
    }

    fn what(self) -> (&'static str, &'static str) {
        match self {
            Browse::Data => ("Type the dataset folder:", "/path/to/dataset"),
            Browse::Weights => (
                "Type the path of the pretrained weights (.pth or .safetensors):",
                "/path/to/resnet50-0676ba61.pth",
            ),
            Browse::Teacher => (
                "Type the path of the teacher model (.safetensors):",
                "/path/to/ensemble.safetensors",
            ),
            Browse::Resume => ("Type the run folder to resume:", "/path/to/run"),
            Browse::LoadPlan => (
                "Type the path of a plan file (.toml):",
                "/path/to/plan.toml",
            ),
            Browse::SavePlan => ("Type where to save the plan (.toml):", "/path/to/plan.toml"),
        }
    }
}

impl TrainingTab {
    fn launch(&mut self, ctx: &egui::Context, job: Job, notices: &mut Notices) -> bool {
        let device: DeviceChoice = match self.settings.device.parse() {
            Ok(d) => d,
            Err(e) => {
                notices.error(TOPIC, e.to_string());
                return false;
            }
        };
        self.control = Arc::new(Control::default());
        if let Some(n) = self.stop_after {
            self.control.stop_after_batches(n);
        }
        let control = self.control.clone();
        match self.worker(ctx).start(job, device, control) {
            Ok(()) => true,
            Err(e) => {
                notices.error(TOPIC, e);
                false
            }
        }
    }

    /// Runs the queued commands (after the frame).
    pub fn run_commands(
        &mut self,
        ctx: &egui::Context,
        notices: &mut Notices,
        dialogs: DialogBackend,
    ) {
        for c in std::mem::take(&mut self.commands) {
            self.execute(c, ctx, notices, dialogs);
        }
    }

    /// Shows the dialog for `what`: a chosen path is answered at once; without a dialog,
    /// the path prompt opens in its place.
    fn browse(
        &mut self,
        what: Browse,
        ctx: &egui::Context,
        notices: &mut Notices,
        dialogs: DialogBackend,
    ) {
        match pick(dialogs, &what.pick()) {
            Picked::Chosen(mut v) => {
                if let Some(p) = v.pop() {
                    self.execute(Command::Answer(what, p), ctx, notices, dialogs);
                }
            }
            Picked::Cancelled => {}
            Picked::Unavailable => {
                let (label, hint) = what.what();
                self.prompt = Some(PathPrompt::new(what, label, hint));
            }
        }
    }

    fn answer(&mut self, what: Browse, p: PathBuf, notices: &mut Notices) {
        match what {
            Browse::Data => self.settings.data_dir = crate::files::shown(&p).to_string(),
            Browse::Weights => self.settings.weights = crate::files::shown(&p).to_string(),
            Browse::Teacher => self.settings.teacher = crate::files::shown(&p).to_string(),
            Browse::Resume => self.resume_dir = crate::files::shown(&p).to_string(),
            Browse::LoadPlan => match Plan::load(&p) {
                Ok(plan) => self.take_plan(&plan),
                Err(e) => notices.error(TOPIC, e.to_string()),
            },
            Browse::SavePlan => match self.plan() {
                Ok(plan) => match plan.save(&p) {
                    Ok(()) => {
                        notices.info(TOPIC, format!("plan saved: {}", crate::files::shown(&p)))
                    }
                    Err(e) => notices.error(TOPIC, e.to_string()),
                },
                Err(_) => notices.error(TOPIC, "fix the plan's errors before saving it"),
            },
        }
    }

    fn execute(
        &mut self,
        c: Command,
        ctx: &egui::Context,
        notices: &mut Notices,
        dialogs: DialogBackend,
    ) {
        let busy = self.run.state.busy();
        match c {
            Command::Start if !busy => {
                if let Some(why) = self.start_blocker() {
                    notices.error(TOPIC, format!("cannot start: {why}"));
                    return;
                }
                if let Some(lr) = self.chosen_lr.take() {
                    if let Some(r) = plan_editor::first_auto_row(&self.settings.plan_rows) {
                        self.settings.plan_rows[r].lr =
                            charts::spec_text(LrSpec::for_suggestion(lr));
                    }
                }
                let Ok(plan) = self.plan() else { return };
                let out = self.settings.next_run_dir();
                // Refused before anything of the run on screen changes.
                let held = crate::train::run_dir::run_state(&out);
                if held != crate::train::run_dir::RunState::Empty && !self.settings.overwrite {
                    notices.error(
                        TOPIC,
                        format!(
                            "cannot start: {} holds a {} run; empty the run folder field for a \
                             new folder, choose another, or tick \"overwrite\"",
                            crate::files::shown(&out),
                            if held == crate::train::run_dir::RunState::Finished {
                                "finished"
                            } else {
                                "stopped"
                            }
                        ),
                    );
                    return;
                }
                notices.clear_topic(TOPIC);
                self.run.begin_training();
                self.run.log.push(format!(
                    "starting {} ({}) in {}",
                    plan.name,
                    plan_editor::summary(&plan),
                    crate::files::shown(&out)
                ));
                let cfg = Box::new(self.settings.train_config(plan, out));
                let job = match self.settings.members {
                    0 | 1 => Job::Train(cfg),
                    n => Job::Members(cfg, n),
                };
                if !self.launch(ctx, job, notices) {
                    self.run.job_ended();
                }
            }
            Command::FindLr if !busy => {
                let Ok(plan) = self.plan() else { return };
                notices.clear_topic(TOPIC);
                self.chosen_lr = None;
                self.run.begin_lr_find();
                // The sweep writes nothing: no run folder is claimed.
                let out = self.settings.next_run_dir();
                let job = Job::LrFind(Box::new(self.settings.train_config(plan, out)));
                if !self.launch(ctx, job, notices) {
                    self.run.job_ended();
                }
            }
            Command::Resume if !busy => {
                let dir = PathBuf::from(self.resume_dir.trim());
                notices.clear_topic(TOPIC);
                self.run.begin_training();
                if !self.launch(ctx, Job::Resume(dir), notices) {
                    self.run.job_ended();
                }
            }
            Command::TogglePause => match self.run.state {
                RunState::Running => {
                    self.control.pause();
                    self.run.state = RunState::Paused;
                }
                RunState::Paused => {
                    self.control.resume();
                    self.run.state = RunState::Running;
                }
                _ => {}
            },
            Command::Stop if busy => {
                self.control.stop();
                self.control.resume();
                if self.run.state != RunState::FindingLr {
                    self.run.state = RunState::Stopping;
                }
            }
            Command::NewPreview => {
                let size = self
                    .plan()
                    .ok()
                    .and_then(|p| p.stages.first().map(|s| s.size_px))
                    .unwrap_or(128);
                let mut cfg =
                    crate::data::loader::LoaderConfig::train(12, size, self.settings.seed);
                cfg.augment = self.settings.augment_config(self.preview_augment);
                cfg.threads = 1;
                let dir = PathBuf::from(self.settings.data_dir.trim());
                let epoch = self.preview_draws;
                self.preview_draws += 1;
                let opts = self.settings.data_options();
                self.worker(ctx).preview(dir, opts, cfg, epoch);
            }
            Command::BrowseData => self.browse(Browse::Data, ctx, notices, dialogs),
            Command::BrowseWeights => self.browse(Browse::Weights, ctx, notices, dialogs),
            Command::BrowseTeacher => self.browse(Browse::Teacher, ctx, notices, dialogs),
            Command::BrowseResume => self.browse(Browse::Resume, ctx, notices, dialogs),
            Command::LoadPlan => self.browse(Browse::LoadPlan, ctx, notices, dialogs),
            Command::SavePlan => match self.plan() {
                Ok(_) => self.browse(Browse::SavePlan, ctx, notices, dialogs),
                Err(_) => notices.error(TOPIC, "fix the plan's errors before saving it"),
            },
            Command::Answer(what, p) => self.answer(what, p, notices),
            Command::Preset(plan) => self.take_plan(&plan),
            Command::AddRow => {
                let last = self.settings.plan_rows.last().cloned().unwrap_or(PlanRow {
                    size: "224".into(),
                    train: Trainable::All,
                    lr: "1e-4".into(),
                    epochs: "1".into(),
                });
                self.settings.plan_rows.push(last);
            }
            Command::RemoveRow(i) => {
                if i < self.settings.plan_rows.len() {
                    self.settings.plan_rows.remove(i);
                }
            }
            Command::ChooseLr(lr) => self.chosen_lr = Some(lr),
            Command::SetRowLr { row, lr } => {
                if let Some(r) = self.settings.plan_rows.get_mut(row) {
                    r.lr = charts::spec_text(LrSpec::for_suggestion(lr));
                    self.chosen_lr = None;
                    notices.info(TOPIC, format!("row {} now trains at {}", row + 1, r.lr));
                }
            }
            Command::FetchWeights if self.fetching.is_none() => {
                let entry = crate::model::io::zoo::for_backbone(self.settings.backbone);
                self.fetching = Some((0, None));
                self.worker(ctx).fetch_weights(entry);
            }
            Command::FetchWeights => {}
            Command::OpenRunFolder => {
                let dir = self.run_folder();
                if let Err(e) = crate::app::dialogs::open_folder(&dir) {
                    notices.error(TOPIC, e);
                }
            }
            // Commands that do not apply in the current state (a double click).
            Command::Start | Command::FindLr | Command::Resume | Command::Stop => {}
        }
    }
}
