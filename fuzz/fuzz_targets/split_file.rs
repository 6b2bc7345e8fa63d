//! COVID-Net split files (3/4 columns, aliases, BOM, CRLF, tabs).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let dir = Path::new("/nonexistent-fuzz-data/train");
    if let Ok(split) =
        covid_resnet::data::split::parse_split_text(&text, Path::new("train.txt"), dir)
    {
        for s in &split.samples {
            assert!(
                s.path.starts_with(dir),
                "{} escapes the image folder",
                s.path.display()
            );
            assert!(s.label < 4);
        }
        let _ = split.class_counts();
        let _ = split.patient_counts();
    }
});
