//! A multi-label evaluation as a file (`findings_report.json` of a run,
//! `eval-findings-<split>.json` of `eval`): where it comes from, the figures of
//! [`super::findings::evaluate`], and every case (file, patient, probabilities, what it truly
//! shows) so that a review can set other thresholds and list the cases of a 2x2 cell.
use super::findings::{FindingsMetrics, Outputs};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One image of a multi-label evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingCase {
    /// The image file as people read it (bytes that are not UTF-8 as `\xHH`).
    pub file: String,
    /// The file name's raw bytes in hex, when it is not UTF-8 (so the file can be found).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_bytes: Option<String>,
    /// Patient identifier, when the data set gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// Probability of each finding, in the model's order.
    pub probs: Vec<f32>,
    /// Each finding present (true), absent (false) or not counted (null: uncertain under the
    /// policy "ignore").
    pub truth: Vec<Option<bool>>,
}

impl FindingCase {
    /// The image file's path, exactly.
    pub fn path(&self) -> PathBuf {
        self.file_bytes
            .as_deref()
            .and_then(crate::files::path_from_hex)
            .unwrap_or_else(|| PathBuf::from(&self.file))
    }
}

/// A multi-label evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingsReport {
    /// Always true: what tells this report from a single-label one.
    #[serde(default)]
    pub multi_label: bool,
    /// The model file.
    pub model: String,
    /// The data folder.
    pub data: String,
    /// The split evaluated.
    pub split: String,
    /// The run that made the model validated on these (test) images.
    #[serde(default)]
    pub validated_on_test: bool,
    /// Where the run's validation images came from (a run's own report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub validation: Option<String>,
    /// The uncertain-label policies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncertain: Option<String>,
    /// How the thresholds were chosen.
    pub thresholds_from: String,
    /// Images.
    pub n: usize,
    /// Mean binary cross-entropy over the counted elements.
    #[serde(with = "super::metrics::nullable")]
    pub loss: f64,
    /// The figures at the recorded thresholds.
    pub metrics: FindingsMetrics,
    /// Every image.
    pub cases: Vec<FindingCase>,
}

/// Where a multi-label report comes from.
#[derive(Debug, Clone, Default)]
pub struct Source {
    /// The model file.
    pub model: PathBuf,
    /// The data folder.
    pub data: PathBuf,
    /// The split evaluated.
    pub split: String,
    /// The run that made the model validated on these (test) images.
    pub validated_on_test: bool,
    /// Where the run's validation images came from.
    pub validation: Option<String>,
    /// The uncertain-label policies.
    pub uncertain: Option<String>,
    /// How the thresholds were chosen.
    pub thresholds_from: String,
}

impl FindingsReport {
    /// The report of `out` with its figures `metrics`.
    pub fn new(source: Source, out: &Outputs, metrics: FindingsMetrics) -> Self {
        let cases = (0..out.probs.len())
            .map(|i| {
                let file = out.files.get(i).cloned().unwrap_or_default();
                FindingCase {
                    file: crate::files::path_text(&file),
                    file_bytes: crate::files::path_bytes_hex(&file),
                    patient: out.patients.get(i).cloned().flatten(),
                    probs: out.probs[i].clone(),
                    truth: out.targets[i]
                        .iter()
                        .zip(&out.mask[i])
                        .map(|(&t, &m)| (m > 0.0).then_some(t >= 0.5))
                        .collect(),
                }
            })
            .collect();
        FindingsReport {
            multi_label: true,
            model: crate::files::path_text(&source.model),
            data: crate::files::path_text(&source.data),
            split: source.split,
            validated_on_test: source.validated_on_test,
            validation: source.validation,
            uncertain: source.uncertain,
            thresholds_from: source.thresholds_from,
            n: out.probs.len(),
            loss: out.loss(),
            metrics,
            cases,
        }
    }

    /// The finding names.
    pub fn labels(&self) -> Vec<String> {
        self.metrics
            .labels
            .iter()
            .map(|l| l.label.clone())
            .collect()
    }

    /// The cases as [`super::findings::evaluate`] reads them (to set other thresholds).
    pub fn outputs(&self) -> Outputs {
        let mut o = Outputs {
            probs: Vec::with_capacity(self.cases.len()),
            targets: Vec::with_capacity(self.cases.len()),
            mask: Vec::with_capacity(self.cases.len()),
            patients: Vec::with_capacity(self.cases.len()),
            files: Vec::with_capacity(self.cases.len()),
        };
        for c in &self.cases {
            o.probs.push(c.probs.clone());
            let (t, m): (Vec<f32>, Vec<f32>) = c
                .truth
                .iter()
                .map(|t| match t {
                    Some(true) => (1.0, 1.0),
                    Some(false) => (0.0, 1.0),
                    None => (0.0, 0.0),
                })
                .unzip();
            o.targets.push(t);
            o.mask.push(m);
            o.patients.push(c.patient.clone());
            o.files.push(c.path());
        }
        o
    }

    /// Writes the report as pretty JSON (atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_string_pretty(self)
            .map_err(|e| Error::invalid("report", e.to_string()))?;
        crate::files::write_atomic(path, json.as_bytes())
    }

    /// Parses and checks a multi-label report; `path` only names it in errors.
    pub fn from_json(bytes: &[u8], path: &Path) -> Result<Self> {
        let bad =
            |msg: String| Error::invalid("report", format!("{}: {msg}", crate::files::shown(path)));
        let r: Self = serde_json::from_slice(bytes).map_err(|e| {
            if e.to_string().contains("missing field `cases`") {
                bad(
                    "a multi-label report without its cases (written by an earlier version): \
                     run `covid-resnet eval --model MODEL --data DIR` again to review it"
                        .into(),
                )
            } else {
                bad(e.to_string())
            }
        })?;
        let k = r.metrics.labels.len();
        if k == 0 {
            return Err(bad("no findings".into()));
        }
        if let Some((i, c)) = r
            .cases
            .iter()
            .enumerate()
            .find(|(_, c)| c.probs.len() != k || c.truth.len() != k)
        {
            return Err(bad(format!(
                "case {} ({}) has {} probabilities and {} truths for {k} findings",
                i + 1,
                c.file,
                c.probs.len(),
                c.truth.len()
            )));
        }
        Ok(r)
    }

    /// Whether a report file's JSON is a multi-label one (its flag, or the thresholds' origin
    /// that only multi-label reports record).
    pub fn is_multi_label(bytes: &[u8]) -> bool {
        #[derive(Deserialize)]
        struct Probe {
            #[serde(default)]
            multi_label: bool,
            #[serde(default)]
            thresholds_from: Option<String>,
        }
        serde_json::from_slice::<Probe>(bytes)
            .is_ok_and(|p| p.multi_label || p.thresholds_from.is_some())
    }
}

/// `predictor` (a multi-label model from the file `model`) on the whole test split of the
/// multi-label data set at `data` read with `data_opts` (the model's uncertain-label policies
/// unless they name others), each finding at the threshold the model file records: the report
/// the window's review shows. `progress(done, total)` after each batch.
pub fn evaluate_test_split(
    predictor: &crate::infer::Predictor,
    model: &Path,
    data: &Path,
    data_opts: &crate::data::split::DataOptions,
    opts: &super::EvalOptions,
    progress: impl FnMut(usize, usize),
) -> Result<FindingsReport> {
    let meta = predictor.meta();
    let f = meta
        .findings
        .as_ref()
        .ok_or_else(|| Error::invalid("model", "not a multi-label model"))?;
    let mut o = data_opts.clone();
    if o.uncertain.is_none() {
        o.uncertain = Some(
            f.uncertain
                .parse()
                .map_err(|e: String| Error::invalid("model", e))?,
        );
    }
    let ds = crate::data::findings::dataset::open_any(data, &o)?;
    ds.check_findings(&meta.class_names)?;
    ds.test.check_complete("test")?;
    let uncertain = ds.uncertain.as_ref().map(|p| p.to_string());
    let set = super::EvalSet::new(ds.test.samples);
    let out = Outputs::of_with_progress(predictor, &set, opts, progress)?;
    let rules: Vec<super::findings::ThresholdRule> = f
        .thresholds
        .iter()
        .map(|&t| super::findings::ThresholdRule::Typed(t))
        .collect();
    let m = super::findings::evaluate(
        &meta.class_names,
        &out.cases(),
        &rules,
        opts.bootstrap,
        opts.seed,
    );
    let source = Source {
        model: model.to_path_buf(),
        data: data.to_path_buf(),
        split: "test".into(),
        validated_on_test: false,
        validation: None,
        uncertain,
        thresholds_from: f.thresholds_from.clone(),
    };
    Ok(FindingsReport::new(source, &out, m))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::findings::{evaluate, ThresholdRule};

    fn outputs() -> Outputs {
        Outputs {
            probs: vec![vec![0.9, 0.2], vec![0.4, 0.7], vec![0.1, 0.6]],
            // A label that does not count has target 0 as well (`findings::target_of`).
            targets: vec![vec![1.0, 0.0], vec![0.0, 0.0], vec![0.0, 0.0]],
            mask: vec![vec![1.0, 1.0], vec![1.0, 0.0], vec![1.0, 1.0]],
            patients: vec![Some("a".into()), Some("a".into()), Some("b".into())],
            files: vec!["x/1.png".into(), "x/2.png".into(), "x/3.png".into()],
        }
    }

    #[test]
    fn a_report_keeps_its_cases_and_reads_back_as_written() {
        let out = outputs();
        let labels = vec!["Effusion".to_string(), "Mass".to_string()];
        let m = evaluate(
            &labels,
            &out.cases(),
            &[ThresholdRule::Typed(0.5); 2],
            50,
            1,
        );
        let r = FindingsReport::new(Source::default(), &out, m);
        // Uncertain under "ignore" (mask 0) is written as null, and comes back as mask 0.
        assert_eq!(r.cases[1].truth, vec![Some(false), None]);
        let json = serde_json::to_vec(&r).unwrap();
        assert!(FindingsReport::is_multi_label(&json));
        let back = FindingsReport::from_json(&json, Path::new("r.json")).unwrap();
        assert_eq!(back, r);
        let o = back.outputs();
        assert_eq!(
            (o.targets, o.mask, o.probs),
            (out.targets, out.mask, out.probs)
        );
        assert_eq!(o.files, out.files);
    }

    #[test]
    fn an_earlier_report_without_cases_says_how_to_get_one() {
        let out = outputs();
        let labels = vec!["Effusion".to_string(), "Mass".to_string()];
        let m = evaluate(&labels, &out.cases(), &[ThresholdRule::Youden; 2], 0, 0);
        let old = serde_json::json!({
            "model": "m.safetensors", "data": "d", "split": "test",
            "thresholds_from": "Youden's J on the validation split",
            "n": 3, "loss": 0.5, "metrics": m,
        });
        let bytes = serde_json::to_vec(&old).unwrap();
        assert!(FindingsReport::is_multi_label(&bytes));
        let e = FindingsReport::from_json(&bytes, Path::new("old.json"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("old.json") && e.contains("run `covid-resnet eval"),
            "{e}"
        );
        // A case whose rows do not match the findings is refused by number.
        let mut r = FindingsReport::new(Source::default(), &out, m);
        r.cases[2].probs.pop();
        let e = FindingsReport::from_json(&serde_json::to_vec(&r).unwrap(), Path::new("r.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("case 3") && e.contains("x/3.png"), "{e}");
    }
}
