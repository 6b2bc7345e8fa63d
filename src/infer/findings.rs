//! A multi-label model's predictions: an independent probability a finding (they do not sum
//! to 1), each decided at the threshold its model file records.
use super::Predictor;
use crate::data::decode::decode_file;
use crate::Result;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// One image's findings.
#[derive(Debug, Clone, serde::Serialize)]
pub struct FindingPrediction {
    /// The image file.
    pub path: PathBuf,
    /// Probability of each finding, in the model's order.
    pub probs: Vec<f32>,
    /// Whether each finding is at or above its threshold.
    pub present: Vec<bool>,
    /// Reasons to distrust this prediction.
    pub warnings: Vec<super::InputWarning>,
}

impl Predictor {
    /// The thresholds of a multi-label model (None: a single-label one).
    pub fn finding_thresholds(&self) -> Option<&[f64]> {
        self.meta()
            .findings
            .as_ref()
            .map(|f| f.thresholds.as_slice())
    }

    /// A multi-label model's findings for each file, `batch_size` images a pass; a file that
    /// cannot be read is an error of its own.
    pub fn predict_finding_files(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
    ) -> Vec<Result<FindingPrediction>> {
        let thresholds = self.finding_thresholds().unwrap_or_default().to_vec();
        let pre = self.preprocess();
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(batch_size.max(1)) {
            let decoded: Vec<Result<(crate::data::gray::GrayImage, Vec<f32>)>> = chunk
                .par_iter()
                .map(|p| {
                    let img = decode_file(p)?;
                    let plane = pre.plane(&img)?;
                    Ok((img, plane))
                })
                .collect();
            let planes: Vec<&[f32]> = decoded
                .iter()
                .filter_map(|r| r.as_ref().ok().map(|(_, p)| p.as_slice()))
                .collect();
            let mut rows = match self.finding_probs_planes(&planes) {
                Ok(r) => r.into_iter(),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().map(|p| Err(inference_error(p, &msg))));
                    continue;
                }
            };
            for (path, d) in chunk.iter().zip(decoded) {
                out.push(d.map(|(img, _)| {
                    let probs = rows.next().unwrap_or_default();
                    let present = probs
                        .iter()
                        .zip(&thresholds)
                        .map(|(&p, &t)| p as f64 >= t)
                        .collect();
                    FindingPrediction {
                        path: path.clone(),
                        probs,
                        present,
                        warnings: self.warnings(&img),
                    }
                }));
            }
        }
        out
    }
}

fn inference_error(p: &Path, msg: &str) -> crate::Error {
    crate::Error::invalid("inference", format!("{}: {msg}", crate::files::shown(p)))
}
