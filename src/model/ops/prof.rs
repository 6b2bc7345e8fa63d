//! A tiny wall-clock profiler for the CPU ops of a training step (`covid-resnet bench
//! --profile`): each op adds its time under its name; off, it costs one atomic load.
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::Instant;

static ON: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<&'static str, (f64, u64)>> = Mutex::new(BTreeMap::new());

/// Starts (and clears) or stops collecting.
pub fn enable(on: bool) {
    if let Ok(mut t) = TOTALS.lock() {
        t.clear();
    }
    ON.store(on, Ordering::Relaxed);
}

/// Adds the time until the returned guard is dropped under `name`.
pub fn scope(name: &'static str) -> Option<Scope> {
    ON.load(Ordering::Relaxed).then(|| Scope {
        name,
        t0: Instant::now(),
    })
}

/// A running measurement.
pub struct Scope {
    name: &'static str,
    t0: Instant,
}

impl Drop for Scope {
    fn drop(&mut self) {
        let dt = self.t0.elapsed().as_secs_f64();
        if let Ok(mut t) = TOTALS.lock() {
            let e = t.entry(self.name).or_insert((0.0, 0));
            e.0 += dt;
            e.1 += 1;
        }
    }
}

/// (name, seconds, calls) collected so far, largest first.
pub fn report() -> Vec<(&'static str, f64, u64)> {
    let mut v: Vec<_> = TOTALS
        .lock()
        .map(|t| t.iter().map(|(k, (s, n))| (*k, *s, *n)).collect())
        .unwrap_or_default();
    v.sort_by(|a, b| b.1.total_cmp(&a.1));
    v
}
