//! A pre-scan of a DICOM file's element headers, before dicom-rs parses it: every defined
//! element length must fit in the bytes that remain. dicom-rs allocates what a header
//! declares, so a 1.5 KB file with a forged length made it take 3.4 GB and 8 s before
//! failing (found by the `decode_dicom` fuzz target). Explicit VR little and big endian and
//! implicit VR little endian are walked.

const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
const UNDEFINED: u32 = 0xFFFF_FFFF;

/// VRs with a 2-byte reserved field and a 4-byte length in explicit VR.
fn long_vr(vr: &[u8]) -> bool {
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
fn known_vr(vr: &[u8]) -> bool {
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

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    /// Data elements (top level, or inside sequence items).
    Elements,
    /// Items of encapsulated pixel data: raw fragments.
    Fragments,
}

fn u16le(b: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([b[i], b[i + 1]])
}

fn u32le(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

fn u16be(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

fn u32be(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// Checks the element headers of `bytes` (a whole file: optional 128-byte preamble and
/// "DICM", the meta group, the data set). `Err` says which length does not fit.
pub fn check_lengths(bytes: &[u8]) -> Result<(), String> {
    let mut i = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
        132
    } else {
        0
    };
    // The meta group (0002,xxxx) is explicit VR little endian; it names the syntax.
    let mut syntax = String::new();
    let mut explicit = true;
    let mut stack: Vec<Mode> = vec![Mode::Elements];
    let mut in_meta = true;
    let mut big = false;
    let mut meta_end: Option<usize> = None;
    while i < bytes.len() {
        if bytes.len() - i < 8 {
            return Err(format!(
                "DICOM data ends inside an element header at byte {i}"
            ));
        }
        let group = u16le(bytes, i);
        let element = u16le(bytes, i + 2);
        if !in_meta && group == 0x0002 {
            // A foreign tag inside the meta group made dicom-rs take 2.1 GB (fuzzing).
            return Err(format!(
                "DICOM meta element (0002,{element:04X}) after the data set began at byte {i}"
            ));
        }
        if in_meta && group != 0x0002 {
            in_meta = false;
            // dicom-rs reads the meta group by its declared length: a wrong one starts the
            // data set mid-element (4.2 GB for a 922-byte file, found by decode_dicom).
            if let Some(end) = meta_end {
                if end != i {
                    return Err(format!(
                        "the DICOM meta group length says it ends at byte {end}, its elements end at {i}"
                    ));
                }
            }
            let s = syntax.trim_end_matches(['\0', ' ']);
            if s.is_empty() {
                return Err("the DICOM meta group names no transfer syntax (0002,0010)".into());
            }
            // The data set after the meta group is big endian in the retired syntax
            // (a fuzzed file with that UID but little-endian data took 3.1 GB).
            big = s == EXPLICIT_VR_BE;
            explicit = s != IMPLICIT_VR_LE;
            let _ = EXPLICIT_VR_LE;
        }
        let (group, element) = if big {
            (u16be(bytes, i), u16be(bytes, i + 2))
        } else {
            (group, element)
        };
        let r16 = |at: usize| {
            if big {
                u16be(bytes, at)
            } else {
                u16le(bytes, at)
            }
        };
        let r32 = |at: usize| {
            if big {
                u32be(bytes, at)
            } else {
                u32le(bytes, at)
            }
        };
        let mode = *stack.last().unwrap_or(&Mode::Elements);
        if group == 0xFFFE {
            // Item, item delimiter, sequence delimiter: tag + 4-byte length, no VR.
            let len = r32(i + 4);
            i += 8;
            match element {
                0xE000 if len != UNDEFINED => {
                    if len as usize > bytes.len() - i {
                        return Err(format!(
                            "a DICOM item declares {len} bytes, only {} remain (forged or truncated file)",
                            bytes.len() - i
                        ));
                    }
                    // Fragments are raw bytes; items of a sequence hold elements, scanned
                    // in place.
                    if mode == Mode::Fragments {
                        i += len as usize;
                    }
                }
                0xE0DD if stack.len() > 1 => {
                    stack.pop();
                }
                _ => {} // undefined-length item, item delimiter: nothing to skip
            }
            continue;
        }
        let (vr, len, header) = if explicit || in_meta {
            let vr = [bytes[i + 4], bytes[i + 5]];
            if !known_vr(&vr) {
                return Err(format!(
                    "DICOM element ({group:04X},{element:04X}) has an invalid value representation {:?}",
                    String::from_utf8_lossy(&vr)
                ));
            }
            if long_vr(&vr) {
                if bytes.len() - i < 12 {
                    return Err(format!(
                        "DICOM data ends inside an element header at byte {i}"
                    ));
                }
                (Some(vr), r32(i + 8), 12)
            } else {
                (Some(vr), r16(i + 6) as u32, 8)
            }
        } else {
            (None, r32(i + 4), 8)
        };
        i += header;
        if len == UNDEFINED {
            // A sequence of items, or encapsulated pixel data (fragments), up to its
            // sequence delimiter.
            let is_sq = vr.is_none_or(|v| &v == b"SQ");
            stack.push(if is_sq {
                Mode::Elements
            } else {
                Mode::Fragments
            });
            continue;
        }
        let len = len as usize;
        if len > bytes.len() - i {
            return Err(format!(
                "DICOM element ({group:04X},{element:04X}) declares {len} bytes, only {} remain (forged or truncated file)",
                bytes.len() - i
            ));
        }
        if in_meta && group == 0x0002 && element == 0x0000 && len == 4 {
            meta_end = Some(i + 4 + u32le(bytes, i) as usize);
        }
        if in_meta && group == 0x0002 && element == 0x0010 {
            syntax = String::from_utf8_lossy(&bytes[i..i + len]).into_owned();
        }
        if vr.is_some_and(|v| &v == b"SQ") {
            continue; // defined-length sequence: its items follow in place
        }
        i += len;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn el(tag: (u16, u16), vr: &[u8; 2], value: &[u8]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend(tag.0.to_le_bytes());
        v.extend(tag.1.to_le_bytes());
        v.extend(vr);
        if long_vr(vr) {
            v.extend([0, 0]);
            v.extend((value.len() as u32).to_le_bytes());
        } else {
            v.extend((value.len() as u16).to_le_bytes());
        }
        v.extend(value);
        v
    }

    fn file(body: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend(b"DICM");
        f.extend(el((0x0002, 0x0010), b"UI", b"1.2.840.10008.1.2.1\0"));
        f.extend(body);
        f
    }

    #[test]
    fn well_formed_elements_pass_and_a_forged_length_is_named() {
        let ok = file(
            &[
                el((0x0008, 0x0060), b"CS", b"DX"),
                el((0x7FE0, 0x0010), b"OW", &[0; 8]),
            ]
            .concat(),
        );
        assert_eq!(check_lengths(&ok), Ok(()));
        let mut bad = file(&el((0x0008, 0x0060), b"CS", b"DX"));
        bad.extend([0x10, 0x00, 0x10, 0x00, b'P', b'N', 0xFF, 0x7F]); // (0010,0010) PN, 32767 bytes
        let e = check_lengths(&bad).unwrap_err();
        assert!(e.contains("(0010,0010) declares 32767 bytes"), "{e}");
    }

    #[test]
    fn sequences_and_encapsulated_pixel_data_are_walked() {
        // SQ of undefined length with one defined-length item holding an element.
        let inner = el((0x0008, 0x0100), b"SH", b"AB");
        let mut sq = vec![
            0x08, 0x00, 0x15, 0x11, b'S', b'Q', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        sq.extend([0xFE, 0xFF, 0x00, 0xE0]);
        sq.extend((inner.len() as u32).to_le_bytes());
        sq.extend(&inner);
        sq.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        // Encapsulated pixel data: offset table item (empty), one 4-byte fragment.
        let mut px = vec![
            0xE0, 0x7F, 0x10, 0x00, b'O', b'B', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        px.extend([0xFE, 0xFF, 0x00, 0xE0, 0, 0, 0, 0]);
        px.extend([0xFE, 0xFF, 0x00, 0xE0, 4, 0, 0, 0, 0xFF, 0xD8, 0xFF, 0xD9]);
        px.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        let f = file(&[sq, px.clone()].concat());
        assert_eq!(check_lengths(&f), Ok(()));
        // A fragment claiming more than the file holds.
        let mut bad = px;
        bad[26] = 0xFF;
        bad[27] = 0x7F;
        assert!(check_lengths(&file(&bad))
            .unwrap_err()
            .contains("item declares"));
    }
}
