//! Confusion matrix (rows actual, columns predicted), accuracy, per-class recall, PPV and
//! F1, macro averages, and 95% confidence intervals: a seeded bootstrap resampling patients
//! (or images), and Wilson intervals for proportions with few events.
use super::stats::{percentile_ci, wilson, CiMethod, Resampler, FEW_EVENTS};
use serde::{Deserialize, Serialize};

/// Serde for f64 that may be NaN (an absent class's recall): JSON has no NaN, so NaN is
/// written as null and null is read back as NaN.
pub mod nullable {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes NaN as null.
    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    /// Reads null as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// [`nullable`] for vectors.
pub mod nullable_vec {
    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes NaN entries as null.
    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.is_finite().then_some(*x)))
    }

    /// Reads null entries as NaN.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<Option<f64>>::deserialize(d)?
            .into_iter()
            .map(|x| x.unwrap_or(f64::NAN))
            .collect())
    }
}

/// Counts `m[actual][predicted]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// The matrix.
    pub m: Vec<Vec<usize>>,
}

impl Confusion {
    /// From parallel lists of actual and predicted classes.
    pub fn new(k: usize, actual: &[usize], predicted: &[usize]) -> Self {
        let mut m = vec![vec![0; k]; k];
        for (&a, &p) in actual.iter().zip(predicted) {
            if a < k && p < k {
                m[a][p] += 1;
            }
        }
        Self { m }
    }

    /// Number of classes.
    pub fn k(&self) -> usize {
        self.m.len()
    }

    /// Total count.
    pub fn total(&self) -> usize {
        self.m.iter().flatten().sum()
    }

    /// Fraction on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let t = self.total();
        if t == 0 {
            return f64::NAN;
        }
        (0..self.k()).map(|i| self.m[i][i]).sum::<usize>() as f64 / t as f64
    }

    /// Recall (sensitivity) of class c; NaN when the class is absent.
    pub fn recall(&self, c: usize) -> f64 {
        let row: usize = self.m[c].iter().sum();
        self.m[c][c] as f64 / row as f64
    }

    /// Precision (PPV) of class c; NaN when nothing was predicted as c.
    pub fn ppv(&self, c: usize) -> f64 {
        let col: usize = self.m.iter().map(|r| r[c]).sum();
        self.m[c][c] as f64 / col as f64
    }

    /// Whether class c has images or predictions (scikit-learn's label set: classes in
    /// neither take no part in macro averages).
    pub fn present(&self, c: usize) -> bool {
        self.m[c].iter().sum::<usize>() > 0 || self.m.iter().any(|r| r[c] > 0)
    }

    /// F1 of class c as scikit-learn computes it with `zero_division=0`: an undefined recall
    /// or PPV counts as 0, and F1 is 0 when both are 0. NaN for a class with neither images
    /// nor predictions.
    pub fn f1(&self, c: usize) -> f64 {
        if !self.present(c) {
            return f64::NAN;
        }
        let zero_if_nan = |v: f64| if v.is_nan() { 0.0 } else { v };
        let (r, p) = (zero_if_nan(self.recall(c)), zero_if_nan(self.ppv(c)));
        if r + p == 0.0 {
            0.0
        } else {
            2.0 * r * p / (r + p)
        }
    }

    /// Macro average of `per_class` over the present classes, an undefined value counting
    /// as 0 (scikit-learn's `average="macro", zero_division=0`); NaN when no class is present.
    pub fn macro_of(&self, per_class: impl Fn(&Self, usize) -> f64) -> f64 {
        let present: Vec<usize> = (0..self.k()).filter(|&c| self.present(c)).collect();
        if present.is_empty() {
            return f64::NAN;
        }
        present
            .iter()
            .map(|&c| {
                let v = per_class(self, c);
                if v.is_nan() {
                    0.0
                } else {
                    v
                }
            })
            .sum::<f64>()
            / present.len() as f64
    }
}

/// A value with its 95% interval.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct WithCi {
    /// On the full set.
    #[serde(with = "nullable")]
    pub value: f64,
    /// Lower bound (the bootstrap's 2.5th percentile, or Wilson's).
    #[serde(with = "nullable")]
    pub lo: f64,
    /// Upper bound.
    #[serde(with = "nullable")]
    pub hi: f64,
    /// How the interval was obtained.
    #[serde(default)]
    pub method: CiMethod,
}

/// Equal when every figure is equal or undefined (NaN) in both: an undefined figure read
/// back from a report is the same undefined figure.
impl PartialEq for WithCi {
    fn eq(&self, o: &Self) -> bool {
        let same = |a: f64, b: f64| a == b || (a.is_nan() && b.is_nan());
        same(self.value, o.value)
            && same(self.lo, o.lo)
            && same(self.hi, o.hi)
            && self.method == o.method
    }
}

impl WithCi {
    /// A value from bootstrap `samples` (percentile interval; none without samples).
    pub fn bootstrap(value: f64, samples: &mut Vec<f64>) -> Self {
        let (lo, hi) = percentile_ci(samples);
        let method = if lo.is_nan() || value.is_nan() {
            CiMethod::None
        } else {
            CiMethod::Bootstrap
        };
        Self {
            value,
            lo,
            hi,
            method,
        }
    }

    /// The proportion `x / n`: a Wilson interval when successes or failures are fewer than
    /// [`FEW_EVENTS`] (where a percentile bootstrap collapses), else the bootstrap's.
    pub fn proportion(x: usize, n: usize, samples: &mut Vec<f64>) -> Self {
        if n == 0 {
            return Self::bootstrap(f64::NAN, samples);
        }
        let value = x as f64 / n as f64;
        match wilson(x, n) {
            Some((lo, hi)) if x.min(n - x) < FEW_EVENTS => Self {
                value,
                lo,
                hi,
                method: CiMethod::Wilson,
            },
            _ => Self::bootstrap(value, samples),
        }
    }
}

/// Per-class figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClassMetrics {
    /// Class name.
    pub class: String,
    /// Images of this class.
    pub support: usize,
    /// Recall.
    pub recall: WithCi,
    /// PPV.
    pub ppv: WithCi,
    /// F1.
    pub f1: WithCi,
}

/// All metrics of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    /// Images evaluated.
    pub n: usize,
    /// Confusion matrix.
    pub confusion: Confusion,
    /// Accuracy.
    pub accuracy: WithCi,
    /// Macro recall.
    pub macro_recall: WithCi,
    /// Macro PPV.
    pub macro_ppv: WithCi,
    /// Macro F1.
    pub macro_f1: WithCi,
    /// Per class.
    pub per_class: Vec<ClassMetrics>,
    /// Classes with neither images nor predictions: left out of the macro averages.
    #[serde(default)]
    pub absent: Vec<String>,
    /// Bootstrap resamples used.
    pub bootstrap: usize,
}

/// Computes every metric; `bootstrap` image resamples (0 = no intervals) drawn from `seed`.
pub fn compute(
    classes: &[String],
    actual: &[usize],
    predicted: &[usize],
    bootstrap: usize,
    seed: u64,
) -> Metrics {
    let r = Resampler::by_case(actual.len());
    compute_grouped(classes, actual, predicted, &r, bootstrap, seed)
}

/// Computes every metric with `bootstrap` resamples drawn by `resampler` from `seed`.
pub fn compute_grouped(
    classes: &[String],
    actual: &[usize],
    predicted: &[usize],
    resampler: &Resampler,
    bootstrap: usize,
    seed: u64,
) -> Metrics {
    let k = classes.len();
    let n = actual.len();
    let cm = Confusion::new(k, actual, predicted);
    // Statistic vector: accuracy, macro r/p/f1, then per class r, p, f1.
    let stats = |c: &Confusion| -> Vec<f64> {
        let mut v = vec![
            c.accuracy(),
            c.macro_of(Confusion::recall),
            c.macro_of(Confusion::ppv),
            c.macro_of(Confusion::f1),
        ];
        for i in 0..k {
            v.extend([c.recall(i), c.ppv(i), c.f1(i)]);
        }
        v
    };
    let point = stats(&cm);
    let mut samples: Vec<Vec<f64>> = vec![Vec::with_capacity(bootstrap); point.len()];
    resampler.each(bootstrap, seed, |idx| {
        let mut c = Confusion {
            m: vec![vec![0; k]; k],
        };
        for &j in idx {
            c.m[actual[j]][predicted[j]] += 1;
        }
        for (s, v) in samples.iter_mut().zip(stats(&c)) {
            s.push(v);
        }
    });
    let mut ci: Vec<WithCi> = point
        .iter()
        .zip(samples.iter_mut())
        .map(|(&value, s)| WithCi::bootstrap(value, s))
        .collect();
    // Proportions with few events: Wilson.
    let diag: usize = (0..k).map(|i| cm.m[i][i]).sum();
    ci[0] = WithCi::proportion(diag, n, &mut samples[0]);
    for i in 0..k {
        let row: usize = cm.m[i].iter().sum();
        let col: usize = cm.m.iter().map(|r| r[i]).sum();
        ci[4 + 3 * i] = WithCi::proportion(cm.m[i][i], row, &mut samples[4 + 3 * i]);
        ci[5 + 3 * i] = WithCi::proportion(cm.m[i][i], col, &mut samples[5 + 3 * i]);
    }
    Metrics {
        n,
        confusion: cm.clone(),
        accuracy: ci[0],
        macro_recall: ci[1],
        macro_ppv: ci[2],
        macro_f1: ci[3],
        per_class: (0..k)
            .map(|i| ClassMetrics {
                class: classes[i].clone(),
                support: cm.m[i].iter().sum(),
                recall: ci[4 + 3 * i],
                ppv: ci[5 + 3 * i],
                f1: ci[6 + 3 * i],
            })
            .collect(),
        absent: (0..k)
            .filter(|&c| !cm.present(c))
            .map(|c| classes[c].clone())
            .collect(),
        bootstrap,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        crate::data::split::labels::PAPER_CLASSES
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    #[test]
    fn hand_computed_confusion() {
        // actual:    0 0 0 1 1 2 3 3
        // predicted: 0 0 1 1 2 2 3 0
        let a = [0, 0, 0, 1, 1, 2, 3, 3];
        let p = [0, 0, 1, 1, 2, 2, 3, 0];
        let m = compute(&names(), &a, &p, 0, 0);
        assert_eq!(m.confusion.m[0], vec![2, 1, 0, 0]);
        assert_eq!(m.confusion.m[3], vec![1, 0, 0, 1]);
        assert!((m.accuracy.value - 5.0 / 8.0).abs() < 1e-12);
        // Normal: recall 2/3, PPV 2/3 (column 0 has 2 + 1), F1 2/3.
        let c0 = &m.per_class[0];
        assert!(
            (c0.recall.value - 2.0 / 3.0).abs() < 1e-12 && (c0.ppv.value - 2.0 / 3.0).abs() < 1e-12
        );
        // Bacterial: recall 1/2, PPV 1/2; Viral: recall 1, PPV 1/2 -> F1 2/3.
        assert!((m.per_class[2].f1.value - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(m.per_class[3].support, 2);
        let macro_r = (2.0 / 3.0 + 0.5 + 1.0 + 0.5) / 4.0;
        assert!((m.macro_recall.value - macro_r).abs() < 1e-12);
    }

    /// Expected values from scikit-learn 1.9.1:
    /// ```python
    /// from sklearn.metrics import f1_score, recall_score, precision_score
    /// A = ([0,0,1,1,2,2,2,2,3], [0,0,0,2,2,2,2,0,2])  # COVID-19 and Bacterial never right
    /// f1_score(*A, average="macro", zero_division=0)        # 0.3333333333333333
    /// recall_score(*A, average="macro", zero_division=0)    # 0.4375
    /// precision_score(*A, average="macro", zero_division=0) # 0.275
    /// B = ([0,0,0,1,1,2,2], [0,1,0,1,2,2,0])              # no COVID-19 anywhere
    /// f1_score(*B, average="macro", zero_division=0)        # 0.5555555555555555
    /// C = ([0,0,1,1,2,2], [0,3,1,1,2,0])                  # COVID-19 predicted, never true
    /// f1_score(*C, average="macro", zero_division=0)        # 0.5416666666666666
    /// recall_score(*C, average="macro", zero_division=0)    # 0.5
    /// precision_score(*C, average="macro", zero_division=0) # 0.625
    /// ```
    #[test]
    fn macro_averages_follow_scikit_learn_at_the_edges() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let m = compute(
            &names(),
            &[0, 0, 1, 1, 2, 2, 2, 2, 3],
            &[0, 0, 0, 2, 2, 2, 2, 0, 2],
            0,
            0,
        );
        assert!(
            close(m.macro_f1.value, 0.3333333333333333),
            "{}",
            m.macro_f1.value
        );
        assert!(close(m.macro_recall.value, 0.4375));
        assert!(close(m.macro_ppv.value, 0.275));
        assert_eq!(
            m.per_class[3].f1.value, 0.0,
            "never predicted: F1 0, not NaN"
        );
        assert!(m.absent.is_empty());
        let m = compute(
            &names(),
            &[0, 0, 0, 1, 1, 2, 2],
            &[0, 1, 0, 1, 2, 2, 0],
            0,
            0,
        );
        assert!(close(m.macro_f1.value, 0.5555555555555555));
        assert_eq!(m.absent, vec!["COVID-19".to_string()]);
        assert!(
            m.per_class[3].f1.value.is_nan(),
            "no images, no predictions: undefined"
        );
        let m = compute(&names(), &[0, 0, 1, 1, 2, 2], &[0, 3, 1, 1, 2, 0], 0, 0);
        assert!(close(m.macro_f1.value, 0.5416666666666666));
        assert!(close(m.macro_recall.value, 0.5));
        assert!(close(m.macro_ppv.value, 0.625));
    }

    #[test]
    fn nan_survives_a_json_round_trip() {
        let w = WithCi {
            value: f64::NAN,
            lo: 0.5,
            hi: f64::NAN,
            method: CiMethod::None,
        };
        let j = serde_json::to_string(&w).unwrap();
        assert_eq!(j, r#"{"value":null,"lo":0.5,"hi":null,"method":"none"}"#);
        let back: WithCi = serde_json::from_str(&j).unwrap();
        assert!(back.value.is_nan() && back.lo == 0.5 && back.hi.is_nan());
    }

    #[test]
    fn bootstrap_interval_brackets_the_value_and_is_seeded() {
        let a: Vec<usize> = (0..400).map(|i| i % 4).collect();
        let p: Vec<usize> = a
            .iter()
            .enumerate()
            .map(|(i, &x)| if i % 5 == 0 { (x + 1) % 4 } else { x })
            .collect();
        let m = compute(&names(), &a, &p, 500, 7);
        assert!((m.accuracy.value - 0.8).abs() < 1e-12);
        assert!(m.accuracy.lo < 0.8 && 0.8 < m.accuracy.hi);
        // Binomial sd of accuracy: sqrt(0.8*0.2/400) = 0.02; the 95% width is about 0.078.
        let w = m.accuracy.hi - m.accuracy.lo;
        assert!((0.06..0.10).contains(&w), "{w}");
        assert_eq!(m, compute(&names(), &a, &p, 500, 7));
    }
}
