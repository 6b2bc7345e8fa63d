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
