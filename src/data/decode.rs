//! Decoding radiograph files (PNG, JPEG, BMP, TIFF; DICOM through `dicom`) to one grayscale
//! float image in [0, 1] (`gray`).
use super::gray::{to_gray, GrayImage, MAX_ALLOC_BYTES, MAX_PIXELS, MAX_SIDE_PX};
use crate::{Error, Result};
use image::{ImageReader, Limits};
use std::path::Path;

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

#[cfg(test)]
mod tests {
    use super::*;
    use image::{DynamicImage, ImageBuffer, Luma, Rgba};

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
