//! Whether the probabilities can be trusted: the top-label expected calibration error over
//! 15 equal-width bins, the reliability diagram's bins, the Brier score, and temperature
//! scaling fitted on held-out cases.
use serde::{Deserialize, Serialize};

/// Bins of the reliability diagram and the ECE.
pub const BINS: usize = 15;

/// One bin of the reliability diagram (top-label confidence).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReliabilityBin {
    /// Lower edge (exclusive, except for the first bin).
    pub lo: f64,
    /// Upper edge (inclusive).
    pub hi: f64,
    /// Cases whose top probability falls here.
    pub count: usize,
    /// Their mean top probability.
    pub confidence: f64,
    /// The fraction of them predicted right.
    pub accuracy: f64,
}

/// The bin of a confidence `p`, as scikit-learn's `calibration_curve(..., n_bins=15,
/// strategy="uniform")` bins it: edges `linspace(0, 1 + 1e-8, 16)`, each bin closed on the
/// right (`np.searchsorted(edges[1:-1], p)`).
pub fn bin_of(p: f64) -> usize {
    let top = 1.0 + 1e-8;
    (1..BINS)
        .filter(|&i| (i as f64 * top / BINS as f64) < p)
        .count()
}

/// The non-empty reliability bins of top-label confidences `conf` and correctness
/// `correct`.
pub fn reliability(conf: &[f64], correct: &[bool]) -> Vec<ReliabilityBin> {
    let top = 1.0 + 1e-8;
    let mut sums = vec![(0usize, 0.0f64, 0usize); BINS];
    for (&p, &ok) in conf.iter().zip(correct) {
        let b = &mut sums[bin_of(p)];
        b.0 += 1;
        b.1 += p;
        b.2 += ok as usize;
    }
    sums.iter()
        .enumerate()
        .filter(|(_, &(n, _, _))| n > 0)
        .map(|(i, &(n, s, k))| ReliabilityBin {
            lo: i as f64 * top / BINS as f64,
            hi: (i + 1) as f64 * top / BINS as f64,
            count: n,
            confidence: s / n as f64,
            accuracy: k as f64 / n as f64,
        })
        .collect()
}

/// Expected calibration error: the count-weighted mean gap between accuracy and
/// confidence over the bins; NaN with no cases.
pub fn ece(bins: &[ReliabilityBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.count).sum();
    if n == 0 {
        return f64::NAN;
    }
    bins.iter()
        .filter(|b| b.count > 0)
        .map(|b| b.count as f64 / n as f64 * (b.accuracy - b.confidence).abs())
        .sum()
}

/// Top-label confidence and correctness of each case.
pub fn top_label(actual: &[usize], probs: &[&[f32]]) -> (Vec<f64>, Vec<bool>) {
    probs
        .iter()
        .zip(actual)
        .map(|(p, &a)| {
            let best = crate::infer::predictor::argmax(p);
            (p[best] as f64, best == a)
        })
        .unzip()
}

/// The multi-class Brier score: the mean over cases of Σ_k (p_k − [k = actual])², from 0
/// (perfect) to 2 (as scikit-learn's `brier_score_loss` for more than two classes).
pub fn brier(actual: &[usize], probs: &[&[f32]]) -> f64 {
    if actual.is_empty() {
        return f64::NAN;
    }
    let total: f64 = probs
        .iter()
        .zip(actual)
        .map(|(p, &a)| {
            p.iter()
                .enumerate()
                .map(|(k, &v)| (v as f64 - (k == a) as u8 as f64).powi(2))
                .sum::<f64>()
        })
        .sum();
    total / actual.len() as f64
}

pub use crate::infer::decision::tempered as scaled;

/// Mean negative log-likelihood of `actual` under `probs` tempered by `t`.
fn nll(actual: &[usize], probs: &[&[f32]], t: f64) -> f64 {
    probs
        .iter()
        .zip(actual)
        .map(|(p, &a)| -crate::infer::decision::log_tempered(p, t)[a])
        .sum::<f64>()
        / actual.len().max(1) as f64
}

/// The temperature that minimises the negative log-likelihood of `actual` (Guo et al.
/// 2017), by golden-section search on log t over [0.05, 20]; `None` with no cases.
pub fn fit_temperature(actual: &[usize], probs: &[&[f32]]) -> Option<f64> {
    if actual.is_empty() {
        return None;
    }
    let f = |lt: f64| nll(actual, probs, lt.exp());
    let range = crate::model::io::model_file::TEMPERATURE_RANGE;
    let (mut a, mut b) = (range.start().ln(), range.end().ln());
    let g = (5f64.sqrt() - 1.0) / 2.0;
    let (mut c, mut d) = (b - g * (b - a), a + g * (b - a));
    let (mut fc, mut fd) = (f(c), f(d));
    while b - a > 1e-10 {
        if fc < fd {
            (b, d, fd) = (d, c, fc);
            c = b - g * (b - a);
            fc = f(c);
        } else {
            (a, c, fc) = (c, d, fd);
            d = a + g * (b - a);
            fd = f(d);
        }
    }
    Some(((a + b) / 2.0).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from scikit-learn 1.9.1 (ECE as the count-weighted gap of
    /// `calibration_curve`'s bins):
    /// ```python
    /// import numpy as np
    /// from sklearn.calibration import calibration_curve
    /// from sklearn.metrics import brier_score_loss
    /// P = np.array([[.7,.2,.1],[.1,.8,.1],[.3,.3,.4],[.5,.4,.1],[.2,.2,.6],[1/3,1/3,1/3],
    ///               [.05,.9,.05],[.6,.3,.1]], dtype=np.float32).astype(np.float64)
    /// y = np.array([0, 1, 2, 1, 2, 0, 1, 2])
    /// conf, ok = P.max(1), (P.argmax(1) == y)
    /// pt, pp = calibration_curve(ok, conf, n_bins=15)
    /// ids = np.searchsorted(np.linspace(0, 1 + 1e-8, 16)[1:-1], conf)
    /// cnt = np.bincount(ids, minlength=15); cnt = cnt[cnt > 0]
    /// (cnt / len(y) * np.abs(pt - pp)).sum()   # ECE 0.32083334028720856
    /// brier_score_loss(y, P)                   # 0.44270833659296266
    /// ```
    #[test]
    fn ece_and_brier_match_scikit_learn() {
        let rows: [[f32; 3]; 8] = [
            [0.7, 0.2, 0.1],
            [0.1, 0.8, 0.1],
            [0.3, 0.3, 0.4],
            [0.5, 0.4, 0.1],
            [0.2, 0.2, 0.6],
            [1.0 / 3.0, 1.0 / 3.0, 1.0 / 3.0],
            [0.05, 0.9, 0.05],
            [0.6, 0.3, 0.1],
        ];
        let probs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let y = [0, 1, 2, 1, 2, 0, 1, 2];
        let (conf, ok) = top_label(&y, &probs);
        let bins = reliability(&conf, &ok);
        let e = ece(&bins);
        assert!((e - ECE_SKLEARN).abs() < 1e-9, "{e}");
        let b = brier(&y, &probs);
        assert!((b - BRIER_SKLEARN).abs() < 1e-9, "{b}");
        assert_eq!(bins.iter().map(|b| b.count).sum::<usize>(), 8);
    }
    const ECE_SKLEARN: f64 = 0.32083334028720856;
    const BRIER_SKLEARN: f64 = 0.44270833659296266;

    #[test]
    fn temperature_recovers_a_known_scale() {
        // Cases drawn from softmax(z) labelled by it, then shown sharpened as softmax(3 z):
        // the fitted temperature should undo the factor 3 (within sampling noise).
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let (mut rows, mut y) = (Vec::new(), Vec::new());
        for _ in 0..4000 {
            let z: Vec<f64> = (0..3).map(|_| rng.random_range(-2.0..2.0)).collect();
            let p = |s: f64| {
                let e: Vec<f64> = z.iter().map(|v| (v * s).exp()).collect();
                let t: f64 = e.iter().sum();
                e.iter().map(|v| v / t).collect::<Vec<f64>>()
            };
            let truth = p(1.0);
            let u: f64 = rng.random();
            let label = if u < truth[0] {
                0
            } else if u < truth[0] + truth[1] {
                1
            } else {
                2
            };
            rows.push(p(3.0).iter().map(|&v| v as f32).collect::<Vec<f32>>());
            y.push(label);
        }
        let probs: Vec<&[f32]> = rows.iter().map(|r| &r[..]).collect();
        let t = fit_temperature(&y, &probs).unwrap();
        assert!((2.6..3.4).contains(&t), "{t}");
        let fixed: Vec<Vec<f32>> = rows.iter().map(|r| scaled(r, t)).collect();
        let fixed_refs: Vec<&[f32]> = fixed.iter().map(|r| &r[..]).collect();
        let before = ece(&{
            let (c, o) = top_label(&y, &probs);
            reliability(&c, &o)
        });
        let after = ece(&{
            let (c, o) = top_label(&y, &fixed_refs);
            reliability(&c, &o)
        });
        assert!(after < before / 2.0, "ECE {before} -> {after}");
    }
}
