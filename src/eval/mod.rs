//! Evaluation: metrics with confidence intervals and the reports written to a run folder.
pub mod metrics;
pub mod plot;
pub mod report;
pub mod run;

pub use run::{evaluate, EvalOptions, EvalSet};
