//! The COVID-ResNet classifier: a ResNet body cut before avgpool/fc plus the fastai head.
use super::head::Head;
use super::params::{init_rng, Builder, Param, ParamStore};
use super::resnet::{Backbone, ResNetBody};
use super::tape::Tape;
use crate::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, TensorId, Var};
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

    /// The body's feature map (N, F, h, w): the last convolutional block, used by Grad-CAM.
    pub fn features(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        self.body.forward_t(x, train)
    }

    /// Logits from a feature map.
    pub fn head_forward(&self, features: &Tensor, train: bool) -> Result<Tensor> {
        let seed = if train {
            let n = self.train_forwards.fetch_add(1, Ordering::SeqCst);
            self.seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ n
        } else {
            0
        };
        self.head.forward_t(features, train, seed)
    }

    /// A training-mode forward ready for its backward ([`TrainForward::backward`]): on the
    /// CPU the body's backward runs from a tape (`model::tape`: the same gradients, less
    /// memory and bookkeeping than candle's autograd), the head's through autograd.
    pub fn train_forward(&self, x: &Tensor) -> Result<TrainForward> {
        TrainForward::new(x, || self.features(x, true), |f| self.head_forward(f, true))
    }

    /// Evaluation-mode logits without recording an autograd graph (inference, test sets):
    /// each activation is freed once used.
    pub fn infer(&self, x: &Tensor) -> Result<Tensor> {
        super::params::no_grad(|| self.forward_t(x, false))
    }

    /// Evaluation-mode feature map without an autograd graph (Grad-CAM's starting point).
    pub fn infer_features(&self, x: &Tensor) -> Result<Tensor> {
        super::params::no_grad(|| self.features(x, false))
    }

    /// Logits (N, classes) for normalised images (N, 3, H, W).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.features(x, train)?;
        self.head_forward(&f, train)
    }
}

/// The result of [`Classifier::train_forward`].
pub struct TrainForward {
    logits: Tensor,
    /// The body's output, the head's leaf copy of it and the body's tape (CPU).
    body: Option<(TensorId, Var, Tape)>,
}

impl TrainForward {
    /// The training forward of `x` through `body` and then `head`: on the CPU the body's ops
    /// are recorded on a tape, and the head starts from a copy of the body's output that
    /// autograd treats as a leaf; elsewhere autograd throughout.
    pub(crate) fn new(
        x: &Tensor,
        body: impl FnOnce() -> Result<Tensor>,
        head: impl FnOnce(&Tensor) -> Result<Tensor>,
    ) -> Result<Self> {
        if !super::tape::supported(x.device(), x.dtype()) {
            return Ok(Self {
                logits: head(&body()?)?,
                body: None,
            });
        }
        let (features, tape) = super::tape::record(body)?;
        let leaf = Var::from_tensor(&features)?;
        let logits = head(leaf.as_tensor())?;
        Ok(Self {
            logits,
            body: Some((features.id(), leaf, tape)),
        })
    }

    /// The logits (N, classes).
    pub fn logits(&self) -> &Tensor {
        &self.logits
    }

    /// The gradients of `loss` (computed from [`Self::logits`]) for every trainable
    /// parameter.
    pub fn backward(self, loss: &Tensor) -> Result<GradStore> {
        let mut grads = loss.backward()?;
        if let Some((features, leaf, tape)) = self.body {
            if let Some(d) = grads.remove(leaf.as_tensor()) {
                tape.backward(features, d, &mut grads)?;
            }
        }
        Ok(grads)
    }
}
