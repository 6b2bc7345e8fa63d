//! File -> decoded grayscale -> resized, normalised tensor -> softmax over the classes.
use crate::data::decode::{decode_file, GrayImage};
use crate::data::preprocess::{batch_tensor, ResizeMode};
use crate::model::checkpoint::{load_model, ModelMeta};
use crate::model::Classifier;
use crate::Result;
use candle_core::{Device, D};
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Class probabilities for one image.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Prediction {
    /// The image file.
    pub path: PathBuf,
    /// One probability per class, in the model's class order.
    pub probs: Vec<f32>,
    /// Index of the most probable class.
    pub predicted: usize,
}

/// A loaded model ready to predict.
#[derive(Debug, Clone)]
pub struct Predictor {
    model: Classifier,
    meta: ModelMeta,
    resize: ResizeMode,
}

impl Predictor {
    /// Loads a model file onto `device`.
    pub fn load(path: &Path, device: &Device) -> Result<Self> {
        let (model, meta) = load_model(path, device)?;
        Ok(Self::new(model, meta))
    }

    /// Wraps an in-memory model.
    pub fn new(model: Classifier, meta: ModelMeta) -> Self {
        Self {
            model,
            meta,
            resize: ResizeMode::Squash,
        }
    }

    /// The model's metadata (class names, input size, ...).
    pub fn meta(&self) -> &ModelMeta {
        &self.meta
    }

    /// Probabilities (one row per image) for decoded images, evaluated in one batch.
    pub fn predict_images(&self, images: &[&GrayImage]) -> Result<Vec<Vec<f32>>> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let x = batch_tensor(
            images,
            self.meta.input_size_px,
            self.resize,
            self.meta.mean,
            self.meta.std,
            self.model.device(),
        )?;
        let logits = self.model.forward_t(&x, false)?;
        let probs = candle_nn::ops::softmax(&logits, D::Minus1)?;
        Ok(probs.to_device(&Device::Cpu)?.to_vec2::<f32>()?)
    }

    /// Predicts each file; a file that cannot be read gets its own error, the others
    /// are still predicted. Results keep the order of `paths`.
    pub fn predict_files(&self, paths: &[PathBuf], batch_size: usize) -> Vec<Result<Prediction>> {
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(batch_size.max(1)) {
            let decoded: Vec<Result<GrayImage>> =
                chunk.par_iter().map(|p| decode_file(p)).collect();
            let ok: Vec<&GrayImage> = decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
            let mut probs = match self.predict_images(&ok) {
                Ok(p) => p.into_iter(),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().zip(decoded).map(|(p, d)| {
                        d.and_then(|_| {
                            Err(crate::Error::invalid(
                                "inference",
                                format!("{}: {msg}", p.display()),
                            ))
                        })
                    }));
                    continue;
                }
            };
            for (path, d) in chunk.iter().zip(decoded) {
                out.push(d.map(|_| {
                    let p = probs.next().unwrap_or_default();
                    let predicted = argmax(&p);
                    Prediction {
                        path: path.clone(),
                        probs: p,
                        predicted,
                    }
                }));
            }
        }
        out
    }
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}
