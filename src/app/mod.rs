//! The desktop app (eframe/egui). Only this module may use the UI crates.
pub mod dialogs;
pub mod notices;
pub mod plots;
pub mod training;
pub mod viewer;

use dialogs::DialogBackend;
use notices::Notices;
use std::path::Path;
use training::{TrainingSettings, TrainingTab};
use viewer::{ViewerSettings, ViewerTab};

/// What to show when the window opens (`covid-resnet open`).
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// Images to open in the Viewer.
    pub files: Vec<std::path::PathBuf>,
    /// Model to load in the Viewer.
    pub model: Option<std::path::PathBuf>,
    /// Dataset folder for the test-set review.
    pub data: Option<std::path::PathBuf>,
    /// A report (`eval`'s, training's or an export) to open in the test-set review.
    pub report: Option<std::path::PathBuf>,
    /// The device given on the command line (`--device`), in place of the saved setting.
    pub device: Option<crate::device::DeviceChoice>,
}

/// Opens the main window and runs until it is closed. Window size and settings persist.
pub fn run(startup: Startup) -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("covid-resnet")
            .with_inner_size([1400.0, 900.0]),
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "covid-resnet",
        options,
        Box::new(|cc| {
            let mut app = App::new(cc);
            app.apply_startup(startup);
            Ok(Box::new(app))
        }),
    )
    .map_err(|e| anyhow::anyhow!("cannot open the window: {e}"))
}

/// The app's tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Tab {
    /// Train a model.
    #[default]
    Training,
    /// Look at X-rays and predictions.
    Viewer,
}

/// Everything the app remembers between runs.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Open tab.
    pub tab: Tab,
    /// Training tab settings (its dataset folder is the Viewer's too).
    pub training: TrainingSettings,
    /// Viewer tab settings.
    pub viewer: ViewerSettings,
}

impl Settings {
    /// A first launch (nothing saved yet): the Viewer when a shipped model is there to answer,
    /// else the Training tab.
    pub fn first_launch() -> Self {
        Self {
            tab: if crate::model::io::shipped::model_path().is_some() {
                Tab::Viewer
            } else {
                Tab::Training
            },
            ..Default::default()
        }
    }
}

const SETTINGS_KEY: &str = "covid-resnet-settings";

/// What a tab may use besides its own state while it draws and runs its commands.
pub struct Shared<'a> {
    /// The window's messages.
    pub notices: &'a mut Notices,
    /// Whether file dialogs can be shown.
    pub dialogs: DialogBackend,
    /// The dataset folder both tabs use.
    pub data_dir: &'a mut String,
    /// How that folder is read (classes, layout options), from the Training tab's settings.
    pub data_options: crate::data::split::DataOptions,
    /// The model of the newest finished training run.
    pub last_model: Option<&'a Path>,
}

/// App state.
pub struct App {
    /// The open tab.
    pub tab: Tab,
    show_about: bool,
    /// The Training tab.
    pub training: TrainingTab,
    /// The Viewer tab.
    pub viewer: ViewerTab,
    /// Errors and notices of both tabs.
    pub notices: Notices,
    /// System file dialogs, or none (tests, headless sessions).
    pub dialogs: DialogBackend,
}

impl App {
    /// Creates the app, restoring the last settings.
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        match cc
            .storage
            .and_then(|s| eframe::get_value::<Settings>(s, SETTINGS_KEY))
        {
            Some(settings) => Self::with_settings(settings),
            None => Self::first_launch(),
        }
    }

    /// The app as it opens the first time (nothing saved yet): the Viewer with the shipped
    /// model and the sample radiographs open, the first one shown; the Training tab where
    /// no model ships.
    pub fn first_launch() -> Self {
        let mut app = Self::with_settings(Settings::first_launch());
        if app.tab == Tab::Viewer && crate::model::io::shipped::samples_dir().is_some() {
            app.viewer.push(viewer::Command::OpenSamples);
        }
        app
    }

    /// Takes what the command line named (`open`'s files, model, data, report; `--device`)
    /// over the saved settings.
    pub fn apply_startup(&mut self, startup: Startup) {
        if !startup.files.is_empty() || startup.report.is_some() {
            // What the user named is what opens, not the samples of a first launch.
            self.viewer.cancel_samples();
        }
        if let Some(m) = startup.model {
            self.viewer.settings.model = crate::files::shown(&m).to_string();
            self.tab = Tab::Viewer;
        }
        if let Some(d) = startup.device {
            self.training.settings.device = d.to_string();
        }
        if let Some(d) = startup.data {
            self.training.settings.data_dir = crate::files::shown(&d).to_string();
        }
        if !startup.files.is_empty() {
            self.viewer.open_at_start(startup.files);
            self.tab = Tab::Viewer;
        }
        if let Some(r) = startup.report {
            self.viewer.open_report_at_start(r);
            self.tab = Tab::Viewer;
        }
    }

    /// Creates the app from explicit settings (tests).
    pub fn with_settings(settings: Settings) -> Self {
        Self {
            tab: settings.tab,
            show_about: false,
            training: TrainingTab::new(settings.training),
            viewer: ViewerTab::new(settings.viewer),
            notices: Notices::default(),
            dialogs: DialogBackend::System,
        }
    }

    /// The settings to persist.
    pub fn settings(&self) -> Settings {
        Settings {
            tab: self.tab,
            training: self.training.settings.clone(),
            viewer: self.viewer.settings.clone(),
        }
    }

    /// What happens between frames, before each is drawn: files dropped on the window become
    /// a Viewer command, both tabs take their background replies and run the commands their
    /// buttons queued (the hidden tab too). No drawing here.
    pub fn logic(&mut self, ctx: &egui::Context) {
        let (hovered, dropped) =
            ctx.input(|i| (i.raw.hovered_files.len(), i.raw.dropped_files.clone()));
        self.viewer.set_hovering(hovered);
        if !dropped.is_empty() {
            self.tab = Tab::Viewer;
            let files = dropped
                .iter()
                .map(|f| {
                    let path = f.path().to_path_buf();
                    let bytes = if path.is_file() { None } else { f.bytes().ok() };
                    (path, bytes)
                })
                .collect();
            self.viewer.push(viewer::Command::Dropped(files));
        }
        self.viewer.device = self.training.settings.device.clone();
        self.training.logic(ctx, &mut self.notices, self.dialogs);
        self.with_viewer(|v, shared| v.logic(ctx, shared));
    }

    /// Runs `f` on the Viewer with what it shares with the rest of the window.
    fn with_viewer<R>(&mut self, f: impl FnOnce(&mut ViewerTab, &mut Shared<'_>) -> R) -> R {
        let last = self.training.run.finished_model.clone();
        let mut shared = Shared {
            notices: &mut self.notices,
            dialogs: self.dialogs,
            data_options: self.training.settings.data_options(),
            data_dir: &mut self.training.settings.data_dir,
            last_model: last.as_deref(),
        };
        f(&mut self.viewer, &mut shared)
    }

    /// One whole frame as eframe runs it: [`Self::logic`], then [`Self::ui`] (UI tests).
    pub fn frame(&mut self, ui: &mut egui::Ui) {
        self.logic(ui.ctx());
        self.ui(ui);
    }

    /// Draws one frame; what its buttons ask for runs in the next [`Self::logic`].
    pub fn ui(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("menu").show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.selectable_value(&mut self.tab, Tab::Training, "Training");
                ui.selectable_value(&mut self.tab, Tab::Viewer, "Viewer");
                ui.separator();
                if ui.button("About").clicked() {
                    self.show_about = true;
                }
            });
            if !self.notices.items().is_empty() {
                ui.separator();
                self.notices.ui(ui);
            }
        });
        egui::Panel::bottom("notice").show(ui, |ui| {
            ui.colored_label(egui::Color32::from_rgb(200, 120, 0), crate::RESEARCH_NOTICE);
        });
        let ctx = ui.ctx().clone();
        match self.tab {
            Tab::Training => {
                self.training.ui(ui);
                self.viewer.drop_overlay(&ctx);
            }
            Tab::Viewer => self.with_viewer(|v, shared| v.ui(ui, shared)),
        }
        if self.show_about {
            egui::Window::new("About covid-resnet")
                .open(&mut self.show_about)
                .show(&ctx, |ui| {
                    ui.label(format!("Version {}", crate::build_info::VERSION_LINE));
                    ui.label(format!(
                        "Backends compiled in: {}",
                        crate::build_info::BACKENDS
                    ));
                    ui.label(format!("Device setting: {}", self.training.settings.device));
                    match &self.training.run.device_in_use {
                        Some(d) => ui.label(format!("Device in use: {d}")),
                        None => ui.label("Device in use: none yet (no run started)"),
                    };
                    ui.label(crate::RESEARCH_NOTICE);
                    ui.label("Method: Farooq & Hafeez (2020), COVID-ResNet.");
                });
        }
    }
}

impl eframe::App for App {
    fn logic(&mut self, ctx: &egui::Context, _frame: &mut eframe::Frame) {
        App::logic(self, ctx);
    }

    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        App::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.settings());
    }
}
