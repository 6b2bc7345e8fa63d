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

    /// A multi-label model's findings for each file, `batch_size` images a pass (averaged
    /// over the flips when `tta` is true); a file that cannot be read is an error of its own.
    pub fn predict_finding_files(
        &self,
        paths: &[PathBuf],
        batch_size: usize,
        tta: bool,
    ) -> Vec<Result<FindingPrediction>> {
        let mut out = Vec::with_capacity(paths.len());
        for chunk in paths.chunks(batch_size.max(1)) {
            let decoded: Vec<Result<crate::data::gray::GrayImage>> =
                chunk.par_iter().map(|p| decode_file(p)).collect();
            let ok: Vec<&crate::data::gray::GrayImage> =
                decoded.iter().filter_map(|r| r.as_ref().ok()).collect();
            let mut rows = match self.finding_probs_tta(&ok, tta) {
                Ok(r) => r.into_iter(),
                Err(e) => {
                    let msg = e.to_string();
                    out.extend(chunk.iter().map(|p| Err(inference_error(p, &msg))));
                    continue;
                }
            };
            for (path, d) in chunk.iter().zip(decoded) {
                out.push(d.map(|img| {
                    let probs = rows.next().unwrap_or_default();
                    FindingPrediction {
                        path: path.clone(),
                        present: self.findings_present(&probs).unwrap_or_default(),
                        probs,
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
