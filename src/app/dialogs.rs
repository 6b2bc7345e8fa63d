//! The system's file dialogs, with a way out when there is none: on Linux rfd asks the
//! desktop portal, then zenity, and returns "nothing chosen" when neither exists, exactly as
//! when the user cancels. A dialog that comes back in a blink was never shown: the caller
//! then opens a [`PathPrompt`], a small modal window with a focused path field, in its place.
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Whether dialogs are asked for (tests and headless sessions use `Unavailable`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DialogBackend {
    /// rfd's system dialogs.
    #[default]
    System,
    /// No dialog: every request says so.
    Unavailable,
}

/// What to ask for.
#[derive(Debug, Clone)]
pub enum Pick {
    /// One existing file.
    File {
        /// Filter name.
        filter: &'static str,
        /// Extensions of the filter.
        exts: &'static [&'static str],
    },
    /// Several files.
    Files {
        /// Filter name.
        filter: &'static str,
        /// Extensions of the filter.
        exts: &'static [&'static str],
    },
    /// A folder.
    Folder,
    /// Where to save a file.
    Save {
        /// Filter name.
        filter: &'static str,
        /// Extensions of the filter.
        exts: &'static [&'static str],
        /// Suggested file name.
        name: &'static str,
    },
}

/// What came back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Picked {
    /// The user chose these.
    Chosen(Vec<PathBuf>),
    /// The user closed the dialog.
    Cancelled,
    /// No dialog could be shown.
    Unavailable,
}

/// Shorter than any person can cancel a dialog: the dialog was not shown.
const NOT_SHOWN: Duration = Duration::from_millis(250);

/// Shows the dialog and waits for it.
pub fn pick(backend: DialogBackend, what: &Pick) -> Picked {
    if backend == DialogBackend::Unavailable {
        return Picked::Unavailable;
    }
    let t0 = Instant::now();
    let d = rfd::FileDialog::new();
    let got: Option<Vec<PathBuf>> = match what {
        Pick::File { filter, exts } => d.add_filter(*filter, exts).pick_file().map(|p| vec![p]),
        Pick::Files { filter, exts } => d.add_filter(*filter, exts).pick_files(),
        Pick::Folder => d.pick_folder().map(|p| vec![p]),
        Pick::Save { filter, exts, name } => d
            .add_filter(*filter, exts)
            .set_file_name(*name)
            .save_file()
            .map(|p| vec![p]),
    };
    match got {
        Some(v) if !v.is_empty() => Picked::Chosen(v),
        _ if t0.elapsed() < NOT_SHOWN => Picked::Unavailable,
        _ => Picked::Cancelled,
    }
}

/// Shows `dir` in the system's file manager.
pub fn open_folder(dir: &std::path::Path) -> Result<(), String> {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else if cfg!(windows) {
        "explorer"
    } else {
        "xdg-open"
    };
    std::process::Command::new(opener)
        .arg(dir)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .map(|mut child| {
            // Reap it when it exits (xdg-open hands over to the file manager at once).
            std::thread::spawn(move || child.wait());
        })
        .map_err(|e| {
            format!(
                "cannot open {} with {opener}: {e}; the folder is {}",
                crate::files::shown(dir),
                crate::files::shown(dir)
            )
        })
}

/// Where a typed path goes when no dialog could be shown: a small modal window in place of
/// the dialog ("No file dialog ... Type the model file's path: [...] OK  Cancel"), its field
/// focused.
#[derive(Debug, Clone, PartialEq)]
pub struct PathPrompt<P> {
    /// What the path is for.
    pub purpose: P,
    /// What to type, in words.
    pub label: String,
    /// An example of what to type, shown in the empty field.
    pub hint: &'static str,
    /// The path as typed.
    pub text: String,
    focused: bool,
}

/// Why the prompt is there, said above its field.
pub const NO_DIALOG: &str =
    "No file dialog could be opened on this system (no desktop portal or zenity).";

impl<P: Copy> PathPrompt<P> {
    /// A prompt for `purpose`.
    pub fn new(purpose: P, label: impl Into<String>, hint: &'static str) -> Self {
        Self {
            purpose,
            label: label.into(),
            hint,
            text: String::new(),
            focused: false,
        }
    }

    /// Shows the modal. `Some(Some(path))` when submitted (OK or Enter), `Some(None)` when
    /// cancelled (Cancel, Escape or a click outside).
    pub fn show(&mut self, ctx: &egui::Context) -> Option<Option<PathBuf>> {
        let mut out = None;
        let modal = egui::Modal::new(egui::Id::unique("path-prompt")).show(ctx, |ui| {
            ui.set_width(520.0);
            ui.label(NO_DIALOG);
            let l = ui.label(egui::RichText::new(&self.label).strong());
            let r = ui.add(
                egui::TextEdit::singleline(&mut self.text)
                    .hint_text(self.hint)
                    .desired_width(f32::INFINITY),
            );
            r.clone().labelled_by(l.id);
            if !self.focused {
                self.focused = true;
                r.request_focus();
            }
            let entered = r.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
            ui.horizontal(|ui| {
                let ok = !self.text.trim().is_empty();
                if ui.add_enabled(ok, egui::Button::new("OK")).clicked() || (ok && entered) {
                    out = Some(Some(PathBuf::from(self.text.trim())));
                }
                if ui.button("Cancel").clicked() {
                    out = Some(None);
                }
            });
        });
        if out.is_none() && modal.should_close() {
            out = Some(None);
        }
        out
    }
}
