//! Pretrained weight files: PyTorch zip `.pth` (pickle) and safetensors, as `--weights` reads
//! them (from a path, so the bytes go through a temporary file).
//!
//! `read_tensors` contains panics of candle's pickle reader (it returns an error instead); the
//! panic hook libFuzzer installs would abort before that containment runs, so it is swapped
//! for a silent one around the call. Hangs and memory blow-ups are still caught.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let path = std::env::temp_dir().join(format!("covid-resnet-fuzz-{}.pth", std::process::id()));
    if std::fs::write(&path, data).is_ok() {
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let r = std::panic::catch_unwind(|| covid_resnet::model::io::pretrained::read_tensors(&path));
        std::panic::set_hook(hook);
        assert!(r.is_ok(), "read_tensors let a panic escape");
    }
});
