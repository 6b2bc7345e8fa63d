//! ResNet-18/34/50 in torchvision's layout and tensor names, trainable (BatchNorm in train
//! mode uses batch statistics), unlike `candle_transformers::models::resnet`.
use super::act::add_relu;
use super::conv::Conv2d;
use super::norm::BatchNorm;
use super::params::{Builder, Init, ParamKind, ParamStore};
use super::pool::global_avg_pool;
use super::pool::max_pool2d;
use crate::{Error, Result};
use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// The supported ResNet depths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Backbone {
    /// ResNet-18 (basic blocks).
    Resnet18,
    /// ResNet-34 (basic blocks).
    Resnet34,
    /// ResNet-50 (bottleneck blocks), the paper's model.
    Resnet50,
}

impl Backbone {
    /// All backbones.
    pub const ALL: [Backbone; 3] = [Self::Resnet18, Self::Resnet34, Self::Resnet50];

    /// Blocks per stage.
    pub fn layers(self) -> [usize; 4] {
        match self {
            Self::Resnet18 => [2, 2, 2, 2],
            Self::Resnet34 | Self::Resnet50 => [3, 4, 6, 3],
        }
    }

    /// True for bottleneck blocks.
    pub fn bottleneck(self) -> bool {
        matches!(self, Self::Resnet50)
    }

    /// Channels of the body's output (input of avgpool/fc).
    pub fn features(self) -> usize {
        if self.bottleneck() {
            2048
        } else {
            512
        }
    }

    /// The name used in files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Resnet18 => "resnet18",
            Self::Resnet34 => "resnet34",
            Self::Resnet50 => "resnet50",
        }
    }
}

impl std::fmt::Display for Backbone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Backbone {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        let norm: String = s
            .chars()
            .filter(|c| c.is_ascii_alphanumeric())
            .collect::<String>()
            .to_ascii_lowercase();
        Self::ALL
            .into_iter()
            .find(|b| b.name() == norm)
            .ok_or_else(|| {
                Error::invalid(
                    "backbone",
                    format!("{s:?}: expected resnet18, resnet34 or resnet50"),
                )
            })
    }
}

#[derive(Debug, Clone)]
struct Downsample {
    conv: Conv2d,
    bn: BatchNorm,
}

#[derive(Debug, Clone)]
struct Block {
    convs: Vec<(Conv2d, BatchNorm)>,
    downsample: Option<Downsample>,
}

impl Block {
    fn new(
        b: &mut Builder,
        bottleneck: bool,
        c_in: usize,
        planes: usize,
        stride: usize,
    ) -> Result<Self> {
        let expansion = if bottleneck { 4 } else { 1 };
        let c_out = planes * expansion;
        // torchvision v1.5: the stride sits on the 3x3 convolution.
        let specs: Vec<(usize, usize, usize, usize, usize)> = if bottleneck {
            vec![
                (c_in, planes, 1, 1, 0),
                (planes, planes, 3, stride, 1),
                (planes, c_out, 1, 1, 0),
            ]
        } else {
            vec![(c_in, planes, 3, stride, 1), (planes, planes, 3, 1, 1)]
        };
        let mut convs = Vec::with_capacity(specs.len());
        for (i, (ci, co, k, s, p)) in specs.into_iter().enumerate() {
            let conv = Conv2d::new(&mut b.pp(&format!("conv{}", i + 1)), ci, co, k, s, p)?;
            let bn = BatchNorm::new(&mut b.pp(&format!("bn{}", i + 1)), co)?;
            convs.push((conv, bn));
        }
        let downsample = if stride != 1 || c_in != c_out {
            let mut d = b.pp("downsample");
            Some(Downsample {
                conv: Conv2d::new(&mut d.pp("0"), c_in, c_out, 1, stride, 0)?,
                bn: BatchNorm::new(&mut d.pp("1"), c_out)?,
            })
        } else {
            None
        };
        Ok(Self { convs, downsample })
    }

    fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            let z = conv.forward(&y)?;
            y = if i != last {
                bn.forward_relu_t(&z, train)?
            } else {
                bn.forward_t(&z, train)?
            };
        }
        let identity = match &self.downsample {
            Some(d) => d.bn.forward_t(&d.conv.forward(x)?, train)?,
            None => x.clone(),
        };
        Ok(add_relu(&y, &identity)?)
    }
}

/// The ResNet body: stem (conv1, bn1, relu, maxpool) and layer1..layer4, cut before avgpool.
#[derive(Debug, Clone)]
pub struct ResNetBody {
    backbone: Backbone,
    conv1: Conv2d,
    bn1: BatchNorm,
    layers: Vec<Vec<Block>>,
}

/// fastai's `_resnet_split`: stem + layer1 + layer2 in group 0, layer3 + layer4 in group 1.
fn body_group(top: &str) -> usize {
    match top {
        "layer3" | "layer4" => 1,
        _ => 0,
    }
}

impl ResNetBody {
    /// Builds the body with torchvision's random initialisation.
    pub fn new(b: &mut Builder, backbone: Backbone) -> Result<Self> {
        let conv1 = Conv2d::new(
            &mut b.group(body_group("conv1")).pp("conv1"),
            3,
            64,
            7,
            2,
            3,
        )?;
        let bn1 = BatchNorm::new(&mut b.group(body_group("bn1")).pp("bn1"), 64)?;
        let bottleneck = backbone.bottleneck();
        let expansion = if bottleneck { 4 } else { 1 };
        let mut c_in = 64;
        let mut layers = Vec::with_capacity(4);
        for (i, (&n_blocks, planes)) in backbone
            .layers()
            .iter()
            .zip([64, 128, 256, 512])
            .enumerate()
        {
            let name = format!("layer{}", i + 1);
            let mut lb = b.group(body_group(&name));
            let mut lb = lb.pp(&name);
            let stride = if i == 0 { 1 } else { 2 };
            let mut blocks = Vec::with_capacity(n_blocks);
            for j in 0..n_blocks {
                let s = if j == 0 { stride } else { 1 };
                blocks.push(Block::new(
                    &mut lb.pp(&j.to_string()),
                    bottleneck,
                    c_in,
                    planes,
                    s,
                )?);
                c_in = planes * expansion;
            }
            layers.push(blocks);
        }
        Ok(Self {
            backbone,
            conv1,
            bn1,
            layers,
        })
    }

    /// The backbone kind.
    pub fn backbone(&self) -> Backbone {
        self.backbone
    }

    /// (N, 3, H, W) -> (N, features, H/32, W/32).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let x = self.bn1.forward_relu_t(&self.conv1.forward(x)?, train)?;
        let mut x = max_pool2d(&x, 3, 2, 1)?;
        for layer in &self.layers {
            for block in layer {
                x = block.forward_t(&x, train)?;
            }
        }
        if x.dtype() == candle_core::DType::BF16 {
            // The bf16 training forward's activations (see `bn_op`): the head takes float32.
            x = super::tape::widen(&x)?;
        }
        Ok(x)
    }
}

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
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(x.matmul(&super::params::value(&self.weight).t()?)?
            .broadcast_add(&super::params::value(&self.bias))?)
    }
}

/// A complete torchvision ResNet (body, average pool, `fc`): used to check our numbers
/// against torchvision and to count parameters.
#[derive(Debug, Clone)]
pub struct ResNet {
    /// The parameters, named exactly as torchvision's state_dict.
    pub store: ParamStore,
    body: ResNetBody,
    fc: Linear,
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
        Ok(Self { store, body, fc })
    }

    /// Logits (N, num_classes).
    pub fn forward_t(&self, x: &Tensor, train: bool) -> Result<Tensor> {
        let f = self.body.forward_t(x, train)?;
        self.fc.forward(&global_avg_pool(&f)?)
    }

    /// A training-mode forward as training runs it (the body's backward from a tape on the
    /// CPU, see [`super::Classifier::train_forward`]).
    pub fn train_forward(&self, x: &Tensor) -> Result<super::classifier::TrainForward> {
        super::classifier::TrainForward::new(
            x,
            || self.body.forward_t(x, true),
            |f| self.fc.forward(&global_avg_pool(f)?),
        )
    }
}

impl candle_core::ModuleT for ResNet {
    fn forward_t(&self, xs: &Tensor, train: bool) -> candle_core::Result<Tensor> {
        ResNet::forward_t(self, xs, train).map_err(candle_core::Error::wrap)
    }
}
