//! Inference: files to class probabilities.
pub mod predictor;

pub use predictor::{Prediction, Predictor};
