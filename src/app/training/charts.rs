//! The LR finder's chart and the live training plots (loss, learning rates on a log axis,
//! beta1, accuracy and macro F1 per epoch).
use super::plan_editor::first_auto_row;
use super::state::RunModel;
use super::Command;
use crate::app::plots::{decimate, following, hover_label, log10_label, PLOT_HINT};
use crate::train::lr_finder::{view_range, LrFinderConfig, LrPoint, Suggestion};
use crate::train::schedule::LrSpec;
use egui_plot::{Legend, Line, PlotPoints, Points, VLine};

/// One colour per series, so a series' line, markers and legend entry agree.
const ACC_COLOR: egui::Color32 = egui::Color32::from_rgb(90, 170, 250);
const F1_COLOR: egui::Color32 = egui::Color32::from_rgb(240, 140, 60);
const VALID_COLOR: egui::Color32 = egui::Color32::from_rgb(120, 210, 110);
/// Points drawn per series at most.
const MAX_POINTS: usize = 2000;

/// The suggestions of the LR finder's result, named as the buttons show them.
fn suggestions(run: &RunModel) -> Vec<(&'static str, Suggestion)> {
    run.lr_result
        .as_ref()
        .map(|r| {
            let s = r.suggestions;
            [
                ("valley", s.valley),
                ("steep", s.steep),
                ("minimum/10", s.minimum),
            ]
            .into_iter()
            .filter_map(|(n, v)| v.map(|v| (n, v)))
            .collect()
        })
        .unwrap_or_default()
}

/// What the LR finder's chart draws.
pub struct LrSeries {
    /// Raw losses (log10 lr, loss), clipped to the smoothed curve's range.
    pub raw: Vec<[f64; 2]>,
    /// Smoothed losses (log10 lr, loss).
    pub smooth: Vec<[f64; 2]>,
    /// Points of the sweep left out at its end.
    pub cut: usize,
    /// The points drawn.
    pub shown: std::ops::Range<usize>,
}

/// The chart's series: a finished sweep up to fastai's view of it (without the points where
/// the loss shoots up); the y range follows the smoothed curve (fastai plots only that), and
/// a raw loss that spikes is clipped to it so it cannot flatten the part a user reads.
pub fn lr_series(points: &[LrPoint], finished: bool) -> LrSeries {
    let shown = if finished {
        view_range(points)
    } else {
        0..points.len()
    };
    let cut = points.len() - shown.len();
    let pts = &points[shown.clone()];
    let smooth: Vec<[f64; 2]> = pts.iter().map(|p| [p.lr.log10(), p.smoothed]).collect();
    let (lo, hi) = smooth
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| {
            (l.min(p[1]), h.max(p[1]))
        });
    let pad = ((hi - lo) * 0.15).max(0.02);
    let raw: Vec<[f64; 2]> = pts
        .iter()
        .map(|p| [p.lr.log10(), p.loss.clamp(lo - pad, hi + pad)])
        .collect();
    LrSeries {
        raw,
        smooth,
        cut,
        shown,
    }
}

/// The LR finder: loss against learning rate (log axis) up to where the loss diverged, the
/// suggestions, and what picking one does.
pub fn lr_finder_ui(
    ui: &mut egui::Ui,
    run: &RunModel,
    chosen: Option<f64>,
    rows: &[super::PlanRow],
    selected_row: usize,
    commands: &mut Vec<Command>,
) {
    ui.heading("LR finder");
    let LrSeries {
        raw,
        smooth,
        cut,
        shown,
    } = lr_series(&run.lr_points, run.lr_result.is_some());
    let pts = &run.lr_points[shown];
    let sugg = suggestions(run);
    // Each suggestion sits on the drawn curve at its own rate (minimum/10 lies left of the
    // minimum).
    let on_curve = |lr: f64| -> Option<[f64; 2]> {
        pts.iter()
            .min_by(|a, b| {
                (a.lr.ln() - lr.ln())
                    .abs()
                    .total_cmp(&(b.lr.ln() - lr.ln()).abs())
            })
            .map(|p| [lr.log10(), p.smoothed])
    };
    // Explicit x range: a plot of one point has degenerate bounds.
    let cfg = LrFinderConfig::default();
    let plot = following("lr-finder")
        .height(220.0)
        .include_x(cfg.start_lr.log10())
        .include_x(cfg.end_lr.log10())
        .legend(Legend::default())
        .x_axis_label("learning rate")
        .y_axis_label("loss")
        .x_axis_formatter(log10_label)
        .label_formatter(hover_label(|name, p| {
            format!(
                "{name}\nlr {}\nloss {:.4}",
                crate::fmt::lr(10f64.powf(p.x)),
                p.y
            )
        }));
    let resp = plot.show(ui, |pu| {
        pu.line(Line::new("loss", PlotPoints::from(raw)).color(egui::Color32::from_gray(140)));
        pu.line(Line::new("smoothed", PlotPoints::from(smooth)).width(2.0));
        for (name, s) in &sugg {
            if let Some(at) = on_curve(s.lr) {
                pu.points(Points::new(*name, PlotPoints::from(vec![at])).radius(5.0));
            }
        }
        if let Some(c) = chosen {
            pu.vline(VLine::new("chosen", c.log10()));
        }
        pu.pointer_coordinate()
    });
    if resp.response.clicked() {
        if let Some(p) = resp.inner {
            commands.push(Command::ChooseLr(10f64.powf(p.x)));
        }
    }
    if cut > 0 {
        ui.label(format!(
            "The last {cut} point{} of the sweep, where the loss shoots up, are not drawn \
             (fastai's plot leaves them out too).",
            if cut == 1 { "" } else { "s" }
        ));
    }
    ui.horizontal_wrapped(|ui| {
        for (name, s) in &sugg {
            if ui
                .button(format!("Use {name} {}", crate::fmt::lr(s.lr)))
                .clicked()
            {
                commands.push(Command::ChooseLr(s.lr));
            }
        }
    });
    let Some(lr) = chosen else {
        ui.label("Click the chart or a suggestion to choose the rate for the next `auto` step.");
        return;
    };
    let spec = LrSpec::for_suggestion(lr);
    match first_auto_row(rows) {
        Some(r) => {
            ui.label(format!(
                "Chosen {}: row {} (auto) becomes {} when you press Start.",
                crate::fmt::lr(lr),
                r + 1,
                spec_text(spec)
            ));
        }
        None => {
            ui.label(format!(
                "Chosen {}, but the plan has no `auto` row to receive it.",
                crate::fmt::lr(lr)
            ));
            let row = selected_row.min(rows.len().saturating_sub(1));
            if !rows.is_empty()
                && ui
                    .button(format!("Set {} on row {}", spec_text(spec), row + 1))
                    .on_hover_text("select another row with the round button in its first column")
                    .clicked()
            {
                commands.push(Command::SetRowLr { row, lr });
            }
        }
    }
}

/// A learning-rate spec with rounded rates, as typed in the plan ("1.74e-5..1.74e-3").
pub fn spec_text(spec: LrSpec) -> String {
    match spec {
        LrSpec::Fixed(v) => crate::fmt::lr(v),
        LrSpec::Range(lo, hi) => format!("{}..{}", crate::fmt::lr(lo), crate::fmt::lr(hi)),
        LrSpec::UpTo(hi) => format!("..{}", crate::fmt::lr(hi)),
        LrSpec::Auto => "auto".into(),
    }
}

/// Loss, learning rates, beta1 and the per-epoch metrics, as the run goes.
pub fn plots_ui(ui: &mut egui::Ui, run: &RunModel, plan_epochs: usize) {
    let valid: Vec<[f64; 2]> = run
        .epochs
        .iter()
        .map(|m| [m.global_iter as f64, m.valid_loss])
        .collect();
    ui.heading("Loss");
    let x_max = run.progress.total_iters.max(1) as f64;
    let epochs_max = plan_epochs.max(run.epochs.len()).max(1) as f64;
    following("loss")
        .height(220.0)
        .legend(Legend::default())
        .x_axis_label("iteration")
        .include_x(0.0)
        .include_x(x_max)
        .include_y(0.0)
        .show(ui, |pu| {
            pu.line(
                Line::new(
                    "train (batch)",
                    PlotPoints::from(decimate(&run.losses, MAX_POINTS)),
                )
                .color(egui::Color32::from_rgba_unmultiplied(120, 160, 220, 90)),
            );
            pu.line(
                Line::new(
                    "train (smoothed)",
                    PlotPoints::from(decimate(&run.smoothed, MAX_POINTS)),
                )
                .width(2.0),
            );
            pu.line(
                Line::new("valid", PlotPoints::from(valid.clone()))
                    .color(VALID_COLOR)
                    .width(2.0),
            );
            pu.points(
                Points::new("valid", PlotPoints::from(valid))
                    .color(VALID_COLOR)
                    .radius(3.0),
            );
            // An ensemble's members trained before: their validation loss, faded.
            for (name, epochs) in &run.members_done {
                let v: Vec<[f64; 2]> = epochs
                    .iter()
                    .map(|m| [m.global_iter as f64, m.valid_loss])
                    .collect();
                pu.line(
                    Line::new(format!("valid, {name}"), PlotPoints::from(v))
                        .color(VALID_COLOR.gamma_multiply(0.45))
                        .width(1.5),
                );
            }
            for s in run.step_starts.iter().skip(1) {
                pu.vline(VLine::new("step", *s as f64).color(egui::Color32::from_gray(100)));
            }
        });
    ui.columns(2, |cols| {
        cols[0].label("Learning rate per group (log scale), and beta1");
        following("lr")
            .height(160.0)
            .legend(Legend::default())
            .include_x(0.0)
            .include_x(x_max)
            .y_axis_formatter(log10_label)
            .label_formatter(hover_label(|name, p| {
                format!(
                    "{name}\niteration {:.0}\nlr {}",
                    p.x,
                    crate::fmt::lr(10f64.powf(p.y))
                )
            }))
            .show(&mut cols[0], |pu| {
                for (g, l) in run.lrs.iter().enumerate() {
                    let log: Vec<[f64; 2]> = decimate(l, MAX_POINTS)
                        .into_iter()
                        .filter(|p| p[1] > 0.0)
                        .map(|p| [p[0], p[1].log10()])
                        .collect();
                    pu.line(Line::new(format!("lr group {g}"), PlotPoints::from(log)));
                }
            });
        following("beta1")
            .height(80.0)
            .include_x(0.0)
            .include_x(x_max)
            .include_y(0.84)
            .include_y(0.96)
            .show(&mut cols[0], |pu| {
                pu.line(Line::new(
                    "beta1",
                    PlotPoints::from(decimate(&run.beta1, MAX_POINTS)),
                ));
            });
        if run.is_findings() {
            findings_chart_ui(&mut cols[1], run, epochs_max);
            return;
        }
        cols[1].label("Validation accuracy and macro F1 per epoch");
        let per_epoch = |f: fn(&crate::train::events::EpochMetrics) -> f64| -> Vec<[f64; 2]> {
            run.epochs
                .iter()
                .map(|m| [(m.global_epoch + 1) as f64, f(m)])
                .collect()
        };
        let (acc, f1) = (per_epoch(|m| m.accuracy), per_epoch(|m| m.macro_f1));
        following("metrics")
            .height(250.0)
            .legend(Legend::default())
            .include_x(0.0)
            .include_x(epochs_max)
            .include_y(0.0)
            .include_y(1.0)
            .show(&mut cols[1], |pu| {
                // Markers too: one epoch is a single point, which a line does not show.
                pu.line(Line::new("accuracy", PlotPoints::from(acc.clone())).color(ACC_COLOR));
                pu.points(
                    Points::new("accuracy", PlotPoints::from(acc))
                        .radius(3.0)
                        .color(ACC_COLOR),
                );
                pu.line(Line::new("macro F1", PlotPoints::from(f1.clone())).color(F1_COLOR));
                pu.points(
                    Points::new("macro F1", PlotPoints::from(f1))
                        .radius(3.0)
                        .color(F1_COLOR),
                );
                // An ensemble's members trained before: their accuracy, faded, one a line.
                for (name, epochs) in &run.members_done {
                    let a: Vec<[f64; 2]> = epochs
                        .iter()
                        .map(|m| [(m.global_epoch + 1) as f64, m.accuracy])
                        .collect();
                    pu.line(
                        Line::new(format!("accuracy, {name}"), PlotPoints::from(a))
                            .color(ACC_COLOR.gamma_multiply(0.45))
                            .width(1.5),
                    );
                }
            });
    });
    ui.label(egui::RichText::new(PLOT_HINT).small());
}

/// A multi-label run's validation mean AUC per epoch, and each finding's AUC (those with
/// positives and negatives in the validation split), faded.
fn findings_chart_ui(ui: &mut egui::Ui, run: &RunModel, epochs_max: f64) {
    ui.label("Validation mean AUC per epoch (each finding's faded)");
    let mean: Vec<[f64; 2]> = run
        .epochs
        .iter()
        .filter(|m| m.mean_auc.is_finite())
        .map(|m| [(m.global_epoch + 1) as f64, m.mean_auc])
        .collect();
    following("metrics")
        .height(250.0)
        .legend(Legend::default())
        .include_x(0.0)
        .include_x(epochs_max)
        .include_y(0.5)
        .include_y(1.0)
        .show(ui, |pu| {
            for (i, name) in run.classes.iter().enumerate() {
                let pts: Vec<[f64; 2]> = run
                    .epochs
                    .iter()
                    .filter_map(|m| {
                        let v = *m.label_auc.get(i)?;
                        v.is_finite().then_some([(m.global_epoch + 1) as f64, v])
                    })
                    .collect();
                if !pts.is_empty() {
                    pu.line(
                        Line::new(name.clone(), PlotPoints::from(pts))
                            .color(F1_COLOR.gamma_multiply(0.5))
                            .width(1.0),
                    );
                }
            }
            pu.line(Line::new("mean AUC", PlotPoints::from(mean.clone())).color(ACC_COLOR));
            pu.points(
                Points::new("mean AUC", PlotPoints::from(mean))
                    .radius(3.0)
                    .color(ACC_COLOR),
            );
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lr_chart_follows_the_smoothed_curve_not_the_spike() {
        // A sweep whose raw loss reaches 110 in its last points while the smoothed loss
        // stays near 2 until it diverges.
        let cfg = LrFinderConfig::default();
        let mut points: Vec<LrPoint> = (0..60)
            .map(|i| LrPoint {
                iter: i,
                lr: cfg.lr_at(i),
                loss: 2.3 - 0.01 * i as f64,
                smoothed: 2.3 - 0.01 * i as f64,
            })
            .collect();
        for (k, raw) in [(60, 9.0), (61, 30.0), (62, 110.0)] {
            points.push(LrPoint {
                iter: k,
                lr: cfg.lr_at(k),
                loss: raw,
                smoothed: if k == 62 { 8.0 } else { 2.0 },
            });
        }
        // A raw spike inside the drawn part too.
        points[30].loss = 50.0;
        let s = lr_series(&points, true);
        // fastai's view: up to the diverged point (index 62), without the last five.
        assert_eq!(s.shown, 0..58);
        assert_eq!(s.cut, 5);
        let top = s.smooth.iter().map(|p| p[1]).fold(f64::MIN, f64::max);
        let low = s.smooth.iter().map(|p| p[1]).fold(f64::MAX, f64::min);
        assert!(s
            .raw
            .iter()
            .all(|p| p[1] <= top + 0.15 * (top - low) + 1e-9));
        assert!(s.raw[30][1] < 3.0, "the spike is clipped: {:?}", s.raw[30]);
        // While the sweep runs, everything so far is drawn.
        assert_eq!(lr_series(&points, false).cut, 0);
    }
}
