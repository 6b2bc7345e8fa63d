//! 12-bit lossy JPEG (JPEG Extended, 1.2.840.10008.1.2.4.51 with BitsStored above 8):
//! dicom-rs's JPEG codec (`jpeg-decoder`) reads 8-bit DCT only, so these frames go to
//! `libjpeg-turbo-rs` (a Rust port of libjpeg-turbo 3, whose 12-bit path it follows). Colour
//! frames come out as RGB, as libjpeg gives them.
use crate::data::gray::{MAX_ALLOC_BYTES, MAX_PIXELS, MAX_SIDE_PX};
use dicom_core::value::Value;
use dicom_dictionary_std::tags;
use dicom_object::DefaultDicomObject;

/// The transfer syntaxes whose 12-bit frames this module decodes.
pub(super) fn handles(syntax: &str, bits_stored: u32) -> bool {
    matches!(syntax, "1.2.840.10008.1.2.4.50" | "1.2.840.10008.1.2.4.51") && bits_stored > 8
}

/// The first frame's JPEG stream: all fragments for a one-frame file; for more frames, the
/// first fragment when there is one a frame, else the fragments before the offset table's
/// second entry.
fn first_frame_stream(obj: &DefaultDicomObject, frames: u32) -> Result<Vec<u8>, String> {
    let px = obj
        .element(tags::PIXEL_DATA)
        .map_err(|e| format!("no pixel data: {e}"))?;
    let Value::PixelSequence(seq) = px.value() else {
        return Err("12-bit JPEG pixel data is not encapsulated".into());
    };
    let fragments = seq.fragments();
    if frames <= 1 {
        return Ok(fragments.concat());
    }
    if fragments.len() == frames as usize {
        return Ok(fragments[0].clone());
    }
    let table = seq.offset_table();
    let Some(&end) = table.get(1) else {
        return Err("multi-frame 12-bit JPEG without an offset table".into());
    };
    // Offsets count each fragment with its 8-byte item header.
    let mut at = 0u64;
    let mut out = Vec::new();
    for f in fragments {
        if at >= end as u64 {
            break;
        }
        out.extend_from_slice(f);
        at += 8 + f.len() as u64;
    }
    Ok(out)
}

/// Decodes the first frame to little-endian 16-bit samples, interleaved. The stream may not
/// be larger than the DICOM image (`cols` x `rows`): a forged header must not cost a large
/// decode.
pub(super) fn decode_first_frame(
    obj: &DefaultDicomObject,
    frames: u32,
    cols: usize,
    rows: usize,
) -> Result<Vec<u8>, String> {
    let stream = first_frame_stream(obj, frames)?;
    let limits = libjpeg_turbo_rs::DecodeLimits {
        max_width: cols.min(MAX_SIDE_PX as usize),
        max_height: rows.min(MAX_SIDE_PX as usize),
        max_pixels: MAX_PIXELS.min((cols * rows) as u64),
        max_memory: Some(MAX_ALLOC_BYTES),
        ..Default::default()
    };
    let img = libjpeg_turbo_rs::decompress_12bit_with_limits(&stream, &limits)
        .map_err(|e| format!("cannot decode the 12-bit JPEG frame: {e}"))?;
    if (img.width, img.height) != (cols, rows) {
        return Err(format!(
            "the 12-bit JPEG frame is {}x{}, the DICOM image {cols}x{rows}",
            img.width, img.height
        ));
    }
    Ok(img
        .data
        .iter()
        .flat_map(|&v| (v.clamp(0, 4095) as u16).to_le_bytes())
        .collect())
}
