//! The zoomable image canvas: fit, wheel zoom around the cursor, drag to pan, 1:1,
//! right-drag for window/level, the Grad-CAM texture on top, and corner text that says what
//! is shown and how to move it (no tooltip over the toolbar).
use egui::{pos2, vec2, Color32, Rect, Sense, TextureHandle, Vec2};

/// Zoom and pan of one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ViewState {
    /// Screen points per image pixel; None = fit to the panel.
    pub zoom: Option<f32>,
    /// Offset of the image centre from the panel centre, in screen points.
    pub pan: Vec2,
}

impl Default for ViewState {
    fn default() -> Self {
        Self {
            zoom: None,
            pan: Vec2::ZERO,
        }
    }
}

impl ViewState {
    /// The zoom that fits `size` (image pixels) into `avail`.
    pub fn fit_zoom(size: Vec2, avail: Vec2) -> f32 {
        (avail.x / size.x).min(avail.y / size.y).max(1e-4)
    }

    /// The effective zoom.
    pub fn zoom_in(&self, size: Vec2, avail: Vec2) -> f32 {
        self.zoom.unwrap_or_else(|| Self::fit_zoom(size, avail))
    }

    /// Where the image lands on screen.
    pub fn image_rect(&self, size: Vec2, panel: Rect) -> Rect {
        let z = self.zoom_in(size, panel.size());
        Rect::from_center_size(panel.center() + self.pan, size * z)
    }

    /// Zooms by `factor` keeping the image point under `cursor` where it is.
    pub fn zoom_at(&mut self, factor: f32, cursor: egui::Pos2, size: Vec2, panel: Rect) {
        let z0 = self.zoom_in(size, panel.size());
        let z1 = (z0 * factor).clamp(0.02, 64.0);
        let centre = panel.center() + self.pan;
        let new_centre = cursor + (centre - cursor) * (z1 / z0);
        self.pan = new_centre - panel.center();
        self.zoom = Some(z1);
    }
}

/// What the user did on the canvas this frame.
#[derive(Debug, Clone, Copy)]
pub struct CanvasInput {
    /// Right-drag delta (window/level), in screen points.
    pub wl_drag: Vec2,
    /// Where the image was drawn.
    pub image_rect: Rect,
}

/// How to move the image, written in the canvas's bottom-left corner.
pub const CANVAS_HELP: &str =
    "wheel: zoom · drag: pan · right-drag: window/level · double-click: fit";

/// Lines of text in a box at a corner of `panel`, readable over any image.
fn corner_text(painter: &egui::Painter, panel: Rect, lines: &[String], bottom: bool) {
    if lines.is_empty() {
        return;
    }
    let font = egui::FontId::proportional(15.0);
    let text = lines.join("\n");
    let galley = painter.layout_no_wrap(text, font, Color32::from_gray(235));
    let pad = vec2(8.0, 6.0);
    let min = if bottom {
        pos2(
            panel.min.x + 8.0,
            panel.max.y - 8.0 - galley.size().y - 2.0 * pad.y,
        )
    } else {
        panel.min + vec2(8.0, 8.0)
    };
    let bg = Rect::from_min_size(min, galley.size() + 2.0 * pad);
    painter.rect_filled(bg, 4.0, Color32::from_black_alpha(170));
    painter.galley(min + pad, galley, Color32::from_gray(235));
}

/// Draws the image (and optional overlay) filling the available space, with `info` lines in
/// the top-left corner. `full_per_texture` is the full image's pixels per texture pixel (the
/// texture may be a downscaled copy), so the zoom shown is of the full image.
pub fn canvas(
    ui: &mut egui::Ui,
    view: &mut ViewState,
    texture: &TextureHandle,
    image_px: [usize; 2],
    overlay: Option<(&TextureHandle, f32)>,
    info: &[String],
    full_per_texture: f32,
) -> CanvasInput {
    let avail = ui.available_size().max(vec2(64.0, 64.0));
    let (panel, resp) = ui.allocate_exact_size(avail, Sense::click_and_drag());
    let size = vec2(image_px[0] as f32, image_px[1] as f32);
    let mut out = CanvasInput {
        wl_drag: Vec2::ZERO,
        image_rect: Rect::NOTHING,
    };
    if let Some(cursor) = resp.hover_pos() {
        let scroll = ui.input(|i| i.smooth_scroll_delta.y);
        let pinch = ui.input(|i| i.zoom_delta());
        let factor = (scroll * 0.0025).exp() * pinch;
        if (factor - 1.0).abs() > 1e-4 {
            view.zoom_at(factor, cursor, size, panel);
        }
    }
    if resp.dragged_by(egui::PointerButton::Primary) {
        view.pan += resp.drag_delta();
    }
    if resp.dragged_by(egui::PointerButton::Secondary) {
        out.wl_drag = resp.drag_delta();
    }
    if resp.double_clicked() {
        *view = ViewState::default();
    }
    let painter = ui.painter_at(panel);
    painter.rect_filled(panel, 0.0, Color32::from_gray(12));
    let rect = view.image_rect(size, panel);
    out.image_rect = rect;
    let uv = Rect::from_min_max(pos2(0.0, 0.0), pos2(1.0, 1.0));
    painter.image(texture.id(), rect, uv, Color32::WHITE);
    if let Some((tex, opacity)) = overlay {
        let a = (opacity.clamp(0.0, 1.0) * 255.0).round() as u8;
        painter.image(tex.id(), rect, uv, Color32::from_white_alpha(a));
    }
    // Physical pixels per full-image pixel: 100 % is the 1:1 button's view.
    let zoom =
        view.zoom_in(size, panel.size()) * ui.ctx().pixels_per_point() / full_per_texture.max(1e-6);
    let mut lines = info.to_vec();
    lines.push(format!("zoom {:.0} %", 100.0 * zoom));
    corner_text(&painter, panel, &lines, false);
    corner_text(&painter, panel, &[CANVAS_HELP.to_string()], true);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zoom_keeps_the_point_under_the_cursor() {
        let panel = Rect::from_min_size(pos2(0.0, 0.0), vec2(800.0, 600.0));
        let size = vec2(400.0, 300.0);
        let mut v = ViewState::default();
        let cursor = pos2(500.0, 200.0);
        let r0 = v.image_rect(size, panel);
        let u = (cursor - r0.min) / r0.size();
        v.zoom_at(2.5, cursor, size, panel);
        let r1 = v.image_rect(size, panel);
        let u1 = (cursor - r1.min) / r1.size();
        assert!((u - u1).length() < 1e-5, "{u:?} vs {u1:?}");
        assert!((r1.width() / r0.width() - 2.5).abs() < 1e-5);
    }

    #[test]
    fn fit_uses_the_limiting_side() {
        assert_eq!(
            ViewState::fit_zoom(vec2(200.0, 100.0), vec2(400.0, 400.0)),
            2.0
        );
        assert_eq!(
            ViewState::fit_zoom(vec2(100.0, 400.0), vec2(400.0, 200.0)),
            0.5
        );
    }
}
