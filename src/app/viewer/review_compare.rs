//! Comparing the review with a second report on the same images: the paired differences in
//! accuracy and macro AUC with their intervals, and McNemar's test.
use super::review::ReviewState;
use crate::eval::compare::{compare, Comparison};
use crate::eval::report::EvalReport;
use egui::RichText;
use std::path::Path;

/// Resamples of the comparison's paired bootstrap.
const BOOTSTRAP: usize = 1000;

impl ReviewState {
    /// Compares the shown report (A) with the report at `path` (B).
    pub fn compare_with(&mut self, path: &Path) -> Result<(), String> {
        let a = self.report.as_ref().ok_or("open or run a review first")?;
        let b = EvalReport::load(path).map_err(|e| e.to_string())?;
        let name_a = a
            .info
            .get("model")
            .cloned()
            .unwrap_or_else(|| self.source.clone());
        let name_b = b
            .info
            .get("model")
            .cloned()
            .unwrap_or_else(|| crate::files::shown(path).to_string());
        let c = compare((&name_a, a), (&name_b, &b), BOOTSTRAP, a.seed)
            .map_err(|e| format!("cannot compare with {}: {e}", crate::files::shown(path)))?;
        self.comparison = Some(c);
        self.compared_with = Some(path.to_path_buf());
        self.comparison_note = None;
        Ok(())
    }
}

/// The comparison's figures, when one was made.
pub fn comparison_ui(ui: &mut egui::Ui, c: &Comparison) {
    let pp = |v: f64| format!("{:+.1}", 100.0 * v);
    ui.label(RichText::new("Comparison (B − A, paired)").strong());
    ui.label(format!("A: {}\nB: {}", c.a, c.b));
    egui::Grid::new("comparison").striped(true).show(ui, |ui| {
        for h in ["", "A", "B", "B − A (95% CI)"] {
            ui.label(RichText::new(h).strong());
        }
        ui.end_row();
        for (name, v, d) in [
            ("accuracy %", c.accuracy, c.accuracy_diff),
            ("macro AUC %", c.macro_auc, c.macro_auc_diff),
        ] {
            ui.label(name);
            ui.label(format!("{:.1}", 100.0 * v[0]));
            ui.label(format!("{:.1}", 100.0 * v[1]));
            ui.label(format!("{} ({} to {})", pp(d.value), pp(d.lo), pp(d.hi)));
            ui.end_row();
        }
    });
    ui.label(format!(
        "{} paired images; bootstrap over {}. Only A right: {}, only B right: {}; McNemar's exact p = {:.4}.",
        c.n, c.resampled, c.only_a, c.only_b, c.mcnemar_p
    ));
}
