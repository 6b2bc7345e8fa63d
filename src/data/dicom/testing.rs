//! Writes a minimal uncompressed grayscale DICOM file (used by tests and fixtures).
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
