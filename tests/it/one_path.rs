//! One preprocessing: a 16-bit radiograph gets bit-identical probabilities in the Viewer's
//! image mode, in the Viewer's test-set review, from `predict --json` and from `eval`, with
//! a model file whose normalisation is not ImageNet's (the file's statistics must win).
use crate::common::{bin, step_until};
use candle_core::Device;
use covid_resnet::app::viewer::{ImageState, Mode};
use covid_resnet::app::{App, Settings, Tab};
use covid_resnet::eval::report::EvalReport;
use covid_resnet::model::io::model_file::{save_model, ModelMeta};
use covid_resnet::model::{Backbone, Classifier};
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use image::{ImageBuffer, Luma};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A 16-bit film whose values use the whole range (no two neighbouring 8-bit levels share
/// the same 16-bit value pattern): 8-bit quantisation would change its input.
fn film16(w: u32, h: u32, seed: u32) -> ImageBuffer<Luma<u16>, Vec<u16>> {
    ImageBuffer::from_fn(w, h, |x, y| {
        let lung = (x > w / 8 && x < 3 * w / 8) || (x > 5 * w / 8 && x < 7 * w / 8);
        let base: u32 = if lung && y > h / 6 && y < 4 * h / 5 {
            15_000
        } else {
            45_000
        };
        Luma([(base + (x * 977 + y * 613 + seed * 7919) % 9_000) as u16])
    })
}

/// A class-folder dataset whose test split holds `target` among a few other images.
fn dataset(root: &Path) -> PathBuf {
    for (split, n) in [("train", 4u32), ("test", 5)] {
        for (c, class) in ["normal", "covid"].iter().enumerate() {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            for i in 0..n {
                film16(70 + 3 * i, 64, c as u32 * 10 + i)
                    .save(d.join(format!("{split}_{class}_{i}.png")))
                    .unwrap();
            }
        }
    }
    root.join("test").join("covid").join("test_covid_2.png")
}

fn model(dir: &Path) -> PathBuf {
    let p = dir.join("model.safetensors");
    let m = Classifier::new(Backbone::Resnet18, 4, 11, &Device::Cpu).unwrap();
    let mut meta = ModelMeta::new(
        Backbone::Resnet18,
        48,
        covid_resnet::data::split::labels::paper_classes(),
    );
    meta.mean = [0.5, 0.45, 0.4];
    meta.std = [0.3, 0.25, 0.2];
    save_model(&p, &m, &meta).unwrap();
    p
}

fn probs_of_json(v: &serde_json::Value, classes: &[String]) -> Vec<f32> {
    classes
        .iter()
        .map(|c| v[c].as_f64().unwrap() as f32)
        .collect()
}

#[test]
fn a_16_bit_image_gets_the_same_probabilities_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let target = dataset(&data);
    let model = model(dir.path());
    let classes: Vec<String> = covid_resnet::data::split::labels::PAPER_CLASSES
        .iter()
        .map(|s| s.to_string())
        .collect();

    // 1. The Viewer's image mode.
    let mut s = Settings {
        tab: Tab::Viewer,
        ..Default::default()
    };
    s.viewer.model = model.display().to_string();
    s.training.device = "cpu".into();
    s.training.data_dir = data.display().to_string();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1280.0, 800.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s));
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    let ctx = h.ctx.clone();
    h.state_mut().viewer.open_paths(&ctx, vec![target.clone()]);
    step_until(&mut h, 60, "the prediction", |a| {
        a.viewer.images.iter().all(|i| i.analysis().is_some()) && !a.viewer.busy()
    });
    let viewer = match &h.state().viewer.images[0].state {
        ImageState::Ready(l) => l
            .analysis
            .as_ref()
            .unwrap()
            .1
            .as_ref()
            .unwrap()
            .probs
            .clone(),
        _ => panic!("the image did not open"),
    };

    // 2. The Viewer's test-set review (batches of several images).
    h.get_by_label("Run test set").click();
    step_until(&mut h, 120, "the test-set run", |a| {
        a.viewer.review.running.is_none() && a.viewer.review.report.is_some()
    });
    assert_eq!(h.state().viewer.mode, Mode::Review);
    let review = h
        .state()
        .viewer
        .review
        .report
        .as_ref()
        .unwrap()
        .cases
        .iter()
        .find(|c| Path::new(&c.file) == target)
        .expect("the review has the image")
        .probs
        .clone();

    // 3. predict --json.
    let out = Command::new(bin())
        .args(["--device", "cpu", "predict", "--json", "--model"])
        .arg(&model)
        .arg(&target)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let predict = probs_of_json(&doc["predictions"][0]["probabilities"], &classes);

    // 4. eval.
    let out = Command::new(bin())
        .args(["--device", "cpu", "eval", "--bootstrap", "0", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(dir.path().join("eval"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = EvalReport::load(&dir.path().join("eval").join("eval-test.json")).unwrap();
    let eval = report
        .cases
        .iter()
        .find(|c| Path::new(&c.file) == target)
        .unwrap()
        .probs
        .clone();

    assert_eq!(viewer, review, "image mode vs test-set review");
    assert_eq!(viewer, predict, "image mode vs predict");
    assert_eq!(viewer, eval, "image mode vs eval");
    assert!((viewer.iter().sum::<f32>() - 1.0).abs() < 1e-5);
    // The model file's normalisation is what was used: with ImageNet's the answer differs.
    let p = covid_resnet::infer::Predictor::load(&model, &Device::Cpu).unwrap();
    let mut imagenet = p.meta().clone();
    imagenet.mean = covid_resnet::IMAGENET_MEAN;
    imagenet.std = covid_resnet::IMAGENET_STD;
    let other = covid_resnet::infer::Predictor::new(p.model().clone(), imagenet);
    let img = covid_resnet::data::decode::decode_file(&target).unwrap();
    assert_eq!(img.bit_depth, 16);
    assert_ne!(other.predict_images(&[&img]).unwrap()[0], viewer);
}
