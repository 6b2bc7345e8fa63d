//! The end of a multi-label run: each finding's threshold chosen on the validation split
//! (Youden's J), the model file with its findings, labels and thresholds, then the test split
//! evaluated once at those thresholds (`findings_report.json`: per-finding AUC, ROC, 2x2 table
//! and rates with intervals from the bootstrap over patients, the mean AUC and CheXpert's
//! five-label mean).
use super::{Outcome, Trainer};
use crate::eval::findings::{evaluate, ThresholdRule};
use crate::eval::findings_report::{FindingsReport, Source};
use crate::model::io::model_file::save_model;
use crate::train::checkpoint::MODEL_FILE;
use crate::train::events::TrainEvent;
use crate::Result;

/// The report a multi-label run writes.
pub const REPORT_FILE: &str = "findings_report.json";

impl Trainer {
    pub(super) fn finish_findings(&mut self, size: u32) -> Result<Outcome> {
        let n = self.classes.len();
        let valid = self.finding_outputs(size, false)?;
        let chosen = evaluate(
            &self.classes,
            &valid.cases(),
            &vec![ThresholdRule::Youden; n],
            0,
            0,
        );
        let thresholds: Vec<f64> = chosen
            .labels
            .iter()
            .map(|l| {
                if l.threshold.is_finite() {
                    l.threshold
                } else {
                    0.5
                }
            })
            .collect();
        let mut meta = self.model_meta(size);
        if let Some(f) = meta.findings.as_mut() {
            f.thresholds = thresholds.clone();
            f.thresholds_from = "Youden's J on the validation split (0.5 where it has no \
                                 positive or no negative)"
                .into();
        }
        // Then, once, the test split at those thresholds (or the validation split when the
        // run leaves the test split alone).
        let split = if self.cfg.skip_test { "valid" } else { "test" };
        let out = if split == "test" {
            self.finding_outputs(size, true)?
        } else {
            valid
        };
        let rules: Vec<ThresholdRule> = thresholds
            .iter()
            .map(|&t| ThresholdRule::Typed(t))
            .collect();
        let m = evaluate(&self.classes, &out.cases(), &rules, self.cfg.bootstrap, 0);
        let validated_on_test = self.valid_source == crate::data::split::ValidSource::Test;
        meta.training = Some(self.training_summary(serde_json::json!({
            "findings": true,
            "uncertain": self.findings.as_ref().map(|p| p.to_string()),
            "pos_weight": self.cfg.class_weights.name(),
            split: {
                "split": split,
                "validated_on_test": validated_on_test,
                "n": out.probs.len(),
                "mean_auc": m.mean_auc,
                "competition_auc": m.competition_auc,
            },
        })));
        let model_path = self.cfg.out_dir.join(MODEL_FILE);
        save_model(&model_path, &self.model, &meta)?;
        let path = self.cfg.out_dir.join(REPORT_FILE);
        let source = Source {
            model: model_path.clone(),
            data: self.cfg.data.clone(),
            split: split.into(),
            validated_on_test,
            validation: Some(self.valid_source.describe()),
            uncertain: self.findings.as_ref().map(|p| p.to_string()),
            thresholds_from: "Youden's J on the validation split".into(),
        };
        FindingsReport::new(source, &out, m.clone()).save(&path)?;
        self.sink.send(TrainEvent::Log(format!(
            "{split} split, {} images: mean AUC {}{}",
            out.probs.len(),
            crate::fmt::pct(m.mean_auc.value, 1),
            m.competition_auc
                .as_ref()
                .map(|c| format!(", CheXpert's five {}", crate::fmt::pct(c.value, 1)))
                .unwrap_or_default()
        )));
        self.sink.send(TrainEvent::Finished {
            model: model_path.clone(),
            report: Some(path),
        });
        Ok(Outcome::Finished { model: model_path })
    }
}
