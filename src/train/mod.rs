//! Training: the optimizer with parameter groups (schedules and the loop build on it).
pub mod optim;
