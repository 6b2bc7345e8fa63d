//! covid-resnet: fine-tune a ResNet to screen chest radiographs (Farooq & Hafeez 2020).
//!
//! Research use only, not for diagnosis.

pub mod allocator;
pub mod app;
pub mod build_info;
pub mod cli;
pub mod data;
pub mod device;
pub mod error;
pub mod eval;
pub mod fetch;
pub mod files;
pub mod fmt;
pub mod infer;
pub mod model;
pub mod train;

pub use error::{Error, Result};

/// ImageNet channel means used for normalisation (torchvision / fastai).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet channel standard deviations used for normalisation.
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// The notice every front end shows.
pub const RESEARCH_NOTICE: &str = "Research use only - not a medical device and not for diagnosis.";
