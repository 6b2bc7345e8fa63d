//! The convolution layer every model uses (its weight and geometry); the kernels that run it
//! are `model::ops::conv`.
use super::params::{value, Builder, Init, ParamKind};
use crate::model::ops::conv::conv2d_of;
use crate::model::ops::pass::Pass;
use crate::Result;
use candle_core::{Tensor, Var};

/// A 2-D convolution without bias (ResNet convolutions are followed by BatchNorm).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Var,
    stride: usize,
    padding: usize,
}

impl Conv2d {
    /// A `k`x`k` convolution `c_in -> c_out`, initialised as torchvision does
    /// (Kaiming normal, fan_out, ReLU gain).
    pub fn new(
        b: &mut Builder,
        c_in: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        padding: usize,
    ) -> Result<Self> {
        let fan_out = (c_out * k * k) as f64;
        let weight = b.param(
            "weight",
            &[c_out, c_in, k, k],
            Init::Normal((2.0 / fan_out).sqrt()),
            ParamKind::Weight,
        )?;
        Ok(Self {
            weight,
            stride,
            padding,
        })
    }

    /// Applies the convolution to `x` of shape (N, C, H, W).
    pub fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let w = value(&self.weight, pass);
        let id = Some(self.weight.as_tensor().id());
        Ok(conv2d_of(x, &w, id, self.stride, self.padding, pass)?)
    }
}
