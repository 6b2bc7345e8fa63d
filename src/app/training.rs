//! The Training tab: set-up (dataset, weights, backbone, device, plan), the LR finder
//! chart, run control, live plots, progress, per-epoch metrics and a log. Training runs on
//! the "trainer" worker thread; this module only reads state and sends commands.
use super::plots::decimate;
use super::sink::GuiSink;
use crate::data::augment::{AugmentConfig, Flip};
use crate::data::split::Dataset;
use crate::device::DeviceChoice;
use crate::model::Backbone;
use crate::train::events::{Control, EpochMetrics, TrainEvent};
use crate::train::lr_finder::{LrFinderResult, LrPoint, Smoother};
use crate::train::schedule::{LrSpec, Plan, Stage, Step, Trainable};
use crate::train::trainer::TrainConfig;
use crate::train::worker::{self, Job};
use crate::CLASS_NAMES;
use egui_plot::{Legend, Line, Plot, PlotPoints, Points, VLine};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// One editable row of the plan table; consecutive rows of one size form a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    /// Image size (text as typed).
    pub size: String,
    /// What is trained.
    pub train: Trainable,
    /// Learning rate (text as typed: 1e-3, 1e-6..1e-4, ..1e-3, auto).
    pub lr: String,
    /// Epochs (text as typed).
    pub epochs: String,
}

/// Rows of a plan.
pub fn rows_of(plan: &Plan) -> Vec<PlanRow> {
    plan.stages
        .iter()
        .flat_map(|st| {
            st.steps.iter().map(move |s| PlanRow {
                size: st.size_px.to_string(),
                train: s.train,
                lr: s.lr.to_string(),
                epochs: s.epochs.to_string(),
            })
        })
        .collect()
}

/// Builds a plan from rows, or the problems (one per wrong row).
pub fn plan_of(name: &str, rows: &[PlanRow]) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let at = format!("row {}", i + 1);
        let size: Option<u32> = r.size.trim().parse().ok();
        if size.is_none() {
            problems.push(format!("{at}: size {:?} is not a whole number", r.size));
        }
        let lr: Option<LrSpec> = match r.lr.parse() {
            Ok(l) => Some(l),
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                None
            }
        };
        let epochs: Option<usize> = r.epochs.trim().parse().ok();
        if epochs.is_none() {
            problems.push(format!("{at}: epochs {:?} is not a whole number", r.epochs));
        }
        if let (Some(size), Some(lr), Some(epochs)) = (size, lr, epochs) {
            let step = Step {
                train: r.train,
                lr,
                epochs,
            };
            match stages.last_mut() {
                Some(st) if st.size_px == size => st.steps.push(step),
                _ => stages.push(Stage {
                    size_px: size,
                    steps: vec![step],
                }),
            }
        }
    }
    if rows.is_empty() {
        problems.push("the plan has no rows".into());
    }
    let plan = Plan {
        name: name.to_string(),
        stages,
    };
    if problems.is_empty() {
        problems = plan.problems();
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// Settings of the tab that persist between runs of the app.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TrainingSettings {
    /// Dataset folder.
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
        }
    }
}

/// What the worker is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunState {
    /// Nothing running.
    Idle,
    /// Training.
    Running,
    /// Paused between batches.
    Paused,
    /// Stop requested; waiting for the checkpoint.
    Stopping,
    /// Running the LR finder.
    FindingLr,
}

/// The dataset as scanned in the background.
#[derive(Debug, Clone)]
pub struct DatasetSummary {
    /// Images per class, train.
    pub train: [usize; 4],
    /// Images per class, test.
    pub test: [usize; 4],
    /// Layout description.
    pub layout: String,
    /// Missing files (train + test).
    pub missing: usize,
    /// Patients in both splits.
    pub leaked: usize,
}

type ScanSlot = Arc<Mutex<Option<(String, Result<DatasetSummary, String>)>>>;

/// State of the Training tab.
pub struct TrainingTab {
    /// Persisted settings.
    pub settings: TrainingSettings,
    /// Resume folder text.
    pub resume_dir: String,
    /// Current state.
    pub state: RunState,
    scan: ScanSlot,
    scanned_for: String,
    /// Result of the last dataset scan.
    pub dataset: Option<Result<DatasetSummary, String>>,
    control: Arc<Control>,
    rx: Option<Receiver<TrainEvent>>,
    /// Batch losses (iteration, loss).
    pub losses: Vec<[f64; 2]>,
    smoothed: Vec<[f64; 2]>,
    smoother: Smoother,
    /// Learning rate per group per batch.
    pub lrs: Vec<Vec<[f64; 2]>>,
    beta1: Vec<[f64; 2]>,
    /// Metrics per epoch.
    pub epochs: Vec<EpochMetrics>,
    step_starts: Vec<f64>,
    /// LR-finder points so far.
    pub lr_points: Vec<LrPoint>,
    /// The LR finder's result.
    pub lr_result: Option<LrFinderResult>,
    /// The learning rate picked for the next `auto` step.
    pub chosen_lr: Option<f64>,
    /// Log lines.
    pub log: Vec<String>,
    /// Last error from the worker.
    pub error: Option<String>,
    total_iters: usize,
    done_iters: usize,
    batch: (usize, usize),
    /// (stage, step, epochs done in the step, epochs in the step, size).
    step_progress: Option<(usize, usize, usize, usize, u32)>,
    img_per_s: f64,
    started: Option<(Instant, usize)>,
    /// Last checkpoint written.
    pub last_checkpoint: Option<PathBuf>,
    /// Model file of the last finished run.
    pub finished_model: Option<PathBuf>,
    /// Slowest recent frame, ms (shown in the status line).
    pub frame_ms: f32,
    preview_slot: PreviewSlot,
    /// Images of the batch preview: (texture, label).
    pub preview: Vec<(egui::TextureHandle, String)>,
    preview_error: Option<String>,
    preview_draws: u64,
    /// Show the preview with augmentation.
    pub preview_augment: bool,
    /// The device of the last run, as the trainer described it.
    pub device_in_use: Option<String>,
    /// Stop the next run after this many batches (tests and snapshots).
    #[doc(hidden)]
    pub stop_after: Option<usize>,
}

/// A preview batch: (8-bit gray pixels, side, label) per image.
type PreviewBatch = Result<Vec<(Vec<u8>, usize, String)>, String>;
type PreviewSlot = Arc<Mutex<Option<PreviewBatch>>>;

impl TrainingTab {
    /// A tab with these settings.
    pub fn new(settings: TrainingSettings) -> Self {
        Self {
            settings,
            resume_dir: String::new(),
            state: RunState::Idle,
            scan: Arc::new(Mutex::new(None)),
            scanned_for: String::new(),
            dataset: None,
            control: Arc::new(Control::default()),
            rx: None,
            losses: Vec::new(),
            smoothed: Vec::new(),
            smoother: Smoother::default(),
            lrs: Vec::new(),
            beta1: Vec::new(),
            epochs: Vec::new(),
            step_starts: Vec::new(),
            lr_points: Vec::new(),
            lr_result: None,
            chosen_lr: None,
            log: Vec::new(),
            error: None,
            total_iters: 0,
            done_iters: 0,
            batch: (0, 0),
            step_progress: None,
            img_per_s: 0.0,
            started: None,
            last_checkpoint: None,
            finished_model: None,
            frame_ms: 0.0,
            preview_slot: Arc::new(Mutex::new(None)),
            preview: Vec::new(),
            preview_error: None,
            preview_draws: 0,
            preview_augment: true,
            stop_after: None,
            device_in_use: None,
        }
    }

    /// The plan as edited, or its problems.
    pub fn plan(&self) -> Result<Plan, Vec<String>> {
        plan_of(&self.settings.plan_name, &self.settings.plan_rows)
    }

    fn dataset_ok(&self) -> bool {
        matches!(&self.dataset, Some(Ok(d)) if d.missing == 0)
    }

    /// True when Start may be pressed.
    pub fn can_start(&self) -> bool {
        self.state == RunState::Idle && self.dataset_ok() && self.plan().is_ok()
    }

    /// Starts a background scan of the dataset folder when it changed.
    fn poll_scan(&mut self, ctx: &egui::Context) {
        if let Ok(mut slot) = self.scan.lock() {
            if let Some((dir, r)) = slot.take() {
                if dir == self.settings.data_dir {
                    self.dataset = Some(r);
                }
            }
        }
        if self.scanned_for != self.settings.data_dir {
            self.scanned_for = self.settings.data_dir.clone();
            self.dataset = None;
            if self.settings.data_dir.trim().is_empty() {
                return;
            }
            let dir = self.settings.data_dir.clone();
            let slot = self.scan.clone();
            let ctx = ctx.clone();
            let _ = std::thread::Builder::new()
                .name("dataset-scan".into())
                .spawn(move || {
                    let r = Dataset::open(std::path::Path::new(&dir))
                        .map(|ds| DatasetSummary {
                            train: ds.train.class_counts(),
                            test: ds.test.class_counts(),
                            layout: match &ds.layout {
                                crate::data::split::Layout::SplitFiles { .. } => {
                                    "split files".into()
                                }
                                crate::data::split::Layout::ClassFolders => "class folders".into(),
                            },
                            missing: ds.train.missing.len() + ds.test.missing.len(),
                            leaked: ds.leaked_patients().len(),
                        })
                        .map_err(|e| e.to_string());
                    if let Ok(mut s) = slot.lock() {
                        *s = Some((dir, r));
                    }
                    ctx.request_repaint();
                });
        }
    }

    fn config(&self, plan: Plan) -> TrainConfig {
        let s = &self.settings;
        let mut c = TrainConfig::new(
            PathBuf::from(s.data_dir.trim()),
            PathBuf::from(s.run_dir.trim()),
        );
        c.backbone = s.backbone;
        c.weights = (!s.weights.trim().is_empty()).then(|| PathBuf::from(s.weights.trim()));
        c.plan = plan;
        c.batch_size = s.batch_size;
        c.seed = s.seed;
        c.augment = if s.augment {
            AugmentConfig {
                flip: s.flip,
                ..AugmentConfig::paper()
            }
        } else {
            AugmentConfig::off()
        };
        c
    }

    fn clear_run(&mut self) {
        self.losses.clear();
        self.smoothed.clear();
        self.smoother = Smoother::default();
        self.lrs.clear();
        self.beta1.clear();
        self.epochs.clear();
        self.step_starts.clear();
        self.error = None;
        self.done_iters = 0;
        self.total_iters = 0;
        self.batch = (0, 0);
        self.step_progress = None;
    }

    fn launch(&mut self, ctx: &egui::Context, job: Job, state: RunState) {
        let device: DeviceChoice = match self.settings.device.parse() {
            Ok(d) => d,
            Err(e) => {
                self.error = Some(e.to_string());
                return;
            }
        };
        self.control = Arc::new(Control::default());
        if let Some(n) = self.stop_after {
            self.control.stop_after_batches(n);
        }
        let (sink, rx) = GuiSink::new(ctx.clone());
        match worker::spawn(job, device, Arc::new(sink), self.control.clone()) {
            Ok(_) => {
                self.rx = Some(rx);
                self.state = state;
                self.started = Some((Instant::now(), self.done_iters));
            }
            Err(e) => self.error = Some(format!("cannot start the trainer thread: {e}")),
        }
    }

    /// Start pressed: apply a picked learning rate to the first `auto` row, then train.
    pub fn start(&mut self, ctx: &egui::Context) {
        if let Some(lr) = self.chosen_lr.take() {
            if let Some(r) = self
                .settings
                .plan_rows
                .iter_mut()
                .find(|r| r.lr.trim().eq_ignore_ascii_case("auto"))
            {
                r.lr = LrSpec::for_suggestion(lr).to_string();
            }
        }
        let Ok(plan) = self.plan() else { return };
        self.clear_run();
        self.log.push(format!(
            "starting {} ({} epochs) in {}",
            plan.name,
            plan.total_epochs(),
            self.settings.run_dir
        ));
        let job = Job::Train(Box::new(self.config(plan)));
        self.launch(ctx, job, RunState::Running);
    }

    /// Runs the LR finder for the plan's first whole-network step.
    pub fn find_lr(&mut self, ctx: &egui::Context) {
        let Ok(plan) = self.plan() else { return };
        self.lr_points.clear();
        self.lr_result = None;
        self.chosen_lr = None;
        self.error = None;
        let mut cfg = self.config(plan);
        cfg.out_dir =
            std::env::temp_dir().join(format!("covid-resnet-lr-find-{}", std::process::id()));
        self.launch(ctx, Job::LrFind(Box::new(cfg)), RunState::FindingLr);
    }

    /// Continues the run in `resume_dir`.
    pub fn resume(&mut self, ctx: &egui::Context) {
        self.clear_run();
        let dir = PathBuf::from(self.resume_dir.trim());
        self.launch(ctx, Job::Resume(dir), RunState::Running);
    }

    /// Pause or resume between batches.
    pub fn toggle_pause(&mut self) {
        match self.state {
            RunState::Running => {
                self.control.pause();
                self.state = RunState::Paused;
            }
            RunState::Paused => {
                self.control.resume();
                self.state = RunState::Running;
            }
            _ => {}
        }
    }

    /// Stop after the current batch, with a checkpoint.
    pub fn stop(&mut self) {
        self.control.stop();
        self.control.resume();
        self.state = RunState::Stopping;
    }

    /// Takes every pending event from the worker.
    pub fn poll_events(&mut self) {
        let Some(rx) = &self.rx else { return };
        let mut events = Vec::new();
        let mut closed = false;
        loop {
            match rx.try_recv() {
                Ok(e) => events.push(e),
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        for e in events {
            self.apply(e);
        }
        if closed {
            self.rx = None;
            if self.state != RunState::Idle {
                self.state = RunState::Idle;
            }
        }
    }

    fn apply(&mut self, e: TrainEvent) {
        match e {
            TrainEvent::Started {
                total_iters,
                done_iters,
                device,
                run_dir,
            } => {
                self.total_iters = total_iters;
                self.done_iters = done_iters;
                self.started = Some((Instant::now(), done_iters));
                self.device_in_use = Some(device.clone());
                self.log
                    .push(format!("training on {device} in {}", run_dir.display()));
            }
            e @ TrainEvent::StepStarted { .. } => {
                if let TrainEvent::StepStarted {
                    stage,
                    step,
                    size_px,
                    epochs,
                    ..
                } = e
                {
                    self.step_starts.push(self.done_iters as f64);
                    self.step_progress = Some((stage, step, 0, epochs, size_px));
                }
                self.log.extend(e.step_summary());
            }
            TrainEvent::LrFinderPoint(p) => self.lr_points.push(p),
            TrainEvent::LrFinderDone(r) => {
                self.log
                    .push(format!("LR finder: {} points", r.points.len()));
                self.lr_points = r.points.clone();
                self.lr_result = Some(r);
            }
            TrainEvent::Batch {
                global_iter,
                batch,
                batches,
                loss,
                lrs,
                beta1,
                img_per_s,
            } => {
                let x = global_iter as f64;
                self.losses.push([x, loss]);
                self.smoothed.push([x, self.smoother.add(loss)]);
                if self.lrs.len() < lrs.len() {
                    self.lrs.resize(lrs.len(), Vec::new());
                }
                for (g, lr) in lrs.iter().enumerate() {
                    self.lrs[g].push([x, *lr]);
                }
                self.beta1.push([x, beta1]);
                self.done_iters = global_iter + 1;
                self.batch = (batch + 1, batches);
                self.img_per_s = img_per_s;
            }
            TrainEvent::Epoch(m) => {
                self.log
                    .push(format!("UI: slowest recent frame {:.1} ms", self.frame_ms));
                if let Some(sp) = self.step_progress.as_mut() {
                    sp.2 += 1;
                }
                self.log.push(format!(
                    "epoch {}: valid loss {:.4}, accuracy {:.1} %",
                    m.global_epoch + 1,
                    m.valid_loss,
                    100.0 * m.accuracy
                ));
                self.epochs.push(m);
            }
            TrainEvent::Checkpoint(p) => {
                self.log.push(format!("checkpoint {}", p.display()));
                self.last_checkpoint = Some(p);
            }
            TrainEvent::Paused => self.log.push("paused".into()),
            TrainEvent::Resumed => self.log.push("resumed".into()),
            TrainEvent::Log(s) => self.log.push(s),
            TrainEvent::Stopped(p) => {
                self.log
                    .push(format!("stopped; checkpoint {}", p.display()));
                if let Some(dir) = p.parent() {
                    self.resume_dir = dir.display().to_string();
                }
                self.last_checkpoint = Some(p);
                self.state = RunState::Idle;
            }
            TrainEvent::Finished { model, report } => {
                self.log.push(format!("finished: {}", model.display()));
                if let Some(r) = report {
                    self.log.push(format!("test report {}", r.display()));
                }
                self.finished_model = Some(model);
                self.state = RunState::Idle;
            }
            TrainEvent::Failed(msg) => {
                self.log.push(format!("error: {msg}"));
                self.error = Some(msg);
                self.state = RunState::Idle;
            }
        }
    }

    /// Builds a batch as the network gets it at the first stage's size, in the background.
    pub fn draw_preview(&mut self, ctx: &egui::Context) {
        let size = self
            .plan()
            .ok()
            .and_then(|p| p.stages.first().map(|s| s.size_px))
            .unwrap_or(128);
        let mut cfg = crate::data::loader::LoaderConfig::train(12, size, self.settings.seed);
        cfg.augment = if self.preview_augment {
            AugmentConfig {
                flip: self.settings.flip,
                ..AugmentConfig::paper()
            }
        } else {
            AugmentConfig::off()
        };
        cfg.threads = 1;
        let dir = PathBuf::from(self.settings.data_dir.trim());
        let epoch = self.preview_draws;
        self.preview_draws += 1;
        let slot = self.preview_slot.clone();
        let ctx = ctx.clone();
        let _ = std::thread::Builder::new()
            .name("batch-preview".into())
            .spawn(move || {
                let r = (|| -> crate::Result<Vec<(Vec<u8>, usize, String)>> {
                    let ds = Dataset::open(&dir)?;
                    let loader =
                        crate::data::loader::DataLoader::new(ds.train.samples, cfg.clone())?;
                    let b = loader
                        .epoch(epoch)
                        .next()
                        .ok_or_else(|| crate::Error::invalid("dataset", "no training images"))??;
                    let s = b.size_px as usize;
                    let plane = s * s;
                    Ok(b.labels
                        .iter()
                        .enumerate()
                        .map(|(k, &l)| {
                            // Undo the normalisation of channel 0 for display.
                            let px = b.data[k * 3 * plane..k * 3 * plane + plane]
                                .iter()
                                .map(|v| {
                                    ((v * cfg.std[0] + cfg.mean[0]).clamp(0.0, 1.0) * 255.0).round()
                                        as u8
                                })
                                .collect();
                            (
                                px,
                                s,
                                CLASS_NAMES
                                    .get(l as usize)
                                    .copied()
                                    .unwrap_or("?")
                                    .to_string(),
                            )
                        })
                        .collect())
                })()
                .map_err(|e| e.to_string());
                if let Ok(mut g) = slot.lock() {
                    *g = Some(r);
                }
                ctx.request_repaint();
            });
    }

    fn preview_ui(&mut self, ui: &mut egui::Ui) {
        if let Some(r) = self.preview_slot.lock().ok().and_then(|mut g| g.take()) {
            match r {
                Ok(images) => {
                    self.preview_error = None;
                    self.preview = images
                        .into_iter()
                        .enumerate()
                        .map(|(i, (px, s, label))| {
                            let img = egui::ColorImage::from_gray([s, s], &px);
                            (
                                ui.ctx().load_texture(
                                    format!("preview-{i}"),
                                    img,
                                    egui::TextureOptions::LINEAR,
                                ),
                                label,
                            )
                        })
                        .collect();
                }
                Err(e) => self.preview_error = Some(e),
            }
        }
        ui.collapsing("Batch preview", |ui| {
            ui.horizontal(|ui| {
                if ui
                    .add_enabled(self.dataset_ok(), egui::Button::new("New batch"))
                    .clicked()
                {
                    let ctx = ui.ctx().clone();
                    self.draw_preview(&ctx);
                }
                ui.checkbox(&mut self.preview_augment, "augmented");
                ui.label("as the network gets it at the first stage's size");
            });
            if let Some(e) = &self.preview_error {
                ui.colored_label(egui::Color32::LIGHT_RED, e);
            }
            egui::Grid::new("preview-grid").show(ui, |ui| {
                for (i, (tex, label)) in self.preview.iter().enumerate() {
                    ui.vertical(|ui| {
                        ui.add(egui::Image::new(tex).fit_to_exact_size(egui::vec2(96.0, 96.0)));
                        ui.label(label);
                    });
                    if i % 6 == 5 {
                        ui.end_row();
                    }
                }
            });
        });
    }

    /// Draws the tab.
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        let t0 = Instant::now();
        let ctx = ui.ctx().clone();
        self.poll_scan(&ctx);
        self.poll_events();
        egui::Panel::left("training-setup")
            .resizable(true)
            .default_size(380.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.setup_ui(ui);
                    ui.separator();
                    self.plan_ui(ui);
                    ui.separator();
                    self.control_ui(ui, &ctx);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            egui::ScrollArea::vertical().show(ui, |ui| {
                self.progress_ui(ui);
                if self.state == RunState::FindingLr || !self.lr_points.is_empty() {
                    self.lr_finder_ui(ui);
                }
                self.plots_ui(ui);
                self.preview_ui(ui);
                self.epochs_ui(ui);
                self.log_ui(ui);
            });
        });
        if self.state != RunState::Idle {
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

    fn setup_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Set-up");
        let idle = self.state == RunState::Idle;
        ui.add_enabled_ui(idle, |ui| {
            let data_label = ui
                .horizontal(|ui| {
                    let l = ui.label("Dataset folder");
                    if ui.button("Browse...").clicked() {
                        if let Some(p) = rfd::FileDialog::new().pick_folder() {
                            self.settings.data_dir = p.display().to_string();
                        }
                    }
                    l.id
                })
                .inner;
            ui.add(
                egui::TextEdit::singleline(&mut self.settings.data_dir)
                    .hint_text("folder with train/ and test/")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(data_label);
            match &self.dataset {
                None if !self.settings.data_dir.trim().is_empty() => {
                    ui.label("scanning...");
                }
                None => {
                    ui.label("Choose a dataset folder (COVIDx split files or class folders).");
                }
                Some(Err(e)) => {
                    ui.colored_label(egui::Color32::LIGHT_RED, e);
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
                        ui.colored_label(
                            egui::Color32::LIGHT_RED,
                            format!("{} listed files are missing", d.missing),
                        );
                    }
                    if d.leaked > 0 {
                        ui.colored_label(
                            egui::Color32::YELLOW,
                            format!("{} patients are in both train and test", d.leaked),
                        );
                    }
                }
            }
            let weights_label = ui
                .horizontal(|ui| {
                    let l = ui.label("Pretrained weights");
                    if ui.button("Browse...").clicked() {
                        if let Some(p) = rfd::FileDialog::new()
                            .add_filter("weights", &["pth", "pt", "safetensors", "bin"])
                            .pick_file()
                        {
                            self.settings.weights = p.display().to_string();
                        }
                    }
                    l.id
                })
                .inner;
            ui.add(
                egui::TextEdit::singleline(&mut self.settings.weights)
                    .hint_text("optional: torchvision/timm .pth or .safetensors")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(weights_label);
            if self.settings.weights.trim().is_empty() {
                ui.label("No weights: training starts from random initialisation.");
            }
            egui::Grid::new("setup-grid").num_columns(2).show(ui, |ui| {
                let l = ui.label("Backbone");
                egui::ComboBox::from_id_salt("backbone")
                    .selected_text(self.settings.backbone.name())
                    .show_ui(ui, |ui| {
                        for b in Backbone::ALL {
                            ui.selectable_value(&mut self.settings.backbone, b, b.name());
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Device");
                egui::ComboBox::from_id_salt("device")
                    .selected_text(self.settings.device.clone())
                    .show_ui(ui, |ui| {
                        for d in ["auto", "cpu", "cuda:0", "metal"] {
                            ui.selectable_value(&mut self.settings.device, d.to_string(), d);
                        }
                    })
                    .response
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Batch size");
                ui.add(egui::DragValue::new(&mut self.settings.batch_size).range(2..=512))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Seed");
                ui.add(egui::DragValue::new(&mut self.settings.seed))
                    .labelled_by(l.id);
                ui.end_row();
                let l = ui.label("Augmentation");
                ui.horizontal(|ui| {
                    ui.checkbox(&mut self.settings.augment, "on");
                    egui::ComboBox::from_id_salt("flip")
                        .selected_text(format!("{:?} flip", self.settings.flip))
                        .show_ui(ui, |ui| {
                            for f in [Flip::Vertical, Flip::Horizontal, Flip::Dihedral, Flip::None]
                            {
                                ui.selectable_value(&mut self.settings.flip, f, format!("{f:?}"));
                            }
                        })
                        .response
                        .labelled_by(l.id);
                });
                ui.end_row();
                let l = ui.label("Run folder");
                ui.text_edit_singleline(&mut self.settings.run_dir)
                    .labelled_by(l.id);
                ui.end_row();
            });
        });
    }

    fn plan_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("Plan");
        let idle = self.state == RunState::Idle;
        ui.add_enabled_ui(idle, |ui| {
            ui.horizontal(|ui| {
                if ui.button("Paper preset").clicked() {
                    self.settings.plan_name = "paper".into();
                    self.settings.plan_rows = rows_of(&Plan::paper());
                }
                if ui.button("Quick preset").clicked() {
                    self.settings.plan_name = "quick".into();
                    self.settings.plan_rows = rows_of(&Plan::quick());
                }
                if ui.button("Load...").clicked() {
                    if let Some(p) = rfd::FileDialog::new()
                        .add_filter("plan", &["toml"])
                        .pick_file()
                    {
                        match Plan::load(&p) {
                            Ok(plan) => {
                                self.settings.plan_name = plan.name.clone();
                                self.settings.plan_rows = rows_of(&plan);
                            }
                            Err(e) => self.error = Some(e.to_string()),
                        }
                    }
                }
                if ui.button("Save...").clicked() {
                    if let (Ok(plan), Some(p)) = (
                        self.plan(),
                        rfd::FileDialog::new()
                            .add_filter("plan", &["toml"])
                            .set_file_name("plan.toml")
                            .save_file(),
                    ) {
                        if let Err(e) = plan.save(&p) {
                            self.error = Some(e.to_string());
                        }
                    }
                }
            });
            let mut remove = None;
            egui::Grid::new("plan-grid")
                .striped(true)
                .num_columns(5)
                .show(ui, |ui| {
                    let heads: Vec<egui::Id> = ["size px", "train", "learning rate", "epochs", ""]
                        .iter()
                        .map(|h| ui.strong(*h).id)
                        .collect();
                    ui.end_row();
                    for (i, r) in self.settings.plan_rows.iter_mut().enumerate() {
                        ui.add(
                            egui::TextEdit::singleline(&mut r.size)
                                .desired_width(40.0)
                                .id_salt(("size", i)),
                        )
                        .labelled_by(heads[0]);
                        egui::ComboBox::from_id_salt(("train", i))
                            .width(60.0)
                            .selected_text(match r.train {
                                Trainable::Head => "head",
                                Trainable::All => "all",
                            })
                            .show_ui(ui, |ui| {
                                ui.selectable_value(&mut r.train, Trainable::Head, "head");
                                ui.selectable_value(&mut r.train, Trainable::All, "all");
                            })
                            .response
                            .labelled_by(heads[1]);
                        ui.add(
                            egui::TextEdit::singleline(&mut r.lr)
                                .desired_width(100.0)
                                .id_salt(("lr", i)),
                        )
                        .labelled_by(heads[2]);
                        ui.add(
                            egui::TextEdit::singleline(&mut r.epochs)
                                .desired_width(30.0)
                                .id_salt(("epochs", i)),
                        )
                        .labelled_by(heads[3]);
                        if ui
                            .small_button("x")
                            .on_hover_text("remove this row")
                            .clicked()
                        {
                            remove = Some(i);
                        }
                        ui.end_row();
                    }
                });
            if let Some(i) = remove {
                self.settings.plan_rows.remove(i);
            }
            if ui.button("Add row").clicked() {
                let last = self.settings.plan_rows.last().cloned().unwrap_or(PlanRow {
                    size: "224".into(),
                    train: Trainable::All,
                    lr: "1e-4".into(),
                    epochs: "1".into(),
                });
                self.settings.plan_rows.push(last);
            }
        });
        match self.plan() {
            Ok(p) => {
                ui.label(format!(
                    "{} stage(s), {} epochs",
                    p.stages.len(),
                    p.total_epochs()
                ));
            }
            Err(problems) => {
                for p in problems {
                    ui.colored_label(egui::Color32::LIGHT_RED, p);
                }
            }
        }
    }

    fn control_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        ui.heading("Run");
        ui.horizontal(|ui| {
            if ui
                .add_enabled(self.can_start(), egui::Button::new("Start"))
                .clicked()
            {
                self.start(ctx);
            }
            let pausable = matches!(self.state, RunState::Running | RunState::Paused);
            let label = if self.state == RunState::Paused {
                "Resume"
            } else {
                "Pause"
            };
            if ui.add_enabled(pausable, egui::Button::new(label)).clicked() {
                self.toggle_pause();
            }
            let stoppable = matches!(
                self.state,
                RunState::Running | RunState::Paused | RunState::FindingLr
            );
            if ui
                .add_enabled(stoppable, egui::Button::new("Stop"))
                .clicked()
            {
                self.stop();
            }
            let can_find = self.state == RunState::Idle && self.dataset_ok() && self.plan().is_ok();
            if ui
                .add_enabled(can_find, egui::Button::new("LR finder"))
                .clicked()
            {
                self.find_lr(ctx);
            }
        });
        ui.horizontal(|ui| {
            let ok = self.state == RunState::Idle && !self.resume_dir.trim().is_empty();
            if ui
                .add_enabled(ok, egui::Button::new("Resume run"))
                .clicked()
            {
                self.resume(ctx);
            }
            let l = ui.label("folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.resume_dir)
                    .hint_text("run folder with checkpoint.safetensors"),
            )
            .labelled_by(l.id);
            if ui
                .add_enabled(self.state == RunState::Idle, egui::Button::new("..."))
                .clicked()
            {
                if let Some(p) = rfd::FileDialog::new().pick_folder() {
                    self.resume_dir = p.display().to_string();
                }
            }
        });
        ui.label(format!("State: {:?}", self.state));
        if let Some(e) = &self.error {
            ui.colored_label(egui::Color32::LIGHT_RED, format!("Error: {e}"));
        }
    }

    fn progress_ui(&mut self, ui: &mut egui::Ui) {
        let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
        let eta = match self.started {
            Some((t, from))
                if matches!(self.state, RunState::Running)
                    && self.done_iters > from
                    && self.total_iters > self.done_iters =>
            {
                let per = t.elapsed().as_secs_f64() / (self.done_iters - from) as f64;
                format!(
                    "ETA {}",
                    fmt_secs(per * (self.total_iters - self.done_iters) as f64)
                )
            }
            _ => String::new(),
        };
        ui.add(
            egui::ProgressBar::new(frac(self.done_iters, self.total_iters)).text(format!(
                "plan: {}/{} iterations {eta}",
                self.done_iters, self.total_iters
            )),
        );
        if let Some((stage, step, done, total, size)) = self.step_progress {
            ui.add(egui::ProgressBar::new(frac(done, total)).text(format!(
                "stage {} step {} ({size} px): epoch {}/{total}",
                stage + 1,
                step + 1,
                (done + 1).min(total)
            )));
        }
        ui.add(
            egui::ProgressBar::new(frac(self.batch.0, self.batch.1)).text(
                if self.state == RunState::Running {
                    format!(
                        "epoch: batch {}/{}  {:.1} img/s",
                        self.batch.0, self.batch.1, self.img_per_s
                    )
                } else {
                    format!("epoch: batch {}/{}", self.batch.0, self.batch.1)
                },
            ),
        );
        if let Some(m) = &self.finished_model {
            ui.label(format!(
                "Model: {} (open it in the Viewer tab)",
                m.display()
            ));
        }
    }

    fn lr_finder_ui(&mut self, ui: &mut egui::Ui) {
        ui.heading("LR finder");
        let raw: Vec<[f64; 2]> = self
            .lr_points
            .iter()
            .map(|p| [p.lr.log10(), p.loss])
            .collect();
        let smooth: Vec<[f64; 2]> = self
            .lr_points
            .iter()
            .map(|p| [p.lr.log10(), p.smoothed])
            .collect();
        let sugg: Vec<(&str, crate::train::lr_finder::Suggestion)> = self
            .lr_result
            .as_ref()
            .map(|r| {
                let s = r.suggestions;
                [
                    ("valley", s.valley),
                    ("steep", s.steep),
                    ("minimum/10", s.minimum),
                ]
                .into_iter()
                .filter_map(|(n, v)| v.map(|v| (n, v)))
                .collect()
            })
            .unwrap_or_default();
        let points = self.lr_points.clone();
        let chosen = self.chosen_lr;
        // Explicit ranges: a plot of one point has degenerate bounds (egui_plot asserts).
        let cfg = crate::train::lr_finder::LrFinderConfig::default();
        let resp = Plot::new("lr-finder")
            .height(220.0)
            .include_x(cfg.start_lr.log10())
            .include_x(cfg.end_lr.log10())
            .legend(Legend::default())
            .x_axis_label("learning rate (log10)")
            .y_axis_label("loss")
            .x_axis_formatter(|m, _| format!("{:.0e}", 10f64.powf(m.value)))
            .label_formatter(|h| match h {
                egui_plot::HoverPosition::NearDataPoint {
                    plot_name,
                    position,
                    ..
                } => Some(format!(
                    "{plot_name}\nlr {:.2e}\nloss {:.4}",
                    10f64.powf(position.x),
                    position.y
                )),
                egui_plot::HoverPosition::Elsewhere { position } => Some(format!(
                    "lr {:.2e}\nloss {:.4}",
                    10f64.powf(position.x),
                    position.y
                )),
            })
            .show(ui, |pu| {
                pu.line(
                    Line::new("loss", PlotPoints::from(raw)).color(egui::Color32::from_gray(140)),
                );
                pu.line(Line::new("smoothed", PlotPoints::from(smooth)).width(2.0));
                for (name, s) in &sugg {
                    if let Some(p) = points.get(s.index) {
                        pu.points(
                            Points::new(*name, PlotPoints::from(vec![[p.lr.log10(), p.smoothed]]))
                                .radius(5.0),
                        );
                    }
                }
                if let Some(c) = chosen {
                    pu.vline(VLine::new("chosen", c.log10()));
                }
                pu.pointer_coordinate()
            });
        if resp.response.clicked() {
            if let Some(p) = resp.inner {
                self.chosen_lr = Some(10f64.powf(p.x));
            }
        }
        ui.horizontal(|ui| {
            for (name, s) in &sugg {
                if ui.button(format!("Use {name} {:.1e}", s.lr)).clicked() {
                    self.chosen_lr = Some(s.lr);
                }
            }
        });
        match self.chosen_lr {
            Some(lr) => ui.label(format!(
                "Chosen {lr:.2e}: the next `auto` row becomes {} when you press Start.",
                LrSpec::for_suggestion(lr)
            )),
            None => ui.label(
                "Click the chart or a suggestion to choose the rate for the next `auto` step.",
            ),
        };
    }

    fn plots_ui(&self, ui: &mut egui::Ui) {
        const MAX: usize = 2000;
        let valid: Vec<[f64; 2]> = self
            .epochs
            .iter()
            .map(|m| [m.global_iter as f64, m.valid_loss])
            .collect();
        ui.heading("Loss");
        let starts = self.step_starts.clone();
        let x_max = self.total_iters.max(1) as f64;
        let epochs_max = self
            .plan()
            .map(|p| p.total_epochs())
            .unwrap_or(1)
            .max(self.epochs.len())
            .max(1) as f64;
        Plot::new("loss")
            .height(220.0)
            .legend(Legend::default())
            .x_axis_label("iteration")
            .include_x(0.0)
            .include_x(x_max)
            .include_y(0.0)
            .show(ui, |pu| {
                pu.line(
                    Line::new(
                        "train (batch)",
                        PlotPoints::from(decimate(&self.losses, MAX)),
                    )
                    .color(egui::Color32::from_rgba_unmultiplied(120, 160, 220, 90)),
                );
                pu.line(
                    Line::new(
                        "train (smoothed)",
                        PlotPoints::from(decimate(&self.smoothed, MAX)),
                    )
                    .width(2.0),
                );
                pu.line(
                    Line::new("valid", PlotPoints::from(valid.clone()))
                        .color(VALID_COLOR)
                        .width(2.0),
                );
                pu.points(
                    Points::new("valid", PlotPoints::from(valid))
                        .color(VALID_COLOR)
                        .radius(3.0),
                );
                for s in starts.iter().skip(1) {
                    pu.vline(VLine::new("step", *s).color(egui::Color32::from_gray(100)));
                }
            });
        ui.columns(2, |cols| {
            cols[0].label("Learning rate per group, and beta1");
            Plot::new("lr")
                .height(160.0)
                .legend(Legend::default())
                .include_x(0.0)
                .include_x(x_max)
                .include_y(0.0)
                .show(&mut cols[0], |pu| {
                    for (g, l) in self.lrs.iter().enumerate() {
                        pu.line(Line::new(
                            format!("lr group {g}"),
                            PlotPoints::from(decimate(l, MAX)),
                        ));
                    }
                });
            Plot::new("beta1")
                .height(80.0)
                .include_x(0.0)
                .include_x(x_max)
                .include_y(0.84)
                .include_y(0.96)
                .show(&mut cols[0], |pu| {
                    pu.line(Line::new(
                        "beta1",
                        PlotPoints::from(decimate(&self.beta1, MAX)),
                    ));
                });
            cols[1].label("Validation accuracy and macro F1 per epoch");
            let acc: Vec<[f64; 2]> = self
                .epochs
                .iter()
                .map(|m| [(m.global_epoch + 1) as f64, m.accuracy])
                .collect();
            let f1: Vec<[f64; 2]> = self
                .epochs
                .iter()
                .map(|m| [(m.global_epoch + 1) as f64, m.macro_f1])
                .collect();
            Plot::new("metrics")
                .height(250.0)
                .legend(Legend::default())
                .include_x(0.0)
                .include_x(epochs_max)
                .include_y(0.0)
                .include_y(1.0)
                .show(&mut cols[1], |pu| {
                    // Markers too: one epoch is a single point, which a line does not show.
                    pu.line(Line::new("accuracy", PlotPoints::from(acc.clone())).color(ACC_COLOR));
                    pu.points(
                        Points::new("accuracy", PlotPoints::from(acc))
                            .radius(3.0)
                            .color(ACC_COLOR),
                    );
                    pu.line(Line::new("macro F1", PlotPoints::from(f1.clone())).color(F1_COLOR));
                    pu.points(
                        Points::new("macro F1", PlotPoints::from(f1))
                            .radius(3.0)
                            .color(F1_COLOR),
                    );
                });
        });
    }

    fn epochs_ui(&self, ui: &mut egui::Ui) {
        if self.epochs.is_empty() {
            return;
        }
        ui.heading("Epochs");
        egui::Grid::new("epoch-table").striped(true).show(ui, |ui| {
            for h in [
                "epoch",
                "size",
                "train loss",
                "valid loss",
                "accuracy",
                "macro F1",
            ] {
                ui.strong(h);
            }
            for c in CLASS_NAMES {
                ui.strong(format!("recall {c}"));
            }
            ui.strong("time");
            ui.end_row();
            for m in &self.epochs {
                ui.label((m.global_epoch + 1).to_string());
                ui.label(m.size_px.to_string());
                ui.label(format!("{:.4}", m.train_loss));
                ui.label(format!("{:.4}", m.valid_loss));
                ui.label(pct(m.accuracy));
                ui.label(pct(m.macro_f1));
                for r in &m.recall {
                    ui.label(pct(*r));
                }
                ui.label(fmt_secs(m.secs));
                ui.end_row();
            }
        });
    }

    fn log_ui(&self, ui: &mut egui::Ui) {
        ui.collapsing(format!("Log ({} lines)", self.log.len()), |ui| {
            egui::ScrollArea::vertical()
                .max_height(160.0)
                .stick_to_bottom(true)
                .show(ui, |ui| {
                    for l in &self.log {
                        ui.monospace(l);
                    }
                });
        });
    }
}

/// One colour per series, so a series' line, markers and legend entry agree.
const ACC_COLOR: egui::Color32 = egui::Color32::from_rgb(90, 170, 250);
const F1_COLOR: egui::Color32 = egui::Color32::from_rgb(240, 140, 60);
const VALID_COLOR: egui::Color32 = egui::Color32::from_rgb(120, 210, 110);

fn pct(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{:.1} %", 100.0 * v)
    }
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_invalid_rows_are_named() {
        let p = Plan::paper();
        assert_eq!(plan_of("paper", &rows_of(&p)).unwrap(), p);
        let mut rows = rows_of(&p);
        rows[1].lr = "fast".into();
        rows[3].epochs = "x".into();
        let e = plan_of("paper", &rows).unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.starts_with("row 2:") && m.contains("fast")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.starts_with("row 4: epochs")), "{e:?}");
        assert!(plan_of("x", &[]).is_err());
    }
}
