//! The Viewer's background work: decoding on the rayon pool, model loading, predictions,
//! Grad-CAM and test-set runs on one "viewer-infer" thread, replies over a channel. The UI
//! thread never waits on any of it.
use crate::data::split::DataOptions;
use crate::data::{
    decode::{decode_bytes, decode_file},
    gray::GrayImage,
};
use crate::device::DeviceChoice;
use crate::eval::findings_report::FindingsReport;
use crate::eval::report::EvalReport;
use crate::eval::run::evaluate_test_split;
use crate::eval::EvalOptions;
use crate::infer::predictor::Analysis;
use crate::infer::Predictor;
use crate::model::ops::precision::Precision;
use std::path::PathBuf;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::Arc;

/// Longest side of the texture an image is shown with (the model sees the full image).
pub const DISPLAY_MAX_PX: u32 = 2048;
/// Side of the thumbnails in the image list and the gallery.
pub const THUMB_PX: u32 = 96;

/// Which prediction an analysis answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnalysisKey {
    /// Model generation (increases with every model loaded).
    pub model: u64,
    /// Test-time augmentation on.
    pub tta: bool,
    /// Class Grad-CAM explains (None: the predicted one).
    pub cam_class: Option<usize>,
    /// Precision of the convolutions.
    pub precision: Precision,
}

/// A finished test-set review.
#[derive(Debug)]
pub enum Reviewed {
    /// Of a single-label model.
    Classes(Box<EvalReport>),
    /// Of a multi-label model (findings).
    Findings(Box<FindingsReport>),
}

/// A decoded image with what the UI shows of it.
#[derive(Debug)]
pub struct Decoded {
    /// Full-resolution image (what the model sees).
    pub image: Arc<GrayImage>,
    /// Downscaled copy for the screen (at most [`DISPLAY_MAX_PX`] a side).
    pub display: GrayImage,
    /// Thumbnail pixels (gray).
    pub thumb: egui::ColorImage,
}

/// What comes back from background work.
#[derive(Debug)]
pub enum Reply {
    /// An opened file was decoded (or not).
    Decoded {
        /// Image slot id.
        id: u64,
        /// The image or a message naming the file.
        result: Result<Box<Decoded>, String>,
    },
    /// A model finished loading.
    Model {
        /// The file.
        path: PathBuf,
        /// The predictor or a message.
        result: Result<Arc<Predictor>, String>,
    },
    /// Probabilities and Grad-CAM for an image.
    Analysis {
        /// Image slot id.
        id: u64,
        /// What was asked.
        key: AnalysisKey,
        /// The answer.
        result: Result<Box<Analysis>, String>,
    },
    /// Test-set progress.
    ReviewProgress {
        /// Images done.
        done: usize,
        /// Images in all.
        total: usize,
    },
    /// The test-set review finished.
    Review {
        /// The report or a message.
        result: Result<Box<Reviewed>, String>,
    },
    /// A gallery thumbnail.
    Thumb {
        /// The case's file as the report names it.
        file: String,
        /// Thumbnail or a message.
        result: Result<egui::ColorImage, String>,
    },
}

enum Job {
    LoadModel(PathBuf, DeviceChoice),
    Analyze {
        id: u64,
        key: AnalysisKey,
        image: Arc<GrayImage>,
        predictor: Arc<Predictor>,
    },
    Review {
        data: PathBuf,
        opts: DataOptions,
        predictor: Arc<Predictor>,
        model_path: PathBuf,
        batch_size: usize,
        precision: Precision,
    },
}

/// Handle to the background work.
pub struct Worker {
    jobs: Sender<Job>,
    replies_tx: Sender<Reply>,
    replies: Receiver<Reply>,
    ctx: egui::Context,
}

/// Gray image data -> egui image, mapping [lo, hi] to black..white.
pub fn gray_to_color(img: &GrayImage, lo: f32, hi: f32) -> egui::ColorImage {
    let scale = 255.0 / (hi - lo).max(1e-6);
    let px: Vec<egui::Color32> = img
        .data
        .iter()
        .map(|&v| {
            let g = ((v - lo) * scale).clamp(0.0, 255.0) as u8;
            egui::Color32::from_gray(g)
        })
        .collect();
    egui::ColorImage::new([img.width as usize, img.height as usize], px)
}

/// Downscales so that the longer side is at most `max_px` (never upscales).
pub fn downscale(img: &GrayImage, max_px: u32) -> GrayImage {
    let long = img.width.max(img.height);
    if long <= max_px || long == 0 {
        return img.clone();
    }
    let s = max_px as f64 / long as f64;
    let (w, h) = (
        ((img.width as f64 * s).round() as u32).max(1),
        ((img.height as f64 * s).round() as u32).max(1),
    );
    let buf: image::ImageBuffer<image::Luma<f32>, Vec<f32>> =
        image::ImageBuffer::from_raw(img.width, img.height, img.data.clone()).expect("w*h values");
    let small = image::imageops::resize(&buf, w, h, image::imageops::FilterType::Triangle);
    GrayImage {
        width: w,
        height: h,
        data: small.into_raw(),
        dicom: img.dicom.clone(),
        format: img.format.clone(),
        ..*img
    }
}

fn prepare(image: GrayImage) -> Decoded {
    let display = downscale(&image, DISPLAY_MAX_PX);
    let thumb = gray_to_color(&downscale(&display, THUMB_PX), 0.0, 1.0);
    Decoded {
        image: Arc::new(image),
        display,
        thumb,
    }
}

impl Worker {
    /// Starts the inference thread.
    pub fn new(ctx: egui::Context) -> Self {
        let (jobs, rx) = channel::<Job>();
        let (replies_tx, replies) = channel();
        let tx = replies_tx.clone();
        let c = ctx.clone();
        std::thread::Builder::new()
            .name("viewer-infer".into())
            .spawn(move || {
                for job in rx {
                    let reply = run_job(job, &tx, &c);
                    if tx.send(reply).is_err() {
                        break;
                    }
                    c.request_repaint();
                }
            })
            .expect("spawn the viewer-infer thread");
        Self {
            jobs,
            replies_tx,
            replies,
            ctx,
        }
    }

    /// Replies that have arrived.
    pub fn poll(&self) -> Vec<Reply> {
        self.replies.try_iter().collect()
    }

    fn send_reply(tx: &Sender<Reply>, ctx: &egui::Context, r: Reply) {
        let _ = tx.send(r);
        ctx.request_repaint();
    }

    /// Decodes a file (or its dropped bytes) on the rayon pool.
    pub fn decode(&self, id: u64, path: PathBuf, bytes: Option<Vec<u8>>) {
        let (tx, ctx) = (self.replies_tx.clone(), self.ctx.clone());
        rayon::spawn(move || {
            let r = match bytes {
                Some(b) => decode_bytes(&b, &path),
                None => decode_file(&path),
            };
            let result = r.map(|g| Box::new(prepare(g))).map_err(|e| e.to_string());
            Self::send_reply(&tx, &ctx, Reply::Decoded { id, result });
        });
    }

    /// Decodes a gallery thumbnail on the rayon pool.
    pub fn thumbnail(&self, file: String, path: PathBuf) {
        let (tx, ctx) = (self.replies_tx.clone(), self.ctx.clone());
        rayon::spawn(move || {
            let result = decode_file(&path)
                .map(|g| gray_to_color(&downscale(&g, THUMB_PX), 0.0, 1.0))
                .map_err(|e| e.to_string());
            Self::send_reply(&tx, &ctx, Reply::Thumb { file, result });
        });
    }

    /// Loads a model file.
    pub fn load_model(&self, path: PathBuf, device: DeviceChoice) {
        let _ = self.jobs.send(Job::LoadModel(path, device));
    }

    /// Predicts one image with Grad-CAM.
    pub fn analyze(
        &self,
        id: u64,
        key: AnalysisKey,
        image: Arc<GrayImage>,
        predictor: Arc<Predictor>,
    ) {
        let _ = self.jobs.send(Job::Analyze {
            id,
            key,
            image,
            predictor,
        });
    }

    /// Runs the model over a dataset's test split.
    pub fn review(
        &self,
        data: PathBuf,
        opts: DataOptions,
        predictor: Arc<Predictor>,
        model_path: PathBuf,
        (batch_size, precision): (usize, Precision),
    ) {
        let _ = self.jobs.send(Job::Review {
            data,
            opts,
            predictor,
            model_path,
            batch_size,
            precision,
        });
    }
}

fn run_job(job: Job, tx: &Sender<Reply>, ctx: &egui::Context) -> Reply {
    match job {
        Job::LoadModel(path, device) => {
            let result = device
                .open()
                .and_then(|d| Predictor::load(&path, &d))
                .map(Arc::new)
                .map_err(|e| format!("cannot load model {}: {e}", crate::files::shown(&path)));
            Reply::Model { path, result }
        }
        Job::Analyze {
            id,
            key,
            image,
            predictor,
        } => {
            let result = predictor
                .in_precision(key.precision)
                .analyze(&image, key.tta, key.cam_class)
                .map(Box::new)
                .map_err(|e| e.to_string());
            Reply::Analysis { id, key, result }
        }
        Job::Review {
            data,
            opts,
            predictor,
            model_path,
            batch_size,
            precision,
        } => {
            let predictor = predictor.in_precision(precision);
            let result = (|| -> crate::Result<Reviewed> {
                let eval_opts = EvalOptions {
                    batch_size,
                    ..EvalOptions::default()
                };
                let progress = |done, total| {
                    Worker::send_reply(tx, ctx, Reply::ReviewProgress { done, total })
                };
                if predictor.meta().findings.is_some() {
                    return crate::eval::findings_report::evaluate_test_split(
                        &predictor,
                        &model_path,
                        &data,
                        &opts,
                        &eval_opts,
                        progress,
                    )
                    .map(|r| Reviewed::Findings(Box::new(r)));
                }
                let mut r = evaluate_test_split(
                    &predictor,
                    &model_path,
                    &data,
                    &opts,
                    &eval_opts,
                    progress,
                )?;
                r.info.insert("precision".into(), precision.to_string());
                Ok(Reviewed::Classes(Box::new(r)))
            })()
            .map(Box::new)
            .map_err(|e| e.to_string());
            Reply::Review { result }
        }
    }
}
