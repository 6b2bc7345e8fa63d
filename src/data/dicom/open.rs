//! Parsing a DICOM file into a dicom-rs object: a file with a File Meta group (after the
//! 128-byte preamble or not), or a bare data set without one (implicit or explicit VR little
//! endian, as older systems wrote), for which a meta group is made up from the data set's own
//! SOP Class and Instance UIDs.
use super::scan::{self, Start, EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use dicom_object::file::ReadPreamble;
use dicom_object::{DefaultDicomObject, FileMetaTableBuilder, InMemDicomObject, OpenFileOptions};
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};

/// A parsed file and whether it had a File Meta group.
pub(super) struct Opened {
    pub obj: DefaultDicomObject,
    pub has_meta: bool,
}

/// Parses `bytes` (already length-checked by [`scan::check_lengths`]).
pub(super) fn open(bytes: &[u8]) -> Result<Opened, String> {
    match scan::start_of(bytes) {
        Some(Start::DataSet { explicit }) => {
            let uid = if explicit {
                EXPLICIT_VR_LE
            } else {
                IMPLICIT_VR_LE
            };
            let ts = TransferSyntaxRegistry
                .get(uid)
                .ok_or_else(|| format!("transfer syntax {uid} is not registered"))?;
            let data = InMemDicomObject::read_dataset_with_ts(std::io::Cursor::new(bytes), ts)
                .map_err(|e| format!("not a readable DICOM data set (no File Meta header): {e}"))?;
            // `with_meta` takes the SOP Class and Instance UIDs from the data set when it
            // has them; these stand in when it does not.
            let meta = FileMetaTableBuilder::new()
                .transfer_syntax(uid)
                .media_storage_sop_class_uid("1.2.840.10008.5.1.4.1.1.7")
                .media_storage_sop_instance_uid("2.25.0");
            let obj = data
                .with_meta(meta)
                .map_err(|e| format!("cannot read the DICOM data set's UIDs: {e}"))?;
            Ok(Opened {
                obj,
                has_meta: false,
            })
        }
        _ => OpenFileOptions::new()
            .read_preamble(ReadPreamble::Auto)
            .from_reader(std::io::Cursor::new(bytes))
            .map(|obj| Opened {
                obj,
                has_meta: true,
            })
            .map_err(|e| format!("not a readable DICOM file: {e}")),
    }
}

/// The transfer syntax's name ("JPEG 2000 Image Compression (Lossless Only)", ...), or the
/// UID itself when dicom-rs does not know it.
pub(super) fn syntax_name(uid: &str) -> String {
    TransferSyntaxRegistry
        .get(uid)
        .map(|ts| ts.name().to_string())
        .unwrap_or_else(|| uid.to_string())
}

/// The SOP class's name ("Basic Text SR Storage", ...) followed by its UID.
pub(super) fn sop_class_name(uid: &str) -> String {
    use dicom_core::dictionary::UidDictionary;
    match dicom_dictionary_std::StandardSopClassDictionary.by_uid(uid) {
        Some(e) => format!("{}, {uid}", e.name),
        None => uid.to_string(),
    }
}
