//! The Training tab driven as a user would, through egui_kittest (no window needed for
//! these; snapshots need a GPU adapter, lavapipe in CI).
use crate::common::step_until;
use crate::training::write_synthetic;
use covid_resnet::app::training::{RunState, TrainingSettings};
use covid_resnet::app::{App, Settings};
use covid_resnet::model::Backbone;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use std::path::Path;
use std::time::Duration;

fn settings(data: &Path, run: &Path) -> Settings {
    use covid_resnet::app::training::PlanRow;
    use covid_resnet::train::schedule::Trainable;
    let row = |train, lr: &str, epochs: &str| PlanRow {
        size: "32".into(),
        train,
        lr: lr.into(),
        epochs: epochs.into(),
    };
    let training = TrainingSettings {
        data_dir: data.display().to_string(),
        run_dir: run.display().to_string(),
        backbone: Backbone::Resnet18,
        device: "cpu".into(),
        batch_size: 8,
        plan_name: "tiny".into(),
        plan_rows: vec![
            row(Trainable::Head, "1e-3", "1"),
            row(Trainable::All, "auto", "3"),
        ],
        ..Default::default()
    };
    Settings {
        training,
        ..Default::default()
    }
}

fn harness(s: Settings) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(1400.0, 1000.0))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s))
}

fn disabled(h: &Harness<'static, App>, label: &str) -> bool {
    h.get_by_label(label).accesskit_node().is_disabled()
}

#[test]
fn start_pause_resume_stop_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 64, 8);
    let mut s = settings(&data, &run);
    s.training.plan_rows[1].lr = "1e-4..1e-3".into();
    let mut h = harness(s);
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.step();
    assert!(
        !disabled(&h, "Start"),
        "Start should be enabled with a dataset and a valid plan"
    );
    assert!(disabled(&h, "Pause") && disabled(&h, "Stop"));
    h.get_by_label("Start").click();
    h.step();
    step_until(&mut h, 120, "training points", |a| {
        a.training.run.losses.len() >= 3
    });
    assert_eq!(h.state().training.run.state, RunState::Running);
    assert!(h
        .state()
        .training
        .run
        .device_in_use
        .as_deref()
        .is_some_and(|d| d.starts_with("CPU")));
    assert!(
        h.query_by_label_contains("stage 1 step 1 (32 px)")
            .is_some(),
        "the step's progress bar"
    );
    assert!(h.query_by_label_contains("plan: ").is_some());
    assert!(!disabled(&h, "Pause") && disabled(&h, "Start"));
    // Pause: no new batches while paused.
    h.get_by_label("Pause").click();
    step_until(&mut h, 60, "the pause", |a| {
        a.training.run.log.iter().any(|l| l == "paused")
    });
    let n = h.state().training.run.losses.len();
    for _ in 0..10 {
        h.step();
        std::thread::sleep(Duration::from_millis(30));
    }
    assert_eq!(
        h.state().training.run.losses.len(),
        n,
        "a batch ran while paused"
    );
    h.get_by_label("Resume").click();
    step_until(&mut h, 60, "progress after resuming", |a| {
        a.training.run.losses.len() > n
    });
    h.get_by_label("Stop").click();
    step_until(&mut h, 120, "the stop", |a| {
        a.training.run.state == RunState::Idle
    });
    assert!(
        run.join("checkpoint.safetensors").is_file(),
        "Stop must leave a checkpoint"
    );
    assert!(
        h.state()
            .training
            .run
            .log
            .iter()
            .any(|l| l.starts_with("stopped; checkpoint")),
        "{:?}",
        h.state().training.run.log
    );
    assert_eq!(
        h.state().training.resume_dir,
        run.display().to_string(),
        "the stopped run is offered for resuming"
    );
    assert!(
        h.state()
            .notices
            .last_error(covid_resnet::app::notices::Topic::Training)
            .is_none(),
        "{:?}",
        h.state().notices.items()
    );
}

#[test]
fn lr_finder_fills_its_chart_and_offers_suggestions() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 48, 8);
    let mut h = harness(settings(&data, &run));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.get_by_label("LR finder").click();
    // The result comes before the job's end; Start waits for the job to have ended (on a
    // loaded machine that can take a few frames more).
    step_until(&mut h, 300, "the LR finder", |a| {
        a.training.run.lr_result.is_some() && a.training.run.state == RunState::Idle
    });
    let t = &h.state().training;
    assert!(t.run.lr_points.len() >= 20, "{}", t.run.lr_points.len());
    assert!(t
        .run
        .lr_result
        .as_ref()
        .unwrap()
        .suggestions
        .valley
        .is_some());
    h.step();
    let valley = h.get_by_label_contains("Use valley");
    valley.click();
    h.run_steps(2);
    let lr = h.state().training.chosen_lr.expect("a chosen rate");
    // The message names the row and the range, rounded as a person would type it.
    let spec = covid_resnet::train::schedule::LrSpec::for_suggestion(lr);
    let typed = covid_resnet::app::training::charts::spec_text(spec);
    assert!(
        h.query_by_label_contains(&format!("row 2 (auto) becomes {typed}"))
            .is_some(),
        "no message for {typed}"
    );
    // Start turns the `auto` row into the chosen discriminative range (the command runs
    // before the next frame).
    h.get_by_label("Start").click();
    h.run_steps(2);
    let row = &h.state().training.settings.plan_rows[1].lr;
    assert_eq!(row, &typed);
    let covid_resnet::train::schedule::LrSpec::Range(lo, hi) = row.parse().unwrap() else {
        panic!("{row} is not a range");
    };
    // Three significant digits: within 0.5 % of the suggestion.
    assert!((hi / lr - 1.0).abs() < 5e-3 && (lo / (lr / 100.0) - 1.0).abs() < 5e-3);
    h.get_by_label("Stop").click();
    step_until(&mut h, 120, "the stop", |a| {
        a.training.run.state == RunState::Idle
    });
}

#[test]
fn an_invalid_plan_row_shows_its_message_and_disables_start() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 16, 4);
    let mut s = settings(&data, &run);
    s.training.plan_rows[0].lr = "fast".into();
    let mut h = harness(s);
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.step();
    assert!(
        h.query_by_label_contains("row 1:").is_some(),
        "the wrong row is named"
    );
    assert!(disabled(&h, "Start"));
    // A folder without a dataset: its error is shown inline.
    let mut s = settings(&dir.path().join("nothing-here"), &run);
    s.training.plan_rows[0].lr = "1e-3".into();
    let mut h = harness(s);
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.step();
    assert!(h.query_by_label_contains("not a folder").is_some());
    assert!(disabled(&h, "Start"));
}

#[test]
fn batch_preview_shows_labelled_images_at_the_stage_size() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 16, 4);
    let mut h = harness(settings(&data, &run));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.get_by_label("Batch preview").click();
    h.step();
    h.get_by_label("New batch").click();
    step_until(&mut h, 60, "the preview", |a| {
        !a.training.preview.is_empty()
    });
    let p = &h.state().training.preview;
    assert_eq!(p.len(), 12);
    assert!(
        p.iter().all(|(t, _)| t.size() == [32, 32]),
        "first stage size"
    );
    assert!(p.iter().all(|(_, l)| l == "Normal" || l == "COVID-19"));
    h.step();
    assert!(h.query_all_by_label("COVID-19").count() >= 1);
}

/// Snapshot PNGs of the tab before and after a few training batches, rendered headless
/// (wgpu on Mesa's lavapipe; `.ci/run` installs it). Paths, sizes and the seed are fixed so
/// the pictures are the same on every machine; regenerate with UPDATE_SNAPSHOTS=1.
#[test]
fn snapshots_before_and_during_training() {
    let data = std::env::temp_dir().join("covid-resnet-snapshot-data");
    let run = std::env::temp_dir().join("covid-resnet-snapshot-run");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&run);
    write_synthetic(&data, 32, 8);
    let mut s = settings(&data, &run);
    s.training.plan_rows[1].lr = "1e-4..1e-3".into();
    let mut h = harness(s);
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.run_steps(3);
    h.snapshot("training_tab_idle");
    h.state_mut().training.stop_after = Some(3);
    h.get_by_label("Start").click();
    step_until(&mut h, 120, "the stop after 3 batches", |a| {
        a.training.run.state == RunState::Idle && a.training.run.losses.len() == 3
    });
    h.run_steps(3);
    h.snapshot("training_tab_after_3_batches");
    let _ = std::fs::remove_dir_all(&data);
    let _ = std::fs::remove_dir_all(&run);
}

/// A deliberately huge learning rate: the run stops, the weights are restored, the message
/// is on screen, and the run folder can still be resumed.
#[test]
fn divergence_is_shown_and_the_run_stays_resumable() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 16, 4);
    let mut s = settings(&data, &run);
    s.training.plan_rows[1].lr = "1e30".into();
    s.training.plan_rows[1].epochs = "1".into();
    let mut h = harness(s);
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.get_by_label("Start").click();
    step_until(&mut h, 120, "the failure", |a| {
        a.training.run.state == RunState::Idle
            && a.notices
                .last_error(covid_resnet::app::notices::Topic::Training)
                .is_some()
    });
    let e = h
        .state()
        .notices
        .last_error(covid_resnet::app::notices::Topic::Training)
        .unwrap()
        .to_string();
    assert!(e.contains("loss became") && e.contains("restored"), "{e}");
    assert!(
        h.query_all_by_label_contains("loss became")
            .next()
            .is_some(),
        "the message is not on screen"
    );
    // The checkpoint of the head epoch is intact and resumable.
    let t = covid_resnet::train::trainer::Trainer::resume(
        &run,
        covid_resnet::device::DeviceChoice::Cpu,
        std::sync::Arc::new(covid_resnet::train::events::VecSink::default()),
        std::sync::Arc::new(covid_resnet::train::events::Control::default()),
    )
    .unwrap();
    assert_eq!(t.history().len(), 1);
}
