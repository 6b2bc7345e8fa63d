//! The run's controls (Start, Pause, Stop, LR finder, Resume), its progress bars with the
//! run folder, and the batch preview.
use super::{Command, RunState, TrainingTab};
use std::time::Instant;

impl TrainingTab {
    pub(super) fn control_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        ui.heading("Run");
        let state = self.run.state;
        let blocker = self.start_blocker();
        ui.horizontal(|ui| {
            let start = ui.add_enabled(blocker.is_none(), egui::Button::new("Start"));
            if let Some(why) = &blocker {
                start.clone().on_disabled_hover_text(why.as_str());
            }
            if start.clicked() {
                commands.push(Command::Start);
            }
            let pausable = matches!(state, RunState::Running | RunState::Paused);
            let label = if state == RunState::Paused {
                "Resume"
            } else {
                "Pause"
            };
            if ui.add_enabled(pausable, egui::Button::new(label)).clicked() {
                commands.push(Command::TogglePause);
            }
            let stoppable = matches!(
                state,
                RunState::Running | RunState::Paused | RunState::FindingLr
            );
            if ui
                .add_enabled(stoppable, egui::Button::new("Stop"))
                .on_hover_text("finish this batch, write a checkpoint, stop")
                .clicked()
            {
                commands.push(Command::Stop);
            }
            if ui
                .add_enabled(blocker.is_none(), egui::Button::new("LR finder"))
                .on_hover_text("sweep learning rates at the first stage's size")
                .clicked()
            {
                commands.push(Command::FindLr);
            }
        });
        ui.horizontal(|ui| {
            let ok = state == RunState::Idle && !self.resume_dir.trim().is_empty();
            if ui
                .add_enabled(ok, egui::Button::new("Resume run"))
                .on_disabled_hover_text("type or choose a run folder that has a checkpoint")
                .clicked()
            {
                commands.push(Command::Resume);
            }
            let l = ui.label("folder");
            ui.add(
                egui::TextEdit::singleline(&mut self.resume_dir)
                    .hint_text("run folder with checkpoint.safetensors"),
            )
            .labelled_by(l.id);
            if ui
                .add_enabled(state == RunState::Idle, egui::Button::new("…"))
                .on_hover_text("choose a run folder")
                .clicked()
            {
                commands.push(Command::BrowseResume);
            }
        });
        match self.run.member {
            Some((i, n)) if state.busy() => {
                ui.label(format!("State: {}, network {i} of {n}", state.words()))
            }
            _ => ui.label(format!("State: {}", state.words())),
        };
    }

    pub(super) fn progress_ui(&self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let p = &self.run.progress;
        let frac = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f32 / b as f32 };
        if let Some((done, total)) = p.lr_finder {
            ui.add(
                egui::ProgressBar::new(frac(done, total))
                    .text(format!("LR finder: {done}/{total} learning rates")),
            );
        }
        let eta = match (self.run.state, p.eta_secs(Instant::now())) {
            (RunState::Paused, _) => " · paused".to_string(),
            (RunState::Running, Some(s)) => format!(" · ETA {}", crate::fmt::duration(s)),
            _ => String::new(),
        };
        ui.add(
            egui::ProgressBar::new(frac(p.done_iters, p.total_iters)).text(format!(
                "plan: {}/{} iterations{eta}",
                p.done_iters, p.total_iters
            )),
        );
        if let Some(s) = p.step {
            ui.add(
                egui::ProgressBar::new(frac(s.epochs_done, s.epochs)).text(format!(
                    "stage {} step {} ({} px): epoch {}/{}",
                    s.stage + 1,
                    s.step + 1,
                    s.size_px,
                    (s.epochs_done + 1).min(s.epochs),
                    s.epochs
                )),
            );
        }
        let speed = if self.run.state == RunState::Running {
            format!(" · {:.1} img/s", p.img_per_s)
        } else {
            String::new()
        };
        ui.add(
            egui::ProgressBar::new(frac(p.batch.0, p.batch.1))
                .text(format!("epoch: batch {}/{}{speed}", p.batch.0, p.batch.1)),
        );
        ui.horizontal_wrapped(|ui| {
            ui.label("Run folder:");
            let dir = self.run_folder();
            ui.monospace(crate::files::shown(&dir).to_string());
            if ui
                .add_enabled(dir.is_dir(), egui::Button::new("Open folder"))
                .on_disabled_hover_text("the folder does not exist yet")
                .clicked()
            {
                commands.push(Command::OpenRunFolder);
            }
        });
        if let Some(m) = &self.run.finished_model {
            ui.label(format!(
                "Model: {} (open it in the Viewer tab)",
                crate::files::shown(m)
            ));
        }
    }

    pub(super) fn preview_ui(&mut self, ui: &mut egui::Ui, commands: &mut Vec<Command>) {
        let ok = self.dataset_ok();
        let flips = self.settings.flip.describe();
        ui.collapsing("Batch preview", |ui| {
            ui.horizontal_wrapped(|ui| {
                if ui
                    .add_enabled(ok, egui::Button::new("New batch"))
                    .on_disabled_hover_text("choose a usable dataset folder first")
                    .clicked()
                {
                    commands.push(Command::NewPreview);
                }
                ui.checkbox(&mut self.preview_augment, "augmented");
                ui.label("as the network gets it at the first stage's size");
            });
            if self.preview_augment {
                ui.label(format!(
                    "Augmentation: rotation, lighting and {flips}{}.",
                    if self.settings.flip == crate::data::augment::Flip::Vertical {
                        " (so some radiographs show upside down)"
                    } else {
                        ""
                    }
                ));
            }
            egui::Grid::new("preview-grid").show(ui, |ui| {
                for (i, (tex, label)) in self.preview.iter().enumerate() {
                    ui.vertical(|ui| {
                        ui.add(egui::Image::new(tex).fit_to_exact_size(egui::vec2(96.0, 96.0)));
                        ui.label(label);
                    });
                    if i % 6 == 5 {
                        ui.end_row();
                    }
                }
            });
        });
    }
}
