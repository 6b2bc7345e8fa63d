//! A File Meta group that names the wrong VR encoding: some writers say Explicit VR Little
//! Endian and then write the data set in Implicit VR (or the other way round). pydicom reads
//! such files with a warning, deciding by the first data-set element (in explicit VR its
//! bytes 4-5 are a VR code); this does the same, rewriting the meta group's Transfer Syntax
//! UID so that dicom-rs reads the data set as it is written.
use super::scan::{EXPLICIT_VR_LE, IMPLICIT_VR_LE};
use super::vr::known_vr;

/// One meta element: where it starts, where its value starts and ends.
struct MetaElement {
    start: usize,
    value: usize,
    end: usize,
    element: u16,
}

/// The meta group's elements (explicit VR little endian) from byte `i`, and where the data
/// set begins; None when a header does not fit.
fn meta_elements(bytes: &[u8], mut i: usize) -> Option<(Vec<MetaElement>, usize)> {
    let mut out = Vec::new();
    while bytes.get(i..i + 2)? == [0x02, 0x00] {
        let element = u16::from_le_bytes(bytes.get(i + 2..i + 4)?.try_into().ok()?);
        let vr = bytes.get(i + 4..i + 6)?;
        let (value, len) = if matches!(vr, b"OB" | b"OW" | b"OF" | b"SQ" | b"UT" | b"UN") {
            let l = u32::from_le_bytes(bytes.get(i + 8..i + 12)?.try_into().ok()?);
            (i + 12, l as usize)
        } else {
            let l = u16::from_le_bytes(bytes.get(i + 6..i + 8)?.try_into().ok()?);
            (i + 8, l as usize)
        };
        let end = value.checked_add(len).filter(|&e| e <= bytes.len())?;
        out.push(MetaElement {
            start: i,
            value,
            end,
            element,
        });
        i = end;
    }
    Some((out, i))
}

fn meta_start(bytes: &[u8]) -> usize {
    if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        132
    } else {
        0
    }
}

/// (declared, actual) transfer syntax UIDs when the meta group names explicit or implicit
/// VR little endian and the data set is written in the other; None otherwise.
pub fn wrong_vr(bytes: &[u8]) -> Option<(&'static str, &'static str)> {
    let (els, data_set) = meta_elements(bytes, meta_start(bytes))?;
    let ts = els.iter().find(|e| e.element == 0x0010)?;
    let declared = std::str::from_utf8(&bytes[ts.value..ts.end])
        .ok()?
        .trim_end_matches(['\0', ' ']);
    let looks_explicit = known_vr(bytes.get(data_set + 4..data_set + 6)?);
    match (declared, looks_explicit) {
        (EXPLICIT_VR_LE, false) => Some((EXPLICIT_VR_LE, IMPLICIT_VR_LE)),
        (IMPLICIT_VR_LE, true) => Some((IMPLICIT_VR_LE, EXPLICIT_VR_LE)),
        _ => None,
    }
}

/// `bytes` with the meta group's Transfer Syntax UID set to `uid` (and its group length
/// made true again); None when the meta group cannot be walked.
pub fn with_syntax(bytes: &[u8], uid: &str) -> Option<Vec<u8>> {
    let start = meta_start(bytes);
    let (els, data_set) = meta_elements(bytes, start)?;
    let mut value = uid.as_bytes().to_vec();
    if value.len() % 2 == 1 {
        value.push(0);
    }
    let mut out = bytes[..start].to_vec();
    let mut group_length_at = None;
    for e in &els {
        match e.element {
            0x0010 => {
                out.extend_from_slice(&bytes[e.start..e.start + 6]);
                out.extend_from_slice(&(value.len() as u16).to_le_bytes());
                out.extend_from_slice(&value);
            }
            0x0000 => {
                group_length_at = Some(out.len() + (e.value - e.start));
                out.extend_from_slice(&bytes[e.start..e.end]);
            }
            _ => out.extend_from_slice(&bytes[e.start..e.end]),
        }
    }
    if let Some(at) = group_length_at {
        // The group length counts the bytes after its own element.
        let after = (out.len() - (at + 4)) as u32;
        out.get_mut(at..at + 4)?
            .copy_from_slice(&after.to_le_bytes());
    }
    out.extend_from_slice(&bytes[data_set..]);
    Some(out)
}
