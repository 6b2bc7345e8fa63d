//! Every image format the data pipeline accepts (PNG, JPEG, BMP, TIFF, DICOM by sniffing),
//! then the steps the app and `predict` take next: input warnings and resizing.
#![no_main]
use covid_resnet::data::decode::decode_bytes;
use covid_resnet::data::preprocess::{resize_gray, ResizeMode};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(img) = decode_bytes(data, Path::new("fuzz.img")) {
        assert_eq!(img.data.len(), img.width as usize * img.height as usize);
        assert!(
            img.data.iter().all(|v| (0.0..=1.0).contains(v)),
            "values outside 0..1"
        );
        let _ = covid_resnet::infer::sanity::check(&img, 224);
        let _ = resize_gray(&img, 32, ResizeMode::Squash);
    }
});
