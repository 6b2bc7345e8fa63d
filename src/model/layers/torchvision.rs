//! torchvision's complete ResNet (body, average pool, `fc`), to check our numbers against
//! torchvision's and to count parameters; the program's own model is the `Classifier`.
use super::linear::Linear;
use super::params::{Builder, ParamStore};
use super::resnet::{Backbone, ResNetBody};
use super::train_forward::TrainForward;
use crate::model::ops::pass::{Compute, Pass};
use crate::model::ops::pool::global_avg_pool;
use crate::Result;
use candle_core::{DType, Device, Tensor};
use std::collections::HashSet;

/// A complete torchvision ResNet (body, average pool, `fc`): used to check our numbers
/// against torchvision and to count parameters.
#[derive(Debug, Clone)]
pub struct ResNet {
    /// The parameters, named exactly as torchvision's state_dict.
    pub store: ParamStore,
    body: ResNetBody,
    fc: Linear,
    compute: Compute,
}

impl ResNet {
    /// A randomly initialised ResNet with a `num_classes` fc.
    pub fn new(backbone: Backbone, num_classes: usize, seed: u64, device: &Device) -> Result<Self> {
        Self::with_dtype(backbone, num_classes, seed, device, DType::F32)
    }

    /// The same with tensors of `dtype` (float64 separates rounding from real differences).
    pub fn with_dtype(
        backbone: Backbone,
        num_classes: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let mut store = ParamStore::with_dtype(device, dtype);
        let mut rng = super::params::init_rng(seed);
        let mut b = Builder::new(&mut store, &mut rng);
        let body = ResNetBody::new(&mut b, backbone)?;
        let fc = Linear::torch_default(&mut b.pp("fc"), backbone.features(), num_classes)?;
        Ok(Self {
            store,
            body,
            fc,
            compute: Compute::default(),
        })
    }

    /// Logits (N, num_classes).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let pass = Pass::autograd(self.compute, train);
        let f = self.body.forward(x, &pass)?;
        self.fc.forward(&global_avg_pool(&f)?, &pass)
    }

    /// Computes in `compute` from now on.
    pub fn set_compute(&mut self, compute: Compute) {
        if compute.precision == crate::model::ops::precision::Precision::Bf16 {
            // Which kernel runs bf16 products here is chosen now, outside any product.
            crate::model::ops::conv::bf16_choice::ensure();
        }
        self.compute = compute;
    }

    /// A training-mode forward as training runs it (the body's backward from a tape on the
    /// CPU, see [`super::Classifier::train_forward`]).
    pub fn train_forward(&self, x: &Tensor) -> Result<TrainForward> {
        TrainForward::new(
            x,
            self.compute,
            &HashSet::new(),
            |pass| self.body.forward(x, pass),
            |f, pass| self.fc.forward(&global_avg_pool(f)?, pass),
        )
    }
}

impl candle_core::ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        ResNet::forward_t(self, xs, train).map_err(candle_core::Error::wrap)
    }
}
