//! The plan as an editable table: one row per step, rows of one size forming a stage, each
//! row checked as typed; presets, load and save.
use super::Command;
use crate::app::notices::error_text;
use crate::train::schedule::{LrSpec, Plan, Stage, Step, Trainable};
use serde::{Deserialize, Serialize};

/// One editable row of the plan table; consecutive rows of one size form a stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanRow {
    /// Image size (text as typed).
    pub size: String,
    /// What is trained.
    pub train: Trainable,
    /// Learning rate (text as typed: 1e-3, 1e-6..1e-4, ..1e-3, auto).
    pub lr: String,
    /// Epochs (text as typed).
    pub epochs: String,
}

/// Rows of a plan.
pub fn rows_of(plan: &Plan) -> Vec<PlanRow> {
    plan.stages
        .iter()
        .flat_map(|st| {
            st.steps.iter().map(move |s| PlanRow {
                size: st.size_px.to_string(),
                train: s.train,
                lr: s.lr.to_string(),
                epochs: s.epochs.to_string(),
            })
        })
        .collect()
}

/// Builds a plan from rows, or the problems (one per wrong row).
pub fn plan_of(name: &str, rows: &[PlanRow]) -> Result<Plan, Vec<String>> {
    let mut problems = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for (i, r) in rows.iter().enumerate() {
        let at = format!("row {}", i + 1);
        let size: Option<u32> = r.size.trim().parse().ok();
        if size.is_none() {
            problems.push(format!("{at}: size {:?} is not a whole number", r.size));
        }
        let lr: Option<LrSpec> = match r.lr.parse() {
            Ok(l) => Some(l),
            Err(e) => {
                problems.push(format!("{at}: {e}"));
                None
            }
        };
        let epochs: Option<usize> = r.epochs.trim().parse().ok();
        if epochs.is_none() {
            problems.push(format!("{at}: epochs {:?} is not a whole number", r.epochs));
        }
        if let (Some(size), Some(lr), Some(epochs)) = (size, lr, epochs) {
            let step = Step {
                train: r.train,
                lr,
                epochs,
            };
            match stages.last_mut() {
                Some(st) if st.size_px == size => st.steps.push(step),
                _ => stages.push(Stage {
                    size_px: size,
                    steps: vec![step],
                }),
            }
        }
    }
    if rows.is_empty() {
        problems.push("the plan has no rows".into());
    }
    let plan = Plan {
        name: name.to_string(),
        sampling: None,
        class_weights: None,
        stages,
    };
    if problems.is_empty() {
        problems = plan.problems();
    }
    if problems.is_empty() {
        Ok(plan)
    } else {
        Err(problems)
    }
}

/// The plan in the table's own words: "5 steps in 3 stages (128, 224, 229 px), 41 epochs".
pub fn summary(plan: &Plan) -> String {
    let steps: usize = plan.stages.iter().map(|s| s.steps.len()).sum();
    let sizes: Vec<String> = plan.stages.iter().map(|s| s.size_px.to_string()).collect();
    let plural = |n: usize, w: &str| format!("{n} {w}{}", if n == 1 { "" } else { "s" });
    format!(
        "{} in {} ({} px), {}",
        plural(steps, "step"),
        plural(plan.stages.len(), "stage"),
        sizes.join(", "),
        plural(plan.total_epochs(), "epoch")
    )
}

/// Index of the first `auto` row.
pub fn first_auto_row(rows: &[PlanRow]) -> Option<usize> {
    rows.iter()
        .position(|r| r.lr.trim().eq_ignore_ascii_case("auto"))
}

/// Draws the plan editor; edits go to `rows`, actions to `commands`.
pub fn plan_ui(
    ui: &mut egui::Ui,
    rows: &mut [PlanRow],
    plan: &Result<Plan, Vec<String>>,
    selected: &mut usize,
    enabled: bool,
    commands: &mut Vec<Command>,
) {
    ui.heading("Plan");
    ui.add_enabled_ui(enabled, |ui| {
        ui.horizontal_wrapped(|ui| {
            if ui
                .button("Paper preset")
                .on_hover_text("the paper's plan: 128/224/229 px, 41 epochs")
                .clicked()
            {
                commands.push(Command::Preset(Plan::paper()));
            }
            if ui
                .button("Quick preset")
                .on_hover_text("64/96 px, 4 epochs: minutes on a CPU")
                .clicked()
            {
                commands.push(Command::Preset(Plan::quick()));
            }
            if ui.button("Load…").clicked() {
                commands.push(Command::LoadPlan);
            }
            if ui.button("Save…").clicked() {
                commands.push(Command::SavePlan);
            }
        });
        egui::Grid::new("plan-grid")
            .striped(true)
            .num_columns(6)
            .show(ui, |ui| {
                let heads: Vec<egui::Id> = ["", "size px", "train", "learning rate", "epochs", ""]
                    .iter()
                    .map(|h| ui.strong(*h).id)
                    .collect();
                ui.end_row();
                for (i, r) in rows.iter_mut().enumerate() {
                    ui.radio_value(selected, i, "")
                        .on_hover_text("select this row (for the LR finder's suggestion)");
                    ui.add(
                        egui::TextEdit::singleline(&mut r.size)
                            .desired_width(40.0)
                            .id_salt(("size", i)),
                    )
                    .labelled_by(heads[1]);
                    egui::ComboBox::from_id_salt(("train", i))
                        .width(60.0)
                        .selected_text(match r.train {
                            Trainable::Head => "head",
                            Trainable::All => "all",
                        })
                        .show_ui(ui, |ui| {
                            ui.selectable_value(&mut r.train, Trainable::Head, "head");
                            ui.selectable_value(&mut r.train, Trainable::All, "all");
                        })
                        .response
                        .labelled_by(heads[2]);
                    ui.add(
                        egui::TextEdit::singleline(&mut r.lr)
                            .desired_width(125.0)
                            .clip_text(false)
                            .id_salt(("lr", i)),
                    )
                    .labelled_by(heads[3])
                    .on_hover_text("1e-3, a range 1e-6..1e-4, ..1e-3, or auto (the LR finder)");
                    ui.add(
                        egui::TextEdit::singleline(&mut r.epochs)
                            .desired_width(30.0)
                            .id_salt(("epochs", i)),
                    )
                    .labelled_by(heads[4]);
                    if ui
                        .small_button("x")
                        .on_hover_text("remove this row")
                        .clicked()
                    {
                        commands.push(Command::RemoveRow(i));
                    }
                    ui.end_row();
                }
            });
        if ui.button("Add row").clicked() {
            commands.push(Command::AddRow);
        }
    });
    match plan {
        Ok(p) => {
            ui.label(summary(p));
        }
        Err(problems) => {
            for p in problems {
                error_text(ui, p);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_round_trip_and_invalid_rows_are_named() {
        let p = Plan::paper();
        assert_eq!(plan_of("paper", &rows_of(&p)).unwrap(), p);
        let mut rows = rows_of(&p);
        rows[1].lr = "fast".into();
        rows[3].epochs = "x".into();
        let e = plan_of("paper", &rows).unwrap_err();
        assert!(
            e.iter()
                .any(|m| m.starts_with("row 2:") && m.contains("fast")),
            "{e:?}"
        );
        assert!(e.iter().any(|m| m.starts_with("row 4: epochs")), "{e:?}");
        assert!(plan_of("x", &[]).is_err());
    }

    #[test]
    fn the_summary_counts_rows_as_steps() {
        let p = Plan::paper();
        let rows = rows_of(&p);
        assert_eq!(
            summary(&p),
            format!(
                "{} steps in 3 stages (128, 224, 229 px), 41 epochs",
                rows.len()
            )
        );
        assert_eq!(
            first_auto_row(&rows),
            rows.iter().position(|r| r.lr == "auto")
        );
    }
}
