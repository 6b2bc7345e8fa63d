//! The per-epoch table and the log.
use super::state::RunModel;
use crate::fmt::{duration, pct};

/// One row per epoch: size, losses, accuracy, macro F1, recall per class, time.
pub fn epochs_ui(ui: &mut egui::Ui, run: &RunModel) {
    if run.epochs.is_empty() {
        return;
    }
    ui.heading("Epochs");
    if run.is_findings() {
        return findings_epochs_ui(ui, run);
    }
    egui::Grid::new("epoch-table").striped(true).show(ui, |ui| {
        for h in [
            "epoch",
            "size",
            "train loss",
            "valid loss",
            "accuracy",
            "macro F1",
        ] {
            ui.strong(h);
        }
        for c in &run.classes {
            ui.strong(format!("recall {c}"));
        }
        ui.strong("time");
        ui.end_row();
        for m in &run.epochs {
            ui.label((m.global_epoch + 1).to_string());
            ui.label(m.size_px.to_string());
            ui.label(format!("{:.4}", m.train_loss));
            ui.label(format!("{:.4}", m.valid_loss));
            ui.label(pct(m.accuracy, 1));
            ui.label(pct(m.macro_f1, 1));
            for r in &m.recall {
                ui.label(pct(*r, 1));
            }
            ui.label(duration(m.secs));
            ui.end_row();
        }
    });
}

/// A multi-label run's epochs: size, losses, the validation mean AUC and each finding's AUC
/// (the findings the validation split can measure: with positives and negatives), time.
fn findings_epochs_ui(ui: &mut egui::Ui, run: &RunModel) {
    let measured: Vec<usize> = (0..run.classes.len())
        .filter(|&i| {
            run.epochs
                .iter()
                .any(|m| m.label_auc.get(i).is_some_and(|v| v.is_finite()))
        })
        .collect();
    egui::Grid::new("epoch-table").striped(true).show(ui, |ui| {
        for h in ["epoch", "size", "train loss", "valid loss", "mean AUC"] {
            ui.strong(h);
        }
        for &i in &measured {
            ui.strong(format!("AUC {}", run.classes[i]));
        }
        ui.strong("time");
        ui.end_row();
        for m in &run.epochs {
            ui.label((m.global_epoch + 1).to_string());
            ui.label(m.size_px.to_string());
            ui.label(format!("{:.4}", m.train_loss));
            ui.label(format!("{:.4}", m.valid_loss));
            ui.label(pct(m.mean_auc, 1));
            for &i in &measured {
                ui.label(pct(m.label_auc.get(i).copied().unwrap_or(f64::NAN), 1));
            }
            ui.label(duration(m.secs));
            ui.end_row();
        }
    });
    let unmeasured = run.classes.len() - measured.len();
    if unmeasured > 0 {
        ui.label(format!(
            "{unmeasured} finding(s) without positives or negatives in the validation split \
             have no AUC and are not shown."
        ));
    }
}

/// The log, newest line at the bottom.
pub fn log_ui(ui: &mut egui::Ui, run: &RunModel) {
    ui.collapsing(format!("Log ({} lines)", run.log.len()), |ui| {
        egui::ScrollArea::vertical()
            .id_salt("training-log")
            .max_height(160.0)
            .stick_to_bottom(true)
            .show(ui, |ui| {
                for l in &run.log {
                    ui.monospace(l);
                }
            });
    });
}
