//! Grad-CAM (Selvaraju et al. 2017): the gradient of a class
//! score (the logit, before softmax) with respect to the last convolutional block's output
//! (`layer4`), averaged over space per channel, weights that output; the ReLU of the weighted
//! sum, upsampled to the image, is the heat map.
//!
//! The feature map is cut out of the graph and made a variable of its own, so one backward
//! pass through the head gives exactly d score / d features and nothing flows into the body.
use crate::data::gray::GrayImage;
use crate::model::ops::conv::PackedWeights;
use crate::model::Classifier;
use crate::Result;
use candle_core::{DType, Device, Tensor, Var};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma, Rgb, RgbImage};

/// A class-activation map at an image's size.
#[derive(Debug, Clone, PartialEq)]
pub struct CamMap {
    /// The class it explains.
    pub class: usize,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major values in [0, 1] (the map divided by its maximum).
    pub data: Vec<f32>,
}

/// Grad-CAM at the feature map's resolution; [`Coarse::upsample`] gives it any size.
#[derive(Debug, Clone, PartialEq)]
pub struct Coarse {
    /// Probabilities of the (un-flipped) image: softmax over the classes, or a multi-label
    /// model's sigmoid a finding.
    pub probs: Vec<f32>,
    /// The class explained.
    pub class: usize,
    /// ReLU(sum_k alpha_k A_k), row-major (h, w), unnormalised.
    pub map: Vec<f32>,
    /// (h, w) of the feature map.
    pub hw: (usize, usize),
}

impl Coarse {
    /// Largest value of the map; 0 means no positive evidence for the class anywhere.
    pub fn peak(&self) -> f32 {
        self.map.iter().copied().fold(0.0f32, f32::max)
    }

    /// The map upsampled bilinearly to `width` x `height` and scaled to [0, 1] (all zeros
    /// when the peak is 0).
    pub fn upsample(&self, width: u32, height: u32) -> CamMap {
        let peak = self.peak();
        // Scale to [0, 1] before resizing: the image crate clamps float pixels to that range.
        let scaled: Vec<f32> = if peak > 0.0 {
            self.map
                .iter()
                .map(|v| (v / peak).clamp(0.0, 1.0))
                .collect()
        } else {
            vec![0.0; self.map.len()]
        };
        let (h, w) = self.hw;
        let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
            ImageBuffer::from_raw(w as u32, h as u32, scaled).expect("h*w values");
        let data = image::imageops::resize(&buf, width.max(1), height.max(1), FilterType::Triangle)
            .into_raw();
        CamMap {
            class: self.class,
            width,
            height,
            data,
        }
    }
}

/// Grad-CAM for one preprocessed image `x` (1, 3, S, S) and class `class` (None: the
/// predicted class); the body's bf16 weights packed from `packed` (see
/// [`Classifier::infer_packed`]).
pub fn grad_cam_coarse(
    model: &Classifier,
    packed: &PackedWeights,
    x: &Tensor,
    class: Option<usize>,
) -> Result<Coarse> {
    grad_cam_of(model, packed, x, class, false)
}

/// Grad-CAM of a multi-label model for one preprocessed image `x` and finding `finding`
/// (None: the most probable one): the probabilities are each finding's sigmoid, and the
/// score explained is the finding's logit, as for a class.
pub fn grad_cam_finding(
    model: &Classifier,
    packed: &PackedWeights,
    x: &Tensor,
    finding: Option<usize>,
) -> Result<Coarse> {
    grad_cam_of(model, packed, x, finding, true)
}

fn grad_cam_of(
    model: &Classifier,
    packed: &PackedWeights,
    x: &Tensor,
    class: Option<usize>,
    sigmoid: bool,
) -> Result<Coarse> {
    let feats = model.infer_features(x, packed)?;
    let (_, _, h, w) = feats.dims4()?;
    let var = Var::from_tensor(&feats)?;
    let logits = model.head_forward(var.as_tensor(), false)?;
    let probs = if sigmoid {
        candle_nn::ops::sigmoid(&logits)?
            .to_dtype(DType::F32)?
            .to_vec2::<f32>()?
            .into_iter()
            .next()
            .unwrap_or_default()
    } else {
        super::probs::log_softmax_rows(&logits)?
            .first()
            .map(|r| super::probs::probs_of(r))
            .unwrap_or_default()
    };
    let class = class
        .filter(|&c| c < probs.len())
        .unwrap_or_else(|| super::probs::argmax(&probs));
    let score = logits.narrow(1, class, 1)?.sum_all()?;
    let grads = score.backward()?;
    let g = grads
        .get(var.as_tensor())
        .ok_or_else(|| crate::Error::invalid("grad-cam", "no gradient reached the feature map"))?;
    // alpha_k = mean over space of d score / d A_k; cam = ReLU(sum_k alpha_k A_k).
    let alpha = g.mean_keepdim(3)?.mean_keepdim(2)?;
    let cam = feats.broadcast_mul(&alpha)?.sum(1)?.relu()?;
    let coarse = cam
        .to_device(&Device::Cpu)?
        .to_dtype(DType::F32)?
        .flatten_all()?
        .to_vec1::<f32>()?;
    Ok(Coarse {
        probs,
        class,
        map: coarse,
        hw: (h, w),
    })
}

/// The jet colour map (blue - cyan - yellow - red) at `t` in [0, 1].
pub fn jet(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let ch = |c: f32| ((1.5 - (4.0 * t - c).abs()).clamp(0.0, 1.0) * 255.0).round() as u8;
    [ch(3.0), ch(2.0), ch(1.0)]
}

/// The image (gray) with the map blended over it in jet colours at `opacity`.
pub fn overlay(img: &GrayImage, cam: &CamMap, opacity: f32) -> RgbImage {
    let a = opacity.clamp(0.0, 1.0);
    let mut out = RgbImage::new(img.width, img.height);
    for (i, p) in out.pixels_mut().enumerate() {
        let g = img.data[i].clamp(0.0, 1.0) * 255.0;
        let c = jet(cam.data.get(i).copied().unwrap_or(0.0));
        *p = Rgb(c.map(|c| ((1.0 - a) * g + a * c as f32).round() as u8));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Backbone;

    #[test]
    fn jet_ends_and_middle() {
        assert_eq!(jet(0.0), [0, 0, 128]);
        assert_eq!(jet(0.5), [128, 255, 128]);
        assert_eq!(jet(1.0), [128, 0, 0]);
    }

    #[test]
    fn upsample_keeps_a_constant_and_scales_to_one() {
        let coarse = |map: Vec<f32>| Coarse {
            probs: vec![],
            class: 1,
            map,
            hw: (2, 2),
        };
        let c = coarse(vec![2.0; 4]);
        let m = c.upsample(5, 3);
        assert_eq!((m.class, m.width, m.height, m.data.len()), (1, 5, 3, 15));
        assert!(m.data.iter().all(|&v| (v - 1.0).abs() < 1e-6));
        assert_eq!(c.peak(), 2.0);
        let z = coarse(vec![0.0; 4]).upsample(4, 4);
        assert!(z.data.iter().all(|&v| v == 0.0));
    }

    /// The channel weights are d logit / d feature averaged over space: checked against
    /// central finite differences of the head in float64.
    #[test]
    fn weights_match_finite_differences_of_the_head() {
        let dev = Device::Cpu;
        let model = Classifier::with_dtype(Backbone::Resnet18, 4, 7, &dev, DType::F64).unwrap();
        // A seeded input (candle's CPU randn cannot be seeded): the test is deterministic.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(3);
        let v: Vec<f64> = (0..3 * 64 * 64)
            .map(|_| rand_distr::Distribution::sample(&rand_distr::StandardNormal, &mut rng))
            .collect();
        let x = Tensor::from_vec(v, (1, 3, 64, 64), &dev).unwrap();
        let Coarse {
            class,
            map: coarse,
            hw: (h, w),
            ..
        } = grad_cam_coarse(&model, &PackedWeights::new(), &x, Some(3)).unwrap();
        assert_eq!((class, h, w, coarse.len()), (3, 2, 2, 4));
        let feats = model.features(&x, false).unwrap();
        let f: Vec<f64> = feats.flatten_all().unwrap().to_vec1().unwrap();
        let logit = |v: &[f64]| -> f64 {
            let t = Tensor::from_vec(v.to_vec(), feats.dims(), &dev).unwrap();
            let l = model.head_forward(&t, false).unwrap();
            l.flatten_all().unwrap().to_vec1::<f64>().unwrap()[3]
        };
        // alpha_k by finite differences over the first 6 channels, then the map at each
        // position restricted to those channels must match the same sum from the real run.
        // Small steps: the head's max pool and ReLU have kinks, which a step must not cross.
        let eps = 1e-7;
        let hw = h * w;
        let mut alpha = Vec::new();
        for k in 0..6 {
            let mut a = 0.0;
            for j in 0..hw {
                let mut p = f.clone();
                p[k * hw + j] += eps;
                let mut m = f.clone();
                m[k * hw + j] -= eps;
                a += (logit(&p) - logit(&m)) / (2.0 * eps);
            }
            alpha.push(a / hw as f64);
        }
        // Same partial sum with the weights the implementation derives from its gradient.
        let var = Var::from_tensor(&feats.detach()).unwrap();
        let l = model.head_forward(var.as_tensor(), false).unwrap();
        let g = l
            .narrow(1, 3, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .backward()
            .unwrap();
        let gw: Vec<f64> = g
            .get(var.as_tensor())
            .unwrap()
            .mean_keepdim(3)
            .unwrap()
            .mean_keepdim(2)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        for k in 0..6 {
            assert!(
                (alpha[k] - gw[k]).abs() <= 1e-6 * (1.0 + alpha[k].abs()),
                "channel {k}: finite differences {} vs backward {}",
                alpha[k],
                gw[k]
            );
        }
        // And the map is ReLU(sum_k alpha_k A_k) over all channels.
        let nch = f.len() / hw;
        for j in 0..hw {
            let s: f64 = (0..nch).map(|k| gw[k] * f[k * hw + j]).sum();
            assert!((coarse[j] as f64 - s.max(0.0)).abs() <= 1e-5 * (1.0 + s.abs()));
        }
    }
}
