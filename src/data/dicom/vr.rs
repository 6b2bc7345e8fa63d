//! The value representations of PS3.5 6.2 as the pre-scan needs them: which exist, which
//! have a 4-byte length in explicit VR, which hold fixed-size values, and the VR the standard
//! dictionary gives a tag (what an implicit VR reader assumes).

/// VRs with a 2-byte reserved field and a 4-byte length in explicit VR.
pub(super) fn long_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"SQ"
            | b"UC"
            | b"UN"
            | b"UR"
            | b"UT"
            | b"SV"
            | b"UV"
    )
}

/// Every value representation of PS3.5 (a file with another code is malformed; dicom-rs read
/// such an element's length from the wrong bytes and allocated 4 GB for a 1.5 KB file).
pub(super) fn known_vr(vr: &[u8]) -> bool {
    matches!(
        vr,
        b"AE"
            | b"AS"
            | b"AT"
            | b"CS"
            | b"DA"
            | b"DS"
            | b"DT"
            | b"FL"
            | b"FD"
            | b"IS"
            | b"LO"
            | b"LT"
            | b"OB"
            | b"OD"
            | b"OF"
            | b"OL"
            | b"OV"
            | b"OW"
            | b"PN"
            | b"SH"
            | b"SL"
            | b"SQ"
            | b"SS"
            | b"ST"
            | b"SV"
            | b"TM"
            | b"UC"
            | b"UI"
            | b"UL"
            | b"UN"
            | b"UR"
            | b"US"
            | b"UT"
            | b"UV"
    )
}

/// Bytes in one value of a fixed-size VR: a length must be a multiple of it (PS3.5 6.2).
/// dicom-rs read a UL or SL of 2 bytes out of step and allocated 1.1 GB before failing
/// (found by decode_dicom).
pub(super) fn value_size(vr: &[u8]) -> Option<usize> {
    match vr {
        b"US" | b"SS" | b"OW" => Some(2),
        b"UL" | b"SL" | b"FL" | b"AT" | b"OF" | b"OL" => Some(4),
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => Some(8),
        _ => None,
    }
}

/// The VR the standard dictionary gives a tag (what an implicit VR reader assumes), when
/// it is one fixed VR.
pub(super) fn dictionary_vr(group: u16, element: u16) -> Option<[u8; 2]> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let entry =
        dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(group, element))?;
    match entry.vr() {
        VirtualVr::Exact(vr) => vr.to_string().as_bytes().try_into().ok(),
        VirtualVr::Xs => Some(*b"US"),
        _ => None,
    }
}
