//! Integration tests, compiled as one binary (link time matters).
mod app_training;
mod app_viewer;
mod app_window;
mod common;
mod crash;
mod data_check;
mod hostile;
mod model_files;
mod one_path;
mod predict_cli;
mod safety;
mod torchvision_fixture;
mod train_cli;
mod training;
mod viewer_infer;
mod weights_fetch;
