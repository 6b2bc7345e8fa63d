//! Reading datasets and images and turning them into network inputs.
pub mod augment;
pub mod cache;
pub mod check;
pub mod decode;
pub mod dicom;
pub mod disk_cache;
pub mod findings;
pub mod fingerprint;
pub mod gray;
pub mod loader;
pub mod preprocess;
pub mod sampler;
pub mod split;
pub mod synth;
