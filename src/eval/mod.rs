//! Evaluation: metrics with confidence intervals and the reports written to a run folder.
pub mod calibration;
pub mod charts;
pub mod compare;
pub mod disagreement;
pub mod findings;
pub mod findings_report;
pub mod metrics;
pub mod operating;
pub mod plot;
pub mod report;
pub mod report_files;
pub mod roc;
pub mod run;
pub mod scores;
pub mod stats;

pub use run::{evaluate, EvalOptions, EvalSet};
