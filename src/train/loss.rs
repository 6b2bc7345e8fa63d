//! The training loss: cross-entropy, optionally weighted per class against imbalance.
use crate::{Error, Result};
use candle_core::{DType, Tensor, D};
use serde::{Deserialize, Serialize};

/// Per-class weights of the loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeights {
    /// Every image counts the same (the paper).
    #[default]
    None,
    /// Inverse class frequency in the training split, as COVID-Net trained: scikit-learn's
    /// `compute_class_weight("balanced")`, n / (k * n_c).
    Auto,
}

impl ClassWeights {
    /// Every choice, in the order menus list them.
    pub const ALL: [Self; 2] = [Self::None, Self::Auto];

    /// The name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Auto => "auto",
        }
    }

    /// The weights for training-split class counts `counts` (None: unweighted).
    pub fn weights(self, counts: &[usize]) -> Option<Vec<f64>> {
        match self {
            Self::None => None,
            Self::Auto => Some(balanced_weights(counts)),
        }
    }
}

impl std::str::FromStr for ClassWeights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|k| k.name().eq_ignore_ascii_case(s.trim()))
            .ok_or_else(|| Error::invalid("class weights", format!("{s:?}: expected none or auto")))
    }
}

/// scikit-learn's balanced class weights, n / (k * n_c), over the classes that have images;
/// a class without training images gets 0 (it never appears in the loss anyway).
pub fn balanced_weights(counts: &[usize]) -> Vec<f64> {
    let n: usize = counts.iter().sum();
    let k = counts.iter().filter(|&&c| c > 0).count();
    counts
        .iter()
        .map(|&c| {
            if c == 0 {
                0.0
            } else {
                n as f64 / (k as f64 * c as f64)
            }
        })
        .collect()
}

/// Mean cross-entropy of `logits` (batch, classes) against labels `y` (u32, batch), as
/// PyTorch's `CrossEntropyLoss(weight=w)`: sum_i w[y_i] * -log p_i[y_i] / sum_i w[y_i].
/// Without weights, candle's plain mean.
pub fn cross_entropy(logits: &Tensor, y: &Tensor, weights: Option<&Tensor>) -> Result<Tensor> {
    let Some(w) = weights else {
        return Ok(candle_nn::loss::cross_entropy(logits, y)?);
    };
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = logp.gather(&y.unsqueeze(1)?, 1)?.squeeze(1)?;
    let wy = w.to_dtype(logits.dtype())?.index_select(y, 0)?;
    let num = (picked * &wy)?.sum_all()?.neg()?;
    let den = wy.sum_all()?;
    Ok(num.broadcast_div(&den)?)
}

/// The weights as a tensor on `device`, in the logits' precision.
pub fn weight_tensor(w: &[f64], device: &candle_core::Device) -> Result<Tensor> {
    let v: Vec<f32> = w.iter().map(|&x| x as f32).collect();
    Ok(Tensor::from_vec(v, w.len(), device)?.to_dtype(DType::F32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// sklearn 1.9.1: `compute_class_weight("balanced", classes=[0,1,2,3], y=...)` with
    /// labels drawn with counts 1341, 2530, 1345, 60.
    #[test]
    fn balanced_weights_match_scikit_learn() {
        let w = balanced_weights(&[1341, 2530, 1345, 60]);
        let sk = [
            0.983_594_332_6,
            0.521_343_873_5,
            0.980_669_144_98,
            21.983_333_333,
        ];
        for (a, b) in w.iter().zip(sk) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
        assert_eq!(balanced_weights(&[3, 0, 1]), vec![4.0 / 6.0, 0.0, 2.0]);
    }

    /// sklearn 1.9.1: `log_loss(y, softmax(logits), sample_weight=w[y])`, which is PyTorch's
    /// weighted `CrossEntropyLoss` definition.
    #[test]
    fn weighted_cross_entropy_matches_scikit_learn() {
        let dev = Device::Cpu;
        let logits = Tensor::new(
            &[
                [2.0f32, 0.5, -1.0],
                [0.1, 0.2, 0.3],
                [-0.5, 1.5, 0.0],
                [1.0, -2.0, 2.5],
            ],
            &dev,
        )
        .unwrap();
        let y = Tensor::new(&[0u32, 2, 1, 1], &dev).unwrap();
        let w = weight_tensor(&[0.5, 2.0, 1.0], &dev).unwrap();
        let l = cross_entropy(&logits, &y, Some(&w))
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((l - 2.028_403_5).abs() < 1e-5, "{l}");
        let plain = cross_entropy(&logits, &y, None)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!((plain - 1.565_016_1).abs() < 1e-5, "{plain}");
    }
}
