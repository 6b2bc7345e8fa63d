//! What a model is made of: layers with their parameters and forward passes.
pub mod batch_norm;
pub mod classifier;
pub mod conv;
pub mod head;
pub mod linear;
pub mod params;
pub mod resnet;
pub mod torchvision;
pub mod train_forward;
