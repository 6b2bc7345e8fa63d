//! Test-set review: run the model over a dataset's test split (or open a report `eval`
//! wrote), the confusion matrix as a clickable heat map, per-class and per-source tables,
//! and a gallery of the cases in the chosen cell, sorted by loss.
use super::{Ask, Command, ViewerTab};
use crate::eval::findings_report::FindingsReport;
use crate::eval::report::{Case, EvalReport};
use crate::eval::scores::cell as ci_cell;
use crate::fmt::pct_ci;
use egui::{Color32, RichText, Sense, TextureHandle, TextureOptions};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A gallery thumbnail.
pub enum Thumb {
    /// Being decoded.
    Pending,
    /// Ready.
    Ready(TextureHandle),
    /// Could not be read.
    Failed(String),
}

/// Review state.
#[derive(Default)]
pub struct ReviewState {
    /// The report shown (a single-label model's).
    pub report: Option<EvalReport>,
    /// The review shown of a multi-label model (findings); None while `report` is shown.
    pub findings: Option<super::review_findings::FindingsReview>,
    /// Where it came from.
    pub source: String,
    /// The chosen cell (actual, predicted).
    pub cell: Option<(usize, usize)>,
    /// Progress of a running test-set pass (done, total).
    pub running: Option<(usize, usize)>,
    /// The operating-point controls.
    pub operating: super::review_scores::OperatingUi,
    /// The comparison with a second report, when one was opened.
    pub comparison: Option<crate::eval::compare::Comparison>,
    /// The second report's file, so that a new review is compared with it again.
    pub compared_with: Option<PathBuf>,
    /// What happened to the comparison when the review changed, if it could not follow.
    pub comparison_note: Option<String>,
    /// How the gallery orders and filters a cell's cases.
    pub gallery_view: super::review_disagreement::GalleryView,
    pub(super) thumbs: HashMap<String, Thumb>,
    thumb_requests: Vec<(String, PathBuf)>,
}

impl ReviewState {
    /// Opens a JSON report written by `eval`, training or an export (a single-label or a
    /// multi-label one).
    pub fn open_report(&mut self, path: &Path) -> Result<(), String> {
        let bytes = std::fs::read(path).map_err(|e| crate::Error::io(path, e).to_string())?;
        if FindingsReport::is_multi_label(&bytes) {
            let r = FindingsReport::from_json(&bytes, path).map_err(|e| e.to_string())?;
            self.set_findings(r);
            return Ok(());
        }
        let r = EvalReport::from_json(&bytes, path).map_err(|e| e.to_string())?;
        self.set(r, format!("report {}", crate::files::shown(path)));
        Ok(())
    }

    /// Shows the review of a multi-label model.
    fn set_findings(&mut self, r: FindingsReport) {
        self.report = None;
        self.comparison = None;
        self.compared_with = None;
        self.comparison_note = None;
        self.cell = None;
        self.source = format!("{} split of {}", r.split, r.data);
        self.findings = Some(super::review_findings::FindingsReview::new(r));
    }

    fn set(&mut self, r: EvalReport, source: String) {
        self.findings = None;
        self.operating.focus = None;
        self.comparison = None;
        self.comparison_note = None;
        self.report = Some(r);
        self.source = source;
        self.cell = None;
        // An open comparison follows the new review (the same images), or says why not.
        if let Some(other) = self.compared_with.take() {
            match self.compare_with(&other) {
                Ok(()) => {}
                Err(e) => {
                    self.comparison_note = Some(format!(
                        "The comparison with {} was closed: {e}",
                        crate::files::shown(&other)
                    ))
                }
            }
        }
    }

    /// What a case of the review truly shows, by its file.
    pub fn truth_of(&self, file: &Path) -> Option<super::Truth> {
        if let Some(f) = &self.findings {
            return f.truth_of(file);
        }
        self.report
            .as_ref()?
            .cases
            .iter()
            .find(|c| c.path() == file)
            .map(|c| super::Truth::Class(c.actual))
    }

    pub(super) fn progress(&mut self, done: usize, total: usize) {
        self.running = Some((done, total));
    }

    pub(super) fn finished(
        &mut self,
        result: Result<Box<super::worker::Reviewed>, String>,
    ) -> Result<(), String> {
        self.running = None;
        match *result? {
            super::worker::Reviewed::Classes(r) => {
                let src = format!(
                    "test split of {}",
                    r.info.get("data").cloned().unwrap_or_default()
                );
                self.set(*r, src);
            }
            super::worker::Reviewed::Findings(r) => self.set_findings(*r),
        }
        Ok(())
    }

    pub(super) fn thumb_arrived(
        &mut self,
        ctx: &egui::Context,
        file: String,
        result: Result<egui::ColorImage, String>,
    ) {
        let t = match result {
            Ok(img) => {
                Thumb::Ready(ctx.load_texture(format!("case-{file}"), img, TextureOptions::LINEAR))
            }
            Err(e) => Thumb::Failed(e),
        };
        self.thumbs.insert(file, t);
    }

    /// True while gallery thumbnails are being decoded.
    pub fn thumbs_pending(&self) -> bool {
        !self.thumb_requests.is_empty() || self.thumbs.values().any(|t| matches!(t, Thumb::Pending))
    }

    pub(super) fn want_thumb(&mut self, key: String, path: PathBuf) {
        self.thumb_requests.push((key, path));
    }

    /// Thumbnails the gallery asked for since the last call: (the case's file as the report
    /// names it, its path).
    pub(super) fn take_thumb_requests(&mut self) -> Vec<(String, PathBuf)> {
        std::mem::take(&mut self.thumb_requests)
    }

    /// The cases of the chosen cell, as the gallery view orders and filters them (highest
    /// loss first unless asked otherwise).
    pub fn gallery(&self) -> Vec<&Case> {
        let (Some(r), Some((a, p))) = (&self.report, self.cell) else {
            return Vec::new();
        };
        let v: Vec<&Case> = r
            .cases
            .iter()
            .filter(|c| c.actual == a && c.predicted == p)
            .collect();
        self.gallery_view.apply(v)
    }

    /// Writes `review.json` (with the operating point, when one is set), `review.csv`,
    /// `review.md`, `review-confusion.png` and the charts into `dir`; returns their paths
    /// in that order.
    pub fn export(&self, dir: &Path) -> crate::Result<Vec<PathBuf>> {
        let r = self
            .report
            .as_ref()
            .ok_or_else(|| crate::Error::invalid("review", "no review to export"))?;
        r.write_all(dir, "review")
    }
}

/// The label a confusion-matrix cell is known by (accessibility and tests).
pub fn cell_label(classes: &[String], a: usize, p: usize) -> String {
    format!("actual {} predicted {}", classes[a], classes[p])
}

/// What the heat map's colour encodes: the value each cell shows.
pub fn shade(m: &[Vec<usize>], i: usize, j: usize, normalised: bool) -> f32 {
    if normalised {
        let row: usize = m[i].iter().sum();
        if row == 0 {
            0.0
        } else {
            m[i][j] as f32 / row as f32
        }
    } else {
        let max = m.iter().flatten().copied().max().unwrap_or(0);
        if max == 0 {
            0.0
        } else {
            m[i][j] as f32 / max as f32
        }
    }
}

/// The confusion matrix as a clickable heat map; returns the cell clicked.
fn confusion_ui(
    ui: &mut egui::Ui,
    classes: &[String],
    m: &[Vec<usize>],
    normalised: bool,
    chosen: Option<(usize, usize)>,
) -> Option<(usize, usize)> {
    let k = classes.len();
    let cell_px = 84.0;
    let label_w = 96.0;
    let (rect, _) = ui.allocate_exact_size(
        egui::vec2(label_w + k as f32 * cell_px, 24.0 + k as f32 * cell_px),
        Sense::hover(),
    );
    let painter = ui.painter_at(rect.expand(2.0));
    let text = ui.visuals().text_color();
    let mut clicked = None;
    for (j, c) in classes.iter().enumerate() {
        painter.text(
            egui::pos2(
                rect.min.x + label_w + (j as f32 + 0.5) * cell_px,
                rect.min.y + 10.0,
            ),
            egui::Align2::CENTER_CENTER,
            c,
            egui::FontId::proportional(13.0),
            text,
        );
    }
    for i in 0..k {
        let total: usize = m[i].iter().sum();
        let y0 = rect.min.y + 24.0 + i as f32 * cell_px;
        painter.text(
            egui::pos2(rect.min.x + label_w - 8.0, y0 + cell_px / 2.0),
            egui::Align2::RIGHT_CENTER,
            &classes[i],
            egui::FontId::proportional(13.0),
            text,
        );
        for (j, &v) in m[i].iter().enumerate() {
            let f = shade(m, i, j, normalised);
            let cr = egui::Rect::from_min_size(
                egui::pos2(rect.min.x + label_w + j as f32 * cell_px, y0),
                egui::vec2(cell_px, cell_px),
            )
            .shrink(1.0);
            let id = ui.scope_id().with(("cm-cell", i, j));
            let resp = ui.interact(cr, id, Sense::click());
            let label = cell_label(classes, i, j);
            resp.widget_info(|| egui::WidgetInfo::labeled(egui::Role::Button, true, &label));
            let [rr, gg, bb] = crate::eval::plot::blues(f);
            painter.rect_filled(cr, 2.0, Color32::from_rgb(rr, gg, bb));
            if chosen == Some((i, j)) {
                painter.rect_stroke(
                    cr,
                    2.0,
                    egui::Stroke::new(3.0, Color32::from_rgb(230, 120, 30)),
                    egui::StrokeKind::Inside,
                );
            } else if resp.hovered() {
                painter.rect_stroke(
                    cr,
                    2.0,
                    egui::Stroke::new(2.0, Color32::GRAY),
                    egui::StrokeKind::Inside,
                );
            }
            let ink = if f > 0.5 {
                Color32::WHITE
            } else {
                Color32::from_gray(20)
            };
            let main = match (normalised, total) {
                (true, 0) => "–".to_string(),
                (true, _) => format!("{:.1} %", 100.0 * v as f64 / total as f64),
                (false, _) => v.to_string(),
            };
            painter.text(
                cr.center(),
                egui::Align2::CENTER_CENTER,
                main,
                egui::FontId::proportional(20.0),
                ink,
            );
            if resp.clicked() {
                clicked = Some((i, j));
            }
            resp.on_hover_text(format!(
                "{v} of {total} {} images predicted {}: click to list them",
                classes[i], classes[j]
            ));
        }
    }
    legend_ui(ui, m, normalised);
    clicked
}

/// The colour scale under the matrix: what light and dark mean.
fn legend_ui(ui: &mut egui::Ui, m: &[Vec<usize>], normalised: bool) {
    let max = m.iter().flatten().copied().max().unwrap_or(0);
    ui.horizontal(|ui| {
        let (lo, hi, what) = if normalised {
            (
                "0 %".to_string(),
                "100 %".to_string(),
                "share of the row's (actual class's) images",
            )
        } else {
            ("0".to_string(), max.to_string(), "images in the cell")
        };
        ui.label(format!("Colour: {what}"));
        ui.label(lo);
        let (r, _) = ui.allocate_exact_size(egui::vec2(120.0, 12.0), Sense::hover());
        let steps = 24;
        for s in 0..steps {
            let f = s as f32 / (steps - 1) as f32;
            let [rr, gg, bb] = crate::eval::plot::blues(f);
            let x0 = r.min.x + r.width() * s as f32 / steps as f32;
            let x1 = r.min.x + r.width() * (s + 1) as f32 / steps as f32;
            ui.painter().rect_filled(
                egui::Rect::from_min_max(egui::pos2(x0, r.min.y), egui::pos2(x1, r.max.y)),
                0.0,
                Color32::from_rgb(rr, gg, bb),
            );
        }
        ui.label(hi);
    });
}

impl ViewerTab {
    /// Draws the review; a click on a case queues it for the image view.
    pub(super) fn review_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        if self.review.findings.is_some() {
            return self.findings_review_ui(ui, ctx);
        }
        let Some(r) = &self.review.report else {
            ui.label(
                "Run the model on a dataset's test split (left), or open a report written by \
                 `covid-resnet eval` or by training.",
            );
            return;
        };
        let classes = r.classes.clone();
        let m = &r.metrics;
        let loaded = self.model.as_ref().map(|m| m.path.as_path());
        for (warn, line) in self.review.header(loaded) {
            if warn {
                crate::app::notices::warning_text(ui, &line);
            } else {
                ui.add(egui::Label::new(line).wrap());
            }
        }
        ui.label(
            RichText::new(format!(
                "{} images · accuracy {} · macro F1 {} · loss {:.4}",
                m.n,
                pct_ci(&m.accuracy, 1),
                pct_ci(&m.macro_f1, 1),
                r.loss
            ))
            .strong(),
        );
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.settings.normalised, "Row-normalised");
            if ui.button("Export review…").clicked() {
                self.commands.push(Command::Pick(Ask::Export));
            }
            if ui
                .button("Compare with a report…")
                .on_hover_text("Another model's report on the same images: paired differences and McNemar's test")
                .clicked()
            {
                self.commands.push(Command::Pick(Ask::CompareReport));
            }
        });
        let mut clicked = None;
        egui::Panel::right("review-gallery")
            .resizable(true)
            .default_size(420.0)
            .min_size(340.0)
            .show(ui, |ui| {
                clicked = super::review_gallery::gallery_ui(ui, ctx, &mut self.review, &classes);
            });
        if let Some(f) = clicked {
            self.commands.push(Command::OpenCase(f));
        }
        let Some(r) = self.review.report.as_ref() else {
            return;
        };
        let m = &r.metrics;
        let mut cell = self.review.cell;
        let normalised = self.settings.normalised;
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.add_space(6.0);
            if let Some(c) = confusion_ui(ui, &classes, &m.confusion.m, normalised, cell) {
                cell = Some(c);
            }
            ui.label("Rows: actual class · columns: predicted class");
            if let Some(c) = &self.review.comparison {
                ui.add_space(8.0);
                super::review_compare::comparison_ui(ui, c);
            }
            if let Some(n) = &self.review.comparison_note {
                crate::app::notices::warning_text(ui, n);
            }
            ui.add_space(8.0);
            super::review_scores::operating_ui(
                ui,
                r,
                &mut self.review.operating,
                &mut self.commands,
            );
            if let Some(d) = &r.disagreement {
                ui.add_space(8.0);
                super::review_disagreement::summary_ui(ui, d);
            }
            ui.add_space(8.0);
            ui.label(RichText::new("Per class (95% CI; † Wilson)").strong());
            egui::Grid::new("per-class").striped(true).show(ui, |ui| {
                for h in ["class", "n", "recall", "PPV", "F1"] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for c in &m.per_class {
                    ui.label(&c.class);
                    ui.label(c.support.to_string());
                    ui.label(ci_cell(&c.recall));
                    ui.label(ci_cell(&c.ppv));
                    ui.label(ci_cell(&c.f1));
                    ui.end_row();
                }
            });
            if !r.per_source.is_empty() {
                ui.add_space(8.0);
                ui.label(RichText::new("Per source").strong());
                egui::Grid::new("per-source").striped(true).show(ui, |ui| {
                    for h in ["source", "n", "correct", "accuracy"] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for (s, v) in &r.per_source {
                        ui.label(s);
                        ui.label(v.n.to_string());
                        ui.label(v.correct.to_string());
                        ui.label(crate::fmt::pct(v.accuracy, 1));
                        ui.end_row();
                    }
                });
            }
        });
        self.review.cell = cell;
    }
}

#[cfg(test)]
mod tests {
    use super::shade;

    #[test]
    fn the_colour_follows_what_the_cells_show() {
        // Row 0 has 234 images, 39 in the first cell; row 1 has 8, 2 in its first cell.
        let m = vec![vec![39, 195], vec![2, 6]];
        // Counts: shaded by count over the largest count, so 2 is pale beside 39.
        assert!((shade(&m, 0, 0, false) - 39.0 / 195.0).abs() < 1e-6);
        assert!((shade(&m, 1, 0, false) - 2.0 / 195.0).abs() < 1e-6);
        assert!(shade(&m, 1, 0, false) < shade(&m, 0, 0, false));
        // Row-normalised: by the share of the row, which is what the cells then show.
        assert!((shade(&m, 0, 0, true) - 39.0 / 234.0).abs() < 1e-6);
        assert!((shade(&m, 1, 0, true) - 0.25).abs() < 1e-6);
        assert_eq!(shade(&[vec![0, 0], vec![0, 0]], 0, 0, true), 0.0);
    }
}
