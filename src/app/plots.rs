//! What every chart of the window shares: decimation so that a 41-epoch run stays fast to
//! draw, plots that follow their data (the mouse wheel scrolls the page; zooming takes Ctrl
//! or a right-drag box; a double-click follows the data again), and log-scale axes.
use egui_plot::{GridMark, HoverPosition, Plot, PlotPoint};

/// How a user zooms and gets back, shown under the charts.
pub const PLOT_HINT: &str =
    "Charts follow the data. Ctrl+wheel or a right-drag box zooms; double-click follows the data again.";

/// A plot named `name` (its id, the same wherever it is drawn, so tests can read its
/// memory) that never moves under the wheel: only deliberate zooms change its view.
pub fn following(name: &'static str) -> Plot<'static> {
    Plot::new(name)
        .id(egui::Id::unique(name))
        .allow_scroll(false)
        .allow_drag(false)
        .allow_zoom(true)
        .allow_boxed_zoom(true)
        .allow_double_click_reset(true)
}

/// Axis labels for values plotted as log10: `1e-4`, `3e-4`, ...
pub fn log10_label(mark: GridMark, _range: &std::ops::RangeInclusive<f64>) -> String {
    crate::fmt::lr(10f64.powf(mark.value))
}

/// A hover label from the series' name ("" away from the data) and the position.
pub fn hover_label(
    f: impl Fn(&str, PlotPoint) -> String,
) -> impl Fn(&HoverPosition<'_>) -> Option<String> {
    move |h| {
        Some(match h {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => f(plot_name, *position),
            HoverPosition::Elsewhere { position } => f("", *position),
        })
    }
}

/// At most `max` points: each bucket of consecutive points keeps its minimum and maximum
/// (in x order), so spikes stay visible.
pub fn decimate(points: &[[f64; 2]], max: usize) -> Vec<[f64; 2]> {
    if points.len() <= max || max < 4 {
        return points.to_vec();
    }
    let buckets = max / 2;
    let size = points.len().div_ceil(buckets);
    let mut out = Vec::with_capacity(max);
    for chunk in points.chunks(size) {
        let (mut lo, mut hi) = (chunk[0], chunk[0]);
        for p in chunk {
            if p[1] < lo[1] {
                lo = *p;
            }
            if p[1] > hi[1] {
                hi = *p;
            }
        }
        if lo[0] <= hi[0] {
            out.extend([lo, hi]);
        } else {
            out.extend([hi, lo]);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimation_bounds_size_and_keeps_extremes() {
        let pts: Vec<[f64; 2]> = (0..10_000)
            .map(|i| [i as f64, if i == 4321 { 100.0 } else { (i % 7) as f64 }])
            .collect();
        let d = decimate(&pts, 1000);
        assert!(d.len() <= 1000, "{}", d.len());
        assert!(d.iter().any(|p| p[1] == 100.0), "the spike survives");
        assert!(d.windows(2).all(|w| w[0][0] <= w[1][0]), "x stays ordered");
        assert_eq!(decimate(&pts[..10], 1000).len(), 10);
    }
}
