//! One image at a time: a toolbar across the top (fit, 1:1, window/level, Grad-CAM), the
//! prediction panel on the right, and the canvas taking the rest.
use super::image_view::{canvas, ViewState};
use super::prediction::{facts_ui, prediction_ui, truth_line};
use super::state::{ImageState, Loaded};
use super::worker::{gray_to_color, AnalysisKey};
use super::ViewerTab;
use crate::app::notices::error_text;
use egui::{Color32, TextureOptions};

impl ViewerTab {
    /// Draws the shown image with its prediction.
    pub(super) fn image_mode_ui(&mut self, ui: &mut egui::Ui, ctx: &egui::Context) {
        let Some(i) = self.selected.filter(|&i| i < self.images.len()) else {
            ui.centered_and_justified(|ui| {
                ui.label("Drop chest X-rays here, or use Open… on the left.");
            });
            return;
        };
        let classes = self.class_names();
        let rule = self
            .model
            .as_ref()
            .and_then(|m| crate::infer::decision::rule_text(m.predictor.meta()));
        let thresholds: Vec<f64> = self
            .model
            .as_ref()
            .and_then(|m| m.predictor.finding_thresholds())
            .unwrap_or_default()
            .to_vec();
        let key = self.key();
        let settings = &mut self.settings;
        let cam_class = &mut self.cam_class;
        let im = &mut self.images[i];
        let (name, path, truth) = (im.name.clone(), im.path.clone(), im.truth.clone());
        let l = match &mut im.state {
            ImageState::Loading => {
                ui.horizontal(|ui| {
                    ui.spinner();
                    ui.label(format!("decoding {name}"));
                });
                return;
            }
            ImageState::Failed(e) => {
                error_text(ui, e);
                return;
            }
            ImageState::Ready(l) => l,
        };
        egui::Panel::top("viewer-toolbar").show(ui, |ui| {
            toolbar_ui(ui, l, settings);
        });
        egui::Panel::right("viewer-prediction")
            .resizable(true)
            .default_size(300.0)
            .size_range(240.0..=480.0)
            .show(ui, |ui| {
                egui::ScrollArea::vertical().show(ui, |ui| {
                    prediction_ui(
                        ui,
                        l,
                        &classes,
                        rule.as_deref(),
                        truth.as_ref(),
                        key,
                        settings,
                        cam_class,
                        &thresholds,
                    );
                    ui.separator();
                    facts_ui(ui, &name, &path, &l.image);
                });
            });
        egui::CentralPanel::default()
            .frame(egui::Frame::NONE)
            .show(ui, |ui| {
                // A multi-label model predicts no one class: its findings are in the panel.
                let predicted = match &l.analysis {
                    Some((_, Ok(a))) if a.present.is_none() => Some(a.predicted),
                    _ => None,
                };
                let mut info = vec![name.clone(), format!("W {:.2}  L {:.2}", l.window, l.level)];
                let said = truth_line(&classes, truth.as_ref(), predicted);
                if !said.is_empty() {
                    info.push(said);
                }
                canvas_ui(ui, ctx, l, &path, settings, &info);
            });
    }
}

fn toolbar_ui(ui: &mut egui::Ui, l: &mut Loaded, settings: &mut super::ViewerSettings) {
    // Short sliders: the whole toolbar fits beside the panels at 1280 px.
    ui.spacing_mut().slider_width = 90.0;
    ui.horizontal_wrapped(|ui| {
        if ui.button("Fit").clicked() {
            l.view = ViewState::default();
        }
        if ui
            .button("1:1")
            .on_hover_text("one image pixel per screen pixel")
            .clicked()
        {
            // One image pixel per physical pixel of the full image.
            let s = l.image.width as f32 / l.display.width as f32;
            l.view = ViewState {
                zoom: Some(s / ui.ctx().pixels_per_point()),
                pan: egui::Vec2::ZERO,
            };
        }
        ui.separator();
        let wl = ui.label("Window");
        ui.add(
            egui::Slider::new(&mut l.window, 0.02..=1.0)
                .fixed_decimals(2)
                .show_value(true),
        )
        .labelled_by(wl.id);
        let ll = ui.label("Level");
        ui.add(egui::Slider::new(&mut l.level, 0.0..=1.0).fixed_decimals(2))
            .labelled_by(ll.id);
        if ui.button("Reset W/L").clicked() {
            (l.window, l.level) = (1.0, 0.5);
        }
        ui.separator();
        ui.checkbox(&mut settings.show_cam, "Grad-CAM");
        let ol = ui.label("Opacity");
        ui.add_enabled(
            settings.show_cam,
            egui::Slider::new(&mut settings.cam_opacity, 0.0..=1.0).fixed_decimals(2),
        )
        .labelled_by(ol.id);
    });
}

fn canvas_ui(
    ui: &mut egui::Ui,
    ctx: &egui::Context,
    l: &mut Loaded,
    path: &std::path::Path,
    settings: &super::ViewerSettings,
    info: &[String],
) {
    let wl = (l.window, l.level);
    if l.texture.as_ref().map(|(_, k)| *k) != Some(wl) {
        let lo = wl.1 - wl.0 / 2.0;
        let img = gray_to_color(&l.display, lo, lo + wl.0);
        match &mut l.texture {
            Some((t, k)) => {
                t.set(img, TextureOptions::LINEAR);
                *k = wl;
            }
            None => {
                l.texture = Some((
                    ctx.load_texture(
                        format!("image-{}", crate::files::shown(path)),
                        img,
                        TextureOptions::LINEAR,
                    ),
                    wl,
                ))
            }
        }
    }
    cam_texture(ctx, l, path);
    let overlay = if settings.show_cam {
        l.cam_tex.as_ref().map(|(_, t)| (t, settings.cam_opacity))
    } else {
        None
    };
    let Some((tex, _)) = l.texture.as_ref() else {
        return;
    };
    let input = canvas(
        ui,
        &mut l.view,
        tex,
        [l.display.width as usize, l.display.height as usize],
        overlay,
        info,
        l.image.width as f32 / l.display.width.max(1) as f32,
    );
    l.shown_rect = Some(input.image_rect);
    if input.wl_drag != egui::Vec2::ZERO {
        l.window = (l.window + input.wl_drag.x * 0.002).clamp(0.02, 1.0);
        l.level = (l.level - input.wl_drag.y * 0.002).clamp(0.0, 1.0);
    }
}

/// Makes the Grad-CAM texture of the current analysis (once per analysis).
fn cam_texture(ctx: &egui::Context, l: &mut Loaded, path: &std::path::Path) {
    let Some((k, Ok(a))) = &l.analysis else {
        return;
    };
    if l.cam_tex.as_ref().map(|(ck, _)| ck) == Some(k) {
        return;
    }
    let key: AnalysisKey = *k;
    // At least 512 px on the long side: a small image's few pixels, magnified on screen,
    // would show the map's interpolation as hard facets.
    let (dw, dh) = (l.display.width.max(1), l.display.height.max(1));
    let scale = (512.0 / dw.max(dh) as f64).max(1.0);
    let (w, h) = (
        (dw as f64 * scale).round() as u32,
        (dh as f64 * scale).round() as u32,
    );
    let cam = a.cam.upsample(w, h);
    let px: Vec<Color32> = cam
        .data
        .iter()
        .map(|&v| {
            let [r, g, b] = crate::infer::gradcam::jet(v);
            Color32::from_rgb(r, g, b)
        })
        .collect();
    let ci = egui::ColorImage::new([w as usize, h as usize], px);
    l.cam_tex = Some((
        key,
        ctx.load_texture(
            format!("cam-{}", crate::files::shown(path)),
            ci,
            TextureOptions::LINEAR,
        ),
    ));
}
