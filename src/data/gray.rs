//! The decoded image every reader produces, and what every decoder shares: [`GrayImage`]
//! (with [`DicomInfo`] for a DICOM source), the size limits each decoder applies before it
//! allocates, and the conversion of a decoded `image` crate image to gray in [0, 1]. A leaf:
//! `decode` (PNG, JPEG, BMP, TIFF) and `dicom` both build on it, neither on the other's types.
//!
//! 8-bit images map 0..255 to 0..1. 16-bit images often carry 10-, 12- or 14-bit data:
//! the bits actually used (the smallest n with max < 2^n, at least 8) set the scale, as
//! DICOM's BitsStored would, so a 12-bit radiograph is not left nearly black.
use image::DynamicImage;

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
    pub dicom: Option<DicomInfo>,
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

/// Facts of a DICOM file that matter for interpreting the image (no patient data).
#[derive(Debug, Clone, PartialEq, Eq, Default, serde::Serialize)]
pub struct DicomInfo {
    /// Modality (CR, DX, CT, ...).
    pub modality: Option<String>,
    /// MONOCHROME1, MONOCHROME2, RGB, ...
    pub photometric: String,
    /// View position (PA, AP, LL, ...).
    pub view_position: Option<String>,
    /// Bits stored per sample.
    pub bits_stored: u16,
    /// Bits allocated per sample (1, 8, 16 or 32).
    pub bits_allocated: u16,
    /// Number of frames (the first is used).
    pub frames: u32,
    /// Transfer syntax UID.
    pub transfer_syntax: String,
    /// The transfer syntax's name.
    pub transfer_syntax_name: String,
    /// False for a bare data set without a File Meta header.
    pub meta_header: bool,
    /// Whether a window or VOI LUT from the file was applied.
    pub windowed: bool,
    /// What was wrong with the File Meta header and how the file was read anyway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header_note: Option<String>,
}

impl DicomInfo {
    /// "N frames (the first is used)" for a multi-frame file, else `None`.
    pub fn frames_note(&self) -> Option<String> {
        (self.frames > 1).then(|| format!("{} frames (the first is used)", self.frames))
    }
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
