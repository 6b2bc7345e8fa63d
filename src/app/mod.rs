//! The desktop app (eframe/egui). Only this module may use the UI crates.

/// Opens the main window and runs until it is closed.
pub fn run() -> anyhow::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("covid-resnet")
            .with_inner_size([1280.0, 800.0]),
        ..Default::default()
    };
    eframe::run_native(
        "covid-resnet",
        options,
        Box::new(|cc| Ok(Box::new(App::new(cc)))),
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

/// App state.
#[derive(Debug, Default)]
pub struct App {
    tab: Tab,
    show_about: bool,
}

impl App {
    /// Creates the app, restoring the last tab.
    pub fn new(cc: &eframe::CreationContext<'_>) -> Self {
        let tab = cc
            .storage
            .and_then(|s| eframe::get_value(s, "tab"))
            .unwrap_or_default();
        Self {
            tab,
            show_about: false,
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
        egui::CentralPanel::default().show(ui, |ui| match self.tab {
            Tab::Training => {
                ui.heading("Training");
                ui.label(
                    "The training tab is not built yet: use `covid-resnet` commands meanwhile.",
                );
            }
            Tab::Viewer => {
                ui.heading("Viewer");
                ui.label("The viewer is not built yet: use `covid-resnet predict` meanwhile.");
            }
        });
        if self.show_about {
            let ctx = ui.ctx().clone();
            egui::Window::new("About covid-resnet")
                .open(&mut self.show_about)
                .show(&ctx, |ui| {
                    ui.label(format!("Version {}", crate::build_info::version_line()));
                    ui.label(format!("Backends: {}", crate::build_info::BACKENDS));
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
        eframe::set_value(storage, "tab", &self.tab);
    }
}
