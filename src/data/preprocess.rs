//! The one way an image becomes network input: resized to the square input size (f32,
//! antialiased), then normalised per channel. Training batches, evaluation, `predict` and
//! the Viewer all go through [`Preprocess`] and [`Normalization`].
use super::gray::GrayImage;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma};
use serde::{Deserialize, Serialize};

/// How an image is fitted to the square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Stretch to the square (COVIDx and the paper).
    #[default]
    Squash,
    /// Scale the short side to the size and cut the centre square.
    CenterCrop,
}

/// Per-channel normalisation `(v - mean[c]) / std[c]` of a gray value copied to 3 channels.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Mean per channel.
    pub mean: [f32; 3],
    /// Standard deviation per channel.
    pub std: [f32; 3],
}

impl Normalization {
    /// ImageNet statistics (torchvision / fastai), what pretrained bodies expect.
    pub const IMAGENET: Self = Self {
        mean: crate::IMAGENET_MEAN,
        std: crate::IMAGENET_STD,
    };

    /// Writes the normalised (3, plane) channels of gray values `gray` into `out`
    /// (`out.len() == 3 * gray.len()`).
    pub fn apply_into(&self, gray: &[f32], out: &mut [f32]) {
        let plane = gray.len();
        for c in 0..3 {
            let (m, s) = (self.mean[c], self.std[c]);
            for (o, &g) in out[c * plane..(c + 1) * plane].iter_mut().zip(gray) {
                *o = (g - m) / s;
            }
        }
    }

    /// The gray value that channel `c`'s normalised value `v` came from.
    pub fn invert(&self, c: usize, v: f32) -> f32 {
        v * self.std[c] + self.mean[c]
    }

    /// The first problem with these statistics (a zero or non-finite value), if any.
    pub fn problem(&self) -> Option<String> {
        if self.mean.iter().any(|v| !v.is_finite()) {
            return Some(format!("mean {:?} is not finite", self.mean));
        }
        if self.std.iter().any(|&v| !(v.is_finite() && v > 0.0)) {
            return Some(format!("std {:?} must be positive", self.std));
        }
        None
    }
}

impl Default for Normalization {
    fn default() -> Self {
        Self::IMAGENET
    }
}

/// Everything that turns a decoded image into the network's input.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Preprocess {
    /// Side of the square input.
    pub size_px: u32,
    /// Fitting to the square.
    pub resize: ResizeMode,
    /// Normalisation.
    pub norm: Normalization,
}

impl Preprocess {
    /// Squashed to `size_px` with ImageNet normalisation.
    pub fn imagenet(size_px: u32) -> Self {
        Self {
            size_px,
            resize: ResizeMode::Squash,
            norm: Normalization::IMAGENET,
        }
    }

    /// The resized gray plane (size*size values in [0, 1] for a [0, 1] image).
    pub fn plane(&self, img: &GrayImage) -> Result<Vec<f32>> {
        resize_gray(img, self.size_px, self.resize)
    }

    /// Normalised (N, 3, S, S) input from resized planes.
    pub fn tensor_from_planes(&self, planes: &[&[f32]], device: &Device) -> Result<Tensor> {
        let s = self.size_px as usize;
        let plane = s * s;
        let mut data = vec![0f32; planes.len() * 3 * plane];
        for (k, p) in planes.iter().enumerate() {
            if p.len() != plane {
                return Err(Error::invalid(
                    "input",
                    format!("{} values for a {s}x{s} plane", p.len()),
                ));
            }
            self.norm
                .apply_into(p, &mut data[k * 3 * plane..(k + 1) * 3 * plane]);
        }
        Ok(Tensor::from_vec(data, (planes.len(), 3, s, s), &Device::Cpu)?.to_device(device)?)
    }

    /// Normalised (N, 3, S, S) input for decoded images.
    pub fn tensor(&self, images: &[&GrayImage], device: &Device) -> Result<Tensor> {
        let planes = images
            .iter()
            .map(|i| self.plane(i))
            .collect::<Result<Vec<_>>>()?;
        let refs: Vec<&[f32]> = planes.iter().map(Vec::as_slice).collect();
        self.tensor_from_planes(&refs, device)
    }
}

/// Resizes a grayscale image to `size` x `size` with an antialiased (triangle) filter.
pub fn resize_gray(img: &GrayImage, size: u32, mode: ResizeMode) -> Result<Vec<f32>> {
    let buf: ImageBuffer<Luma<f32>, Vec<f32>> =
        ImageBuffer::from_raw(img.width, img.height, img.data.clone()).ok_or_else(|| {
            Error::invalid(
                "image",
                format!(
                    "{} values for {}x{} pixels",
                    img.data.len(),
                    img.width,
                    img.height
                ),
            )
        })?;
    let buf = match mode {
        ResizeMode::Squash => buf,
        ResizeMode::CenterCrop => {
            let side = img.width.min(img.height);
            let x0 = (img.width - side) / 2;
            let y0 = (img.height - side) / 2;
            image::imageops::crop_imm(&buf, x0, y0, side, side).to_image()
        }
    };
    if buf.width() == size && buf.height() == size {
        return Ok(buf.into_raw());
    }
    Ok(image::imageops::resize(&buf, size, size, FilterType::Triangle).into_raw())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gray(w: u32, h: u32, f: impl Fn(u32, u32) -> f32) -> GrayImage {
        GrayImage::from_fn(w, h, f)
    }

    #[test]
    fn constant_image_stays_constant_and_normalises_per_channel() {
        let img = gray(37, 53, |_, _| 0.5);
        let p = Preprocess::imagenet(16);
        let r = p.plane(&img).unwrap();
        assert_eq!(r.len(), 256);
        assert!(r.iter().all(|v| (v - 0.5).abs() < 1e-6));
        let mut n = vec![0.0; 768];
        Normalization::IMAGENET.apply_into(&r, &mut n);
        // torchvision.transforms.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])
        assert!((n[0] - (0.5 - 0.485) / 0.229).abs() < 1e-6);
        assert!((n[256] - (0.5 - 0.456) / 0.224).abs() < 1e-6);
        assert!((n[512] - (0.5 - 0.406) / 0.225).abs() < 1e-6);
        assert!((Normalization::IMAGENET.invert(1, n[256]) - 0.5).abs() < 1e-6);
    }

    #[test]
    fn center_crop_keeps_the_middle() {
        // Left third black, middle white, right third black: the crop is all white.
        let img = gray(30, 10, |x, _| if (10..20).contains(&x) { 1.0 } else { 0.0 });
        let r = resize_gray(&img, 10, ResizeMode::CenterCrop).unwrap();
        assert!(r.iter().all(|&v| v == 1.0));
        let s = resize_gray(&img, 10, ResizeMode::Squash).unwrap();
        assert!(s.iter().any(|&v| v < 0.5));
    }

    #[test]
    fn batch_has_nchw_shape_and_planes_give_the_same_tensor() {
        let a = gray(20, 20, |x, _| x as f32 / 20.0);
        let p = Preprocess::imagenet(8);
        let t = p.tensor(&[&a, &a], &Device::Cpu).unwrap();
        assert_eq!(t.dims(), &[2, 3, 8, 8]);
        let plane = p.plane(&a).unwrap();
        let u = p
            .tensor_from_planes(&[&plane, &plane], &Device::Cpu)
            .unwrap();
        let (tv, uv) = (
            t.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            u.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        );
        assert_eq!(tv, uv);
    }

    #[test]
    fn zero_std_is_a_problem() {
        let n = Normalization {
            mean: [0.5; 3],
            std: [0.2, 0.0, 0.2],
        };
        assert!(n.problem().unwrap().contains("std"));
        assert!(Normalization::IMAGENET.problem().is_none());
    }
}
