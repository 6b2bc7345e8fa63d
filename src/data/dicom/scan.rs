//! A pre-scan of a DICOM file's element headers, before dicom-rs parses it: every defined
//! element length must fit in the bytes that remain. dicom-rs allocates what a header
//! declares, so a 1.5 KB file with a forged length made it take 3.4 GB and 8 s before
//! failing (found by the `decode_dicom` fuzz target). Explicit VR little and big endian and
//! implicit VR little endian are walked; a deflated data set is inflated first (at most
//! `MAX_ALLOC_BYTES`), and a UN element of undefined length is walked as the implicit VR
//! sequence PS3.5 6.2.2 says it is.

use super::vr::{dictionary_vr, known_vr, long_vr, value_size};
use crate::data::gray::MAX_ALLOC_BYTES;
use std::io::Read;

pub(super) const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub(super) const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
const EXPLICIT_VR_BE: &str = "1.2.840.10008.1.2.2";
pub(super) const DEFLATED_EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1.99";
const UNDEFINED: u32 = 0xFFFF_FFFF;

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
#[path = "scan_tests.rs"]
mod tests;
