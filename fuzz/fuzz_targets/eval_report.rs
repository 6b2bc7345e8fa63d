//! Evaluation reports (JSON), then everything the Viewer and the CLI derive from one.
#![no_main]
use covid_resnet::eval::report::EvalReport;
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = EvalReport::from_json(data, Path::new("report.json")) {
        let _ = r.markdown();
        let _ = r.csv();
        let _ = r.misclassified().count();
        let _ = covid_resnet::eval::plot::confusion_image(&r.classes, &r.metrics.confusion.m, "t");
    }
});
