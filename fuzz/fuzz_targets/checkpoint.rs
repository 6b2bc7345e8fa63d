//! Training checkpoints (safetensors + JSON run state).
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let _ =
        covid_resnet::train::checkpoint::parse_checkpoint(data, Path::new("checkpoint.safetensors"));
});
