//! The review's gallery: the cases of the chosen cell with their thumbnails (decoded in the
//! background, a spinner meanwhile), a click opening one in the image view; one case list for
//! the confusion matrix's cells and a multi-label review's 2x2 cells.
use super::review::{ReviewState, Thumb};
use egui::{RichText, Sense};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

pub(super) fn gallery_ui(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    review: &mut ReviewState,
    classes: &[String],
) -> Option<PathBuf> {
    let Some((a, p)) = review.cell else {
        ui.label("Click a cell of the matrix to list its cases.");
        return None;
    };
    let ensemble = review
        .report
        .as_ref()
        .is_some_and(|r| r.disagreement.is_some());
    if ensemble {
        super::review_disagreement::gallery_controls_ui(ui, &mut review.gallery_view);
    }
    let cases = review.gallery();
    ui.label(
        RichText::new(format!(
            "{} × actual {} predicted {} ({})",
            cases.len(),
            classes[a],
            classes[p],
            review.gallery_view.order.words()
        ))
        .strong(),
    );
    let row_h = if ensemble { 90.0 } else { 72.0 };
    let (clicked, wanted) = case_list_ui(ui, &review.thumbs, "gallery", row_h, cases.len(), |i| {
        let c = cases[i];
        let mut lines = vec![
            format!(
                "true {}, predicted {}",
                classes[c.actual], classes[c.predicted]
            ),
            format!(
                "p = {:.3} · loss {:.3}{}",
                c.probs.get(c.predicted).copied().unwrap_or(f32::NAN),
                c.loss,
                c.source
                    .as_deref()
                    .map(|s| format!(" · {s}"))
                    .unwrap_or_default()
            ),
        ];
        lines.extend(super::review_disagreement::case_line(c));
        CaseRow {
            key: c.file.clone(),
            path: c.path(),
            lines,
        }
    });
    review.request_thumbs(ctx, wanted);
    clicked
}

/// One case of a list: its file as the report names it (the thumbnail's key), its path, and
/// lines about it.
pub(super) struct CaseRow {
    /// The file as the report names it.
    pub key: String,
    /// Its path.
    pub path: PathBuf,
    /// What is said under its name.
    pub lines: Vec<String>,
}

/// A scrolling list of `n` cases, `row(i)` made for the rows on screen only, each with its
/// thumbnail; returns the file clicked and the thumbnails to decode.
pub(super) fn case_list_ui(
    ui: &mut egui::Ui,
    thumbs: &HashMap<String, Thumb>,
    id: &str,
    row_h: f32,
    n: usize,
    row: impl Fn(usize) -> CaseRow,
) -> (Option<PathBuf>, Vec<(String, PathBuf)>) {
    let mut clicked = None;
    let mut wanted = Vec::new();
    egui::ScrollArea::vertical()
        .id_salt(id)
        .show_rows(ui, row_h, n, |ui, range| {
            for i in range {
                let CaseRow { key, path, lines } = row(i);
                let name = path
                    .file_name()
                    .map(|n| crate::files::path_text(Path::new(n)))
                    .unwrap_or_else(|| key.clone());
                let r = ui.horizontal(|ui| {
                    ui.set_min_height(row_h - 6.0);
                    thumb_ui(ui, thumbs, &key, &path, &mut wanted);
                    ui.vertical(|ui| {
                        let b = ui
                            .add(egui::Button::new(RichText::new(&name).strong()).frame(false))
                            .on_hover_text(format!("{key}\nclick to view with Grad-CAM"));
                        for l in &lines {
                            ui.label(l);
                        }
                        b.clicked()
                    })
                    .inner
                });
                if r.inner || r.response.interact(Sense::click()).clicked() {
                    clicked = Some(path);
                }
            }
        });
    (clicked, wanted)
}

/// A case's thumbnail (a spinner while it decodes; `wanted` gets it when nobody asked yet).
fn thumb_ui(
    ui: &mut egui::Ui,
    thumbs: &HashMap<String, Thumb>,
    key: &str,
    path: &Path,
    wanted: &mut Vec<(String, PathBuf)>,
) {
    let size = egui::vec2(64.0, 64.0);
    match thumbs.get(key) {
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
            wanted.push((key.to_string(), path.to_path_buf()));
            ui.add_sized(size, egui::Spinner::new());
        }
    }
}

impl ReviewState {
    /// Hands the thumbnails `wanted` to the tab's worker (decoded in the background).
    pub(super) fn request_thumbs(&mut self, ctx: &egui::Context, wanted: Vec<(String, PathBuf)>) {
        if wanted.is_empty() {
            return;
        }
        ctx.request_repaint();
        for (key, path) in wanted {
            self.thumbs.insert(key.clone(), Thumb::Pending);
            self.want_thumb(key, path);
        }
    }
}
