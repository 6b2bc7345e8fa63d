//! The set-up's data part: how the data set is read (class order, validation, imbalance, a
//! multi-label set's uncertain-label policies and views) and what the scan found in it (images
//! per class, or per finding present / absent / not counted, per split; what to look at).
use super::setup::{Scan, TrainingSettings};
use crate::app::notices::{error_text, warning_text};
use crate::data::split::ValidChoice;

pub(super) fn data_options_ui(ui: &mut egui::Ui, s: &mut TrainingSettings) {
    egui::CollapsingHeader::new("Classes, validation and imbalance")
        .default_open(false)
        .show(ui, |ui| {
            let l = ui.label("Class order (comma-separated; empty: as the data set has them)");
            ui.add(
                egui::TextEdit::singleline(&mut s.classes)
                    .hint_text("e.g. Normal, Bacterial, Viral, COVID-19")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(l.id);
            ui.horizontal_wrapped(|ui| {
                let l = ui.label("Validation");
                let mut pct = match s.valid {
                    ValidChoice::Percent(p) => p,
                    _ => 10.0,
                };
                egui::ComboBox::from_id_salt("valid")
                    .selected_text(match s.valid {
                        ValidChoice::Auto => {
                            "auto: the data set's own choice or split, else 10 % of patients"
                                .to_string()
                        }
                        ValidChoice::Test => "the test split (the paper's way)".to_string(),
                        ValidChoice::Percent(p) => format!("{p} % of the training patients"),
                    })
                    .show_ui(ui, |ui| {
                        ui.selectable_value(
                            &mut s.valid,
                            ValidChoice::Auto,
                            "auto: the data set's own choice or split, else 10 % of patients",
                        );
                        ui.selectable_value(
                            &mut s.valid,
                            ValidChoice::Percent(pct),
                            "a percentage of the training patients",
                        );
                        ui.selectable_value(
                            &mut s.valid,
                            ValidChoice::Test,
                            "the test split (the paper's way)",
                        );
                    })
                    .response
                    .labelled_by(l.id);
                if let ValidChoice::Percent(_) = s.valid {
                    if ui
                        .add(
                            egui::DragValue::new(&mut pct)
                                .range(1.0..=50.0)
                                .suffix(" %"),
                        )
                        .changed()
                    {
                        s.valid = ValidChoice::Percent(pct);
                    }
                }
            });
            ui.checkbox(
                &mut s.balanced,
                "class-balanced sampling (each class equally likely)",
            );
            ui.checkbox(
                &mut s.class_weights,
                "class weights: loss weighted by inverse class frequency (as COVID-Net)",
            );
            ui.checkbox(
                &mut s.split_pneumonia,
                "Kermany's layout: split PNEUMONIA into bacterial and viral by file name",
            );
        });
    egui::CollapsingHeader::new("Multi-label data sets (findings)")
        .default_open(!s.uncertain.trim().is_empty() || !s.views.trim().is_empty())
        .show(ui, |ui| {
            let l = ui.label(
                "Uncertain labels (-1): ignore (left out of the loss and the figures), zeros or \
                 ones; per finding after a comma. Blank counts as absent.",
            );
            ui.add(
                egui::TextEdit::singleline(&mut s.uncertain)
                    .hint_text("ignore   e.g. ignore,Atelectasis=ones,Cardiomegaly=zeros")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(l.id);
            if let Err(e) = s.uncertain_policies() {
                error_text(ui, &format!("uncertain labels: {e}"));
            }
            let l = ui.label("Views kept (comma-separated; empty: all)");
            ui.add(
                egui::TextEdit::singleline(&mut s.views)
                    .hint_text("e.g. PA,AP (frontal only)")
                    .desired_width(f32::INFINITY),
            )
            .labelled_by(l.id);
            ui.label(
                egui::RichText::new(
                    "With class weights on, a multi-label model weights each finding's \
                     positives by negatives/positives on the training split (pos_weight).",
                )
                .weak(),
            );
        });
}

pub(super) fn dataset_ui(ui: &mut egui::Ui, dir: &str, scan: &Scan) {
    match scan {
        None if !dir.trim().is_empty() => {
            ui.label("scanning…");
        }
        None => {
            ui.label("Choose a dataset folder (COVIDx split files or class folders).");
        }
        Some(Err(e)) => {
            error_text(ui, e);
        }
        Some(Ok(d)) => {
            let total = |v: &Vec<usize>| v.iter().sum::<usize>();
            ui.label(format!(
                "{}: {} train / {} valid / {} test images",
                d.layout,
                total(&d.counts[0]),
                total(&d.counts[1]),
                total(&d.counts[2])
            ));
            match &d.findings {
                Some(f) => {
                    ui.label(format!(
                        "{} findings (multi-label) · validation: {}",
                        d.classes.len(),
                        d.valid_source
                    ));
                    finding_counts_ui(ui, &d.classes, f);
                }
                None => {
                    ui.label(format!(
                        "{} classes · validation: {}",
                        d.classes.len(),
                        d.valid_source
                    ));
                    class_bars_ui(ui, &d.classes, &d.counts);
                }
            }
            for e in &d.readiness.errors {
                error_text(ui, e);
            }
            for w in &d.readiness.warnings {
                warning_text(ui, w);
            }
        }
    }
}

fn class_bars_ui(ui: &mut egui::Ui, classes: &[String], counts: &[Vec<usize>; 3]) {
    let max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f32;
    egui::Grid::new("class-bars").num_columns(4).show(ui, |ui| {
        for (i, c) in classes.iter().enumerate() {
            ui.label(c);
            for (name, v) in ["train", "valid", "test"].iter().zip(counts) {
                let n = v.get(i).copied().unwrap_or(0);
                ui.add(
                    egui::ProgressBar::new(n as f32 / max)
                        .desired_width(95.0)
                        .text(format!("{name} {n}")),
                );
            }
            ui.end_row();
        }
    });
}

/// Per finding and split: images showing it, not showing it, and not counted (uncertain
/// under "ignore").
fn finding_counts_ui(ui: &mut egui::Ui, labels: &[String], counts: &[Vec<[usize; 3]>; 3]) {
    ui.label(
        egui::RichText::new("per split: present / absent / not counted (uncertain, ignored)")
            .weak(),
    );
    egui::ScrollArea::vertical()
        .id_salt("finding-counts-scroll")
        .max_height(170.0)
        .show(ui, |ui| finding_grid_ui(ui, labels, counts));
}

fn finding_grid_ui(ui: &mut egui::Ui, labels: &[String], counts: &[Vec<[usize; 3]>; 3]) {
    egui::Grid::new("finding-counts")
        .num_columns(4)
        .striped(true)
        .show(ui, |ui| {
            ui.strong("finding");
            for name in ["train", "valid", "test"] {
                ui.strong(name);
            }
            ui.end_row();
            for (i, l) in labels.iter().enumerate() {
                ui.label(l);
                for split in counts {
                    match split.get(i) {
                        Some([p, a, u]) => ui.label(format!("{p} / {a} / {u}")),
                        None => ui.label("–"),
                    };
                }
                ui.end_row();
            }
        });
}
