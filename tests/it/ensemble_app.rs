//! Ensembles in the window: the review of an ensemble's report (gallery by disagreement, the
//! chart) and the Training tab training several networks as one.
use crate::ensemble::{member, CLASSES};
use crate::training::write_synthetic_images;
use covid_resnet::model::Backbone;

/// The review of an ensemble's report: the gallery orders by disagreement and keeps only the
/// disputed images when asked, and the chart of accuracy against disagreement is shown.
#[test]
fn the_review_sorts_and_filters_by_disagreement_and_charts_it() {
    use crate::app_viewer::{harness, FixedDir};
    use crate::common::step_until;
    use covid_resnet::app::viewer::Mode;
    use covid_resnet::eval::report::{Case, EvalReport};
    use covid_resnet::infer::disagreement::Disagreement;
    use egui_kittest::kittest::Queryable;
    let dir = FixedDir::new("covid-resnet-ensemble-review");
    let d = dir.0.as_path();
    let model = member(d, "a.safetensors", 1, &CLASSES);
    let mut cases = Vec::new();
    for i in 0..40usize {
        let f = d.join(format!("case_{i:02}.png"));
        image::GrayImage::from_fn(48, 48, |x, y| {
            image::Luma([((x + y + i as u32) % 256) as u8])
        })
        .save(&f)
        .unwrap();
        // The first ten are Normal called COVID-19; spread rises with i, loss falls.
        let (actual, predicted) = if i < 10 { (0, 3) } else { (i % 4, i % 4) };
        let mut probs = vec![0.1f32; 4];
        probs[predicted] = 0.7;
        cases.push(Case {
            file: f.display().to_string(),
            file_bytes: None,
            actual,
            predicted,
            probs,
            loss: 5.0 - 0.1 * i as f64,
            source: None,
            patient: None,
            disagreement: Some(Disagreement {
                spread: 0.01 * i as f32,
                agree: if i % 3 == 0 { 3 } else { 2 },
                members: 3,
            }),
        });
    }
    let classes: Vec<String> = CLASSES.iter().map(|c| c.to_string()).collect();
    let report = EvalReport::from_cases(classes, cases, 50, 0);
    assert!(report.disagreement.is_some());
    let json = report.write_all(&d.join("eval"), "eval-test").unwrap()[0].clone();
    let mut h = harness(&model, d);
    step_until(&mut h, 60, "the model", |a| a.viewer.model.is_some());
    h.state_mut().viewer.review.open_report(&json).unwrap();
    h.state_mut().viewer.mode = Mode::Review;
    h.run_steps(3);
    h.get_by_label("actual Normal predicted COVID-19").click();
    h.run_steps(3);
    let listed = |h: &egui_kittest::Harness<'static, covid_resnet::app::App>| -> Vec<String> {
        h.state()
            .viewer
            .review
            .gallery()
            .iter()
            .map(|c| {
                std::path::Path::new(&c.file)
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    };
    // Highest loss first: case_00 first.
    assert_eq!(listed(&h)[0], "case_00.png");
    h.get_by_label("most disagreement first").click();
    h.run_steps(2);
    assert_eq!(listed(&h)[0], "case_09.png", "{:?}", listed(&h));
    h.get_by_label("only images the networks do not all agree on")
        .click();
    h.run_steps(2);
    // Cases 0, 3, 6 and 9 have every network agreeing: gone.
    assert_eq!(
        listed(&h),
        [
            "case_08.png",
            "case_07.png",
            "case_05.png",
            "case_04.png",
            "case_02.png",
            "case_01.png"
        ]
    );
    assert!(h
        .query_all_by_label_contains("Accuracy against the networks' disagreement")
        .next()
        .is_some());
    assert!(h
        .query_all_by_label_contains("2 of 3 networks agree")
        .next()
        .is_some());
    step_until(&mut h, 30, "the gallery thumbnails", |a| !a.viewer.busy());
    h.run_steps(3);
    h.snapshot("viewer_review_ensemble");
    // The chart, scrolled into view.
    h.query_all_by_label_contains("Accuracy against the networks' disagreement")
        .next()
        .unwrap()
        .scroll_to_me();
    h.run_steps(4);
    h.snapshot("viewer_review_ensemble_chart");
}

/// The Training tab trains an ensemble: each network's run in its own folder, the curves of
/// the networks done beside the current one, the ensemble file at the end.
#[test]
fn the_training_tab_trains_several_networks_as_one_and_shows_their_curves() {
    use crate::app_viewer::FixedDir;
    use crate::common::step_until;
    use covid_resnet::app::training::plan_editor::PlanRow;
    use covid_resnet::app::training::setup::TrainingSettings;
    use covid_resnet::app::training::state::RunState;
    use covid_resnet::app::Settings;
    use covid_resnet::train::schedule::Trainable;
    use egui_kittest::kittest::Queryable;
    let dir = FixedDir::new("covid-resnet-ensemble-training");
    let d = dir.0.as_path();
    let data = d.join("data");
    write_synthetic_images(&data, 40, 8);
    let run = d.join("run");
    let s = Settings {
        training: TrainingSettings {
            data_dir: data.display().to_string(),
            run_dir: run.display().to_string(),
            backbone: Backbone::Resnet18,
            device: "cpu".into(),
            batch_size: 8,
            members: 3,
            plan_name: "tiny".into(),
            plan_rows: vec![PlanRow {
                size: "32".into(),
                train: Trainable::All,
                lr: "1e-3".into(),
                epochs: "2".into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    let mut h = crate::app_window::harness(s, (1400.0, 1000.0));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    assert!(crate::app_window::shown(
        &h,
        "an ensemble of 3 (seeds 42..=44)"
    ));
    h.get_by_label("Start").click();
    step_until(&mut h, 600, "the ensemble", |a| {
        a.training.run.state == RunState::Idle && a.training.run.finished_model.is_some()
    });
    let r = &h.state().training.run;
    assert_eq!(
        r.finished_model.as_deref(),
        Some(run.join("ensemble.safetensors").as_path())
    );
    let names: Vec<&str> = r.members_done.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names, ["member 1", "member 2"]);
    assert!(r.members_done.iter().all(|(_, e)| e.len() == 2));
    assert_eq!(r.epochs.len(), 2, "the last member's own epochs");
    for i in 1..=3 {
        assert!(run.join(format!("member-{i}/model.safetensors")).is_file());
    }
    assert!(run.join("report.json").is_file());
    h.run_steps(3);
    // The epochs table shows each epoch's seconds, which vary from run to run: a few
    // hundred pixels of digits may differ, nothing else.
    h.snapshot_options(
        "training_members",
        &egui_kittest::SnapshotOptions::new().max_failed_pixels(600),
    );
}
