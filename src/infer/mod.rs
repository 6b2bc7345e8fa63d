//! Inference: files to class probabilities, Grad-CAM maps and input sanity warnings.
pub mod decision;
pub mod disagreement;
pub mod gradcam;
pub mod predictor;
pub mod probs;
pub mod sanity;

pub use gradcam::CamMap;
pub use predictor::{Prediction, Predictor};
pub use sanity::InputWarning;
