//! Decoding radiographs to one grayscale float image in [0, 1].
//!
//! 8-bit images map 0..255 to 0..1. 16-bit images often carry 10-, 12- or 14-bit data:
//! the bits actually used (the smallest n with max < 2^n, at least 8) set the scale, as
//! DICOM's BitsStored would, so a 12-bit radiograph is not left nearly black.
use crate::{Error, Result};
use image::{DynamicImage, ImageReader, Limits};
use std::path::Path;

/// Largest accepted width or height, in pixels.
pub const MAX_SIDE_PX: u32 = 16_384;
/// Largest accepted decoded allocation, in bytes (decompression-bomb guard).
pub const MAX_ALLOC_BYTES: u64 = 256 << 20;
/// Largest accepted number of pixels (33.5 million; a 4300 x 4300 radiograph has 18.5
/// million): with the float copy this bounds one decode to about 0.6 GiB.
pub const MAX_PIXELS: u64 = 32 << 20;

/// A decoded grayscale image.
#[derive(Debug, Clone, PartialEq)]
pub struct GrayImage {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Row-major intensities in [0, 1].
    pub data: Vec<f32>,
    /// Bits per sample of the source (8, 16 or 32 for float).
    pub bit_depth: u8,
    /// True when the source has colour content (channels that differ in more than 1% of
    /// pixels), not merely gray stored as RGB; radiographs are gray.
    pub was_color: bool,
    /// Short name of the source format ("png", "jpeg", "dicom", ...).
    pub format: String,
    /// DICOM facts, for DICOM sources.
    pub dicom: Option<super::dicom::DicomInfo>,
}

#[cfg(test)]
impl GrayImage {
    /// An 8-bit gray PNG-like image with pixel (x, y) = `f(x, y)` (unit tests).
    pub(crate) fn from_fn(w: u32, h: u32, f: impl Fn(u32, u32) -> f32) -> Self {
        let data = (0..h)
            .flat_map(|y| (0..w).map(move |x| (x, y)))
            .map(|(x, y)| f(x, y))
            .collect();
        Self {
            width: w,
            height: h,
            data,
            bit_depth: 8,
            was_color: false,
            format: "png".into(),
            dicom: None,
        }
    }
}

/// Decodes an image file.
pub fn decode_file(path: &Path) -> Result<GrayImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(&bytes, path)
}

/// Decodes image bytes; `path` only names the source in errors.
pub fn decode_bytes(bytes: &[u8], path: &Path) -> Result<GrayImage> {
    let err = |msg: String| Error::Decode {
        path: path.to_path_buf(),
        msg,
    };
    if bytes.is_empty() {
        return Err(err("empty file".into()));
    }
    if super::dicom::looks_like_dicom(bytes) {
        return super::dicom::decode_dicom(bytes)
            .map(|(img, _)| img)
            .map_err(err);
    }
    let reader = ImageReader::new(std::io::Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| err(e.to_string()))?;
    let format = reader.format().ok_or_else(|| {
        err("unrecognised image format (expected PNG, JPEG, BMP, TIFF or DICOM)".into())
    })?;
    let (w, h) = ImageReader::with_format(std::io::Cursor::new(bytes), format)
        .into_dimensions()
        .map_err(|e| err(format!("cannot read the image header: {e}")))?;
    if w > MAX_SIDE_PX || h > MAX_SIDE_PX {
        return Err(err(format!(
            "{w}x{h} pixels: a side is over the {MAX_SIDE_PX} px this program accepts"
        )));
    }
    if w as u64 * h as u64 > MAX_PIXELS {
        return Err(err(format!(
            "{w}x{h} pixels is more than the {MAX_PIXELS} this program accepts"
        )));
    }
    if format == image::ImageFormat::Jpeg && !jpeg_has_end(bytes) {
        // The JPEG decoder fills a cut-off file with gray and reports nothing.
        return Err(err(
            "truncated JPEG: no end-of-image marker (a partial copy or download?)".into(),
        ));
    }
    let mut reader = reader;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE_PX);
    limits.max_image_height = Some(MAX_SIDE_PX);
    limits.max_alloc = Some(MAX_ALLOC_BYTES);
    reader.limits(limits);
    let img = reader
        .decode()
        .map_err(|e| err(format!("cannot decode: {e}")))?;
    let fmt_name = format
        .extensions_str()
        .first()
        .copied()
        .unwrap_or("image")
        .to_string();
    to_gray(img, fmt_name).map_err(err)
}

/// True when a JPEG stream has its end-of-image marker (FF D9), allowing trailing padding.
fn jpeg_has_end(bytes: &[u8]) -> bool {
    let tail = &bytes[bytes.len().saturating_sub(64 * 1024)..];
    tail.windows(2).any(|w| w == [0xFF, 0xD9])
}

pub(crate) fn to_gray(img: DynamicImage, format: String) -> std::result::Result<GrayImage, String> {
    let (width, height) = (img.width(), img.height());
    if width == 0 || height == 0 {
        return Err("image has no pixels".into());
    }
    let was_color = img.color().has_color() && has_color_content(&img);
    let (data, bit_depth) = match &img {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => {
            let l = img.to_luma8();
            (
                l.into_raw().into_iter().map(|v| v as f32 / 255.0).collect(),
                8,
            )
        }
        DynamicImage::ImageRgb32F(_) | DynamicImage::ImageRgba32F(_) => {
            let l = img.to_luma32f().into_raw();
            if l.iter().any(|v| !v.is_finite()) {
                return Err("float image contains NaN or infinite values".into());
            }
            (l.into_iter().map(|v| v.clamp(0.0, 1.0)).collect(), 32)
        }
        _ => {
            let l = img.to_luma16().into_raw();
            let max = l.iter().copied().max().unwrap_or(0) as u32;
            let bits = (32 - max.leading_zeros()).max(8);
            let scale = ((1u32 << bits) - 1) as f32;
            (l.into_iter().map(|v| v as f32 / scale).collect(), 16)
        }
    };
    Ok(GrayImage {
        width,
        height,
        data,
        bit_depth,
        was_color,
        format,
        dicom: None,
    })
}

fn has_color_content(img: &DynamicImage) -> bool {
    let rgb = img.to_rgb8();
    let n = rgb.pixels().len();
    let colored = rgb
        .pixels()
        .filter(|p| {
            let [r, g, b] = p.0;
            r.abs_diff(g) > 8 || g.abs_diff(b) > 8 || r.abs_diff(b) > 8
        })
        .count();
    colored * 100 > n
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, Rgba};

    fn png_bytes(img: DynamicImage) -> Vec<u8> {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn eight_bit_gray_maps_to_unit_range() {
        let img = ImageBuffer::from_fn(4, 3, |x, _| Luma([(x * 85) as u8]));
        let g = decode_bytes(
            &png_bytes(DynamicImage::ImageLuma8(img)),
            Path::new("a.png"),
        )
        .unwrap();
        assert_eq!((g.width, g.height, g.bit_depth), (4, 3, 8));
        assert_eq!(&g.data[..4], &[0.0, 85.0 / 255.0, 170.0 / 255.0, 1.0]);
        assert!(!g.was_color);
    }

    #[test]
    fn twelve_bit_data_in_sixteen_bit_png_uses_twelve_bits() {
        let img = ImageBuffer::from_fn(2, 1, |x, _| Luma([if x == 0 { 0u16 } else { 4095 }]));
        let g = decode_bytes(
            &png_bytes(DynamicImage::ImageLuma16(img)),
            Path::new("a.png"),
        )
        .unwrap();
        assert_eq!(g.bit_depth, 16);
        assert_eq!(g.data, vec![0.0, 1.0]);
        let img = ImageBuffer::from_fn(2, 1, |x, _| Luma([if x == 0 { 0u16 } else { 65535 }]));
        let g = decode_bytes(
            &png_bytes(DynamicImage::ImageLuma16(img)),
            Path::new("a.png"),
        )
        .unwrap();
        assert_eq!(g.data, vec![0.0, 1.0]);
    }

    #[test]
    fn rgba_is_converted_to_luma() {
        let img = ImageBuffer::from_fn(2, 2, |_, _| Rgba([255u8, 255, 255, 128]));
        let g = decode_bytes(
            &png_bytes(DynamicImage::ImageRgba8(img)),
            Path::new("a.png"),
        )
        .unwrap();
        assert!(g.data.iter().all(|&v| v == 1.0));
        assert!(!g.was_color, "white has no colour");
        let img = ImageBuffer::from_fn(2, 2, |_, _| Rgba([255u8, 0, 0, 255]));
        let g = decode_bytes(
            &png_bytes(DynamicImage::ImageRgba8(img)),
            Path::new("a.png"),
        )
        .unwrap();
        assert!(g.was_color, "red is colour");
        // The image crate's luma is ITU-R BT.709: 0.2126 R + 0.7152 G + 0.0722 B.
        assert!((g.data[0] - 0.2126).abs() < 1.0 / 255.0, "{}", g.data[0]);
    }

    #[test]
    fn garbage_and_empty_files_name_the_file() {
        let e = decode_bytes(b"", Path::new("empty.png"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("empty.png") && e.contains("empty"), "{e}");
        let e = decode_bytes(b"this is text", Path::new("t.png"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.png"), "{e}");
        let mut png = png_bytes(DynamicImage::ImageLuma8(ImageBuffer::from_fn(
            64,
            64,
            |x, y| Luma([(x ^ y) as u8]),
        )));
        png.truncate(png.len() / 2);
        let e = decode_bytes(&png, Path::new("cut.png"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("cut.png"), "{e}");
    }
}
