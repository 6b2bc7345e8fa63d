//! A multi-label model in the window, through egui_kittest: the Viewer shows its findings as
//! independent bars with their thresholds and explains any finding with Grad-CAM; the
//! test-set review lists each finding's figures, sets a threshold by a rule, and a click on a
//! 2x2 cell lists its cases, one of which opens with what it truly shows.
use crate::app_viewer::{drop_files, harness, FixedDir};
use crate::common::step_until;
use covid_resnet::app::viewer::{Command, Mode, Truth};
use covid_resnet::data::findings::synth::write_nih_synth;
use covid_resnet::data::synth::SynthSpec;
use covid_resnet::eval::findings::{Cell, ThresholdRule};
use covid_resnet::model::io::model_file::{save_model, FindingsMeta, ModelMeta};
use covid_resnet::model::{Backbone, Classifier};
use egui_kittest::kittest::Queryable;
use std::path::{Path, PathBuf};

/// A multi-label ResNet-18 (random weights, seeded) for the findings of `data`, each at a
/// threshold of 0.5.
fn write_findings_model(dir: &Path, labels: Vec<String>) -> PathBuf {
    let p = dir.join("findings.safetensors");
    let m = Classifier::new(
        Backbone::Resnet18,
        labels.len(),
        7,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let mut meta = ModelMeta::new(Backbone::Resnet18, 32, labels.clone());
    meta.findings = Some(FindingsMeta {
        uncertain: "ignore".into(),
        thresholds: vec![0.5; labels.len()],
        thresholds_from: "typed for the test".into(),
    });
    save_model(&p, &m, &meta).unwrap();
    p
}

fn nih_labels(data: &Path) -> Vec<String> {
    let set =
        covid_resnet::data::findings::read(data, Some(covid_resnet::data::findings::Layout::Nih))
            .unwrap();
    set.labels
}

#[test]
fn a_multi_label_model_is_viewed_and_reviewed_in_the_window() {
    let dir = FixedDir::new("covid-resnet-findings-app");
    let d = dir.0.as_path();
    let data = d.join("nih");
    write_nih_synth(
        &data,
        SynthSpec {
            images: 120,
            side: 32,
            seed: 9,
        },
    )
    .unwrap();
    let labels = nih_labels(&data);
    assert_eq!(labels.len(), 14);
    let model = write_findings_model(d, labels.clone());
    let mut h = harness(&model, &data);

    // The Viewer: one bar a finding, the threshold on each, what is present.
    let image = std::fs::read_to_string(data.join("test_list.txt"))
        .unwrap()
        .lines()
        .next()
        .unwrap()
        .to_string();
    // (NIH's folders of 10,000: these few are all in the first.)
    let file = data.join("images_001").join("images").join(&image);
    drop_files(&mut h, std::slice::from_ref(&file));
    step_until(&mut h, 120, "the findings of the dropped image", |a| {
        a.viewer.model.is_some() && a.viewer.images[0].analysis().is_some() && !a.viewer.busy()
    });
    let a = h.state().viewer.images[0]
        .analysis()
        .unwrap()
        .as_ref()
        .unwrap()
        .clone();
    let present = a
        .present
        .clone()
        .expect("a multi-label analysis has decisions");
    assert_eq!((a.probs.len(), present.len()), (14, 14));
    for (p, on) in a.probs.iter().zip(&present) {
        assert!((0.0..=1.0).contains(p));
        assert_eq!(*on, *p as f64 >= 0.5);
    }
    // Independent sigmoids: as the model computes them for the plain image.
    let predictor =
        covid_resnet::infer::Predictor::load(&model, &candle_core::Device::Cpu).unwrap();
    let img = covid_resnet::data::decode::decode_file(&file).unwrap();
    let plane = predictor.preprocess().plane(&img).unwrap();
    let direct = predictor.finding_probs_planes(&[&plane]).unwrap().remove(0);
    for (x, y) in a.probs.iter().zip(&direct) {
        assert!((x - y).abs() < 1e-5, "{x} vs {y}");
    }
    assert!(h
        .query_all_by_label_contains("they do not sum to 1")
        .next()
        .is_some());
    for l in &labels {
        assert!(h.query_by_label(l).is_some(), "no bar for {l}");
    }
    // Grad-CAM explains the chosen finding (Effusion), then the most probable one again.
    let effusion = labels.iter().position(|l| l == "Effusion").unwrap();
    h.state_mut().viewer.cam_class = Some(effusion);
    step_until(&mut h, 60, "the Effusion Grad-CAM", |a| {
        !a.viewer.busy()
            && a.viewer.images[0]
                .analysis()
                .and_then(|r| r.as_ref().ok())
                .is_some_and(|x| x.cam.class == effusion)
    });
    h.snapshot("viewer_findings");

    // The test-set review of the model.
    h.state_mut().viewer.push(Command::RunTestSet);
    step_until(&mut h, 180, "the findings review", |a| {
        a.viewer.review.findings.is_some() && !a.viewer.busy()
    });
    assert_eq!(h.state().viewer.mode, Mode::Review);
    let f = h.state().viewer.review.findings.as_ref().unwrap();
    assert_eq!(f.report.n, 12);
    // The review's figures are the CLI's: eval of the same model on the same split.
    let out = std::process::Command::new(crate::common::bin())
        .args(["eval", "--batch-size", "16", "--model"])
        .arg(&model)
        .arg("--data")
        .arg(&data)
        .arg("--out")
        .arg(d)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cli = covid_resnet::eval::findings_report::FindingsReport::from_json(
        &std::fs::read(d.join("eval-findings-test.json")).unwrap(),
        Path::new("eval-findings-test.json"),
    )
    .unwrap();
    assert_eq!(cli.metrics, f.report.metrics);
    assert_eq!(cli.cases, f.report.cases);
    for l in ["AUC", "threshold", "Effusion", "Cardiomegaly", "mean AUC"] {
        assert!(h.query_all_by_label_contains(l).next().is_some(), "{l}");
    }
    // Effusion in focus, its threshold by Youden's J on these cases.
    h.get_by_label("Effusion").click();
    h.run_steps(2);
    assert_eq!(
        h.state().viewer.review.findings.as_ref().unwrap().focus,
        effusion
    );
    h.get_by_label("Youden's J").click();
    h.run_steps(2);
    let f = h.state().viewer.review.findings.as_ref().unwrap();
    let l = &f.metrics.labels[effusion];
    assert_eq!(l.rule, ThresholdRule::Youden);
    let expected = covid_resnet::eval::findings::evaluate(
        &labels,
        &f.report.outputs().cases(),
        &f.rules,
        0,
        0,
    );
    assert_eq!(l.threshold, expected.labels[effusion].threshold);
    assert_eq!(l.table, expected.labels[effusion].table);
    // The other findings keep the file's thresholds.
    assert_eq!(f.metrics.labels[0].threshold, 0.5);
    let t = &l.table;
    assert_eq!(t.tp + t.fp + t.tn + t.fn_, l.counted);
    // A click on the cell with the most cases lists them in the gallery.
    let cells = [
        (Cell::TruePositive, "TP", t.tp),
        (Cell::FalsePositive, "FP", t.fp),
        (Cell::TrueNegative, "TN", t.tn),
        (Cell::FalseNegative, "FN", t.fn_),
    ];
    let (cell, short, n) = *cells.iter().max_by_key(|c| c.2).unwrap();
    h.get_by_label(&format!("{short} {n}")).click();
    h.run_steps(2);
    let f = h.state_mut().viewer.review.findings.as_mut().unwrap();
    assert_eq!(f.cell, Some(cell));
    let listed = f.gallery().to_vec();
    assert_eq!(listed.len(), n);
    let threshold = f.metrics.labels[effusion].threshold;
    for &i in &listed {
        let c = &f.report.cases[i];
        let present = c.truth[effusion] == Some(true);
        let found = c.probs[effusion] as f64 >= threshold;
        assert_eq!(
            (present, found),
            match cell {
                Cell::TruePositive => (true, true),
                Cell::FalsePositive => (false, true),
                Cell::TrueNegative => (false, false),
                Cell::FalseNegative => (true, false),
            }
        );
    }
    let first = f.report.cases[listed[0]].clone();
    step_until(&mut h, 60, "the gallery's thumbnails", |a| !a.viewer.busy());
    h.snapshot("review_findings");
    // A click on a case opens it in the image view with what it truly shows.
    let name = first
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    h.get_by_label(&name).click();
    step_until(&mut h, 60, "the case in the image view", |a| {
        a.viewer.mode == Mode::Image && !a.viewer.busy()
    });
    let v = &h.state().viewer;
    let sel = &v.images[v.selected.unwrap()];
    assert_eq!(sel.truth, Some(Truth::Findings(first.truth.clone())));
    assert!(h
        .query_all_by_label_contains("true findings:")
        .next()
        .is_some());
}

/// The Training tab on a multi-label folder: each finding's present/absent/not-counted images
/// per split, a batch preview labelled with the findings each image shows, a refused
/// uncertain-label policy that names itself and keeps Start off, then a run whose epochs show
/// the validation mean AUC and each finding's AUC.
#[test]
fn the_training_tab_counts_findings_and_shows_each_findings_auc() {
    use covid_resnet::app::training::{PlanRow, RunState, TrainingSettings};
    use covid_resnet::app::{App, Settings};
    use covid_resnet::train::schedule::Trainable;
    use egui_kittest::kittest::NodeT;
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("nih"), dir.path().join("run"));
    let written = write_nih_synth(
        &data,
        SynthSpec {
            images: 120,
            side: 32,
            seed: 4,
        },
    )
    .unwrap();
    let training = TrainingSettings {
        data_dir: data.display().to_string(),
        run_dir: run.display().to_string(),
        backbone: Backbone::Resnet18,
        device: "cpu".into(),
        batch_size: 16,
        class_weights: true,
        plan_name: "tiny".into(),
        plan_rows: vec![PlanRow {
            size: "32".into(),
            train: Trainable::All,
            lr: "1e-3".into(),
            epochs: "2".into(),
        }],
        uncertain: "sometimes".into(),
        ..Default::default()
    };
    let mut h = egui_kittest::Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .build_ui_state(
            |ui, app: &mut App| app.frame(ui),
            App::with_settings(Settings {
                training,
                ..Default::default()
            }),
        );
    h.run_steps(2);
    // A policy that is none of ignore, zeros, ones: named, and Start stays off.
    assert!(h
        .query_all_by_label_contains("\"sometimes\"")
        .next()
        .is_some());
    assert!(h.get_by_label("Start").accesskit_node().is_disabled());
    h.state_mut().training.settings.uncertain = "ignore".into();
    // The changed options rescan the folder.
    h.run_steps(2);
    step_until(&mut h, 30, "the dataset scan", |a| {
        matches!(&a.training.dataset, Some(Ok(_)))
    });
    let d = match &h.state().training.dataset {
        Some(Ok(d)) => d.clone(),
        other => panic!("{other:?}"),
    };
    let counts = d.findings.clone().expect("a multi-label summary");
    assert_eq!(d.classes.len(), 14);
    // Every image counts once a finding in its split: present + absent + not counted.
    let test_total: usize = counts[2][0].iter().sum();
    assert_eq!(test_total, written.test);
    for split in &counts {
        let per: Vec<usize> = split.iter().map(|c| c.iter().sum()).collect();
        assert!(per.windows(2).all(|w| w[0] == w[1]), "{per:?}");
    }
    let effusion = d.classes.iter().position(|c| c == "Effusion").unwrap();
    assert!(counts[0][effusion][0] > 0 && counts[0][effusion][1] > 0);
    assert!(h
        .query_all_by_label_contains("findings (multi-label)")
        .next()
        .is_some());
    assert!(h
        .query_all_by_label_contains("present / absent / not counted")
        .next()
        .is_some());
    // A run: each epoch's mean AUC and per-finding AUC, in the table and the chart.
    // (Start is below the harness's height here: pushed as the button does.)
    assert_eq!(h.state().training.start_blocker(), None);
    h.state_mut()
        .training
        .push(covid_resnet::app::training::Command::Start);
    h.step();
    step_until(&mut h, 60, "the start of the run", |a| {
        a.training.run.state != RunState::Idle
    });
    step_until(&mut h, 600, "the end of the run", |a| {
        a.training.run.state == RunState::Idle
    });
    let r = &h.state().training.run;
    assert!(r.finished_model.is_some(), "{:#?}", r.log);
    assert_eq!(r.epochs.len(), 2);
    for m in &r.epochs {
        assert_eq!(m.label_auc.len(), 14);
        assert!(m.mean_auc.is_finite());
        assert!(m.label_auc[effusion].is_finite());
    }
    assert!(r.is_findings());
    for l in ["mean AUC", "AUC Effusion", "Validation mean AUC per epoch"] {
        assert!(h.query_all_by_label_contains(l).next().is_some(), "{l}");
    }
    // The batch preview names each image's findings.
    h.get_by_label("Batch preview").click();
    h.step();
    h.get_by_label("New batch").click();
    step_until(&mut h, 60, "the preview", |a| {
        !a.training.preview.is_empty()
    });
    let names: Vec<String> = h
        .state()
        .training
        .preview
        .iter()
        .map(|(_, l)| l.clone())
        .collect();
    assert!(
        names
            .iter()
            .all(|n| n == "no finding" || n.split(", ").all(|f| d.classes.iter().any(|c| c == f))),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n != "no finding"), "{names:?}");
    assert!(run.join("findings_report.json").is_file());
}
