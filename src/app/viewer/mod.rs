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
pub mod review_header;
pub mod review_scores;
pub mod side_panel;
pub mod state;
pub mod worker;

pub use commands::{Ask, Command, IMAGE_EXTENSIONS};
pub use state::{ImageState, Loaded, Mode, ModelSlot, OpenImage, ViewerSettings};

use super::dialogs::{pick, PathPrompt, Picked};
use super::Shared;
use crate::device::DeviceChoice;
use egui::{Color32, TextureOptions};
use image_view::ViewState;
use std::path::PathBuf;
use worker::{AnalysisKey, Reply, Worker};

/// Messages of this tab carry this topic.
const TOPIC: &str = "Viewer";

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
    /// as images.
    pub fn open_dropped(
        &mut self,
        ctx: &egui::Context,
        files: &[egui::DroppedFileHandle],
        notices: &mut super::notices::Notices,
    ) {
        for f in files {
            let path = f.path().to_path_buf();
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            match ext.as_str() {
                "safetensors" => self.load_model(ctx, path),
                "json" => self.open_report(&path, notices),
                _ => {
                    let bytes = if path.is_file() { None } else { f.bytes().ok() };
                    self.open_one(ctx, path, bytes, None);
                }
            }
        }
    }

    fn open_report(&mut self, path: &std::path::Path, notices: &mut super::notices::Notices) {
        match self.review.open_report(path) {
            Ok(()) => self.mode = Mode::Review,
            Err(e) => notices.error("Review", e),
        }
    }

    fn open_one(
        &mut self,
        ctx: &egui::Context,
        path: PathBuf,
        bytes: Option<Vec<u8>>,
        truth: Option<usize>,
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
            } else if let Some(shipped) = crate::model::shipped::model_path() {
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
                    notices.error("Review", e);
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

    /// Draws the tab; commands run at the end of the frame.
    pub fn ui(&mut self, ui: &mut egui::Ui, shared: &mut Shared<'_>) {
        let ctx = ui.ctx().clone();
        self.poll(&ctx, shared.notices);
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
        self.run_commands(&ctx, shared);
        if self.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
        }
    }

    /// Runs the queued commands (after the frame).
    pub fn run_commands(&mut self, ctx: &egui::Context, shared: &mut Shared<'_>) {
        for c in std::mem::take(&mut self.commands) {
            self.execute(c, ctx, shared);
        }
    }

    fn execute(&mut self, c: Command, ctx: &egui::Context, shared: &mut Shared<'_>) {
        match c {
            Command::Pick(ask) => match pick(shared.dialogs, &ask.pick()) {
                Picked::Chosen(paths) => {
                    for p in paths {
                        self.execute(Command::Answer(ask, p), ctx, shared);
                    }
                }
                Picked::Cancelled => {}
                Picked::Unavailable => {
                    self.prompt = Some(PathPrompt::new(ask, ask.what(), ask.hint()));
                }
            },
            Command::Answer(ask, p) => match ask {
                Ask::Images => self.open_paths(ctx, vec![p]),
                Ask::Model => self.load_model(ctx, p),
                Ask::Report => self.open_report(&p, shared.notices),
                Ask::Export => match self.review.export(&p) {
                    Ok(files) => shared.notices.info(
                        "Review",
                        format!(
                            "review written: {}",
                            crate::files::shown(&files[0].with_extension("*"))
                        ),
                    ),
                    Err(e) => shared.notices.error("Review", e.to_string()),
                },
                Ask::DataFolder => *shared.data_dir = crate::files::shown(&p).to_string(),
                Ask::CompareReport => {
                    if let Err(e) = self.review.compare_with(&p) {
                        shared.notices.error("Review", e);
                    }
                }
                Ask::ModelCopy => match self.save_model_copy(&p) {
                    Ok(out) => {
                        shared.notices.info(
                            "Review",
                            format!(
                                "model with the operating point: {}",
                                crate::files::shown(&out)
                            ),
                        );
                        self.load_model(ctx, out);
                    }
                    Err(e) => shared.notices.error("Review", e),
                },
            },
            Command::LoadModel(p) => self.load_model(ctx, p),
            Command::Select(i) => {
                if i < self.images.len() {
                    self.selected = Some(i);
                    self.mode = Mode::Image;
                }
            }
            Command::Remove(i) => {
                if i < self.images.len() {
                    self.images.remove(i);
                    self.selected = match self.selected {
                        Some(s) if s > i => Some(s - 1),
                        Some(s) if s == i => None,
                        s => s,
                    }
                    .filter(|&s| s < self.images.len());
                }
            }
            Command::CloseAll => {
                self.images.clear();
                self.selected = None;
            }
            Command::RunTestSet => {
                let data = PathBuf::from(shared.data_dir.trim());
                let opts = shared.data_options.clone();
                self.run_test_set(ctx, shared, data, opts)
            }
            Command::OpenSamples => match crate::model::shipped::samples_dir() {
                Some(dir) => {
                    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("test"))
                        .map(|rd| {
                            rd.flatten()
                                .map(|e| e.path())
                                .filter(|p| p.is_file())
                                .collect()
                        })
                        .unwrap_or_default();
                    files.sort();
                    self.open_paths(ctx, files);
                }
                None => shared
                    .notices
                    .error(TOPIC, "the sample radiographs were not found"),
            },
            Command::ReviewSamples => match crate::model::shipped::samples_dir() {
                Some(dir) => self.run_test_set(ctx, shared, dir, Default::default()),
                None => shared
                    .notices
                    .error(TOPIC, "the sample radiographs were not found"),
            },
            Command::OpenCase(file) => self.open_case(ctx, file),
            Command::SetOperatingPoint(op) => self.set_operating_point(op),
        }
    }

    /// Starts the test-set pass over `data` in the background.
    fn run_test_set(
        &mut self,
        ctx: &egui::Context,
        shared: &mut Shared<'_>,
        data: PathBuf,
        opts: crate::data::split::DataOptions,
    ) {
        let Some(m) = &self.model else {
            shared.notices.error("Review", "load a model first");
            return;
        };
        let (p, path) = (m.predictor.clone(), m.path.clone());
        let bs = self.settings.batch_size.max(1);
        self.review.running = Some((0, 0));
        shared.notices.clear_topic("Review");
        self.mode = Mode::Review;
        let precision = self.settings.precision;
        self.worker(ctx)
            .review(data, opts, p, path, (bs, precision));
    }

    fn open_case(&mut self, ctx: &egui::Context, path: PathBuf) {
        let truth = self.review.truth_of(&path);
        if let Some(i) = self.images.iter().position(|im| im.path == path) {
            self.images[i].truth = truth.or(self.images[i].truth);
            self.selected = Some(i);
            self.mode = Mode::Image;
        } else {
            self.open_one(ctx, path, None, truth);
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
