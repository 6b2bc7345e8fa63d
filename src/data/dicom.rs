//! DICOM radiographs through dicom-rs: modality LUT (rescale slope/intercept), VOI LUT
//! sequence or window centre/width when present (else min-max over the stored values),
//! MONOCHROME1 inverted, BitsStored respected, and the compressed transfer syntaxes that
//! dicom-rs decodes natively (JPEG baseline/extended/lossless, RLE, deflate).
use super::decode::{GrayImage, MAX_ALLOC_BYTES, MAX_PIXELS, MAX_SIDE_PX};
use dicom_dictionary_std::tags;
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, OpenFileOptions};
use dicom_pixeldata::{ConvertOptions, PixelDecoder, VoiLutOption};

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
    /// Number of frames (the first is used).
    pub frames: u32,
    /// Transfer syntax UID.
    pub transfer_syntax: String,
    /// Whether a window or VOI LUT from the file was applied.
    pub windowed: bool,
}

/// True when the bytes look like a DICOM file (preamble + "DICM", or a bare meta group).
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    (bytes.len() >= 132 && &bytes[128..132] == b"DICM") || bytes.starts_with(&[0x02, 0x00])
}

fn text(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<String> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_str().ok())
        .map(|s| s.trim().trim_end_matches('\0').to_string())
        .filter(|s| !s.is_empty())
}

fn int(obj: &DefaultDicomObject, tag: dicom_core::Tag) -> Option<u32> {
    obj.element_opt(tag)
        .ok()
        .flatten()
        .and_then(|e| e.to_int::<u32>().ok())
}

/// Decodes the first frame of a DICOM file to grayscale in [0, 1].
pub fn decode_dicom(bytes: &[u8]) -> std::result::Result<(GrayImage, DicomInfo), String> {
    super::dicom_scan::check_lengths(bytes)?;
    let obj = OpenFileOptions::new()
        .read_preamble(ReadPreamble::Auto)
        .from_reader(std::io::Cursor::new(bytes))
        .map_err(|e| format!("not a readable DICOM file: {e}"))?;
    let rows = int(&obj, tags::ROWS).ok_or("DICOM file has no Rows")?;
    let cols = int(&obj, tags::COLUMNS).ok_or("DICOM file has no Columns")?;
    let frames = int(&obj, tags::NUMBER_OF_FRAMES).unwrap_or(1).max(1);
    let spp = int(&obj, tags::SAMPLES_PER_PIXEL).unwrap_or(1);
    let bits_alloc = int(&obj, tags::BITS_ALLOCATED).unwrap_or(16);
    if rows == 0 || cols == 0 {
        return Err("DICOM image has no pixels".into());
    }
    // dicom-pixeldata's LUTs assume 1 <= BitsStored <= BitsAllocated <= 16 (a larger value
    // overflowed a shift in its LUT code: found by fuzzing).
    let present = |t| obj.element_opt(t).ok().flatten().is_some();
    if (present(tags::BITS_STORED) && int(&obj, tags::BITS_STORED).is_none())
        || (present(tags::BITS_ALLOCATED) && int(&obj, tags::BITS_ALLOCATED).is_none())
    {
        return Err("DICOM BitsAllocated or BitsStored is not a number".into());
    }
    let bits_stored = int(&obj, tags::BITS_STORED).unwrap_or(bits_alloc);
    if !matches!(bits_alloc, 1 | 8 | 16) || bits_stored == 0 || bits_stored > bits_alloc {
        return Err(format!(
            "DICOM BitsAllocated {bits_alloc} / BitsStored {bits_stored} are not supported \
             (expected 8 or 16 bits allocated, 1 to that many stored)"
        ));
    }
    if rows > MAX_SIDE_PX || cols > MAX_SIDE_PX {
        return Err(format!(
            "DICOM image is {cols}x{rows}, over the {MAX_SIDE_PX} px limit"
        ));
    }
    if rows as u64 * cols as u64 * spp.max(1) as u64 > MAX_PIXELS {
        return Err(format!(
            "DICOM image is {cols}x{rows} with {spp} samples a pixel, over the {MAX_PIXELS}-pixel limit"
        ));
    }
    let decoded_bytes = rows as u64
        * cols as u64
        * frames as u64
        * spp.max(1) as u64
        * (bits_alloc.max(8) as u64 / 8);
    if decoded_bytes > MAX_ALLOC_BYTES {
        return Err(format!(
            "DICOM pixel data would take {decoded_bytes} bytes, over the limit"
        ));
    }
    let Some(pixel_data) = obj.element_opt(tags::PIXEL_DATA).ok().flatten() else {
        return Err("DICOM file has no pixel data (not an image?)".into());
    };
    // Native (uncompressed) data must hold the first frame: a small file must not make the
    // decoder allocate for a large declared image.
    if let Some(p) = pixel_data.value().primitive() {
        let have = p.calculate_byte_len() as u64;
        let need =
            (rows as u64 * cols as u64 * spp.max(1) as u64 * bits_alloc.max(1) as u64).div_ceil(8);
        if have < need {
            return Err(format!(
                "DICOM pixel data holds {have} bytes, a {cols}x{rows} frame needs {need} (truncated file?)"
            ));
        }
    }
    let photometric =
        text(&obj, tags::PHOTOMETRIC_INTERPRETATION).unwrap_or_else(|| "MONOCHROME2".into());
    let mut info = DicomInfo {
        modality: text(&obj, tags::MODALITY),
        photometric: photometric.clone(),
        view_position: text(&obj, tags::VIEW_POSITION),
        bits_stored: int(&obj, tags::BITS_STORED).unwrap_or(bits_alloc) as u16,
        frames,
        transfer_syntax: obj
            .meta()
            .transfer_syntax()
            .trim_end_matches('\0')
            .to_string(),
        windowed: false,
    };
    let pixels = obj
        .decode_pixel_data()
        .map_err(|e| format!("cannot decode DICOM pixel data: {e}"))?;
    let (width, height) = (pixels.columns(), pixels.rows());
    let n = width as usize * height as usize;
    if !photometric.starts_with("MONOCHROME") {
        let img = pixels
            .to_dynamic_image(0)
            .map_err(|e| format!("cannot convert {photometric} DICOM pixels: {e}"))?;
        let l = img.to_luma32f().into_raw();
        return Ok((
            GrayImage {
                width,
                height,
                data: l,
                bit_depth: info.bits_stored.min(255) as u8,
                was_color: true,
                format: "dicom".into(),
                dicom: None,
            },
            info,
        ));
    }
    let has_voi = pixels.window().ok().flatten().is_some()
        || pixels.voi_lut_sequence().ok().flatten().is_some();
    let voi = if has_voi {
        VoiLutOption::First
    } else {
        VoiLutOption::Normalize
    };
    info.windowed = has_voi;
    let values: Vec<u16> = pixels
        .to_vec_frame_with_options(0, &ConvertOptions::new().with_voi_lut(voi))
        .map_err(|e| format!("cannot apply the DICOM LUTs: {e}"))?;
    if values.len() < n {
        return Err(format!(
            "DICOM frame holds {} values for {width}x{height} pixels",
            values.len()
        ));
    }
    let invert = photometric == "MONOCHROME1";
    let data = values[..n]
        .iter()
        .map(|&v| {
            let g = v as f32 / 65535.0;
            if invert {
                1.0 - g
            } else {
                g
            }
        })
        .collect();
    Ok((
        GrayImage {
            width,
            height,
            data,
            bit_depth: info.bits_stored.min(255) as u8,
            was_color: false,
            format: "dicom".into(),
            dicom: Some(info.clone()),
        },
        info,
    ))
}

/// Writes a minimal uncompressed grayscale DICOM file (used by tests and fixtures).
#[doc(hidden)]
pub mod testing {
    use dicom_core::value::PrimitiveValue;
    use dicom_core::{DataElement, VR};
    use dicom_dictionary_std::{tags, uids};
    use dicom_object::{FileMetaTableBuilder, InMemDicomObject};
    use std::path::Path;

    /// What to put in a test file.
    #[derive(Debug, Clone)]
    pub struct Spec<'a> {
        /// Columns.
        pub width: u16,
        /// Rows.
        pub height: u16,
        /// Stored values, row-major (16 bits allocated).
        pub values: &'a [u16],
        /// Bits stored.
        pub bits_stored: u16,
        /// MONOCHROME1 or MONOCHROME2.
        pub photometric: &'a str,
        /// Rescale slope and intercept.
        pub rescale: Option<(f64, f64)>,
        /// Window centre and width.
        pub window: Option<(f64, f64)>,
        /// View position.
        pub view: Option<&'a str>,
    }

    /// Writes `spec` to `path` (explicit VR little endian, DX image storage).
    pub fn write_gray(path: &Path, spec: &Spec) -> Result<(), String> {
        let mut obj = InMemDicomObject::new_empty();
        let us = |v: u16| PrimitiveValue::from(v);
        obj.put(DataElement::new(
            tags::SOP_CLASS_UID,
            VR::UI,
            PrimitiveValue::from(uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION),
        ));
        obj.put(DataElement::new(
            tags::SOP_INSTANCE_UID,
            VR::UI,
            PrimitiveValue::from("1.2.826.0.1.3680043.2.1125.1"),
        ));
        obj.put(DataElement::new(
            tags::MODALITY,
            VR::CS,
            PrimitiveValue::from("DX"),
        ));
        if let Some(v) = spec.view {
            obj.put(DataElement::new(
                tags::VIEW_POSITION,
                VR::CS,
                PrimitiveValue::from(v),
            ));
        }
        obj.put(DataElement::new(tags::SAMPLES_PER_PIXEL, VR::US, us(1)));
        obj.put(DataElement::new(
            tags::PHOTOMETRIC_INTERPRETATION,
            VR::CS,
            PrimitiveValue::from(spec.photometric),
        ));
        obj.put(DataElement::new(tags::ROWS, VR::US, us(spec.height)));
        obj.put(DataElement::new(tags::COLUMNS, VR::US, us(spec.width)));
        obj.put(DataElement::new(tags::BITS_ALLOCATED, VR::US, us(16)));
        obj.put(DataElement::new(
            tags::BITS_STORED,
            VR::US,
            us(spec.bits_stored),
        ));
        obj.put(DataElement::new(
            tags::HIGH_BIT,
            VR::US,
            us(spec.bits_stored - 1),
        ));
        obj.put(DataElement::new(tags::PIXEL_REPRESENTATION, VR::US, us(0)));
        if let Some((slope, intercept)) = spec.rescale {
            obj.put(DataElement::new(
                tags::RESCALE_SLOPE,
                VR::DS,
                PrimitiveValue::from(format!("{slope}")),
            ));
            obj.put(DataElement::new(
                tags::RESCALE_INTERCEPT,
                VR::DS,
                PrimitiveValue::from(format!("{intercept}")),
            ));
        }
        if let Some((c, w)) = spec.window {
            obj.put(DataElement::new(
                tags::WINDOW_CENTER,
                VR::DS,
                PrimitiveValue::from(format!("{c}")),
            ));
            obj.put(DataElement::new(
                tags::WINDOW_WIDTH,
                VR::DS,
                PrimitiveValue::from(format!("{w}")),
            ));
        }
        obj.put(DataElement::new(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(spec.values.iter().copied().collect()),
        ));
        let meta = FileMetaTableBuilder::new()
            .transfer_syntax(uids::EXPLICIT_VR_LITTLE_ENDIAN)
            .media_storage_sop_class_uid(uids::DIGITAL_X_RAY_IMAGE_STORAGE_FOR_PRESENTATION)
            .media_storage_sop_instance_uid("1.2.826.0.1.3680043.2.1125.1");
        let file = obj.with_meta(meta).map_err(|e| e.to_string())?;
        file.write_to_file(path).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{write_gray, Spec};
    use crate::data::decode::decode_file;

    /// DICOM PS3.3 C.11.2.1.2.1, linear VOI function, output in [0, 1].
    fn window_linear(y: f64, c: f64, w: f64) -> f64 {
        if y <= c - 0.5 - (w - 1.0) / 2.0 {
            0.0
        } else if y > c - 0.5 + (w - 1.0) / 2.0 {
            1.0
        } else {
            (y - (c - 0.5)) / (w - 1.0) + 0.5
        }
    }

    const VALUES: [u16; 8] = [0, 100, 500, 1000, 1500, 2000, 3000, 4095];

    fn spec<'a>(photometric: &'a str, window: Option<(f64, f64)>) -> Spec<'a> {
        Spec {
            width: 4,
            height: 2,
            values: &VALUES,
            bits_stored: 12,
            photometric,
            rescale: Some((2.0, -100.0)),
            window,
            view: Some("PA"),
        }
    }

    #[test]
    fn rescale_then_window_as_the_standard_says() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("w.dcm");
        let (c, w) = (2000.0, 3000.0);
        write_gray(&p, &spec("MONOCHROME2", Some((c, w)))).unwrap();
        let g = decode_file(&p).unwrap();
        assert_eq!((g.width, g.height, g.format.as_str()), (4, 2, "dicom"));
        let info = g.dicom.clone().unwrap();
        assert_eq!(info.view_position.as_deref(), Some("PA"));
        assert_eq!(info.modality.as_deref(), Some("DX"));
        assert_eq!(info.bits_stored, 12);
        assert!(info.windowed);
        for (i, &x) in VALUES.iter().enumerate() {
            let want = window_linear(2.0 * x as f64 - 100.0, c, w);
            assert!(
                (g.data[i] as f64 - want).abs() < 2e-4,
                "value {x}: {} vs {want}",
                g.data[i]
            );
        }
    }

    #[test]
    fn monochrome1_is_inverted() {
        let dir = tempfile::tempdir().unwrap();
        let (p1, p2) = (dir.path().join("m1.dcm"), dir.path().join("m2.dcm"));
        write_gray(&p1, &spec("MONOCHROME1", Some((2000.0, 3000.0)))).unwrap();
        write_gray(&p2, &spec("MONOCHROME2", Some((2000.0, 3000.0)))).unwrap();
        let (a, b) = (decode_file(&p1).unwrap(), decode_file(&p2).unwrap());
        for (x, y) in a.data.iter().zip(&b.data) {
            assert!((x + y - 1.0).abs() < 1e-6, "{x} + {y}");
        }
        assert!(
            a.data[0] > 0.99,
            "the lowest stored value is white in MONOCHROME1"
        );
    }

    #[test]
    fn without_a_window_the_stored_range_is_stretched() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("n.dcm");
        write_gray(&p, &spec("MONOCHROME2", None)).unwrap();
        let g = decode_file(&p).unwrap();
        assert!(!g.dicom.as_ref().unwrap().windowed);
        let (lo, hi) = (2.0 * 0.0 - 100.0, 2.0 * 4095.0 - 100.0);
        for (i, &x) in VALUES.iter().enumerate() {
            let want = (2.0 * x as f64 - 100.0 - lo) / (hi - lo);
            assert!(
                (g.data[i] as f64 - want).abs() < 1e-3,
                "value {x}: {} vs {want}",
                g.data[i]
            );
        }
    }

    #[test]
    fn truncated_dicom_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.dcm");
        write_gray(&p, &spec("MONOCHROME2", None)).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        for cut in [bytes.len() - 5, bytes.len() / 2, 140] {
            std::fs::write(&p, &bytes[..cut]).unwrap();
            let e = decode_file(&p).unwrap_err().to_string();
            assert!(e.contains("t.dcm"), "cut {cut}: {e}");
        }
    }
}
