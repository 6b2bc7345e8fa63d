//! Test-set review: run the model over a dataset's test split (or open a report `eval`
//! wrote), the confusion matrix as a clickable heat map, per-class and per-source tables,
//! and a gallery of the cases in the chosen cell, sorted by loss.
use super::ViewerTab;
use crate::eval::report::{Case, EvalReport};
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
    /// The report shown.
    pub report: Option<EvalReport>,
    /// Where it came from.
    pub source: String,
    /// The chosen cell (actual, predicted).
    pub cell: Option<(usize, usize)>,
    /// Progress of a running test-set pass (done, total).
    pub running: Option<(usize, usize)>,
    /// The last error.
    pub error: Option<String>,
    /// Message after an export.
    pub exported: Option<String>,
    thumbs: HashMap<String, Thumb>,
    thumb_requests: Vec<String>,
}

impl ReviewState {
    /// Opens a JSON report written by `eval`, training or an export.
    pub fn open_report(&mut self, path: &Path) {
        match EvalReport::load(path) {
            Ok(r) => self.set(r, format!("report {}", path.display())),
            Err(e) => self.error = Some(e.to_string()),
        }
    }

    fn set(&mut self, r: EvalReport, source: String) {
        self.report = Some(r);
        self.source = source;
        self.cell = None;
        self.error = None;
        self.exported = None;
    }

    pub(super) fn progress(&mut self, done: usize, total: usize) {
        self.running = Some((done, total));
    }

    pub(super) fn finished(&mut self, result: Result<Box<EvalReport>, String>) {
        self.running = None;
        match result {
            Ok(r) => {
                let src = format!(
                    "test split of {}",
                    r.info.get("data").cloned().unwrap_or_default()
                );
                self.set(*r, src);
            }
            Err(e) => self.error = Some(e),
        }
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

    fn want_thumb(&mut self, file: String) {
        self.thumb_requests.push(file);
    }

    /// Thumbnails the gallery asked for since the last call.
    pub(super) fn take_thumb_requests(&mut self) -> Vec<String> {
        std::mem::take(&mut self.thumb_requests)
    }

    /// The cases of the chosen cell, highest loss first.
    pub fn gallery(&self) -> Vec<&Case> {
        let (Some(r), Some((a, p))) = (&self.report, self.cell) else {
            return Vec::new();
        };
        let mut v: Vec<&Case> = r
            .cases
            .iter()
            .filter(|c| c.actual == a && c.predicted == p)
            .collect();
        v.sort_by(|x, y| y.loss.total_cmp(&x.loss));
        v
    }

    /// Writes `review.json`, `review.csv`, `review.md` and `confusion.png` into `dir`.
    pub fn export(&mut self, dir: &Path) -> crate::Result<Vec<PathBuf>> {
        let r = self
            .report
            .as_ref()
            .ok_or_else(|| crate::Error::invalid("review", "no review to export"))?;
        let json = r.write(dir, "review")?;
        let png = dir.join("confusion.png");
        crate::eval::plot::write_confusion_png(
            &png,
            &r.classes,
            &r.metrics.confusion.m,
            &format!(
                "Confusion matrix, {} images, accuracy {:.2} %",
                r.metrics.n,
                100.0 * r.metrics.accuracy.value
            ),
        )?;
        let out = vec![json, dir.join("review.csv"), dir.join("review.md"), png];
        self.exported = Some(format!("written to {}", dir.display()));
        Ok(out)
    }
}

/// The label a confusion-matrix cell is known by (accessibility and tests).
pub fn cell_label(classes: &[String], a: usize, p: usize) -> String {
    format!("actual {} predicted {}", classes[a], classes[p])
}

fn pct(v: f64) -> String {
    if v.is_finite() {
        format!("{:.1}", 100.0 * v)
    } else {
        "–".into()
    }
}

fn with_ci(w: &crate::eval::metrics::WithCi) -> String {
    format!("{} ({}–{})", pct(w.value), pct(w.lo), pct(w.hi))
}

impl ViewerTab {
    pub(super) fn review_side_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        ui.heading("Test-set review");
        let dl = ui.label("Dataset folder");
        ui.horizontal(|ui| {
            ui.add(egui::TextEdit::singleline(&mut self.settings.data_dir).desired_width(200.0))
                .labelled_by(dl.id);
            if ui.button("…").on_hover_text("choose a folder").clicked() {
                if let Some(p) = rfd::FileDialog::new().pick_folder() {
                    self.settings.data_dir = p.display().to_string();
                }
            }
        });
        let can_run = self.model.is_some()
            && self.review.running.is_none()
            && !self.settings.data_dir.trim().is_empty();
        ui.horizontal(|ui| {
            if ui
                .add_enabled(can_run, egui::Button::new("Run test set"))
                .on_disabled_hover_text("needs a model and a dataset folder")
                .clicked()
            {
                self.run_test_set(ctx);
            }
            if ui.button("Open report…").clicked() {
                if let Some(p) = rfd::FileDialog::new()
                    .add_filter("eval report", &["json"])
                    .pick_file()
                {
                    self.review.open_report(&p);
                    self.mode = super::Mode::Review;
                }
            }
        });
        if let Some((d, t)) = self.review.running {
            ui.add(
                egui::ProgressBar::new(if t > 0 { d as f32 / t as f32 } else { 0.0 })
                    .text(format!("{d} / {t} images")),
            );
        }
        if let Some(e) = &self.review.error {
            ui.colored_label(Color32::from_rgb(220, 60, 60), e);
        }
        if self.review.report.is_some() && ui.button("Show the review").clicked() {
            self.mode = super::Mode::Review;
        }
    }

    /// Starts the test-set pass in the background.
    pub fn run_test_set(&mut self, ctx: &egui::Context) {
        let Some(m) = &self.model else {
            self.review.error = Some("load a model first".into());
            return;
        };
        let (p, path) = (m.predictor.clone(), m.path.clone());
        let data = PathBuf::from(self.settings.data_dir.trim());
        let bs = self.settings.batch_size.max(1);
        self.review.running = Some((0, 0));
        self.review.error = None;
        self.mode = super::Mode::Review;
        self.worker(ctx).review(data, p, path, bs);
    }

    /// Draws the review; returns a case file the user clicked.
    pub(super) fn review_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) -> Option<String> {
        let Some(r) = &self.review.report else {
            ui.label(
                "Run the model on a dataset's test split (left), or open a report written by \
                 `covid-resnet eval` or by training.",
            );
            return None;
        };
        let mut clicked = None;
        let classes = r.classes.clone();
        let k = classes.len();
        let m = &r.metrics;
        ui.label(RichText::new(&self.review.source).small());
        ui.label(
            RichText::new(format!(
                "{} images · accuracy {} % · macro F1 {} % · loss {:.4}",
                m.n,
                with_ci(&m.accuracy),
                with_ci(&m.macro_f1),
                r.loss
            ))
            .strong(),
        );
        let mut export = false;
        ui.horizontal(|ui| {
            ui.checkbox(&mut self.settings.normalised, "Row-normalised");
            if ui.button("Export review…").clicked() {
                export = true;
            }
            if let Some(msg) = &self.review.exported {
                ui.label(msg);
            }
        });
        if export {
            if let Some(dir) = rfd::FileDialog::new().pick_folder() {
                if let Err(e) = self.review.export(&dir) {
                    self.review.error = Some(e.to_string());
                }
            }
        }
        egui::Panel::right("review-gallery")
            .resizable(true)
            .default_size(420.0)
            .min_size(340.0)
            .show(ui, |ui| {
                clicked = gallery_ui(ui, ctx, &mut self.review, &classes);
            });
        let r = self.review.report.as_ref().expect("checked above");
        let m = &r.metrics;
        let mut cell = self.review.cell;
        egui::ScrollArea::vertical().show(ui, |ui| {
            ui.add_space(6.0);
            // Heat map.
            let cell_px = 84.0;
            let label_w = 96.0;
            let (rect, _) = ui.allocate_exact_size(
                egui::vec2(label_w + k as f32 * cell_px, 24.0 + k as f32 * cell_px),
                Sense::hover(),
            );
            let painter = ui.painter_at(rect.expand(2.0));
            let text = ui.visuals().text_color();
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
                let row = &m.confusion.m[i];
                let total: usize = row.iter().sum();
                let y0 = rect.min.y + 24.0 + i as f32 * cell_px;
                painter.text(
                    egui::pos2(rect.min.x + label_w - 8.0, y0 + cell_px / 2.0),
                    egui::Align2::RIGHT_CENTER,
                    &classes[i],
                    egui::FontId::proportional(13.0),
                    text,
                );
                for (j, &v) in row.iter().enumerate() {
                    let frac = if total > 0 {
                        v as f32 / total as f32
                    } else {
                        0.0
                    };
                    let cr = egui::Rect::from_min_size(
                        egui::pos2(rect.min.x + label_w + j as f32 * cell_px, y0),
                        egui::vec2(cell_px, cell_px),
                    )
                    .shrink(1.0);
                    let id = ui.scope_id().with(("cm-cell", i, j));
                    let resp = ui.interact(cr, id, Sense::click());
                    let label = cell_label(&classes, i, j);
                    resp.widget_info(|| {
                        egui::WidgetInfo::labeled(egui::Role::Button, true, &label)
                    });
                    let [rr, gg, bb] = crate::eval::plot::blues(frac);
                    painter.rect_filled(cr, 2.0, Color32::from_rgb(rr, gg, bb));
                    if cell == Some((i, j)) {
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
                    let ink = if frac > 0.5 {
                        Color32::WHITE
                    } else {
                        Color32::from_gray(20)
                    };
                    let main = if self.settings.normalised {
                        if total > 0 {
                            format!("{:.1} %", 100.0 * frac)
                        } else {
                            "–".into()
                        }
                    } else {
                        v.to_string()
                    };
                    painter.text(
                        cr.center(),
                        egui::Align2::CENTER_CENTER,
                        main,
                        egui::FontId::proportional(20.0),
                        ink,
                    );
                    if resp.clicked() {
                        cell = Some((i, j));
                    }
                    resp.on_hover_text(format!(
                        "{v} images of {} predicted {}: click to list them",
                        classes[i], classes[j]
                    ));
                }
            }
            ui.label(RichText::new("Rows: actual class · columns: predicted class").small());
            ui.add_space(8.0);
            ui.label(RichText::new("Per class (95% bootstrap CI)").strong());
            egui::Grid::new("per-class").striped(true).show(ui, |ui| {
                for h in ["class", "n", "recall %", "PPV %", "F1 %"] {
                    ui.label(RichText::new(h).strong());
                }
                ui.end_row();
                for c in &m.per_class {
                    ui.label(&c.class);
                    ui.label(c.support.to_string());
                    ui.label(with_ci(&c.recall));
                    ui.label(with_ci(&c.ppv));
                    ui.label(with_ci(&c.f1));
                    ui.end_row();
                }
            });
            if !r.per_source.is_empty() {
                ui.add_space(8.0);
                ui.label(RichText::new("Per source").strong());
                egui::Grid::new("per-source").striped(true).show(ui, |ui| {
                    for h in ["source", "n", "correct", "accuracy %"] {
                        ui.label(RichText::new(h).strong());
                    }
                    ui.end_row();
                    for (s, v) in &r.per_source {
                        ui.label(s);
                        ui.label(v.n.to_string());
                        ui.label(v.correct.to_string());
                        ui.label(pct(v.accuracy));
                        ui.end_row();
                    }
                });
            }
        });
        self.review.cell = cell;
        clicked
    }
}

fn gallery_ui(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    review: &mut ReviewState,
    classes: &[String],
) -> Option<String> {
    let Some((a, p)) = review.cell else {
        ui.label("Click a cell of the matrix to list its cases.");
        return None;
    };
    let cases = review.gallery();
    ui.label(
        RichText::new(format!(
            "{} × actual {} predicted {} (highest loss first)",
            cases.len(),
            classes[a],
            classes[p]
        ))
        .strong(),
    );
    let mut clicked = None;
    let row_h = 72.0;
    let mut wanted = Vec::new();
    egui::ScrollArea::vertical().id_salt("gallery").show_rows(
        ui,
        row_h,
        cases.len(),
        |ui, range| {
            for c in &cases[range] {
                let name = Path::new(&c.file)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_else(|| c.file.clone());
                let r = ui.horizontal(|ui| {
                    ui.set_min_height(row_h - 6.0);
                    let size = egui::vec2(64.0, 64.0);
                    match review.thumbs.get(&c.file) {
                        Some(Thumb::Ready(t)) => {
                            ui.add(egui::Image::new((t.id(), size)).fit_to_exact_size(size));
                        }
                        Some(Thumb::Failed(e)) => {
                            ui.add_sized(size, egui::Label::new("unreadable"))
                                .on_hover_text(e);
                        }
                        Some(Thumb::Pending) => {
                            ui.add_sized(size, egui::Spinner::new());
                        }
                        None => {
                            wanted.push(c.file.clone());
                            ui.add_sized(size, egui::Spinner::new());
                        }
                    }
                    ui.vertical(|ui| {
                        let b = ui
                            .add(egui::Button::new(RichText::new(&name).strong()).frame(false))
                            .on_hover_text(format!("{}\nclick to view with Grad-CAM", c.file));
                        ui.label(format!(
                            "true {}, predicted {}",
                            classes[c.actual], classes[c.predicted]
                        ));
                        ui.label(format!(
                            "p = {:.3} · loss {:.3}{}",
                            c.probs.get(c.predicted).copied().unwrap_or(f32::NAN),
                            c.loss,
                            c.source
                                .as_deref()
                                .map(|s| format!(" · {s}"))
                                .unwrap_or_default()
                        ));
                        b.clicked()
                    })
                    .inner
                });
                if r.inner || r.response.interact(Sense::click()).clicked() {
                    clicked = Some(c.file.clone());
                }
            }
        },
    );
    if !wanted.is_empty() {
        // Decoded in the background (the tab hands these to its worker).
        ctx.request_repaint();
        for f in wanted {
            review.thumbs.insert(f.clone(), Thumb::Pending);
            review.want_thumb(f);
        }
    }
    clicked
}
