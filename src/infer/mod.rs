//! Inference: files to class probabilities (or, for a multi-label model, findings), Grad-CAM
//! maps and input sanity warnings.
pub mod decision;
pub mod disagreement;
pub mod findings;
pub mod gradcam;
pub mod predictor;
pub mod probs;
pub mod sanity;

pub use gradcam::CamMap;
pub use predictor::{Prediction, Predictor};
pub use sanity::InputWarning;
