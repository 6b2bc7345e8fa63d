//! Support for JPEG 2000 image decoding.

use dicom_encoding::adapters::{DecodeResult, PixelDataObject, PixelDataReader, decode_error};
use dicom_encoding::snafu::prelude::*;
use jpeg2k::Image;
use tracing::warn;

// Check jpeg2k backend conflicts
#[cfg(all(feature = "openjp2", feature = "openjpeg-sys"))]
compile_error!(
    "feature \"openjp2\" and feature \"openjpeg-sys\" cannot be enabled at the same time"
);

/// Pixel data adapter for transfer syntaxes based on JPEG 2000.
#[derive(Debug, Copy, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Jpeg2000Adapter;

impl PixelDataReader for Jpeg2000Adapter {
    /// Decode a single frame in JPEG 2000 from a DICOM object.
    fn decode_frame(
        &self,
        src: &dyn PixelDataObject,
        frame: u32,
        dst: &mut Vec<u8>,
    ) -> DecodeResult<()> {
        let cols = src
            .cols()
            .context(decode_error::MissingAttributeSnafu { name: "Columns" })?;
        let rows = src
            .rows()
            .context(decode_error::MissingAttributeSnafu { name: "Rows" })?;
        let samples_per_pixel =
            src.samples_per_pixel()
                .context(decode_error::MissingAttributeSnafu {
                    name: "SamplesPerPixel",
                })?;
        let bits_allocated = src
            .bits_allocated()
            .context(decode_error::MissingAttributeSnafu {
                name: "BitsAllocated",
            })?;

        ensure_whatever!(
            bits_allocated == 8 || bits_allocated == 16,
            "BitsAllocated other than 8 or 16 is not supported"
        );

        let nr_frames = src.number_of_frames().unwrap_or(1) as usize;

        ensure!(
            nr_frames > frame as usize,
            decode_error::FrameRangeOutOfBoundsSnafu
        );

        let bytes_per_sample = bits_allocated / 8;

        // `stride` it the total number of bytes for each sample plane
        let stride: usize = bytes_per_sample as usize * cols as usize * rows as usize;
        let base_offset = dst.len();

        let frame_data = src
            .frame_pixel_data(frame)
            .context(decode_error::FrameRangeOutOfBoundsSnafu)?;

        // extend output vector
        guarded_resize(dst, samples_per_pixel as usize * stride, frame_data.len())?;

        // The header first: a codestream larger than the DICOM frame must not be decoded
        // whole (covid-resnet's fuzzing). A raw codestream's SIZ segment is read directly
        // (OpenJPEG's header reader allocated 256 MB for a 48 x 655392 declaration).
        if let Some((w, h)) = siz_size(&frame_data) {
            ensure_whatever!(
                w == cols as u32 && h == rows as u32,
                "JPEG 2000 frame is {}x{}, the DICOM image {}x{}",
                w,
                h,
                cols,
                rows
            );
        }
        {
            let header = jpeg2k::DumpImage::from_bytes(&frame_data)
                .whatever_context("jpeg2k header failure")?;
            ensure_whatever!(
                header.img.width() == cols as u32 && header.img.height() == rows as u32,
                "JPEG 2000 frame is {}x{}, the DICOM image {}x{}",
                header.img.width(),
                header.img.height(),
                cols,
                rows
            );
        }
        let image = Image::from_bytes(&frame_data).whatever_context("jpeg2k decoder failure")?;

        // Note: we cannot use `get_pixels`
        // because the current implementation narrows the data
        // down to 8 bits per sample
        let components = image.components();

        // write each component into the destination buffer
        for (component_i, component) in components.iter().enumerate() {
            if component_i >= samples_per_pixel as usize {
                warn!(
                    "JPEG 2000 image has more components than expected ({} > {})",
                    component_i, samples_per_pixel
                );
                break;
            }

            // A codestream whose size disagrees with Rows and Columns would write past the
            // frame (found by covid-resnet's fuzzing).
            ensure_whatever!(
                component.data().len() == cols as usize * rows as usize,
                "JPEG 2000 component holds {} samples, the frame is {}x{}",
                component.data().len(),
                cols,
                rows
            );

            // write in standard layout
            for (i, sample) in component.data().iter().enumerate() {
                let offset = base_offset
                    + i * samples_per_pixel as usize * bytes_per_sample as usize
                    + component_i * bytes_per_sample as usize;
                dst[offset..offset + bytes_per_sample as usize]
                    .copy_from_slice(&sample.to_le_bytes()[..bytes_per_sample as usize]);
            }
        }

        Ok(())
    }
}

/// Width and height from a raw codestream's SIZ marker segment (ISO 15444-1 A.5.1: SOC,
/// SIZ, Lsiz, Rsiz, Xsiz, Ysiz, XOsiz, YOsiz), when the data starts with one.
fn siz_size(data: &[u8]) -> Option<(u32, u32)> {
    if data.len() < 24 || data[..4] != [0xFF, 0x4F, 0xFF, 0x51] {
        return None;
    }
    let be = |at: usize| u32::from_be_bytes([data[at], data[at + 1], data[at + 2], data[at + 3]]);
    Some((be(8).checked_sub(be(16))?, be(12).checked_sub(be(20))?))
}

const COMPRESSION_RATIO_THRESHOLD: u32 = 64;

/// Perform a resize of a vector (with zeros), safeguarded from extreme cases.
fn guarded_resize(
    out: &mut Vec<u8>,
    additional_capacity: usize,
    fragment_size: usize,
) -> DecodeResult<()> {
    crate::alloc::guarded_resize(
        out,
        additional_capacity,
        fragment_size,
        COMPRESSION_RATIO_THRESHOLD,
    )
    .ok()
    .context(decode_error::AllocateSnafu {
        name: "frame",
        size: additional_capacity,
    })
}
