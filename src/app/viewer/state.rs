//! What the Viewer holds: the opened images (decoding, ready or failed), the loaded model,
//! each image's latest analysis, and which image is analysed next.
use super::image_view::ViewState;
use super::worker::AnalysisKey;
use crate::data::gray::GrayImage;
use crate::infer::predictor::Analysis;
use crate::infer::Predictor;
use egui::TextureHandle;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::sync::Arc;

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
    /// Show the confusion matrix row-normalised.
    pub normalised: bool,
    /// Batch size of the test-set run.
    pub batch_size: usize,
    /// Precision of the convolutions.
    pub precision: crate::model::ops::precision::Precision,
}

impl Default for ViewerSettings {
    fn default() -> Self {
        Self {
            model: String::new(),
            tta: false,
            show_cam: true,
            cam_opacity: 0.45,
            normalised: false,
            batch_size: 16,
            precision: Default::default(),
        }
    }
}

/// A decoded image and how it is shown.
pub struct Loaded {
    /// Full-resolution image (what the model sees).
    pub image: Arc<GrayImage>,
    /// Downscaled copy for the screen.
    pub display: GrayImage,
    /// Thumbnail for the image list.
    pub thumb: TextureHandle,
    /// The display texture and the (window, level) it was made with.
    pub texture: Option<(TextureHandle, (f32, f32))>,
    /// Display window width (1 = the whole 0..1 range).
    pub window: f32,
    /// Display window centre.
    pub level: f32,
    /// Zoom and pan.
    pub view: ViewState,
    /// Where the image was drawn last (screen points).
    pub shown_rect: Option<egui::Rect>,
    /// The latest prediction and what it answered.
    pub analysis: Option<(AnalysisKey, Result<Box<Analysis>, String>)>,
    /// The analysis asked for and not yet back.
    pub pending: Option<AnalysisKey>,
    /// The Grad-CAM texture and the analysis it shows.
    pub cam_tex: Option<(AnalysisKey, TextureHandle)>,
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

/// What a case of a review truly shows.
#[derive(Debug, Clone, PartialEq)]
pub enum Truth {
    /// Its class.
    Class(usize),
    /// Each finding: present, absent, or not counted (uncertain under the policy "ignore").
    Findings(Vec<Option<bool>>),
}

/// One opened file.
pub struct OpenImage {
    /// Slot id.
    pub id: u64,
    /// The file.
    pub path: PathBuf,
    /// File name for lists.
    pub name: String,
    /// What it truly shows, when it was opened from a test-set review.
    pub truth: Option<Truth>,
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

    fn pending(&self) -> bool {
        match &self.state {
            ImageState::Ready(l) => l.pending.is_some(),
            _ => false,
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

/// The image to analyse next for `key`, the shown one first; None while one is in
/// flight. Only the shown image follows a change of TTA or class; the others keep the
/// answer they have for the current model until they are shown.
pub fn next_to_analyse(
    images: &[OpenImage],
    selected: Option<usize>,
    key: AnalysisKey,
) -> Option<usize> {
    if images.iter().any(OpenImage::pending) {
        return None;
    }
    selected
        .into_iter()
        .chain(0..images.len())
        .find(|&i| match images.get(i).map(|im| &im.state) {
            Some(ImageState::Ready(l)) => {
                let done = l.analysis.as_ref().is_some_and(|(k, _)| *k == key);
                let stale_elsewhere = l
                    .analysis
                    .as_ref()
                    .is_some_and(|(k, _)| k.model == key.model)
                    && Some(i) != selected;
                !(done || stale_elsewhere)
            }
            _ => false,
        })
}
