//! What a new user stumbled on in the window, each held by a test: a resumed run's history,
//! plots and the mouse wheel, the LR finder's suggestion without an `auto` row, states and
//! the run folder in words, the Viewer's shared dataset folder and its disabled button, a
//! path field where no file dialog can open, and the batch preview's flips.
use crate::common::step_until;
use crate::training::write_synthetic;
use crate::viewer_infer::write_model;
use covid_resnet::app::dialogs::DialogBackend;
use covid_resnet::app::training::{PlanRow, RunState, TrainingSettings};
use covid_resnet::app::{App, Settings, Tab};
use covid_resnet::model::Backbone;
use covid_resnet::train::events::TrainEvent;
use covid_resnet::train::lr_finder::{suggest, LrFinderConfig, LrFinderResult, LrPoint};
use covid_resnet::train::schedule::Trainable;
use egui_kittest::kittest::{NodeT, Queryable};
use egui_kittest::Harness;
use std::path::Path;
use std::time::Instant;

fn row(train: Trainable, lr: &str, epochs: &str) -> PlanRow {
    PlanRow {
        size: "32".into(),
        train,
        lr: lr.into(),
        epochs: epochs.into(),
    }
}

fn settings(data: &Path, run: &Path, rows: Vec<PlanRow>) -> Settings {
    Settings {
        training: TrainingSettings {
            data_dir: data.display().to_string(),
            run_dir: run.display().to_string(),
            backbone: Backbone::Resnet18,
            device: "cpu".into(),
            batch_size: 8,
            plan_name: "tiny".into(),
            plan_rows: rows,
            ..Default::default()
        },
        ..Default::default()
    }
}

pub fn harness(s: Settings, size: (f32, f32)) -> Harness<'static, App> {
    Harness::builder()
        .with_size(egui::vec2(size.0, size.1))
        .build_ui_state(|ui, app: &mut App| app.frame(ui), App::with_settings(s))
}

pub fn shown(h: &Harness<'static, App>, text: &str) -> bool {
    h.query_all_by_label_contains(text).next().is_some()
}

#[test]
fn a_resumed_run_shows_its_whole_history_and_its_step() {
    let dir = tempfile::tempdir().unwrap();
    let (data, run) = (dir.path().join("data"), dir.path().join("run"));
    write_synthetic(&data, 64, 8);
    let rows = vec![
        row(Trainable::Head, "1e-3", "1"),
        row(Trainable::All, "1e-4..1e-3", "2"),
    ];
    let mut h = harness(settings(&data, &run, rows), (1400.0, 1000.0));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    // Stop after 11 batches: inside the second step's first epoch (8 batches an epoch).
    h.state_mut().training.stop_after = Some(11);
    h.get_by_label("Start").click();
    h.run_steps(2);
    assert!(shown(&h, "State: Training"), "the state in words");
    // The run folder is shown in full, with a button to open it.
    let abs = std::path::absolute(&run).unwrap().display().to_string();
    assert!(shown(&h, &abs), "the run folder's full path");
    step_until(&mut h, 120, "the stop", |a| {
        a.training.run.state == RunState::Idle
    });
    assert!(
        shown(&h, "Checkpoint saved: "),
        "{:?}",
        h.state().notices.items()
    );
    let before: Vec<f64> = h.state().training.run.losses.iter().map(|p| p[0]).collect();
    assert_eq!(before, (0..11).map(|i| i as f64).collect::<Vec<_>>());
    assert_eq!(h.state().training.resume_dir, run.display().to_string());

    // Resume in a new window, as after a restart: the history comes from the run folder.
    let mut h = harness(settings(&data, &run, vec![]), (1400.0, 1000.0));
    h.state_mut().training.resume_dir = run.display().to_string();
    h.state_mut().training.stop_after = Some(2);
    h.run_steps(2);
    h.get_by_label("Resume run").click();
    step_until(&mut h, 120, "the resumed run's stop", |a| {
        a.training.run.state == RunState::Idle && a.training.run.losses.len() >= 13
    });
    let t = &h.state().training.run;
    let xs: Vec<f64> = t.losses.iter().map(|p| p[0]).collect();
    assert_eq!(
        xs,
        (0..13).map(|i| i as f64).collect::<Vec<_>>(),
        "one continuous curve from iteration 0"
    );
    assert_eq!(t.smoothed.len(), 13);
    assert_eq!(t.epochs.len(), 1, "the head epoch's validation point");
    assert_eq!(t.step_starts, vec![0, 8]);
    assert!(
        shown(&h, "stage 1 step 2 (32 px): epoch 1/2"),
        "the step's progress bar after resuming"
    );

    // The epoch in progress has been trained in two windows; its time counts both parts
    // (before: only the time since the last resume).
    use covid_resnet::train::checkpoint::read_checkpoint;
    let banked = read_checkpoint(&run).unwrap().0.epoch_secs;
    assert!(banked > 0.0, "the checkpoint keeps the epoch's time so far");
    let mut h = harness(settings(&data, &run, vec![]), (1400.0, 1000.0));
    h.state_mut().training.resume_dir = run.display().to_string();
    // Three batches finish the epoch (iterations 13-15), one more starts the next.
    h.state_mut().training.stop_after = Some(4);
    h.run_steps(2);
    h.get_by_label("Resume run").click();
    step_until(&mut h, 120, "the third window's stop", |a| {
        a.training.run.state == RunState::Idle && a.training.run.losses.len() >= 17
    });
    let epochs = &h.state().training.run.epochs;
    assert_eq!(epochs.len(), 2);
    assert!(
        epochs[1].secs >= banked,
        "the resumed epoch took {} s, but {banked} s were spent on it before",
        epochs[1].secs
    );
}

/// A run model with a loss curve, as if a run had reported `n` batches.
fn fake_run(app: &mut App, n: usize) {
    let now = Instant::now();
    let r = &mut app.training.run;
    r.begin_training();
    r.apply(
        TrainEvent::Started {
            total_iters: 2 * n,
            done_iters: 0,
            device: "CPU".into(),
            run_dir: "run".into(),
            step_starts: vec![0],
            history: vec![],
            past: vec![],
            classes: vec!["a".into(), "b".into()],
            validation: "v".into(),
            multi_label: false,
        },
        now,
    );
    for i in 0..n {
        r.apply(
            TrainEvent::Batch {
                global_iter: i,
                batch: i,
                batches: n,
                loss: 2.0 - i as f64 / n as f64,
                lrs: vec![1e-5, 1e-4, 1e-3],
                beta1: 0.9,
                img_per_s: 10.0,
            },
            now,
        );
    }
    r.job_ended();
}

#[test]
fn the_wheel_scrolls_the_page_not_the_plots() {
    let dir = tempfile::tempdir().unwrap();
    let mut h = harness(settings(dir.path(), dir.path(), vec![]), (1280.0, 700.0));
    fake_run(h.state_mut(), 40);
    h.run_steps(3);
    let id = egui::Id::unique("loss");
    let mem = egui_plot::PlotMemory::load(&h.ctx, id).expect("the loss plot's memory");
    let (frame, bounds) = (*mem.transform().frame(), *mem.bounds());
    assert!(mem.auto_bounds.all());
    h.hover_at(frame.center());
    h.run_steps(1);
    for _ in 0..5 {
        h.event(egui::Event::MouseWheel {
            unit: egui::MouseWheelUnit::Point,
            delta: egui::vec2(0.0, -60.0),
            phase: egui::TouchPhase::Move,
            source: egui::MouseWheelSource::Unknown,
            modifiers: egui::Modifiers::NONE,
        });
        h.run_steps(1);
    }
    h.run_steps(10);
    let mem = egui_plot::PlotMemory::load(&h.ctx, id).unwrap();
    assert!(
        mem.auto_bounds.all(),
        "the wheel made the plot stop following its data"
    );
    assert_eq!(*mem.bounds(), bounds, "the wheel panned the plot");
    // The page scrolled instead: the plot moved up on screen.
    assert!(
        mem.transform().frame().min.y < frame.min.y,
        "{:?} -> {:?}",
        frame,
        mem.transform().frame()
    );
    assert!(shown(&h, "double-click follows the data again"));
}

fn lr_result() -> LrFinderResult {
    let cfg = LrFinderConfig::default();
    let points: Vec<LrPoint> = (0..60)
        .map(|i| {
            let l = if i < 50 { 2.0 - i as f64 / 50.0 } else { 50.0 };
            LrPoint {
                iter: i,
                lr: cfg.lr_at(i),
                loss: l,
                smoothed: l,
            }
        })
        .collect();
    LrFinderResult {
        suggestions: suggest(&points),
        points,
        stopped_early: true,
    }
}

#[test]
fn a_suggestion_without_an_auto_row_is_offered_for_the_selected_row() {
    let dir = tempfile::tempdir().unwrap();
    let rows = vec![
        row(Trainable::Head, "1e-3", "1"),
        row(Trainable::All, "1e-4", "2"),
    ];
    let mut h = harness(settings(dir.path(), dir.path(), rows), (1400.0, 1000.0));
    let r = lr_result();
    let valley = r.suggestions.valley.unwrap().lr;
    {
        let run = &mut h.state_mut().training.run;
        run.apply(TrainEvent::LrFinderDone(r), Instant::now());
    }
    h.run_steps(2);
    // The divergence spike is not drawn: the chart says so.
    assert!(shown(&h, "where the loss shoots up, are not drawn"));
    h.get_by_label_contains("Use valley").click();
    h.run_steps(2);
    assert!(shown(&h, "the plan has no `auto` row"));
    // Select the second row, then take the offer.
    h.state_mut().training.selected_row = 1;
    h.run_steps(1);
    let typed = covid_resnet::app::training::charts::spec_text(
        covid_resnet::train::schedule::LrSpec::for_suggestion(valley),
    );
    h.get_by_label(&format!("Set {typed} on row 2")).click();
    h.run_steps(2);
    assert_eq!(h.state().training.settings.plan_rows[1].lr, typed);
    assert_eq!(h.state().training.settings.plan_rows[0].lr, "1e-3");
    assert!(shown(&h, &format!("row 2 now trains at {typed}")));
    // Rounded as a person types it: three significant digits.
    assert!(typed.len() <= "1.23e-5..1.23e-3".len(), "{typed}");
}

#[test]
fn the_viewer_shares_the_dataset_folder_and_says_why_run_is_disabled() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_synthetic(&data, 4, 4);
    let mut s = settings(&data, dir.path(), vec![]);
    s.tab = Tab::Viewer;
    let mut h = harness(s, (1280.0, 800.0));
    h.run_steps(2);
    // The Training tab's folder is the Viewer's.
    let folder = h.get_by_role_and_label(
        egui::accesskit::Role::TextInput,
        "Dataset folder (shared with the Training tab)",
    );
    assert_eq!(
        folder.value().as_deref(),
        Some(data.display().to_string().as_str())
    );
    // No model: the button is disabled and the reason is on screen.
    assert!(h
        .get_by_label("Run test set")
        .accesskit_node()
        .is_disabled());
    assert!(shown(&h, "Run test set: load a model first."));
    // No file dialog here: Load model… opens a path window instead and says so.
    h.state_mut().dialogs = DialogBackend::Unavailable;
    h.get_by_label("Load model…").click();
    h.run_steps(4);
    assert!(shown(&h, "No file dialog could be opened"));
    let model = write_model(dir.path(), 32);
    let field = || egui::accesskit::Role::TextInput;
    h.get_by_role_and_label(field(), "Type the path of a model file (.safetensors):")
        .focus();
    h.run_steps(1);
    h.get_by_role_and_label(field(), "Type the path of a model file (.safetensors):")
        .type_text(&model.display().to_string());
    h.run_steps(1);
    h.get_by_label("OK").click();
    step_until(&mut h, 60, "the typed model", |a| a.viewer.model.is_some());
    assert!(!h
        .get_by_label("Run test set")
        .accesskit_node()
        .is_disabled());
}

#[test]
fn the_preview_says_which_flips_the_network_gets() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    write_synthetic(&data, 16, 4);
    let rows = vec![row(Trainable::Head, "1e-3", "1")];
    let mut h = harness(settings(&data, dir.path(), rows), (1400.0, 1000.0));
    step_until(&mut h, 30, "the dataset scan", |a| {
        a.training.dataset.is_some()
    });
    h.get_by_label("Batch preview").click();
    h.run_steps(2);
    assert!(shown(
        &h,
        "vertical flips, as in the paper (so some radiographs show upside down)"
    ));
    h.state_mut().training.settings.flip = covid_resnet::data::augment::Flip::Horizontal;
    h.run_steps(2);
    assert!(shown(&h, "horizontal flips only, as most chest X-ray work"));
}
