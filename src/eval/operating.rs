//! An operating point for one class of interest — "predict this class when its probability
//! is at least t, else the most probable other class" — the thresholds that reach a target
//! sensitivity or maximise Youden's J, and sensitivity, specificity, PPV and NPV of one
//! class against the rest.
use super::metrics::WithCi;
use super::roc::RocCurve;
pub use crate::infer::decision::{default_focus, parse_class_value, OperatingPoint};
use serde::{Deserialize, Serialize};

/// The highest threshold whose sensitivity reaches `target` (a fraction): the score of the
/// ⌈target·P⌉-th highest-scoring positive. `None` without positives.
pub fn threshold_for_sensitivity(positive: &[bool], scores: &[f64], target: f64) -> Option<f64> {
    let mut pos: Vec<f64> = positive
        .iter()
        .zip(scores)
        .filter(|(p, _)| **p)
        .map(|(_, &s)| s)
        .collect();
    if pos.is_empty() {
        return None;
    }
    pos.sort_by(|a, b| b.total_cmp(a));
    let need = ((target.clamp(0.0, 1.0) * pos.len() as f64) - 1e-9)
        .ceil()
        .max(1.0) as usize;
    Some(pos[need.min(pos.len()) - 1])
}

/// The threshold on `curve` that maximises Youden's J = sensitivity + specificity − 1 (the
/// highest such threshold on ties); `None` for an empty curve.
pub fn youden_threshold(curve: &RocCurve) -> Option<f64> {
    let mut best: Option<(f64, f64)> = None;
    for ((f, t), th) in curve.fpr.iter().zip(&curve.tpr).zip(&curve.thresholds) {
        if !th.is_finite() {
            continue;
        }
        let j = t - f;
        if best.is_none_or(|(bj, _)| j > bj) {
            best = Some((j, *th));
        }
    }
    best.map(|(_, th)| th.min(1.0))
}

/// One class against the rest: counts and the four rates with intervals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binary {
    /// The class.
    pub class: String,
    /// True positives.
    pub tp: usize,
    /// False positives.
    pub fp: usize,
    /// True negatives.
    pub tn: usize,
    /// False negatives.
    pub fn_: usize,
    /// TP / (TP + FN).
    pub sensitivity: WithCi,
    /// TN / (TN + FP).
    pub specificity: WithCi,
    /// TP / (TP + FP).
    pub ppv: WithCi,
    /// TN / (TN + FN).
    pub npv: WithCi,
}

/// Counts (tp, fp, tn, fn) of class `c` over the cases `idx`.
pub fn counts(c: usize, actual: &[usize], predicted: &[usize], idx: &[usize]) -> [usize; 4] {
    let mut n = [0usize; 4];
    for &i in idx {
        let (a, p) = (actual[i] == c, predicted[i] == c);
        n[match (a, p) {
            (true, true) => 0,
            (false, true) => 1,
            (false, false) => 2,
            (true, false) => 3,
        }] += 1;
    }
    n
}

/// The four rates of counts [tp, fp, tn, fn] (NaN where undefined).
pub fn rates(n: [usize; 4]) -> [f64; 4] {
    let r = |x: usize, y: usize| x as f64 / (x + y) as f64;
    [r(n[0], n[3]), r(n[2], n[1]), r(n[0], n[1]), r(n[2], n[3])]
}

impl Binary {
    /// Class `c` of `classes` against the rest, with `samples[k]` the bootstrap values of
    /// rate k (sensitivity, specificity, PPV, NPV).
    pub fn new(
        classes: &[String],
        c: usize,
        actual: &[usize],
        predicted: &[usize],
        samples: &mut [Vec<f64>; 4],
    ) -> Self {
        let all: Vec<usize> = (0..actual.len()).collect();
        let [tp, fp, tn, fn_] = counts(c, actual, predicted, &all);
        Self {
            class: classes[c].clone(),
            tp,
            fp,
            tn,
            fn_,
            sensitivity: WithCi::proportion(tp, tp + fn_, &mut samples[0]),
            specificity: WithCi::proportion(tn, tn + fp, &mut samples[1]),
            ppv: WithCi::proportion(tp, tp + fp, &mut samples[2]),
            npv: WithCi::proportion(tn, tn + fn_, &mut samples[3]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_and_its_thresholds() {
        let op = OperatingPoint {
            class: 3,
            threshold: 0.2,
        };
        assert_eq!(op.decide(&[0.5, 0.2, 0.05, 0.25]), 3);
        assert_eq!(op.decide(&[0.5, 0.2, 0.15, 0.15]), 0);
        assert_eq!(op.decide(&[0.1, 0.2, 0.6, 0.1]), 2);
        // Sensitivity 3/4 needs the third-highest positive (0.4); 1.0 needs the lowest.
        let pos = [true, false, true, true, false, true];
        let s = [0.9, 0.35, 0.4, 0.6, 0.3, 0.1];
        assert_eq!(threshold_for_sensitivity(&pos, &s, 0.75), Some(0.4));
        assert_eq!(threshold_for_sensitivity(&pos, &s, 1.0), Some(0.1));
        assert_eq!(threshold_for_sensitivity(&pos, &s, 0.5), Some(0.6));
        assert_eq!(threshold_for_sensitivity(&[false], &[0.3], 0.9), None);
        // Youden: at 0.4 the sensitivity is 3/4 and the specificity 1 (J = 0.75), the best.
        let curve = super::super::roc::roc_curve(&pos, &s, false);
        assert_eq!(youden_threshold(&curve), Some(0.4));
        let names: Vec<String> = ["Normal", "COVID-19"].map(String::from).to_vec();
        assert_eq!(
            OperatingPoint::parse("covid-19=0.35", &names),
            Ok(OperatingPoint {
                class: 1,
                threshold: 0.35
            })
        );
        assert!(OperatingPoint::parse("Viral=0.3", &names)
            .unwrap_err()
            .contains("Normal, COVID-19"));
        assert!(OperatingPoint::parse("Normal=1.5", &names)
            .unwrap_err()
            .contains("outside"));
    }

    #[test]
    fn rates_of_one_class() {
        // actual 1 1 1 0 0 0 0, predicted 1 1 0 1 0 0 0: tp 2, fn 1, fp 1, tn 3.
        let a = [1, 1, 1, 0, 0, 0, 0];
        let p = [1, 1, 0, 1, 0, 0, 0];
        let n = counts(1, &a, &p, &(0..7).collect::<Vec<_>>());
        assert_eq!(n, [2, 1, 3, 1]);
        let r = rates(n);
        assert_eq!(r, [2.0 / 3.0, 3.0 / 4.0, 2.0 / 3.0, 3.0 / 4.0]);
    }
}
