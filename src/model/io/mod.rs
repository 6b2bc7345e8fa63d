//! The model's files: our model file (safetensors with metadata; one network or an ensemble), pretrained torchvision/timm
//! weights, the zoo they are fetched from, and what ships with the program.
pub mod ensemble;
pub mod model_file;
pub mod pretrained;
pub mod shipped;
pub mod zoo;
