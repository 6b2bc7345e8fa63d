//! COVID-Net split files (3/4 columns, any labels, BOM, CRLF, tabs) and the class order
//! made from their labels.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let dir = Path::new("/nonexistent-fuzz-data/train");
    if let Ok(rows) =
        covid_resnet::data::split::parse_split_text(&text, Path::new("train.txt"), dir)
    {
        for r in &rows {
            assert!(
                r.path.starts_with(dir),
                "{} escapes the image folder",
                r.path.display()
            );
            assert!(!r.label.trim().is_empty(), "an empty label was accepted");
        }
        let labels: Vec<String> = rows
            .iter()
            .map(|r| covid_resnet::data::split::labels::canonical(&r.label))
            .collect();
        if let Ok(classes) = covid_resnet::data::split::labels::class_order(&labels, None) {
            for l in &labels {
                assert!(classes.contains(l), "{l} has no class");
            }
        }
    }
});
