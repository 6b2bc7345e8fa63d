//! Training: optimizer with parameter groups, one-cycle, LR finder, the staged plan, the loop,
//! distillation from a teacher.
mod adam_step;
pub mod checkpoint;
pub mod config;
pub mod distill;
pub mod events;
pub mod loss;
pub mod lr_finder;
pub mod members;
pub mod one_cycle;
pub mod optim;
pub mod progress;
pub mod resume;
pub mod run_dir;
pub mod schedule;
pub mod trainer;
pub mod worker;
