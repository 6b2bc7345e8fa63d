//! The first frame's samples: its layout (rows, columns, samples a pixel, bits allocated and
//! stored, high bit, sign, planar configuration), its bytes (as stored, or decoded by
//! dicom-rs's codecs), and the stored values read from them (1, 8, 16 or 32 bits allocated,
//! masked to BitsStored at HighBit, sign-extended when signed).
use crate::data::gray::{MAX_ALLOC_BYTES, MAX_PIXELS, MAX_SIDE_PX};
use dicom_core::Tag;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;
use dicom_pixeldata::PixelDecoder;

/// How the first frame's samples are laid out.
#[derive(Debug, Clone)]
pub(super) struct Layout {
    pub rows: usize,
    pub cols: usize,
    pub frames: u32,
    pub spp: usize,
    pub bits_allocated: u32,
    pub bits_stored: u32,
    pub high_bit: u32,
    pub signed: bool,
    /// PlanarConfiguration 1: all of one colour sample, then the next.
    pub planar: bool,
    pub photometric: String,
}

pub(super) fn text(obj: &DefaultDicomObject, tag: Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_string())
        .filter(|s| !s.is_empty())
}

/// An unsigned number; `Err` when the element is there but is not one.
fn number(obj: &DefaultDicomObject, tag: Tag, name: &str) -> Result<Option<u32>, String> {
    match obj.element_opt(tag).ok().flatten() {
        None => Ok(None),
        Some(e) => e
            .to_int::<u32>()
            .map(Some)
            .map_err(|_| format!("DICOM {name} is not a number")),
    }
}

impl Layout {
    /// Reads and checks the image attributes: sizes within this program's limits, bits that
    /// this reader handles.
    pub fn of(obj: &DefaultDicomObject) -> Result<Layout, String> {
        let rows = number(obj, tags::ROWS, "Rows")?.ok_or("DICOM file has no Rows")?;
        let cols = number(obj, tags::COLUMNS, "Columns")?.ok_or("DICOM file has no Columns")?;
        let frames = number(obj, tags::NUMBER_OF_FRAMES, "NumberOfFrames")
            .ok()
            .flatten()
            .unwrap_or(1)
            .max(1);
        let spp = number(obj, tags::SAMPLES_PER_PIXEL, "SamplesPerPixel")?.unwrap_or(1);
        let bits_allocated = number(obj, tags::BITS_ALLOCATED, "BitsAllocated")?.unwrap_or(16);
        let bits_stored = number(obj, tags::BITS_STORED, "BitsStored")?.unwrap_or(bits_allocated);
        let high_bit = number(obj, tags::HIGH_BIT, "HighBit")?.unwrap_or(bits_stored.max(1) - 1);
        if rows == 0 || cols == 0 {
            return Err("DICOM image has no pixels (Rows or Columns is 0)".into());
        }
        if !matches!(bits_allocated, 1 | 8 | 16 | 32)
            || bits_stored == 0
            || bits_stored > bits_allocated
            || high_bit >= bits_allocated
            || high_bit + 1 < bits_stored
        {
            return Err(format!(
                "DICOM BitsAllocated {bits_allocated} / BitsStored {bits_stored} / HighBit \
                 {high_bit} are not supported (expected 1, 8, 16 or 32 bits allocated, 1 to \
                 that many stored, the high bit inside them)"
            ));
        }
        if !matches!(spp, 1 | 3) {
            return Err(format!(
                "DICOM SamplesPerPixel {spp} is not supported (expected 1 or 3)"
            ));
        }
        if rows > MAX_SIDE_PX || cols > MAX_SIDE_PX {
            return Err(format!(
                "DICOM image is {cols}x{rows}, over the {MAX_SIDE_PX} px limit"
            ));
        }
        if rows as u64 * cols as u64 * spp as u64 > MAX_PIXELS {
            return Err(format!(
                "DICOM image is {cols}x{rows} with {spp} samples a pixel, over the {MAX_PIXELS}-pixel limit"
            ));
        }
        let decoded = rows as u64
            * cols as u64
            * frames as u64
            * spp as u64
            * (bits_allocated.max(8) as u64 / 8);
        if decoded > MAX_ALLOC_BYTES {
            return Err(format!(
                "DICOM pixel data would take {decoded} bytes, over the limit"
            ));
        }
        let signed =
            number(obj, tags::PIXEL_REPRESENTATION, "PixelRepresentation")?.unwrap_or(0) == 1;
        let planar =
            number(obj, tags::PLANAR_CONFIGURATION, "PlanarConfiguration")?.unwrap_or(0) == 1;
        Ok(Layout {
            rows: rows as usize,
            cols: cols as usize,
            frames,
            spp: spp as usize,
            bits_allocated,
            bits_stored,
            high_bit,
            signed,
            planar,
            photometric: text(obj, tags::PHOTOMETRIC_INTERPRETATION)
                .unwrap_or_else(|| "MONOCHROME2".into()),
        })
    }

    /// Samples in one frame as stored: uncompressed YBR_FULL_422 keeps two samples a pixel
    /// (Y Y Cb Cr for each pair of pixels, PS3.3 C.7.6.3.1.2).
    pub fn stored_samples(&self) -> usize {
        let pixels = self.rows * self.cols;
        if self.photometric == "YBR_FULL_422" && self.spp == 3 {
            pixels.div_ceil(2) * 4
        } else {
            pixels * self.spp
        }
    }
}

/// "holds no image (SOP class Basic Text SR Storage, 1.2.840...)".
fn no_image(obj: &DefaultDicomObject) -> String {
    let sop = text(obj, tags::SOP_CLASS_UID)
        .unwrap_or_else(|| obj.meta().media_storage_sop_class_uid().to_string());
    format!(
        "holds no image (SOP class {})",
        super::open::sop_class_name(sop.trim_end_matches('\0'))
    )
}

/// `Err` naming the SOP class when the file has no Pixel Data (structured reports, RT plans,
/// waveforms, ...).
pub(super) fn require_image(obj: &DefaultDicomObject) -> Result<(), String> {
    match obj.element_opt(tags::PIXEL_DATA).ok().flatten() {
        Some(_) => Ok(()),
        None => Err(no_image(obj)),
    }
}

/// The first frame's bytes and whether a codec decoded them (so that colour is already RGB,
/// as dicom-pixeldata reports). Uncompressed data must hold the whole frame: a small file
/// must not stand for a large declared image.
pub(super) fn first_frame(
    obj: &DefaultDicomObject,
    layout: &Layout,
) -> Result<(Vec<u8>, bool), String> {
    let pixel_data = obj
        .element_opt(tags::PIXEL_DATA)
        .ok()
        .flatten()
        .ok_or_else(|| no_image(obj))?;
    if let Some(p) = pixel_data.value().primitive() {
        let need = (layout.stored_samples() as u64 * layout.bits_allocated as u64).div_ceil(8);
        let bytes = p.to_bytes();
        if (bytes.len() as u64) < need {
            return Err(format!(
                "DICOM pixel data holds {} bytes, a {}x{} frame needs {need} (truncated file?)",
                bytes.len(),
                layout.cols,
                layout.rows
            ));
        }
        // One copy of the frame (the pixel data may hold more frames after it).
        let mut frame = bytes.into_owned();
        frame.truncate(need as usize);
        return Ok((frame, false));
    }
    if layout.bits_allocated == 1 {
        return Err("compressed DICOM pixel data of 1 bit a sample is not supported".into());
    }
    let syntax = obj.meta().transfer_syntax().trim_end_matches('\0');
    if super::jpeg12::handles(syntax, layout.bits_stored) {
        if layout.bits_allocated != 16 {
            return Err(format!(
                "12-bit JPEG needs 16 bits allocated, the file says {}",
                layout.bits_allocated
            ));
        }
        let frame =
            super::jpeg12::decode_first_frame(obj, layout.frames, layout.cols, layout.rows)?;
        return Ok((frame, true));
    }
    let decoded = obj
        .decode_pixel_data_frame(0)
        .map_err(|e| format!("cannot decode DICOM pixel data: {}", causes(&e)))?;
    let bytes = decoded
        .frame_data(0)
        .map_err(|e| format!("cannot decode DICOM pixel data: {}", causes(&e)))?;
    Ok((bytes.to_vec(), true))
}

/// An error with its causes ("Could not decode pixel data: RLE segment decodes to fewer
/// bytes than the frame needs"): dicom-pixeldata's own message says only the first part.
fn causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let next = s.to_string();
        if !text.ends_with(&next) {
            text = format!("{text}: {next}");
        }
        source = s.source();
    }
    text
}

/// `count` stored values from `bytes` (little endian; 1-bit samples packed from the least
/// significant bit), each masked to BitsStored ending at HighBit and sign-extended when the
/// pixel representation is signed.
pub(super) fn stored_values(
    bytes: &[u8],
    layout: &Layout,
    count: usize,
) -> Result<Vec<i64>, String> {
    let bits = layout.bits_allocated as usize;
    let need = (count * bits).div_ceil(8);
    if bytes.len() < need {
        return Err(format!(
            "DICOM frame holds {} bytes, {count} samples of {bits} bits need {need}",
            bytes.len()
        ));
    }
    let raw = |i: usize| -> u64 {
        match bits {
            1 => ((bytes[i / 8] >> (i % 8)) & 1) as u64,
            8 => bytes[i] as u64,
            16 => u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]) as u64,
            _ => u32::from_le_bytes([
                bytes[4 * i],
                bytes[4 * i + 1],
                bytes[4 * i + 2],
                bytes[4 * i + 3],
            ]) as u64,
        }
    };
    let stored = layout.bits_stored;
    let shift = layout.high_bit + 1 - stored;
    let mask = (1u64 << stored) - 1;
    let sign = 1u64 << (stored - 1);
    Ok((0..count)
        .map(|i| {
            let v = (raw(i) >> shift) & mask;
            if layout.signed && v & sign != 0 {
                v as i64 - (1i64 << stored)
            } else {
                v as i64
            }
        })
        .collect())
}
