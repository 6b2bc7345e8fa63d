//! Our model files (safetensors + JSON metadata).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ = covid_resnet::model::io::model_file::parse_model_file(data, Path::new("fuzz.safetensors"));
});
