//! How numbers are written for people, the same in the terminal, the window and reports.
use crate::eval::metrics::WithCi;

/// `v` (a fraction) as a percentage with `decimals` places, e.g. `96.25 %`; an undefined
/// value (NaN) is `–`.
pub fn pct(v: f64, decimals: usize) -> String {
    if v.is_finite() {
        format!("{:.*} %", decimals, 100.0 * v)
    } else {
        "–".into()
    }
}

/// A probability or threshold with the digits that tell it from its neighbours: four
/// decimals, six near 0 or 1 (where a model's sigmoids crowd).
pub fn fine(p: f64) -> String {
    if (0.001..=0.999).contains(&p) {
        format!("{p:.4}")
    } else {
        format!("{p:.6}")
    }
}

/// A fraction with its interval, e.g. `96.2 % (94.1–97.8)`.
pub fn pct_ci(w: &WithCi, decimals: usize) -> String {
    if !w.value.is_finite() {
        return "–".into();
    }
    let bound = |v: f64| {
        if v.is_finite() {
            format!("{:.*}", decimals, 100.0 * v)
        } else {
            "?".into()
        }
    };
    format!(
        "{} ({}–{})",
        pct(w.value, decimals),
        bound(w.lo),
        bound(w.hi)
    )
}

/// Seconds as `1h02m`, `3m07s` or `12s`.
pub fn duration(secs: f64) -> String {
    let s = if secs.is_finite() { secs.max(0.0) } else { 0.0 } as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else if s >= 60 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}

/// A learning rate to three significant digits, e.g. `1.74e-5`.
pub fn lr(v: f64) -> String {
    let s = format!("{v:.2e}");
    // Rust writes `1.74e-5`; keep it, but drop a trailing ".00" of round values.
    s.replace(".00e", "e")
}

/// A number as written in a file or on a command line, shortest form that reads back the
/// same: `0.3`, `-1`, and `1e-300` rather than 300 digits.
pub fn number(v: f64) -> String {
    if v == 0.0 || !v.is_finite() || (1e-4..1e15).contains(&v.abs()) {
        format!("{v}")
    } else {
        format!("{v:e}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(pct(0.9625, 2), "96.25 %");
        assert_eq!(pct(f64::NAN, 1), "–");
        let w = WithCi {
            value: 0.5,
            lo: 0.25,
            hi: f64::NAN,
            method: Default::default(),
        };
        assert_eq!(pct_ci(&w, 1), "50.0 % (25.0–?)");
        assert_eq!(duration(3725.0), "1h02m");
        assert_eq!(number(1e-300), "1e-300");
        assert_eq!(number(-1.0), "-1");
        assert_eq!(number(0.0), "0");
        assert_eq!(number(0.2248), "0.2248");
        assert_eq!(duration(187.0), "3m07s");
        assert_eq!(duration(9.6), "9s");
        assert_eq!(lr(1.737800828749376e-5), "1.74e-5");
        assert_eq!(lr(1e-3), "1e-3");
        assert_eq!(lr(2.5e-4), "2.50e-4");
    }
}
