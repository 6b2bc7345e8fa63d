//! The network: a torchvision-compatible ResNet body, the fastai head, weight files.
pub mod act;
pub mod bn_op;
pub mod checkpoint;
pub mod classifier;
pub mod conv;
mod cpu_op;
pub mod head;
mod max_pool;
pub mod norm;
pub mod params;
pub mod pool;
pub mod precision;
pub mod prof;
pub mod resnet;
pub mod shipped;
#[cfg(test)]
mod stored16_tests;
pub mod tape;
#[cfg(test)]
mod test_util;
pub mod weights;
pub mod zoo;

pub use classifier::{Classifier, TrainForward};
pub use params::{Param, ParamKind, ParamStore};
pub use resnet::{Backbone, ResNet};
