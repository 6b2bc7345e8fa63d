//! What the Viewer shows, without the UI: Grad-CAM maps, TTA, input warnings (also on
//! COVIDx v1), `predict --gradcam`, and the exported confusion-matrix PNG.
use crate::common::{bin, shared_dir};
use candle_core::Device;
use covid_resnet::data::split::Dataset;
use covid_resnet::data::{decode::decode_file, gray::GrayImage};
use covid_resnet::infer::sanity::{check, polarity_contrast};
use covid_resnet::infer::{InputWarning, Predictor};
use covid_resnet::model::io::model_file::{save_model, ModelMeta};
use covid_resnet::model::{Backbone, Classifier};
use image::{DynamicImage, ImageBuffer, Luma, Rgb};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A synthetic frontal film: dark lungs beside a bright mediastinum, with texture.
pub fn film(w: u32, h: u32, seed: u32) -> image::GrayImage {
    ImageBuffer::from_fn(w, h, |x, y| {
        let (fx, fy) = (x as f32 / w as f32, y as f32 / h as f32);
        let lung = ((0.12..0.42).contains(&fx) || (0.58..0.88).contains(&fx))
            && (0.15..0.75).contains(&fy);
        let base = if lung { 50.0 } else { 170.0 };
        let t = ((x * 7 + y * 13 + seed * 31) % 23) as f32;
        // A brighter patch in the right lung that differs between seeds.
        let patch = if (fx - 0.7).powi(2) + (fy - 0.4 - 0.05 * (seed % 3) as f32).powi(2) < 0.01 {
            60.0
        } else {
            0.0
        };
        Luma([(base + 2.0 * t + patch).clamp(0.0, 255.0) as u8])
    })
}

/// A randomly initialised ResNet-18 classifier file at `size` px.
pub fn write_model(dir: &Path, size: u32) -> PathBuf {
    let p = dir.join("model.safetensors");
    let m = Classifier::new(Backbone::Resnet18, 4, 5, &Device::Cpu).unwrap();
    save_model(
        &p,
        &m,
        &ModelMeta::new(
            Backbone::Resnet18,
            size,
            covid_resnet::data::split::labels::paper_classes(),
        ),
    )
    .unwrap();
    p
}

#[test]
fn grad_cam_has_the_image_size_and_is_not_constant() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), 64);
    let p = Predictor::load(&model, &Device::Cpu).unwrap();
    let f = dir.path().join("film.png");
    film(90, 70, 1).save(&f).unwrap();
    let img = decode_file(&f).unwrap();
    let a = p.analyze(&img, false, None).unwrap();
    let cam = a.cam.upsample(img.width, img.height);
    assert_eq!((cam.width, cam.height), (90, 70));
    assert_eq!(cam.data.len(), 90 * 70);
    assert_eq!((a.cam.class, cam.class), (a.predicted, a.predicted));
    let (lo, hi) = cam
        .data
        .iter()
        .fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(a.cam.peak() > 0.0, "no positive evidence at all");
    assert!(
        (0.0..=1.0).contains(&lo) && hi <= 1.0 && hi - lo > 0.1,
        "{lo}..{hi}"
    );
    // Plain probabilities are the predictor's, and sum to one.
    let plain = p.predict_images(&[&img]).unwrap().remove(0);
    for (x, y) in plain.iter().zip(&a.probs) {
        assert!((x - y).abs() < 1e-5, "{plain:?} vs {:?}", a.probs);
    }
    assert!((a.probs.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    // Another class gives another map.
    let other = (a.predicted + 1) % 4;
    let b = p.analyze(&img, false, Some(other)).unwrap();
    assert_eq!(b.cam.class, other);
    assert_ne!(a.cam.map, b.cam.map);
}

#[test]
fn tta_averages_the_image_and_its_mirror() {
    let dir = tempfile::tempdir().unwrap();
    let model = write_model(dir.path(), 64);
    let p = Predictor::load(&model, &Device::Cpu).unwrap();
    let f = dir.path().join("film.png");
    film(80, 80, 2).save(&f).unwrap();
    let img = decode_file(&f).unwrap();
    // The model file has no training record: TTA uses the left-right mirror.
    let mut mirror = img.clone();
    for row in mirror.data.chunks_mut(80) {
        row.reverse();
    }
    let a = p.predict_images(&[&img]).unwrap().remove(0);
    let b = p.predict_images(&[&mirror]).unwrap().remove(0);
    let t = p.analyze(&img, true, None).unwrap();
    assert!(t.tta);
    for c in 0..4 {
        assert!((t.probs[c] - 0.5 * (a[c] + b[c])).abs() < 1e-5);
    }
    let batch = p.predict_images_tta(&[&img], true).unwrap().remove(0);
    for (b, t) in batch.iter().zip(&t.probs) {
        assert!((b - t).abs() < 1e-5);
    }
}

#[test]
fn predict_writes_grad_cam_pngs_and_prints_warnings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = write_model(d, 64);
    film(120, 100, 3).save(d.join("chest.png")).unwrap();
    // A negative of the same film: must be flagged as inverted.
    let mut neg = film(120, 100, 3);
    neg.pixels_mut().for_each(|p| p.0[0] = 255 - p.0[0]);
    neg.save(d.join("negative.png")).unwrap();
    // A colour photo-like image.
    let rgb = ImageBuffer::from_fn(120, 100, |x, y| Rgb([x as u8 * 2, y as u8, 200]));
    DynamicImage::ImageRgb8(rgb)
        .save(d.join("photo.png"))
        .unwrap();
    let out_dir = d.join("cams");
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--json", "--tta", "--model"])
        .arg(&model)
        .arg("--gradcam")
        .arg(&out_dir)
        .args(["chest.png", "negative.png", "photo.png"].map(|f| d.join(f)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["tta"], true);
    let preds = doc["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 3);
    let warnings = |i: usize| -> Vec<String> {
        preds[i]["warnings"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w.as_str().unwrap().to_string())
            .collect()
    };
    assert!(warnings(0).is_empty(), "{:?}", warnings(0));
    assert!(
        warnings(1).iter().any(|w| w.contains("inverted")),
        "{:?}",
        warnings(1)
    );
    assert!(
        warnings(2).iter().any(|w| w.contains("colour")),
        "{:?}",
        warnings(2)
    );
    for (i, name) in ["chest", "negative", "photo"].iter().enumerate() {
        let png = out_dir.join(format!("{name}.gradcam.png"));
        assert_eq!(preds[i]["gradcam"].as_str().unwrap(), png.to_str().unwrap());
        let img = image::open(&png).unwrap().to_rgb8();
        assert_eq!(img.dimensions(), (120, 100), "{}", png.display());
        // Coloured (the overlay), not gray.
        assert!(img.pixels().any(|p| p.0[0] != p.0[2]));
    }

    // The table output names the warning and the overlay too.
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .arg("--gradcam")
        .arg(&out_dir)
        .args(["--cam-class", "COVID-19"])
        .arg(d.join("negative.png"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("warning: polarity looks inverted"),
        "{stdout}"
    );
    assert!(stdout.contains("negative.gradcam.png"), "{stdout}");

    // A wrong class name is refused with the choices.
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .arg("--gradcam")
        .arg(&out_dir)
        .args(["--cam-class", "Flu"])
        .arg(d.join("chest.png"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("\"Flu\"") && stderr.contains("COVID-19"),
        "{stderr}"
    );
}

/// The polarity rule on the real COVIDx v1 test split: no original is flagged, every
/// negative is (the thresholds' justification, assets/docs/viewer.md).
#[test]
fn polarity_rule_on_covidx_test_split() {
    let Some(shared) = shared_dir() else { return };
    let root = shared.join("data/covidx-v1");
    let ds = Dataset::open(&root).unwrap_or_else(|e| panic!("{}: {e}", root.display()));
    assert_eq!(ds.test.samples.len(), 637);
    let mut flagged = Vec::new();
    let mut neg_missed = Vec::new();
    let mut min_contrast = f32::MAX;
    for s in &ds.test.samples {
        let img = decode_file(&s.path).unwrap();
        let c = polarity_contrast(&img);
        min_contrast = min_contrast.min(c);
        if !check(&img, 224).is_empty() {
            flagged.push(s.path.display().to_string());
        }
        let neg = GrayImage {
            data: img.data.iter().map(|v| 1.0 - v).collect(),
            ..img.clone()
        };
        if !check(&neg, 224)
            .iter()
            .any(|w| matches!(w, InputWarning::InvertedPolarity { .. }))
        {
            neg_missed.push(s.path.display().to_string());
        }
    }
    eprintln!("COVIDx test: smallest mediastinum-lung contrast {min_contrast:.3}");
    assert!(flagged.is_empty(), "originals with warnings: {flagged:?}");
    assert!(
        neg_missed.is_empty(),
        "negatives not flagged: {neg_missed:?}"
    );
}
