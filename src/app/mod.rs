//! The desktop app (eframe/egui). Only this module may use the UI crates.
pub mod plots;
pub mod sink;
pub mod training;
pub mod viewer;

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
            if let Some(m) = startup.model {
                app.viewer.settings.model = m.display().to_string();
                app.tab = Tab::Viewer;
            }
            if let Some(d) = startup.data {
                app.viewer.settings.data_dir = d.display().to_string();
            }
            if !startup.files.is_empty() {
                app.viewer.open_at_start(startup.files);
                app.tab = Tab::Viewer;
            }
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
    /// Training tab settings.
    pub training: TrainingSettings,
    /// Viewer tab settings.
    pub viewer: ViewerSettings,
}

const SETTINGS_KEY: &str = "covid-resnet-settings";

/// App state.
pub struct App {
    /// The open tab.
    pub tab: Tab,
    show_about: bool,
    /// The Training tab.
    pub training: TrainingTab,
    /// The Viewer tab.
    pub viewer: ViewerTab,
}

impl App {
    /// Creates the app, restoring the last settings.
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        let settings: Settings = cc
            .storage
            .and_then(|s| eframe::get_value(s, SETTINGS_KEY))
            .unwrap_or_default();
        Self::with_settings(settings)
    }

    /// Creates the app from explicit settings (tests).
    pub fn with_settings(settings: Settings) -> Self {
        Self {
            tab: settings.tab,
            show_about: false,
            training: TrainingTab::new(settings.training),
            viewer: ViewerTab::new(settings.viewer),
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

    /// Draws one frame (also used by UI tests).
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
        });
        egui::Panel::bottom("notice").show(ui, |ui| {
            ui.colored_label(egui::Color32::from_rgb(200, 120, 0), crate::RESEARCH_NOTICE);
        });
        // Files dropped anywhere open in the Viewer.
        let (hovered, dropped) = ui
            .ctx()
            .input(|i| (i.raw.hovered_files.len(), i.raw.dropped_files.clone()));
        self.viewer.set_hovering(hovered);
        if !dropped.is_empty() {
            self.tab = Tab::Viewer;
            let ctx = ui.ctx().clone();
            self.viewer.open_dropped(&ctx, &dropped);
        }
        self.viewer.device = self.training.settings.device.clone();
        if self.viewer.settings.data_dir.trim().is_empty() {
            // The Training tab's dataset is the natural one to review.
            self.viewer.settings.data_dir = self.training.settings.data_dir.clone();
        }
        match self.tab {
            Tab::Training => {
                self.training.ui(ui);
                // Keep the Viewer's background replies flowing.
                let ctx = ui.ctx().clone();
                self.viewer.poll(&ctx);
                if hovered > 0 {
                    self.viewer.ui_overlay_only(&ctx);
                }
            }
            Tab::Viewer => {
                let last = self.training.finished_model.clone();
                self.viewer.ui(ui, last.as_deref());
                // Keep draining training events while another tab is shown.
                self.training.poll_events();
            }
        }
        if self.show_about {
            let ctx = ui.ctx().clone();
            egui::Window::new("About covid-resnet")
                .open(&mut self.show_about)
                .show(&ctx, |ui| {
                    ui.label(format!("Version {}", crate::build_info::VERSION_LINE));
                    ui.label(format!(
                        "Backends compiled in: {}",
                        crate::build_info::BACKENDS
                    ));
                    ui.label(format!("Device setting: {}", self.training.settings.device));
                    match &self.training.device_in_use {
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
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        App::ui(self, ui);
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        eframe::set_value(storage, SETTINGS_KEY, &self.settings());
    }
}
