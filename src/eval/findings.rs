//! Metrics of findings (multi-label models): per label the ROC curve and AUC over the counted
//! cases (mask 1: an uncertain label under `ignore` counts for neither), an operating
//! threshold with its 2x2 table and sensitivity, specificity, PPV and NPV, all with
//! intervals from the bootstrap over patients; the mean AUC over labels and over CheXpert's
//! five competition labels. The same AUC, ROC, threshold rules and bootstrap as the
//! single-label review (`roc`, `operating`, `stats`).
use super::metrics::WithCi;
use super::operating::{counts, threshold_for_sensitivity, youden_threshold, Binary};
use super::roc::{auc, macro_mean, roc_curve, RocCurve};
use super::stats::Resampler;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// How a label's threshold is set: "a finding when its probability is at least t".
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "rule", content = "value")]
pub enum ThresholdRule {
    /// This threshold.
    Typed(f64),
    /// The one that maximises Youden's J on these cases.
    Youden,
    /// The highest that reaches this sensitivity (a fraction) on these cases.
    Sensitivity(f64),
}

impl Default for ThresholdRule {
    fn default() -> Self {
        ThresholdRule::Typed(0.5)
    }
}

impl FromStr for ThresholdRule {
    type Err = String;
    /// `0.35`, `youden` or `sensitivity=0.9`.
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let frac = |v: &str| -> Result<f64, String> {
            v.trim()
                .parse::<f64>()
                .ok()
                .filter(|x| (0.0..=1.0).contains(x))
                .ok_or_else(|| format!("{v:?}: expected a number from 0 to 1"))
        };
        if s.eq_ignore_ascii_case("youden") {
            Ok(ThresholdRule::Youden)
        } else if let Some(v) = s.strip_prefix("sensitivity=") {
            Ok(ThresholdRule::Sensitivity(frac(v)?))
        } else {
            frac(s)
                .map(ThresholdRule::Typed)
                .map_err(|e| format!("threshold {e}, youden, or sensitivity=FRACTION"))
        }
    }
}

impl fmt::Display for ThresholdRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ThresholdRule::Typed(t) => write!(f, "{t}"),
            ThresholdRule::Youden => f.write_str("youden"),
            ThresholdRule::Sensitivity(s) => write!(f, "sensitivity={s}"),
        }
    }
}

/// The cases evaluated: one row a case, one column a label.
pub struct Cases<'a> {
    /// Targets (0 or 1).
    pub targets: &'a [Vec<f32>],
    /// 1 where the target counts.
    pub mask: &'a [Vec<f32>],
    /// The model's probabilities.
    pub probs: &'a [Vec<f32>],
    /// Each case's patient (None: its own).
    pub patients: &'a [Option<String>],
}

/// Which cell of a label's 2x2 table a case is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Cell {
    /// Finding present, predicted.
    TruePositive,
    /// Absent, predicted.
    FalsePositive,
    /// Absent, not predicted.
    TrueNegative,
    /// Present, missed.
    FalseNegative,
}

impl Cases<'_> {
    /// The cell of case `i` for `label` at `threshold`; None when the label does not count
    /// for the case.
    pub fn cell(&self, i: usize, label: usize, threshold: f64) -> Option<Cell> {
        if self.mask[i][label] == 0.0 {
            return None;
        }
        let (y, p) = (
            self.targets[i][label] >= 0.5,
            self.probs[i][label] as f64 >= threshold,
        );
        Some(match (y, p) {
            (true, true) => Cell::TruePositive,
            (false, true) => Cell::FalsePositive,
            (false, false) => Cell::TrueNegative,
            (true, false) => Cell::FalseNegative,
        })
    }

    /// The cases in `cell` of `label` at `threshold` (what a click on the table opens).
    pub fn in_cell(&self, label: usize, threshold: f64, cell: Cell) -> Vec<usize> {
        (0..self.targets.len())
            .filter(|&i| self.cell(i, label, threshold) == Some(cell))
            .collect()
    }

    /// Counted cases of `label` among `idx`: (positive?, score).
    fn counted(&self, label: usize, idx: &[usize]) -> (Vec<bool>, Vec<f64>) {
        idx.iter()
            .filter(|&&i| self.mask[i][label] != 0.0)
            .map(|&i| (self.targets[i][label] >= 0.5, self.probs[i][label] as f64))
            .unzip()
    }
}

/// One label's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelMetrics {
    /// The label.
    pub label: String,
    /// Cases that count for it.
    pub counted: usize,
    /// Of those, positives.
    pub positives: usize,
    /// AUC over the counted cases.
    pub auc: WithCi,
    /// ROC curve (scikit-learn's `roc_curve`, intermediate points dropped).
    pub roc: RocCurve,
    /// How the threshold was set.
    pub rule: ThresholdRule,
    /// The threshold (NaN when the rule has no answer, e.g. no positives).
    #[serde(with = "super::metrics::nullable")]
    pub threshold: f64,
    /// The finding against its absence at the threshold: the 2x2 table and its four rates
    /// (as the single-label review's one class against the rest).
    pub table: Binary,
}

/// Every label's figures and the means.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FindingsMetrics {
    /// Per label, in the model's order.
    pub labels: Vec<LabelMetrics>,
    /// Mean AUC over the labels that have counted positives and negatives.
    pub mean_auc: WithCi,
    /// Mean AUC over CheXpert's five competition labels, when the model has all five.
    pub competition_auc: Option<WithCi>,
    /// What the bootstrap resampled ("patients (...)" or "images").
    pub resampled: String,
    /// Bootstrap resamples.
    pub bootstrap: usize,
}

/// The figures of `cases` for `labels`, each label's threshold by `rules` (one a label),
/// intervals from `bootstrap` resamples of patients from `seed`.
pub fn evaluate(
    labels: &[String],
    cases: &Cases<'_>,
    rules: &[ThresholdRule],
    bootstrap: usize,
    seed: u64,
) -> FindingsMetrics {
    assert_eq!(rules.len(), labels.len(), "one threshold rule a label");
    let n = cases.targets.len();
    let all: Vec<usize> = (0..n).collect();
    let competition: Option<Vec<usize>> = crate::data::findings::chexpert::COMPETITION
        .iter()
        .map(|c| labels.iter().position(|l| l == c))
        .collect();
    let thresholds: Vec<f64> = (0..labels.len())
        .map(|l| {
            let (pos, s) = cases.counted(l, &all);
            match rules[l] {
                ThresholdRule::Typed(t) => Some(t),
                ThresholdRule::Youden => youden_threshold(&roc_curve(&pos, &s, true)),
                ThresholdRule::Sensitivity(x) => threshold_for_sensitivity(&pos, &s, x),
            }
            .unwrap_or(f64::NAN)
        })
        .collect();
    // Counts over idx: [tp, fp, tn, fn] of label l, as `operating::counts` of "actual" and
    // "predicted" classes (1 = finding) over the counted cases.
    let table = |l: usize, idx: &[usize]| -> [usize; 4] {
        let (pos, s) = cases.counted(l, idx);
        let actual: Vec<usize> = pos.iter().map(|&p| p as usize).collect();
        let predicted: Vec<usize> = s.iter().map(|&v| (v >= thresholds[l]) as usize).collect();
        counts(
            1,
            &actual,
            &predicted,
            &(0..actual.len()).collect::<Vec<_>>(),
        )
    };
    let aucs_of = |idx: &[usize]| -> Vec<f64> {
        (0..labels.len())
            .map(|l| {
                let (pos, s) = cases.counted(l, idx);
                auc(&pos, &s)
            })
            .collect()
    };
    let resampler = Resampler::by_key(cases.patients);
    let mut auc_samples = vec![Vec::new(); labels.len()];
    let mut rate_samples: Vec<[Vec<f64>; 4]> = vec![Default::default(); labels.len()];
    let (mut mean_samples, mut comp_samples) = (Vec::new(), Vec::new());
    resampler.each(bootstrap, seed, |idx| {
        let a = aucs_of(idx);
        for (l, v) in a.iter().enumerate() {
            if v.is_finite() {
                auc_samples[l].push(*v);
            }
            let r = super::operating::rates(table(l, idx));
            for (k, x) in r.iter().enumerate() {
                if x.is_finite() {
                    rate_samples[l][k].push(*x);
                }
            }
        }
        let m = macro_mean(&a);
        if m.is_finite() {
            mean_samples.push(m);
        }
        if let Some(c) = &competition {
            let m = macro_mean(&c.iter().map(|&l| a[l]).collect::<Vec<_>>());
            if m.is_finite() {
                comp_samples.push(m);
            }
        }
    });
    let full = aucs_of(&all);
    let per_label = labels
        .iter()
        .enumerate()
        .map(|(l, name)| {
            let (pos, s) = cases.counted(l, &all);
            let [tp, fp, tn, fn_] = table(l, &all);
            let rs = &mut rate_samples[l];
            LabelMetrics {
                label: name.clone(),
                counted: pos.len(),
                positives: pos.iter().filter(|&&p| p).count(),
                auc: WithCi::bootstrap(full[l], &mut auc_samples[l]),
                roc: roc_curve(&pos, &s, true),
                rule: rules[l],
                threshold: thresholds[l],
                table: Binary {
                    class: name.clone(),
                    tp,
                    fp,
                    tn,
                    fn_,
                    sensitivity: WithCi::proportion(tp, tp + fn_, &mut rs[0]),
                    specificity: WithCi::proportion(tn, tn + fp, &mut rs[1]),
                    ppv: WithCi::proportion(tp, tp + fp, &mut rs[2]),
                    npv: WithCi::proportion(tn, tn + fn_, &mut rs[3]),
                },
            }
        })
        .collect();
    FindingsMetrics {
        labels: per_label,
        mean_auc: WithCi::bootstrap(macro_mean(&full), &mut mean_samples),
        competition_auc: competition.map(|c| {
            WithCi::bootstrap(
                macro_mean(&c.iter().map(|&l| full[l]).collect::<Vec<_>>()),
                &mut comp_samples,
            )
        }),
        resampled: resampler.describe(),
        bootstrap,
    }
}

/// A multi-label model on a set of samples: each case's probabilities, targets and mask
/// (from the samples' finding codes) and patient, ready for [`evaluate`].
pub struct Outputs {
    /// Probabilities, one row a case.
    pub probs: Vec<Vec<f32>>,
    /// Targets.
    pub targets: Vec<Vec<f32>>,
    /// Mask.
    pub mask: Vec<Vec<f32>>,
    /// Patients.
    pub patients: Vec<Option<String>>,
    /// The image files.
    pub files: Vec<std::path::PathBuf>,
}

impl Outputs {
    /// Runs `predictor` (a multi-label model) over `set`, whose samples carry findings.
    pub fn of(
        predictor: &crate::infer::Predictor,
        set: &super::EvalSet,
        opts: &super::EvalOptions,
    ) -> crate::Result<Self> {
        Self::of_with_progress(predictor, set, opts, |_, _| {})
    }

    /// [`Self::of`] with `progress(done, total)` after each batch.
    pub fn of_with_progress(
        predictor: &crate::infer::Predictor,
        set: &super::EvalSet,
        opts: &super::EvalOptions,
        progress: impl FnMut(usize, usize),
    ) -> crate::Result<Self> {
        let mut o = Outputs {
            probs: Vec::new(),
            targets: Vec::new(),
            mask: Vec::new(),
            patients: Vec::new(),
            files: Vec::new(),
        };
        set.batches(predictor, opts, progress, |chunk, planes| {
            o.probs.extend(predictor.finding_probs_planes(planes)?);
            for s in chunk {
                let codes = s.findings.as_deref().ok_or_else(|| {
                    crate::Error::invalid(
                        "data set",
                        format!(
                            "{} has no findings: a multi-label model needs a multi-label data set",
                            crate::files::shown(&s.path)
                        ),
                    )
                })?;
                let (t, m): (Vec<f32>, Vec<f32>) = codes
                    .iter()
                    .map(|&c| crate::data::findings::target_of(c))
                    .unzip();
                o.targets.push(t);
                o.mask.push(m);
                o.patients.push(Some(s.patient.clone()));
                o.files.push(s.path.clone());
            }
            Ok(())
        })?;
        Ok(o)
    }

    /// The same cases with finding `label` alone (to figure one finding without the others).
    pub fn only(&self, label: usize) -> Outputs {
        let col =
            |rows: &[Vec<f32>]| -> Vec<Vec<f32>> { rows.iter().map(|r| vec![r[label]]).collect() };
        Outputs {
            probs: col(&self.probs),
            targets: col(&self.targets),
            mask: col(&self.mask),
            patients: self.patients.clone(),
            files: self.files.clone(),
        }
    }

    /// The cases as [`evaluate`] reads them.
    pub fn cases(&self) -> Cases<'_> {
        Cases {
            targets: &self.targets,
            mask: &self.mask,
            probs: &self.probs,
            patients: &self.patients,
        }
    }

    /// Mean binary cross-entropy of the probabilities over the counted elements (no
    /// positive weights; probabilities clamped to [1e-7, 1 - 1e-7]); NaN when none counts.
    pub fn loss(&self) -> f64 {
        let (mut sum, mut n) = (0.0f64, 0.0f64);
        for ((p, t), m) in self.probs.iter().zip(&self.targets).zip(&self.mask) {
            for ((&p, &t), &m) in p.iter().zip(t).zip(m) {
                if m > 0.0 {
                    let p = (p as f64).clamp(1e-7, 1.0 - 1e-7);
                    sum -= t as f64 * p.ln() + (1.0 - t as f64) * (1.0 - p).ln();
                    n += 1.0;
                }
            }
        }
        sum / n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 40 cases, 3 labels, some masked; the same numbers as this Python (numpy 2,
    /// scikit-learn 1.9.1):
    /// ```python
    /// n, L = 40, 3; i = np.arange(n)[:, None]; l = np.arange(L)[None, :]
    /// p = ((i * 37 + l * 11) % 100) / 100 + 0.002 * l
    /// y = ((((i * 13 + l * 7) % 5) < 2) | ((i * 37 + l * 11) % 100 > 70)).astype(int)
    /// m = ((i + l) % 9 != 0)
    /// [roc_auc_score(y[m[:, k], k], p[m[:, k], k]) for k in range(L)]
    /// #  [0.8233333333333334, 0.692063492063492, 0.7593749999999999], mean 0.7582572751322751
    /// f, t, th = roc_curve(y[m[:, k], k], p[m[:, k], k]); th[np.argmax(t - f)]
    /// #  Youden thresholds 0.69, 0.772, 0.654
    /// confusion_matrix(y[m[:, k], k], p[m[:, k], k] >= thr).ravel()  # tn, fp, fn, tp
    /// ```
    type Rows = Vec<Vec<f32>>;

    fn data() -> (Rows, Rows, Rows) {
        let (mut t, mut m, mut p) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..40usize {
            let (mut tr, mut mr, mut pr) = (Vec::new(), Vec::new(), Vec::new());
            for l in 0..3usize {
                let q = (i * 37 + l * 11) % 100;
                pr.push((q as f64 / 100.0 + 0.002 * l as f64) as f32);
                tr.push(if (i * 13 + l * 7) % 5 < 2 || q > 70 {
                    1.0
                } else {
                    0.0
                });
                mr.push(if (i + l) % 9 != 0 { 1.0 } else { 0.0 });
            }
            t.push(tr);
            m.push(mr);
            p.push(pr);
        }
        (t, m, p)
    }

    #[test]
    fn per_label_auc_thresholds_and_tables_are_scikit_learns() {
        let (t, m, p) = data();
        let patients: Vec<Option<String>> = (0..40).map(|i| Some(format!("p{}", i / 2))).collect();
        let cases = Cases {
            targets: &t,
            mask: &m,
            probs: &p,
            patients: &patients,
        };
        let labels: Vec<String> = ["A", "B", "C"].map(String::from).to_vec();
        let r = evaluate(&labels, &cases, &[ThresholdRule::Youden; 3], 200, 1);
        let sk_auc = [
            0.823_333_333_333_333_4,
            0.692_063_492_063_492,
            0.759_374_999_999_999_9,
        ];
        let sk_thr = [0.69, 0.772, 0.654];
        // (tp, fp, tn, fn) at the Youden thresholds, counted cases and positives.
        let sk_tab = [
            (12, 0, 15, 8, 35, 20),
            (10, 0, 15, 11, 36, 21),
            (12, 1, 15, 8, 36, 20),
        ];
        for (l, x) in r.labels.iter().enumerate() {
            assert!(
                (x.auc.value - sk_auc[l]).abs() < 1e-12,
                "{l}: {}",
                x.auc.value
            );
            assert!(
                (x.threshold - sk_thr[l]).abs() < 1e-6,
                "{l}: {}",
                x.threshold
            );
            let (tp, fp, tn, fn_, counted, pos) = sk_tab[l];
            assert_eq!(
                (
                    x.table.tp,
                    x.table.fp,
                    x.table.tn,
                    x.table.fn_,
                    x.counted,
                    x.positives
                ),
                (tp, fp, tn, fn_, counted, pos)
            );
            assert!((x.table.sensitivity.value - tp as f64 / (tp + fn_) as f64).abs() < 1e-12);
            assert!(
                x.auc.lo <= x.auc.value && x.auc.value <= x.auc.hi,
                "{:?}",
                x.auc
            );
            // A cell of the table opens exactly its cases.
            assert_eq!(
                cases.in_cell(l, x.threshold, Cell::FalseNegative).len(),
                fn_
            );
            assert_eq!(cases.in_cell(l, x.threshold, Cell::TruePositive).len(), tp);
        }
        assert!((r.mean_auc.value - 0.758_257_275_132_275_1).abs() < 1e-12);
        assert_eq!(r.competition_auc, None);
        assert!(
            r.resampled.starts_with("patients (20 for 40"),
            "{}",
            r.resampled
        );
        // A typed threshold of 0.5: scikit-learn's confusion matrices at p >= 0.5.
        let r = evaluate(&labels, &cases, &[ThresholdRule::Typed(0.5); 3], 0, 1);
        let at_half = [(14, 3, 12, 6), (12, 7, 8, 9), (14, 5, 11, 6)];
        for (x, (tp, fp, tn, fn_)) in r.labels.iter().zip(at_half) {
            assert_eq!(
                (x.table.tp, x.table.fp, x.table.tn, x.table.fn_),
                (tp, fp, tn, fn_)
            );
        }
    }

    #[test]
    fn the_competition_mean_covers_the_five_chexpert_labels() {
        let (t, m, p) = data();
        let five = |row: &Vec<f32>| -> Vec<f32> { (0..5).map(|k| row[k % 3]).collect() };
        let (t5, m5, p5): (Vec<_>, Vec<_>, Vec<_>) = (
            t.iter().map(five).collect(),
            m.iter().map(five).collect(),
            p.iter().map(five).collect(),
        );
        let mut labels: Vec<String> = crate::data::findings::chexpert::COMPETITION
            .map(String::from)
            .to_vec();
        labels.reverse();
        let patients = vec![None; 40];
        let cases = Cases {
            targets: &t5,
            mask: &m5,
            probs: &p5,
            patients: &patients,
        };
        let r = evaluate(&labels, &cases, &[ThresholdRule::default(); 5], 50, 2);
        let c = r.competition_auc.unwrap();
        // Columns are labels 0,1,2,0,1 of the data above: (2a + 2b + c) / 5.
        let want =
            (2.0 * 0.823_333_333_333_333_4 + 2.0 * 0.692_063_492_063_492 + 0.759_374_999_999_999_9)
                / 5.0;
        assert!((c.value - want).abs() < 1e-12 && (r.mean_auc.value - want).abs() < 1e-12);
        assert_eq!(r.resampled, "images");
    }

    #[test]
    fn threshold_rules_parse_and_print() {
        for s in ["0.35", "youden", "sensitivity=0.9"] {
            assert_eq!(s.parse::<ThresholdRule>().unwrap().to_string(), s);
        }
        assert!("1.5"
            .parse::<ThresholdRule>()
            .unwrap_err()
            .contains("\"1.5\""));
        assert!("sensitivity=x".parse::<ThresholdRule>().is_err());
    }
}
