//! The review of a multi-label model (findings): per finding AUC with its interval, the
//! threshold and its four rates; for the finding in focus its ROC curve with the operating
//! point, the threshold rule (the file's, typed, Youden's J, a target sensitivity) and the 2x2
//! table whose cells list their cases in the gallery.
use super::review::ReviewState;
use super::review_gallery::{case_list_ui, CaseRow};
use super::{Command, ViewerTab};
use crate::eval::findings::{
    evaluate, Cell, FindingsMetrics, LabelMetrics, Outputs, ThresholdRule,
};
use crate::eval::findings_report::FindingsReport;
use crate::eval::scores::cell as ci_cell;
use crate::fmt::{pct, pct_ci};
use egui::{Color32, RichText};
use egui_plot::{Line, PlotPoints, Points};
use std::path::PathBuf;

/// A multi-label review: the report, the thresholds set here and the figures at them.
pub struct FindingsReview {
    /// The report (figures at the model file's thresholds).
    pub report: FindingsReport,
    /// Its cases as the metrics read them.
    outputs: Outputs,
    /// Each finding's threshold rule now.
    pub rules: Vec<ThresholdRule>,
    /// The figures at those rules (intervals: the report's bootstrap for the AUC; Wilson's
    /// for rates at a threshold set here).
    pub metrics: FindingsMetrics,
    /// The finding in focus.
    pub focus: usize,
    /// The chosen cell of the focus's 2x2 table.
    pub cell: Option<Cell>,
    /// The value the typed-threshold field holds.
    pub typed: f64,
    /// The value the target-sensitivity field holds.
    pub sensitivity: f64,
    /// The gallery's cases and the (focus, cell, threshold) they were listed for.
    listed: Option<((usize, Cell, u64), Vec<usize>)>,
}

impl FindingsReview {
    /// A review of `report` at its thresholds, the finding with the most positives in focus.
    pub fn new(report: FindingsReport) -> Self {
        let outputs = report.outputs();
        let metrics = report.metrics.clone();
        let rules = metrics
            .labels
            .iter()
            .map(|l| ThresholdRule::Typed(l.threshold))
            .collect();
        let focus = (0..metrics.labels.len())
            .max_by_key(|&i| metrics.labels[i].positives)
            .unwrap_or(0);
        let typed = metrics.labels.get(focus).map_or(0.5, |l| l.threshold);
        Self {
            report,
            outputs,
            rules,
            metrics,
            focus,
            cell: None,
            typed: if typed.is_finite() { typed } else { 0.5 },
            sensitivity: 0.9,
            listed: None,
        }
    }

    /// The labels.
    pub fn labels(&self) -> Vec<String> {
        self.report.labels()
    }

    /// Sets finding `label`'s threshold by `rule` and recomputes its figures (the AUC keeps
    /// its interval; the rates get Wilson's).
    pub fn set_rule(&mut self, label: usize, rule: ThresholdRule) {
        if label >= self.rules.len() {
            return;
        }
        self.rules[label] = rule;
        // This finding alone: the others' figures do not change.
        let name = self.metrics.labels[label].label.clone();
        let one = self.outputs.only(label);
        let mut l: LabelMetrics = evaluate(&[name], &one.cases(), &[rule], 0, 0)
            .labels
            .remove(0);
        l.auc = self.metrics.labels[label].auc;
        self.metrics.labels[label] = l;
        if let ThresholdRule::Typed(t) = rule {
            self.typed = t;
        }
    }

    /// Back to the thresholds the model file records.
    pub fn reset(&mut self) {
        let report = self.report.clone();
        let (focus, sensitivity) = (self.focus, self.sensitivity);
        *self = Self::new(report);
        self.focus = focus;
        self.sensitivity = sensitivity;
    }

    /// The cases of the chosen cell, the most wrong first (a missed finding with the lowest
    /// probability, a false alarm with the highest); listed again only when the finding, the
    /// cell or the threshold changes.
    pub fn gallery(&mut self) -> &[usize] {
        let Some(cell) = self.cell else {
            return &[];
        };
        let l = self.focus;
        let t = self.metrics.labels[l].threshold;
        let key = (l, cell, t.to_bits());
        if self.listed.as_ref().is_none_or(|(k, _)| *k != key) {
            let mut idx = self.outputs.cases().in_cell(l, t, cell);
            let p = |i: usize| self.outputs.probs[i][l];
            match cell {
                Cell::TruePositive | Cell::FalseNegative => {
                    idx.sort_by(|&a, &b| p(a).total_cmp(&p(b)))
                }
                Cell::FalsePositive | Cell::TrueNegative => {
                    idx.sort_by(|&a, &b| p(b).total_cmp(&p(a)))
                }
            }
            self.listed = Some((key, idx));
        }
        self.listed.as_ref().map_or(&[], |(_, idx)| idx.as_slice())
    }

    /// What case `file` truly shows.
    pub fn truth_of(&self, file: &std::path::Path) -> Option<super::Truth> {
        self.report
            .cases
            .iter()
            .find(|c| c.path() == file)
            .map(|c| super::Truth::Findings(c.truth.clone()))
    }
}

/// A cell's words.
pub fn cell_words(cell: Cell) -> &'static str {
    match cell {
        Cell::TruePositive => "true positives (present, found)",
        Cell::FalsePositive => "false positives (absent, found)",
        Cell::TrueNegative => "true negatives (absent, not found)",
        Cell::FalseNegative => "false negatives (present, missed)",
    }
}

impl ViewerTab {
    /// Draws the review of a multi-label model.
    pub(super) fn findings_review_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        let loaded = self.model.as_ref().map(|m| m.path.clone());
        let Some(f) = self.review.findings.as_mut() else {
            return;
        };
        let r = &f.report;
        ui.add(
            egui::Label::new(format!(
                "Model: {} · multi-label, {} findings",
                r.model,
                r.metrics.labels.len()
            ))
            .wrap(),
        );
        ui.add(
            egui::Label::new(format!(
                "Data: {} split of {} · {} images · uncertain labels: {}",
                r.split,
                r.data,
                r.n,
                r.uncertain.as_deref().unwrap_or("not recorded")
            ))
            .wrap(),
        );
        if r.validated_on_test {
            crate::app::notices::warning_text(
                ui,
                "The run that made this model validated on these test images: the figures are \
                 not independent of the choices made on them.",
            );
        }
        if let Some(l) = loaded.map(|p| crate::files::path_text(&p)) {
            if l != r.model {
                crate::app::notices::warning_text(
                    ui,
                    &format!(
                        "This review is of {}; the loaded model is {l}. Run the test set again \
                         to review the loaded model.",
                        r.model
                    ),
                );
            }
        }
        let m = &f.metrics;
        ui.label(
            RichText::new(format!(
                "mean AUC {}{} · loss {:.4} · intervals: bootstrap over {}",
                pct_ci(&m.mean_auc, 1),
                m.competition_auc
                    .as_ref()
                    .map(|c| format!(" · CheXpert's five {}", pct_ci(c, 1)))
                    .unwrap_or_default(),
                r.loss,
                m.resampled
            ))
            .strong(),
        );
        let mut clicked = None;
        egui::Panel::right("findings-gallery")
            .resizable(true)
            .default_size(340.0)
            .min_size(280.0)
            .show(ui, |ui| {
                clicked = findings_gallery_ui(ui, ctx, &mut self.review);
            });
        if let Some(p) = clicked {
            self.commands.push(Command::OpenCase(p));
        }
        let Some(f) = self.review.findings.as_mut() else {
            return;
        };
        egui::ScrollArea::both().show(ui, |ui| {
            ui.add_space(6.0);
            labels_table_ui(ui, f);
            ui.add_space(10.0);
            focus_ui(ui, f);
        });
    }
}

/// One row a finding; a click on its name puts it in focus.
fn labels_table_ui(ui: &mut egui::Ui, f: &mut FindingsReview) {
    ui.label(
        RichText::new(
            "Per finding (95% CI; † Wilson) · click a finding for its ROC, 2x2 table, PPV and NPV",
        )
        .strong(),
    );
    let mut focus = f.focus;
    egui::Grid::new("findings-table")
        .striped(true)
        .show(ui, |ui| {
            for h in [
                "finding",
                "counted",
                "positive",
                "AUC",
                "threshold",
                "sensitivity",
                "specificity",
            ] {
                ui.label(RichText::new(h).strong());
            }
            ui.end_row();
            for (i, l) in f.metrics.labels.iter().enumerate() {
                if ui.selectable_label(i == focus, &l.label).clicked() {
                    focus = i;
                }
                ui.label(l.counted.to_string());
                ui.label(l.positives.to_string());
                ui.label(ci_cell(&l.auc));
                ui.label(threshold_text(l.threshold));
                ui.label(ci_cell(&l.table.sensitivity));
                ui.label(ci_cell(&l.table.specificity));
                ui.end_row();
            }
        });
    if focus != f.focus {
        f.focus = focus;
        f.cell = None;
        let t = f.metrics.labels[focus].threshold;
        if t.is_finite() {
            f.typed = t;
        }
    }
}

fn threshold_text(t: f64) -> String {
    if t.is_finite() {
        crate::fmt::fine(t)
    } else {
        "–".into()
    }
}

/// The finding in focus: its threshold rule, ROC curve and 2x2 table.
fn focus_ui(ui: &mut egui::Ui, f: &mut FindingsReview) {
    let i = f.focus;
    let Some(l) = f.metrics.labels.get(i).cloned() else {
        return;
    };
    ui.label(RichText::new(format!("{} · threshold", l.label)).strong());
    let mut rule: Option<ThresholdRule> = None;
    ui.horizontal_wrapped(|ui| {
        ui.label(format!(
            "now {} ({})",
            threshold_text(l.threshold),
            rule_words(l.rule)
        ));
        let typed = ui.label("typed");
        let r = ui
            .add(
                egui::DragValue::new(&mut f.typed)
                    .range(0.0..=1.0)
                    .speed(0.005)
                    .max_decimals(6),
            )
            .labelled_by(typed.id);
        if r.changed() {
            rule = Some(ThresholdRule::Typed(f.typed));
        }
        if ui
            .button("Youden's J")
            .on_hover_text(
                "The threshold that maximises sensitivity + specificity − 1 on these cases",
            )
            .clicked()
        {
            rule = Some(ThresholdRule::Youden);
        }
        let target = ui.label("target sensitivity");
        ui.add(
            egui::DragValue::new(&mut f.sensitivity)
                .range(0.0..=1.0)
                .speed(0.005)
                .max_decimals(3),
        )
        .labelled_by(target.id);
        if ui
            .button("Set")
            .on_hover_text("The highest threshold that reaches this sensitivity on these cases")
            .clicked()
        {
            rule = Some(ThresholdRule::Sensitivity(f.sensitivity));
        }
        if ui
            .button("The model file's")
            .on_hover_text("Every finding back at the threshold its model file records")
            .clicked()
        {
            f.reset();
        }
    });
    if let Some(rule) = rule {
        f.set_rule(i, rule);
    }
    ui.label(
        RichText::new(
            "Thresholds set here are chosen on the cases shown: on a test split they are for \
             looking, not for reporting.",
        )
        .small(),
    );
    let l = f.metrics.labels[i].clone();
    ui.add_space(6.0);
    ui.horizontal_top(|ui| {
        roc_ui(ui, &l);
        ui.add_space(12.0);
        ui.vertical(|ui| {
            two_by_two_ui(ui, &l, &mut f.cell);
        });
    });
}

/// The rule's words.
fn rule_words(rule: ThresholdRule) -> String {
    match rule {
        ThresholdRule::Typed(_) => "typed or the file's".into(),
        ThresholdRule::Youden => "Youden's J".into(),
        ThresholdRule::Sensitivity(s) => format!("sensitivity at least {}", pct(s, 1)),
    }
}

/// The ROC curve of one finding with its operating point.
fn roc_ui(ui: &mut egui::Ui, l: &LabelMetrics) {
    let size = 260.0;
    ui.vertical(|ui| {
        ui.label(format!("ROC · AUC {}", pct_ci(&l.auc, 1)));
        super::review_scores::unit_plot("findings-roc", size)
            .data_aspect(1.0)
            .include_y(0.0)
            .include_y(1.0)
            .x_axis_label("1 − specificity")
            .y_axis_label("sensitivity")
            .show(ui, |pu| {
                pu.line(
                    Line::new("chance", PlotPoints::from(vec![[0.0, 0.0], [1.0, 1.0]]))
                        .color(Color32::GRAY),
                );
                let pts = super::review_scores::distinct(
                    l.roc.fpr.iter().zip(&l.roc.tpr).map(|(&x, &y)| [x, y]),
                );
                pu.line(
                    Line::new(l.label.clone(), PlotPoints::from(pts))
                        .allow_band(false)
                        .color(Color32::from_rgb(200, 80, 60))
                        .width(2.0),
                );
                let b = &l.table;
                if b.sensitivity.value.is_finite() && b.specificity.value.is_finite() {
                    pu.points(
                        Points::new(
                            "operating point",
                            PlotPoints::from(vec![[
                                1.0 - b.specificity.value,
                                b.sensitivity.value,
                            ]]),
                        )
                        .radius(5.0)
                        .color(Color32::from_rgb(70, 110, 160)),
                    );
                }
            });
    });
}

/// The 2x2 table of one finding at its threshold; a click on a cell lists its cases.
fn two_by_two_ui(ui: &mut egui::Ui, l: &LabelMetrics, chosen: &mut Option<Cell>) {
    let b = &l.table;
    ui.label(RichText::new("2x2 table · click a cell").strong());
    egui::Grid::new("findings-2x2")
        .num_columns(3)
        .show(ui, |ui| {
            ui.label("");
            ui.label(RichText::new("found").strong());
            ui.label(RichText::new("not found").strong());
            ui.end_row();
            let mut cell = |ui: &mut egui::Ui, c: Cell, n: usize| {
                let good = matches!(c, Cell::TruePositive | Cell::TrueNegative);
                let fill = if good {
                    Color32::from_rgb(60, 120, 80)
                } else {
                    Color32::from_rgb(160, 70, 60)
                };
                let short = match c {
                    Cell::TruePositive => "TP",
                    Cell::FalsePositive => "FP",
                    Cell::TrueNegative => "TN",
                    Cell::FalseNegative => "FN",
                };
                let text = RichText::new(format!("{short} {n}"))
                    .size(17.0)
                    .color(Color32::WHITE);
                let button = egui::Button::new(text)
                    .fill(fill)
                    .selected(*chosen == Some(c))
                    .min_size(egui::vec2(86.0, 40.0));
                if ui.add(button).on_hover_text(cell_words(c)).clicked() {
                    *chosen = Some(c);
                }
            };
            ui.label(RichText::new("present").strong());
            cell(ui, Cell::TruePositive, b.tp);
            cell(ui, Cell::FalseNegative, b.fn_);
            ui.end_row();
            ui.label(RichText::new("absent").strong());
            cell(ui, Cell::FalsePositive, b.fp);
            cell(ui, Cell::TrueNegative, b.tn);
            ui.end_row();
        });
    ui.add_space(4.0);
    egui::Grid::new("findings-rates").show(ui, |ui| {
        for (k, v) in [
            ("sensitivity", &b.sensitivity),
            ("specificity", &b.specificity),
            ("PPV", &b.ppv),
            ("NPV", &b.npv),
        ] {
            ui.label(k);
            ui.label(ci_cell(v));
            ui.end_row();
        }
    });
    ui.label(format!(
        "{} counted, {} positive; uncertain labels left out under \"ignore\"",
        l.counted, l.positives
    ));
}

/// The cases of the chosen cell; a click opens one in the image view.
fn findings_gallery_ui(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    review: &mut ReviewState,
) -> Option<PathBuf> {
    let f = review.findings.as_mut()?;
    let Some(cell) = f.cell else {
        ui.label("Click a cell of the 2x2 table to list its cases.");
        return None;
    };
    let labels = f.labels();
    let l = f.focus;
    let idx = f.gallery().to_vec();
    ui.label(
        RichText::new(format!(
            "{} × {} of {} (most wrong first)",
            idx.len(),
            cell_words(cell),
            labels[l]
        ))
        .strong(),
    );
    let cases = &f.report.cases;
    let (clicked, wanted) = case_list_ui(
        ui,
        &review.thumbs,
        "findings-gallery-list",
        72.0,
        idx.len(),
        |k| {
            let c = &cases[idx[k]];
            let present: Vec<&str> = c
                .truth
                .iter()
                .zip(&labels)
                .filter(|(t, _)| **t == Some(true))
                .map(|(_, name)| name.as_str())
                .collect();
            CaseRow {
                key: c.file.clone(),
                path: c.path(),
                lines: vec![format!(
                    "p({}) = {} · true: {}",
                    labels[l],
                    crate::fmt::fine(c.probs[l] as f64),
                    if present.is_empty() {
                        "no finding".to_string()
                    } else {
                        present.join(", ")
                    }
                )],
            }
        },
    );
    review.request_thumbs(ctx, wanted);
    clicked
}
