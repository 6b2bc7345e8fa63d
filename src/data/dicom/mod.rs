//! DICOM radiographs through dicom-rs: files with or without a File Meta header, the transfer
//! syntaxes dicom-rs's codecs decode (uncompressed, deflated, RLE, JPEG baseline and lossless,
//! JPEG-LS, JPEG 2000), 1 to 32 bits a sample, the modality rescale and VOI transform in f64
//! (`voi`), MONOCHROME1 inverted, colour and palette images converted to grey by the
//! program's colour path (`colour`). Multi-frame files give their first frame. 12-bit lossy
//! JPEG, which dicom-rs's JPEG codec does not read, goes through `jpeg12`.
mod colour;
mod jpeg12;
mod open;
mod pixels;
pub mod scan;
mod syntax_fix;
#[doc(hidden)]
pub mod testing;
mod voi;
mod vr;

use super::gray::{DicomInfo, GrayImage};
use dicom_dictionary_std::tags;

/// True when the bytes look like a DICOM file: preamble + "DICM", a bare meta group, or a
/// bare data set (no File Meta header) starting in group 0008.
pub fn looks_like_dicom(bytes: &[u8]) -> bool {
    scan::start_of(bytes).is_some()
}

/// A parsed file with its first frame's bytes.
struct Frame {
    opened: open::Opened,
    layout: pixels::Layout,
    bytes: Vec<u8>,
    /// Whether a codec decoded the bytes.
    decoded: bool,
    /// (declared, actual) syntax when the meta group named the wrong VR encoding.
    wrong_vr: Option<(&'static str, &'static str)>,
}

fn first_frame(bytes: &[u8]) -> Result<Frame, String> {
    let wrong_vr = syntax_fix::wrong_vr(bytes);
    let fixed = wrong_vr.and_then(|(_, actual)| syntax_fix::with_syntax(bytes, actual));
    let bytes = scan::prepare(fixed.as_deref().unwrap_or(bytes))?;
    let opened = open::open(&bytes)?;
    pixels::require_image(&opened.obj)?;
    let layout = pixels::Layout::of(&opened.obj)?;
    let (bytes, decoded) = pixels::first_frame(&opened.obj, &layout)?;
    Ok(Frame {
        opened,
        layout,
        bytes,
        decoded,
        wrong_vr,
    })
}

/// A monochrome frame's values after the modality rescale, in f64, row-major.
fn modality(f: &Frame) -> Result<Vec<f64>, String> {
    let (slope, intercept) = voi::rescale(&f.opened.obj);
    Ok(
        pixels::stored_values(&f.bytes, &f.layout, f.layout.rows * f.layout.cols)?
            .into_iter()
            .map(|s| slope * s as f64 + intercept)
            .collect(),
    )
}

/// Decodes the first frame of a DICOM file to grayscale in [0, 1].
pub fn decode_dicom(bytes: &[u8]) -> Result<(GrayImage, DicomInfo), String> {
    let frame = first_frame(bytes)?;
    let (obj, layout) = (&frame.opened.obj, &frame.layout);
    let syntax = obj
        .meta()
        .transfer_syntax()
        .trim_end_matches('\0')
        .to_string();
    let mut info = DicomInfo {
        modality: pixels::text(obj, tags::MODALITY),
        photometric: layout.photometric.clone(),
        view_position: pixels::text(obj, tags::VIEW_POSITION),
        bits_stored: layout.bits_stored as u16,
        bits_allocated: layout.bits_allocated as u16,
        frames: layout.frames,
        transfer_syntax_name: open::syntax_name(&syntax),
        transfer_syntax: syntax,
        meta_header: frame.opened.has_meta,
        windowed: false,
        header_note: frame.wrong_vr.map(|(declared, actual)| {
            format!(
                "the File Meta header names {}, but the data set is written in {}: read as \
                 written (as pydicom does)",
                open::syntax_name(declared),
                open::syntax_name(actual)
            )
        }),
    };
    let (width, height) = (layout.cols as u32, layout.rows as u32);
    if !layout.photometric.starts_with("MONOCHROME") {
        let rgb = colour::to_rgb(
            obj,
            layout,
            &frame.bytes,
            frame.decoded,
            &info.transfer_syntax,
        )?;
        let img = image::Rgb32FImage::from_raw(width, height, rgb)
            .ok_or("DICOM colour frame has the wrong number of samples")?;
        let mut g = super::gray::to_gray(image::DynamicImage::ImageRgb32F(img), "dicom".into())?;
        g.bit_depth = info.bits_stored.min(255) as u8;
        g.dicom = Some(info.clone());
        return Ok((g, info));
    }
    let values = modality(&frame)?;
    let transform = voi::voi(obj);
    info.windowed = transform != voi::Voi::Range;
    let mut data = voi::apply(&values, &transform);
    if layout.photometric == "MONOCHROME1" {
        data.iter_mut().for_each(|g| *g = 1.0 - *g);
    }
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

/// The first frame's values after the modality rescale (before any window), row-major, for
/// a monochrome file: what tests compare with the encoder's input.
#[doc(hidden)]
pub fn modality_values(bytes: &[u8]) -> Result<Vec<f64>, String> {
    modality(&first_frame(bytes)?)
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

    #[test]
    fn a_header_that_names_explicit_vr_over_an_implicit_data_set_is_read_as_written() {
        // Before: refused ("invalid value representation"); pydicom reads it with a warning.
        use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
        let d = tempfile::tempdir().unwrap();
        let good = d.path().join("good.dcm");
        write_gray(&good, &spec("MONOCHROME2", None)).unwrap();
        let bytes = std::fs::read(&good).unwrap();
        // The meta group as written (it names Explicit VR Little Endian): its group length
        // (0002,0000) UL at bytes 132..144 counts the bytes after it.
        assert_eq!(&bytes[132..138], &[2, 0, 0, 0, b'U', b'L']);
        let meta_end = 144 + u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
        let obj = dicom_object::open_file(&good).unwrap();
        let implicit = TransferSyntaxRegistry.get("1.2.840.10008.1.2").unwrap();
        let mut data_set = Vec::new();
        obj.write_dataset_with_ts(&mut data_set, implicit).unwrap();
        let mixed = [&bytes[..meta_end], &data_set[..]].concat();
        let bad = d.path().join("mixed.dcm");
        std::fs::write(&bad, &mixed).unwrap();
        let (a, b) = (decode_file(&good).unwrap(), decode_file(&bad).unwrap());
        assert_eq!(a.data, b.data);
        let note = b.dicom.unwrap().header_note.unwrap();
        assert!(
            note.contains("names Explicit VR Little Endian")
                && note.contains("written in Implicit VR Little Endian"),
            "{note}"
        );
        assert!(a.dicom.unwrap().header_note.is_none());
    }
}
