//! Probabilities from a model's outputs, in one place: log-softmax rows, probabilities, the
//! predicted class. A leaf: the predictor and Grad-CAM both use it.
use crate::Result;
use candle_core::{DType, Device, Tensor, D};

/// Log-probabilities (one row per image) from logits: log-softmax in the model's dtype,
/// then f32. Probabilities anywhere in the program are `exp` of these rows, so the Viewer,
/// `predict`, `eval` and the review agree to the bit.
pub fn log_softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    Ok(candle_nn::ops::log_softmax(logits, D::Minus1)?
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .to_vec2::<f32>()?)
}

/// Probabilities from a row of log-probabilities.
pub fn probs_of(log_probs: &[f32]) -> Vec<f32> {
    log_probs.iter().map(|v| v.exp()).collect()
}

/// Index of the largest value (the first one on ties).
pub fn argmax(v: &[f32]) -> usize {
    v.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| {
            if x > bv {
                (i, x)
            } else {
                (bi, bv)
            }
        })
        .0
}

/// The log of the mean of several networks' probabilities, per image: `members[m][i]` is
/// network m's log-probability row for image i. Computed as max + ln(mean(exp(lp - max)))
/// per class, so that no probability underflows on the way.
pub fn mean_log_probs(members: &[Vec<Vec<f32>>]) -> Vec<Vec<f32>> {
    let Some(first) = members.first() else {
        return Vec::new();
    };
    let m = members.len() as f64;
    (0..first.len())
        .map(|i| {
            (0..first[i].len())
                .map(|c| {
                    let vals = members.iter().map(|net| net[i][c] as f64);
                    let max = vals.clone().fold(f64::NEG_INFINITY, f64::max);
                    if max == f64::NEG_INFINITY {
                        return f32::NEG_INFINITY;
                    }
                    let sum: f64 = vals.map(|v| (v - max).exp()).sum();
                    (max + (sum / m).ln()) as f32
                })
                .collect()
        })
        .collect()
}

/// Temperature scaling of a row of log-probabilities: log-softmax(lp / t), in f64. For one
/// network's log-softmax output this equals log-softmax(logits / t).
pub fn tempered_log(lp: impl IntoIterator<Item = f64>, t: f64) -> Vec<f64> {
    let z: Vec<f64> = lp.into_iter().map(|v| v / t).collect();
    let max = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let lse = max + z.iter().map(|v| (v - max).exp()).sum::<f64>().ln();
    z.iter().map(|v| v - lse).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The mean of probabilities, by hand: members (0.7, 0.2, 0.1) and (0.1, 0.3, 0.6)
    /// average to (0.4, 0.25, 0.35).
    #[test]
    fn the_mean_of_two_networks_is_the_mean_of_their_probabilities() {
        let lp = |p: [f32; 3]| vec![p.iter().map(|v| v.ln()).collect::<Vec<f32>>()];
        let mean = mean_log_probs(&[lp([0.7, 0.2, 0.1]), lp([0.1, 0.3, 0.6])]);
        let p = probs_of(&mean[0]);
        for (got, want) in p.iter().zip([0.4f32, 0.25, 0.35]) {
            assert!((got - want).abs() < 1e-6, "{p:?}");
        }
        // One very unlikely class in both does not underflow to -inf.
        let tiny = mean_log_probs(&[vec![vec![-200.0, 0.0]], vec![vec![-202.0, 0.0]]]);
        assert!(tiny[0][0].is_finite() && tiny[0][0] < -199.0, "{tiny:?}");
    }

    /// Temperature 2 on probabilities (0.8, 0.2): softmax(ln p / 2) = (2/3, 1/3)
    /// (sqrt 0.8 : sqrt 0.2 = 2 : 1).
    #[test]
    fn a_temperature_on_log_probabilities_is_the_power_of_the_probabilities() {
        let t = tempered_log([0.8f64.ln(), 0.2f64.ln()], 2.0);
        let p: Vec<f64> = t.iter().map(|v| v.exp()).collect();
        assert!(
            (p[0] - 2.0 / 3.0).abs() < 1e-6 && (p[1] - 1.0 / 3.0).abs() < 1e-6,
            "{p:?}"
        );
    }
}
