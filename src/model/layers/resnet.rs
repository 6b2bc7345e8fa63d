//! ResNet-18/34/50 in torchvision's layout and tensor names, trainable (BatchNorm in train
//! mode uses batch statistics), unlike `candle_transformers::models::resnet`.
use super::batch_norm::BatchNorm;
use super::conv::Conv2d;
use super::params::Builder;
use crate::model::ops::pass::Pass;
use crate::model::ops::pool::max_pool2d;
use crate::model::ops::relu::add_relu;
use crate::{Error, Result};
use candle_core::Tensor;
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

    fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let mut y = x.clone();
        let last = self.convs.len() - 1;
        for (i, (conv, bn)) in self.convs.iter().enumerate() {
            let z = conv.forward(&y, pass)?;
            y = if i != last {
                bn.forward_relu(&z, pass)?
            } else {
                bn.forward(&z, pass)?
            };
        }
        let identity = match &self.downsample {
            Some(d) => d.bn.forward(&d.conv.forward(x, pass)?, pass)?,
            None => x.clone(),
        };
        Ok(add_relu(&y, &identity, pass)?)
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
    pub fn forward(&self, x: &Tensor, pass: &Pass<'_>) -> Result<Tensor> {
        let x = self.bn1.forward_relu(&self.conv1.forward(x, pass)?, pass)?;
        let mut x = max_pool2d(&x, 3, 2, 1, pass)?;
        for layer in &self.layers {
            for block in layer {
                x = block.forward(&x, pass)?;
            }
        }
        if x.dtype() == candle_core::DType::BF16 {
            // The bf16 training forward's activations (see `ops::batch_norm`): the head
            // takes float32.
            x = crate::model::ops::tape::widen(&x, pass)?;
        }
        Ok(x)
    }
}
