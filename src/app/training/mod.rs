//! The Training tab: set-up, plan editor, LR finder, run control, live plots, progress,
//! per-epoch metrics, a log and a batch preview. The run model ([`state`]) changes only by
//! trainer events and by commands; buttons push [`Command`]s ([`commands`]) that run before
//! the next frame is drawn, and background work goes through one job/reply channel
//! ([`worker`]).
pub mod charts;
pub mod commands;
pub mod data_setup;
pub mod plan_editor;
pub mod run_panel;
pub mod setup;
pub mod state;
pub mod tables;
pub mod worker;

pub use commands::{Browse, Command};
pub use plan_editor::{plan_of, rows_of, PlanRow};
pub use setup::TrainingSettings;
pub use state::{RunModel, RunState};

use super::dialogs::{DialogBackend, PathPrompt};
use super::notices::Notices;
use crate::app::notices::Topic;
use crate::data::sampler::Sampling;
use crate::train::events::Control;
use crate::train::loss::ClassWeights;
use crate::train::schedule::Plan;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;
use worker::{Reply, Worker};

/// Messages of this tab carry this topic.
const TOPIC: Topic = Topic::Training;

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
        if let Err(e) = self.settings.uncertain_policies() {
            return Some(format!("uncertain labels: {e}"));
        }
        if let Err(e) = self.settings.distill() {
            return Some(format!("distillation: {e}"));
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
                        .map(|(i, (p, name))| {
                            let img = egui::ColorImage::from_gray([p.side, p.side], &p.pixels);
                            (
                                ctx.load_texture(
                                    format!("preview-{i}"),
                                    img,
                                    egui::TextureOptions::LINEAR,
                                ),
                                name,
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

    /// The run folder, absolute: the one training writes to, or the next run's.
    pub fn run_folder(&self) -> PathBuf {
        let p = self
            .run
            .run_dir
            .clone()
            .unwrap_or_else(|| self.settings.next_run_dir());
        std::path::absolute(&p).unwrap_or(p)
    }

    /// Background replies, then the commands the last frame queued: run before each frame
    /// is drawn ([`crate::app::App::logic`]), whether or not the tab is shown.
    pub fn logic(&mut self, ctx: &egui::Context, notices: &mut Notices, dialogs: DialogBackend) {
        self.poll(ctx, notices);
        self.run_commands(ctx, notices, dialogs);
        if self.run.state.busy() {
            // Progress and ETA move even between events.
            ctx.request_repaint_after(std::time::Duration::from_millis(250));
        }
    }

    /// Draws the tab; what its buttons ask for is queued for the next [`Self::logic`].
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let t0 = Instant::now();
        let ctx = ui.ctx().clone();
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
        if !self.commands.is_empty() {
            ctx.request_repaint();
        }
        let ms = t0.elapsed().as_secs_f32() * 1000.0;
        self.frame_ms = if ms > self.frame_ms {
            ms
        } else {
            0.95 * self.frame_ms + 0.05 * ms
        };
    }
}
