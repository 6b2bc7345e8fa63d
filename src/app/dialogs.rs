//! The system's file dialogs, with a way out when there is none: on Linux rfd asks the
//! desktop portal, then zenity, and returns "nothing chosen" when neither exists, exactly as
//! when the user cancels. A dialog that comes back in a blink was never shown, so the
//! caller can say so and point at the path field beside every button.
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

/// The message for [`Picked::Unavailable`], naming the field to use instead.
pub fn unavailable_message(field: &str) -> String {
    format!(
        "No file dialog could be opened on this system (no desktop portal or zenity): type \
         the path into the {field} field instead."
    )
}

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

/// Where a typed path goes when no dialog could be shown: a small form in place of the
/// dialog ("Type the model file's path: [...] Open  Cancel").
#[derive(Debug, Clone, PartialEq)]
pub struct PathPrompt<P> {
    /// What the path is for.
    pub purpose: P,
    /// What to type, in words.
    pub label: String,
    /// The path as typed.
    pub text: String,
}

impl<P: Copy> PathPrompt<P> {
    /// A prompt for `purpose`.
    pub fn new(purpose: P, label: impl Into<String>) -> Self {
        Self {
            purpose,
            label: label.into(),
            text: String::new(),
        }
    }

    /// Draws the form. `Some(Some(path))` when submitted, `Some(None)` when cancelled.
    pub fn ui(&mut self, ui: &mut egui::Ui) -> Option<Option<PathBuf>> {
        let mut out = None;
        egui::Frame::group(ui.style()).show(ui, |ui| {
            let l = ui.label(&self.label);
            let r = ui.add(
                egui::TextEdit::singleline(&mut self.text)
                    .hint_text("/path/to/file")
                    .desired_width(f32::INFINITY),
            );
            r.clone().labelled_by(l.id);
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
        out
    }
}
