//! One-vs-rest ROC curves and the area under them: the curve as scikit-learn's `roc_curve`
//! builds it (one point per distinct score, collinear points dropped), the area exactly as
//! the Mann-Whitney statistic with ties counted half.
use serde::{Deserialize, Serialize};

/// An ROC curve: false and true positive rates at each threshold ("positive when score ≥
/// threshold"), the first point (0, 0) at an infinite threshold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RocCurve {
    /// False positive rates, ascending.
    pub fpr: Vec<f64>,
    /// True positive rates.
    pub tpr: Vec<f64>,
    /// Thresholds, descending (the first is +inf, written as null in JSON).
    #[serde(with = "infinite_as_null")]
    pub thresholds: Vec<f64>,
}

/// JSON has no infinity: +inf is written as null and null read back as +inf.
mod infinite_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::INFINITY))
            .collect())
    }
}

/// Indices of `scores` from the highest to the lowest score, ties in reverse order of
/// index (as `np.argsort(score, kind="mergesort")[::-1]`).
fn descending(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    idx.reverse();
    idx
}

/// The ROC curve of binary labels `positive` against `scores`, as scikit-learn's
/// `roc_curve(y, score, drop_intermediate=drop)`. Empty when either class is missing.
pub fn roc_curve(positive: &[bool], scores: &[f64], drop: bool) -> RocCurve {
    let order = descending(scores);
    let (mut tps, mut fps, mut th) = (Vec::new(), Vec::new(), Vec::new());
    let mut tp = 0usize;
    for (k, &i) in order.iter().enumerate() {
        tp += positive[i] as usize;
        let last = k + 1 == order.len() || scores[order[k + 1]] != scores[i];
        if last {
            tps.push(tp as f64);
            fps.push((k + 1 - tp) as f64);
            th.push(scores[i]);
        }
    }
    let (p, n) = (
        tps.last().copied().unwrap_or(0.0),
        fps.last().copied().unwrap_or(0.0),
    );
    if p == 0.0 || n == 0.0 {
        return RocCurve::default();
    }
    let keep: Vec<usize> = if drop && tps.len() > 2 {
        (0..tps.len())
            .filter(|&i| {
                i == 0
                    || i + 1 == tps.len()
                    || fps[i + 1] - 2.0 * fps[i] + fps[i - 1] != 0.0
                    || tps[i + 1] - 2.0 * tps[i] + tps[i - 1] != 0.0
            })
            .collect()
    } else {
        (0..tps.len()).collect()
    };
    let mut c = RocCurve {
        fpr: vec![0.0],
        tpr: vec![0.0],
        thresholds: vec![f64::INFINITY],
    };
    for i in keep {
        c.fpr.push(fps[i] / n);
        c.tpr.push(tps[i] / p);
        c.thresholds.push(th[i]);
    }
    c
}

/// The area under the ROC curve: the probability that a positive scores above a negative,
/// ties counting half (Mann-Whitney U over positives × negatives, from average ranks). NaN
/// when either class is missing.
pub fn auc(positive: &[bool], scores: &[f64]) -> f64 {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    let (mut rank_sum, mut n_pos) = (0.0f64, 0usize);
    let mut k = 0;
    while k < idx.len() {
        let mut j = k;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[k]] {
            j += 1;
        }
        // Ranks k+1 ..= j+1 share their average.
        let avg = (k + j + 2) as f64 / 2.0;
        for &i in &idx[k..=j] {
            if positive[i] {
                rank_sum += avg;
                n_pos += 1;
            }
        }
        k = j + 1;
    }
    let n_neg = scores.len() - n_pos;
    if n_pos == 0 || n_neg == 0 {
        return f64::NAN;
    }
    let np = n_pos as f64;
    (rank_sum - np * (np + 1.0) / 2.0) / (np * n_neg as f64)
}

/// One-vs-rest AUC of every class from labels and per-case probability rows.
pub fn ovr_aucs(k: usize, actual: &[usize], probs: &[&[f32]]) -> Vec<f64> {
    (0..k)
        .map(|c| {
            let pos: Vec<bool> = actual.iter().map(|&a| a == c).collect();
            let s: Vec<f64> = probs.iter().map(|p| p[c] as f64).collect();
            auc(&pos, &s)
        })
        .collect()
}

/// The mean of the defined values (scikit-learn's macro average over classes that have
/// both positives and negatives); NaN when none is defined.
pub fn macro_mean(values: &[f64]) -> f64 {
    let d: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
    if d.is_empty() {
        f64::NAN
    } else {
        d.iter().sum::<f64>() / d.len() as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from scikit-learn 1.9.1:
    /// ```python
    /// import numpy as np
    /// from sklearn.metrics import roc_auc_score, roc_curve
    /// y = [1, 0, 1, 1, 0, 0, 1, 0, 0, 1]
    /// s = [0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.3, 0.2, 0.1]
    /// roc_auc_score(y, s)                           # 0.66
    /// roc_curve(y, s, drop_intermediate=False)
    /// # fpr [0, 0, .2, .2, .6, .8, 1, 1], tpr [0, .2, .4, .6, .8, .8, .8, 1],
    /// # thresholds [inf, .9, .8, .7, .5, .3, .2, .1]
    /// roc_curve(y, s)[2]                            # [inf, .9, .8, .7, .5, .2, .1]
    /// ```
    #[test]
    fn auc_and_curve_match_scikit_learn() {
        let y = [1, 0, 1, 1, 0, 0, 1, 0, 0, 1].map(|v| v == 1);
        let s = [0.9, 0.8, 0.8, 0.7, 0.5, 0.5, 0.5, 0.3, 0.2, 0.1];
        assert!((auc(&y, &s) - 0.66).abs() < 1e-12, "{}", auc(&y, &s));
        let full = roc_curve(&y, &s, false);
        let want_fpr = [0.0, 0.0, 0.2, 0.2, 0.6, 0.8, 1.0, 1.0];
        let want_tpr = [0.0, 0.2, 0.4, 0.6, 0.8, 0.8, 0.8, 1.0];
        let want_th = [f64::INFINITY, 0.9, 0.8, 0.7, 0.5, 0.3, 0.2, 0.1];
        for (got, want) in [
            (&full.fpr, &want_fpr[..]),
            (&full.tpr, &want_tpr[..]),
            (&full.thresholds, &want_th[..]),
        ] {
            assert_eq!(got.len(), want.len(), "{full:?}");
            for (a, b) in got.iter().zip(want) {
                assert!(a == b || (a - b).abs() < 1e-12, "{full:?}");
            }
        }
        let dropped = roc_curve(&y, &s, true);
        assert_eq!(dropped.thresholds.len(), 7, "{dropped:?}");
        assert_eq!(&dropped.thresholds[1..], &[0.9, 0.8, 0.7, 0.5, 0.2, 0.1]);
        // One class only: no curve, no area.
        assert!(auc(&[true, true], &[0.1, 0.2]).is_nan());
        assert!(roc_curve(&[false, false], &[0.1, 0.2], true).fpr.is_empty());
    }
}
