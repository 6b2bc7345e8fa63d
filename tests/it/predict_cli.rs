//! `covid-resnet predict` on images the test writes: 8-bit, 16-bit, RGBA, JPEG, and a
//! corrupt file that must be named while the others are still predicted.
use crate::common::bin;
use candle_core::Device;
use covid_resnet::model::io::model_file::{save_model, ModelMeta};
use covid_resnet::model::{Backbone, Classifier};
use image::{DynamicImage, ImageBuffer, Luma, Rgba};
use std::process::Command;

#[test]
fn predict_reads_many_formats_and_names_the_bad_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let model = d.join("model.safetensors");
    let m = Classifier::new(Backbone::Resnet18, 4, 11, &Device::Cpu).unwrap();
    save_model(
        &model,
        &m,
        &ModelMeta::new(
            Backbone::Resnet18,
            64,
            covid_resnet::data::split::labels::paper_classes(),
        ),
    )
    .unwrap();

    let g8 = ImageBuffer::from_fn(80, 70, |x, y| Luma([((x * 3 + y) % 256) as u8]));
    DynamicImage::ImageLuma8(g8.clone())
        .save(d.join("gray8.png"))
        .unwrap();
    let g16 = ImageBuffer::from_fn(80, 70, |x, y| Luma([((x * 50 + y * 7) % 4096) as u16]));
    DynamicImage::ImageLuma16(g16)
        .save(d.join("gray16.png"))
        .unwrap();
    let rgba = ImageBuffer::from_fn(60, 90, |x, y| Rgba([x as u8, y as u8, 128, 200]));
    DynamicImage::ImageRgba8(rgba)
        .save(d.join("rgba.png"))
        .unwrap();
    DynamicImage::ImageLuma8(g8)
        .save(d.join("gray.jpg"))
        .unwrap();
    std::fs::write(
        d.join("corrupt.png"),
        b"\x89PNG\r\n\x1a\nthis is not really a png",
    )
    .unwrap();

    let files = [
        "gray8.png",
        "gray16.png",
        "corrupt.png",
        "rgba.png",
        "gray.jpg",
    ];
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--json", "--model"])
        .arg(&model)
        .args(files.iter().map(|f| d.join(f)))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "a bad file must give a non-zero exit"
    );
    assert!(stderr.contains("corrupt.png"), "stderr: {stderr}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let preds = doc["predictions"].as_array().unwrap();
    assert_eq!(preds.len(), 4, "{doc}");
    for p in preds {
        let probs = p["probabilities"].as_object().unwrap();
        assert_eq!(probs.keys().cloned().collect::<Vec<_>>().len(), 4);
        let sum: f64 = probs.values().map(|v| v.as_f64().unwrap()).sum();
        assert!((sum - 1.0).abs() < 1e-4, "{p}");
        assert!(probs.values().all(|v| v.as_f64().unwrap() > 0.0));
        let pred = p["predicted"].as_str().unwrap();
        let best = probs
            .iter()
            .max_by(|a, b| a.1.as_f64().partial_cmp(&b.1.as_f64()).unwrap())
            .unwrap()
            .0;
        assert_eq!(pred, best);
    }
    let errors = doc["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1);
    assert!(errors[0]["file"].as_str().unwrap().ends_with("corrupt.png"));

    // Table output, all files good: exit 0, one row per file, class header in order.
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .arg(d.join("gray8.png"))
        .arg(d.join("rgba.png"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let header = text.lines().next().unwrap();
    let order: Vec<_> = ["Normal", "Bacterial", "Viral", "COVID-19"]
        .iter()
        .map(|c| header.find(c).unwrap())
        .collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "{header}");
    assert_eq!(
        text.lines().filter(|l| l.contains(".png")).count(),
        2,
        "{text}"
    );
    assert!(text.contains("Research use only"));
}

#[test]
fn predict_with_a_bad_model_file_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("broken.safetensors");
    std::fs::write(&model, b"nope").unwrap();
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--model"])
        .arg(&model)
        .arg("x.png")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("broken.safetensors"), "{stderr}");
}

#[test]
fn version_and_info_report_build_facts() {
    let out = Command::new(bin()).arg("--version").output().unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        v.contains(env!("CARGO_PKG_VERSION")) && v.contains("commit") && v.contains("cpu"),
        "{v}"
    );
    let out = Command::new(bin())
        .args(["--device", "cpu", "info"])
        .output()
        .unwrap();
    let v = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && v.contains("backends compiled in: cpu") && v.contains("CPU"),
        "{v}"
    );
}

#[test]
fn a_closed_pipe_ends_quietly_with_status_zero() {
    // `covid-resnet data inspect ... | head -0`: the reader is gone before the first line.
    let samples = covid_resnet::model::io::shipped::samples_dir()
        .unwrap()
        .join("test");
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(&samples)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let mut child = std::process::Command::new(crate::common::bin())
        .args(["data", "inspect"])
        .args(&files)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {err}", out.status);
    assert!(
        !err.contains("panicked") && !err.contains("Broken pipe"),
        "{err}"
    );
}
