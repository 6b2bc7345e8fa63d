//! The Viewer tab: open chest X-rays (drop or dialog), look at them (zoom, pan,
//! window/level), predict with a model file (probabilities, TTA, Grad-CAM, input warnings),
//! and review a test set (confusion matrix -> gallery of cases). Buttons push [`Command`]s
//! that run after the frame; decoding and inference reply through [`worker`].
pub mod commands;
pub mod image_mode;
pub mod image_view;
pub mod prediction;
pub mod review;
pub mod review_compare;
pub mod review_disagreement;
pub mod review_findings;
pub mod review_gallery;
pub mod review_header;
pub mod review_scores;
pub mod side_panel;
pub mod state;
pub mod worker;

pub use commands::{Ask, Command, IMAGE_EXTENSIONS};
pub use state::{ImageState, Loaded, Mode, ModelSlot, OpenImage, Truth, ViewerSettings};

use super::dialogs::PathPrompt;
use super::Shared;
use crate::app::notices::Topic;
use crate::device::DeviceChoice;
use egui::{Color32, TextureOptions};
use image_view::ViewState;
use std::path::PathBuf;
use worker::{AnalysisKey, Reply, Worker};

/// Messages of this tab carry this topic.
const TOPIC: Topic = Topic::Viewer;

/// The Viewer tab.
pub struct ViewerTab {
    /// Persisted settings.
    pub settings: ViewerSettings,
    /// Image or review.
    pub mode: Mode,
    /// Opened files in order.
    pub images: Vec<OpenImage>,
    /// Index of the shown image.
    pub selected: Option<usize>,
    /// The model.
    pub model: Option<ModelSlot>,
    /// A model being loaded.
    pub model_loading: Option<PathBuf>,
    /// Class Grad-CAM explains (None: predicted).
    pub cam_class: Option<usize>,
    /// Test-set review state.
    pub review: review::ReviewState,
    /// A typed path standing in for a dialog that could not be shown.
    pub prompt: Option<PathPrompt<Ask>>,
    /// Files hovering over the window (for the overlay).
    hovering: usize,
    next_id: u64,
    generation: u64,
    worker: Option<Worker>,
    /// Device setting used to load models (from the Training tab).
    pub device: String,
    started: bool,
    startup_files: Vec<PathBuf>,
    commands: Vec<Command>,
}

impl ViewerTab {
    /// A tab with `settings`; the remembered model loads on the first frame.
    pub fn new(settings: ViewerSettings) -> Self {
        Self {
            settings,
            mode: Mode::Image,
            images: Vec::new(),
            selected: None,
            model: None,
            model_loading: None,
            cam_class: None,
            review: review::ReviewState::default(),
            prompt: None,
            hovering: 0,
            next_id: 1,
            generation: 0,
            worker: None,
            device: "auto".into(),
            started: false,
            startup_files: Vec::new(),
            commands: Vec::new(),
        }
    }

    fn worker(&mut self, ctx: &egui::Context) -> &Worker {
        self.worker.get_or_insert_with(|| Worker::new(ctx.clone()))
    }

    /// Queues a command as a button would.
    pub fn push(&mut self, c: Command) {
        self.commands.push(c);
    }

    /// Drops the queued opening of the samples (a first launch that names its own files).
    pub fn cancel_samples(&mut self) {
        self.commands.retain(|c| !matches!(c, Command::OpenSamples));
    }

    /// Files to open on the first frame.
    pub fn open_at_start(&mut self, files: Vec<PathBuf>) {
        self.startup_files = files;
    }

    /// A report to open in the test-set review after the first frame.
    pub fn open_report_at_start(&mut self, report: PathBuf) {
        self.commands.push(Command::Answer(Ask::Report, report));
    }

    /// The class names of the loaded model (none without one).
    pub fn class_names(&self) -> Vec<String> {
        self.model
            .as_ref()
            .map(|m| m.predictor.meta().class_names.clone())
            .unwrap_or_default()
    }

    /// Opens files (decoded in the background); the first of them is shown.
    pub fn open_paths(&mut self, ctx: &egui::Context, paths: Vec<PathBuf>) {
        let first = self.images.len();
        let n = paths.len();
        for p in paths {
            self.open_one(ctx, p, None, None);
        }
        if n > 0 {
            self.selected = Some(first);
        }
    }

    /// Opens dropped files: model files load as the model, JSON files as a review, the rest
    /// as images (`bytes`: the content when the file is not on disk, as on the web).
    fn open_dropped(
        &mut self,
        ctx: &egui::Context,
        files: Vec<(PathBuf, Option<Vec<u8>>)>,
        notices: &mut super::notices::Notices,
    ) {
        for (path, bytes) in files {
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            match ext.as_str() {
                "safetensors" => self.load_model(ctx, path),
                "json" => self.open_report(&path, notices),
                _ => self.open_one(ctx, path, bytes, None),
            }
        }
    }

    fn open_report(&mut self, path: &std::path::Path, notices: &mut super::notices::Notices) {
        match self.review.open_report(path) {
            Ok(()) => self.mode = Mode::Review,
            Err(e) => notices.error(Topic::Review, e),
        }
    }

    fn open_one(
        &mut self,
        ctx: &egui::Context,
        path: PathBuf,
        bytes: Option<Vec<u8>>,
        truth: Option<Truth>,
    ) {
        let id = self.next_id;
        self.next_id += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| crate::files::shown(&path).to_string());
        self.worker(ctx).decode(id, path.clone(), bytes);
        self.images.push(OpenImage {
            id,
            path,
            name,
            truth,
            state: ImageState::Loading,
        });
        self.selected = Some(self.images.len() - 1);
        self.mode = Mode::Image;
    }

    /// Loads a model file in the background (remembered on success).
    pub fn load_model(&mut self, ctx: &egui::Context, path: PathBuf) {
        let device: DeviceChoice = self.device.parse().unwrap_or(DeviceChoice::Cpu);
        self.model_loading = Some(path.clone());
        self.worker(ctx).load_model(path, device);
    }

    fn key(&self) -> Option<AnalysisKey> {
        self.model.as_ref().map(|m| AnalysisKey {
            model: m.generation,
            tta: self.settings.tta,
            cam_class: self.cam_class,
            precision: self.settings.precision,
        })
    }

    /// Handles replies and schedules the next prediction (one in flight, the shown image
    /// first).
    pub fn poll(&mut self, ctx: &egui::Context, notices: &mut super::notices::Notices) {
        if !self.started {
            self.started = true;
            let m = self.settings.model.trim().to_string();
            if !m.is_empty() {
                self.load_model(ctx, PathBuf::from(m));
            } else if let Some(shipped) = crate::model::io::shipped::model_path() {
                // First launch: the model that ships with the program answers at once.
                self.load_model(ctx, shipped);
            }
            let files = std::mem::take(&mut self.startup_files);
            if !files.is_empty() {
                self.open_paths(ctx, files);
            }
        }
        let replies = match &self.worker {
            Some(w) => w.poll(),
            None => Vec::new(),
        };
        for r in replies {
            self.apply(ctx, r, notices);
        }
        for (key, path) in self.review.take_thumb_requests() {
            self.worker(ctx).thumbnail(key, path);
        }
        self.schedule(ctx);
    }

    fn apply(&mut self, ctx: &egui::Context, r: Reply, notices: &mut super::notices::Notices) {
        match r {
            Reply::Decoded { id, result } => {
                if let Some(im) = self.images.iter_mut().find(|i| i.id == id) {
                    im.state = match result {
                        Ok(d) => {
                            let d = *d;
                            let thumb = ctx.load_texture(
                                format!("thumb-{id}"),
                                d.thumb,
                                TextureOptions::LINEAR,
                            );
                            ImageState::Ready(Box::new(Loaded {
                                image: d.image,
                                display: d.display,
                                thumb,
                                texture: None,
                                window: 1.0,
                                level: 0.5,
                                view: ViewState::default(),
                                shown_rect: None,
                                analysis: None,
                                pending: None,
                                cam_tex: None,
                            }))
                        }
                        Err(e) => ImageState::Failed(e),
                    };
                }
                // A file that failed is not left as the one shown when another can be.
                if let Some(i) = self.selected {
                    if matches!(
                        self.images.get(i).map(|im| &im.state),
                        Some(ImageState::Failed(_))
                    ) {
                        if let Some(other) = self
                            .images
                            .iter()
                            .position(|im| !matches!(im.state, ImageState::Failed(_)))
                        {
                            self.selected = Some(other);
                        }
                    }
                }
            }
            Reply::Model { path, result } => {
                match &self.model_loading {
                    Some(p) if *p == path => self.model_loading = None,
                    // A newer load was asked for (say, the shipped model at launch and then
                    // the user's choice): this one is superseded.
                    Some(_) => return,
                    None => {}
                }
                match result {
                    Ok(p) => {
                        self.generation += 1;
                        if self
                            .cam_class
                            .is_some_and(|c| c >= p.meta().class_names.len())
                        {
                            self.cam_class = None;
                        }
                        self.settings.model = crate::files::shown(&path).to_string();
                        self.model = Some(ModelSlot {
                            path,
                            predictor: p,
                            generation: self.generation,
                        });
                        notices.clear_topic(TOPIC);
                    }
                    Err(e) => notices.error(TOPIC, e),
                }
            }
            Reply::Analysis { id, key, result } => {
                if let Some(OpenImage {
                    state: ImageState::Ready(l),
                    ..
                }) = self.images.iter_mut().find(|i| i.id == id)
                {
                    if l.pending == Some(key) {
                        l.pending = None;
                    }
                    l.analysis = Some((key, result));
                }
            }
            Reply::ReviewProgress { done, total } => self.review.progress(done, total),
            Reply::Review { result } => {
                if let Err(e) = self.review.finished(result) {
                    notices.error(Topic::Review, e);
                }
            }
            Reply::Thumb { file, result } => self.review.thumb_arrived(ctx, file, result),
        }
    }

    fn schedule(&mut self, ctx: &egui::Context) {
        let Some(key) = self.key() else { return };
        let Some(i) = state::next_to_analyse(&self.images, self.selected, key) else {
            return;
        };
        let Some(predictor) = self.model.as_ref().map(|m| m.predictor.clone()) else {
            return;
        };
        let im = &mut self.images[i];
        if let ImageState::Ready(l) = &mut im.state {
            l.pending = Some(key);
            let (id, image) = (im.id, l.image.clone());
            self.worker(ctx).analyze(id, key, image, predictor);
        }
    }

    /// True while anything is decoding or predicting.
    pub fn busy(&self) -> bool {
        self.model_loading.is_some()
            || self.review.running.is_some()
            || self.review.thumbs_pending()
            || self.images.iter().any(|i| match &i.state {
                ImageState::Loading => true,
                ImageState::Ready(l) => l.pending.is_some(),
                ImageState::Failed(_) => false,
            })
    }

    /// Background replies, then the commands the last frame queued: run before each frame
    /// is drawn ([`crate::app::App::logic`]), whether or not the tab is shown.
    pub fn logic(&mut self, ctx: &egui::Context, shared: &mut Shared<'_>) {
        self.poll(ctx, shared.notices);
        self.run_commands(ctx, shared);
        if self.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    /// Draws the tab; what its buttons ask for is queued for the next [`Self::logic`].
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared<'_>) {
        let ctx = ui.ctx().clone();
        egui::Panel::left("viewer-side")
            .resizable(true)
            .default_size(290.0)
            .size_range(230.0..=480.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.side_ui(ui, shared);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.mode, Mode::Image, "Image");
                ui.selectable_value(&mut self.mode, Mode::Review, "Test-set review");
                ui.separator();
                ui.colored_label(
                    prediction::NOTICE_COLOR,
                    "Research use only, not for diagnosis.",
                );
            });
            match self.mode {
                Mode::Image => self.image_mode_ui(ui, &ctx),
                Mode::Review => self.review_ui(ui, &ctx),
            }
        });
        if let Some(p) = self.prompt.as_mut() {
            match p.show(&ctx) {
                Some(Some(path)) => {
                    let ask = p.purpose;
                    self.prompt = None;
                    self.commands.push(Command::Answer(ask, path));
                }
                Some(None) => self.prompt = None,
                None => {}
            }
        }
        self.drop_overlay(&ctx);
        if !self.commands.is_empty() {
            ctx.request_repaint();
        }
    }

    /// Counts files hovering over the window (for the overlay); called by the app.
    pub fn set_hovering(&mut self, n: usize) {
        self.hovering = n;
    }

    /// Files hovering over the window now.
    pub fn hovering(&self) -> usize {
        self.hovering
    }

    /// Draws the overlay that says what a drop does while files hover.
    pub fn drop_overlay(&self, ctx: &egui::Context) {
        if self.hovering == 0 {
            return;
        }
        let painter = ctx.layer_painter(egui::LayerId::new(
            egui::Order::Foreground,
            egui::Id::unique("drop-overlay"),
        ));
        let rect = ctx.content_rect();
        painter.rect_filled(rect, 0.0, Color32::from_black_alpha(180));
        painter.text(
            rect.center(),
            egui::Align2::CENTER_CENTER,
            format!(
                "Drop to open {} file{}\n(images, DICOM; a .safetensors model; an eval report .json)",
                self.hovering,
                if self.hovering == 1 { "" } else { "s" }
            ),
            egui::FontId::proportional(24.0),
            Color32::WHITE,
        );
    }
}
