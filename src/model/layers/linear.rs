//! A fully-connected layer with PyTorch's default initialisation.
use super::params::{value, Builder, Init, ParamKind};
use crate::model::ops::pass::Pass;
use crate::Result;
use candle_core::{Tensor, Var};

/// A fully-connected layer `y = x W^T + b`.
#[derive(Debug, Clone)]
pub struct Linear {
    weight: Var,
    bias: Var,
}

impl Linear {
    /// A linear layer with explicit initialisation of weight and bias.
    pub fn new(
        b: &mut Builder,
        c_in: usize,
        c_out: usize,
        w_init: Init,
        b_init: Init,
    ) -> Result<Self> {
        Ok(Self {
            weight: b.param("weight", &[c_out, c_in], w_init, ParamKind::Weight)?,
            bias: b.param("bias", &[c_out], b_init, ParamKind::Bias)?,
        })
    }

    /// torchvision/PyTorch default init: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for both.
    pub fn torch_default(b: &mut Builder, c_in: usize, c_out: usize) -> Result<Self> {
        let bound = 1.0 / (c_in as f64).sqrt();
        Self::new(b, c_in, c_out, Init::Uniform(bound), Init::Uniform(bound))
    }

    /// (N, in) -> (N, out).
    pub fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        Ok(x.matmul(&value(&self.weight, pass).t()?)?
            .broadcast_add(&value(&self.bias, pass))?)
    }
}
