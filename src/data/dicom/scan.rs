//! A pre-scan of a DICOM file's element headers, before dicom-rs parses it: every defined
//! element length must fit in the bytes that remain. dicom-rs allocates what a header
//! declares, so a 1.5 KB file with a forged length made it take 3.4 GB and 8 s before
//! failing (found by the `decode_dicom` fuzz target). Explicit VR little and big endian and
//! implicit VR little endian are walked; a deflated data set is inflated first (at most
//! `MAX_ALLOC_BYTES`), and a UN element of undefined length is walked as the implicit VR
//! sequence PS3.5 6.2.2 says it is.

use crate::data::decode::MAX_ALLOC_BYTES;
use std::io::Read;

pub(super) const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub(super) const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub(super) const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
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

/// Bytes in one value of a fixed-size VR: a length must be a multiple of it (PS3.5 6.2).
/// dicom-rs read a UL or SL of 2 bytes out of step and allocated 1.1 GB before failing
/// (found by decode_dicom).
fn value_size(vr: &[u8]) -> Option<usize> {
    match vr {
        b"US" | b"SS" | b"OW" => Some(2),
        b"UL" | b"SL" | b"FL" | b"AT" | b"OF" | b"OL" => Some(4),
        b"FD" | b"SV" | b"UV" | b"OD" | b"OV" => Some(8),
        _ => None,
    }
}

/// The VR the standard dictionary gives a tag (what an implicit VR reader assumes), when
/// it is one fixed VR.
fn dictionary_vr(group: u16, element: u16) -> Option<[u8; 2]> {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry, VirtualVr};
    let entry =
        dicom_dictionary_std::StandardDataDictionary.by_tag(dicom_core::Tag(group, element))?;
    match entry.vr() {
        VirtualVr::Exact(vr) => vr.to_string().as_bytes().try_into().ok(),
        VirtualVr::Xs => Some(*b"US"),
        _ => None,
    }
}

/// What a level of nesting holds (PS3.5 7.5): the data set and items hold elements,
/// sequences hold items, encapsulated Pixel Data holds raw fragments.
#[derive(Clone, Copy, PartialEq, Debug)]
enum Mode {
    /// The data set itself.
    Top,
    /// A sequence: items only.
    Sequence,
    /// An item of a sequence: elements.
    Item,
    /// Encapsulated Pixel Data: items of raw bytes.
    Fragments,
}

/// One level of nesting: what it holds and how its element headers are written.
#[derive(Clone, Copy)]
struct Level {
    mode: Mode,
    explicit: bool,
    /// Where a defined-length sequence or item ends; `None`: at its delimiter.
    end: Option<usize>,
    /// For a UN element of undefined length in an explicit VR data set: where its header
    /// starts.
    un_header: Option<usize>,
}

/// A UN element of undefined length: its header's offset and where its sequence delimiter
/// ends.
#[derive(Clone, Copy, Debug, PartialEq)]
struct UnSequence {
    header: usize,
    end: usize,
}

/// What the walk found.
struct Walked {
    /// Offset of the data set when the meta group names the deflated syntax.
    deflated_from: Option<usize>,
    un_sequences: Vec<UnSequence>,
    big_endian: bool,
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

/// Where the bytes start and how the data set is encoded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Start {
    /// An optional preamble and "DICM", then the File Meta group that names the syntax.
    Meta,
    /// A bare data set (no File Meta group), little endian, explicit VR or not.
    DataSet { explicit: bool },
}

/// How a file starts: with a File Meta group (after a preamble or not), or as a bare data set
/// (older systems wrote those) whose first element is in group 0008, explicit VR when its
/// bytes 4-5 are a VR code. `None` when it looks like neither.
pub(super) fn start_of(bytes: &[u8]) -> Option<Start> {
    if (bytes.len() >= 132 && &bytes[128..132] == b"DICM") || bytes.starts_with(&[0x02, 0x00]) {
        return Some(Start::Meta);
    }
    if bytes.len() < 8 || bytes[..2] != [0x08, 0x00] {
        return None;
    }
    if known_vr(&bytes[4..6]) {
        return Some(Start::DataSet { explicit: true });
    }
    // Implicit VR: a 4-byte length that fits in the file.
    let len = u32le(bytes, 4) as usize;
    (len <= bytes.len() - 8).then_some(Start::DataSet { explicit: false })
}

/// Inflates a deflated data set (raw deflate, PS3.5 A.5), refusing more than
/// `MAX_ALLOC_BYTES` of output (a small file can inflate to gigabytes).
pub(super) fn inflate(deflated: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    flate2::read::DeflateDecoder::new(deflated)
        .take(MAX_ALLOC_BYTES + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("the deflated DICOM data set cannot be inflated: {e}"))?;
    if out.len() as u64 > MAX_ALLOC_BYTES {
        return Err(format!(
            "the deflated DICOM data set inflates to more than {MAX_ALLOC_BYTES} bytes"
        ));
    }
    Ok(out)
}

/// Checks the element headers of `bytes` (a whole file: optional 128-byte preamble and
/// "DICM", the meta group, the data set; or a bare data set). `Err` says which length does
/// not fit.
pub fn check_lengths(bytes: &[u8]) -> Result<(), String> {
    prepare(bytes).map(|_| ())
}

/// Checks `bytes` as [`check_lengths`] does and returns them ready for dicom-rs: unchanged,
/// unless the data set has UN elements of undefined length (which dicom-rs cannot parse).
/// Each of those becomes an OB element of the same total size holding the sequence's bytes
/// (so the lengths of enclosing items stay true); the program does not read private
/// sequences. A deflated data set is inflated, mended and deflated again.
pub fn prepare(bytes: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, String> {
    use std::borrow::Cow;
    match start_of(bytes) {
        Some(Start::DataSet { explicit }) => {
            let w = walk(bytes, 0, Some(explicit))?;
            Ok(mend(Cow::Borrowed(bytes), &w))
        }
        _ => {
            let i = if bytes.len() >= 132 && &bytes[128..132] == b"DICM" {
                132
            } else {
                0
            };
            let w = walk(bytes, i, None)?;
            let Some(data_set) = w.deflated_from else {
                return Ok(mend(Cow::Borrowed(bytes), &w));
            };
            let inflated = inflate(&bytes[data_set..])?;
            let inner = walk(&inflated, 0, Some(true))?;
            if inner.un_sequences.is_empty() {
                return Ok(Cow::Borrowed(bytes));
            }
            let mended = mend(Cow::Owned(inflated), &inner);
            let mut out = bytes[..data_set].to_vec();
            let mut enc = flate2::write::DeflateEncoder::new(&mut out, flate2::Compression::fast());
            std::io::Write::write_all(&mut enc, &mended)
                .and_then(|_| enc.finish().map(|_| ()))
                .map_err(|e| format!("cannot deflate the mended DICOM data set: {e}"))?;
            Ok(Cow::Owned(out))
        }
    }
}

/// Relabels each UN sequence of undefined length as OB of defined length (same header size:
/// tag, VR, 2 reserved bytes, 4-byte length).
fn mend<'a>(bytes: std::borrow::Cow<'a, [u8]>, w: &Walked) -> std::borrow::Cow<'a, [u8]> {
    if w.un_sequences.is_empty() {
        return bytes;
    }
    let mut b = bytes.into_owned();
    for s in &w.un_sequences {
        let len = (s.end - (s.header + 12)) as u32;
        b[s.header + 4..s.header + 6].copy_from_slice(b"OB");
        b[s.header + 8..s.header + 12].copy_from_slice(&if w.big_endian {
            len.to_be_bytes()
        } else {
            len.to_le_bytes()
        });
    }
    std::borrow::Cow::Owned(b)
}

/// Walks elements from byte `i`. `data_set`: `None` when a meta group comes first (it names
/// the syntax), else whether the bare data set is explicit VR. Returns the offset of the
/// data set when the meta group names the deflated syntax (the rest is compressed), and the
/// UN sequences of undefined length.
fn walk(bytes: &[u8], mut i: usize, data_set: Option<bool>) -> Result<Walked, String> {
    // The meta group (0002,xxxx) is explicit VR little endian; it names the syntax.
    let mut syntax = String::new();
    let mut stack: Vec<Level> = vec![Level {
        mode: Mode::Top,
        explicit: data_set.unwrap_or(true),
        end: None,
        un_header: None,
    }];
    let mut un_sequences = Vec::new();
    let mut in_meta = data_set.is_none();
    let mut big = false;
    let mut meta_end: Option<usize> = None;
    while i < bytes.len() {
        // Defined-length sequences and items end where their length says; nothing inside
        // may run past that.
        while let Some(end) = stack.last().and_then(|l| l.end) {
            if i < end {
                break;
            }
            if i > end {
                return Err(format!(
                    "a DICOM element runs past the end of its sequence or item (byte {end})"
                ));
            }
            stack.pop();
        }
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
            if s == DEFLATED_EXPLICIT_VR_LE {
                return Ok(Walked {
                    deflated_from: Some(i),
                    un_sequences,
                    big_endian: false,
                });
            }
            // The data set after the meta group is big endian in the retired syntax
            // (a fuzzed file with that UID but little-endian data took 3.1 GB).
            big = s == EXPLICIT_VR_BE;
            stack[0].explicit = s != IMPLICIT_VR_LE;
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
        let level = *stack.last().unwrap_or(&Level {
            mode: Mode::Top,
            explicit: true,
            end: None,
            un_header: None,
        });
        if group == 0xFFFE {
            // Item, item delimiter, sequence delimiter: tag + 4-byte length, no VR.
            let len = r32(i + 4);
            // Only items and the two delimiters live in group FFFE, and delimiters are empty
            // (PS3.5 7.5): dicom-rs read a (FFFE,E08D) on and allocated 4.2 GB (decode_dicom).
            if !matches!(element, 0xE000 | 0xE00D | 0xE0DD) || (element != 0xE000 && len != 0) {
                return Err(format!(
                    "DICOM item tag (FFFE,{element:04X}) with length {len} at byte {i} is not an \
                     item or an empty delimiter"
                ));
            }
            i += 8;
            match (element, level.mode) {
                (0xE000, Mode::Fragments) => {
                    if len == UNDEFINED || len as usize > bytes.len() - i {
                        return Err(format!(
                            "a DICOM pixel data fragment declares {len} bytes, {} remain (forged or truncated file)",
                            bytes.len() - i
                        ));
                    }
                    i += len as usize; // raw bytes
                }
                (0xE000, Mode::Sequence) => {
                    if len != UNDEFINED && len as usize > bytes.len() - i {
                        return Err(format!(
                            "a DICOM item declares {len} bytes, only {} remain (forged or truncated file)",
                            bytes.len() - i
                        ));
                    }
                    // Its elements follow in place.
                    stack.push(Level {
                        mode: Mode::Item,
                        explicit: level.explicit,
                        end: (len != UNDEFINED).then(|| i + len as usize),
                        un_header: None,
                    });
                }
                (0xE00D, Mode::Item) if level.end.is_none() => {
                    stack.pop();
                }
                (0xE0DD, Mode::Sequence | Mode::Fragments) if level.end.is_none() => {
                    if let Some(header) = stack.pop().and_then(|l| l.un_header) {
                        un_sequences.push(UnSequence { header, end: i });
                    }
                }
                _ => {
                    // dicom-rs read such misplaced items and delimiters out of step and
                    // allocated 0.8-4.2 GB (decode_dicom).
                    return Err(format!(
                        "DICOM item tag (FFFE,{element:04X}) at byte {} is out of place",
                        i - 8
                    ));
                }
            }
            continue;
        }
        if !matches!(level.mode, Mode::Top | Mode::Item) {
            return Err(format!(
                "DICOM element ({group:04X},{element:04X}) at byte {i} is inside a sequence but not in an item"
            ));
        }
        let (vr, len, header) = if level.explicit || in_meta {
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
        let header_at = i;
        i += header;
        if len == UNDEFINED {
            // A sequence of items, or encapsulated pixel data (fragments), up to its
            // sequence delimiter. UN of undefined length is a sequence in implicit VR
            // little endian (PS3.5 6.2.2).
            stack.push(match vr.as_ref().map(|v| &v[..]) {
                None | Some(b"SQ") => Level {
                    mode: Mode::Sequence,
                    explicit: level.explicit && vr.is_some(),
                    end: None,
                    un_header: None,
                },
                Some(b"UN") => Level {
                    mode: Mode::Sequence,
                    explicit: false,
                    end: None,
                    un_header: Some(header_at),
                },
                // Encapsulated fragments: only Pixel Data may be so (PS3.5 A.4). dicom-rs read
                // another OB of undefined length as 4 GiB long (4.1 GB for a 2 KB file,
                // found by decode_dicom).
                Some(b"OB" | b"OW") if (group, element) == (0x7FE0, 0x0010) => Level {
                    mode: Mode::Fragments,
                    explicit: level.explicit,
                    end: None,
                    un_header: None,
                },
                Some(v) => {
                    return Err(format!(
                        "DICOM element ({group:04X},{element:04X}) {} has an undefined length, \
                         which only sequences and Pixel Data may have",
                        String::from_utf8_lossy(v)
                    ))
                }
            });
            continue;
        }
        let len = len as usize;
        let fixed = vr.or_else(|| dictionary_vr(group, element));
        if let Some(size) = fixed.and_then(|v| value_size(&v)) {
            if !len.is_multiple_of(size) {
                return Err(format!(
                    "DICOM element ({group:04X},{element:04X}) {} holds {len} bytes, not a multiple of {size}",
                    String::from_utf8_lossy(&fixed.unwrap_or_default())
                ));
            }
        }
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
            // Defined-length sequence: its items follow in place, up to its end.
            stack.push(Level {
                mode: Mode::Sequence,
                explicit: level.explicit,
                end: Some(i + len),
                un_header: None,
            });
            continue;
        }
        i += len;
    }
    Ok(Walked {
        deflated_from: None,
        un_sequences,
        big_endian: big,
    })
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
            .contains("fragment declares"));
    }

    fn meta(syntax: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 128];
        f.extend(b"DICM");
        f.extend(el((0x0002, 0x0010), b"UI", syntax));
        f
    }

    #[test]
    fn a_deflate_bomb_is_refused_before_it_is_inflated_whole() {
        use std::io::Write;
        let mut enc = flate2::write::DeflateEncoder::new(Vec::new(), flate2::Compression::fast());
        let zeros = vec![0u8; 1 << 20];
        for _ in 0..(MAX_ALLOC_BYTES >> 20) + 1 {
            enc.write_all(&zeros).unwrap();
        }
        let mut f = meta(b"1.2.840.10008.1.2.1.99\0\0");
        f.extend(enc.finish().unwrap());
        assert!(f.len() < 2 << 20, "{} bytes", f.len());
        let e = check_lengths(&f).unwrap_err();
        assert!(e.contains("inflates to more than"), "{e}");
    }

    #[test]
    fn a_un_sequence_of_undefined_length_is_walked_as_implicit_vr_and_mended() {
        // (0009,1001) UN, undefined length: one item holding (0008,0100) in implicit VR,
        // with a nested undefined-length sequence, then the sequence delimiter.
        let mut body = vec![
            0x09, 0x00, 0x01, 0x10, b'U', b'N', 0, 0, 0xFF, 0xFF, 0xFF, 0xFF,
        ];
        body.extend([0xFE, 0xFF, 0x00, 0xE0, 0xFF, 0xFF, 0xFF, 0xFF]);
        body.extend([0x08, 0x00, 0x00, 0x01, 4, 0, 0, 0]);
        body.extend(b"ABC ");
        body.extend([0x08, 0x00, 0x15, 0x11, 0xFF, 0xFF, 0xFF, 0xFF]); // nested, implicit
        body.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]);
        body.extend([0xFE, 0xFF, 0x0D, 0xE0, 0, 0, 0, 0]); // item delimiter
        body.extend([0xFE, 0xFF, 0xDD, 0xE0, 0, 0, 0, 0]); // end of the UN sequence
        let after = el((0x0010, 0x0020), b"LO", b"ID");
        let f = [file(&body), after.clone()].concat();
        let mended = prepare(&f).unwrap();
        assert_eq!(mended.len(), f.len(), "same size");
        let at = f.len() - after.len() - body.len();
        assert_eq!(&mended[at + 4..at + 6], b"OB");
        let len = u32le(&mended, at + 8) as usize;
        assert_eq!(
            at + 12 + len,
            f.len() - after.len(),
            "the OB ends at the next element"
        );
        // Read as explicit VR, the implicit element's bytes would be a VR "\x04\0": refused.
        let mut as_sq = f.clone();
        as_sq[at + 4..at + 6].copy_from_slice(b"SQ");
        assert!(check_lengths(&as_sq).is_err());
    }

    #[test]
    fn bare_data_sets_are_recognised_by_their_first_element() {
        let explicit = el((0x0008, 0x0016), b"UI", b"1.2\0");
        assert_eq!(start_of(&explicit), Some(Start::DataSet { explicit: true }));
        let mut implicit = vec![0x08, 0x00, 0x16, 0x00, 4, 0, 0, 0];
        implicit.extend(b"1.2\0");
        assert_eq!(
            start_of(&implicit),
            Some(Start::DataSet { explicit: false })
        );
        assert_eq!(check_lengths(&implicit), Ok(()));
        implicit[4] = 0x40; // a length past the end
        assert_eq!(start_of(&implicit), None);
        assert_eq!(start_of(b"\x89PNG\r\n\x1a\n"), None);
    }
}
