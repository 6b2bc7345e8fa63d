//! The COVID-ResNet classifier: a ResNet body cut before avgpool/fc plus the fastai head.
use super::head::Head;
use super::params::{init_rng, Builder, Param, ParamStore};
use super::resnet::{Backbone, ResNetBody};
use super::train_forward::TrainForward;
use crate::model::ops::conv::PackedWeights;
use crate::model::ops::pass::{Compute, Pass};
use crate::Result;
use candle_core::{DType, Device, Tensor, TensorId};
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

/// Number of fastai parameter groups (stem+layer1+layer2, layer3+layer4, head).
pub const NUM_GROUPS: usize = 3;
/// Index of the head's parameter group.
pub const HEAD_GROUP: usize = 2;

/// Body + head with its parameters.
#[derive(Debug, Clone)]
pub struct Classifier {
    store: ParamStore,
    body: ResNetBody,
    head: Head,
    backbone: Backbone,
    num_classes: usize,
    seed: u64,
    /// Training forwards so far: with the seed it determines the next dropout masks.
    train_forwards: Arc<AtomicU64>,
    /// Kernel and precision of its passes.
    compute: Compute,
}

impl Classifier {
    /// A classifier with torchvision's random body init and fastai's head init, all drawn
    /// from `seed`.
    pub fn new(backbone: Backbone, num_classes: usize, seed: u64, device: &Device) -> Result<Self> {
        Self::with_dtype(backbone, num_classes, seed, device, DType::F32)
    }

    /// The same with tensors of `dtype` (float64 for gradient checks).
    pub fn with_dtype(
        backbone: Backbone,
        num_classes: usize,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let mut store = ParamStore::with_dtype(device, dtype);
        let mut rng = init_rng(seed);
        let mut b = Builder::new(&mut store, &mut rng);
        let body = ResNetBody::new(&mut b.pp("body"), backbone)?;
        let head = Head::new(
            &mut b.group(HEAD_GROUP).pp("head"),
            backbone.features(),
            num_classes,
        )?;
        Ok(Self {
            store,
            body,
            head,
            backbone,
            num_classes,
            seed,
            train_forwards: Arc::new(AtomicU64::new(0)),
            compute: Compute::default(),
        })
    }

    /// The backbone kind.
    pub fn backbone(&self) -> Backbone {
        self.backbone
    }

    /// Number of output classes.
    pub fn num_classes(&self) -> usize {
        self.num_classes
    }

    /// The parameters and buffers.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The device the model lives on.
    pub fn device(&self) -> &Device {
        self.store.device()
    }

    /// Parameters of group `g` (0 = stem+layer1+layer2, 1 = layer3+layer4, 2 = head).
    pub fn group_params(&self, g: usize) -> Vec<&Param> {
        self.store
            .params()
            .iter()
            .filter(|p| p.group == g)
            .collect()
    }

    /// Training forwards done so far (saved in checkpoints so dropout resumes exactly).
    pub fn train_forwards(&self) -> u64 {
        self.train_forwards.load(Ordering::SeqCst)
    }

    /// Restores the training-forward counter from a checkpoint.
    pub fn set_train_forwards(&self, n: u64) {
        self.train_forwards.store(n, Ordering::SeqCst)
    }

    /// What the model computes with (kernel, precision).
    pub fn compute(&self) -> Compute {
        self.compute
    }

    /// Computes in `compute` from now on (the convolution kernel and the precision of its
    /// products: `--precision`, `bench --conv`).
    pub fn set_compute(&mut self, compute: Compute) {
        if compute.precision == crate::model::ops::precision::Precision::Bf16 {
            // Which kernel runs bf16 products here is chosen now, outside any product.
            crate::model::ops::conv::bf16_choice::ensure();
        }
        self.compute = compute;
    }

    /// The body's feature map (N, F, h, w), the last convolutional block, on autograd.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.body.forward(x, &Pass::autograd(self.compute, train))
    }

    /// Logits from a feature map, on autograd (Grad-CAM differentiates them).
    pub fn head_forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        self.head_in(features, &Pass::autograd(self.compute, train))
    }

    /// The head in `pass`; a training pass draws the next dropout masks.
    fn head_in(&self, features: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let seed = if pass.train {
            let n = self.train_forwards.fetch_add(1, Ordering::SeqCst);
            self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ n
        } else {
            0
        };
        self.head.forward(features, pass, seed)
    }

    /// A training-mode forward ready for its backward ([`TrainForward::backward`]), with the
    /// parameters in `frozen` read detached (no gradient for them): on the CPU the body's
    /// backward runs from a tape (`ops::tape`: the same gradients, less memory and
    /// bookkeeping than candle's autograd), the head's through autograd.
    pub fn train_forward(&self, x: &Tensor, frozen: &HashSet<TensorId>) -> Result<TrainForward> {
        TrainForward::new(
            x,
            self.compute,
            frozen,
            |pass| self.body.forward(x, pass),
            |f, pass| self.head_in(f, pass),
        )
    }

    /// Evaluation-mode logits without recording an autograd graph (inference, test sets):
    /// each activation is freed once used.
    pub fn infer(&self, x: &Tensor) -> Result<Tensor> {
        self.forward(x, &Pass::infer(self.compute))
    }

    /// [`Self::infer`] taking bf16 convolution weights packed from `packed`, which keeps
    /// them packed for the next call: the caller promises the weights no longer change (see
    /// `model::ops::conv::PackedWeights`).
    pub fn infer_packed(&self, x: &Tensor, packed: &PackedWeights) -> Result<Tensor> {
        self.forward(x, &Pass::infer(self.compute).with_packed(packed))
    }

    /// Evaluation-mode feature map without an autograd graph (Grad-CAM's starting point),
    /// bf16 weights packed from `packed` as [`Self::infer_packed`] takes them.
    pub fn infer_features(&self, x: &Tensor, packed: &PackedWeights) -> Result<Tensor> {
        self.body
            .forward(x, &Pass::infer(self.compute).with_packed(packed))
    }

    /// Logits (N, classes) for normalised images (N, 3, H, W), on autograd.
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.forward(x, &Pass::autograd(self.compute, train))
    }

    /// Logits in `pass` (its compute, not the model's, applies).
    pub fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let f = self.body.forward(x, pass)?;
        self.head_in(&f, pass)
    }
}
