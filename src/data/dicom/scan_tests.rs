//! Tests of the pre-scan (scan.rs).
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
