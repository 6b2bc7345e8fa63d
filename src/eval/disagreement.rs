//! Whether an ensemble's disagreement tells which cases to distrust: the accuracy of the
//! most-disagreed tenth of the cases against the rest (with intervals, and their
//! difference), and the accuracy in each tenth of disagreement for the chart.
//!
//! Cases are ranked by the spread of the networks' probabilities for the predicted class
//! (`infer::disagreement`), most first; ties keep the cases' order. The tenth is the first
//! ceil(n / 10) cases of that ranking.
use super::metrics::WithCi;
use super::report::Case;
use super::stats::Resampler;
use serde::{Deserialize, Serialize};

/// Accuracy against the networks' disagreement.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DisagreementSummary {
    /// Cases in the most-disagreed tenth.
    pub top_n: usize,
    /// Their accuracy.
    pub top_accuracy: WithCi,
    /// The other cases.
    pub rest_n: usize,
    /// Their accuracy.
    pub rest_accuracy: WithCi,
    /// The rest's accuracy minus the top tenth's (bootstrap over the same resamples).
    pub difference: WithCi,
    /// Each tenth of the ranking, least disagreement first: (its mean spread, its accuracy,
    /// its cases).
    pub tenths: Vec<(f64, f64, usize)>,
}

impl DisagreementSummary {
    /// The summary of `cases` (None when they carry no disagreement: one network), with
    /// `bootstrap` resamples of `resampler`'s groups from `seed`.
    pub fn of(cases: &[Case], resampler: &Resampler, bootstrap: usize, seed: u64) -> Option<Self> {
        let spread: Vec<f32> = cases
            .iter()
            .map(|c| c.disagreement.map(|d| d.spread))
            .collect::<Option<_>>()?;
        let n = cases.len();
        if n == 0 {
            return None;
        }
        let mut order: Vec<usize> = (0..n).collect();
        // Most disagreement first; a stable sort keeps the cases' order on ties.
        order.sort_by(|&a, &b| spread[b].total_cmp(&spread[a]));
        let top_n = n.div_ceil(10);
        let mut in_top = vec![false; n];
        for &i in &order[..top_n] {
            in_top[i] = true;
        }
        let right: Vec<bool> = cases.iter().map(|c| c.predicted == c.actual).collect();
        let count = |idx: &mut dyn Iterator<Item = usize>| -> [(usize, usize); 2] {
            let mut c = [(0, 0); 2]; // [rest, top]: (correct, cases)
            for i in idx {
                let g = &mut c[in_top[i] as usize];
                g.0 += right[i] as usize;
                g.1 += 1;
            }
            c
        };
        let acc = |(x, m): (usize, usize)| {
            if m == 0 {
                f64::NAN
            } else {
                x as f64 / m as f64
            }
        };
        let full = count(&mut (0..n));
        let (mut top_s, mut rest_s, mut diff_s) = (Vec::new(), Vec::new(), Vec::new());
        resampler.each(bootstrap, seed, |idx| {
            let c = count(&mut idx.iter().copied());
            let (r, t) = (acc(c[0]), acc(c[1]));
            if !r.is_nan() && !t.is_nan() {
                top_s.push(t);
                rest_s.push(r);
                diff_s.push(r - t);
            }
        });
        let tenths = (0..10)
            .filter_map(|k| {
                // Least disagreement first: the ranking read from its end.
                let (lo, hi) = (n * k / 10, n * (k + 1) / 10);
                let part: Vec<usize> = order.iter().rev().copied().skip(lo).take(hi - lo).collect();
                (!part.is_empty()).then(|| {
                    let m = part.len() as f64;
                    let s = part.iter().map(|&i| spread[i] as f64).sum::<f64>() / m;
                    let a = part.iter().filter(|&&i| right[i]).count() as f64 / m;
                    (s, a, part.len())
                })
            })
            .collect();
        Some(Self {
            top_n,
            top_accuracy: WithCi::proportion(full[1].0, full[1].1, &mut top_s),
            rest_n: n - top_n,
            rest_accuracy: WithCi::proportion(full[0].0, full[0].1, &mut rest_s),
            difference: WithCi::bootstrap(acc(full[0]) - acc(full[1]), &mut diff_s),
            tenths,
        })
    }

    /// The report's paragraph.
    pub fn markdown(&self) -> String {
        use super::scores::cell;
        format!(
            "## Disagreement among the ensemble's networks\n\n\
             Cases ranked by the spread of the networks' probabilities for the predicted \
             class. Accuracy of the most-disagreed tenth ({} images): {}; of the other {} \
             images: {}; difference {}.\n\n\
             | tenth (least to most disagreement) | mean spread | accuracy % | images |\n\
             |---|---|---|---|\n{}\n",
            self.top_n,
            cell(&self.top_accuracy),
            self.rest_n,
            cell(&self.rest_accuracy),
            cell(&self.difference),
            self.tenths
                .iter()
                .enumerate()
                .map(|(k, (s, a, m))| format!("| {} | {s:.3} | {:.1} | {m} |", k + 1, 100.0 * a))
                .collect::<Vec<_>>()
                .join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::infer::disagreement::Disagreement;

    fn case(i: usize, right: bool, spread: f32) -> Case {
        Case {
            file: format!("{i}.png"),
            file_bytes: None,
            actual: 0,
            predicted: if right { 0 } else { 1 },
            probs: vec![0.5, 0.5],
            loss: 0.7,
            source: None,
            patient: None,
            disagreement: Some(Disagreement {
                spread,
                agree: 2,
                members: 3,
            }),
        }
    }

    /// Fixed numbers: 20 cases; the two with the largest spread (the top tenth) are one
    /// right and one wrong (50 %), the other 18 are 17 right (94.4 %).
    #[test]
    fn the_most_disagreed_tenth_is_counted_from_the_ranking() {
        let mut cases: Vec<Case> = (0..18).map(|i| case(i, i != 5, 0.01 * i as f32)).collect();
        cases.push(case(18, false, 0.9));
        cases.push(case(19, true, 0.8));
        let r = Resampler::by_case(cases.len());
        let s = DisagreementSummary::of(&cases, &r, 200, 0).unwrap();
        assert_eq!((s.top_n, s.rest_n), (2, 18));
        assert_eq!(s.top_accuracy.value, 0.5);
        assert!((s.rest_accuracy.value - 17.0 / 18.0).abs() < 1e-12);
        assert!((s.difference.value - (17.0 / 18.0 - 0.5)).abs() < 1e-12);
        // Two cases a tenth; the last tenth is the two most disagreed.
        assert_eq!(s.tenths.len(), 10);
        let last = s.tenths[9];
        assert!(
            (last.0 - 0.85).abs() < 1e-6 && last.1 == 0.5 && last.2 == 2,
            "{last:?}"
        );
        // The first tenth: spreads 0.00 and 0.01, both right.
        assert_eq!((s.tenths[0].1, s.tenths[0].2), (1.0, 2));
        // One network: nothing to summarise.
        let mut single = cases.clone();
        single.iter_mut().for_each(|c| c.disagreement = None);
        assert!(DisagreementSummary::of(&single, &r, 10, 0).is_none());
    }
}
