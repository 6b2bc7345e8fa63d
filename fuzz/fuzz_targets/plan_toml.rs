//! Training plans in TOML, then validation and the schedule quantities derived from them.
#![no_main]
use covid_resnet::train::schedule::Plan;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(plan) = Plan::from_toml(&text, "fuzz.toml") {
        let _ = plan.total_epochs();
        if plan.validate().is_ok() {
            for stage in &plan.stages {
                for step in &stage.steps {
                    let _ = step.lr.group_lrs(3, Some(1e-3));
                }
            }
        }
    }
});
