//! The confusion matrix as a PNG heat map (rows actual, columns predicted), with the
//! counts, the row-normalised percentages and the class names written in.
use crate::files::write_atomic;
use crate::{Error, Result};
use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use image::{Rgb, RgbImage};
use std::path::Path;

const CELL: u32 = 110;
const LABEL_W: u32 = 150;
const TOP_H: u32 = 110;
const PAD: u32 = 24;

/// Light to dark blue for a row fraction in [0, 1].
pub fn blues(t: f32) -> [u8; 3] {
    let t = t.clamp(0.0, 1.0);
    let lo = [247.0, 251.0, 255.0];
    let hi = [8.0, 48.0, 107.0];
    [0, 1, 2].map(|i| (lo[i] + (hi[i] - lo[i]) * t).round() as u8)
}

pub(crate) fn font() -> FontRef<'static> {
    FontRef::try_from_slice(epaint_default_fonts::UBUNTU_LIGHT).expect("egui's bundled font")
}

/// Width in pixels of `text` at `px`.
pub(crate) fn text_width(f: &FontRef<'_>, px: f32, text: &str) -> f32 {
    let sf = f.as_scaled(PxScale::from(px));
    text.chars().map(|c| sf.h_advance(f.glyph_id(c))).sum()
}

/// Draws `text` with its baseline-left at (x, y).
pub(crate) fn draw_text(
    img: &mut RgbImage,
    f: &FontRef<'_>,
    px: f32,
    x: f32,
    y: f32,
    text: &str,
    rgb: [u8; 3],
) {
    let sf = f.as_scaled(PxScale::from(px));
    let mut pen = x;
    for c in text.chars() {
        let id = f.glyph_id(c);
        let g = id.with_scale_and_position(PxScale::from(px), ab_glyph::point(pen, y));
        pen += sf.h_advance(id);
        if let Some(o) = f.outline_glyph(g) {
            let b = o.px_bounds();
            o.draw(|gx, gy, cov| {
                let (px_, py_) = (b.min.x as i64 + gx as i64, b.min.y as i64 + gy as i64);
                if px_ >= 0 && py_ >= 0 && (px_ as u32) < img.width() && (py_ as u32) < img.height()
                {
                    let p = img.get_pixel_mut(px_ as u32, py_ as u32);
                    for (c, &ink) in p.0.iter_mut().zip(&rgb) {
                        *c = (*c as f32 * (1.0 - cov) + ink as f32 * cov).round() as u8;
                    }
                }
            });
        }
    }
}

pub(crate) fn centered(
    img: &mut RgbImage,
    f: &FontRef<'_>,
    px: f32,
    cx: f32,
    y: f32,
    t: &str,
    rgb: [u8; 3],
) {
    let w = text_width(f, px, t);
    draw_text(img, f, px, cx - w / 2.0, y, t, rgb);
}

/// Renders the matrix `m[actual][predicted]` for `classes`.
pub fn confusion_image(classes: &[String], m: &[Vec<usize>], title: &str) -> RgbImage {
    let k = classes.len() as u32;
    let (w, h) = (LABEL_W + k * CELL + PAD, TOP_H + k * CELL + PAD + 40);
    let mut img = RgbImage::from_pixel(w, h, Rgb([255, 255, 255]));
    let f = font();
    let dark = [20, 20, 20];
    draw_text(&mut img, &f, 20.0, 10.0, 28.0, title, dark);
    centered(
        &mut img,
        &f,
        16.0,
        (LABEL_W + k * CELL / 2) as f32,
        58.0,
        "predicted",
        dark,
    );
    for (j, c) in classes.iter().enumerate() {
        let cx = (LABEL_W + j as u32 * CELL + CELL / 2) as f32;
        centered(&mut img, &f, 16.0, cx, (TOP_H - 12) as f32, c, dark);
    }
    for (i, row) in m.iter().enumerate() {
        let total: usize = row.iter().sum();
        let y0 = TOP_H + i as u32 * CELL;
        let name = classes.get(i).map(String::as_str).unwrap_or("?");
        draw_text(
            &mut img,
            &f,
            16.0,
            8.0,
            (y0 + CELL / 2 + 6) as f32,
            name,
            dark,
        );
        for (j, &v) in row.iter().enumerate() {
            let frac = if total > 0 {
                v as f32 / total as f32
            } else {
                0.0
            };
            let x0 = LABEL_W + j as u32 * CELL;
            let col = blues(frac);
            for y in y0 + 1..y0 + CELL {
                for x in x0 + 1..x0 + CELL {
                    img.put_pixel(x, y, Rgb(col));
                }
            }
            let ink = if frac > 0.5 { [255, 255, 255] } else { dark };
            let cx = (x0 + CELL / 2) as f32;
            centered(
                &mut img,
                &f,
                30.0,
                cx,
                (y0 + CELL / 2 + 4) as f32,
                &v.to_string(),
                ink,
            );
            let pct = if total > 0 {
                format!("{:.1} %", 100.0 * frac)
            } else {
                "-".into()
            };
            centered(
                &mut img,
                &f,
                15.0,
                cx,
                (y0 + CELL / 2 + 30) as f32,
                &pct,
                ink,
            );
        }
    }
    draw_text(
        &mut img,
        &f,
        14.0,
        8.0,
        (h - 14) as f32,
        "rows: actual class; % of the row. Research use only, not for diagnosis.",
        [90, 90, 90],
    );
    img
}

/// Writes the matrix as a PNG atomically.
pub fn write_confusion_png(
    path: &Path,
    classes: &[String],
    m: &[Vec<usize>],
    title: &str,
) -> Result<()> {
    let img = confusion_image(classes, m, title);
    let mut png = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .map_err(|e| Error::invalid("png", format!("{}: {e}", crate::files::shown(path))))?;
    write_atomic(path, &png)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cells_are_shaded_by_row_fraction_and_text_is_drawn() {
        let classes: Vec<String> = ["A", "B"].iter().map(|s| s.to_string()).collect();
        let m = vec![vec![9, 1], vec![0, 0]];
        let img = confusion_image(&classes, &m, "test");
        assert_eq!(img.width(), LABEL_W + 2 * CELL + PAD);
        // A cell's corner (away from its text) has the fill of its row fraction.
        let at = |i: u32, j: u32| {
            img.get_pixel(LABEL_W + j * CELL + 3, TOP_H + i * CELL + 3)
                .0
        };
        assert_eq!(at(0, 0), blues(0.9));
        assert_eq!(at(0, 1), blues(0.1));
        assert_eq!(at(1, 1), blues(0.0));
        // The count "9" is written in white on the dark cell: some pixels near its centre
        // are much lighter than the fill.
        let (cx, cy) = (LABEL_W + CELL / 2, TOP_H + CELL / 2);
        let light = (cx - 12..cx + 12)
            .flat_map(|x| (cy - 20..cy + 4).map(move |y| (x, y)))
            .filter(|&(x, y)| img.get_pixel(x, y).0[0] > 150)
            .count();
        assert!(
            light > 10,
            "no text drawn in the cell ({light} light pixels)"
        );
    }
}
