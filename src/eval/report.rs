//! Running a model over a split and writing what it got right and wrong: JSON (everything),
//! CSV (one row per image), and a short Markdown summary, each written atomically.
use super::metrics::{compute, Metrics};
use crate::files::write_atomic;
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One evaluated image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Case {
    /// The image file.
    pub file: String,
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
}

impl EvalReport {
    /// Builds the report from cases.
    pub fn from_cases(
        classes: Vec<String>,
        mut cases: Vec<Case>,
        bootstrap: usize,
        seed: u64,
    ) -> Self {
        let actual: Vec<usize> = cases.iter().map(|c| c.actual).collect();
        let predicted: Vec<usize> = cases.iter().map(|c| c.predicted).collect();
        let metrics = compute(&classes, &actual, &predicted, bootstrap, seed);
        let k = classes.len();
        let mut per_source: BTreeMap<String, SourceMetrics> = BTreeMap::new();
        for c in &cases {
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
        let loss = cases.iter().map(|c| c.loss).sum::<f64>() / cases.len().max(1) as f64;
        cases.sort_by(|a, b| b.loss.total_cmp(&a.loss));
        Self {
            classes,
            loss,
            metrics,
            per_source,
            cases,
            info: BTreeMap::new(),
        }
    }

    /// The misclassified images, highest loss first.
    pub fn misclassified(&self) -> impl Iterator<Item = &Case> {
        self.cases.iter().filter(|c| c.actual != c.predicted)
    }

    /// Short Markdown summary.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let pct = |w: &super::metrics::WithCi| crate::fmt::pct_ci(w, 2);
        let mut o = String::new();
        let _ = writeln!(o, "# Evaluation\n");
        for (k, v) in &self.info {
            let _ = writeln!(o, "- {k}: {v}");
        }
        let m = &self.metrics;
        let _ = writeln!(
            o,
            "\n{} images, loss {:.4}, accuracy {} (95% bootstrap CI, {} resamples), macro F1 {}.\n",
            m.n,
            self.loss,
            pct(&m.accuracy),
            m.bootstrap,
            pct(&m.macro_f1)
        );
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
                pct(&c.recall),
                pct(&c.ppv),
                pct(&c.f1)
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
        if !self.per_source.is_empty() {
            let _ = writeln!(o, "\n| source | n | accuracy % |\n|---|---|---|");
            for (s, v) in &self.per_source {
                let _ = writeln!(o, "| {s} | {} | {:.2} |", v.n, 100.0 * v.accuracy);
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

    /// One CSV row per image.
    pub fn csv(&self) -> String {
        let mut o = format!(
            "file,actual,predicted,loss,source,{}\n",
            self.classes
                .iter()
                .map(|c| format!("p_{c}"))
                .collect::<Vec<_>>()
                .join(",")
        );
        for c in &self.cases {
            let file = if c.file.contains([',', '"']) {
                format!("\"{}\"", c.file.replace('"', "\"\""))
            } else {
                c.file.clone()
            };
            let probs: Vec<String> = c.probs.iter().map(|p| format!("{p:.6}")).collect();
            o.push_str(&format!(
                "{file},{},{},{:.6},{},{}\n",
                self.classes[c.actual],
                self.classes[c.predicted],
                c.loss,
                c.source.clone().unwrap_or_default(),
                probs.join(",")
            ));
        }
        o
    }

    /// Writes `<stem>.json`, `<stem>.csv`, `<stem>.md` and the confusion matrix as
    /// `<stem>-confusion.png` into `dir`, each atomically; returns the paths in that order.
    pub fn write_all(&self, dir: &Path, stem: &str) -> Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        let paths: Vec<PathBuf> = ["json", "csv", "md"]
            .iter()
            .map(|ext| dir.join(format!("{stem}.{ext}")))
            .chain([dir.join(format!("{stem}-confusion.png"))])
            .collect();
        write_atomic(&paths[0], json.as_bytes())?;
        write_atomic(&paths[1], self.csv().as_bytes())?;
        write_atomic(&paths[2], self.markdown().as_bytes())?;
        super::plot::write_confusion_png(
            &paths[3],
            &self.classes,
            &self.metrics.confusion.m,
            &self.title(),
        )?;
        Ok(paths)
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
            .map_err(|e| Error::invalid("report", format!("{}: {e}", path.display())))?;
        r.check()
            .map_err(|msg| Error::invalid("report", format!("{}: {msg}", path.display())))?;
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
