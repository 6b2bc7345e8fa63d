//! DICOM decoding (meta group, transfer syntaxes, LUTs, windows).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok((img, _info)) = covid_resnet::data::dicom::decode_dicom(data) {
        assert_eq!(img.data.len(), img.width as usize * img.height as usize);
        assert!(
            img.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "values outside 0..1"
        );
    }
});
