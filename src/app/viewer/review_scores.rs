//! The review's operating point and charts: a class of interest, a threshold slider with
//! buttons for a target sensitivity and for Youden's J, the rates at that point, the ROC
//! curves with the point marked, the reliability diagram and the probability histogram.
//! The matrix, the tables and the gallery follow the threshold.
use super::{Ask, Command, ViewerTab};
use crate::eval::charts::{colour, histogram, HISTOGRAM_BINS};
use crate::eval::operating::{youden_threshold, OperatingPoint};
use crate::eval::report::EvalReport;
use crate::eval::scores::cell;
use crate::model::io::model_file::{rewrite_meta, SavedOperatingPoint};
use egui::{Color32, RichText};
use egui_plot::{Bar, BarChart, Corner, Legend, Line, Plot, PlotPoints, Points, VLine};
use std::path::{Path, PathBuf};

/// What the operating-point controls remember between frames.
#[derive(Debug, Clone)]
pub struct OperatingUi {
    /// The class of interest (None: the report's default).
    pub focus: Option<usize>,
    /// The target sensitivity of the button, in percent.
    pub target_pct: f64,
}

impl Default for OperatingUi {
    fn default() -> Self {
        Self {
            focus: None,
            target_pct: 95.0,
        }
    }
}

fn rgb(c: usize) -> Color32 {
    let [r, g, b] = colour(c);
    Color32::from_rgb(r, g, b)
}

/// The model copy that keeps operating point `op`: `<stem>-<class>-t<threshold>.safetensors`
/// in `dir`.
pub fn model_copy_path(model: &Path, dir: &Path, class: &str, t: f64) -> PathBuf {
    let stem = model
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "model".into());
    let class: String = class
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    dir.join(format!("{stem}-{class}-t{t:.4}.safetensors"))
}

impl ViewerTab {
    /// Applies an operating point to the review (None: argmax).
    pub(super) fn set_operating_point(&mut self, op: Option<OperatingPoint>) {
        if let Some(r) = &mut self.review.report {
            r.set_operating_point(op);
        }
    }

    /// Writes a copy of the loaded model keeping the review's operating point into `dir`
    /// and loads it; returns the copy's path.
    pub(super) fn save_model_copy(&mut self, dir: &Path) -> Result<PathBuf, String> {
        let model = self
            .model
            .as_ref()
            .map(|m| m.path.clone())
            .ok_or("no model is loaded")?;
        let r = self.review.report.as_ref().ok_or("no review")?;
        let op = r
            .operating_point
            .ok_or("no operating point is set: tick \"Predict at a threshold\" first")?;
        let class = r.classes[op.class].clone();
        if self
            .model
            .as_ref()
            .is_none_or(|m| m.predictor.meta().class_names != r.classes)
        {
            return Err("the review's classes are not the loaded model's".into());
        }
        let out = model_copy_path(&model, dir, &class, op.threshold);
        rewrite_meta(&model, &out, |m| {
            m.operating_point = Some(SavedOperatingPoint {
                class,
                threshold: op.threshold,
            })
        })
        .map_err(|e| e.to_string())?;
        Ok(out)
    }
}

/// The operating-point controls and the charts of report `r`; changes are queued as
/// commands.
pub fn operating_ui(
    ui: &mut egui::Ui,
    r: &EvalReport,
    state: &mut OperatingUi,
    commands: &mut Vec<Command>,
) {
    let Some(s) = &r.scores else {
        return;
    };
    let k = r.classes.len();
    let focus = state.focus.filter(|&c| c < k).unwrap_or_else(|| r.focus());
    let op = r.operating_point;
    ui.label(RichText::new("Operating point").strong());
    let mut new_op: Option<Option<OperatingPoint>> = None;
    ui.horizontal_wrapped(|ui| {
            let l = ui.label("Class of interest");
            let mut f = focus;
            egui::ComboBox::from_id_salt("op-class")
                .selected_text(&r.classes[focus])
                .show_ui(ui, |ui| {
                    for (c, name) in r.classes.iter().enumerate() {
                        ui.selectable_value(&mut f, c, name);
                    }
                })
                .response
                .labelled_by(l.id);
            if f != focus {
                state.focus = Some(f);
                if let Some(o) = op {
                    new_op = Some(Some(OperatingPoint { class: f, ..o }));
                }
            }
            let mut on = op.is_some();
            if ui
                .checkbox(&mut on, "Predict at a threshold")
                .on_hover_text("Predict the class of interest when its probability reaches the threshold, else the most probable other class. Off: the most probable class (argmax).")
                .changed()
            {
                new_op = Some(on.then_some(OperatingPoint {
                    class: focus,
                    threshold: 0.5,
                }));
            }
        });
    ui.horizontal(|ui| {
        let mut t = op.map_or(0.5, |o| o.threshold);
        let l = ui.label("threshold");
        // Wide, so a drag moves it finely, and with a field that takes a typed value.
        ui.style_mut().spacing.slider_width = (ui.available_width() - 170.0).clamp(200.0, 520.0);
        let resp = ui
            .add_enabled(
                op.is_some(),
                egui::Slider::new(&mut t, 0.0..=1.0).custom_formatter(|v, _| crate::fmt::number(v)),
            )
            .labelled_by(l.id);
        if resp.changed() {
            new_op = Some(Some(OperatingPoint {
                class: focus,
                threshold: t,
            }));
        }
    });
    ui.horizontal_wrapped(|ui| {
            let l = ui.label("target sensitivity %");
            ui.add(
                egui::DragValue::new(&mut state.target_pct)
                    .range(1.0..=100.0)
                    .speed(0.5),
            )
            .labelled_by(l.id);
            if ui
                .button("Set for the target sensitivity")
                .on_hover_text("The highest threshold whose sensitivity on these images reaches the target (chosen on the images it is measured on: optimistic).")
                .clicked()
            {
                if let Some(t) = r.threshold_for_sensitivity(focus, state.target_pct / 100.0) {
                    new_op = Some(Some(OperatingPoint { class: focus, threshold: t }));
                }
            }
            if ui
                .button("Youden's J")
                .on_hover_text("The threshold that maximises sensitivity + specificity − 1 on these images.")
                .clicked()
            {
                if let Some(t) = youden_threshold(&s.roc[focus].curve) {
                    new_op = Some(Some(OperatingPoint { class: focus, threshold: t }));
                }
            }
            if op.is_some() && ui.button("Save in a model copy…").on_hover_text("Writes a copy of the loaded model that predicts with this operating point (predict and the image view use it) and loads it.").clicked() {
                commands.push(Command::Pick(Ask::ModelCopy));
            }
        });
    let (b, at) = match &s.operating {
        Some(o) => (
            &o.binary,
            format!(
                "at p({}) ≥ {}",
                o.binary.class,
                crate::fmt::number(o.point.threshold)
            ),
        ),
        None => (&s.at_argmax[focus], "at argmax".to_string()),
    };
    ui.label(format!(
        "{} {at}: sensitivity {} · specificity {} · PPV {} · NPV {} (TP {}, FP {}, TN {}, FN {})",
        b.class,
        cell(&b.sensitivity),
        cell(&b.specificity),
        cell(&b.ppv),
        cell(&b.npv),
        b.tp,
        b.fp,
        b.tn,
        b.fn_
    ));
    ui.label(format!(
        "AUC {} (macro {}) · ECE {} · Brier {:.4}",
        cell(&s.roc[focus].auc),
        cell(&s.macro_auc),
        cell(&s.ece),
        s.brier.value,
    ));
    ui.label(
        RichText::new(format!(
            "Intervals: bootstrap over {}; † Wilson.",
            s.resampled
        ))
        .weak(),
    );
    if let Some(o) = new_op {
        commands.push(Command::SetOperatingPoint(o));
    }
    charts_ui(ui, r, focus);
}

/// A square plot of `size` points over x in [0, 1], following its data (the wheel scrolls
/// the page, as every chart of the window).
pub(super) fn unit_plot(name: &'static str, size: f32) -> Plot<'static> {
    crate::app::plots::following(name)
        .width(size)
        .height(size)
        .include_x(0.0)
        .include_x(1.0)
}

/// A polyline without repeated points (ROC curves have them at every tie).
pub(super) fn distinct(points: impl Iterator<Item = [f64; 2]>) -> Vec<[f64; 2]> {
    let mut out: Vec<[f64; 2]> = Vec::new();
    for p in points {
        if out.last() != Some(&p) {
            out.push(p);
        }
    }
    out
}

/// The ROC curves, the reliability diagram and the histogram of p(`focus`).
fn charts_ui(ui: &mut egui::Ui, r: &EvalReport, focus: usize) {
    let Some(s) = &r.scores else {
        return;
    };
    let size = ((ui.available_width() - 24.0) / 2.0).clamp(200.0, 340.0);
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.label("ROC, one vs rest");
            unit_plot("review-roc", size)
                .data_aspect(1.0)
                .include_y(0.0)
                .include_y(1.0)
                .x_axis_label("1 − specificity")
                .y_axis_label("sensitivity")
                .legend(Legend::default().position(Corner::RightBottom))
                .show(ui, |pu| {
                    // The band of the class of interest as its two edges (a filled polygon
                    // of a non-convex band was drawn as wedges over the curves).
                    let band = &s.roc[focus].band;
                    for edge in [1, 2] {
                        let pts = distinct(band.iter().map(|b| [b[0], b[edge]]));
                        pu.line(
                            Line::new("95% band", PlotPoints::from(pts))
                                .allow_band(false)
                                .color(rgb(focus).gamma_multiply(0.6))
                                .style(egui_plot::LineStyle::dashed_dense())
                                .width(1.0),
                        );
                    }
                    pu.line(
                        Line::new("chance", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                            .color(Color32::GRAY),
                    );
                    for (c, roc) in s.roc.iter().enumerate() {
                        let pts = distinct(
                            roc.curve
                                .fpr
                                .iter()
                                .zip(&roc.curve.tpr)
                                .map(|(&x, &y)| [x, y]),
                        );
                        pu.line(
                            Line::new(
                                format!("{} {}", roc.class, crate::fmt::pct(roc.auc.value, 1)),
                                PlotPoints::from(pts),
                            )
                            // egui_plot draws a line whose x never falls as a filled band of
                            // its extent per pixel column: a ROC curve's vertical steps became
                            // solid wedges over the chart.
                            .allow_band(false)
                            .color(rgb(c))
                            .width(if c == focus { 2.5 } else { 1.5 }),
                        );
                    }
                    let b = match &s.operating {
                        Some(o) => &o.binary,
                        None => &s.at_argmax[focus],
                    };
                    pu.points(
                        Points::new(
                            "operating point",
                            PlotPoints::from(vec![[
                                1.0 - b.specificity.value,
                                b.sensitivity.value,
                            ]]),
                        )
                        .radius(6.0)
                        .color(Color32::BLACK),
                    );
                });
        });
        ui.vertical(|ui| {
            ui.label("Reliability (top label, 15 bins)");
            unit_plot("review-reliability", size)
                .include_y(0.0)
                .include_y(1.0)
                .x_axis_label("confidence")
                .y_axis_label("accuracy")
                .legend(Legend::default().position(Corner::LeftTop))
                .show(ui, |pu| {
                    let bars: Vec<Bar> = s
                        .reliability
                        .iter()
                        .map(|b| {
                            Bar::new((b.lo + b.hi) / 2.0, b.accuracy)
                                .width(b.hi - b.lo)
                                .name(format!(
                                    "{} images, confidence {:.2}",
                                    b.count, b.confidence
                                ))
                        })
                        .collect();
                    pu.bar_chart(BarChart::new("accuracy in the bin (bars)", bars).color(rgb(0)));
                    pu.line(
                        Line::new("perfect", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                            .color(Color32::GRAY),
                    );
                    let conf: Vec<[f64; 2]> = s
                        .reliability
                        .iter()
                        .map(|b| [(b.lo + b.hi) / 2.0, b.confidence])
                        .collect();
                    pu.points(
                        Points::new("mean confidence in the bin (dots)", PlotPoints::from(conf))
                            .radius(3.0)
                            .color(rgb(3)),
                    );
                });
        });
    });
    ui.horizontal(|ui| {
        ui.vertical(|ui| {
            ui.label(format!("p({}) by true class", r.classes[focus]));
            unit_plot("review-histogram", size)
                .x_axis_label(format!("p({})", r.classes[focus]))
                .y_axis_label("images (√ scale)")
                .y_axis_formatter(|m, _| format!("{:.0}", m.value * m.value))
                .legend(Legend::default())
                .show(ui, |pu| {
                    const BINS: usize = HISTOGRAM_BINS;
                    for t in 0..r.classes.len() {
                        let h = histogram(r, focus, t);
                        let bars: Vec<Bar> = h
                            .iter()
                            .enumerate()
                            .map(|(i, &n)| {
                                Bar::new((i as f64 + 0.5) / BINS as f64, (n as f64).sqrt())
                                    .width(1.0 / BINS as f64)
                                    .name(format!("{n}"))
                            })
                            .collect();
                        pu.bar_chart(
                            BarChart::new(format!("true {}", r.classes[t]), bars)
                                .color(rgb(t).gamma_multiply(0.6)),
                        );
                    }
                    if let Some(o) = r.operating_point.filter(|o| o.class == focus) {
                        pu.vline(VLine::new("threshold", o.threshold).color(Color32::BLACK));
                    }
                });
        });
    });
}
