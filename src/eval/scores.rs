//! What the probabilities themselves say, beyond the argmax confusion matrix: ROC curves
//! and AUC per class (one vs rest) with macro AUC, sensitivity/specificity/PPV/NPV per
//! class at argmax and at an operating point, and calibration (ECE, reliability bins,
//! Brier), each with a 95% interval from the same patient-level bootstrap.
use super::calibration::{brier, ece, reliability, top_label, ReliabilityBin};
use super::metrics::WithCi;
use super::operating::{counts, rates, Binary, OperatingPoint};
use super::roc::{auc, macro_mean, roc_curve, RocCurve};
use super::stats::Resampler;
use crate::infer::predictor::argmax;
use serde::{Deserialize, Serialize};

/// One class's ROC.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassRoc {
    /// The class.
    pub class: String,
    /// Images of the class.
    pub positives: usize,
    /// Images of the other classes.
    pub negatives: usize,
    /// Area under the curve (NaN when the class has no images).
    pub auc: WithCi,
    /// The curve (collinear points dropped).
    pub curve: RocCurve,
    /// The curve's pointwise 95% band: the bootstrap's 2.5th and 97.5th percentiles of the
    /// true positive rate at false positive rates 0, 1/50, …, 1 (empty without resamples).
    #[serde(default)]
    pub band: Vec<[f64; 3]>,
}

/// False positive rates at which the ROC band is given.
pub const BAND_POINTS: usize = 51;

/// The true positive rate of `curve` at false positive rate `x`: linear between the
/// curve's points (the highest where the curve rises vertically at `x`).
pub fn tpr_at(curve: &RocCurve, x: f64) -> f64 {
    let (f, t) = (&curve.fpr, &curve.tpr);
    if f.is_empty() {
        return f64::NAN;
    }
    let mut best = f64::NAN;
    for i in 0..f.len() {
        if f[i] == x {
            best = if best.is_nan() { t[i] } else { best.max(t[i]) };
        } else if i + 1 < f.len() && f[i] < x && x < f[i + 1] {
            let w = (x - f[i]) / (f[i + 1] - f[i]);
            return t[i] + w * (t[i + 1] - t[i]);
        }
    }
    best
}

/// The operating point and what it gives for its class.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AtOperatingPoint {
    /// The rule.
    pub point: OperatingPoint,
    /// Its class against the rest under the rule.
    pub binary: Binary,
}

/// Metrics of the probabilities.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scores {
    /// What the bootstrap resampled ("patients (… for … images)" or "images").
    pub resampled: String,
    /// Per class, one vs rest.
    pub roc: Vec<ClassRoc>,
    /// Mean AUC over the classes that have images.
    pub macro_auc: WithCi,
    /// Each class against the rest at argmax.
    pub at_argmax: Vec<Binary>,
    /// The operating point, when one is set.
    pub operating: Option<AtOperatingPoint>,
    /// Top-label expected calibration error (15 equal-width bins).
    pub ece: WithCi,
    /// Multi-class Brier score (0 best, 2 worst).
    pub brier: WithCi,
    /// The reliability diagram's bins.
    pub reliability: Vec<ReliabilityBin>,
}

/// Inputs of [`Scores::compute`].
pub struct ScoreInput<'a> {
    /// Class names.
    pub classes: &'a [String],
    /// True class of each case.
    pub actual: &'a [usize],
    /// Probability rows.
    pub probs: &'a [&'a [f32]],
    /// How cases are resampled.
    pub resampler: &'a Resampler,
    /// Resamples (0: no bootstrap intervals).
    pub bootstrap: usize,
    /// Seed.
    pub seed: u64,
}

impl Scores {
    /// Computes everything, the operating point's figures when `op` is given.
    pub fn compute(inp: &ScoreInput<'_>, op: Option<OperatingPoint>) -> Self {
        let mut s = Self::without_operating_point(inp);
        s.operating = op.map(|o| Self::operating(inp, o));
        s
    }

    /// The figures at operating point `op` (the rest of the scores do not depend on it).
    pub fn operating(inp: &ScoreInput<'_>, op: OperatingPoint) -> AtOperatingPoint {
        let pred: Vec<usize> = inp.probs.iter().map(|p| op.decide(p)).collect();
        let mut samples: [Vec<f64>; 4] = Default::default();
        inp.resampler.each(inp.bootstrap, inp.seed, |idx| {
            for (s, v) in samples
                .iter_mut()
                .zip(rates(counts(op.class, inp.actual, &pred, idx)))
            {
                s.push(v);
            }
        });
        AtOperatingPoint {
            point: op,
            binary: Binary::new(inp.classes, op.class, inp.actual, &pred, &mut samples),
        }
    }

    fn without_operating_point(inp: &ScoreInput<'_>) -> Self {
        let k = inp.classes.len();
        let (actual, probs) = (inp.actual, inp.probs);
        let argmax_pred: Vec<usize> = probs.iter().map(|p| argmax(p)).collect();
        let pos: Vec<Vec<bool>> = (0..k)
            .map(|c| actual.iter().map(|&a| a == c).collect())
            .collect();
        let score: Vec<Vec<f64>> = (0..k)
            .map(|c| probs.iter().map(|p| p[c] as f64).collect())
            .collect();
        // Statistic vector: k AUCs, macro AUC, 4k argmax rates, ECE, Brier, k ROC bands.
        let stats = |idx: &[usize]| -> Vec<f64> {
            let sub_a: Vec<usize> = idx.iter().map(|&i| actual[i]).collect();
            let sub_p: Vec<&[f32]> = idx.iter().map(|&i| probs[i]).collect();
            let aucs: Vec<f64> = (0..k)
                .map(|c| {
                    let p: Vec<bool> = idx.iter().map(|&i| pos[c][i]).collect();
                    let s: Vec<f64> = idx.iter().map(|&i| score[c][i]).collect();
                    auc(&p, &s)
                })
                .collect();
            let mut v = aucs.clone();
            v.push(macro_mean(&aucs));
            for c in 0..k {
                v.extend(rates(counts(c, actual, &argmax_pred, idx)));
            }
            let (conf, ok) = top_label(&sub_a, &sub_p);
            v.push(ece(&reliability(&conf, &ok)));
            v.push(brier(&sub_a, &sub_p));
            for c in 0..k {
                let p: Vec<bool> = idx.iter().map(|&i| pos[c][i]).collect();
                let s: Vec<f64> = idx.iter().map(|&i| score[c][i]).collect();
                let curve = roc_curve(&p, &s, false);
                v.extend(
                    (0..BAND_POINTS).map(|j| tpr_at(&curve, j as f64 / (BAND_POINTS - 1) as f64)),
                );
            }
            v
        };
        let all: Vec<usize> = (0..actual.len()).collect();
        let point = stats(&all);
        let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(inp.bootstrap); point.len()];
        inp.resampler.each(inp.bootstrap, inp.seed, |idx| {
            for (s, v) in samples.iter_mut().zip(stats(idx)) {
                s.push(v);
            }
        });
        let mut take4 = |at: usize| -> [Vec<f64>; 4] {
            std::array::from_fn(|j| std::mem::take(&mut samples[at + j]))
        };
        let at_argmax: Vec<Binary> = (0..k)
            .map(|c| {
                let mut s = take4(k + 1 + 4 * c);
                Binary::new(inp.classes, c, actual, &argmax_pred, &mut s)
            })
            .collect();
        let (conf, ok) = top_label(actual, probs);
        let tail = k + 1 + 4 * k;
        Self {
            resampled: inp.resampler.describe(),
            roc: (0..k)
                .map(|c| {
                    let positives = pos[c].iter().filter(|&&p| p).count();
                    ClassRoc {
                        class: inp.classes[c].clone(),
                        positives,
                        negatives: actual.len() - positives,
                        auc: WithCi::bootstrap(point[c], &mut samples[c]),
                        curve: roc_curve(&pos[c], &score[c], true),
                        band: if inp.bootstrap == 0 {
                            Vec::new()
                        } else {
                            (0..BAND_POINTS)
                                .map(|j| {
                                    let at = tail + 2 + c * BAND_POINTS + j;
                                    let w = WithCi::bootstrap(point[at], &mut samples[at]);
                                    [j as f64 / (BAND_POINTS - 1) as f64, w.lo, w.hi]
                                })
                                .filter(|p| p.iter().all(|v| v.is_finite()))
                                .collect()
                        },
                    }
                })
                .collect(),
            macro_auc: WithCi::bootstrap(point[k], &mut samples[k]),
            at_argmax,
            operating: None,
            ece: WithCi::bootstrap(point[tail], &mut samples[tail]),
            brier: WithCi::bootstrap(point[tail + 1], &mut samples[tail + 1]),
            reliability: reliability(&conf, &ok),
        }
    }
}

/// A percentage with its interval to one decimal, `†` marking a Wilson interval.
pub fn cell(w: &WithCi) -> String {
    cell_to(w, 1)
}

/// A percentage with its interval to `decimals` places, `†` marking a Wilson interval.
pub fn cell_to(w: &WithCi, decimals: usize) -> String {
    let mark = if w.method == super::stats::CiMethod::Wilson {
        " †"
    } else {
        ""
    };
    format!("{}{mark}", crate::fmt::pct_ci(w, decimals))
}

impl Scores {
    /// The Markdown sections of these figures.
    pub fn markdown(&self) -> String {
        use std::fmt::Write;
        let mut o = String::new();
        let _ = writeln!(
            o,
            "\n## Discrimination, one class against the rest\n\nAUC from the probabilities; \
             sensitivity, specificity, PPV and NPV at argmax.\n"
        );
        let _ = writeln!(
            o,
            "| class | n | AUC % | sensitivity % | specificity % | PPV % | NPV % |\n\
             |---|---|---|---|---|---|---|"
        );
        for (r, b) in self.roc.iter().zip(&self.at_argmax) {
            let _ = writeln!(
                o,
                "| {} | {} | {} | {} | {} | {} | {} |",
                r.class,
                r.positives,
                cell(&r.auc),
                cell(&b.sensitivity),
                cell(&b.specificity),
                cell(&b.ppv),
                cell(&b.npv)
            );
        }
        let _ = writeln!(o, "\nMacro AUC {}.", cell(&self.macro_auc));
        if let Some(op) = &self.operating {
            let b = &op.binary;
            let _ = writeln!(
                o,
                "\n## Operating point\n\nPredict {} when its probability ≥ {} (else the most \
                 probable other class): TP {}, FP {}, TN {}, FN {}; sensitivity {}, \
                 specificity {}, PPV {}, NPV {}.",
                b.class,
                crate::fmt::number(op.point.threshold),
                b.tp,
                b.fp,
                b.tn,
                b.fn_,
                cell(&b.sensitivity),
                cell(&b.specificity),
                cell(&b.ppv),
                cell(&b.npv)
            );
        }
        let _ = writeln!(
            o,
            "\n## Calibration\n\nExpected calibration error (top label, 15 equal-width bins) \
             {}; Brier score {:.4} ({:.4}–{:.4}; 0 best, 2 worst).\n\n\
             | confidence | n | mean confidence % | accuracy % |\n|---|---|---|---|",
            cell(&self.ece),
            self.brier.value,
            self.brier.lo,
            self.brier.hi
        );
        for b in &self.reliability {
            let _ = writeln!(
                o,
                "| {:.2}–{:.2} | {} | {:.1} | {:.1} |",
                b.lo,
                b.hi.min(1.0),
                b.count,
                100.0 * b.confidence,
                100.0 * b.accuracy
            );
        }
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from scikit-learn 1.9.1:
    /// ```python
    /// import numpy as np
    /// from sklearn.metrics import roc_auc_score
    /// P = np.array([[.6,.3,.1],[.2,.5,.3],[.1,.2,.7],[.4,.4,.2],[.3,.3,.4],[.5,.1,.4],
    ///               [.2,.6,.2],[.1,.1,.8],[.7,.2,.1]], dtype=np.float32).astype(np.float64)
    /// y = [0, 1, 2, 1, 0, 2, 1, 2, 0]
    /// roc_auc_score(y, P, multi_class="ovr", average=None)     # [0.888888888888889, 1.0,
    ///                                                           #  0.9722222222222223]
    /// roc_auc_score(y, P, multi_class="ovr", average="macro")  # 0.9537037037037037
    /// ```
    #[test]
    fn aucs_and_rates_match_scikit_learn() {
        let rows: [[f32; 3]; 9] = [
            [0.6, 0.3, 0.1],
            [0.2, 0.5, 0.3],
            [0.1, 0.2, 0.7],
            [0.4, 0.4, 0.2],
            [0.3, 0.3, 0.4],
            [0.5, 0.1, 0.4],
            [0.2, 0.6, 0.2],
            [0.1, 0.1, 0.8],
            [0.7, 0.2, 0.1],
        ];
        let probs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let y = [0, 1, 2, 1, 0, 2, 1, 2, 0];
        let classes: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let r = Resampler::by_case(9);
        let inp = ScoreInput {
            classes: &classes,
            actual: &y,
            probs: &probs,
            resampler: &r,
            bootstrap: 200,
            seed: 5,
        };
        let s = Scores::compute(
            &inp,
            Some(OperatingPoint {
                class: 2,
                threshold: 0.4,
            }),
        );
        for (c, want) in AUC_SKLEARN.iter().enumerate() {
            assert!(
                (s.roc[c].auc.value - want).abs() < 1e-9,
                "{c}: {:?}",
                s.roc[c]
            );
        }
        assert!((s.macro_auc.value - 0.9537037037037037).abs() < 1e-9);
        // Class c at p >= 0.4: cases 2, 4, 5, 7 predicted c; actual c are 2, 5, 7.
        let b = &s.operating.as_ref().unwrap().binary;
        assert_eq!((b.tp, b.fp, b.tn, b.fn_), (3, 1, 5, 0));
        // 3 of 3: few events, a Wilson interval.
        assert_eq!(b.sensitivity.method, super::super::stats::CiMethod::Wilson);
        assert!(s.macro_auc.lo <= s.macro_auc.value && s.macro_auc.value <= s.macro_auc.hi);
        // Seeded: the same figures again.
        assert_eq!(
            s,
            Scores::compute(&inp, s.operating.as_ref().map(|o| o.point))
        );
    }
    const AUC_SKLEARN: [f64; 3] = [0.888888888888889, 1.0, 0.9722222222222223];
}
