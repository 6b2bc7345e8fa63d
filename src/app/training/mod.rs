//! The Training tab: set-up, plan editor, LR finder, run control, live plots, progress,
//! per-epoch metrics, a log and a batch preview. The run model ([`state`]) changes only by
//! trainer events and by commands; buttons push [`Command`]s that run after the frame is
//! drawn, and background work goes through one job/reply channel ([`worker`]).
pub mod charts;
pub mod plan_editor;
pub mod run_panel;
pub mod setup;
pub mod state;
pub mod tables;
pub mod worker;

pub use plan_editor::{plan_of, rows_of, PlanRow};
pub use setup::TrainingSettings;
pub use state::{RunModel, RunState};

use super::dialogs::{pick, DialogBackend, PathPrompt, Pick, Picked};
use super::notices::Notices;
use crate::data::sampler::Sampling;
use crate::device::DeviceChoice;
use crate::train::events::Control;
use crate::train::loss::ClassWeights;
use crate::train::schedule::{LrSpec, Plan, Trainable};
use crate::train::worker::Job;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use worker::{Reply, Worker};

/// Messages of this tab carry this topic.
const TOPIC: &str = "Training";

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
            Browse::Resume => ("Type the run folder to resume:", "/path/to/run"),
            Browse::LoadPlan => (
                "Type the path of a plan file (.toml):",
                "/path/to/plan.toml",
            ),
            Browse::SavePlan => ("Type where to save the plan (.toml):", "/path/to/plan.toml"),
        }
    }
}

/// State of the Training tab.
pub struct TrainingTab {
    /// Persisted settings.
    pub settings: TrainingSettings,
    /// Folder of a run to resume.
    pub resume_dir: String,
    /// The run shown.
    pub run: RunModel,
    /// Result of the last dataset scan.
    pub dataset: setup::Scan,
    scanned_for: Option<String>,
    /// The learning rate picked for the next `auto` step.
    pub chosen_lr: Option<f64>,
    /// The plan row selected (the LR finder's suggestion can be written into it).
    pub selected_row: usize,
    /// Images of the batch preview: (texture, label).
    pub preview: Vec<(egui::TextureHandle, String)>,
    preview_draws: u64,
    /// Show the preview with augmentation.
    pub preview_augment: bool,
    worker: Option<Worker>,
    control: Arc<Control>,
    commands: Vec<Command>,
    /// Slowest recent frame, ms (logged after every epoch).
    pub frame_ms: f32,
    /// A weights download in progress: (bytes, total).
    pub fetching: Option<(u64, Option<u64>)>,
    /// A typed path standing in for a dialog that could not be shown.
    pub prompt: Option<PathPrompt<Browse>>,
    /// Stop the next run after this many batches (tests and snapshots).
    #[doc(hidden)]
    pub stop_after: Option<usize>,
}

impl TrainingTab {
    /// A tab with these settings.
    pub fn new(mut settings: TrainingSettings) -> Self {
        // The fixed folder of earlier versions made every second run collide with the first.
        if settings.run_dir.trim() == "runs/app-run" {
            settings.run_dir.clear();
        }
        Self {
            settings,
            resume_dir: String::new(),
            run: RunModel::default(),
            dataset: None,
            scanned_for: None,
            chosen_lr: None,
            selected_row: 0,
            preview: Vec::new(),
            preview_draws: 0,
            preview_augment: true,
            worker: None,
            control: Arc::new(Control::default()),
            commands: Vec::new(),
            frame_ms: 0.0,
            fetching: None,
            prompt: None,
            stop_after: None,
        }
    }

    /// The plan as edited, or its problems.
    pub fn plan(&self) -> Result<Plan, Vec<String>> {
        let mut p = plan_of(&self.settings.plan_name, &self.settings.plan_rows)?;
        // The imbalance settings travel with a saved plan.
        p.sampling = Some(self.settings.sampling());
        p.class_weights = Some(self.settings.class_weights());
        Ok(p)
    }

    /// Takes a plan's rows and its imbalance settings, if it has them.
    fn take_plan(&mut self, plan: &Plan) {
        self.settings.plan_name = plan.name.clone();
        self.settings.plan_rows = rows_of(plan);
        if let Some(s) = plan.sampling {
            self.settings.balanced = s == Sampling::Balanced;
        }
        if let Some(w) = plan.class_weights {
            self.settings.class_weights = w == ClassWeights::Auto;
        }
    }

    fn dataset_ok(&self) -> bool {
        matches!(&self.dataset, Some(Ok(d)) if d.readiness.errors.is_empty())
    }

    /// Why Start is disabled, if it is.
    pub fn start_blocker(&self) -> Option<String> {
        if self.run.state.busy() {
            return Some(format!("busy: {}", self.run.state.words().to_lowercase()));
        }
        match &self.dataset {
            None => return Some("choose a dataset folder first".into()),
            Some(Err(_)) => return Some("the dataset folder cannot be used (see above)".into()),
            Some(Ok(d)) if !d.readiness.errors.is_empty() => {
                return Some("the data set cannot be trained on (see above)".into())
            }
            _ => {}
        }
        self.plan()
            .err()
            .map(|_| "the plan has errors (see the plan table)".into())
    }

    /// Queues a command as a button would.
    pub fn push(&mut self, c: Command) {
        self.commands.push(c);
    }

    fn worker(&mut self, ctx: &egui::Context) -> &mut Worker {
        self.worker.get_or_insert_with(|| Worker::new(ctx.clone()))
    }

    /// Handles replies from background work and rescans a changed dataset folder.
    pub fn poll(&mut self, ctx: &egui::Context, notices: &mut Notices) {
        // The folder and the options that change what it holds: a change rescans.
        let key = format!(
            "{}\n{:?}",
            self.settings.data_dir,
            self.settings.data_options()
        );
        if self.scanned_for.as_deref() != Some(key.as_str()) {
            self.scanned_for = Some(key.clone());
            self.dataset = None;
            // The preview follows the data set: a shown one is drawn again from the new one.
            if !self.preview.is_empty() {
                self.preview.clear();
                self.commands.push(Command::NewPreview);
            }
            if !self.settings.data_dir.trim().is_empty() {
                let dir = self.settings.data_dir.clone();
                let opts = self.settings.data_options();
                self.worker(ctx).scan(key, dir, opts);
            }
        }
        let replies = match self.worker.as_mut() {
            Some(w) => w.poll(),
            None => return,
        };
        for r in replies {
            match r {
                Reply::Scanned { key, result } => {
                    if self.scanned_for.as_deref() == Some(key.as_str()) {
                        self.dataset = Some(result);
                    }
                }
                // A preview of a folder no longer chosen is dropped.
                Reply::Preview(dir, _)
                    if dir.as_path() != std::path::Path::new(self.settings.data_dir.trim()) => {}
                Reply::Preview(_, Ok(images)) => {
                    self.preview = images
                        .into_iter()
                        .enumerate()
                        .map(|(i, p)| {
                            let img = egui::ColorImage::from_gray([p.side, p.side], &p.pixels);
                            let name = self
                                .dataset
                                .as_ref()
                                .and_then(|d| d.as_ref().ok())
                                .and_then(|d| d.classes.get(p.label).cloned())
                                .unwrap_or_else(|| "?".into());
                            (
                                ctx.load_texture(
                                    format!("preview-{i}"),
                                    img,
                                    egui::TextureOptions::LINEAR,
                                ),
                                name.to_string(),
                            )
                        })
                        .collect();
                }
                Reply::Preview(_, Err(e)) => notices.error(TOPIC, format!("batch preview: {e}")),
                Reply::Train(e) => {
                    use crate::train::events::TrainEvent;
                    let ended = matches!(e, TrainEvent::Stopped(_) | TrainEvent::Failed(_));
                    if matches!(e, TrainEvent::Epoch(_)) {
                        self.run
                            .log
                            .push(format!("UI: slowest recent frame {:.1} ms", self.frame_ms));
                    }
                    match self.run.apply(e, Instant::now()) {
                        Some(state::Message::Info(t)) => notices.info(TOPIC, t),
                        Some(state::Message::Error(t)) => notices.error(TOPIC, t),
                        None => {}
                    }
                    // A stopped or failed run keeps its checkpoint: offer it for resuming.
                    if let Some(dir) = self
                        .run
                        .last_checkpoint
                        .as_ref()
                        .filter(|_| ended)
                        .and_then(|p| p.parent())
                    {
                        self.resume_dir = crate::files::shown(dir).to_string();
                    }
                }
                Reply::JobEnded => self.run.job_ended(),
                Reply::Fetching(done, total) => self.fetching = Some((done, total)),
                Reply::Fetched(Ok(p)) => {
                    self.fetching = None;
                    notices.info(
                        TOPIC,
                        format!(
                            "ImageNet weights fetched and checked: {}; training starts from them",
                            crate::files::shown(&p)
                        ),
                    );
                    self.settings.weights = p.display().to_string();
                }
                Reply::Fetched(Err(e)) => {
                    self.fetching = None;
                    notices.error(TOPIC, format!("Fetching the ImageNet weights failed: {e}"));
                }
            }
        }
    }

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
                let job = Job::Train(Box::new(self.settings.train_config(plan, out)));
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
                let entry = crate::model::zoo::for_backbone(self.settings.backbone);
                self.fetching = Some((0, None));
                self.worker(ctx).fetch_weights(entry);
            }
            Command::FetchWeights => {}
            Command::OpenRunFolder => {
                let dir = self.run_folder();
                if let Err(e) = super::dialogs::open_folder(&dir) {
                    notices.error(TOPIC, e);
                }
            }
            // Commands that do not apply in the current state (a double click).
            Command::Start | Command::FindLr | Command::Resume | Command::Stop => {}
        }
    }

    /// The run folder, absolute: the one training writes to, or the next run's.
    pub fn run_folder(&self) -> PathBuf {
        let p = self
            .run
            .run_dir
            .clone()
            .unwrap_or_else(|| self.settings.next_run_dir());
        std::path::absolute(&p).unwrap_or(p)
    }

    /// Draws the tab; commands run at the end of the frame.
    pub fn ui(&mut self, ui: &mut egui::Ui, notices: &mut Notices, dialogs: DialogBackend) {
        let t0 = Instant::now();
        let ctx = ui.ctx().clone();
        self.poll(&ctx, notices);
        let plan = self.plan();
        let idle = !self.run.state.busy();
        let mut commands = std::mem::take(&mut self.commands);
        egui::Panel::left("training-setup")
            .resizable(true)
            .default_size(400.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    setup::setup_ui(
                        ui,
                        &mut self.settings,
                        &self.dataset,
                        self.fetching,
                        idle,
                        &mut commands,
                    );
                    ui.separator();
                    plan_editor::plan_ui(
                        ui,
                        &mut self.settings.plan_rows,
                        &plan,
                        &mut self.selected_row,
                        idle,
                        &mut commands,
                    );
                    ui.separator();
                    self.control_ui(ui, &mut commands);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                self.progress_ui(ui, &mut commands);
                if self.run.state == RunState::FindingLr || !self.run.lr_points.is_empty() {
                    charts::lr_finder_ui(
                        ui,
                        &self.run,
                        self.chosen_lr,
                        &self.settings.plan_rows,
                        self.selected_row,
                        &mut commands,
                    );
                }
                let epochs = plan.as_ref().map(|p| p.total_epochs()).unwrap_or(1);
                charts::plots_ui(ui, &self.run, epochs);
                self.preview_ui(ui, &mut commands);
                tables::epochs_ui(ui, &self.run);
                tables::log_ui(ui, &self.run);
            });
        });
        if let Some(p) = self.prompt.as_mut() {
            match p.show(&ctx) {
                Some(Some(path)) => {
                    let what = p.purpose;
                    self.prompt = None;
                    commands.push(Command::Answer(what, path));
                }
                Some(None) => self.prompt = None,
                None => {}
            }
        }
        self.commands = commands;
        self.run_commands(&ctx, notices, dialogs);
        if self.run.state.busy() {
            // Progress and ETA move even between events.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
        let ms = t0.elapsed().as_secs_f32() * 1000.0;
        self.frame_ms = if ms > self.frame_ms {
            ms
        } else {
            0.95 * self.frame_ms + 0.05 * ms
        };
    }
}
