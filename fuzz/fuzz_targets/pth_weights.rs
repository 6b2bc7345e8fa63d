//! Pretrained weight files: PyTorch zip `.pth` (pickle) and safetensors, as `--weights` reads
//! them (from a path, so the bytes go through a temporary file).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("covid-resnet-fuzz-{}.pth", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let _ = covid_resnet::model::weights::read_tensors(&path);
    }
});
