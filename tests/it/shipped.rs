//! The model that ships in `weights/`: `predict` and `eval` use it without `--model` and say
//! so; the Viewer loads it on first launch, says what it is and what it scored, and answers on
//! the sample radiographs of `assets/samples`.
use crate::common::{bin, step_until};
use covid_resnet::app::viewer::ImageState;
use covid_resnet::app::{App, Settings, Tab};
use covid_resnet::model::io::model_file::read_meta;
use covid_resnet::model::io::shipped;
use egui_kittest::kittest::Queryable;
use egui_kittest::Harness;
use std::path::PathBuf;
use std::process::Command;

fn shipped_model() -> PathBuf {
    shipped::model_path().expect("weights/default-covidx-v1.safetensors ships with the checkout")
}

fn samples() -> Vec<PathBuf> {
    let dir = shipped::samples_dir().expect("assets/samples ships with the checkout");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir.join("test"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn the_shipped_model_knows_the_paper_classes_and_records_its_test_score() {
    let meta = read_meta(&shipped_model()).unwrap();
    assert_eq!(
        meta.class_names,
        ["Normal", "Bacterial", "Viral", "COVID-19"]
    );
    let line = shipped::score_line(&meta).expect("the training summary records the test figures");
    assert!(line.contains("on 637 images"), "{line}");
}

#[test]
fn predict_and_eval_without_model_use_the_shipped_one_and_say_so() {
    let files = samples();
    assert!(files.len() >= 4, "{files:?}");
    let o = Command::new(bin())
        .args(["--device", "cpu", "predict", "--json"])
        .args(&files)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no --model: using the shipped model"), "{err}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let text = v.to_string();
    for f in &files {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert!(text.contains(&name), "{name} has no prediction");
    }

    let out = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["--device", "cpu", "eval", "--data"])
        .arg(shipped::samples_dir().unwrap())
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{err}");
    assert!(err.contains("no --model: using the shipped model"), "{err}");
    assert!(out.path().join("eval-test.json").is_file());
}

#[test]
fn the_viewer_answers_with_the_shipped_model_on_first_launch() {
    // A first launch: no model chosen, the Viewer shown.
    let mut s = Settings {
        tab: Tab::Viewer,
        ..Default::default()
    };
    s.training.device = "cpu".into();
    let mut h = Harness::builder()
        .with_size(egui::vec2(1400.0, 900.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s));
    step_until(&mut h, 120, "the shipped model", |a| {
        a.viewer.model.is_some()
    });
    assert!(shipped::is_shipped(
        &h.state().viewer.model.as_ref().unwrap().path
    ));
    h.run_steps(2);
    assert!(h
        .query_all_by_label_contains("test accuracy")
        .next()
        .is_some());
    h.get_by_label("Open samples").click();
    step_until(&mut h, 300, "predictions for the samples", |a| {
        !a.viewer.images.is_empty()
            && a.viewer.images.iter().all(|i| match &i.state {
                ImageState::Ready(_) => i.analysis().is_some(),
                _ => false,
            })
    });
    let n = samples().len();
    assert_eq!(h.state().viewer.images.len(), n);
    for i in &h.state().viewer.images {
        let a = i.analysis().unwrap().as_ref().unwrap();
        assert_eq!(a.probs.len(), 4);
        assert!((a.probs.iter().sum::<f32>() - 1.0).abs() < 1e-4);
    }
}

#[test]
fn the_model_card_quotes_the_same_intervals_as_eval_and_the_review() {
    // One figure, one interval: the test figures recorded in the shipped model equal what
    // `eval` (and the Viewer's review, which runs the same evaluation with the same defaults)
    // computes on COVIDx v1's test split. Before: 75.2-81.6 in the model card, 74.2-82.3 in
    // the review.
    let Some(shared) = crate::common::shared_dir() else {
        return;
    };
    let data = shared.join("data/covidx-v1");
    assert!(
        data.join("test_COVIDx_v1.txt").is_file() || data.is_dir(),
        "no COVIDx v1 in {}",
        data.display()
    );
    let out = tempfile::tempdir().unwrap();
    let o = Command::new(bin())
        .args(["--device", "cpu", "eval", "--data"])
        .arg(&data)
        .arg("--out")
        .arg(out.path())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let r: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("eval-test.json")).unwrap()).unwrap();
    let meta = read_meta(&shipped_model()).unwrap();
    let t = &meta.training.unwrap()["test"];
    for key in ["value", "lo", "hi"] {
        for (card, eval) in [
            (&t["accuracy"], &r["metrics"]["accuracy"]),
            (&t["macro_f1"], &r["metrics"]["macro_f1"]),
        ] {
            let (a, b) = (card[key].as_f64().unwrap(), eval[key].as_f64().unwrap());
            assert!((a - b).abs() < 1e-12, "{key}: card {a}, eval {b}");
        }
    }
}
