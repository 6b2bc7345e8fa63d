//! The training losses: cross-entropy for single-label classes, optionally weighted per
//! class against imbalance; masked binary cross-entropy on logits for findings (multi-label),
//! optionally with per-label positive weights.
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

/// `log(1 + exp(z))` without overflow: `max(z, 0) + log(1 + exp(-|z|))`.
fn softplus(z: &Tensor) -> Result<Tensor> {
    Ok((z.relu()? + (z.abs()?.neg()?.exp()? + 1.0)?.log()?)?)
}

/// Binary cross-entropy on logits for findings: `logits`, `targets` and `mask` (batch,
/// labels), `pos_weight` (labels) or none. Each element's loss is PyTorch's
/// `BCEWithLogitsLoss(pos_weight=pw)` term, `-(pw y log s(x) + (1 - y) log(1 - s(x)))` with
/// `s` the sigmoid, computed as `pw y softplus(-x) + (1 - y) softplus(x)`; the result is the
/// mean over the elements whose mask is 1 (uncertain labels under `ignore` have mask 0),
/// which is PyTorch's loss of the unmasked elements `x[m], y[m]`; 0 when none is.
pub fn masked_bce(
    logits: &Tensor,
    targets: &Tensor,
    mask: &Tensor,
    pos_weight: Option<&Tensor>,
) -> Result<Tensor> {
    let dt = logits.dtype();
    let (y, m) = (targets.to_dtype(dt)?, mask.to_dtype(dt)?);
    let pos = (&y * softplus(&logits.neg()?)?)?;
    let pos = match pos_weight {
        Some(w) => pos.broadcast_mul(&w.to_dtype(dt)?.unsqueeze(0)?)?,
        None => pos,
    };
    let neg = ((1.0 - &y)? * softplus(logits)?)?;
    let num = ((pos + neg)? * &m)?.sum_all()?;
    let den = m.sum_all()?.maximum(1.0)?;
    Ok(num.broadcast_div(&den)?)
}

/// Per-label positive weights for [`masked_bce`] (`auto`, as PyTorch's documentation
/// suggests): negatives / positives among the counted (mask 1) training targets; 1 for a
/// label without positives or negatives. `targets` and `mask` hold one row an image.
pub fn auto_pos_weights(targets: &[Vec<f32>], mask: &[Vec<f32>], labels: usize) -> Vec<f64> {
    let (mut pos, mut neg) = (vec![0.0f64; labels], vec![0.0f64; labels]);
    for (t, m) in targets.iter().zip(mask) {
        for l in 0..labels {
            pos[l] += (m[l] * t[l]) as f64;
            neg[l] += (m[l] * (1.0 - t[l])) as f64;
        }
    }
    pos.iter()
        .zip(&neg)
        .map(|(&p, &n)| if p > 0.0 && n > 0.0 { n / p } else { 1.0 })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// The loss and its gradient on fixed numbers, against PyTorch's definition computed in
    /// float64 (numpy 2, the formula of `torch.nn.BCEWithLogitsLoss`):
    /// ```python
    /// x = np.array([[2.0, -1.0, 0.5], [-3.0, 0.25, 40.0]]); y = np.array([[1, 0, 1], [0, 1, 0.]])
    /// m = np.array([[1, 1, 0], [1, 1, 1.]]); pw = np.array([2.0, 0.5, 3.0])
    /// sp = lambda z: np.logaddexp(0, z)
    /// l = pw * y * sp(-x) + (1 - y) * sp(x); (l * m).sum() / m.sum()   # 8.3086...
    /// s = 1 / (1 + np.exp(-x)); g = m * (s * (pw * y + 1 - y) - pw * y) / m.sum()
    /// ```
    /// and, without weights or mask, scikit-learn's `log_loss`.
    #[test]
    fn masked_bce_is_pytorchs_bce_with_logits_of_the_counted_elements() {
        let dev = Device::Cpu;
        let xv = [[2.0f64, -1.0, 0.5], [-3.0, 0.25, 40.0]];
        let yv = [[1.0f64, 0.0, 1.0], [0.0, 1.0, 0.0]];
        let mv = [[1.0f64, 1.0, 0.0], [1.0, 1.0, 1.0]];
        let pw = [2.0f64, 0.5, 3.0];
        let sp = |z: f64| z.max(0.0) + (-z.abs()).exp().ln_1p();
        let (mut num, mut den) = (0.0, 0.0);
        let mut grad = [[0.0f64; 3]; 2];
        for i in 0..2 {
            for j in 0..3 {
                let (x, y, m) = (xv[i][j], yv[i][j], mv[i][j]);
                num += m * (pw[j] * y * sp(-x) + (1.0 - y) * sp(x));
                den += m;
                let s = 1.0 / (1.0 + (-x).exp());
                grad[i][j] = m * (s * (pw[j] * y + 1.0 - y) - pw[j] * y);
            }
        }
        let want = num / den;
        // By hand: 2*softplus(-2) + softplus(-1) + softplus(-3) + 0.5*softplus(-0.25) + 40 + log1p(e^-40).
        let by_hand = (2.0 * sp(-2.0) + sp(-1.0) + sp(-3.0) + 0.5 * sp(-0.25) + 40.0) / 5.0;
        assert!((want - by_hand).abs() < 1e-12);
        let x = candle_core::Var::new(&xv, &dev).unwrap();
        let t = |v: &[[f64; 3]; 2]| Tensor::new(v, &dev).unwrap();
        let w = Tensor::new(&pw, &dev).unwrap();
        let l = masked_bce(x.as_tensor(), &t(&yv), &t(&mv), Some(&w)).unwrap();
        assert!((l.to_scalar::<f64>().unwrap() - want).abs() < 1e-12);
        let g = l.backward().unwrap();
        let gx = g.get(x.as_tensor()).unwrap().to_vec2::<f64>().unwrap();
        for i in 0..2 {
            for j in 0..3 {
                assert!((gx[i][j] - grad[i][j] / den).abs() < 1e-12, "{i},{j}");
            }
        }
        // Unweighted and unmasked, on logits without the extreme one (scikit-learn clips
        // probabilities at 1e-15): scikit-learn 1.9.1,
        // `log_loss(y.ravel(), expit(x2).ravel())` with x2 = x but 4.0 for 40.0.
        let x2 = t(&[[2.0, -1.0, 0.5], [-3.0, 0.25, 4.0]]);
        let plain = masked_bce(&x2, &t(&yv), &t(&[[1.0; 3]; 2]), None)
            .unwrap()
            .to_scalar::<f64>()
            .unwrap();
        assert!((plain - 0.926_157_230_351_949_7).abs() < 1e-12, "{plain}");
        // Nothing counted: 0, not NaN.
        let none = masked_bce(x.as_tensor(), &t(&yv), &t(&[[0.0; 3]; 2]), None).unwrap();
        assert_eq!(none.to_scalar::<f64>().unwrap(), 0.0);
    }

    #[test]
    fn auto_pos_weights_are_negatives_over_positives_of_the_counted_targets() {
        let t = vec![
            vec![1.0, 0.0, 0.0],
            vec![0.0, 0.0, 1.0],
            vec![0.0, 0.0, 1.0],
            vec![1.0, 0.0, 0.0],
        ];
        let m = vec![
            vec![1.0, 1.0, 1.0],
            vec![1.0, 1.0, 0.0],
            vec![1.0, 1.0, 1.0],
            vec![0.0, 1.0, 1.0],
        ];
        // Label 0: counted 1,0,0 -> 2/1; label 1: no positive -> 1; label 2: 0,_,1,0 -> 2/1.
        assert_eq!(auto_pos_weights(&t, &m, 3), vec![2.0, 1.0, 2.0]);
    }

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
