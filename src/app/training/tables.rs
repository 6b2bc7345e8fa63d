//! The per-epoch table and the log.
use super::state::RunModel;
use crate::fmt::{duration, pct};

/// One row per epoch: size, losses, accuracy, macro F1, recall per class, time.
pub fn epochs_ui(ui: &mut egui::Ui, run: &RunModel) {
    if run.epochs.is_empty() {
        return;
    }
    ui.heading("Epochs");
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
