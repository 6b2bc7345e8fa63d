//! Rescaling to the network's input size and ImageNet normalisation.
use super::decode::GrayImage;
use crate::{Error, Result};
use candle_core::{Device, Tensor};
use image::imageops::FilterType;
use image::{ImageBuffer, Luma};

/// How an image is fitted to the square input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeMode {
    /// Stretch to the square (COVIDx and the paper).
    #[default]
    Squash,
    /// Scale the short side to the size and cut the centre square.
    CenterCrop,
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

/// Gray values in [0, 1] (size*size) -> normalised (3, size, size) values, channel-major.
pub fn normalize_to_chw(gray: &[f32], mean: [f32; 3], std: [f32; 3]) -> Vec<f32> {
    let mut out = Vec::with_capacity(gray.len() * 3);
    for c in 0..3 {
        out.extend(gray.iter().map(|&g| (g - mean[c]) / std[c]));
    }
    out
}

/// Preprocesses decoded images into one normalised batch tensor (N, 3, size, size).
pub fn batch_tensor(
    images: &[&GrayImage],
    size: u32,
    mode: ResizeMode,
    mean: [f32; 3],
    std: [f32; 3],
    device: &Device,
) -> Result<Tensor> {
    let s = size as usize;
    let mut data = Vec::with_capacity(images.len() * 3 * s * s);
    for img in images {
        data.extend(normalize_to_chw(&resize_gray(img, size, mode)?, mean, std));
    }
    Ok(Tensor::from_vec(data, (images.len(), 3, s, s), &Device::Cpu)?.to_device(device)?)
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
        let r = resize_gray(&img, 16, ResizeMode::Squash).unwrap();
        assert_eq!(r.len(), 256);
        assert!(r.iter().all(|v| (v - 0.5).abs() < 1e-6));
        let n = normalize_to_chw(&r, crate::IMAGENET_MEAN, crate::IMAGENET_STD);
        assert!((n[0] - (0.5 - 0.485) / 0.229).abs() < 1e-6);
        assert!((n[256] - (0.5 - 0.456) / 0.224).abs() < 1e-6);
        assert!((n[512] - (0.5 - 0.406) / 0.225).abs() < 1e-6);
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
    fn batch_has_nchw_shape() {
        let a = gray(20, 20, |x, _| x as f32 / 20.0);
        let t = batch_tensor(
            &[&a, &a],
            8,
            ResizeMode::Squash,
            crate::IMAGENET_MEAN,
            crate::IMAGENET_STD,
            &Device::Cpu,
        )
        .unwrap();
        assert_eq!(t.dims(), &[2, 3, 8, 8]);
    }
}
