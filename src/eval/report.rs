//! Running a model over a split and writing what it got right and wrong: JSON (everything),
//! CSV (one row per image), and a short Markdown summary, each written atomically.
use super::metrics::{compute_grouped, Metrics};
use super::operating::OperatingPoint;
use super::scores::{ScoreInput, Scores};
use super::stats::Resampler;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// Resamples used when a report read from a file must be recomputed (it was written before
/// AUC and calibration existed): a file cannot ask for unbounded work.
pub const MAX_BOOTSTRAP_ON_LOAD: usize = 2000;

/// One evaluated image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The image file as people read it (bytes that are not UTF-8 as `\xHH`).
    pub file: String,
    /// The file name's raw bytes in hex, when it is not UTF-8 (so the file can be found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<String>,
    /// True class index.
    pub actual: usize,
    /// Predicted class index.
    pub predicted: usize,
    /// Class probabilities.
    pub probs: Vec<f32>,
    /// Cross-entropy of this image.
    #[serde(with = "super::metrics::nullable")]
    pub loss: f64,
    /// Source tag, if known.
    pub source: Option<String>,
    /// Patient identifier, when the data set gives one (the bootstrap resamples patients).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// How much an ensemble's networks disagree on this image, about the class the model
    /// predicted when it was evaluated (None: one network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<crate::infer::disagreement::Disagreement>,
}

/// Accuracy of one source.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceMetrics {
    /// Images.
    pub n: usize,
    /// Correct.
    pub correct: usize,
    /// Accuracy.
    #[serde(with = "super::metrics::nullable")]
    pub accuracy: f64,
    /// Confusion matrix of the source.
    pub confusion: Vec<Vec<usize>>,
}

/// Everything an evaluation produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Class names.
    pub classes: Vec<String>,
    /// Mean cross-entropy.
    #[serde(with = "super::metrics::nullable")]
    pub loss: f64,
    /// Metrics with intervals.
    pub metrics: Metrics,
    /// Per source (4th split-file column).
    pub per_source: BTreeMap<String, SourceMetrics>,
    /// Every image, sorted by loss, highest first.
    pub cases: Vec<Case>,
    /// Free-form facts (model, data, split, size).
    pub info: BTreeMap<String, String>,
    /// The run that made the model validated on these (test) images, so the figures are
    /// not independent of the choices made on them; the report's first line says so.
    #[serde(default)]
    pub validated_on_test: bool,
    /// ROC/AUC, rates at argmax and at the operating point, calibration (absent in reports
    /// written before they existed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores: Option<Scores>,
    /// The operating point the predictions follow; argmax when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operating_point: Option<OperatingPoint>,
    /// Seed of the bootstrap.
    #[serde(default)]
    pub seed: u64,
    /// Accuracy against an ensemble's disagreement (None: one network).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disagreement: Option<super::disagreement::DisagreementSummary>,
}

impl Case {
    /// The image file's path, exactly.
    pub fn path(&self) -> std::path::PathBuf {
        self.file_bytes
            .as_deref()
            .and_then(crate::files::path_from_hex)
            .unwrap_or_else(|| std::path::PathBuf::from(&self.file))
    }
}

impl EvalReport {
    /// Records where the report comes from: the model file (and what in it changes the
    /// predictions: temperature, operating point), the data folder and the split.
    pub fn record_source(
        &mut self,
        model: &Path,
        meta: &crate::model::io::model_file::ModelMeta,
        data: &Path,
        split: &str,
    ) {
        let shown = |p: &Path| crate::files::shown(p).to_string();
        self.info.insert("model".into(), shown(model));
        self.info.insert("data".into(), shown(data));
        self.info.insert("split".into(), split.into());
        if let Some(t) = &meta.temperature {
            self.info.insert(
                "temperature".into(),
                format!("{:.4} (fitted on {})", t.value, t.fitted_on),
            );
        }
        if let Some(o) = &meta.operating_point {
            self.info.insert(
                "operating point".into(),
                format!("{} when p ≥ {}", o.class, crate::fmt::number(o.threshold)),
            );
        }
    }

    /// Builds the report from cases (predictions at argmax).
    pub fn from_cases(classes: Vec<String>, cases: Vec<Case>, bootstrap: usize, seed: u64) -> Self {
        Self::with_operating_point(classes, cases, bootstrap, seed, None)
    }

    /// Builds the report from cases, the predictions following `op` when given.
    pub fn with_operating_point(
        classes: Vec<String>,
        mut cases: Vec<Case>,
        bootstrap: usize,
        seed: u64,
        op: Option<OperatingPoint>,
    ) -> Self {
        let k = classes.len();
        let loss = cases.iter().map(|c| c.loss).sum::<f64>() / cases.len().max(1) as f64;
        cases.sort_by(|a, b| b.loss.total_cmp(&a.loss));
        let mut r = Self {
            metrics: compute_grouped(&classes, &[], &[], &Resampler::by_case(0), 0, seed),
            classes,
            loss,
            per_source: BTreeMap::new(),
            cases,
            info: BTreeMap::new(),
            validated_on_test: false,
            scores: None,
            operating_point: op.filter(|o| o.class < k),
            seed,
            disagreement: None,
        };
        r.metrics.bootstrap = bootstrap;
        r.recompute(true);
        r
    }

    /// Sets the operating point (None: argmax) and recomputes the predictions and every
    /// figure that follows from them (the ROC, AUC and calibration do not).
    pub fn set_operating_point(&mut self, op: Option<OperatingPoint>) {
        self.operating_point = op.filter(|o| o.class < self.classes.len());
        self.recompute(false);
    }

    /// Predictions, metrics and per-source figures from the cases' probabilities; the
    /// scores too when `all`, else only their operating point.
    fn recompute(&mut self, all: bool) {
        let k = self.classes.len();
        let op = self.operating_point;
        for c in &mut self.cases {
            if c.probs.len() == k {
                c.predicted = match op {
                    Some(o) => o.decide(&c.probs),
                    None => crate::infer::predictor::argmax(&c.probs),
                };
            }
        }
        let cases = &self.cases;
        let actual: Vec<usize> = cases.iter().map(|c| c.actual).collect();
        let predicted: Vec<usize> = cases.iter().map(|c| c.predicted).collect();
        let keys: Vec<Option<&str>> = cases.iter().map(|c| c.patient.as_deref()).collect();
        let resampler = Resampler::by_key(&keys);
        let (bootstrap, seed) = (self.metrics.bootstrap, self.seed);
        self.metrics = compute_grouped(
            &self.classes,
            &actual,
            &predicted,
            &resampler,
            bootstrap,
            seed,
        );
        let mut per_source: BTreeMap<String, SourceMetrics> = BTreeMap::new();
        for c in cases {
            if let Some(s) = &c.source {
                let e = per_source
                    .entry(s.clone())
                    .or_insert_with(|| SourceMetrics {
                        n: 0,
                        correct: 0,
                        accuracy: 0.0,
                        confusion: vec![vec![0; k]; k],
                    });
                e.n += 1;
                e.correct += (c.actual == c.predicted) as usize;
                e.confusion[c.actual][c.predicted] += 1;
            }
        }
        for s in per_source.values_mut() {
            s.accuracy = s.correct as f64 / s.n as f64;
        }
        self.per_source = per_source;
        self.disagreement = super::disagreement::DisagreementSummary::of(
            &self.cases,
            &resampler,
            bootstrap,
            seed ^ 0xd15a,
        );
        let cases = &self.cases;
        let probs: Vec<&[f32]> = cases.iter().map(|c| &c.probs[..]).collect();
        if cases.is_empty() || probs.iter().any(|p| p.len() != k) {
            self.scores = None;
            return;
        }
        let inp = ScoreInput {
            classes: &self.classes,
            actual: &actual,
            probs: &probs,
            resampler: &resampler,
            bootstrap,
            seed: seed ^ 0x5c0e,
        };
        match (&mut self.scores, all) {
            (Some(s), false) => s.operating = op.map(|o| Scores::operating(&inp, o)),
            _ => self.scores = Some(Scores::compute(&inp, op)),
        }
    }

    /// The misclassified images, highest loss first.
    pub fn misclassified(&self) -> impl Iterator<Item = &Case> {
        self.cases.iter().filter(|c| c.actual != c.predicted)
    }

    /// Short Markdown summary.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        // Never NaN in words: an undefined figure says why.
        let pct = |w: &super::metrics::WithCi, why: &str| {
            if w.value.is_finite() {
                super::scores::cell_to(w, 2)
            } else {
                format!("undefined: {why}")
            }
        };
        let mut o = String::new();
        if self.validated_on_test {
            let _ = writeln!(
                o,
                "# Evaluation (validated on the test split: not an independent test)\n\n\
                 The run that made this model validated on these test images after every \
                 epoch (the paper's way), so these figures are not independent of the choices \
                 made on them.\n"
            );
        } else {
            let _ = writeln!(o, "# Evaluation\n");
        }
        for (k, v) in &self.info {
            let _ = writeln!(o, "- {k}: {v}");
        }
        let m = &self.metrics;
        let loss = if m.n == 0 {
            "undefined: no images".to_string()
        } else {
            format!("{:.4}", self.loss)
        };
        let _ = writeln!(
            o,
            "\n{} images, loss {loss}, accuracy {}, macro F1 {}.\n",
            m.n,
            pct(&m.accuracy, "no images"),
            pct(&m.macro_f1, "no images")
        );
        let resampled = self
            .scores
            .as_ref()
            .map_or_else(|| "images".to_string(), |s| s.resampled.clone());
        let _ = writeln!(
            o,
            "95% intervals: percentile bootstrap over {resampled} ({} resamples); † a Wilson score \
             interval, used for a proportion with fewer than 10 events on one side (where a \
             bootstrap collapses).\n",
            m.bootstrap
        );
        if let Some(op) = self.operating_point {
            let _ = writeln!(
                o,
                "Predictions follow an operating point: {} when its probability ≥ {}, \
                 else the most probable other class.\n",
                self.classes[op.class],
                crate::fmt::number(op.threshold)
            );
        }
        if !m.absent.is_empty() {
            let _ = writeln!(
                o,
                "No images and no predictions of {}: left out of the macro averages \
                 (scikit-learn's convention).\n",
                m.absent.join(", ")
            );
        }
        let _ = writeln!(
            o,
            "| class | n | recall % | PPV % | F1 % |\n|---|---|---|---|---|"
        );
        for c in &m.per_class {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} |",
                c.class,
                c.support,
                pct(&c.recall, "no images"),
                pct(&c.ppv, "never predicted"),
                pct(&c.f1, "no images, no predictions")
            );
        }
        let _ = writeln!(o, "\nConfusion matrix (rows actual, columns predicted):\n");
        let _ = writeln!(
            o,
            "| | {} |\n|---|{}",
            self.classes.join(" | "),
            "---|".repeat(self.classes.len())
        );
        for (i, row) in m.confusion.m.iter().enumerate() {
            let cells: Vec<String> = row.iter().map(|v| v.to_string()).collect();
            let _ = writeln!(o, "| {} | {} |", self.classes[i], cells.join(" | "));
        }
        if let Some(s) = &self.scores {
            o.push_str(&s.markdown());
        }
        if let Some(d) = &self.disagreement {
            let _ = writeln!(o, "\n{}", d.markdown());
        }
        if !self.per_source.is_empty() {
            let _ = writeln!(o, "\n| source | n | accuracy % |\n|---|---|---|");
            for (s, v) in &self.per_source {
                let _ = writeln!(o, "| {s} | {} | {} |", v.n, crate::fmt::pct(v.accuracy, 2));
            }
        }
        let wrong = self.misclassified().count();
        let _ = writeln!(o, "\n{wrong} misclassified; the worst by loss:\n");
        for c in self.misclassified().take(10) {
            let _ = writeln!(
                o,
                "- {} (actual {}, predicted {}, p={:.3}, loss {:.3})",
                c.file,
                self.classes[c.actual],
                self.classes[c.predicted],
                c.probs[c.predicted],
                c.loss
            );
        }
        let _ = writeln!(o, "\n{}", crate::RESEARCH_NOTICE);
        o
    }

    /// One CSV row per image (RFC 4180 quoting: a comma, quote or newline in a file name or
    /// a source stays inside its field).
    pub fn csv(&self) -> Result<String> {
        let mut w = csv::Writer::from_writer(Vec::new());
        let err = |e: csv::Error| Error::invalid("report", format!("CSV: {e}"));
        let mut head: Vec<String> = ["file", "actual", "predicted", "loss", "source"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        head.extend(self.classes.iter().map(|c| format!("p_{c}")));
        w.write_record(&head).map_err(err)?;
        for c in &self.cases {
            let mut row = vec![
                c.file.clone(),
                self.classes[c.actual].clone(),
                self.classes[c.predicted].clone(),
                format!("{:.6}", c.loss),
                c.source.clone().unwrap_or_default(),
            ];
            row.extend(c.probs.iter().map(|p| format!("{p:.6}")));
            w.write_record(&row).map_err(err)?;
        }
        let bytes = w
            .into_inner()
            .map_err(|e| Error::invalid("report", format!("CSV: {e}")))?;
        String::from_utf8(bytes).map_err(|e| Error::invalid("report", format!("CSV: {e}")))
    }

    /// The highest threshold at which class `class` reaches sensitivity `target` on these
    /// cases; `None` when the class has none.
    pub fn threshold_for_sensitivity(&self, class: usize, target: f64) -> Option<f64> {
        let pos: Vec<bool> = self.cases.iter().map(|c| c.actual == class).collect();
        let s: Vec<f64> = self.cases.iter().map(|c| c.probs[class] as f64).collect();
        super::operating::threshold_for_sensitivity(&pos, &s, target)
    }

    /// The class of interest: the operating point's, else the default one.
    pub fn focus(&self) -> usize {
        self.operating_point
            .map(|o| o.class)
            .unwrap_or_else(|| super::operating::default_focus(&self.classes))
    }

    /// One line naming the split, its size and the accuracy (PNG titles).
    pub fn title(&self) -> String {
        format!(
            "{}{} images, accuracy {}",
            self.info
                .get("split")
                .map(|s| format!("{s} split, "))
                .unwrap_or_default(),
            self.metrics.n,
            crate::fmt::pct(self.metrics.accuracy.value, 2)
        )
    }

    /// Reads a JSON report.
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_json(&bytes, path)
    }

    /// Parses and checks a JSON report; `path` only names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Self> {
        let r: Self = serde_json::from_slice(bytes)
            .map_err(|e| Error::invalid("report", format!("{}: {e}", crate::files::shown(path))))?;
        let mut r = r;
        r.check().map_err(|msg| {
            Error::invalid("report", format!("{}: {msg}", crate::files::shown(path)))
        })?;
        if r.scores.is_none() && !r.cases.is_empty() {
            // A report written before AUC and calibration existed: computed from its cases.
            r.metrics.bootstrap = r.metrics.bootstrap.min(MAX_BOOTSTRAP_ON_LOAD);
            r.recompute(true);
        }
        Ok(r)
    }

    /// The first inconsistency (class indices, matrix shapes) that would make the report
    /// unusable, if any.
    pub fn check(&self) -> std::result::Result<(), String> {
        let k = self.classes.len();
        if k == 0 {
            return Err("no classes".into());
        }
        let square = |m: &Vec<Vec<usize>>| m.len() == k && m.iter().all(|r| r.len() == k);
        if !square(&self.metrics.confusion.m) {
            return Err(format!("the confusion matrix is not {k} x {k}"));
        }
        if self.metrics.per_class.len() != k {
            return Err(format!(
                "{} per-class rows for {k} classes",
                self.metrics.per_class.len()
            ));
        }
        for (name, s) in &self.per_source {
            if !square(&s.confusion) {
                return Err(format!(
                    "source {name:?}: the confusion matrix is not {k} x {k}"
                ));
            }
        }
        if self.operating_point.is_some_and(|o| o.class >= k) {
            return Err(format!(
                "the operating point's class is not one of the {k} classes"
            ));
        }
        if let Some(s) = &self.scores {
            if s.roc.len() != k || s.at_argmax.len() != k {
                return Err(format!("the scores do not have {k} classes"));
            }
            if s.operating.as_ref().is_some_and(|o| o.point.class >= k) {
                return Err(format!(
                    "the scores' operating point is not one of the {k} classes"
                ));
            }
        }
        for (i, c) in self.cases.iter().enumerate() {
            if c.actual >= k || c.predicted >= k || c.probs.len() != k {
                return Err(format!(
                    "case {} ({}): class index or probabilities do not fit {k} classes",
                    i + 1,
                    c.file
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report() -> EvalReport {
        let cases: Vec<Case> = (0..30)
            .map(|i| {
                let actual = i % 3;
                let mut probs = vec![0.2f32; 3];
                probs[(i * 7) % 3] = 0.6;
                Case {
                    file: format!("{i}.png"),
                    file_bytes: None,
                    actual,
                    predicted: 0,
                    probs,
                    loss: 0.1,
                    source: None,
                    patient: Some(format!("p{}", i / 2)),
                    disagreement: None,
                }
            })
            .collect();
        let classes = ["a", "b", "c"].map(String::from).to_vec();
        EvalReport::from_cases(classes, cases, 100, 3)
    }

    #[test]
    fn a_report_without_scores_gets_them_and_bad_scores_are_refused() {
        let r = report();
        assert_eq!(
            r.scores.as_ref().unwrap().resampled,
            "patients (15 for 30 images)"
        );
        let mut v = serde_json::to_value(&r).unwrap();
        v.as_object_mut().unwrap().remove("scores");
        let old = serde_json::to_vec(&v).unwrap();
        let back = EvalReport::from_json(&old, Path::new("old.json")).unwrap();
        assert_eq!(back.scores, r.scores);
        let mut v = serde_json::to_value(&r).unwrap();
        v["scores"]["roc"].as_array_mut().unwrap().pop();
        let bad = serde_json::to_vec(&v).unwrap();
        let e = EvalReport::from_json(&bad, Path::new("bad.json")).unwrap_err();
        assert!(
            e.to_string().contains("bad.json") && e.to_string().contains("3 classes"),
            "{e}"
        );
        let mut v = serde_json::to_value(&r).unwrap();
        v["operating_point"] = serde_json::json!({"class": 7, "threshold": 0.5});
        let bad = serde_json::to_vec(&v).unwrap();
        assert!(EvalReport::from_json(&bad, Path::new("bad.json")).is_err());
    }
}
