//! Two models on one test set: the paired bootstrap difference (B − A) in accuracy and
//! macro AUC with its interval, and McNemar's exact test on the paired predictions.
use super::metrics::WithCi;
use super::report::EvalReport;
use super::roc::{auc, macro_mean};
use super::stats::{mcnemar_exact, Resampler};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// The comparison of model B with model A.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Comparison {
    /// What A is (its model file or report).
    pub a: String,
    /// What B is.
    pub b: String,
    /// Paired images.
    pub n: usize,
    /// What the bootstrap resampled.
    pub resampled: String,
    /// Accuracy of A and of B.
    pub accuracy: [f64; 2],
    /// B − A in accuracy.
    pub accuracy_diff: WithCi,
    /// Macro AUC of A and of B.
    pub macro_auc: [f64; 2],
    /// B − A in macro AUC.
    pub macro_auc_diff: WithCi,
    /// Images only A got right.
    pub only_a: usize,
    /// Images only B got right.
    pub only_b: usize,
    /// McNemar's exact two-sided p-value.
    pub mcnemar_p: f64,
}

fn macro_auc(k: usize, actual: &[usize], probs: &[&[f32]], idx: &[usize]) -> f64 {
    let aucs: Vec<f64> = (0..k)
        .map(|c| {
            let p: Vec<bool> = idx.iter().map(|&i| actual[i] == c).collect();
            let s: Vec<f64> = idx.iter().map(|&i| probs[i][c] as f64).collect();
            auc(&p, &s)
        })
        .collect();
    macro_mean(&aucs)
}

/// Compares report `b` with report `a` over the same images (matched by file). Refuses
/// reports with other classes, other images or other true labels, naming the difference.
/// Patients (the first report's ids) are resampled together for both models.
pub fn compare(
    a: (&str, &EvalReport),
    b: (&str, &EvalReport),
    bootstrap: usize,
    seed: u64,
) -> Result<Comparison, String> {
    let (ra, rb) = (a.1, b.1);
    if ra.classes != rb.classes {
        return Err(format!(
            "the two models have other classes: {} against {}",
            ra.classes.join(", "),
            rb.classes.join(", ")
        ));
    }
    let by_file: HashMap<&str, usize> = rb
        .cases
        .iter()
        .enumerate()
        .map(|(i, c)| (c.file.as_str(), i))
        .collect();
    if ra.cases.len() != rb.cases.len() {
        return Err(format!(
            "{} has {} images, {} has {}: not the same test set",
            a.0,
            ra.cases.len(),
            b.0,
            rb.cases.len()
        ));
    }
    let mut pairs = Vec::with_capacity(ra.cases.len());
    for ca in &ra.cases {
        let Some(&j) = by_file.get(ca.file.as_str()) else {
            return Err(format!("{} is in {} but not in {}", ca.file, a.0, b.0));
        };
        let cb = &rb.cases[j];
        if ca.actual != cb.actual {
            return Err(format!("{}: other true labels in the two reports", ca.file));
        }
        pairs.push((ca, cb));
    }
    let actual: Vec<usize> = pairs.iter().map(|(c, _)| c.actual).collect();
    let pa: Vec<&[f32]> = pairs.iter().map(|(c, _)| &c.probs[..]).collect();
    let pb: Vec<&[f32]> = pairs.iter().map(|(_, c)| &c.probs[..]).collect();
    let ok_a: Vec<bool> = pairs.iter().map(|(c, _)| c.actual == c.predicted).collect();
    let ok_b: Vec<bool> = pairs.iter().map(|(_, c)| c.actual == c.predicted).collect();
    let keys: Vec<Option<&str>> = pairs.iter().map(|(c, _)| c.patient.as_deref()).collect();
    let r = Resampler::by_key(&keys);
    let k = ra.classes.len();
    let acc = |ok: &[bool], idx: &[usize]| {
        idx.iter().filter(|&&i| ok[i]).count() as f64 / idx.len().max(1) as f64
    };
    let all: Vec<usize> = (0..pairs.len()).collect();
    let (mut d_acc, mut d_auc) = (Vec::new(), Vec::new());
    r.each(bootstrap, seed, |idx| {
        d_acc.push(acc(&ok_b, idx) - acc(&ok_a, idx));
        d_auc.push(macro_auc(k, &actual, &pb, idx) - macro_auc(k, &actual, &pa, idx));
    });
    let accuracy = [acc(&ok_a, &all), acc(&ok_b, &all)];
    let macro_auc_ab = [
        macro_auc(k, &actual, &pa, &all),
        macro_auc(k, &actual, &pb, &all),
    ];
    let only_a = (0..pairs.len()).filter(|&i| ok_a[i] && !ok_b[i]).count();
    let only_b = (0..pairs.len()).filter(|&i| !ok_a[i] && ok_b[i]).count();
    Ok(Comparison {
        a: a.0.to_string(),
        b: b.0.to_string(),
        n: pairs.len(),
        resampled: r.describe(),
        accuracy,
        accuracy_diff: WithCi::bootstrap(accuracy[1] - accuracy[0], &mut d_acc),
        macro_auc: macro_auc_ab,
        macro_auc_diff: WithCi::bootstrap(macro_auc_ab[1] - macro_auc_ab[0], &mut d_auc),
        only_a,
        only_b,
        mcnemar_p: mcnemar_exact(only_a, only_b),
    })
}

impl Comparison {
    /// A short Markdown summary.
    pub fn markdown(&self) -> String {
        let pp = |v: f64| format!("{:+.2}", 100.0 * v);
        format!(
            "# Comparison\n\n- A: {}\n- B: {}\n\n{} paired images; intervals: paired bootstrap \
             over {}.\n\n| | A | B | B − A (95% CI) |\n|---|---|---|---|\n\
             | accuracy % | {:.2} | {:.2} | {} ({} to {}) |\n\
             | macro AUC % | {:.2} | {:.2} | {} ({} to {}) |\n\n\
             Only A right: {}; only B right: {}; McNemar's exact test p = {:.4}{}.\n",
            self.a,
            self.b,
            self.n,
            self.resampled,
            100.0 * self.accuracy[0],
            100.0 * self.accuracy[1],
            pp(self.accuracy_diff.value),
            pp(self.accuracy_diff.lo),
            pp(self.accuracy_diff.hi),
            100.0 * self.macro_auc[0],
            100.0 * self.macro_auc[1],
            pp(self.macro_auc_diff.value),
            pp(self.macro_auc_diff.lo),
            pp(self.macro_auc_diff.hi),
            self.only_a,
            self.only_b,
            self.mcnemar_p,
            if self.mcnemar_p < 0.05 {
                " (the two models disagree more one way than chance would make them)"
            } else {
                " (no evidence that one model is right more often than the other)"
            }
        )
    }
}
