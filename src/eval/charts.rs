//! The review's charts as PNGs beside `confusion.png`: ROC curves of every class (the band
//! of the class of interest and its operating point marked), the reliability diagram with
//! its bins' counts, and the class of interest's probability histogram per true class.
use super::plot::{centered, draw_text, font};
use super::report::EvalReport;
use super::scores::Scores;
use crate::files::write_atomic;
use crate::{Error, Result};
use image::{Rgb, RgbImage};
use std::path::{Path, PathBuf};

/// Colours of classes in charts (the window uses the same).
pub const PALETTE: [[u8; 3]; 8] = [
    [31, 119, 180],
    [255, 127, 14],
    [44, 160, 44],
    [214, 39, 40],
    [148, 103, 189],
    [140, 86, 75],
    [227, 119, 194],
    [127, 127, 127],
];

/// The colour of class `c`.
pub fn colour(c: usize) -> [u8; 3] {
    PALETTE[c % PALETTE.len()]
}

const DARK: [u8; 3] = [20, 20, 20];
const GREY: [u8; 3] = [200, 200, 200];

/// A plotting area in an image: data [0, 1] × [0, 1] mapped to a pixel rectangle.
struct Frame {
    x0: f64,
    y0: f64,
    w: f64,
    h: f64,
}

impl Frame {
    fn px(&self, x: f64, y: f64) -> (f64, f64) {
        (self.x0 + x * self.w, self.y0 + (1.0 - y) * self.h)
    }
}

fn blend(img: &mut RgbImage, x: i64, y: i64, rgb: [u8; 3], a: f64) {
    if x < 0 || y < 0 || x >= img.width() as i64 || y >= img.height() as i64 {
        return;
    }
    let p = img.get_pixel_mut(x as u32, y as u32);
    for (c, &ink) in p.0.iter_mut().zip(&rgb) {
        *c = (*c as f64 * (1.0 - a) + ink as f64 * a).round() as u8;
    }
}

/// A line `width` pixels wide from (ax, ay) to (bx, by) in pixel coordinates.
fn line(img: &mut RgbImage, a: (f64, f64), b: (f64, f64), rgb: [u8; 3], width: f64) {
    let len = ((b.0 - a.0).powi(2) + (b.1 - a.1).powi(2)).sqrt();
    let steps = (len * 2.0).ceil().max(1.0) as usize;
    let r = width / 2.0;
    for s in 0..=steps {
        let t = s as f64 / steps as f64;
        let (x, y) = (a.0 + t * (b.0 - a.0), a.1 + t * (b.1 - a.1));
        for dx in -(r.ceil() as i64)..=(r.ceil() as i64) {
            for dy in -(r.ceil() as i64)..=(r.ceil() as i64) {
                let d = ((dx * dx + dy * dy) as f64).sqrt();
                if d <= r {
                    blend(img, x.round() as i64 + dx, y.round() as i64 + dy, rgb, 1.0);
                }
            }
        }
    }
}

fn rect(img: &mut RgbImage, x0: f64, y0: f64, x1: f64, y1: f64, rgb: [u8; 3], a: f64) {
    for y in y0.min(y1).round() as i64..y0.max(y1).round() as i64 {
        for x in x0.min(x1).round() as i64..x0.max(x1).round() as i64 {
            blend(img, x, y, rgb, a);
        }
    }
}

/// Axes with ticks at 0, 0.2, …, 1 and their labels.
fn axes(img: &mut RgbImage, f: &Frame, xlabel: &str, ylabel: &str) {
    let font = font();
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        let (x, _) = f.px(v, 0.0);
        let (_, y) = f.px(0.0, v);
        line(img, (x, f.y0), (x, f.y0 + f.h), GREY, 1.0);
        line(img, (f.x0, y), (f.x0 + f.w, y), GREY, 1.0);
        let t = format!("{v:.1}");
        centered(
            img,
            &font,
            14.0,
            x as f32,
            (f.y0 + f.h + 18.0) as f32,
            &t,
            DARK,
        );
        draw_text(
            img,
            &font,
            14.0,
            (f.x0 - 32.0) as f32,
            (y + 5.0) as f32,
            &t,
            DARK,
        );
    }
    line(img, (f.x0, f.y0 + f.h), (f.x0 + f.w, f.y0 + f.h), DARK, 1.5);
    line(img, (f.x0, f.y0), (f.x0, f.y0 + f.h), DARK, 1.5);
    centered(
        img,
        &font,
        15.0,
        (f.x0 + f.w / 2.0) as f32,
        (f.y0 + f.h + 40.0) as f32,
        xlabel,
        DARK,
    );
    draw_text(img, &font, 15.0, 8.0, (f.y0 - 12.0) as f32, ylabel, DARK);
}

fn canvas(title: &str) -> (RgbImage, Frame) {
    let mut img = RgbImage::from_pixel(720, 640, Rgb([255, 255, 255]));
    draw_text(&mut img, &font(), 18.0, 10.0, 26.0, title, DARK);
    let f = Frame {
        x0: 70.0,
        y0: 70.0,
        w: 420.0,
        h: 480.0,
    };
    (img, f)
}

fn legend(img: &mut RgbImage, rows: &[(String, [u8; 3])]) {
    let font = font();
    for (i, (text, rgb)) in rows.iter().enumerate() {
        let y = 90.0 + 24.0 * i as f64;
        line(img, (505.0, y - 5.0), (530.0, y - 5.0), *rgb, 3.0);
        draw_text(img, &font, 14.0, 536.0, y as f32, text, DARK);
    }
}

/// ROC curves of every class; the band and the operating point of `focus`.
pub fn roc_image(s: &Scores, focus: usize, title: &str) -> RgbImage {
    let (mut img, f) = canvas(title);
    if let Some(r) = s.roc.get(focus) {
        let c = colour(focus);
        let lighter = c.map(|v| v / 2 + 127);
        for w in r.band.windows(2) {
            let (xa, lo) = f.px(w[0][0], w[0][1]);
            let (xb, hi) = f.px(w[1][0], w[1][2]);
            if lo.is_finite() && hi.is_finite() {
                rect(&mut img, xa, hi, xb, lo, lighter, 0.35);
            }
        }
    }
    axes(
        &mut img,
        &f,
        "1 − specificity (false positive rate)",
        "sensitivity",
    );
    line(&mut img, f.px(0.0, 0.0), f.px(1.0, 1.0), GREY, 1.0);
    let mut rows = Vec::new();
    for (c, r) in s.roc.iter().enumerate() {
        let pts: Vec<(f64, f64)> = r
            .curve
            .fpr
            .iter()
            .zip(&r.curve.tpr)
            .map(|(&x, &y)| f.px(x, y))
            .collect();
        let width = if c == focus { 3.0 } else { 2.0 };
        for w in pts.windows(2) {
            line(&mut img, w[0], w[1], colour(c), width);
        }
        rows.push((
            format!("{} AUC {}", r.class, crate::fmt::pct(r.auc.value, 1)),
            colour(c),
        ));
    }
    if let Some(op) = &s.operating {
        let b = &op.binary;
        let (x, y) = f.px(1.0 - b.specificity.value, b.sensitivity.value);
        if x.is_finite() && y.is_finite() {
            rect(&mut img, x - 6.0, y - 6.0, x + 6.0, y + 6.0, DARK, 1.0);
            rect(
                &mut img,
                x - 4.0,
                y - 4.0,
                x + 4.0,
                y + 4.0,
                colour(op.point.class),
                1.0,
            );
            rows.push((
                format!("p ≥ {}", crate::fmt::number(op.point.threshold)),
                DARK,
            ));
        }
    }
    legend(&mut img, &rows);
    img
}

/// The reliability diagram: accuracy per confidence bin against the diagonal, counts
/// written above the bars.
pub fn reliability_image(s: &Scores, title: &str) -> RgbImage {
    let (mut img, f) = canvas(title);
    axes(&mut img, &f, "confidence (top probability)", "accuracy");
    let font = font();
    for b in &s.reliability {
        if b.count == 0 {
            continue;
        }
        let (xa, y) = f.px(b.lo, b.accuracy);
        let (xb, base) = f.px(b.hi.min(1.0), 0.0);
        rect(&mut img, xa + 1.0, y, xb - 1.0, base, colour(0), 0.8);
        let (cx, cy) = f.px((b.lo + b.hi) / 2.0, b.confidence);
        rect(
            &mut img,
            cx - 3.0,
            cy - 3.0,
            cx + 3.0,
            cy + 3.0,
            colour(3),
            1.0,
        );
        centered(
            &mut img,
            &font,
            12.0,
            ((xa + xb) / 2.0) as f32,
            (y - 4.0) as f32,
            &b.count.to_string(),
            DARK,
        );
    }
    line(&mut img, f.px(0.0, 0.0), f.px(1.0, 1.0), GREY, 1.5);
    legend(
        &mut img,
        &[
            ("accuracy of the bin".into(), colour(0)),
            ("mean confidence".into(), colour(3)),
            (format!("ECE {}", crate::fmt::pct(s.ece.value, 2)), DARK),
            (format!("Brier {:.4}", s.brier.value), DARK),
        ],
    );
    img
}

/// Bins of the probability histogram.
pub const HISTOGRAM_BINS: usize = 20;

/// How many images of true class `t` have p(`focus`) in each of [`HISTOGRAM_BINS`]
/// equal-width bins (the last one closed).
pub fn histogram(r: &EvalReport, focus: usize, t: usize) -> [usize; HISTOGRAM_BINS] {
    let mut h = [0usize; HISTOGRAM_BINS];
    for c in r.cases.iter().filter(|c| c.actual == t) {
        let p = c.probs.get(focus).copied().unwrap_or(0.0) as f64;
        h[((p * HISTOGRAM_BINS as f64) as usize).min(HISTOGRAM_BINS - 1)] += 1;
    }
    h
}

/// Histograms of p(`focus`) for each true class, one row each, the threshold marked.
pub fn histogram_image(r: &EvalReport, focus: usize, title: &str) -> RgbImage {
    let k = r.classes.len();
    let row_h = 110u32;
    let mut img = RgbImage::from_pixel(720, 90 + row_h * k as u32, Rgb([255, 255, 255]));
    let font = font();
    draw_text(&mut img, &font, 18.0, 10.0, 26.0, title, DARK);
    const BINS: usize = HISTOGRAM_BINS;
    for t in 0..k {
        let h = histogram(r, focus, t);
        // Square-root heights, so that a few cases beside hundreds stay visible.
        let max = (h.iter().copied().max().unwrap_or(0).max(1) as f64).sqrt();
        let (x0, y0, w, hh) = (160.0, 50.0 + (row_h * t as u32) as f64, 500.0, 90.0);
        draw_text(
            &mut img,
            &font,
            15.0,
            10.0,
            (y0 + hh / 2.0) as f32,
            &format!("true {} (n={})", r.classes[t], h.iter().sum::<usize>()),
            DARK,
        );
        for (i, &n) in h.iter().enumerate() {
            let xa = x0 + w * i as f64 / BINS as f64;
            let bar = hh * n as f64 / max;
            rect(
                &mut img,
                xa + 1.0,
                y0 + hh - bar,
                xa + w / BINS as f64 - 1.0,
                y0 + hh,
                colour(t),
                0.85,
            );
        }
        line(&mut img, (x0, y0 + hh), (x0 + w, y0 + hh), DARK, 1.0);
        if let Some(op) = r.operating_point.filter(|o| o.class == focus) {
            let x = x0 + w * op.threshold;
            line(&mut img, (x, y0), (x, y0 + hh), DARK, 2.0);
        }
    }
    let y = 60.0 + (row_h * k as u32) as f64;
    for i in 0..=5 {
        let v = i as f64 / 5.0;
        centered(
            &mut img,
            &font,
            13.0,
            (160.0 + 500.0 * v) as f32,
            y as f32,
            &format!("{v:.1}"),
            DARK,
        );
    }
    centered(
        &mut img,
        &font,
        14.0,
        410.0,
        (y + 20.0) as f32,
        &format!(
            "p({})",
            r.classes.get(focus).map(String::as_str).unwrap_or("?")
        ),
        DARK,
    );
    img
}

fn png(path: &Path, img: &RgbImage) -> Result<()> {
    let mut bytes = Vec::new();
    img.write_to(
        &mut std::io::Cursor::new(&mut bytes),
        image::ImageFormat::Png,
    )
    .map_err(|e| Error::invalid("png", format!("{}: {e}", crate::files::shown(path))))?;
    write_atomic(path, &bytes)
}

/// Writes `<stem>-roc.png`, `<stem>-reliability.png` and `<stem>-histogram.png` into `dir`
/// for class of interest `focus`; returns their paths (none without scores).
pub fn write_charts(r: &EvalReport, dir: &Path, stem: &str, focus: usize) -> Result<Vec<PathBuf>> {
    let Some(s) = &r.scores else {
        return Ok(Vec::new());
    };
    let title = r.title();
    let paths: Vec<PathBuf> = ["roc", "reliability", "histogram"]
        .iter()
        .map(|n| dir.join(format!("{stem}-{n}.png")))
        .collect();
    png(
        &paths[0],
        &roc_image(s, focus, &format!("ROC, one vs rest: {title}")),
    )?;
    png(
        &paths[1],
        &reliability_image(s, &format!("Reliability: {title}")),
    )?;
    png(
        &paths[2],
        &histogram_image(r, focus, &format!("Probability by true class: {title}")),
    )?;
    Ok(paths)
}
