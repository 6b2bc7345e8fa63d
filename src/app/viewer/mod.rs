//! The Viewer tab: open chest X-rays (drop or dialog), look at them (zoom, pan,
//! window/level), predict with a model file (probabilities, TTA, Grad-CAM, input warnings),
//! and review a test set (confusion matrix -> gallery of cases).
pub mod image_view;
pub mod review;
pub mod worker;

use crate::data::decode::GrayImage;
use crate::device::DeviceChoice;
use crate::infer::predictor::Analysis;
use crate::infer::Predictor;
use egui::{Color32, RichText, TextureHandle, TextureOptions};
use image_view::ViewState;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use worker::{AnalysisKey, Reply, Worker};

/// File extensions offered by the Open dialog.
pub const IMAGE_EXTENSIONS: &[&str] = &[
    "png", "jpg", "jpeg", "bmp", "tif", "tiff", "dcm", "dicom", "PNG", "JPG", "JPEG", "DCM",
];

/// Viewer settings that persist between runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewerSettings {
    /// Model file (loaded at start when set).
    pub model: String,
    /// Average predictions over flips.
    pub tta: bool,
    /// Show the Grad-CAM overlay.
    pub show_cam: bool,
    /// Overlay opacity.
    pub cam_opacity: f32,
    /// Dataset folder for the test-set review.
    pub data_dir: String,
    /// Show the confusion matrix row-normalised.
    pub normalised: bool,
    /// Batch size of the test-set run.
    pub batch_size: usize,
}

impl Default for ViewerSettings {
    fn default() -> Self {
        Self {
            model: String::new(),
            tta: false,
            show_cam: true,
            cam_opacity: 0.45,
            data_dir: String::new(),
            normalised: false,
            batch_size: 16,
        }
    }
}

/// A decoded image and how it is shown.
pub struct Loaded {
    /// Full-resolution image (what the model sees).
    pub image: Arc<GrayImage>,
    display: GrayImage,
    thumb: TextureHandle,
    texture: Option<(TextureHandle, (f32, f32))>,
    /// Display window width (1 = the whole 0..1 range).
    pub window: f32,
    /// Display window centre.
    pub level: f32,
    view: ViewState,
    /// The latest prediction and what it answered.
    pub analysis: Option<(AnalysisKey, Result<Box<Analysis>, String>)>,
    pending: Option<AnalysisKey>,
    cam_tex: Option<(AnalysisKey, TextureHandle)>,
}

/// Where an opened file stands.
pub enum ImageState {
    /// Being decoded.
    Loading,
    /// Could not be opened: the message names the file.
    Failed(String),
    /// Ready to show.
    Ready(Box<Loaded>),
}

/// One opened file.
pub struct OpenImage {
    /// Slot id.
    pub id: u64,
    /// The file.
    pub path: PathBuf,
    /// File name for lists.
    pub name: String,
    /// Decoding state.
    pub state: ImageState,
}

impl OpenImage {
    /// The current analysis, if one has arrived.
    pub fn analysis(&self) -> Option<&Result<Box<Analysis>, String>> {
        match &self.state {
            ImageState::Ready(l) => l.analysis.as_ref().map(|(_, a)| a),
            _ => None,
        }
    }
}

/// A loaded model.
pub struct ModelSlot {
    /// Its file.
    pub path: PathBuf,
    /// The predictor.
    pub predictor: Arc<Predictor>,
    /// Generation (analyses of older generations are stale).
    pub generation: u64,
}

/// The two views of the tab.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Mode {
    /// One image with its prediction.
    #[default]
    Image,
    /// Test-set review.
    Review,
}

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
    /// The last model error.
    pub model_error: Option<String>,
    /// Class Grad-CAM explains (None: predicted).
    pub cam_class: Option<usize>,
    /// Test-set review state.
    pub review: review::ReviewState,
    /// Files that were dropped while hovering (for the overlay).
    hovering: usize,
    next_id: u64,
    generation: u64,
    worker: Option<Worker>,
    /// Device setting used to load models (from the Training tab).
    pub device: String,
    started: bool,
    startup_files: Vec<PathBuf>,
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
            model_error: None,
            cam_class: None,
            review: review::ReviewState::default(),
            hovering: 0,
            next_id: 1,
            generation: 0,
            worker: None,
            device: "auto".into(),
            started: false,
            startup_files: Vec::new(),
        }
    }

    fn worker(&mut self, ctx: &egui::Context) -> &Worker {
        self.worker.get_or_insert_with(|| Worker::new(ctx.clone()))
    }

    /// Files to open on the first frame.
    pub fn open_at_start(&mut self, files: Vec<PathBuf>) {
        self.startup_files = files;
    }

    /// Opens files (decoded in the background).
    pub fn open_paths(&mut self, ctx: &egui::Context, paths: Vec<PathBuf>) {
        for p in paths {
            self.open_one(ctx, p, None);
        }
    }

    /// Opens dropped files: model files load as the model, JSON files as a review, the rest
    /// as images.
    pub fn open_dropped(&mut self, ctx: &egui::Context, files: &[egui::DroppedFileHandle]) {
        for f in files {
            let path = f.path().to_path_buf();
            let ext = path
                .extension()
                .map(|e| e.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            match ext.as_str() {
                "safetensors" => self.load_model(ctx, path),
                "json" => self.review.open_report(&path),
                _ => {
                    let bytes = if path.is_file() { None } else { f.bytes().ok() };
                    self.open_one(ctx, path, bytes);
                }
            }
        }
    }

    fn open_one(&mut self, ctx: &egui::Context, path: PathBuf, bytes: Option<Vec<u8>>) {
        let id = self.next_id;
        self.next_id += 1;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        self.worker(ctx).decode(id, path.clone(), bytes);
        self.images.push(OpenImage {
            id,
            path,
            name,
            state: ImageState::Loading,
        });
        self.selected = Some(self.images.len() - 1);
        self.mode = Mode::Image;
    }

    /// Loads a model file in the background (remembered on success).
    pub fn load_model(&mut self, ctx: &egui::Context, path: PathBuf) {
        let device: DeviceChoice = self.device.parse().unwrap_or(DeviceChoice::Cpu);
        self.model_loading = Some(path.clone());
        self.model_error = None;
        self.worker(ctx).load_model(path, device);
    }

    fn key(&self) -> Option<AnalysisKey> {
        self.model.as_ref().map(|m| AnalysisKey {
            model: m.generation,
            tta: self.settings.tta,
            cam_class: self.cam_class,
        })
    }

    /// Handles replies and schedules the next prediction (one in flight, the shown image
    /// first).
    pub fn poll(&mut self, ctx: &egui::Context) {
        if !self.started {
            self.started = true;
            let m = self.settings.model.trim().to_string();
            if !m.is_empty() {
                self.load_model(ctx, PathBuf::from(m));
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
            self.apply(ctx, r);
        }
        for f in self.review.take_thumb_requests() {
            self.worker(ctx).thumbnail(f);
        }
        self.schedule(ctx);
    }

    fn apply(&mut self, ctx: &egui::Context, r: Reply) {
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
                                analysis: None,
                                pending: None,
                                cam_tex: None,
                            }))
                        }
                        Err(e) => ImageState::Failed(e),
                    };
                }
            }
            Reply::Model { path, result } => {
                if self.model_loading.as_ref() == Some(&path) {
                    self.model_loading = None;
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
                        self.settings.model = path.display().to_string();
                        self.model = Some(ModelSlot {
                            path,
                            predictor: p,
                            generation: self.generation,
                        });
                        self.model_error = None;
                    }
                    Err(e) => self.model_error = Some(e),
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
            Reply::Review { result } => self.review.finished(result),
            Reply::Thumb { file, result } => self.review.thumb_arrived(ctx, file, result),
        }
    }

    fn schedule(&mut self, ctx: &egui::Context) {
        let Some(key) = self.key() else { return };
        let busy = self.images.iter().any(|i| match &i.state {
            ImageState::Ready(l) => l.pending.is_some(),
            _ => false,
        });
        if busy {
            return;
        }
        let order: Vec<usize> = self
            .selected
            .into_iter()
            .chain(0..self.images.len())
            .collect();
        for i in order {
            let Some(im) = self.images.get_mut(i) else {
                continue;
            };
            let ImageState::Ready(l) = &mut im.state else {
                continue;
            };
            let done = l.analysis.as_ref().is_some_and(|(k, _)| *k == key);
            // Only the shown image follows a change of TTA or class; the rest keep what
            // they have until shown.
            let stale_elsewhere = l
                .analysis
                .as_ref()
                .is_some_and(|(k, _)| k.model == key.model)
                && Some(i) != self.selected;
            if done || stale_elsewhere {
                continue;
            }
            l.pending = Some(key);
            let (id, image) = (im.id, l.image.clone());
            let predictor = self
                .model
                .as_ref()
                .expect("key implies a model")
                .predictor
                .clone();
            self.worker(ctx).analyze(id, key, image, predictor);
            return;
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

    /// Draws the tab. `last_model` is the model of the newest finished training run.
    pub fn ui(&mut self, ui: &mut egui::Ui, last_model: Option<&Path>) {
        let ctx = ui.ctx().clone();
        self.poll(&ctx);
        egui::Panel::left("viewer-side")
            .resizable(true)
            .default_size(330.0)
            .size_range(240.0..=520.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    self.model_ui(ui, &ctx, last_model);
                    ui.separator();
                    self.images_ui(ui, &ctx);
                    ui.separator();
                    self.review_side_ui(ui, &ctx);
                });
            });
        egui::CentralPanel::default().show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.mode, Mode::Image, "Image");
                ui.selectable_value(&mut self.mode, Mode::Review, "Test-set review");
                ui.separator();
                ui.colored_label(
                    Color32::from_rgb(200, 120, 0),
                    "Research use only, not for diagnosis.",
                );
            });
            ui.separator();
            match self.mode {
                Mode::Image => self.image_mode_ui(ui, &ctx),
                Mode::Review => {
                    if let Some(open) = self.review_ui(ui, &ctx) {
                        self.open_case(&ctx, open);
                    }
                }
            }
        });
        self.drop_overlay(&ctx);
        if self.busy() {
            ctx.request_repaint_after(std::time::Duration::from_millis(100));
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

    /// Only the drop overlay (when another tab is shown).
    pub fn ui_overlay_only(&self, ctx: &egui::Context) {
        self.drop_overlay(ctx);
    }

    fn drop_overlay(&self, ctx: &egui::Context) {
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

    fn open_case(&mut self, ctx: &egui::Context, file: String) {
        let path = PathBuf::from(&file);
        if let Some(i) = self.images.iter().position(|im| im.path == path) {
            self.selected = Some(i);
            self.mode = Mode::Image;
        } else {
            self.open_paths(ctx, vec![path]);
        }
    }

    fn model_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context, last_model: Option<&Path>) {
        ui.heading("Model");
        ui.horizontal(|ui| {
            if ui.button("Load model…").clicked() {
                if let Some(p) = rfd::FileDialog::new()
                    .add_filter("covid-resnet model", &["safetensors"])
                    .pick_file()
                {
                    self.load_model(ctx, p);
                }
            }
            if let Some(last) = last_model {
                let current = self.model.as_ref().map(|m| m.path.as_path());
                if current != Some(last)
                    && ui
                        .button("Use the last run's model")
                        .on_hover_text(last.display().to_string())
                        .clicked()
                {
                    self.load_model(ctx, last.to_path_buf());
                }
            }
        });
        if let Some(p) = &self.model_loading {
            ui.horizontal(|ui| {
                ui.spinner();
                ui.label(format!("loading {}", p.display()));
            });
        }
        if let Some(e) = &self.model_error {
            ui.colored_label(Color32::from_rgb(220, 60, 60), e);
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
                .on_hover_text(m.path.display().to_string());
                ui.label(format!(
                    "{:?}, {} px input, {} classes",
                    meta.backbone,
                    meta.input_size_px,
                    meta.class_names.len()
                ));
            }
            None => {
                ui.label("No model loaded: load a model file written by training.");
            }
        }
        ui.checkbox(
            &mut self.settings.tta,
            "Test-time augmentation (average over flips)",
        );
    }

    fn images_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        ui.heading("Images");
        ui.horizontal(|ui| {
            if ui.button("Open…").clicked() {
                if let Some(ps) = rfd::FileDialog::new()
                    .add_filter("X-ray images", IMAGE_EXTENSIONS)
                    .pick_files()
                {
                    self.open_paths(ctx, ps);
                }
            }
            if !self.images.is_empty() && ui.button("Close all").clicked() {
                self.images.clear();
                self.selected = None;
            }
        });
        if self.images.is_empty() {
            ui.label("Drop X-ray files on the window or use Open… (PNG, JPEG, BMP, TIFF, DICOM).");
        }
        let classes = self
            .model
            .as_ref()
            .map(|m| m.predictor.meta().class_names.clone())
            .unwrap_or_default();
        let mut remove = None;
        for (i, im) in self.images.iter().enumerate() {
            ui.horizontal(|ui| match &im.state {
                ImageState::Loading => {
                    ui.spinner();
                    ui.label(&im.name);
                }
                ImageState::Failed(e) => {
                    if ui.small_button("x").on_hover_text("remove").clicked() {
                        remove = Some(i);
                    }
                    ui.vertical(|ui| {
                        ui.add(
                            egui::Label::new(
                                RichText::new(e).color(Color32::from_rgb(220, 60, 60)),
                            )
                            .wrap(),
                        );
                    });
                }
                ImageState::Ready(l) => {
                    let size = egui::vec2(40.0, 40.0);
                    ui.add(egui::Image::new((l.thumb.id(), size)).fit_to_exact_size(size));
                    let sel = self.selected == Some(i);
                    let text = match l.analysis.as_ref().map(|(_, a)| a) {
                        Some(Ok(a)) => format!(
                            "{}\n{} {:.0} %{}",
                            im.name,
                            classes.get(a.predicted).map(String::as_str).unwrap_or("?"),
                            100.0 * a.probs[a.predicted],
                            if a.warnings.is_empty() { "" } else { "  (!)" }
                        ),
                        _ => im.name.clone(),
                    };
                    if ui.selectable_label(sel, text).clicked() {
                        self.selected = Some(i);
                        self.mode = Mode::Image;
                    }
                }
            });
        }
        if let Some(i) = remove {
            self.images.remove(i);
            self.selected = match self.selected {
                Some(s) if s > i => Some(s - 1),
                Some(s) if s == i => None,
                s => s,
            }
            .filter(|&s| s < self.images.len());
        }
    }

    fn image_mode_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        let Some(i) = self.selected.filter(|&i| i < self.images.len()) else {
            ui.centered_and_justified(|ui| {
                ui.label("Drop chest X-rays here, or use Open… on the left.");
            });
            return;
        };
        let classes = self
            .model
            .as_ref()
            .map(|m| m.predictor.meta().class_names.clone())
            .unwrap_or_else(|| crate::CLASS_NAMES.iter().map(|s| s.to_string()).collect());
        let key = self.key();
        let settings = &mut self.settings;
        let cam_class = &mut self.cam_class;
        let im = &mut self.images[i];
        let name = im.name.clone();
        let path = im.path.clone();
        let l = match &mut im.state {
            ImageState::Loading => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("decoding {name}"));
                });
                return;
            }
            ImageState::Failed(e) => {
                ui.colored_label(Color32::from_rgb(220, 60, 60), e.as_str());
                return;
            }
            ImageState::Ready(l) => l,
        };
        egui::Panel::right("viewer-prediction")
            .resizable(true)
            .default_size(330.0)
            .size_range(260.0..=520.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    prediction_ui(ui, l, &classes, key, settings, cam_class);
                    ui.separator();
                    facts_ui(ui, &name, &path, &l.image);
                });
            });
        egui::Panel::top("viewer-toolbar").show(ui, |ui| {
            ui.horizontal_wrapped(|ui| {
                if ui.button("Fit").clicked() {
                    l.view = ViewState::default();
                }
                if ui.button("1:1").clicked() {
                    // One image pixel per physical pixel of the full image.
                    let s = l.image.width as f32 / l.display.width as f32;
                    l.view = ViewState {
                        zoom: Some(s / ui.ctx().pixels_per_point()),
                        pan: egui::Vec2::ZERO,
                    };
                }
                let wl = ui.label("Window");
                ui.add(egui::Slider::new(&mut l.window, 0.02..=1.0).fixed_decimals(2))
                    .labelled_by(wl.id);
                let ll = ui.label("Level");
                ui.add(egui::Slider::new(&mut l.level, 0.0..=1.0).fixed_decimals(2))
                    .labelled_by(ll.id);
                if ui.button("Reset W/L").clicked() {
                    (l.window, l.level) = (1.0, 0.5);
                }
                ui.separator();
                ui.checkbox(&mut settings.show_cam, "Grad-CAM");
                let ol = ui.label("Opacity");
                ui.add_enabled(
                    settings.show_cam,
                    egui::Slider::new(&mut settings.cam_opacity, 0.0..=1.0).fixed_decimals(2),
                )
                .labelled_by(ol.id);
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            let wl = (l.window, l.level);
            if l.texture.as_ref().map(|(_, k)| *k) != Some(wl) {
                let lo = wl.1 - wl.0 / 2.0;
                let img = worker::gray_to_color(&l.display, lo, lo + wl.0);
                match &mut l.texture {
                    Some((t, k)) => {
                        t.set(img, TextureOptions::LINEAR);
                        *k = wl;
                    }
                    None => {
                        l.texture = Some((
                            ctx.load_texture(
                                format!("image-{}", path.display()),
                                img,
                                TextureOptions::LINEAR,
                            ),
                            wl,
                        ))
                    }
                }
            }
            // Grad-CAM texture for the current analysis.
            if let Some((k, Ok(a))) = &l.analysis {
                if l.cam_tex.as_ref().map(|(ck, _)| ck) != Some(k) {
                    let cam = a.cam.upsample(l.display.width, l.display.height);
                    let px: Vec<Color32> = cam
                        .data
                        .iter()
                        .map(|&v| {
                            let [r, g, b] = crate::infer::gradcam::jet(v);
                            Color32::from_rgb(r, g, b)
                        })
                        .collect();
                    let ci = egui::ColorImage::new(
                        [l.display.width as usize, l.display.height as usize],
                        px,
                    );
                    l.cam_tex = Some((
                        *k,
                        ctx.load_texture(
                            format!("cam-{}", path.display()),
                            ci,
                            TextureOptions::LINEAR,
                        ),
                    ));
                }
            }
            let overlay = if settings.show_cam {
                l.cam_tex.as_ref().map(|(_, t)| (t, settings.cam_opacity))
            } else {
                None
            };
            let (tex, _) = l.texture.as_ref().expect("texture made above");
            let input = image_view::canvas(
                ui,
                &mut l.view,
                tex,
                [l.display.width as usize, l.display.height as usize],
                overlay,
            );
            if input.wl_drag != egui::Vec2::ZERO {
                l.window = (l.window + input.wl_drag.x * 0.002).clamp(0.02, 1.0);
                l.level = (l.level - input.wl_drag.y * 0.002).clamp(0.0, 1.0);
            }
        });
    }
}

fn prediction_ui(
    ui: &mut egui::Ui,
    l: &Loaded,
    classes: &[String],
    key: Option<AnalysisKey>,
    settings: &ViewerSettings,
    cam_class: &mut Option<usize>,
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
            ui.colored_label(Color32::from_rgb(220, 60, 60), e);
        }
        Some((k, Ok(a))) => {
            if *k != key || l.pending.is_some() {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label("updating…");
                });
            }
            for (c, name) in classes.iter().enumerate() {
                let p = a.probs.get(c).copied().unwrap_or(0.0);
                let top = c == a.predicted;
                ui.horizontal(|ui| {
                    let label = ui.add_sized(
                        [90.0, 18.0],
                        egui::Label::new(if top {
                            RichText::new(name).strong()
                        } else {
                            RichText::new(name)
                        }),
                    );
                    let bar = egui::ProgressBar::new(p)
                        .desired_width(150.0)
                        .fill(if top {
                            Color32::from_rgb(200, 80, 60)
                        } else {
                            Color32::from_rgb(70, 110, 160)
                        })
                        .text(format!("{:.1} %", 100.0 * p));
                    ui.add(bar).labelled_by(label.id);
                });
            }
            ui.label(
                RichText::new(format!(
                    "Predicted: {}{}",
                    classes.get(a.predicted).map(String::as_str).unwrap_or("?"),
                    if a.tta { " (TTA)" } else { "" }
                ))
                .strong(),
            );
            if !a.warnings.is_empty() {
                ui.add_space(4.0);
                ui.label(RichText::new("Input warnings").strong());
                for w in &a.warnings {
                    ui.colored_label(Color32::from_rgb(230, 160, 0), format!("(!) {w}"));
                }
            }
            ui.add_space(6.0);
            let cl = ui.label("Grad-CAM explains");
            let shown = match cam_class {
                Some(c) => classes.get(*c).cloned().unwrap_or_default(),
                None => format!("the predicted class ({})", classes[a.cam.class]),
            };
            egui::ComboBox::from_id_salt("cam-class")
                .selected_text(shown)
                .show_ui(ui, |ui| {
                    ui.selectable_value(cam_class, None, "the predicted class");
                    for (c, n) in classes.iter().enumerate() {
                        ui.selectable_value(cam_class, Some(c), n);
                    }
                })
                .response
                .labelled_by(cl.id);
            if a.cam.peak() <= 0.0 {
                ui.label("No positive evidence for this class anywhere (the map is empty).");
            }
            if !settings.show_cam {
                ui.label("(overlay hidden)");
            }
        }
    }
    ui.add_space(4.0);
    ui.colored_label(
        Color32::from_rgb(200, 120, 0),
        "Research use only, not for diagnosis.",
    );
}

fn facts_ui(ui: &mut egui::Ui, name: &str, path: &Path, img: &GrayImage) {
    ui.heading("Image");
    egui::Grid::new("image-facts")
        .num_columns(2)
        .show(ui, |ui| {
            ui.label("File");
            ui.label(name).on_hover_text(path.display().to_string());
            ui.end_row();
            ui.label("Size");
            ui.label(format!("{} × {} px", img.width, img.height));
            ui.end_row();
            ui.label("Bit depth");
            ui.label(img.bit_depth.to_string());
            ui.end_row();
            ui.label("Format");
            ui.label(&img.format);
            ui.end_row();
            ui.label("Colour");
            ui.label(if img.was_color { "yes" } else { "gray" });
            ui.end_row();
            if let Some(d) = &img.dicom {
                ui.label("Modality");
                ui.label(d.modality.as_deref().unwrap_or("-"));
                ui.end_row();
                ui.label("Photometric");
                ui.label(&d.photometric);
                ui.end_row();
                ui.label("View");
                ui.label(d.view_position.as_deref().unwrap_or("-"));
                ui.end_row();
                ui.label("Bits stored");
                ui.label(d.bits_stored.to_string());
                ui.end_row();
                ui.label("Windowed");
                ui.label(if d.windowed {
                    "file's window/VOI LUT"
                } else {
                    "full range"
                });
                ui.end_row();
            }
        });
    ui.label(
        RichText::new("Window/level change the display only; the model sees the full image.")
            .small(),
    );
}
