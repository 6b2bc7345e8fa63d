//! The network, in three rooms:
//! - [`layers`]: what a model is made of (the torchvision-compatible ResNet body, the fastai
//!   head, convolution, BatchNorm and linear layers, named parameters);
//! - [`ops`]: how it runs on the CPU (the convolution, BatchNorm, ReLU and pooling kernels,
//!   the training tape, the precision, the profiler);
//! - [`io`]: its files (our model file, pretrained torchvision/timm weights, the weights zoo,
//!   what ships with the program).
pub mod io;
pub mod layers;
pub mod ops;
#[cfg(test)]
mod test_util;

pub use layers::classifier::Classifier;
pub use layers::params::{Param, ParamKind, ParamStore};
pub use layers::resnet::Backbone;
pub use layers::torchvision::ResNet;
pub use layers::train_forward::TrainForward;
