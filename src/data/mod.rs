//! Reading images and turning them into network inputs.
pub mod decode;
pub mod preprocess;
