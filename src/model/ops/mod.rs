//! How the layers run on the CPU: custom candle ops for the convolution, BatchNorm, ReLU and
//! pooling (forward and backward), the tape that runs the body's backward, the precision of
//! the products and a small profiler.
pub mod batch_norm;
pub mod conv;
pub(crate) mod cpu_op;
pub(crate) mod max_pool;
pub mod pass;
pub mod pool;
pub mod precision;
pub mod prof;
pub mod relu;
#[cfg(test)]
mod stored16_tests;
pub mod tape;
