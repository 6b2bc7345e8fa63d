//! Helpers shared by the integration tests.
use std::path::PathBuf;

/// Environment variable naming the `shared` folder (fixtures, data); `.ci/run` sets it.
pub const SHARED_ENV: &str = "COVID_RESNET_SHARED";

/// The shared folder. When the variable is set, its absence is a failure; when it is not
/// set, `../shared` beside the checkout is used if present, else the test is skipped loudly.
pub fn shared_dir() -> Option<PathBuf> {
    match std::env::var_os(SHARED_ENV) {
        Some(p) => {
            let p = PathBuf::from(p);
            assert!(
                p.join("fixtures").is_dir(),
                "{SHARED_ENV}={} but it has no fixtures/ folder",
                p.display()
            );
            Some(p)
        }
        None => {
            let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared");
            if p.join("fixtures").is_dir() {
                Some(p)
            } else {
                eprintln!("SKIPPED: {SHARED_ENV} is not set and ../shared is absent");
                None
            }
        }
    }
}

/// The `covid-resnet` binary built for these tests.
pub fn bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_covid-resnet"))
}

/// Largest absolute difference between two tensors of one shape.
pub fn max_abs_diff(a: &candle_core::Tensor, b: &candle_core::Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

/// Steps the UI harness until `cond` holds (background work replies between frames), for at
/// most `secs`, then two more frames so the result is drawn.
pub fn step_until(
    h: &mut egui_kittest::Harness<'static, covid_resnet::app::App>,
    secs: u64,
    what: &str,
    cond: impl Fn(&covid_resnet::app::App) -> bool,
) {
    let t = std::time::Instant::now();
    while !cond(h.state()) {
        assert!(
            t.elapsed() < std::time::Duration::from_secs(secs),
            "timed out waiting for {what}"
        );
        h.step();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    h.run_steps(2);
}
