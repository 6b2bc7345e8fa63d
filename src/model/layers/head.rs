//! fastai's `create_head` for a ResNet body: AdaptiveConcatPool2d -> Flatten ->
//! BatchNorm1d -> Dropout(0.25) -> Linear(2F, 512) -> ReLU -> BatchNorm1d(512) ->
//! Dropout(0.5) -> Linear(512, classes), Kaiming-normal weights and zero biases.
//! Tensor names follow fastai's Sequential indices (2, 4, 6, 8).
use super::batch_norm::BatchNorm;
use super::linear::Linear;
use super::params::{Builder, Init};
use crate::model::ops::pass::Pass;
use crate::model::ops::pool::concat_pool;
use crate::Result;
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Width of the hidden layer (fastai default `lin_ftrs=[512]`).
pub const HIDDEN: usize = 512;
/// Dropout probabilities (fastai default `ps=0.5` -> [0.25, 0.5]).
pub const DROPOUT: [f64; 2] = [0.25, 0.5];

/// The classification head.
#[derive(Debug, Clone)]
pub struct Head {
    bn1: BatchNorm,
    lin1: Linear,
    bn2: BatchNorm,
    lin2: Linear,
}

impl Head {
    /// A head for a body with `features` output channels.
    pub fn new(b: &mut Builder, features: usize, num_classes: usize) -> Result<Self> {
        let n_in = 2 * features;
        let kaiming = |fan_in: usize| Init::Normal((2.0 / fan_in as f64).sqrt());
        Ok(Self {
            bn1: BatchNorm::new(&mut b.pp("2"), n_in)?,
            lin1: Linear::new(
                &mut b.pp("4"),
                n_in,
                HIDDEN,
                kaiming(n_in),
                Init::Const(0.0),
            )?,
            bn2: BatchNorm::new(&mut b.pp("6"), HIDDEN)?,
            lin2: Linear::new(
                &mut b.pp("8"),
                HIDDEN,
                num_classes,
                kaiming(HIDDEN),
                Init::Const(0.0),
            )?,
        })
    }

    /// Body features (N, F, h, w) -> logits (N, classes). `dropout_seed` seeds the dropout
    /// masks of this forward (training only), so runs are reproducible.
    pub fn forward(&self, features: &Tensor, pass: &Pass<'_>, dropout_seed: u64) -> Result<Tensor> {
        let n = features.dim(0)?;
        let train = pass.train;
        if !train && n > 1 {
            // In evaluation each image goes alone: a matrix product rounds differently with
            // one row than with many (gemm takes another path), and an image must get the
            // same probabilities alone (Viewer, predict) as in a batch (eval, review).
            let rows = (0..n)
                .map(|i| self.forward(&features.narrow(0, i, 1)?, pass, 0))
                .collect::<Result<Vec<_>>>()?;
            return Ok(Tensor::cat(&rows, 0)?);
        }
        let x = concat_pool(features)?;
        let x = self.bn1.forward(&x, pass)?;
        let x = dropout(&x, DROPOUT[0], train, dropout_seed, 0)?;
        let x = self.lin1.forward(&x, pass)?.relu()?;
        let x = self.bn2.forward(&x, pass)?;
        let x = dropout(&x, DROPOUT[1], train, dropout_seed, 1)?;
        self.lin2.forward(&x, pass)
    }
}

/// Inverted dropout with a mask drawn from our own RNG seeded by (seed, layer).
pub fn dropout(x: &Tensor, p: f64, train: bool, seed: u64, layer: u64) -> Result<Tensor> {
    if !train || p <= 0.0 {
        return Ok(x.clone());
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ layer.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let keep = 1.0 - p;
    let scale = (1.0 / keep) as f32;
    let mask: Vec<f32> = (0..x.elem_count())
        .map(|_| {
            if rng.random::<f64>() < keep {
                scale
            } else {
                0.0
            }
        })
        .collect();
    let mask = Tensor::from_vec(mask, x.dims(), &Device::Cpu)?
        .to_dtype(x.dtype())?
        .to_device(x.device())?;
    Ok((x * mask)?)
}

#[cfg(test)]
mod tests {
    use crate::model::{Backbone, Classifier};
    use candle_core::{Device, Tensor};

    #[test]
    fn evaluation_logits_do_not_depend_on_the_batch() {
        let m = Classifier::new(Backbone::Resnet18, 4, 11, &Device::Cpu).unwrap();
        let x = Tensor::randn(0f32, 1.0, (5, 3, 48, 48), &Device::Cpu).unwrap();
        let all = m.infer(&x).unwrap().to_vec2::<f32>().unwrap();
        for (i, row) in all.iter().enumerate() {
            let one = m.infer(&x.narrow(0, i, 1).unwrap()).unwrap();
            assert_eq!(&one.to_vec2::<f32>().unwrap()[0], row, "image {i}");
        }
    }
}
