//! Interval methods and tests shared by the metrics: the Wilson score interval for
//! proportions with few events, the seeded bootstrap that resamples patients (or images when
//! no patient ids are known), percentiles, and McNemar's exact test for paired predictions.
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

/// The two-sided 95 % normal quantile, `scipy.stats.norm.ppf(0.975)`.
pub const Z95: f64 = 1.959963984540054;

/// A proportion whose successes or failures number fewer than this gets a Wilson interval:
/// the normal approximation behind a percentile bootstrap needs about ten of each.
pub const FEW_EVENTS: usize = 10;

/// How an interval was obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CiMethod {
    /// Percentile bootstrap (patients or images resampled, as the report says).
    #[default]
    Bootstrap,
    /// Wilson score interval of a proportion (few events).
    Wilson,
    /// No interval (no resamples asked for, or an undefined value).
    None,
}

impl CiMethod {
    /// The word used in reports.
    pub fn word(self) -> &'static str {
        match self {
            Self::Bootstrap => "bootstrap",
            Self::Wilson => "Wilson",
            Self::None => "none",
        }
    }
}

/// The Wilson score 95 % interval of `x` successes in `n` trials (as statsmodels'
/// `proportion_confint(x, n, method="wilson")`); `None` when `n` is 0.
pub fn wilson(x: usize, n: usize) -> Option<(f64, f64)> {
    if n == 0 || x > n {
        return None;
    }
    let (x, n, z2) = (x as f64, n as f64, Z95 * Z95);
    let p = x / n;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Linear-interpolated quantile `q` of sorted values (NumPy's default); NaN when empty.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let pos = q * (sorted.len() - 1) as f64;
    let (i, f) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() {
        sorted[i] * (1.0 - f) + sorted[i + 1] * f
    } else {
        sorted[i]
    }
}

/// The 2.5th and 97.5th percentiles of `samples` (NaN entries dropped).
pub fn percentile_ci(samples: &mut Vec<f64>) -> (f64, f64) {
    samples.retain(|v| !v.is_nan());
    samples.sort_by(|a, b| a.total_cmp(b));
    (percentile(samples, 0.025), percentile(samples, 0.975))
}

/// Draws bootstrap resamples of cases by group: every resample draws as many groups as
/// there are, with replacement, and takes all cases of each drawn group. With one case per
/// group this is the ordinary image bootstrap.
#[derive(Debug, Clone)]
pub struct Resampler {
    groups: Vec<Vec<usize>>,
    cases: usize,
}

impl Resampler {
    /// Groups of `keys[i]` (equal keys: one patient); `None` keys are groups of one.
    pub fn by_key<S: AsRef<str>>(keys: &[Option<S>]) -> Self {
        let mut index = std::collections::HashMap::new();
        let mut groups: Vec<Vec<usize>> = Vec::new();
        for (i, k) in keys.iter().enumerate() {
            match k {
                Some(k) => {
                    let g = *index.entry(k.as_ref().to_string()).or_insert_with(|| {
                        groups.push(Vec::new());
                        groups.len() - 1
                    });
                    groups[g].push(i);
                }
                None => groups.push(vec![i]),
            }
        }
        Self {
            groups,
            cases: keys.len(),
        }
    }

    /// Every case its own group.
    pub fn by_case(n: usize) -> Self {
        Self {
            groups: (0..n).map(|i| vec![i]).collect(),
            cases: n,
        }
    }

    /// Number of groups.
    pub fn groups(&self) -> usize {
        self.groups.len()
    }

    /// Whether some group holds more than one case (patients are resampled, not images).
    pub fn by_patient(&self) -> bool {
        self.groups.len() < self.cases
    }

    /// What is resampled, for reports: "patients (312 for 637 images)" or "images".
    pub fn describe(&self) -> String {
        if self.by_patient() {
            format!("patients ({} for {} images)", self.groups(), self.cases)
        } else {
            "images".into()
        }
    }

    /// `count` resamples from `seed`, each a list of case indices, given to `f` in turn.
    pub fn each(&self, count: usize, seed: u64, mut f: impl FnMut(&[usize])) {
        if self.groups.is_empty() {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut idx = Vec::with_capacity(self.cases);
        for _ in 0..count {
            idx.clear();
            for _ in 0..self.groups.len() {
                idx.extend_from_slice(&self.groups[rng.random_range(0..self.groups.len())]);
            }
            f(&idx);
        }
    }
}

/// McNemar's exact test on paired predictions: `b` cases only the first model got right,
/// `c` only the second; the two-sided binomial p-value (statsmodels'
/// `mcnemar([[_, b], [c, _]], exact=True)`).
pub fn mcnemar_exact(b: usize, c: usize) -> f64 {
    let n = b + c;
    if n == 0 {
        return 1.0;
    }
    let k = b.min(c);
    // P(X <= k) for X ~ Binomial(n, 1/2), summed in log space.
    let ln_choose = |n: usize, i: usize| ln_factorial(n) - ln_factorial(i) - ln_factorial(n - i);
    let half = (n as f64) * std::f64::consts::LN_2;
    let cdf: f64 = (0..=k).map(|i| (ln_choose(n, i) - half).exp()).sum();
    (2.0 * cdf).min(1.0)
}

fn ln_factorial(n: usize) -> f64 {
    (2..=n).map(|i| (i as f64).ln()).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// ```python
    /// from statsmodels.stats.proportion import proportion_confint
    /// proportion_confint(1, 1, method="wilson")    # (0.2065493143772374, 1.0)
    /// proportion_confint(0, 8, method="wilson")    # (0.0, 0.32440756488388034)
    /// proportion_confint(6, 8, method="wilson")    # (0.40927543031016883, 0.9285207872478909)
    /// ```
    #[test]
    fn wilson_matches_statsmodels_on_tiny_counts() {
        let close = |a: f64, b: f64| (a - b).abs() < 1e-12;
        let (lo, hi) = wilson(1, 1).unwrap();
        assert!(close(lo, 0.2065493143772374) && hi == 1.0, "{lo} {hi}");
        let (lo, hi) = wilson(0, 8).unwrap();
        assert!(lo == 0.0 && close(hi, 0.32440756488388034), "{lo} {hi}");
        let (lo, hi) = wilson(6, 8).unwrap();
        assert!(close(lo, 0.40927543031016883) && close(hi, 0.9285207872478909));
        assert_eq!(wilson(0, 0), None);
    }

    /// ```python
    /// from statsmodels.stats.contingency_tables import mcnemar
    /// mcnemar([[0, 3], [12, 0]], exact=True).pvalue   # 0.03515625
    /// mcnemar([[0, 20], [31, 0]], exact=True).pvalue  # 0.16077960181198847
    /// ```
    #[test]
    fn mcnemar_matches_statsmodels() {
        assert!((mcnemar_exact(3, 12) - 0.03515625).abs() < 1e-12);
        assert!((mcnemar_exact(20, 31) - 0.16077960181198847).abs() < 1e-10);
        assert_eq!(mcnemar_exact(0, 0), 1.0);
        assert_eq!(mcnemar_exact(5, 5), 1.0);
    }

    #[test]
    fn resampling_by_patient_keeps_patients_whole() {
        let keys = [Some("a"), Some("a"), Some("b"), None, Some("b"), Some("a")];
        let r = Resampler::by_key(&keys);
        assert_eq!(r.groups(), 3);
        assert!(r.by_patient());
        assert_eq!(r.describe(), "patients (3 for 6 images)");
        let mut seen = 0;
        r.each(50, 3, |idx| {
            seen += 1;
            // Patient "a" (cases 0, 1, 5) comes as a whole or not at all, as often as drawn.
            let n = |c: usize| idx.iter().filter(|&&i| i == c).count();
            assert!(n(0) == n(1) && n(1) == n(5));
            assert!(n(2) == n(4));
        });
        assert_eq!(seen, 50);
        assert!(!Resampler::by_case(4).by_patient());
    }
}
